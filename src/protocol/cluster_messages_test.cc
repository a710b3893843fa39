#include "protocol/cluster_messages.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <functional>
#include <limits>
#include <vector>

#include "common/codec.h"

namespace maroon::protocol {
namespace {

constexpr uint64_t kRangeLimit = uint64_t{1} << (64 - kRangeBits);  // first invalid range

// Strips the frame around an encoded message, checking its type.
std::string payload_of(const std::string& wire, FrameType type) {
  Frame f;
  size_t consumed = 0;
  MAROON_ASSERT(decode_frame(wire, f, consumed, nullptr) == DecodeResult::kFrame);
  MAROON_ASSERT(consumed == wire.size());
  MAROON_ASSERT(f.type == static_cast<uint8_t>(type));
  return std::string(f.payload);
}

// ---------------------------------------------------------------------------
// Generators: numbers favour the edges of the valid ranges and varint widths.

rc::Gen<RangeId> gen_range() {
  return rc::gen::map(
      rc::gen::oneOf(rc::gen::inRange<uint64_t>(1, 300), rc::gen::inRange<uint64_t>(1, kRangeLimit),
                     rc::gen::just(kRangeLimit - 1)),
      [](uint64_t v) { return RangeId(v); });
}

rc::Gen<uint64_t> gen_offset(uint64_t min) {
  return rc::gen::oneOf(rc::gen::inRange<uint64_t>(min, 300),
                        rc::gen::inRange<uint64_t>(min, kOffsetMax + 1), rc::gen::just(kOffsetMax));
}

rc::Gen<TxId> gen_tx_id() {
  return rc::gen::exec([] { return TxId::make(*gen_range(), *gen_offset(1)); });
}

rc::Gen<std::string> gen_bytes() { return rc::gen::resize(64, rc::gen::string<std::string>()); }

rc::Gen<TxMsg> gen_tx() {
  return rc::gen::exec([] {
    return TxMsg{*gen_tx_id(), AppId(*rc::gen::arbitrary<uint32_t>()), *gen_bytes()};
  });
}

rc::Gen<TxResult> gen_result() {
  return rc::gen::exec([] {
    const bool expired = *rc::gen::arbitrary<bool>();
    return TxResult{*gen_tx_id(), expired ? std::string() : *gen_bytes(), expired};
  });
}

template <typename T>
rc::Gen<std::vector<T>> gen_batch(rc::Gen<T> item, size_t min) {
  return rc::gen::exec([item, min] {
    const size_t n = *rc::gen::inRange<size_t>(min, 20);
    return *rc::gen::container<std::vector<T>>(n, item);
  });
}

rc::Gen<Offsets> gen_offsets() {
  return rc::gen::exec([] {
    Offsets m;
    m.full = *rc::gen::arbitrary<bool>();
    m.hash_epoch = EpochNumber(*rc::gen::arbitrary<uint64_t>());
    m.state_hash = *rc::gen::arbitrary<uint64_t>();
    const size_t n = *rc::gen::inRange<size_t>(0, 20);
    uint64_t range = 0;
    for (size_t k = 0; k < n && range < kRangeLimit - 1; k++) {
      range = *rc::gen::inRange<uint64_t>(range + 1, std::min(range + 1000, kRangeLimit));
      m.durable.emplace_back(RangeId(range), *gen_offset(0));
    }
    if (*rc::gen::arbitrary<bool>()) {
      for (const auto& [r, offset] : m.durable) {
        const size_t count = *rc::gen::inRange<size_t>(0, std::min<uint64_t>(offset, 5) + 1);
        m.digests.push_back(*rc::gen::container<std::vector<uint64_t>>(
            count, rc::gen::arbitrary<uint64_t>()));
      }
    }
    return m;
  });
}

// ---------------------------------------------------------------------------
// One valid example of each decodable frame, for the rejection tests.

struct Case {
  const char* name;
  std::string payload;
  std::function<bool(std::string_view)> decodes;
};

template <typename Decode>
std::function<bool(std::string_view)> ok_fn(Decode decode) {
  return [decode](std::string_view p) { return decode(p).is_ok(); };
}

std::vector<Case> examples() {
  const TxId a = TxId::make(RangeId(3), 1), b = TxId::make(RangeId(3), kOffsetMax);
  const std::vector<TxMsg> txs{{a, AppId::kKv, "set x 1"}, {b, static_cast<AppId>(200), ""}};
  const std::vector<TxResult> results{{a, "ok", false}, {b, "", true}};
  const std::vector<TxId> ids{a, b};
  std::vector<Case> cases;
  std::string wire;
  auto add = [&](const char* name, FrameType type, auto decode) {
    cases.push_back({name, payload_of(wire, type), ok_fn(decode)});
    wire.clear();
  };
  encode_offsets({.full = true,
                  .durable = {{RangeId(1), 0}, {RangeId(300), kOffsetMax}},
                  .hash_epoch = EpochNumber(7),
                  .state_hash = 99},
                 wire);
  add("offsets", FrameType::kOffsets, decode_offsets);
  encode_tx_pull({RangeId(5), 1, 1000}, wire);
  add("tx pull", FrameType::kTxPull, decode_tx_pull);
  encode_tx_push({txs}, wire);
  add("tx push", FrameType::kTxPush, decode_tx_push);
  encode_tx_evicted({RangeId(5), 3}, wire);
  add("tx evicted", FrameType::kTxEvicted, decode_tx_evicted);
  encode_membership_note({7, MembershipNote::kHandoffWanted, EpochNumber(40)}, wire);
  add("membership note", FrameType::kMembershipNote, decode_membership_note);
  encode_group_members({3, {NodeId(1), NodeId(4), NodeId(5)}, "book"}, wire);
  add("group members", FrameType::kGroupMembers, decode_group_members);
  encode_txs(txs, wire);
  add("txs", FrameType::kTx, decode_txs);
  encode_lease_request({GatewayId(77), RangeId(4)}, wire);
  add("lease request", FrameType::kLeaseRequest, decode_lease_request);
  encode_renew_lease({GatewayId(77), RangeId(4)}, wire);
  add("renew lease", FrameType::kRenewLease, decode_renew_lease);
  encode_tx_acks(NodeId(2), ids, wire);
  add("tx acks", FrameType::kTxAck, decode_tx_acks);
  encode_tx_results(results, wire);
  add("tx results", FrameType::kTxResult, decode_tx_results);
  encode_lease_granted({GatewayId(77), RangeId(5)}, wire);
  add("lease granted", FrameType::kLeaseGranted, decode_lease_granted);
  encode_range_sealed({RangeId(5), 12}, wire);
  add("range sealed", FrameType::kRangeSealed, decode_range_sealed);
  return cases;
}

// ---------------------------------------------------------------------------
// Round trips.

template <typename T, typename Encode, typename Decode>
void check_round_trip(const T& m, FrameType type, Encode encode, Decode decode) {
  std::string wire = "prefix";  // encoders append
  encode(m, wire);
  RC_ASSERT(wire.substr(0, 6) == "prefix");
  const std::string payload = payload_of(wire.substr(6), type);
  auto d = decode(payload);
  RC_ASSERT(d.is_ok());
  RC_ASSERT(*d == m);
  for (size_t n = 0; n < payload.size(); n++) {
    RC_ASSERT(!decode(std::string_view(payload).substr(0, n)).is_ok());
  }
  RC_ASSERT(!decode(payload + '\0').is_ok());
}

TEST(ClusterMessages, OffsetsRoundTrip) {
  EXPECT_TRUE(rc::check([] {
    check_round_trip(*gen_offsets(), FrameType::kOffsets, encode_offsets, decode_offsets);
  }));
}

TEST(ClusterMessages, TxPullRoundTrips) {
  EXPECT_TRUE(rc::check([] {
    const uint64_t first = *gen_offset(1);
    const uint64_t last = *rc::gen::oneOf(rc::gen::just(first), gen_offset(first));
    check_round_trip(TxPull{*gen_range(), first, last}, FrameType::kTxPull, encode_tx_pull,
                     decode_tx_pull);
  }));
}

TEST(ClusterMessages, TxEvictedRoundTrips) {
  EXPECT_TRUE(rc::check([] {
    check_round_trip(TxEvicted{*gen_range(), *gen_offset(1)}, FrameType::kTxEvicted,
                     encode_tx_evicted, decode_tx_evicted);
  }));
}

TEST(ClusterMessages, MembershipNoteRoundTripsAndRefusesBadFields) {
  EXPECT_TRUE(rc::check([] {
    const auto kind = *rc::gen::element(MembershipNote::kHandedOff, MembershipNote::kRetired,
                                        MembershipNote::kHandoffWanted);
    check_round_trip(MembershipNote{*rc::gen::inRange<uint64_t>(1, UINT64_MAX), kind,
                                    EpochNumber(*rc::gen::arbitrary<uint64_t>())},
                     FrameType::kMembershipNote, encode_membership_note, decode_membership_note);
  }));
  auto payload = [](uint64_t config, uint8_t kind) {
    std::string s;
    ByteWriter w(s);
    w.u8(kClusterFormat);
    w.varint(config);
    w.u8(kind);
    w.varint(9);
    return s;
  };
  EXPECT_TRUE(decode_membership_note(payload(1, 3)).is_ok());
  EXPECT_FALSE(decode_membership_note(payload(0, 1)).is_ok()) << "config 0";
  EXPECT_FALSE(decode_membership_note(payload(1, 0)).is_ok()) << "kind 0";
  EXPECT_FALSE(decode_membership_note(payload(1, 4)).is_ok()) << "kind 4";
}

TEST(ClusterMessages, GroupMembersRoundTripsAndRefusesBadFields) {
  EXPECT_TRUE(rc::check([] {
    std::vector<NodeId> members;
    const auto ids = *rc::gen::unique<std::vector<uint32_t>>(rc::gen::inRange<uint32_t>(1, 64));
    RC_PRE(!ids.empty());
    for (uint32_t id : ids) members.push_back(NodeId(id));
    const auto book = *rc::gen::container<std::string>(rc::gen::arbitrary<char>());
    RC_PRE(book.size() <= kGroupBookBytesMax);
    check_round_trip(GroupMembers{*rc::gen::arbitrary<uint64_t>(), members, book},
                     FrameType::kGroupMembers, encode_group_members, decode_group_members);
  }));
  auto payload = [](std::vector<uint64_t> ids, size_t book_bytes) {
    std::string s;
    ByteWriter w(s);
    w.u8(kClusterFormat);
    w.varint(2);
    w.varint(ids.size());
    for (uint64_t id : ids) w.varint(id);
    w.bytes(std::string(book_bytes, 'b'));
    return s;
  };
  EXPECT_TRUE(decode_group_members(payload({1, 2, 63}, kGroupBookBytesMax)).is_ok());
  EXPECT_FALSE(decode_group_members(payload({}, 1)).is_ok()) << "no member";
  EXPECT_FALSE(decode_group_members(payload({1, 0}, 1)).is_ok()) << "id 0";
  EXPECT_FALSE(decode_group_members(payload({1, 64}, 1)).is_ok()) << "id 64";
  EXPECT_FALSE(decode_group_members(payload({2, 2}, 1)).is_ok()) << "listed twice";
  EXPECT_FALSE(decode_group_members(payload({1}, kGroupBookBytesMax + 1)).is_ok()) << "big book";
  EXPECT_FALSE(decode_group_members(payload({1}, 1) + "x").is_ok()) << "trailing";
}

TEST(ClusterMessages, TxPushRoundTrips) {
  EXPECT_TRUE(rc::check([] {
    check_round_trip(TxPush{*gen_batch(gen_tx(), 0)}, FrameType::kTxPush, encode_tx_push,
                     decode_tx_push);
  }));
}

TEST(ClusterMessages, TxsRoundTrip) {
  EXPECT_TRUE(rc::check([] {
    check_round_trip(
        *gen_batch(gen_tx(), 1), FrameType::kTx,
        [](const std::vector<TxMsg>& m, std::string& out) { encode_txs(m, out); }, decode_txs);
  }));
}

TEST(ClusterMessages, LeaseMessagesRoundTrip) {
  EXPECT_TRUE(rc::check([](uint64_t gw) {
    const GatewayId gateway(gw == 0 ? 1 : gw);
    const RangeId after = *rc::gen::oneOf(rc::gen::just(RangeId(0)), gen_range());
    check_round_trip(LeaseRequest{gateway, after}, FrameType::kLeaseRequest, encode_lease_request,
                     decode_lease_request);
    check_round_trip(RenewLease{gateway, *gen_range()}, FrameType::kRenewLease, encode_renew_lease,
                     decode_renew_lease);
    check_round_trip(LeaseGranted{gateway, *gen_range()}, FrameType::kLeaseGranted,
                     encode_lease_granted, decode_lease_granted);
    check_round_trip(RangeSealed{*gen_range(), *gen_offset(0)}, FrameType::kRangeSealed,
                     encode_range_sealed, decode_range_sealed);
  }));
}

TEST(ClusterMessages, TxAcksRoundTrip) {
  EXPECT_TRUE(rc::check([](uint32_t node) {
    TxAcks m{NodeId(node == 0 ? 1 : node), *gen_batch(gen_tx_id(), 1)};
    check_round_trip(
        m, FrameType::kTxAck,
        [](const TxAcks& a, std::string& out) { encode_tx_acks(a.node, a.ids, out); },
        decode_tx_acks);
  }));
}

TEST(ClusterMessages, TxResultsRoundTrip) {
  EXPECT_TRUE(rc::check([] {
    check_round_trip(
        *gen_batch(gen_result(), 1), FrameType::kTxResult,
        [](const std::vector<TxResult>& m, std::string& out) { encode_tx_results(m, out); },
        decode_tx_results);
  }));
}

TEST(ClusterMessages, VrPayloadIsTheBytesAsIs) {
  EXPECT_TRUE(rc::check([](std::string bytes) {
    std::string wire;
    encode_vr(bytes, wire);
    RC_ASSERT(payload_of(wire, FrameType::kVr) == bytes);
  }));
}

TEST(ClusterMessages, EncodedSizesMatchTheEncoding) {
  EXPECT_TRUE(rc::check([] {
    const auto txs = *gen_batch(gen_tx(), 1);
    const auto results = *gen_batch(gen_result(), 1);
    std::string wire;
    encode_txs(txs, wire);
    size_t bytes = 0;
    for (const auto& tx : txs) bytes += encoded_tx_bytes(tx);
    // format byte + one-byte count (< 128 items) + items.
    RC_ASSERT(payload_of(wire, FrameType::kTx).size() == 1 + 1 + bytes);
    wire.clear();
    encode_tx_results(results, wire);
    bytes = 0;
    for (const auto& r : results) bytes += encoded_result_bytes(r);
    RC_ASSERT(payload_of(wire, FrameType::kTxResult).size() == 1 + 1 + bytes);
  }));
}

// ---------------------------------------------------------------------------
// Boundaries.

TEST(ClusterMessages, EmptyBatches) {
  std::string wire;
  encode_tx_push({}, wire);
  auto push = decode_tx_push(payload_of(wire, FrameType::kTxPush));
  ASSERT_TRUE(push.is_ok());
  EXPECT_TRUE(push->txs.empty());

  // kTx, kTxAck and kTxResult are never sent empty: a format byte and count 0.
  const std::string empty{static_cast<char>(kClusterFormat), 0};
  EXPECT_FALSE(decode_txs(empty).is_ok());
  EXPECT_FALSE(decode_tx_results(empty).is_ok());
  EXPECT_FALSE(decode_tx_acks(std::string{static_cast<char>(kClusterFormat), 1, 0}).is_ok());
  EXPECT_DEATH(encode_txs({}, wire), "assertion failed");
  EXPECT_DEATH(encode_tx_acks(NodeId(1), {}, wire), "assertion failed");
  EXPECT_DEATH(encode_tx_results({}, wire), "assertion failed");

  wire.clear();
  encode_offsets({}, wire);
  auto offsets = decode_offsets(payload_of(wire, FrameType::kOffsets));
  ASSERT_TRUE(offsets.is_ok());
  EXPECT_EQ(*offsets, Offsets{});
}

TEST(ClusterMessages, FullBatchesDecodeAndOneMoreIsRejected) {
  std::vector<TxId> ids;
  std::vector<TxMsg> txs;
  std::vector<TxResult> results;
  for (uint64_t k = 1; k <= cluster_batch_txs_max; k++) {
    ids.push_back(TxId::make(RangeId(1), k));
    txs.push_back({ids.back(), AppId::kKv, "op"});
    results.push_back({ids.back(), "r", false});
  }
  std::string wire;
  encode_tx_acks(NodeId(1), ids, wire);
  std::string acks = payload_of(wire, FrameType::kTxAck);
  ASSERT_TRUE(decode_tx_acks(acks).is_ok());
  wire.clear();
  encode_txs(txs, wire);
  std::string tx_payload = payload_of(wire, FrameType::kTx);
  ASSERT_TRUE(decode_txs(tx_payload).is_ok());
  wire.clear();
  encode_tx_push({txs}, wire);
  ASSERT_TRUE(decode_tx_push(payload_of(wire, FrameType::kTxPush)).is_ok());
  wire.clear();
  encode_tx_results(results, wire);
  ASSERT_TRUE(decode_tx_results(payload_of(wire, FrameType::kTxResult)).is_ok());

  // Hand-built: one item over the bound, with the bytes to hold it.
  auto over = [](size_t header, std::string_view item) {
    std::string p;
    ByteWriter w(p);
    w.u8(kClusterFormat);
    if (header) w.varint(header);
    w.varint(cluster_batch_txs_max + 1);
    for (size_t k = 0; k <= cluster_batch_txs_max; k++) w.raw(item);
    return p;
  };
  std::string one_tx;
  ByteWriter(one_tx).u64(TxId::make(RangeId(1), 1).raw());
  std::string id8 = one_tx;
  one_tx += std::string{1, 0};  // app 1, empty op
  EXPECT_FALSE(decode_txs(over(0, one_tx)).is_ok());
  EXPECT_FALSE(decode_tx_push(over(0, one_tx)).is_ok());
  EXPECT_FALSE(decode_tx_results(over(0, id8 + std::string{0, 0})).is_ok());
  EXPECT_FALSE(decode_tx_acks(over(1, id8)).is_ok());
  EXPECT_DEATH(
      encode_tx_acks(NodeId(1), std::vector<TxId>(cluster_batch_txs_max + 1, ids[0]), wire),
      "assertion failed");
}

TEST(ClusterMessages, OffsetsBound) {
  Offsets m;
  for (uint64_t k = 1; k <= offsets_ranges_max; k++) m.durable.emplace_back(RangeId(k), k);
  std::string wire;
  encode_offsets(m, wire);
  auto d = decode_offsets(payload_of(wire, FrameType::kOffsets));
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(*d, m);
  m.durable.emplace_back(RangeId(offsets_ranges_max + 1), 1);
  EXPECT_DEATH(encode_offsets(m, wire), "assertion failed");
  // Hand-built one over the bound.
  std::string p;
  ByteWriter w(p);
  w.u8(kClusterFormat);
  w.u8(0);
  w.varint(0);
  w.u64(0);
  w.varint(offsets_ranges_max + 1);
  for (uint64_t k = 1; k <= offsets_ranges_max + 1; k++) {
    w.varint(k);
    w.varint(1);
  }
  EXPECT_FALSE(decode_offsets(p).is_ok());
}

TEST(ClusterMessages, OpAndReplySizeLimits) {
  const TxId id = TxId::make(RangeId(1), 1);
  std::string wire;
  TxMsg tx{id, AppId::kKv, std::string(limits::op_bytes_max, 'o')};
  encode_txs({&tx, 1}, wire);
  std::string p = payload_of(wire, FrameType::kTx);
  auto d = decode_txs(p);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->at(0), tx);
  // One more byte: patch the length varint and append a byte.
  std::string over;
  ByteWriter w(over);
  w.u8(kClusterFormat);
  w.varint(1);
  w.u64(id.raw());
  w.u8(1);
  w.bytes(std::string(limits::op_bytes_max + 1, 'o'));
  EXPECT_FALSE(decode_txs(over).is_ok());
  EXPECT_FALSE(decode_tx_push(over).is_ok());
  tx.op.push_back('o');
  EXPECT_DEATH(encode_txs({&tx, 1}, wire), "assertion failed");

