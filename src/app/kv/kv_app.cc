#include "app/kv/kv_app.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <system_error>
#include <vector>

#include "maroon/assert.h"
#include "common/codec.h"
#include "maroon/limits.h"

namespace maroon::kv {
namespace {

using limits::op_keys_max;
using limits::reply_bytes_max;

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

size_t bytes_size(std::string_view s) { return varint_size(s.size()) + s.size(); }

// Version, kind and a list count of at most op_keys_max (three varint bytes).
constexpr size_t kListReplyHeaderBytes = 2 + 3;
static_assert(op_keys_max < (1u << 21), "a list count must fit three varint bytes");
// A MULTI keeps this much reply room for each sub-op: any short reply (Ok,
// Nil, Int, an error) fits, plus its length prefix.
constexpr size_t kSubReplyBytesReserved = 256;
static_assert(kListReplyHeaderBytes + limits::tx_ops_max * kSubReplyBytesReserved <
              reply_bytes_max / 2);
// SCAN always returns at least one pair when one exists, so one pair of the
// largest key and value must fit a reply.
static_assert(kListReplyHeaderBytes + 2 * 10 + limits::key_bytes_max + limits::value_bytes_max <=
              reply_bytes_max);

// Redis semantics: an integer value is the canonical base-10 form of an int64
// ("-12", "0"; not "+1", "01", "-0", " 1", "1.0", or anything out of range).
std::optional<int64_t> parse_canonical_int(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  int64_t v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  const size_t digits = s[0] == '-' ? 1 : 0;
  if (s[digits] == '0' && s.size() - digits > 1) return std::nullopt;  // leading zero
  if (v == 0 && digits == 1) return std::nullopt;                      // "-0"
  return v;
}

Reply not_read_only(OpType type) {
  return Reply::of_error(Code::kInvalidArgument,
                         fmt::format("{} is not a read-only op", op_name(type)));
}

Reply error_reply(const Status& s) { return Reply::of_error(s.code(), s.message()); }

}  // namespace

uint64_t entry_hash(std::string_view key, std::string_view value) {
  char prefix[10];
  size_t prefix_bytes = 0;
  for (uint64_t n = key.size();; n >>= 7) {
    const bool last = n < 0x80;
    prefix[prefix_bytes++] = static_cast<char>(last ? n : ((n & 0x7f) | 0x80));
    if (last) break;
  }
  // Most entries are small: hash them in one call from the stack.
  constexpr size_t kStackBytes = 512;
  const size_t total = prefix_bytes + key.size() + value.size();
  if (total <= kStackBytes) {
    char buf[kStackBytes];
    std::memcpy(buf, prefix, prefix_bytes);
    if (!key.empty()) std::memcpy(buf + prefix_bytes, key.data(), key.size());
    if (!value.empty()) std::memcpy(buf + prefix_bytes + key.size(), value.data(), value.size());
    return XXH3_64bits(buf, total);
  }
  XXH3_state_t* state = XXH3_createState();
  MAROON_ASSERT(state != nullptr);
  bool ok = XXH3_64bits_reset(state) == XXH_OK;
  ok = ok && XXH3_64bits_update(state, prefix, prefix_bytes) == XXH_OK;
  ok = ok && XXH3_64bits_update(state, key.data(), key.size()) == XXH_OK;
  ok = ok && XXH3_64bits_update(state, value.data(), value.size()) == XXH_OK;
  MAROON_ASSERT(ok);
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

uint64_t version_hash(std::string_view key, uint64_t version) {
  return XXH3_64bits_withSeed(key.data(), key.size(), version);
}

uint64_t counters_hash(uint64_t mutations, uint64_t deleted_version_max) {
  if (mutations == 0 && deleted_version_max == 0) return 0;
  std::string bytes;
  ByteWriter w(bytes);
  w.u64(mutations);
  w.u64(deleted_version_max);
  return XXH3_64bits(bytes.data(), bytes.size());
}

KeyStamp KvApp::stamp(std::string_view key) const {
  auto it = locate(key);
  if (it == map_.end()) return KeyStamp{.present = false, .version = mutations_};
  return KeyStamp{.present = true, .version = it->second.version};
}

// A present key is unchanged while it keeps its version. An absent key
// written since its WATCH (at mutation count `seen.version`) is present now,
// or was removed again with a version above seen.version, which
// deleted_version_max_ then exceeds.
bool KvApp::unchanged_since(std::string_view key, const KeyStamp& seen) const {
  const KeyStamp now = stamp(key);
  if (seen.present) return now == seen;
  return !now.present && deleted_version_max_ <= seen.version;
}

std::string KvApp::apply(const TxContext& /*ctx*/, std::string_view bytes) {
  std::string out;
  Result<Op> op = decode_op(bytes);
  if (!op) {
    encode_reply(error_reply(op.status()), out);
  } else if (op->type == OpType::kGet) {
    encode_get(op->keys[0], out);
  } else if (op->type == OpType::kWatch) {
    encode_stamps_reply(watch(*op), out);
  } else if (op->type == OpType::kMulti) {
    encode_multi_reply(multi(*op), out);
  } else {
    encode_reply(execute_valid(*op), out);
  }
  MAROON_ASSERT(out.size() <= reply_bytes_max);
  return out;
}

std::string KvApp::read(std::string_view bytes) const {
  std::string out;
  Result<Op> op = decode_op(bytes);
  if (!op) {
    encode_reply(error_reply(op.status()), out);
  } else if (!is_read_only(op->type)) {
    encode_reply(not_read_only(op->type), out);
  } else if (op->type == OpType::kGet) {
    encode_get(op->keys[0], out);
  } else if (op->type == OpType::kWatch) {
    encode_stamps_reply(watch(*op), out);
  } else {
    encode_reply(execute_read_valid(op.value()), out);
  }
  MAROON_ASSERT(out.size() <= reply_bytes_max);
  return out;
}

Reply KvApp::execute(const Op& op) {
  if (Status s = validate(op); !s) return error_reply(s);
  return execute_valid(op);
}

Reply KvApp::execute_read(const Op& op) const {
  if (Status s = validate(op); !s) return error_reply(s);
  if (!is_read_only(op.type)) return not_read_only(op.type);
  return execute_read_valid(op);
}

Reply KvApp::execute_valid(const Op& op) {
  switch (op.type) {
    case OpType::kSet:
      return set(op.keys[0], op.values[0], op.cond);
    case OpType::kDel: {
      int64_t removed = 0;
      for (std::string_view k : op.keys) removed += erase(k) ? 1 : 0;
      return Reply::of_int(removed);
    }
    case OpType::kCas:
      return cas(op.keys[0], op.expected, op.values[0]);
    case OpType::kIncrBy:
      return incr_by(op.keys[0], op.delta);
    case OpType::kMset:
      // In order, so a repeated key ends with its last value (as Redis MSET).
      for (size_t i = 0; i < op.keys.size(); i++) put(op.keys[i], op.values[i]);
      return Reply::ok();
    case OpType::kMulti:
      return Reply::of_error(Code::kInvalidArgument, "MULTI has its own reply; use apply()");
    case OpType::kFlush:
      flush();
      return Reply::ok();
    case OpType::kGet:
    case OpType::kMget:
    case OpType::kExists:
    case OpType::kScan:
    case OpType::kSize:
    case OpType::kWatch:
      return execute_read_valid(op);
  }
  MAROON_UNREACHABLE();
}

Reply KvApp::execute_read_valid(const Op& op) const {
  switch (op.type) {
    case OpType::kGet: {
      auto it = locate(op.keys[0]);
      return it == map_.end() ? Reply::nil() : Reply::of_value(it->second.value);
    }
    case OpType::kWatch:
      return Reply::of_error(Code::kInvalidArgument, "WATCH has its own reply; use apply()");
    case OpType::kMget:
      return mget(op);
    case OpType::kExists: {
      // A repeated key counts each time, as in Redis.
      int64_t found = 0;
      for (std::string_view k : op.keys) found += locate(k) != map_.end() ? 1 : 0;
      return Reply::of_int(found);
    }
    case OpType::kScan:
      return scan(op);
    case OpType::kSize:
      return Reply::of_int(static_cast<int64_t>(map_.size()));
    case OpType::kSet:
    case OpType::kDel:
    case OpType::kCas:
    case OpType::kIncrBy:
    case OpType::kMset:
    case OpType::kMulti:
    case OpType::kFlush:
      return not_read_only(op.type);
  }
  MAROON_UNREACHABLE();
}

void KvApp::encode_get(std::string_view key, std::string& out) const {
  ByteWriter w(out);
  w.u8(kReplyFormatVersion);
  auto it = locate(key);
  if (it == map_.end()) {
    w.u8(static_cast<uint8_t>(Reply::Kind::kNil));
  } else {
    w.u8(static_cast<uint8_t>(Reply::Kind::kValue));
    w.bytes(it->second.value);
  }
}

Reply KvApp::set(std::string_view key, std::string_view value, SetCond cond) {
  auto it = locate(key);
  const bool present = it != map_.end();
  if (present) {
    if (cond == SetCond::kIfAbsent) return Reply::nil();
    replace_at(it, value);
  } else {
    if (cond == SetCond::kIfPresent) return Reply::nil();
    insert_at(key, value);
  }
  return Reply::ok();
}

Reply KvApp::cas(std::string_view key, std::optional<std::string_view> expected,
                 std::string_view value) {
  auto it = locate(key);
  const bool present = it != map_.end();
  if (!expected) {
    if (present)
      return Reply::of_error(Code::kConflict, "CAS expected the key to be absent, but it exists");
    insert_at(key, value);
    return Reply::ok();
  }
  if (!present)
    return Reply::of_error(Code::kConflict, "CAS expected a value, but the key is absent");
  if (it->second.value != *expected)
    return Reply::of_error(Code::kConflict, "CAS expected a different value than the key holds");
  replace_at(it, value);
  return Reply::ok();
}

Reply KvApp::incr_by(std::string_view key, int64_t delta) {
  auto it = locate(key);
  const bool present = it != map_.end();
  int64_t current = 0;
  if (present) {
    std::optional<int64_t> parsed = parse_canonical_int(it->second.value);
    if (!parsed)
      return Reply::of_error(Code::kWrongType, "value is not an integer or out of range");
    current = *parsed;
  }
  int64_t next = 0;
  if (__builtin_add_overflow(current, delta, &next))
    return Reply::of_error(Code::kInvalidArgument, "increment or decrement would overflow");
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, next);
  MAROON_ASSERT(ec == std::errc());
  const std::string_view text(buf, static_cast<size_t>(end - buf));
  if (present) {
    replace_at(it, text);
  } else {
    insert_at(key, text);
  }
  return Reply::of_int(next);
}

Reply KvApp::mget(const Op& op, size_t room) const {
  // Sizes first, so an oversize reply is refused before anything is copied.
  std::vector<const std::string*> found;
  found.reserve(op.keys.size());
  size_t reply_bytes = kListReplyHeaderBytes;
  for (std::string_view k : op.keys) {
    auto it = locate(k);
    const std::string* v = it == map_.end() ? nullptr : &it->second.value;
    found.push_back(v);
    reply_bytes += 1 + (v ? bytes_size(*v) : 0);
  }
  if (reply_bytes > room)
    return Reply::of_error(Code::kTooLarge,
                           fmt::format("MGET reply would be {} bytes; the limit is {}; "
                                       "ask for fewer keys",
                                       reply_bytes, room));
  Reply reply{.kind = Reply::Kind::kValues};
  reply.values.reserve(found.size());
  for (const std::string* v : found) {
    if (v) {
      reply.values.emplace_back(*v);
    } else {
      reply.values.emplace_back();
    }
  }
  return reply;
}

// Keys that start with the prefix and sort after start_after (when given), in
// key order; at most `limit` pairs (0 means op_keys_max), and fewer if the
// next pair would push the reply past reply_bytes_max.
Reply KvApp::scan(const Op& op, size_t room) const {
  const std::string_view prefix = op.keys[0];
  const size_t limit = op.limit == 0 ? op_keys_max : op.limit;
  auto it = map_.lower_bound(prefix);
  if (op.keys.size() == 2 && op.keys[1] >= prefix) it = map_.upper_bound(op.keys[1]);
  Reply reply{.kind = Reply::Kind::kPairs};
  size_t reply_bytes = kListReplyHeaderBytes;
  for (; it != map_.end() && reply.pairs.size() < limit; ++it) {
    if (!it->first.starts_with(prefix)) break;
    const size_t pair_bytes = bytes_size(it->first) + bytes_size(it->second.value);
    if (reply_bytes + pair_bytes > room) break;
    reply_bytes += pair_bytes;
    reply.pairs.emplace_back(it->first, it->second.value);
  }
  return reply;
}

Reply KvApp::execute_read_within(const Op& op, size_t room) const {
  switch (op.type) {
    case OpType::kGet: {
      auto it = locate(op.keys[0]);
      if (it == map_.end()) return Reply::nil();
      if (kListReplyHeaderBytes + bytes_size(it->second.value) > room) {
        return Reply::of_error(Code::kTooLarge, "reply too large for the EXEC reply");
      }
      return Reply::of_value(it->second.value);
    }
    case OpType::kMget:
      return mget(op, room);
    case OpType::kScan:
      return scan(op, room);
    default:
      return execute_read_valid(op);
  }
}

std::vector<KeyStamp> KvApp::watch(const Op& op) const {
  std::vector<KeyStamp> stamps;
  stamps.reserve(op.keys.size());
  for (std::string_view k : op.keys) stamps.push_back(stamp(k));
  return stamps;
}

// Redis semantics: if any watched key changed since WATCH, nothing runs and
// the reply is Nil (EXEC's null array). Otherwise every sub-op runs in order,
// and one that fails (INCR of a non-integer) gets its error reply while the
// others still run. A sub-reply that would push the whole reply past
// reply_bytes_max is replaced by a short error; room for one short reply is
// kept for every later sub-op, so the total always fits.
MultiReply KvApp::multi(const Op& op) {
  for (size_t i = 0; i < op.keys.size(); i++) {
    if (!unchanged_since(op.keys[i], op.stamps[i])) return MultiReply{.aborted = true};
  }
  MultiReply reply;
  reply.replies.reserve(op.ops.size());
  size_t total = kListReplyHeaderBytes;
  std::string encoded;
  for (size_t i = 0; i < op.ops.size(); i++) {
    Result<Op> sub = decode_op(op.ops[i]);
    MAROON_ASSERT(sub.is_ok());  // validate() decoded every sub-op
    encoded.clear();
    const size_t reserve = (op.ops.size() - i - 1) * kSubReplyBytesReserved;
    if (is_read_only(sub->type)) {
      const size_t used = total + reserve + kSubReplyBytesReserved;
      const size_t room = used < reply_bytes_max ? reply_bytes_max - used : 0;
      encode_reply(execute_read_within(*sub, room), encoded);
    } else {
      encode_reply(execute_valid(*sub), encoded);
    }
    if (total + varint_size(encoded.size()) + encoded.size() + reserve > reply_bytes_max) {
      encoded.clear();
      encode_reply(Reply::of_error(Code::kTooLarge, "reply too large for the EXEC reply"), encoded);
    }
    total += varint_size(encoded.size()) + encoded.size();
    MAROON_ASSERT(total + reserve <= reply_bytes_max);
    reply.replies.push_back(std::move(encoded));
  }
  MAROON_ASSERT(total <= reply_bytes_max);
  return reply;
}

void KvApp::put(std::string_view key, std::string_view value) {
  auto it = locate(key);
  if (it != map_.end()) {
    replace_at(it, value);
  } else {
    insert_at(key, value);
  }
}

bool KvApp::erase(std::string_view key) {
  auto at = index_.find(key);
  if (at == index_.end()) return false;
  Map::iterator it = at->second;
  const Entry& e = it->second;
  state_hash_ -= entry_hash(it->first, e.value) + version_hash(it->first, e.version);
  deleted_version_max_ = std::max(deleted_version_max_, e.version);
  ++mutations_;
  const std::optional<Map::iterator> slot = preserve(it->first);
  index_.erase(at);  // before the node holding its key goes
  if (slot) {
    // The entry becomes its own pre-image: the node moves, nothing is copied.
    snapshot_->pre_images.insert(*slot, map_.extract(it));
  } else {
    map_.erase(it);
  }
  MAROON_ASSERT(index_.size() == map_.size());
  return true;
}

// Removes every key, as that many deletions would: each counts as a
// mutation and the newest version removed is remembered. The state hash is
// then the empty sum. O(keys) in one apply step (docs/formats/kv.md).
//
// With a snapshot open, every entry the cursor has not passed and that has
// no pre-image yet becomes its own pre-image: its node moves over, so this
// stays O(keys) with no copies, and the pre-images then hold everything the
// cursor has left to produce.
void KvApp::flush() {
  if (map_.empty()) return;  // nothing changes, so no watch is disturbed
  uint64_t newest = 0;
  for (const auto& [key, e] : map_) newest = std::max(newest, e.version);
  MAROON_ASSERT(newest <= mutations_);
  mutations_ += map_.size();
  deleted_version_max_ = std::max(deleted_version_max_, newest);
  index_.clear();
  if (snapshot_ != nullptr && !snapshot_->done) {
    Snapshot& snap = *snapshot_;
    Map& pre = snap.pre_images;
    // Both maps ascend: one merge pass, `at` the first pre-image >= the key.
    auto it = snap.passed_any ? map_.upper_bound(snap.last_key) : map_.begin();
    auto at = pre.begin();
    while (it != map_.end()) {
      auto next = std::next(it);
      while (at != pre.end() && at->first < it->first) ++at;
      if (at == pre.end() || at->first != it->first) pre.insert(at, map_.extract(it));
      it = next;
    }
  }
  map_.clear();
  state_hash_ = 0;
}

KvApp::Map::iterator KvApp::locate(std::string_view key) {
  auto at = index_.find(key);
  return at == index_.end() ? map_.end() : at->second;
}

KvApp::Map::const_iterator KvApp::locate(std::string_view key) const {
  auto at = index_.find(key);
  return at == index_.end() ? map_.cend() : Map::const_iterator(at->second);
}

void KvApp::insert_at(std::string_view key, std::string_view value) {
  if (auto slot = preserve(key)) {
    snapshot_->pre_images.emplace_hint(*slot, std::piecewise_construct, std::forward_as_tuple(key),
                                       std::forward_as_tuple());  // absent: version 0
  }
  const uint64_t version = ++mutations_;
  auto [it, inserted] = map_.emplace(std::piecewise_construct, std::forward_as_tuple(key),
                                     std::forward_as_tuple(Entry{std::string(value), version}));
  MAROON_ASSERT(inserted);
  // The index's key views the map node's key, which never moves.
  index_.emplace(std::string_view(it->first), it);
  MAROON_ASSERT(index_.size() == map_.size());
  state_hash_ += entry_hash(key, value) + version_hash(key, version);
}

void KvApp::replace_at(Map::iterator it, std::string_view value) {
  Entry& e = it->second;
  state_hash_ -= entry_hash(it->first, e.value) + version_hash(it->first, e.version);
  if (auto slot = preserve(it->first)) {
    // The old value moves into the pre-image; `value` views op bytes, never
    // map_'s own storage, so it stays valid.
    snapshot_->pre_images.emplace_hint(*slot, std::piecewise_construct,
                                       std::forward_as_tuple(it->first),
                                       std::forward_as_tuple(Entry{std::move(e.value), e.version}));
    e.value.clear();  // a moved-from string is valid but unspecified
  }
  e.value.assign(value.data(), value.size());
  e.version = ++mutations_;
  state_hash_ += entry_hash(it->first, e.value) + version_hash(it->first, e.version);
}

// ---- Snapshots (docs/formats/kv.md, "Snapshot")

// The cursor only points at its app: the position and the pre-images live in
// KvApp::Snapshot, where the mutation paths can see them.
class KvApp::SnapshotCursor final : public AppSnapshotCursor {
 public:
  explicit SnapshotCursor(KvApp* app) : app_(app) {}
  SnapshotCursor(const SnapshotCursor&) = delete;
  SnapshotCursor& operator=(const SnapshotCursor&) = delete;
  ~SnapshotCursor() override { app_->end_snapshot(); }

