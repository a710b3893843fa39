// Encoding of VR types; the layout is documented in docs/formats/vr.md.
// Each type has a write_fields/read_fields pair, side by side, so the two
// directions can be checked against each other and against the doc.
#include "vr/codec.h"

#include <fmt/format.h>

#include <limits>
#include <optional>
#include <type_traits>
#include <utility>

#include "maroon/assert.h"
#include "common/codec.h"

// GCC 12 with ASan reports DurableState's (default-initialized) members as
// maybe uninitialized when a DurableRecord variant is moved; a known false
// positive (replica.cc has the same). Clang has no such warning group.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace maroon::vr {

namespace {

// Type bytes. Never reused; the ranges of the four kinds are disjoint.
template <typename T>
constexpr uint8_t kTypeOf = 0;
// clang-format off
template <> constexpr uint8_t kTypeOf<Prepare> = 1;
template <> constexpr uint8_t kTypeOf<PrepareOk> = 2;
template <> constexpr uint8_t kTypeOf<Commit> = 3;
template <> constexpr uint8_t kTypeOf<StartViewChange> = 4;
template <> constexpr uint8_t kTypeOf<DoViewChange> = 5;
template <> constexpr uint8_t kTypeOf<StartView> = 6;
template <> constexpr uint8_t kTypeOf<Recovery> = 7;
template <> constexpr uint8_t kTypeOf<RecoveryResponse> = 8;
template <> constexpr uint8_t kTypeOf<GetState> = 9;
template <> constexpr uint8_t kTypeOf<NewState> = 10;
template <> constexpr uint8_t kTypeOf<StartEpoch> = 11;
template <> constexpr uint8_t kTypeOf<EpochStarted> = 12;
template <> constexpr uint8_t kTypeOf<ClientRequest> = 32;
template <> constexpr uint8_t kTypeOf<ClientReply> = 33;
template <> constexpr uint8_t kTypeOf<LogSuffix> = 64;
template <> constexpr uint8_t kTypeOf<Checkpoint> = 65;
template <> constexpr uint8_t kTypeOf<DurableState> = 66;
// clang-format on

// Every alternative of a variant has its own nonzero type byte: adding a
// message or record without giving it one does not compile.
template <typename Variant, size_t... I>
constexpr bool distinct_types(std::index_sequence<I...>) {
  constexpr uint8_t types[] = {kTypeOf<std::variant_alternative_t<I, Variant>>...};
  for (size_t i = 0; i < sizeof...(I); i++) {
    if (types[i] == 0) return false;
    for (size_t j = 0; j < i; j++) {
      if (types[i] == types[j]) return false;
    }
  }
  return true;
}
static_assert(distinct_types<ReplicaMessage>(
    std::make_index_sequence<std::variant_size_v<ReplicaMessage>>{}));
static_assert(
    distinct_types<DurableRecord>(std::make_index_sequence<std::variant_size_v<DurableRecord>>{}));

// The smallest encoded entry: five one-byte fields and an empty payload. A
// log's entry count is checked against the bytes left with it before any
// vector is sized.
constexpr size_t kEntryBytesMin = 8;

bool valid_kind(EntryKind k) {
  switch (k) {
    case EntryKind::kRequest:
    case EntryKind::kReconfigure:
    case EntryKind::kRegister:
      return true;
  }
  return false;
}

bool valid_code(ReplyCode c) {
  switch (c) {
    case ReplyCode::kOk:
    case ReplyCode::kNotPrimary:
    case ReplyCode::kNewConfig:
    case ReplyCode::kInvalid:
    case ReplyCode::kBusy:
    case ReplyCode::kEvicted:
      return true;
  }
  return false;
}

// Why a member list is not acceptable, or nullptr if it is.
const char* member_list_problem(const std::vector<ReplicaId>& members, bool may_be_empty) {
  if (members.empty()) return may_be_empty ? nullptr : "empty member list";
  if (members.size() > limits::replicas_max) return "member list over replicas_max";
  for (size_t i = 0; i < members.size(); i++) {
    if (members[i].value() == 0) return "member list names replica 0";
    for (size_t j = 0; j < i; j++) {
      if (members[i] == members[j]) return "member list has a duplicate";
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Reading

// A ByteReader that remembers the first thing that went wrong, for the error.
class Decoder {
 public:
  Decoder(std::string_view in, const char* kind) : in_(in), r_(in), kind_(kind) {}

  // Records why decoding failed (the first reason wins) and returns false.
  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  bool truncated(const char* field) { return fail(fmt::format("truncated at {}", field)); }

  bool u8(uint8_t& v, const char* field) { return r_.u8(v) || truncated(field); }
  bool u32(uint32_t& v, const char* field) { return r_.u32(v) || truncated(field); }
  bool u64(uint64_t& v, const char* field) { return r_.u64(v) || truncated(field); }
  bool varint(uint64_t& v, const char* field) {
    if (r_.varint(v)) return true;
    // ByteReader fails a varint both on short input and on an 11th byte.
    return fail(fmt::format("bad varint at {}", field));
  }
  // A 64-bit protocol number, as a varint.
  template <typename N>
  bool number(N& n, const char* field) {
    static_assert(std::is_same_v<typename N::value_type, uint64_t>);
    uint64_t v = 0;
    if (!varint(v, field)) return false;
    n = N(v);
    return true;
  }
  bool flag(bool& b, const char* field) {
    uint8_t v = 0;
    if (!u8(v, field)) return false;
    if (v > 1) return fail(fmt::format("{} is {}, not 0 or 1", field, v));
    b = v == 1;
    return true;
  }
  // Length-prefixed bytes of at most max_bytes (named limit_name in errors).
  bool bytes(std::string& out, size_t max_bytes, const char* field, const char* limit_name) {
    uint64_t n = 0;
    if (!varint(n, field)) return false;
    if (n > max_bytes) return fail(fmt::format("{} of {} bytes over {}", field, n, limit_name));
    std::string_view v;
    if (!r_.raw(v, n)) return truncated(field);
    out.assign(v);
    return true;
  }
  // The bytes read since `from`, for handing a piece to another decoder.
  std::string_view since(size_t from) const { return in_.substr(from, r_.position() - from); }
  size_t position() const { return r_.position(); }
  size_t remaining() const { return r_.remaining(); }

  // The result of a decode whose fields were read with `ok`.
  Status finish(bool ok) {
    if (ok && !r_.at_end()) fail(fmt::format("{} trailing bytes", r_.remaining()));
    if (!error_.empty()) return corruption(fmt::format("vr {}: {}", kind_, error_));
    MAROON_ASSERT(ok);
    return Status::ok();
  }

 private:
  std::string_view in_;
  ByteReader r_;
  const char* kind_;
  std::string error_;
};

// ---------------------------------------------------------------------------
// Pieces shared by several types

void write_members(ByteWriter& w, const std::vector<ReplicaId>& members, bool may_be_empty) {
  MAROON_ASSERT_MSG(member_list_problem(members, may_be_empty) == nullptr,
                    member_list_problem(members, may_be_empty));
  // The same bytes as encode_members (replica.h), which reconfiguration
  // payloads use.
  w.raw(encode_members(members));
}
bool read_members(Decoder& d, std::vector<ReplicaId>& members, bool may_be_empty) {
  const size_t start = d.position();
  uint64_t n = 0;
  if (!d.varint(n, "member count")) return false;
  if (n > limits::replicas_max) return d.fail(fmt::format("{} members over replicas_max", n));
  members.clear();
  for (uint64_t i = 0; i < n; i++) {
    uint32_t id = 0;
    if (!d.u32(id, "member id")) return false;
    members.push_back(ReplicaId(id));
  }
  if (const char* problem = member_list_problem(members, may_be_empty)) return d.fail(problem);
  // And the replica's own check, so the codec never accepts a list that
  // Replica would refuse.
  if (!members.empty() && !decode_members(d.since(start))) {
    return d.fail("member list rejected by decode_members");
  }
  return true;
}

// Every write_fields and read_fields below names all fields of its type in a
// structured binding, so a field added to a message or record without being
// encoded does not compile.

void write_fields(ByteWriter& w, const Header& x) {
  const auto& [epoch, view, from] = x;
  MAROON_ASSERT(from.value() != 0);
  w.varint(epoch.value());
  w.varint(view.value());
  w.u32(from.value());
}
bool read_fields(Decoder& d, Header& x) {
  auto& [epoch, view, from] = x;
  uint32_t id = 0;
  if (!d.number(epoch, "epoch") || !d.number(view, "view") || !d.u32(id, "from")) return false;
  if (id == 0) return d.fail("message from replica 0");
  from = ReplicaId(id);
  return true;
}

// An entry's op is read by read_fields(LogSuffix), which checks it against
// the ops before it first.
void write_fields(ByteWriter& w, const Entry& x) {
  const auto& [op, view, kind, client, request, payload, session, epoch] = x;
  MAROON_ASSERT(valid_kind(kind));
  MAROON_ASSERT(payload.size() <= limits::entry_bytes_max);
  w.varint(op.value());
  w.varint(epoch.value());
  w.varint(view.value());
  w.u8(static_cast<uint8_t>(kind));
  w.varint(client.value());
  w.varint(request.value());
  w.varint(session);
  w.bytes(payload);
}
bool read_fields(Decoder& d, Entry& x) {
  auto& [op, view, kind, client, request, payload, session, epoch] = x;
  (void)op;  // already read and checked
  uint8_t k = 0;
  if (!d.number(epoch, "entry epoch") || !d.number(view, "entry view") ||
      !d.u8(k, "entry kind")) {
    return false;
  }
  kind = static_cast<EntryKind>(k);
  if (!valid_kind(kind)) return d.fail(fmt::format("unknown entry kind {}", k));
  return d.number(client, "entry client") && d.number(request, "entry request") &&
         d.varint(session, "entry session") &&
         d.bytes(payload, limits::entry_bytes_max, "entry payload", "entry_bytes_max");
}

// Entries carry their op numbers although they follow from `after`: a
// decoder that finds them out of order knows the sender (or the disk) is
// broken rather than silently renumbering.
void write_fields(ByteWriter& w, const LogSuffix& x) {
  const auto& [after, entries] = x;
  MAROON_ASSERT(entries.size() <= limits::log_ops_max);
  MAROON_ASSERT(after.value() <= std::numeric_limits<uint64_t>::max() - entries.size());
  w.varint(after.value());
  w.varint(entries.size());
  size_t payload_bytes = 0;
  for (size_t i = 0; i < entries.size(); i++) {
    MAROON_ASSERT(entries[i].op.value() == after.value() + i + 1);
    payload_bytes += entries[i].payload.size();
    write_fields(w, entries[i]);
  }
  MAROON_ASSERT(payload_bytes <= limits::log_payload_bytes_max);
}
bool read_fields(Decoder& d, LogSuffix& x) {
  auto& [after, entries] = x;
  uint64_t first = 0, count = 0;
  if (!d.varint(first, "log after") || !d.varint(count, "log entry count")) return false;
  if (count > limits::log_ops_max) {
    return d.fail(fmt::format("log of {} entries over log_ops_max", count));
  }
  if (count > d.remaining() / kEntryBytesMin) {
    return d.fail(fmt::format("log of {} entries longer than its {} bytes", count, d.remaining()));
  }
  if (count > std::numeric_limits<uint64_t>::max() - first) {
    return d.fail("log op numbers overflow");
  }
  after = OpNumber(first);
  entries.clear();
  entries.reserve(count);
  size_t payload_bytes = 0;
  for (uint64_t i = 0; i < count; i++) {
    const uint64_t due = first + i + 1;
    uint64_t op = 0;
    if (!d.varint(op, "entry op")) return false;
    if (op != due) {
      return d.fail(fmt::format("entry op {} where {} was due (not consecutive)", op, due));
    }
    Entry& e = entries.emplace_back();
    e.op = OpNumber(op);
    if (!read_fields(d, e)) return false;
    payload_bytes += e.payload.size();
    if (payload_bytes > limits::log_payload_bytes_max) {
      return d.fail("log payloads over log_payload_bytes_max");
    }
  }
  return true;
}

void write_fields(ByteWriter& w, const Checkpoint& x) {
  const auto& [op, state] = x;
  MAROON_ASSERT(state.size() <= limits::checkpoint_bytes_max);
  w.varint(op.value());
  w.bytes(state);
}
bool read_fields(Decoder& d, Checkpoint& x) {
  auto& [op, state] = x;
  return d.number(op, "checkpoint op") &&
         d.bytes(state, limits::checkpoint_bytes_max, "checkpoint state", "checkpoint_bytes_max");
}

void write_optional(ByteWriter& w, const std::optional<Checkpoint>& c) {
  w.u8(c ? 1 : 0);
  if (c) write_fields(w, *c);
}
bool read_optional(Decoder& d, std::optional<Checkpoint>& c) {
  bool present = false;
  if (!d.flag(present, "checkpoint presence")) return false;
  c.reset();
  if (!present) return true;
  return read_fields(d, c.emplace());
}

// ---------------------------------------------------------------------------
// Messages

void write_fields(ByteWriter& w, const Prepare& x) {
  const auto& [h, commit, log] = x;
  write_fields(w, h);
  w.varint(commit.value());
  write_fields(w, log);
}
bool read_fields(Decoder& d, Prepare& x) {
  auto& [h, commit, log] = x;
  return read_fields(d, h) && d.number(commit, "commit") && read_fields(d, log);
}

void write_fields(ByteWriter& w, const PrepareOk& x) {
  const auto& [h, op, lease_stamp] = x;
  write_fields(w, h);
  w.varint(op.value());
  w.u64(lease_stamp);
}
bool read_fields(Decoder& d, PrepareOk& x) {
  auto& [h, op, lease_stamp] = x;
  return read_fields(d, h) && d.number(op, "op") && d.u64(lease_stamp, "lease stamp");
}

void write_fields(ByteWriter& w, const Commit& x) {
  const auto& [h, commit, lease_stamp] = x;
  write_fields(w, h);
  w.varint(commit.value());
  w.u64(lease_stamp);
}
bool read_fields(Decoder& d, Commit& x) {
  auto& [h, commit, lease_stamp] = x;
  return read_fields(d, h) && d.number(commit, "commit") && d.u64(lease_stamp, "lease stamp");
}

void write_fields(ByteWriter& w, const StartViewChange& x) {
  const auto& [h, stuck] = x;
  write_fields(w, h);
  w.u8(stuck ? 1 : 0);
}
bool read_fields(Decoder& d, StartViewChange& x) {
  auto& [h, stuck] = x;
  return read_fields(d, h) && d.flag(stuck, "stuck");
}

void write_fields(ByteWriter& w, const DoViewChange& x) {
  const auto& [h, last_normal_view, commit, log] = x;
  write_fields(w, h);
  w.varint(last_normal_view.value());
  w.varint(commit.value());
  write_fields(w, log);
}
bool read_fields(Decoder& d, DoViewChange& x) {
  auto& [h, last_normal_view, commit, log] = x;
  return read_fields(d, h) && d.number(last_normal_view, "last normal view") &&
         d.number(commit, "commit") && read_fields(d, log);
}

void write_fields(ByteWriter& w, const StartView& x) {
  const auto& [h, commit, log] = x;
  write_fields(w, h);
  w.varint(commit.value());
  write_fields(w, log);
}
bool read_fields(Decoder& d, StartView& x) {
  auto& [h, commit, log] = x;
  return read_fields(d, h) && d.number(commit, "commit") && read_fields(d, log);
}

void write_fields(ByteWriter& w, const Recovery& x) {
  const auto& [h, nonce, after] = x;
  write_fields(w, h);
  w.u64(nonce);
  w.varint(after.value());
}
bool read_fields(Decoder& d, Recovery& x) {
  auto& [h, nonce, after] = x;
  return read_fields(d, h) && d.u64(nonce, "nonce") && d.number(after, "after");
}

void write_fields(ByteWriter& w, const RecoveryResponse& x) {
  const auto& [h, nonce, from_primary, commit, checkpoint, log] = x;
  write_fields(w, h);
  w.u64(nonce);
  w.u8(from_primary ? 1 : 0);
  w.varint(commit.value());
  write_optional(w, checkpoint);
  write_fields(w, log);
}
bool read_fields(Decoder& d, RecoveryResponse& x) {
  auto& [h, nonce, from_primary, commit, checkpoint, log] = x;
  return read_fields(d, h) && d.u64(nonce, "nonce") && d.flag(from_primary, "from primary") &&
         d.number(commit, "commit") && read_optional(d, checkpoint) && read_fields(d, log);
}

void write_fields(ByteWriter& w, const GetState& x) {
  const auto& [h, after, start_view] = x;
  write_fields(w, h);
  w.varint(after.value());
  w.u8(start_view ? 1 : 0);
}
bool read_fields(Decoder& d, GetState& x) {
  auto& [h, after, start_view] = x;
  return read_fields(d, h) && d.number(after, "after") && d.flag(start_view, "start view");
}

void write_fields(ByteWriter& w, const NewState& x) {
  const auto& [h, commit, head, checkpoint, log] = x;
  write_fields(w, h);
  w.varint(commit.value());
  w.varint(head.value());
  write_optional(w, checkpoint);
  write_fields(w, log);
}
bool read_fields(Decoder& d, NewState& x) {
  auto& [h, commit, head, checkpoint, log] = x;
  return read_fields(d, h) && d.number(commit, "commit") && d.number(head, "head") &&
         read_optional(d, checkpoint) && read_fields(d, log);
}

// old_members is empty when the epoch began without a previous group (the
// initial one, or a state that predates persisting it).
void write_fields(ByteWriter& w, const StartEpoch& x) {
  const auto& [h, op, members, old_members] = x;
  write_fields(w, h);
  w.varint(op.value());
  write_members(w, members, /*may_be_empty=*/false);
  write_members(w, old_members, /*may_be_empty=*/true);
}
bool read_fields(Decoder& d, StartEpoch& x) {
  auto& [h, op, members, old_members] = x;
  return read_fields(d, h) && d.number(op, "op") &&
         read_members(d, members, /*may_be_empty=*/false) &&
         read_members(d, old_members, /*may_be_empty=*/true);
}

void write_fields(ByteWriter& w, const EpochStarted& x) {
  const auto& [h] = x;
  write_fields(w, h);
}
bool read_fields(Decoder& d, EpochStarted& x) {
  auto& [h] = x;
  return read_fields(d, h);
}

// ---------------------------------------------------------------------------
// Client request and reply

void write_fields(ByteWriter& w, const ClientRequest& x) {
  const auto& [client, request, kind, read_only, payload, session] = x;
  MAROON_ASSERT(valid_kind(kind));
  MAROON_ASSERT(payload.size() <= limits::entry_bytes_max);
  w.varint(client.value());
  w.varint(request.value());
  w.u8(static_cast<uint8_t>(kind));
  w.u8(read_only ? 1 : 0);  // flags: bit 0 read-only
  w.varint(session);
  w.bytes(payload);
}
bool read_fields(Decoder& d, ClientRequest& x) {
  auto& [client, request, kind, read_only, payload, session] = x;
  uint8_t k = 0, flags = 0;
  if (!d.number(client, "client") || !d.number(request, "request") || !d.u8(k, "kind") ||
      !d.u8(flags, "flags") || !d.varint(session, "session")) {
    return false;
  }
  kind = static_cast<EntryKind>(k);
  if (!valid_kind(kind)) return d.fail(fmt::format("unknown request kind {}", k));
  if (flags & ~1u) return d.fail(fmt::format("unknown flags {:#x}", flags));
  read_only = (flags & 1u) != 0;
  // A request that could never become an entry is malformed.
  return d.bytes(payload, limits::entry_bytes_max, "payload", "entry_bytes_max");
}

// Members may be empty: a replica that belongs to no group yet answers with
// none (and primary 0).
void write_fields(ByteWriter& w, const ClientReply& x) {
  const auto& [client, request, code, epoch, view, primary, members, result] = x;
  MAROON_ASSERT(valid_code(code));
  MAROON_ASSERT(result.size() <= limits::reply_bytes_max);
  w.varint(client.value());
  w.varint(request.value());
  w.u8(static_cast<uint8_t>(code));
  w.varint(epoch.value());
  w.varint(view.value());
  w.u32(primary.value());
  write_members(w, members, /*may_be_empty=*/true);
  w.bytes(result);
}
bool read_fields(Decoder& d, ClientReply& x) {
  auto& [client, request, code, epoch, view, primary, members, result] = x;
  uint8_t c = 0;
  uint32_t p = 0;
  if (!d.number(client, "client") || !d.number(request, "request") || !d.u8(c, "code")) {
    return false;
  }
  code = static_cast<ReplyCode>(c);
  if (!valid_code(code)) return d.fail(fmt::format("unknown reply code {}", c));
  if (!d.number(epoch, "epoch") || !d.number(view, "view") || !d.u32(p, "primary")) return false;
  primary = ReplicaId(p);
  return read_members(d, members, /*may_be_empty=*/true) &&
         d.bytes(result, limits::reply_bytes_max, "result", "reply_bytes_max");
}

// ---------------------------------------------------------------------------
// Records (LogSuffix and Checkpoint are above)

// Both member lists may be empty, as Replica::replay accepts: members for a
// replica that never belonged to a group, old_members in the first epoch.
void write_fields(ByteWriter& w, const DurableState& x) {
  const auto& [epoch, members, view, last_normal_view, epoch_start, old_members] = x;
  w.varint(epoch.value());
  write_members(w, members, /*may_be_empty=*/true);
  w.varint(view.value());
  w.varint(last_normal_view.value());
  w.varint(epoch_start.value());
  write_members(w, old_members, /*may_be_empty=*/true);
}
bool read_fields(Decoder& d, DurableState& x) {
  auto& [epoch, members, view, last_normal_view, epoch_start, old_members] = x;
  return d.number(epoch, "epoch") && read_members(d, members, /*may_be_empty=*/true) &&
         d.number(view, "view") && d.number(last_normal_view, "last normal view") &&
         d.number(epoch_start, "epoch start") &&
         read_members(d, old_members, /*may_be_empty=*/true);
}

// ---------------------------------------------------------------------------
// Framing: format byte, type byte, fields.

template <typename T>
void write_typed(const T& value, uint8_t format, size_t bytes_max, std::string& out) {
  const size_t start = out.size();
  ByteWriter w(out);
  w.u8(format);
  w.u8(kTypeOf<T>);
  write_fields(w, value);
  MAROON_ASSERT(out.size() - start <= bytes_max);
}

// Reads the format and type bytes; false (with the reason in d) if either is
// missing or the format is not `format`.
bool read_prefix(Decoder& d, uint8_t format, uint8_t& type) {
  uint8_t f = 0;
  if (!d.u8(f, "format")) return false;
  if (f != format) return d.fail(fmt::format("unknown format {}", f));
  return d.u8(type, "type");
}

// Decodes the fields of a T as the rest of d's input.
template <typename T, typename Out>
Result<Out> read_rest(Decoder& d) {
  T value;
  bool ok = read_fields(d, value);
  if (Status s = d.finish(ok); !s) return s;
  return Out(std::move(value));
}

Status unknown_type(Decoder& d, uint8_t type) {
  d.fail(fmt::format("unknown type {}", type));
  return d.finish(false);
}

// Decodes the rest of d's input as the alternative of Variant whose type
// byte is `type`.
template <typename Variant, size_t I = 0>
Result<Variant> read_alternative(Decoder& d, uint8_t type) {
  if constexpr (I == std::variant_size_v<Variant>) {
    return unknown_type(d, type);
  } else {
    using T = std::variant_alternative_t<I, Variant>;
    if (type == kTypeOf<T>) return read_rest<T, Variant>(d);
    return read_alternative<Variant, I + 1>(d, type);
  }
}

Status too_long(const char* kind, size_t bytes, size_t bytes_max) {
  return corruption(
      fmt::format("vr {}: {} bytes over the {} an encoding can have", kind, bytes, bytes_max));
}

}  // namespace

void encode_message(const ReplicaMessage& msg, std::string& out) {
  std::visit(
      [&](const auto& m) { write_typed(m, kWireFormat, limits::message_encoded_bytes_max, out); },
      msg);
}

Result<ReplicaMessage> decode_message(std::string_view bytes) {
  if (bytes.size() > limits::message_encoded_bytes_max) {
    return too_long("message", bytes.size(), limits::message_encoded_bytes_max);
  }
  Decoder d(bytes, "message");
  uint8_t type = 0;
  if (!read_prefix(d, kWireFormat, type)) return d.finish(false);
  return read_alternative<ReplicaMessage>(d, type);
}

void encode_client_request(const ClientRequest& req, std::string& out) {
  write_typed(req, kWireFormat, limits::client_request_encoded_bytes_max, out);
}

Result<ClientRequest> decode_client_request(std::string_view bytes) {
  if (bytes.size() > limits::client_request_encoded_bytes_max) {
    return too_long("client request", bytes.size(), limits::client_request_encoded_bytes_max);
  }
  Decoder d(bytes, "client request");
  uint8_t type = 0;
  if (!read_prefix(d, kWireFormat, type)) return d.finish(false);
  if (type != kTypeOf<ClientRequest>) return unknown_type(d, type);
  return read_rest<ClientRequest, ClientRequest>(d);
}

void encode_client_reply(const ClientReply& reply, std::string& out) {
  write_typed(reply, kWireFormat, limits::client_reply_encoded_bytes_max, out);
}

Result<ClientReply> decode_client_reply(std::string_view bytes) {
  if (bytes.size() > limits::client_reply_encoded_bytes_max) {
    return too_long("client reply", bytes.size(), limits::client_reply_encoded_bytes_max);
  }
  Decoder d(bytes, "client reply");
  uint8_t type = 0;
  if (!read_prefix(d, kWireFormat, type)) return d.finish(false);
  if (type != kTypeOf<ClientReply>) return unknown_type(d, type);
  return read_rest<ClientReply, ClientReply>(d);
}

void encode_record(const DurableRecord& record, std::string& out) {
  std::visit(
      [&](const auto& r) { write_typed(r, kRecordFormat, limits::record_encoded_bytes_max, out); },
      record);
}

Result<DurableRecord> decode_record(std::string_view bytes) {
  if (bytes.size() > limits::record_encoded_bytes_max) {
    return too_long("record", bytes.size(), limits::record_encoded_bytes_max);
  }
  Decoder d(bytes, "record");
  uint8_t type = 0;
  if (!read_prefix(d, kRecordFormat, type)) return d.finish(false);
  return read_alternative<DurableRecord>(d, type);
}

}  // namespace maroon::vr