  wire.clear();
  TxResult res{id, std::string(limits::reply_bytes_max, 'r'), false};
  encode_tx_results({&res, 1}, wire);
  auto dr = decode_tx_results(payload_of(wire, FrameType::kTxResult));
  ASSERT_TRUE(dr.is_ok());
  EXPECT_EQ(dr->at(0), res);
  over.clear();
  w.u8(kClusterFormat);
  w.varint(1);
  w.u64(id.raw());
  w.u8(0);
  w.bytes(std::string(limits::reply_bytes_max + 1, 'r'));
  EXPECT_FALSE(decode_tx_results(over).is_ok());
}

TEST(ClusterMessages, BatchHasRoom) {
  EXPECT_TRUE(batch_has_room(0, 0, limits::reply_bytes_max + 100));  // one item always goes
  EXPECT_TRUE(batch_has_room(1, 100, cluster_batch_bytes_max - 100));
  EXPECT_FALSE(batch_has_room(1, 100, cluster_batch_bytes_max - 99));
  EXPECT_FALSE(batch_has_room(cluster_batch_txs_max, 0, 1));
  // A batch over the byte bound (but for one item) trips the encoder.
  std::vector<TxMsg> txs(2, TxMsg{TxId::make(RangeId(1), 1), AppId::kKv,
                                  std::string(cluster_batch_bytes_max / 2, 'o')});
  std::string wire;
  EXPECT_DEATH(encode_txs(txs, wire), "assertion failed");
  // ... and the decoders refuse it, for every batched frame.
  auto batch_bytes = [&] { return encoded_tx_bytes(txs[0]) + encoded_tx_bytes(txs[1]); };
  txs[1].op.resize(cluster_batch_bytes_max - encoded_tx_bytes(txs[0]) - 9);
  while (batch_bytes() > cluster_batch_bytes_max) txs[1].op.pop_back();
  ASSERT_EQ(batch_bytes(), cluster_batch_bytes_max);
  encode_txs(txs, wire);
  std::string p = payload_of(wire, FrameType::kTx);
  ASSERT_TRUE(decode_txs(p).is_ok());
  txs[1].op.push_back('o');
  std::string over;
  ByteWriter w(over);
  w.u8(kClusterFormat);
  w.varint(2);
  for (const auto& tx : txs) {
    w.u64(tx.id.raw());
    w.u32(tx.app.value());
    w.bytes(tx.op);
  }
  EXPECT_FALSE(decode_txs(over).is_ok());
  EXPECT_FALSE(decode_tx_push(over).is_ok());
  std::vector<TxResult> results(2, TxResult{TxId::make(RangeId(1), 1), txs[0].op, false});
  results[1].reply = txs[1].op;
  // A result is 3 bytes shorter than a tx (a u8 of flags for a u32 app):
  // one byte over the bound again.
  auto result_bytes = [&] {
    return encoded_result_bytes(results[0]) + encoded_result_bytes(results[1]);
  };
  while (result_bytes() <= cluster_batch_bytes_max) results[1].reply.push_back('o');
  ASSERT_EQ(result_bytes(), cluster_batch_bytes_max + 1);
  over.clear();
  w.u8(kClusterFormat);
  w.varint(2);
  for (const auto& r : results) {
    w.u64(r.id.raw());
    w.u8(0);
    w.bytes(r.reply);
  }
  EXPECT_FALSE(decode_tx_results(over).is_ok());
  results[1].reply.pop_back();
  wire.clear();
  encode_tx_results(results, wire);
  EXPECT_TRUE(decode_tx_results(payload_of(wire, FrameType::kTxResult)).is_ok());
}

// ---------------------------------------------------------------------------
// Rejections.

TEST(ClusterMessages, EveryStrictPrefixAndTrailingByteIsRejected) {
  for (const Case& c : examples()) {
    ASSERT_TRUE(c.decodes(c.payload)) << c.name;
    for (size_t n = 0; n < c.payload.size(); n++) {
      EXPECT_FALSE(c.decodes(std::string_view(c.payload).substr(0, n))) << c.name << " " << n;
    }
    EXPECT_FALSE(c.decodes(c.payload + std::string(1, '\0'))) << c.name;
    std::string bad = c.payload;
    bad[0] = static_cast<char>(kClusterFormat + 1);
    EXPECT_FALSE(c.decodes(bad)) << c.name << " bad format";
  }
}

TEST(ClusterMessages, ZeroAndOutOfRangeIdsAreRejected) {
  auto p = [](auto&&... fields) {
    std::string s;
    ByteWriter w(s);
    w.u8(kClusterFormat);
    (fields(w), ...);
    return s;
  };
  auto v = [](uint64_t x) { return [x](ByteWriter& w) { w.varint(x); }; };
  auto u64 = [](uint64_t x) { return [x](ByteWriter& w) { w.u64(x); }; };
  auto u8 = [](uint8_t x) { return [x](ByteWriter& w) { w.u8(x); }; };
  auto u32 = [](uint32_t x) { return [x](ByteWriter& w) { w.u32(x); }; };
  const uint64_t good_id = TxId::make(RangeId(1), 1).raw();
  const uint64_t offset0 = TxId::make(RangeId(1), 1).raw() - 1;  // range 1, offset 0
  const uint64_t range0 = 5;                                     // range 0, offset 5

  // Sanity: the hand-built layouts decode with good values.
  ASSERT_TRUE(decode_tx_pull(p(v(1), v(1), v(1))).is_ok());
  ASSERT_TRUE(decode_tx_evicted(p(v(1), v(1))).is_ok());
  ASSERT_TRUE(decode_range_sealed(p(v(1), v(0))).is_ok());
  ASSERT_TRUE(decode_lease_request(p(u64(1), v(0))).is_ok());
  ASSERT_TRUE(decode_renew_lease(p(u64(1), v(1))).is_ok());
  ASSERT_TRUE(decode_txs(p(v(1), u64(good_id), u32(AppId::kKv.value()), v(0))).is_ok());
  ASSERT_TRUE(decode_tx_acks(p(v(1), v(1), u64(good_id))).is_ok());
  ASSERT_TRUE(decode_tx_results(p(v(1), u64(good_id), u8(0), v(0))).is_ok());
  ASSERT_TRUE(decode_offsets(p(u8(0), v(0), u64(0), v(1), v(1), v(kOffsetMax))).is_ok());

  EXPECT_FALSE(decode_tx_pull(p(v(0), v(1), v(1))).is_ok());            // range 0
  EXPECT_FALSE(decode_tx_pull(p(v(kRangeLimit), v(1), v(1))).is_ok());  // range too big
  EXPECT_FALSE(decode_tx_pull(p(v(1), v(0), v(1))).is_ok());            // first 0
  EXPECT_FALSE(decode_tx_pull(p(v(1), v(2), v(1))).is_ok());            // first > last
  EXPECT_FALSE(decode_tx_pull(p(v(1), v(1), v(kOffsetMax + 1))).is_ok());
  EXPECT_FALSE(decode_tx_evicted(p(v(0), v(1))).is_ok());  // range 0
  EXPECT_FALSE(decode_tx_evicted(p(v(1), v(0))).is_ok());  // offset 0
  EXPECT_FALSE(decode_tx_evicted(p(v(1), v(kOffsetMax + 1))).is_ok());
  EXPECT_FALSE(decode_range_sealed(p(v(0), v(0))).is_ok());
  EXPECT_FALSE(decode_range_sealed(p(v(1), v(kOffsetMax + 1))).is_ok());
  EXPECT_FALSE(decode_lease_request(p(u64(0), v(0))).is_ok());  // gateway 0
  EXPECT_FALSE(decode_lease_request(p(u64(1), v(kRangeLimit))).is_ok());
  EXPECT_FALSE(decode_renew_lease(p(u64(1), v(0))).is_ok());
  EXPECT_FALSE(decode_renew_lease(p(u64(0), v(1))).is_ok());
  EXPECT_FALSE(decode_lease_granted(p(u64(1), v(0))).is_ok());
  EXPECT_FALSE(decode_txs(p(v(1), u64(offset0), u32(AppId::kKv.value()), v(0))).is_ok());
  EXPECT_FALSE(decode_txs(p(v(1), u64(range0), u32(AppId::kKv.value()), v(0))).is_ok());
  EXPECT_FALSE(decode_tx_push(p(v(1), u64(offset0), u32(AppId::kKv.value()), v(0))).is_ok());
  EXPECT_FALSE(decode_tx_acks(p(v(1), v(1), u64(offset0))).is_ok());
  EXPECT_FALSE(decode_tx_acks(p(v(0), v(1), u64(good_id))).is_ok());  // node 0
  EXPECT_FALSE(decode_tx_acks(p(v(uint64_t{1} << 32), v(1), u64(good_id))).is_ok());
  EXPECT_FALSE(decode_tx_results(p(v(1), u64(offset0), u8(0), v(0))).is_ok());
  EXPECT_FALSE(decode_offsets(p(u8(0), v(0), u64(0), v(1), v(0), v(1))).is_ok());  // range 0
  EXPECT_FALSE(decode_offsets(p(u8(0), v(0), u64(0), v(1), v(1), v(kOffsetMax + 1))).is_ok());
  // Ranges must be strictly ascending.
  EXPECT_FALSE(decode_offsets(p(u8(0), v(0), u64(0), v(2), v(3), v(1), v(3), v(1))).is_ok());
  EXPECT_FALSE(decode_offsets(p(u8(0), v(0), u64(0), v(2), v(3), v(1), v(2), v(1))).is_ok());

  // Unknown flags; an expired result carrying a reply.
  EXPECT_FALSE(decode_offsets(p(u8(4), v(0), u64(0), v(0))).is_ok());
  // Digests: one range at offset 2 with two digests decodes; three are more
  // than its offsets; a count beyond the bytes left is refused.
  ASSERT_TRUE(decode_offsets(p(u8(2), v(0), u64(0), v(1), v(1), v(2), v(2), u64(7), u64(8))).is_ok());
  EXPECT_EQ(decode_offsets(p(u8(2), v(0), u64(0), v(1), v(1), v(2), v(2), u64(7), u64(8)))->digests,
            (std::vector<std::vector<uint64_t>>{{7, 8}}));
  EXPECT_FALSE(
      decode_offsets(p(u8(2), v(0), u64(0), v(1), v(1), v(2), v(3), u64(7), u64(8), u64(9)))
          .is_ok());
  EXPECT_FALSE(decode_offsets(p(u8(2), v(0), u64(0), v(1), v(1), v(9), v(2), u64(7))).is_ok());
  EXPECT_FALSE(decode_offsets(p(u8(2), v(0), u64(0), v(1), v(1), v(9), v(offsets_digests_max + 1)))
                   .is_ok());
  EXPECT_FALSE(decode_tx_results(p(v(1), u64(good_id), u8(2), v(0))).is_ok());
  EXPECT_FALSE(decode_tx_results(p(v(1), u64(good_id), u8(1), v(1), u8('r'))).is_ok());
  ASSERT_TRUE(decode_tx_results(p(v(1), u64(good_id), u8(1), v(0))).is_ok());

  // A count larger than the bytes could hold, far under the bound.
  EXPECT_FALSE(decode_txs(p(v(100), u64(good_id), u32(AppId::kKv.value()), v(0))).is_ok());
  EXPECT_FALSE(decode_tx_acks(p(v(1), v(2), u64(good_id))).is_ok());
  EXPECT_FALSE(decode_offsets(p(u8(0), v(0), u64(0), v(3), v(1), v(1))).is_ok());
  // A huge count fails before anything is reserved.
  EXPECT_FALSE(decode_txs(p(v(std::numeric_limits<uint64_t>::max()))).is_ok());
  EXPECT_FALSE(decode_tx_results(p(v(std::numeric_limits<uint64_t>::max()))).is_ok());
}

TEST(ClusterMessages, EncodersRefuseInvalidInput) {
  std::string wire;
  EXPECT_DEATH(encode_tx_pull({RangeId(0), 1, 1}, wire), "assertion failed");
  EXPECT_DEATH(encode_tx_pull({RangeId(1), 2, 1}, wire), "assertion failed");
  EXPECT_DEATH(encode_tx_evicted({RangeId(1), 0}, wire), "assertion failed");
  EXPECT_DEATH(encode_lease_request({GatewayId(0), RangeId(0)}, wire), "assertion failed");
  EXPECT_DEATH(encode_range_sealed({RangeId(1), kOffsetMax + 1}, wire), "assertion failed");
  EXPECT_DEATH(encode_tx_acks(NodeId(1), std::vector<TxId>{TxId(5)}, wire), "assertion failed");
  EXPECT_DEATH(
      encode_tx_results(std::vector<TxResult>{{TxId::make(RangeId(1), 1), "r", true}}, wire),
      "assertion failed");
  EXPECT_DEATH(encode_offsets({.durable = {{RangeId(2), 1}, {RangeId(1), 1}}}, wire),
               "assertion failed");
}

TEST(ClusterMessages, ArbitraryBytesNeverCrash) {
  EXPECT_TRUE(rc::check([](std::string bytes) {
    // Half the time, a valid format byte so the decoders get past it.
    if (!bytes.empty() && *rc::gen::arbitrary<bool>()) bytes[0] = static_cast<char>(kClusterFormat);
    (void)decode_offsets(bytes).is_ok();
    (void)decode_tx_pull(bytes).is_ok();
    (void)decode_tx_push(bytes).is_ok();
    (void)decode_tx_evicted(bytes).is_ok();
    (void)decode_txs(bytes).is_ok();
    (void)decode_lease_request(bytes).is_ok();
    (void)decode_renew_lease(bytes).is_ok();
    (void)decode_tx_acks(bytes).is_ok();
    (void)decode_tx_results(bytes).is_ok();
    (void)decode_lease_granted(bytes).is_ok();
    (void)decode_range_sealed(bytes).is_ok();
  }));
}

}  // namespace
}  // namespace maroon::protocol
