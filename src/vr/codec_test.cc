#include "vr/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <array>
#include <limits>
#include <set>

#include "common/codec.h"

namespace maroon::vr {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// ---------------------------------------------------------------------------
// Generators. Numbers favour the edges of varint widths; payloads stay small
// (the limits have their own tests below).

rc::Gen<uint64_t> gen_u64() {
  return rc::gen::oneOf(rc::gen::arbitrary<uint64_t>(),
                        rc::gen::elementOf(std::vector<uint64_t>{0, 1, 127, 128, 16383, 16384,
                                                                 uint64_t{1} << 63, kU64Max}));
}

template <typename N>
rc::Gen<N> gen_number() {
  return rc::gen::map(gen_u64(), [](uint64_t v) { return N(v); });
}

rc::Gen<ReplicaId> gen_replica_id() {
  return rc::gen::map(
      rc::gen::oneOf(rc::gen::inRange<uint32_t>(1, 16), rc::gen::inRange<uint32_t>(1, UINT32_MAX),
                     rc::gen::just(uint32_t{UINT32_MAX})),
      [](uint32_t v) { return ReplicaId(v); });
}

rc::Gen<std::vector<ReplicaId>> gen_members(bool may_be_empty) {
  return rc::gen::exec([may_be_empty] {
    const size_t n = *rc::gen::inRange<size_t>(may_be_empty ? 0 : 1, limits::replicas_max + 1);
    std::vector<ReplicaId> members;
    while (members.size() < n) {
      ReplicaId r = *gen_replica_id();
      if (std::find(members.begin(), members.end(), r) == members.end()) members.push_back(r);
    }
    return members;
  });
}

rc::Gen<std::string> gen_payload() { return rc::gen::resize(64, rc::gen::string<std::string>()); }

rc::Gen<Header> gen_header() {
  return rc::gen::exec([] {
    return Header{*gen_number<ConfigEpoch>(), *gen_number<ViewNumber>(), *gen_replica_id()};
  });
}

rc::Gen<LogSuffix> gen_log() {
  return rc::gen::exec([] {
    const size_t count = *rc::gen::inRange<size_t>(0, 6);
    uint64_t after = std::min(*gen_u64(), kU64Max - count);
    LogSuffix s{OpNumber(after), {}};
    for (size_t i = 0; i < count; i++) {
      s.entries.push_back(Entry{OpNumber(after + i + 1), *gen_number<ViewNumber>(),
                                *rc::gen::element(EntryKind::kRequest, EntryKind::kReconfigure,
                                                  EntryKind::kRegister),
                                *gen_number<ClientId>(), *gen_number<RequestNumber>(),
                                *gen_payload(), *gen_u64(), *gen_number<ConfigEpoch>()});
    }
    return s;
  });
}

rc::Gen<Checkpoint> gen_checkpoint() {
  return rc::gen::exec([] { return Checkpoint{*gen_number<OpNumber>(), *gen_payload()}; });
}

rc::Gen<std::optional<Checkpoint>> gen_optional_checkpoint() {
  return rc::gen::exec([]() -> std::optional<Checkpoint> {
    if (*rc::gen::arbitrary<bool>()) return *gen_checkpoint();
    return std::nullopt;
  });
}

// One generator per ReplicaMessage alternative, in variant order.
std::array<rc::Gen<ReplicaMessage>, 12> message_generators() {
  using rc::gen::exec;
  return {
      exec([]() -> ReplicaMessage {
        return Prepare{*gen_header(), *gen_number<OpNumber>(), *gen_log()};
      }),
      exec([]() -> ReplicaMessage {
        return PrepareOk{*gen_header(), *gen_number<OpNumber>(), *gen_u64()};
      }),
      exec([]() -> ReplicaMessage {
        return Commit{*gen_header(), *gen_number<OpNumber>(), *gen_u64()};
      }),
      exec([]() -> ReplicaMessage {
        return StartViewChange{*gen_header(), *rc::gen::arbitrary<bool>()};
      }),
      exec([]() -> ReplicaMessage {
        return DoViewChange{*gen_header(), *gen_number<ViewNumber>(), *gen_number<OpNumber>(),
                            *gen_log()};
      }),
      exec([]() -> ReplicaMessage {
        return StartView{*gen_header(), *gen_number<OpNumber>(), *gen_log()};
      }),
      exec([]() -> ReplicaMessage {
        return Recovery{*gen_header(), *gen_u64(), *gen_number<OpNumber>()};
      }),
      exec([]() -> ReplicaMessage {
        return RecoveryResponse{*gen_header(),
                                *gen_u64(),
                                *rc::gen::arbitrary<bool>(),
                                *gen_number<OpNumber>(),
                                *gen_optional_checkpoint(),
                                *gen_log()};
      }),
      exec([]() -> ReplicaMessage {
        return GetState{*gen_header(), *gen_number<OpNumber>(), *rc::gen::arbitrary<bool>()};
      }),
      exec([]() -> ReplicaMessage {
        return NewState{*gen_header(), *gen_number<OpNumber>(), *gen_number<OpNumber>(),
                        *gen_optional_checkpoint(), *gen_log()};
      }),
      exec([]() -> ReplicaMessage {
        return StartEpoch{*gen_header(), *gen_number<OpNumber>(), *gen_members(false),
                          *gen_members(true)};
      }),
      exec([]() -> ReplicaMessage { return EpochStarted{*gen_header()}; }),
  };
}
static_assert(std::tuple_size_v<decltype(message_generators())> ==
              std::variant_size_v<ReplicaMessage>);

// A message of the i-th type (variant order).
ReplicaMessage pick_message(size_t i) {
  static const auto gens = message_generators();
  ReplicaMessage m = *gens.at(i);
  RC_ASSERT(m.index() == i);
  return m;
}

// Indexes of every message type, each property case covering all of them.
constexpr size_t kMessageTypes = std::variant_size_v<ReplicaMessage>;

rc::Gen<ClientRequest> gen_client_request() {
  return rc::gen::exec([] {
    return ClientRequest{*gen_number<ClientId>(), *gen_number<RequestNumber>(),
                         *rc::gen::element(EntryKind::kRequest, EntryKind::kReconfigure,
                                           EntryKind::kRegister),
                         *rc::gen::arbitrary<bool>(), *gen_payload(), *gen_u64()};
  });
}

rc::Gen<ClientReply> gen_client_reply() {
  return rc::gen::exec([] {
    return ClientReply{
        *gen_number<ClientId>(),
        *gen_number<RequestNumber>(),
        *rc::gen::element(ReplyCode::kOk, ReplyCode::kNotPrimary, ReplyCode::kNewConfig,
                          ReplyCode::kInvalid, ReplyCode::kBusy, ReplyCode::kEvicted),
        *gen_number<ConfigEpoch>(),
        *gen_number<ViewNumber>(),
        ReplicaId(*rc::gen::arbitrary<uint32_t>()),  // 0 when the replica knows no group
        *gen_members(true),
        *gen_payload()};
  });
}

rc::Gen<DurableRecord> gen_record() {
  return rc::gen::exec([]() -> DurableRecord {
    switch (*rc::gen::elementOf(std::vector<int>{0, 1, 2})) {
      case 0:
        return *gen_log();
      case 1:
        return *gen_checkpoint();
      default:
        return DurableState{*gen_number<ConfigEpoch>(), *gen_members(true),
                            *gen_number<ViewNumber>(),  *gen_number<ViewNumber>(),
                            *gen_number<OpNumber>(),    *gen_members(true)};
    }
  });
}

std::string encoded(const ReplicaMessage& m) {
  std::string out;
  encode_message(m, out);
  return out;
}
std::string encoded(const ClientRequest& r) {
  std::string out;
  encode_client_request(r, out);
  return out;
}
std::string encoded(const ClientReply& r) {
  std::string out;
  encode_client_reply(r, out);
  return out;
}
std::string encoded(const DurableRecord& r) {
  std::string out;
  encode_record(r, out);
  return out;
}

// Every decoder, by kind, for the properties that hold for all four.
struct Kind {
  const char* name;
  std::set<uint8_t> types;
  bool (*decodes)(std::string_view);
  Status (*error)(std::string_view);
};

template <auto Decode>
bool decodes(std::string_view b) {
  return Decode(b).is_ok();
}
template <auto Decode>
Status error_of(std::string_view b) {
  auto r = Decode(b);
  return r.is_ok() ? Status::ok() : r.status();
}

const Kind kMessage{"message",
                    {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
                    decodes<decode_message>,
                    error_of<decode_message>};
const Kind kRequest{
    "client request", {32}, decodes<decode_client_request>, error_of<decode_client_request>};
const Kind kReply{
    "client reply", {33}, decodes<decode_client_reply>, error_of<decode_client_reply>};
const Kind kRecord{"record", {64, 65, 66}, decodes<decode_record>, error_of<decode_record>};

// Strict prefixes, a changed format byte, an unknown type byte and a
// trailing byte all fail as corruption.
void check_malformed_variants(const Kind& kind, const std::string& bytes) {
  RC_ASSERT(bytes.size() >= 2);
  for (size_t n = 0; n < bytes.size(); n++) {
    Status s = kind.error(std::string_view(bytes).substr(0, n));
    RC_ASSERT(s.code() == Code::kCorruption);
  }

  std::string bad_format = bytes;
  bad_format[0] = static_cast<char>(*rc::gen::suchThat(rc::gen::arbitrary<uint8_t>(),
                                                       [](uint8_t f) { return f != kWireFormat; }));
  RC_ASSERT(kind.error(bad_format).code() == Code::kCorruption);

  std::string bad_type = bytes;
  const uint8_t type = *rc::gen::suchThat(rc::gen::arbitrary<uint8_t>(),
                                          [&](uint8_t t) { return kind.types.count(t) == 0; });
  bad_type[1] = static_cast<char>(type);
  Status s = kind.error(bad_type);
  RC_ASSERT(s.code() == Code::kCorruption);
  RC_ASSERT(s.message().find("unknown type") != std::string::npos);

  std::string trailing = bytes + static_cast<char>(*rc::gen::arbitrary<uint8_t>());
  s = kind.error(trailing);
  RC_ASSERT(s.code() == Code::kCorruption);
  RC_ASSERT(s.message().find("trailing") != std::string::npos);

  // Type bytes are disjoint across kinds: no other decoder accepts it.
  for (const Kind* other : {&kMessage, &kRequest, &kReply, &kRecord}) {
    if (other != &kind) RC_ASSERT(!other->decodes(bytes));
  }
}
static_assert(kWireFormat == kRecordFormat, "check_malformed_variants assumes one format value");

// ---------------------------------------------------------------------------
// Round trips and malformed variants of valid encodings

RC_GTEST_PROP(VrCodec, MessagesRoundTrip, ()) {
  for (size_t i = 0; i < kMessageTypes; i++) {
    const ReplicaMessage m = pick_message(i);
    const std::string bytes = encoded(m);
    Result<ReplicaMessage> d = decode_message(bytes);
    RC_ASSERT(d.is_ok());
    RC_ASSERT(*d == m);
  }
}

RC_GTEST_PROP(VrCodec, ClientRequestsRoundTrip, ()) {
  const ClientRequest r = *gen_client_request();
  Result<ClientRequest> d = decode_client_request(encoded(r));
  RC_ASSERT(d.is_ok());
  RC_ASSERT(*d == r);
}

RC_GTEST_PROP(VrCodec, ClientRepliesRoundTrip, ()) {
  const ClientReply r = *gen_client_reply();
  Result<ClientReply> d = decode_client_reply(encoded(r));
  RC_ASSERT(d.is_ok());
  RC_ASSERT(*d == r);
}

RC_GTEST_PROP(VrCodec, RecordsRoundTrip, ()) {
  const DurableRecord r = *gen_record();
  Result<DurableRecord> d = decode_record(encoded(r));
  RC_ASSERT(d.is_ok());
  RC_ASSERT(*d == r);
}

RC_GTEST_PROP(VrCodec, MalformedMessagesFail, ()) {
  for (size_t i = 0; i < kMessageTypes; i++) {
    check_malformed_variants(kMessage, encoded(pick_message(i)));
  }
}
RC_GTEST_PROP(VrCodec, MalformedClientRequestsFail, ()) {
  check_malformed_variants(kRequest, encoded(*gen_client_request()));
}
RC_GTEST_PROP(VrCodec, MalformedClientRepliesFail, ()) {
  check_malformed_variants(kReply, encoded(*gen_client_reply()));
}
RC_GTEST_PROP(VrCodec, MalformedRecordsFail, ()) {
  check_malformed_variants(kRecord, encoded(*gen_record()));
}

RC_GTEST_PROP(VrCodec, EncodersAppend, ()) {
  const ReplicaMessage m = pick_message(*rc::gen::inRange<size_t>(0, kMessageTypes));
  std::string out = "prefix";
  encode_message(m, out);
  RC_ASSERT(out.substr(0, 6) == "prefix");
  RC_ASSERT(out.substr(6) == encoded(m));
}

RC_GTEST_PROP(VrCodec, ArbitraryBytesNeverDecodeIntoSomethingThatReencodesDifferently, ()) {
  // A cheap in-process cousin of fuzz/vr_codec_fuzz.cc.
  std::string bytes = *rc::gen::arbitrary<std::string>();
  if (!bytes.empty()) bytes[0] = static_cast<char>(kWireFormat);
  if (auto m = decode_message(bytes); m.is_ok()) RC_ASSERT(*decode_message(encoded(*m)) == *m);
  if (auto r = decode_record(bytes); r.is_ok()) RC_ASSERT(*decode_record(encoded(*r)) == *r);
}

// The bytes of one message, pinned: a change here is a format change and
// needs a new format byte (docs/formats/vr.md shows the same example).
TEST(VrCodec, CommitLayoutIsPinned) {
  Commit c{Header{ConfigEpoch(1), ViewNumber(2), ReplicaId(3)}, OpNumber(300), 0x0102030405060708};
  const std::string expected(
      "\x01\x03"                           // format 1, type 3 (Commit)
      "\x01\x02\x03\x00\x00\x00"           // epoch 1, view 2, from 3 (u32)
      "\xac\x02"                           // commit 300
      "\x08\x07\x06\x05\x04\x03\x02\x01",  // lease stamp (u64)
      18);
  EXPECT_EQ(encoded(ReplicaMessage(c)), expected);
}

// ---------------------------------------------------------------------------
// Hand-built encodings, field by field as docs/formats/vr.md describes them,
// for inputs the encoders refuse to produce.

class Raw {
 public:
  Raw& u8(uint8_t v) { return w(&ByteWriter::u8, v); }
  Raw& u32(uint32_t v) { return w(&ByteWriter::u32, v); }
  Raw& u64(uint64_t v) { return w(&ByteWriter::u64, v); }
  Raw& varint(uint64_t v) { return w(&ByteWriter::varint, v); }
  Raw& bytes(std::string_view s) {
    ByteWriter(bytes_).bytes(s);
    return *this;
  }
  Raw& message(uint8_t type, uint32_t from = 1) {
    return u8(1).u8(type).varint(0).varint(0).u32(from);
  }
  Raw& entry(uint64_t op, size_t payload_bytes = 0, uint8_t kind = 1) {
    // op, epoch, view, kind, client, request, session, payload
    return varint(op).varint(0).varint(0).u8(kind).varint(1).varint(1).varint(0).bytes(
        std::string(payload_bytes, 'x'));
  }
  Raw& members(const std::vector<uint32_t>& ids) {
    varint(ids.size());
    for (uint32_t id : ids) u32(id);
    return *this;
  }
  const std::string& str() const { return bytes_; }

 private:
  template <typename F, typename V>
  Raw& w(F f, V v) {
    ByteWriter writer(bytes_);
    (writer.*f)(v);
    return *this;
  }
  std::string bytes_;
};

// A Prepare (type 1) whose log holds entries with the given ops and payload sizes.
std::string prepare(uint64_t after, const std::vector<std::pair<uint64_t, size_t>>& entries) {
  Raw r;
  r.message(1).varint(0).varint(after).varint(entries.size());
  for (auto [op, bytes] : entries) r.entry(op, bytes);
  return r.str();
}

std::string start_epoch(const std::vector<uint32_t>& members, const std::vector<uint32_t>& old) {
  return Raw().message(11).varint(1).members(members).members(old).str();
}

std::string reply_with(const std::vector<uint32_t>& members, size_t result_bytes = 0,
                       uint8_t code = 0) {
  return Raw()
      .u8(1)      // format
      .u8(33)     // type: client reply
      .varint(1)  // client
      .varint(1)  // request
      .u8(code)   // code
      .varint(0)  // epoch
      .varint(0)  // view
      .u32(1)     // primary
      .members(members)
      .bytes(std::string(result_bytes, 'r'))  // result
      .str();
}

std::string durable_state(const std::vector<uint32_t>& members,
                          const std::vector<uint32_t>& old_members = {}) {
  return Raw()
      .u8(1)      // format
      .u8(66)     // type: DurableState
      .varint(1)  // epoch
      .members(members)
      .varint(0)  // view
      .varint(0)  // last normal view
      .varint(0)  // epoch start
      .members(old_members)
      .str();
}

// The error message of a failed decode, or "decoded" if it did not fail.
template <typename R>
std::string why(const R& result) {
  if (result.is_ok()) return "decoded";
  EXPECT_EQ(result.status().code(), Code::kCorruption);
  return result.status().message();
}

using ::testing::HasSubstr;

TEST(VrCodec, HandBuiltBaselinesDecode) {
  // The builders are right, so the failures below come from the one bad field.
  EXPECT_EQ(why(decode_message(prepare(5, {{6, 3}, {7, 0}}))), "decoded");
  EXPECT_EQ(why(decode_message(start_epoch({1, 2, 3}, {1, 2}))), "decoded");
  EXPECT_EQ(why(decode_client_reply(reply_with({1, 2}))), "decoded");
  EXPECT_EQ(why(decode_record(durable_state({4}))), "decoded");
}

TEST(VrCodec, EntryPayloadLimit) {
  Result<ReplicaMessage> at = decode_message(prepare(0, {{1, limits::entry_bytes_max}}));
  ASSERT_TRUE(at.is_ok()) << at.status().to_string();
  EXPECT_EQ(std::get<Prepare>(*at).log.entries[0].payload.size(), limits::entry_bytes_max);
  EXPECT_THAT(why(decode_message(prepare(0, {{1, limits::entry_bytes_max + 1}}))),
              HasSubstr("entry payload of 262145 bytes over entry_bytes_max"));
  // The same limit for a record, and for a client request's payload.
  std::string record =
      Raw().u8(1).u8(64).varint(0).varint(1).entry(1, limits::entry_bytes_max + 1).str();
  EXPECT_THAT(why(decode_record(record)), HasSubstr("entry_bytes_max"));
  std::string request = Raw()
                            .u8(1)
                            .u8(32)
                            .varint(1)
                            .varint(1)
                            .u8(1)
                            .u8(0)
                            .varint(0)
                            .bytes(std::string(limits::entry_bytes_max + 1, 'p'))
                            .str();
  EXPECT_THAT(why(decode_client_request(request)), HasSubstr("entry_bytes_max"));
}

TEST(VrCodec, OtherSizeLimits) {
  EXPECT_EQ(why(decode_client_reply(reply_with({}, limits::reply_bytes_max))), "decoded");
  EXPECT_THAT(why(decode_client_reply(reply_with({}, limits::reply_bytes_max + 1))),
              HasSubstr("reply_bytes_max"));
  std::string cp =
      Raw().u8(1).u8(65).varint(9).bytes(std::string(limits::checkpoint_bytes_max + 1, 's')).str();
  EXPECT_THAT(why(decode_record(cp)), HasSubstr("checkpoint_bytes_max"));
  // Longer than any encoding can be: refused before looking inside.
  EXPECT_THAT(why(decode_message(std::string(limits::message_encoded_bytes_max + 1, '\0'))),
              HasSubstr("over the"));
  EXPECT_THAT(
      why(decode_client_request(std::string(limits::client_request_encoded_bytes_max + 1, '\0'))),
      HasSubstr("over the"));
}

TEST(VrCodec, LogCountsAreBoundedBeforeAllocating) {
  EXPECT_THAT(why(decode_message(
                  Raw().message(1).varint(0).varint(0).varint(limits::log_ops_max + 1).str())),
              HasSubstr("over log_ops_max"));
  // A count the remaining bytes cannot hold: refused before reserving.
  EXPECT_THAT(why(decode_message(Raw().message(1).varint(0).varint(0).varint(1000).entry(1).str())),
              HasSubstr("longer than"));
  EXPECT_THAT(why(decode_message(prepare(kU64Max, {{0, 0}}))), HasSubstr("overflow"));
}

TEST(VrCodec, NonConsecutiveEntriesAreRejected) {
  EXPECT_THAT(why(decode_message(prepare(5, {{7, 0}}))), HasSubstr("not consecutive"));
  EXPECT_THAT(why(decode_message(prepare(5, {{6, 0}, {8, 0}}))), HasSubstr("not consecutive"));
  EXPECT_THAT(why(decode_message(prepare(5, {{6, 0}, {6, 0}}))), HasSubstr("not consecutive"));
  EXPECT_THAT(why(decode_message(prepare(5, {{6, 0}, {7, 0}, {5, 0}}))),
              HasSubstr("not consecutive"));
  std::string record = Raw().u8(1).u8(64).varint(10).varint(2).entry(11).entry(13).str();
  EXPECT_THAT(why(decode_record(record)), HasSubstr("not consecutive"));
}

TEST(VrCodec, MemberListsAreChecked) {
  EXPECT_THAT(why(decode_message(start_epoch({1, 2, 1}, {}))), HasSubstr("duplicate"));
  EXPECT_THAT(why(decode_message(start_epoch({1, 2}, {3, 3}))), HasSubstr("duplicate"));
  EXPECT_THAT(why(decode_message(start_epoch({1, 0}, {}))), HasSubstr("replica 0"));
  EXPECT_THAT(why(decode_message(start_epoch({}, {1}))), HasSubstr("empty member list"));
  EXPECT_THAT(why(decode_message(start_epoch({1, 2, 3, 4, 5, 6, 7, 8}, {}))),
              HasSubstr("over replicas_max"));
  EXPECT_EQ(why(decode_message(start_epoch({1, 2, 3, 4, 5, 6, 7}, {}))), "decoded");
  EXPECT_EQ(why(decode_message(start_epoch({2}, {}))), "decoded");

  EXPECT_THAT(why(decode_client_reply(reply_with({5, 5}))), HasSubstr("duplicate"));
  EXPECT_EQ(why(decode_client_reply(reply_with({}))), "decoded");
  EXPECT_THAT(why(decode_record(durable_state({2, 2}))), HasSubstr("duplicate"));
  EXPECT_THAT(why(decode_record(durable_state({0}))), HasSubstr("replica 0"));
  EXPECT_EQ(why(decode_record(durable_state({}))), "decoded");
  EXPECT_EQ(why(decode_record(durable_state({1, 2}, {1, 2, 3}))), "decoded");
  EXPECT_THAT(why(decode_record(durable_state({1, 2}, {3, 0}))), HasSubstr("replica 0"));
}

// A reconfiguration request: the member list, then an optional annex.
TEST(VrCodec, ReconfigurationPayloadsCarryAnOptionalAnnex) {
  const std::vector<ReplicaId> members{ReplicaId(1), ReplicaId(4)};
  auto bare = decode_reconfiguration(encode_reconfiguration(members, ""));
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(bare->members, members);
  EXPECT_EQ(bare->annex, "");
  // A request of format 1 (members only) is a reconfiguration without one.
  EXPECT_EQ(encode_reconfiguration(members, ""), encode_members(members));
  auto with = decode_reconfiguration(encode_reconfiguration(members, "book"));
  ASSERT_TRUE(with.has_value());
  EXPECT_EQ(with->members, members);
  EXPECT_EQ(with->annex, "book");
  // No trailing bytes, an empty annex spelled out, a bad list or an
  // oversize annex.
  EXPECT_FALSE(decode_reconfiguration(encode_reconfiguration(members, "book") + "x"));
  EXPECT_FALSE(decode_reconfiguration(encode_members(members) + std::string(1, '\0')));
  EXPECT_FALSE(decode_reconfiguration(encode_members({ReplicaId(2), ReplicaId(2)})));
  std::string big = encode_members(members);
  ByteWriter w(big);
  w.bytes(std::string(limits::annex_bytes_max + 1, 'a'));
  EXPECT_FALSE(decode_reconfiguration(big));
}

TEST(VrCodec, EnumsFlagsAndSendersAreChecked) {
  EXPECT_THAT(why(decode_message(Raw().message(4, /*from=*/0).str())), HasSubstr("replica 0"));
  EXPECT_THAT(why(decode_message(
                  Raw().message(1).varint(0).varint(0).varint(1).entry(1, 0, /*kind=*/4).str())),
              HasSubstr("unknown entry kind 4"));
  EXPECT_THAT(why(decode_client_request(
                  Raw().u8(1).u8(32).varint(1).varint(1).u8(1).u8(2).varint(0).bytes("").str())),
              HasSubstr("unknown flags"));
  EXPECT_THAT(why(decode_client_request(
                  Raw().u8(1).u8(32).varint(1).varint(1).u8(0).u8(0).varint(0).bytes("").str())),
              HasSubstr("unknown request kind"));
  EXPECT_THAT(why(decode_client_reply(reply_with({}, 0, /*code=*/6))),
              HasSubstr("unknown reply code 6"));
  // RecoveryResponse: from_primary and checkpoint presence are 0 or 1.
  auto recovery_response = [](uint8_t from_primary, uint8_t has_checkpoint) {
    Raw r;
    r.message(8).u64(42).u8(from_primary).varint(0).u8(has_checkpoint);
    if (has_checkpoint == 1) r.varint(0).bytes("cp");
    return r.varint(0).varint(0).str();
  };
  EXPECT_EQ(why(decode_message(recovery_response(1, 1))), "decoded");
  EXPECT_THAT(why(decode_message(recovery_response(2, 0))), HasSubstr("not 0 or 1"));
  EXPECT_THAT(why(decode_message(recovery_response(0, 7))), HasSubstr("not 0 or 1"));
  EXPECT_THAT(why(decode_message(Raw().message(4).u8(2).str())), HasSubstr("stuck is 2"));
  EXPECT_THAT(why(decode_message(Raw().message(9).varint(3).u8(3).str())),
              HasSubstr("start view is 3"));
}

TEST(VrCodec, ErrorsNameTheKind) {
  EXPECT_THAT(why(decode_message("")), HasSubstr("vr message: truncated at format"));
  EXPECT_THAT(why(decode_record("\x02\x40")), HasSubstr("vr record: unknown format 2"));
  EXPECT_THAT(why(decode_client_request("\x01")),
              HasSubstr("vr client request: truncated at type"));
}

}  // namespace
}  // namespace maroon::vr