  bool next(std::string& out, size_t bytes_hint) override {
    return app_->snapshot_next(out, bytes_hint);
  }

 private:
  KvApp* app_;
};

KvApp::~KvApp() {
  MAROON_ASSERT_MSG(snapshot_ == nullptr, "a kv snapshot cursor outlived its app");
}

size_t KvApp::snapshot_pre_images() const {
  return snapshot_ == nullptr ? 0 : snapshot_->pre_images.size();
}

std::unique_ptr<AppSnapshotCursor> KvApp::begin_snapshot() {
  MAROON_ASSERT_MSG(snapshot_ == nullptr, "a kv snapshot is already open");
  snapshot_ = std::make_unique<Snapshot>();
  snapshot_->entries = map_.size();
  snapshot_->mutations = mutations_;
  snapshot_->deleted_version_max = deleted_version_max_;
  snapshot_->hash = state_hash();
  return std::make_unique<SnapshotCursor>(this);
}

void KvApp::end_snapshot() {
  MAROON_ASSERT(snapshot_ != nullptr);
  snapshot_.reset();
}

std::optional<KvApp::Map::iterator> KvApp::preserve_slow(std::string_view key) {
  Snapshot& snap = *snapshot_;
  if (snap.done) return std::nullopt;  // every key was passed
  if (snap.passed_any && key <= std::string_view(snap.last_key)) return std::nullopt;
  auto at = snap.pre_images.lower_bound(key);
  if (at != snap.pre_images.end() && at->first == key) return std::nullopt;  // the older one wins
  return at;
}

namespace {

// One entry of an entry piece: bytes key, bytes value, varint version.
size_t snapshot_entry_size(std::string_view key, std::string_view value, uint64_t version) {
  return bytes_size(key) + bytes_size(value) + varint_size(version);
}

// The largest entry fits a piece whole, so a piece never needs to split one.
static_assert(10 + limits::key_bytes_max + 10 + limits::value_bytes_max + 10 <=
              limits::snapshot_piece_bytes_max);

}  // namespace

// The next live entry and the next pre-image are merged in key order; a key
// with a pre-image is produced as the pre-image says (or skipped, if it was
// absent), and its live entry, if any, is passed over. Pre-images the cursor
// passed are dropped at the end of the call, which keeps the views into them
// valid until then and returns their memory as the cursor goes.
bool KvApp::snapshot_next(std::string& out, size_t bytes_hint) {
  MAROON_ASSERT(snapshot_ != nullptr);
  Snapshot& snap = *snapshot_;
  if (!snap.header_produced) {
    ByteWriter w(out);
    w.u8(kSnapshotFormatVersion);
    w.varint(snap.entries);
    w.varint(snap.mutations);
    w.varint(snap.deleted_version_max);
    w.u64(snap.hash);
    snap.header_produced = true;
    return true;
  }
  if (snap.done) return false;

  const size_t budget = std::min(std::max<size_t>(bytes_hint, 1), limits::snapshot_piece_bytes_max);
  Map& pre = snap.pre_images;
  // Mutations since the last call may have erased any node: resume by key.
  auto live = snap.passed_any ? map_.upper_bound(snap.last_key) : map_.begin();
  auto saved = pre.begin();  // every pre-image is above last_key
  MAROON_ASSERT(saved == pre.end() || !snap.passed_any || saved->first > snap.last_key);
  const size_t start = out.size();
  std::string_view passed;  // the last key this call passed, if any
  bool passed_one = false;
  ByteWriter w(out);
  for (;;) {
    const bool have_live = live != map_.end();
    const bool have_saved = saved != pre.end();
    if (!have_live && !have_saved) {
      snap.done = true;
      break;
    }
    const bool use_saved = have_saved && (!have_live || saved->first <= live->first);
    const std::string& key = use_saved ? saved->first : live->first;
    const Entry& e = use_saved ? saved->second : live->second;
    if (e.version != 0) {  // 0: absent when the snapshot began
      const size_t appended = out.size() - start;
      if (appended > 0 && appended + snapshot_entry_size(key, e.value, e.version) >
                              limits::snapshot_piece_bytes_max) {
        break;  // not passed: the next piece starts with it
      }
      MAROON_ASSERT(e.version <= snap.mutations);
      w.bytes(key);
      w.bytes(e.value);
      w.varint(e.version);
    }
    passed = key;
    passed_one = true;
    if (use_saved) {
      // A live entry of the same key changed since the snapshot began: not produced.
      if (have_live && live->first == saved->first) ++live;
      ++saved;
    } else {
      ++live;
    }
    if (out.size() - start >= budget) break;
  }
  if (passed_one) {
    snap.last_key.assign(passed);
    snap.passed_any = true;
  }
  pre.erase(pre.begin(), saved);
  if (out.size() == start) {
    // Nothing left but pre-images of keys that were absent.
    MAROON_ASSERT(snap.done);
    return false;
  }
  MAROON_ASSERT(out.size() - start <= limits::snapshot_piece_bytes_max);
  return true;
}

void KvApp::clear_state() {
  index_.clear();
  map_.clear();
  state_hash_ = 0;
  mutations_ = 0;
  deleted_version_max_ = 0;
}

Status KvApp::restore(SnapshotPieces& pieces) {
  MAROON_ASSERT_MSG(snapshot_ == nullptr, "restore while a kv snapshot is open");
  clear_state();
  Status s = restore_pieces(pieces);
  if (!s) clear_state();  // not half a state: an empty app, as a new one
  return s;
}

namespace {

// A `bytes` field of an entry piece, with a message that says which.
Status read_snapshot_bytes(ByteReader& r, std::string_view& out, size_t bytes_max, const char* what,
                           uint64_t entry) {
  uint64_t n = 0;
  if (!r.varint(n)) {
    return corruption(fmt::format("kv snapshot entry {}: truncated {} length", entry, what));
  }
  if (n > bytes_max) {
    return corruption(fmt::format("kv snapshot entry {}: {} is {} bytes; the limit is {}", entry,
                                  what, n, bytes_max));
  }
  if (!r.raw(out, n)) {
    return corruption(fmt::format("kv snapshot entry {}: truncated {}", entry, what));
  }
  return Status::ok();
}

}  // namespace

// Entries arrive in ascending key order, so each goes in at the end of map_
// in O(1); the previous key is map_'s last. Nothing is allocated ahead from
// the header's count, which is only trusted once the entries match it.
Status KvApp::restore_pieces(SnapshotPieces& pieces) {
  Result<std::optional<std::string_view>> header = pieces.next();
  if (!header) return header.status();
  if (!*header) return corruption("kv snapshot has no pieces (its header is missing)");
  ByteReader hr(**header);
  uint8_t format = 0;
  uint64_t entries = 0, mutations = 0, deleted_version_max = 0, hash = 0;
  if (!hr.u8(format)) return corruption("kv snapshot header is empty");
  if (format != kSnapshotFormatVersion) {
    return corruption(fmt::format("unsupported kv snapshot format {} (expected {})", format,
                                  kSnapshotFormatVersion));
  }
  hr.varint(entries);
  hr.varint(mutations);
  hr.varint(deleted_version_max);
  hr.u64(hash);
  if (!hr.ok()) return corruption("kv snapshot header is truncated or malformed");
  if (!hr.at_end()) {
    return corruption(
        fmt::format("{} trailing bytes after the kv snapshot header", hr.remaining()));
  }
  if (deleted_version_max > mutations) {
    return corruption(
        fmt::format("kv snapshot header: deleted version max {} is above the mutation count {}",
                    deleted_version_max, mutations));
  }
  mutations_ = mutations;
  deleted_version_max_ = deleted_version_max;

  uint64_t n = 0;  // entries read so far
  for (size_t piece_no = 1;; piece_no++) {
    Result<std::optional<std::string_view>> piece = pieces.next();
    if (!piece) return piece.status();
    if (!*piece) break;
    const std::string_view bytes = **piece;
    if (bytes.empty()) return corruption(fmt::format("kv snapshot piece {} is empty", piece_no));
    if (bytes.size() > limits::snapshot_piece_bytes_max) {
      return corruption(fmt::format("kv snapshot piece {} is {} bytes; the limit is {}", piece_no,
                                    bytes.size(), limits::snapshot_piece_bytes_max));
    }
    ByteReader r(bytes);
    while (r.remaining() > 0) {
      if (n == entries) {
        return corruption(
            fmt::format("kv snapshot has more entries than the {} its header counts", entries));
      }
      std::string_view key, value;
      if (Status s = read_snapshot_bytes(r, key, limits::key_bytes_max, "key", n); !s) return s;
      if (Status s = read_snapshot_bytes(r, value, limits::value_bytes_max, "value", n); !s) {
        return s;
      }
      uint64_t version = 0;
      if (!r.varint(version)) {
        return corruption(fmt::format("kv snapshot entry {}: truncated or malformed version", n));
      }
      if (version == 0 || version > mutations) {
        return corruption(
            fmt::format("kv snapshot entry {}: version {} is outside 1..{} (the mutation count)", n,
                        version, mutations));
      }
      if (!map_.empty() && !(map_.rbegin()->first < key)) {
        return corruption(fmt::format("kv snapshot entry {}: keys are not in ascending order", n));
      }
      auto it = map_.emplace_hint(map_.end(), std::piecewise_construct, std::forward_as_tuple(key),
                                  std::forward_as_tuple(Entry{std::string(value), version}));
      index_.emplace(std::string_view(it->first), it);
      state_hash_ += entry_hash(key, value) + version_hash(key, version);
      n++;
    }
  }
  MAROON_ASSERT(index_.size() == map_.size());
  if (n != entries) {
    return corruption(fmt::format("kv snapshot has {} entries; its header counts {}", n, entries));
  }
  if (state_hash() != hash) {
    return corruption(fmt::format(
        "kv snapshot state hash is {:016x} after restoring; the snapshot recorded {:016x}",
        state_hash(), hash));
  }
  return Status::ok();
}

}  // namespace maroon::kv
