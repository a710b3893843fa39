#include "app/kv/kv_op.h"

#include <fmt/format.h>

#include "maroon/assert.h"
#include "common/codec.h"
#include "maroon/limits.h"

namespace maroon::kv {
namespace {

using limits::key_bytes_max;
using limits::op_bytes_max;
using limits::op_keys_max;
using limits::reply_bytes_max;
using limits::value_bytes_max;

constexpr uint8_t kOpTypeMin = static_cast<uint8_t>(OpType::kGet);
constexpr uint8_t kOpTypeMax = static_cast<uint8_t>(OpType::kFlush);
constexpr uint8_t kSetCondMax = static_cast<uint8_t>(SetCond::kIfPresent);
constexpr uint8_t kReplyKindMax = static_cast<uint8_t>(Reply::Kind::kError);
static_assert(kStampsReplyKind > kReplyKindMax && kMultiReplyKind > kReplyKindMax);
using limits::tx_ops_max;
constexpr uint8_t kCodeMax = static_cast<uint8_t>(Code::kWrongType);

bool known_type(OpType type) {
  const auto t = static_cast<uint8_t>(type);
  return t >= kOpTypeMin && t <= kOpTypeMax;
}

// Counts the bytes ByteWriter would append, so that the encoded size is
// computed by the same code that encodes (write_op below).
class SizeCounter {
 public:
  void u8(uint8_t) { n_ += 1; }
  void varint(uint64_t v) {
    n_ += 1;
    while (v >= 0x80) {
      v >>= 7;
      n_ += 1;
    }
  }
  void svarint(int64_t v) {
    varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
  }
  void bytes(std::string_view s) {
    varint(s.size());
    n_ += s.size();
  }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0;
};

// The one description of the op layout (docs/formats/kv.md). W is ByteWriter
// or SizeCounter. The op's shape must already be valid.
template <typename W>
void write_op(const Op& op, W& w) {
  w.u8(kOpFormatVersion);
  w.u8(static_cast<uint8_t>(op.type));
  switch (op.type) {
    case OpType::kGet:
      w.bytes(op.keys[0]);
      return;
    case OpType::kSet:
      w.u8(static_cast<uint8_t>(op.cond));
      w.bytes(op.keys[0]);
      w.bytes(op.values[0]);
      return;
    case OpType::kDel:
    case OpType::kMget:
    case OpType::kExists:
    case OpType::kWatch:
      w.varint(op.keys.size());
      for (std::string_view k : op.keys) w.bytes(k);
      return;
    case OpType::kMulti:
      w.varint(op.keys.size());
      for (size_t i = 0; i < op.keys.size(); i++) {
        w.bytes(op.keys[i]);
        w.u8(op.stamps[i].present ? 1 : 0);
        w.varint(op.stamps[i].version);
      }
      w.varint(op.ops.size());
      for (std::string_view sub : op.ops) w.bytes(sub);
      return;
    case OpType::kCas:
      w.bytes(op.keys[0]);
      w.u8(op.expected ? 1 : 0);
      if (op.expected) w.bytes(*op.expected);
      w.bytes(op.values[0]);
      return;
    case OpType::kIncrBy:
      w.bytes(op.keys[0]);
      w.svarint(op.delta);
      return;
    case OpType::kMset:
      w.varint(op.keys.size());
      for (size_t i = 0; i < op.keys.size(); i++) {
        w.bytes(op.keys[i]);
        w.bytes(op.values[i]);
      }
      return;
    case OpType::kScan:
      w.bytes(op.keys[0]);
      w.varint(op.limit);
      w.u8(op.keys.size() == 2 ? 1 : 0);
      if (op.keys.size() == 2) w.bytes(op.keys[1]);
      return;
    case OpType::kSize:
    case OpType::kFlush:
      return;
  }
  MAROON_UNREACHABLE();
}

Status validate_shape(const Op& op) {
  const char* name = op_name(op.type);
  const size_t nkeys = op.keys.size();
  const size_t nvalues = op.values.size();

  if (op.cond != SetCond::kAlways && op.type != OpType::kSet)
    return invalid_argument(fmt::format("a set condition is only for SET, not {}", name));
  if (static_cast<uint8_t>(op.cond) > kSetCondMax)
    return invalid_argument(
        fmt::format("unknown SET condition {}", static_cast<unsigned>(op.cond)));
  if (op.delta != 0 && op.type != OpType::kIncrBy)
    return invalid_argument(fmt::format("a delta is only for INCRBY, not {}", name));
  if (op.limit != 0 && op.type != OpType::kScan)
    return invalid_argument(fmt::format("a limit is only for SCAN, not {}", name));
  if (op.expected && op.type != OpType::kCas)
    return invalid_argument(fmt::format("an expected value is only for CAS, not {}", name));
  if ((!op.stamps.empty() || !op.ops.empty()) && op.type != OpType::kMulti)
    return invalid_argument(
        fmt::format("watch stamps and sub-ops are only for MULTI, not {}", name));

  switch (op.type) {
    case OpType::kGet:
    case OpType::kSet:
    case OpType::kCas:
    case OpType::kIncrBy:
      if (nkeys != 1)
        return invalid_argument(fmt::format("{} takes exactly 1 key, got {}", name, nkeys));
      break;
    case OpType::kMulti:
      if (nkeys > op_keys_max)
        return too_large(
            fmt::format("MULTI watches {} keys; the limit is {}", nkeys, op_keys_max));
      if (op.stamps.size() != nkeys)
        return invalid_argument(
            fmt::format("MULTI has {} watched keys but {} stamps", nkeys, op.stamps.size()));
      if (op.ops.size() > tx_ops_max)
        return too_large(
            fmt::format("MULTI has {} commands; the limit is {}", op.ops.size(), tx_ops_max));
      break;
    case OpType::kDel:
    case OpType::kMget:
    case OpType::kExists:
    case OpType::kMset:
    case OpType::kWatch:
      if (nkeys == 0) return invalid_argument(fmt::format("{} needs at least 1 key", name));
      if (nkeys > op_keys_max)
        return too_large(fmt::format("{} has {} keys; the limit is {}", name, nkeys, op_keys_max));
      break;
    case OpType::kScan:
      if (nkeys != 1 && nkeys != 2)
        return invalid_argument(
            fmt::format("SCAN takes a prefix and an optional start-after key, got {} keys", nkeys));
      if (op.limit > op_keys_max)
        return too_large(fmt::format("SCAN limit is {}; the limit is {}", op.limit, op_keys_max));
      break;
    case OpType::kSize:
    case OpType::kFlush:
      if (nkeys != 0) return invalid_argument(fmt::format("{} takes no keys, got {}", name, nkeys));
      break;
  }

  size_t want_values = 0;
  if (op.type == OpType::kSet || op.type == OpType::kCas) want_values = 1;
  if (op.type == OpType::kMset) want_values = nkeys;
  if (nvalues != want_values) {
    if (op.type == OpType::kMset)
      return invalid_argument(fmt::format("MSET has {} keys but {} values", nkeys, nvalues));
    return invalid_argument(
        fmt::format("{} takes {} value(s), got {}", name, want_values, nvalues));
  }
  return Status::ok();
}

// Each sub-op of a MULTI must itself be a valid op, and not a WATCH or a
// nested MULTI. The type byte is checked before decoding, so decoding never
// recurses more than one level, whatever the input.
Status validate_sub_ops(const Op& op) {
  for (std::string_view bytes : op.ops) {
    if (bytes.size() >= 2) {
      const auto type = static_cast<OpType>(static_cast<uint8_t>(bytes[1]));
      if (type == OpType::kMulti || type == OpType::kWatch)
        return invalid_argument(fmt::format("{} cannot run inside MULTI", op_name(type)));
    }
    Result<Op> sub = decode_op(bytes);
    if (!sub) return Status(sub.status().code(), "MULTI sub-op: " + sub.status().message());
    MAROON_ASSERT(sub->type != OpType::kMulti && sub->type != OpType::kWatch);
  }
  return Status::ok();
}

Status validate_sizes(const Op& op) {
  for (std::string_view k : op.keys)
    if (k.size() > key_bytes_max)
      return too_large(fmt::format("key is {} bytes; the limit is {}", k.size(), key_bytes_max));
  for (std::string_view v : op.values)
    if (v.size() > value_bytes_max)
      return too_large(
          fmt::format("value is {} bytes; the limit is {}", v.size(), value_bytes_max));
  if (op.expected && op.expected->size() > value_bytes_max)
    return too_large(fmt::format("expected value is {} bytes; the limit is {}", op.expected->size(),
                                 value_bytes_max));
  SizeCounter counter;
  write_op(op, counter);
  if (counter.size() > op_bytes_max)
    return too_large(fmt::format("{} op is {} bytes encoded; the limit is {}", op_name(op.type),
                                 counter.size(), op_bytes_max));
  return Status::ok();
}

Status malformed(const char* what) {
  return invalid_argument(fmt::format("malformed kv {}: truncated or bad field", what));
}

// Reads a count of list entries, each at least min_entry_bytes long, and checks
// it against op_keys_max before anyone reserves memory for it.
Status read_count(ByteReader& r, const char* what, size_t min_entry_bytes, size_t& n) {
  uint64_t count = 0;
  if (!r.varint(count)) return malformed(what);
  if (count > op_keys_max)
    return too_large(fmt::format("{} has {} entries; the limit is {}", what, count, op_keys_max));
  if (count * min_entry_bytes > r.remaining()) return malformed(what);
  n = static_cast<size_t>(count);
  return Status::ok();
}

// Reads the size check, version and kind that start every reply.
Status read_reply_header(ByteReader& r, std::string_view bytes, uint8_t& kind) {
  if (bytes.size() > reply_bytes_max)
    return too_large(
        fmt::format("reply is {} bytes; the limit is {}", bytes.size(), reply_bytes_max));
  uint8_t version = 0;
  if (!r.u8(version)) return invalid_argument("empty kv reply");
  if (version != kReplyFormatVersion)
    return invalid_argument(fmt::format("unsupported kv reply format version {} (expected {})",
                                        version, kReplyFormatVersion));
  if (!r.u8(kind)) return malformed("reply");
  return Status::ok();
}

// A one-byte boolean: 0 or 1; anything else (or no byte) is malformed.
bool read_flag(ByteReader& r, bool& flag) {
  uint8_t b = 0;
  if (!r.u8(b) || b > 1) return false;
  flag = b == 1;
  return true;
}

// After the header of a kMulti op: the watches, then the sub-ops. A
// truncated field leaves `r` failed for the caller to report.
Status decode_multi(ByteReader& r, Op& op) {
  size_t n = 0;
  // A watch is at least a 1-byte key length, a flag and a 1-byte version.
  if (Status s = read_count(r, "MULTI watches", 3, n); !s) return s;
  op.keys.reserve(n);
  op.stamps.reserve(n);
  std::string_view key;
  for (size_t i = 0; i < n; i++) {
    KeyStamp stamp;
    if (!r.bytes(key, op_bytes_max)) return Status::ok();
    if (!read_flag(r, stamp.present)) return malformed("op");
    if (!r.varint(stamp.version)) return Status::ok();
    op.keys.push_back(key);
    op.stamps.push_back(stamp);
  }
  uint64_t count = 0;
  if (!r.varint(count)) return Status::ok();
  if (count > tx_ops_max)
    return too_large(fmt::format("MULTI has {} commands; the limit is {}", count, tx_ops_max));
  if (count * 3 > r.remaining()) return malformed("op");  // a sub-op is at least 3 bytes
  op.ops.reserve(static_cast<size_t>(count));
  std::string_view sub;
  for (uint64_t i = 0; i < count && r.bytes(sub, op_bytes_max); i++) op.ops.push_back(sub);
  return Status::ok();
}

}  // namespace

bool is_read_only(OpType type) {
  switch (type) {
    case OpType::kWatch:
    case OpType::kGet:
    case OpType::kMget:
    case OpType::kExists:
    case OpType::kScan:
    case OpType::kSize:
      return true;
    case OpType::kSet:
    case OpType::kDel:
    case OpType::kCas:
    case OpType::kIncrBy:
    case OpType::kMset:
    case OpType::kMulti:
    case OpType::kFlush:
      return false;
  }
  return false;
}

const char* op_name(OpType type) {
  switch (type) {
    case OpType::kGet:
      return "GET";
    case OpType::kSet:
      return "SET";
    case OpType::kDel:
      return "DEL";
    case OpType::kCas:
      return "CAS";
    case OpType::kIncrBy:
      return "INCRBY";
    case OpType::kMget:
      return "MGET";
    case OpType::kMset:
      return "MSET";
    case OpType::kExists:
      return "EXISTS";
    case OpType::kScan:
      return "SCAN";
    case OpType::kSize:
      return "SIZE";
    case OpType::kWatch:
      return "WATCH";
    case OpType::kMulti:
      return "MULTI";
    case OpType::kFlush:
      return "FLUSH";
  }
  return "UNKNOWN";
}

Status validate(const Op& op) {
  if (!known_type(op.type))
    return invalid_argument(fmt::format("unknown kv op type {}", static_cast<unsigned>(op.type)));
  if (Status s = validate_shape(op); !s) return s;
  if (Status s = validate_sizes(op); !s) return s;
  return validate_sub_ops(op);
}

void encode_op(const Op& op, std::string& out) {
  MAROON_ASSERT_MSG(validate(op).is_ok(), "encode_op needs a valid op");
  ByteWriter w(out);
  write_op(op, w);
}

std::string encode_op(const Op& op) {
  std::string out;
  encode_op(op, out);
  return out;
}

Result<Op> decode_op(std::string_view bytes) {
  if (bytes.size() > op_bytes_max)
    return too_large(fmt::format("op is {} bytes; the limit is {}", bytes.size(), op_bytes_max));
  ByteReader r(bytes);
  uint8_t version = 0;
  uint8_t type = 0;
  if (!r.u8(version)) return invalid_argument("empty kv op");
  if (version != kOpFormatVersion)
    return invalid_argument(fmt::format("unsupported kv op format version {} (expected {})",
                                        version, kOpFormatVersion));
  if (!r.u8(type)) return malformed("op");
  Op op;
  op.type = static_cast<OpType>(type);
  if (!known_type(op.type)) return invalid_argument(fmt::format("unknown kv op type {}", type));
  // Lengths are bounded by the input itself; validate() below applies the
  // per-field limits with proper messages.
  std::string_view key, value;
  switch (op.type) {
    case OpType::kGet:
      if (r.bytes(key, op_bytes_max)) op.keys.push_back(key);
      break;
    case OpType::kSet: {
      uint8_t cond = 0;
      if (!r.u8(cond)) break;
      if (cond > kSetCondMax)
        return invalid_argument(fmt::format("unknown SET condition {}", cond));
      op.cond = static_cast<SetCond>(cond);
      if (r.bytes(key, op_bytes_max) && r.bytes(value, op_bytes_max)) {
        op.keys.push_back(key);
        op.values.push_back(value);
      }
      break;
    }
    case OpType::kMulti:
      if (Status s = decode_multi(r, op); !s) return s;
      break;
    case OpType::kDel:
    case OpType::kMget:
    case OpType::kExists:
    case OpType::kWatch:
    case OpType::kMset: {
      const bool pairs = op.type == OpType::kMset;
      size_t n = 0;
      if (Status s = read_count(r, op_name(op.type), pairs ? 2 : 1, n); !s) return s;
      op.keys.reserve(n);
      if (pairs) op.values.reserve(n);
      for (size_t i = 0; i < n && r.bytes(key, op_bytes_max); i++) {
        op.keys.push_back(key);
        if (pairs && r.bytes(value, op_bytes_max)) op.values.push_back(value);
      }
      break;
    }
    case OpType::kCas: {
      bool has_expected = false;
      std::string_view expected;
      if (!r.bytes(key, op_bytes_max)) break;
      if (!read_flag(r, has_expected)) return malformed("op");
      if (has_expected && !r.bytes(expected, op_bytes_max)) break;
      if (!r.bytes(value, op_bytes_max)) break;
      op.keys.push_back(key);
      if (has_expected) op.expected = expected;
      op.values.push_back(value);
      break;
    }
    case OpType::kIncrBy:
      if (r.bytes(key, op_bytes_max) && r.svarint(op.delta)) op.keys.push_back(key);
      break;
    case OpType::kScan: {
      uint64_t limit = 0;
      bool has_start = false;
      if (!r.bytes(key, op_bytes_max) || !r.varint(limit)) break;
      if (limit > op_keys_max)
        return too_large(fmt::format("SCAN limit is {}; the limit is {}", limit, op_keys_max));
      op.limit = static_cast<uint32_t>(limit);
      if (!read_flag(r, has_start)) return malformed("op");
      op.keys.push_back(key);
      if (has_start && r.bytes(key, op_bytes_max)) op.keys.push_back(key);
      break;
    }
    case OpType::kSize:
    case OpType::kFlush:
      break;
  }
  if (!r.ok()) return malformed("op");
  if (!r.at_end())
    return invalid_argument(
        fmt::format("{} trailing bytes after kv {} op", r.remaining(), op_name(op.type)));
  if (Status s = validate(op); !s) return s;
  return op;
}

void encode_reply(const Reply& reply, std::string& out) {
  ByteWriter w(out);
  w.u8(kReplyFormatVersion);
  w.u8(static_cast<uint8_t>(reply.kind));
  switch (reply.kind) {
    case Reply::Kind::kOk:
    case Reply::Kind::kNil:
      return;
    case Reply::Kind::kInt:
      w.svarint(reply.integer);
      return;
    case Reply::Kind::kValue:
      w.bytes(reply.value);
      return;
    case Reply::Kind::kValues:
      MAROON_ASSERT(reply.values.size() <= op_keys_max);
      w.varint(reply.values.size());
      for (const auto& v : reply.values) {
        w.u8(v ? 1 : 0);
        if (v) w.bytes(*v);
      }
      return;
    case Reply::Kind::kPairs:
      MAROON_ASSERT(reply.pairs.size() <= op_keys_max);
      w.varint(reply.pairs.size());
      for (const auto& [k, v] : reply.pairs) {
        w.bytes(k);
        w.bytes(v);
      }
      return;
    case Reply::Kind::kError:
      MAROON_ASSERT(reply.error != Code::kOk);
      w.u8(static_cast<uint8_t>(reply.error));
      w.bytes(reply.value);
      return;
  }
  MAROON_UNREACHABLE();
}

std::string encode_reply(const Reply& reply) {
  std::string out;
  encode_reply(reply, out);
  return out;
}

Result<Reply> decode_reply(std::string_view bytes) {
  ByteReader r(bytes);
  uint8_t kind = 0;
  if (Status s = read_reply_header(r, bytes, kind); !s) return s;
  if (kind > kReplyKindMax) return invalid_argument(fmt::format("unknown kv reply kind {}", kind));
  Reply reply;
  reply.kind = static_cast<Reply::Kind>(kind);
  std::string_view key, value;
  switch (reply.kind) {
    case Reply::Kind::kOk:
    case Reply::Kind::kNil:
      break;
    case Reply::Kind::kInt:
      r.svarint(reply.integer);
      break;
    case Reply::Kind::kValue:
      if (r.bytes(value, value_bytes_max)) reply.value = value;
      break;
    case Reply::Kind::kValues: {
      size_t n = 0;
      if (Status s = read_count(r, "reply", 1, n); !s) return s;
      reply.values.reserve(n);
      for (size_t i = 0; i < n; i++) {
        bool present = false;
        if (!read_flag(r, present)) return malformed("reply");
        if (!present) {
          reply.values.emplace_back();
        } else if (r.bytes(value, value_bytes_max)) {
          reply.values.emplace_back(value);
        } else {
          break;
        }
      }
      break;
    }
    case Reply::Kind::kPairs: {
      size_t n = 0;
      if (Status s = read_count(r, "reply", 2, n); !s) return s;
      reply.pairs.reserve(n);
      for (size_t i = 0; i < n; i++) {
        if (!r.bytes(key, key_bytes_max) || !r.bytes(value, value_bytes_max)) break;
        reply.pairs.emplace_back(key, value);
      }
      break;
    }
    case Reply::Kind::kError: {
      uint8_t code = 0;
      if (!r.u8(code)) break;
      if (code == 0 || code > kCodeMax)
        return invalid_argument(fmt::format("bad error code {} in kv reply", code));
      reply.error = static_cast<Code>(code);
      if (r.bytes(value, reply_bytes_max)) reply.value = value;
      break;
    }
  }
  if (!r.ok()) return malformed("reply");
  if (!r.at_end())
    return invalid_argument(fmt::format("{} trailing bytes after kv reply", r.remaining()));
  return reply;
}

namespace {

// Reads the header of a WATCH or MULTI reply. An Error reply becomes its
// Status; `kind` is set otherwise.
Status read_special_header(ByteReader& r, std::string_view bytes, uint8_t& kind) {
  if (Status s = read_reply_header(r, bytes, kind); !s) return s;
  if (kind == static_cast<uint8_t>(Reply::Kind::kError)) {
    Result<Reply> e = decode_reply(bytes);
    if (!e) return e.status();
    return Status(e->error, e->value);
  }
  return Status::ok();
}

Status end_of_reply(const ByteReader& r) {
  if (!r.ok()) return malformed("reply");
  if (!r.at_end())
    return invalid_argument(fmt::format("{} trailing bytes after kv reply", r.remaining()));
  return Status::ok();
}

}  // namespace

void encode_stamps_reply(const std::vector<KeyStamp>& stamps, std::string& out) {
  MAROON_ASSERT(stamps.size() <= op_keys_max);
  ByteWriter w(out);
  w.u8(kReplyFormatVersion);
  w.u8(kStampsReplyKind);
  w.varint(stamps.size());
  for (const KeyStamp& st : stamps) {
    w.u8(st.present ? 1 : 0);
    w.varint(st.version);
  }
}

Result<std::vector<KeyStamp>> decode_stamps_reply(std::string_view bytes) {
  ByteReader r(bytes);
  uint8_t kind = 0;
  if (Status s = read_special_header(r, bytes, kind); !s) return s;
  if (kind != kStampsReplyKind)
    return invalid_argument(fmt::format("kv reply kind {} is not a WATCH reply", kind));
  size_t n = 0;
  if (Status s = read_count(r, "reply", 2, n); !s) return s;
  std::vector<KeyStamp> stamps;
  stamps.reserve(n);
  for (size_t i = 0; i < n; i++) {
    KeyStamp st;
    if (!read_flag(r, st.present)) return malformed("reply");
    if (!r.varint(st.version)) break;
    stamps.push_back(st);
  }
  if (Status s = end_of_reply(r); !s) return s;
  return stamps;
}

void encode_multi_reply(const MultiReply& reply, std::string& out) {
  ByteWriter w(out);
  w.u8(kReplyFormatVersion);
  if (reply.aborted) {
    MAROON_ASSERT(reply.replies.empty());
    w.u8(static_cast<uint8_t>(Reply::Kind::kNil));
    return;
  }
  MAROON_ASSERT(reply.replies.size() <= tx_ops_max);
  w.u8(kMultiReplyKind);
  w.varint(reply.replies.size());
  for (const std::string& sub : reply.replies) w.bytes(sub);
}

Result<MultiReply> decode_multi_reply(std::string_view bytes) {
  ByteReader r(bytes);
  uint8_t kind = 0;
  if (Status s = read_special_header(r, bytes, kind); !s) return s;
  MultiReply reply;
  if (kind == static_cast<uint8_t>(Reply::Kind::kNil)) {
    reply.aborted = true;
  } else if (kind == kMultiReplyKind) {
    uint64_t count = 0;
    if (!r.varint(count)) return malformed("reply");
    if (count > tx_ops_max)
      return too_large(
          fmt::format("MULTI reply has {} entries; the limit is {}", count, tx_ops_max));
    if (count > r.remaining()) return malformed("reply");
    reply.replies.reserve(static_cast<size_t>(count));
    std::string_view sub;
    for (uint64_t i = 0; i < count && r.bytes(sub, reply_bytes_max); i++) {
      reply.replies.emplace_back(sub);
    }
  } else {
    return invalid_argument(fmt::format("kv reply kind {} is not a MULTI reply", kind));
  }
  if (Status s = end_of_reply(r); !s) return s;
  return reply;
}

}  // namespace maroon::kv
