#include "gateway/gateway.h"

#include <gtest/gtest.h>

#include <set>

#include "maroon/limits.h"

namespace maroon {
namespace {

Gateway leased(GatewayConfig config, RangeId range) {
  Gateway g(config);
  g.take_output();
  g.on_message(LeaseGranted{config.id, range});
  return g;
}

TEST(Gateway, AsksForALeaseAtStartAndRefusesUntilGranted) {
  Gateway g(GatewayConfig{});
  auto out = g.take_output();
  ASSERT_EQ(out.to_nodes.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<LeaseRequest>(out.to_nodes[0]));
  auto r = g.submit(AppId::kKv, "op", 1);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST(Gateway, IdsAreUniqueAndFromTheLeasedRange) {
  Gateway g = leased(GatewayConfig{}, RangeId(4));
  std::set<TxId> ids;
  for (int i = 0; i < 100; i++) {
    auto id = g.submit(AppId::kKv, "op", i);
    ASSERT_TRUE(id.is_ok());
    EXPECT_EQ(id->range(), RangeId(4));
    EXPECT_TRUE(ids.insert(*id).second);
  }
}

// Before: a native request for an app the nodes do not run got an id; the
// nodes dropped it, the gateway resent it for ever, and every later tx of
// the range waited behind the gap. Now it is refused before an id is used.
TEST(Gateway, AnUnknownAppIsRefusedBeforeItGetsAnId) {
  Gateway g = leased(GatewayConfig{}, RangeId(4));
  for (AppId app : {AppId(7), AppId::kSystem}) {
    auto r = g.submit(app, "op", 1);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), Code::kNotFound);
    EXPECT_NE(r.status().message().find("unknown app"), std::string::npos);
  }
  EXPECT_TRUE(g.take_output().to_nodes.empty()) << "an unknown app's tx went to the nodes";
  auto id = g.submit(AppId::kKv, "op", 2);
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(id->offset(), 1u) << "the refused request used an offset";
}

TEST(Gateway, RollsOverToAFreshRange) {
  GatewayConfig c;
  c.offsets_per_range_max = 2;
  Gateway g = leased(c, RangeId(1));
  ASSERT_TRUE(g.submit(AppId::kKv, "a", 1).is_ok());
  ASSERT_TRUE(g.submit(AppId::kKv, "b", 2).is_ok());
  auto out = g.take_output();
  bool asked = false;
  for (auto& m : out.to_nodes) {
    if (auto* l = std::get_if<LeaseRequest>(&m)) {
      asked = true;
      EXPECT_EQ(l->after, RangeId(1));
    }
  }
  EXPECT_TRUE(asked);
  EXPECT_FALSE(g.submit(AppId::kKv, "c", 3).is_ok());
  g.on_message(LeaseGranted{c.id, RangeId(5)});
  auto id = g.submit(AppId::kKv, "c", 3);
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(*id, TxId::make(RangeId(5), 1));
}

TEST(Gateway, IgnoresStaleOrForeignLeases) {
  Gateway g = leased(GatewayConfig{}, RangeId(5));
  g.on_message(LeaseGranted{GatewayId(1), RangeId(3)});
  g.on_message(LeaseGranted{GatewayId(99), RangeId(9)});
  EXPECT_EQ(g.range(), RangeId(5));
}

TEST(Gateway, RetriesUntilAckedWithSameBytes) {
  GatewayConfig c;
  c.retry_ticks = 3;
  Gateway g = leased(c, RangeId(1));
  TxId id = *g.submit(AppId::kKv, "payload", 1);
  g.take_output();
  for (int i = 0; i < 3; i++) g.tick();
  auto out = g.take_output();
  ASSERT_EQ(out.to_nodes.size(), 1u);
  const auto& tx = std::get<TxMsg>(out.to_nodes[0]);
  EXPECT_EQ(tx.id, id);
  EXPECT_EQ(tx.op, "payload");
  g.on_message(TxAck{id});
  for (int i = 0; i < 10; i++) g.tick();
  EXPECT_TRUE(g.take_output().to_nodes.empty());
}

TEST(Gateway, DeliversFirstResultOnce) {
  Gateway g = leased(GatewayConfig{}, RangeId(1));
  TxId id = *g.submit(AppId::kKv, "x", 42);
  g.on_message(TxResult{id, "r1", false});
  g.on_message(TxResult{id, "r2", false});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 1u);
  EXPECT_EQ(out.deliveries[0].token, 42u);
  EXPECT_EQ(out.deliveries[0].reply, "r1");
  EXPECT_EQ(g.inflight(), 0u);
}

TEST(Gateway, BoundsInflight) {
  GatewayConfig c;
  c.inflight_txs_max = 2;
  Gateway g = leased(c, RangeId(1));
  ASSERT_TRUE(g.submit(AppId::kKv, "a", 1).is_ok());
  ASSERT_TRUE(g.submit(AppId::kKv, "b", 2).is_ok());
  auto r = g.submit(AppId::kKv, "c", 3);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kOverloaded);
}

}  // namespace
}  // namespace maroon

namespace maroon {
namespace {

TEST(Gateway, MatchesResultsAcrossRangeRollover) {
  GatewayConfig c;
  c.offsets_per_range_max = 2;
  Gateway g = leased(c, RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  TxId b = *g.submit(AppId::kKv, "b", 2);
  g.on_message(LeaseGranted{c.id, RangeId(7)});
  TxId x = *g.submit(AppId::kKv, "x", 3);
  EXPECT_EQ(x, TxId::make(RangeId(7), 1));
  g.on_message(TxResult{x, "rx", false});
  g.on_message(TxResult{b, "rb", false});
  g.on_message(TxResult{TxId::make(RangeId(7), 2), "never sent", false});
  g.on_message(TxResult{a, "ra", false});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 3u);
  EXPECT_EQ(out.deliveries[0].token, 3u);
  EXPECT_EQ(out.deliveries[1].token, 2u);
  EXPECT_EQ(out.deliveries[2].token, 1u);
  EXPECT_EQ(g.inflight(), 0u);
}

}  // namespace
}  // namespace maroon

namespace maroon {
namespace {

TEST(Gateway, RefusesOversizeOpsAndBoundsBytesInFlight) {
  GatewayConfig c;
  c.inflight_bytes_max = limits::op_bytes_max;
  Gateway g = leased(c, RangeId(1));
  auto big = g.submit(AppId::kKv, std::string(limits::op_bytes_max + 1, 'x'), 1);
  ASSERT_FALSE(big.is_ok());
  EXPECT_EQ(big.status().code(), Code::kTooLarge);
  TxId id = *g.submit(AppId::kKv, std::string(limits::op_bytes_max - 10, 'x'), 2);
  auto over = g.submit(AppId::kKv, std::string(20, 'y'), 3);
  ASSERT_FALSE(over.is_ok());
  EXPECT_EQ(over.status().code(), Code::kOverloaded);
  g.on_message(TxResult{id, "ok", false});
  EXPECT_TRUE(g.submit(AppId::kKv, std::string(20, 'y'), 4).is_ok()) << "bytes are released on answer";
}

TEST(Gateway, RetriesResumeForTxsSubmittedAfterAllWereAcked) {
  GatewayConfig c;
  c.retry_ticks = 2;
  Gateway g = leased(c, RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  g.on_message(TxAck{a});
  for (int i = 0; i < 5; i++) g.tick();
  TxId b = *g.submit(AppId::kKv, "b", 2);
  g.take_output();
  for (int i = 0; i < 2; i++) g.tick();
  auto out = g.take_output();
  ASSERT_EQ(out.to_nodes.size(), 1u);
  EXPECT_EQ(std::get<TxMsg>(out.to_nodes[0]).id, b);
}

TEST(Gateway, IgnoresIdsItNeverIssued) {
  GatewayConfig c;
  c.offsets_per_range_max = 2;
  Gateway g = leased(c, RangeId(1));
  *g.submit(AppId::kKv, "a", 1);
  *g.submit(AppId::kKv, "b", 2);
  g.on_message(LeaseGranted{c.id, RangeId(2)});
  *g.submit(AppId::kKv, "c", 3);
  // Offset 3 of range 1 was never issued; it must not match range 2's tx.
  g.on_message(TxResult{TxId::make(RangeId(1), 3), "bogus", false});
  EXPECT_TRUE(g.take_output().deliveries.empty());
  EXPECT_EQ(g.inflight(), 3u);
}

}  // namespace
}  // namespace maroon

namespace maroon {
namespace {

TEST(Gateway, WithoutRetriesNothingIsResent) {
  GatewayConfig c;
  c.retry_ticks = 1;
  c.retries = false;
  Gateway g = leased(c, RangeId(1));
  TxId id = *g.submit(AppId::kKv, "payload", 1);
  auto out = g.take_output();
  ASSERT_EQ(out.to_nodes.size(), 1u);
  EXPECT_EQ(std::get<TxMsg>(out.to_nodes[0]).op, "payload");
  for (int i = 0; i < 5; i++) g.tick();
  EXPECT_TRUE(g.take_output().to_nodes.empty());
  g.on_message(TxResult{id, "r", false});
  EXPECT_EQ(g.take_output().deliveries.size(), 1u);
}

// A membership change (docs/membership.md): acks of nodes the change
// removed no longer count, k follows the new group, and a tx that lost its
// k acks is resent until k new members hold it.
TEST(Gateway, AfterAMembershipChangeOnlyTheNewMembersAcksCount) {
  GatewayConfig c;
  c.acks_needed = 2;
  c.retry_ticks = 5;
  c.result_retry_ticks = 1000;
  Gateway g = leased(c, RangeId(3));
  auto id = g.submit(AppId::kKv, "op", 1);
  ASSERT_TRUE(id.is_ok());
  g.on_message(TxAck{*id, NodeId(1)});
  g.on_message(TxAck{*id, NodeId(3)});  // k = 2 of {1, 2, 3}
  g.take_output();
  for (int i = 0; i < 10; i++) g.tick();
  EXPECT_TRUE(g.take_output().to_nodes.empty()) << "an acked tx was resent before the change";

  // 3 is replaced by 4 and 5 joins: k = 3 of {1, 2, 4, 5}, and only 1's ack counts.
  g.set_members(1, {NodeId(1), NodeId(2), NodeId(4), NodeId(5)});
  EXPECT_EQ(g.acks_needed(), 3u);
  g.tick();
  auto out = g.take_output();
  ASSERT_EQ(out.to_nodes.size(), 1u) << "the tx that lost its k acks was not resent";
  const auto* tx = std::get_if<TxMsg>(&out.to_nodes[0]);
  ASSERT_NE(tx, nullptr);
  EXPECT_EQ(tx->id, *id);
  EXPECT_EQ(tx->op, "op");
  g.on_message(TxAck{*id, NodeId(3)});  // a removed node's ack: still not enough
  g.on_message(TxAck{*id, NodeId(2)});
  for (int i = 0; i < 5; i++) g.tick();
  EXPECT_EQ(g.take_output().to_nodes.size(), 1u) << "two new members' acks are not k = 3";
  g.on_message(TxAck{*id, NodeId(5)});
  for (int i = 0; i < 10; i++) g.tick();
  EXPECT_TRUE(g.take_output().to_nodes.empty()) << "resent after k new members acked";

  // An older or equal config is ignored.
  g.set_members(1, {NodeId(1), NodeId(2)});
  g.set_members(0, {NodeId(1), NodeId(2)});
  EXPECT_EQ(g.acks_needed(), 3u);
  EXPECT_EQ(g.members_config(), 1u);
}

// The group the config file lists counts from the start: a stray ack of a
// node outside it (a removed node, a node of another group) does not.
TEST(Gateway, OnlyTheConfiguredMembersAcksCountFromTheStart) {
  GatewayConfig c;
  c.acks_needed = 2;
  c.retry_ticks = 5;
  c.result_retry_ticks = 1000;
  c.members = {NodeId(1), NodeId(2), NodeId(3)};
  c.members_config = 4;
  Gateway g = leased(c, RangeId(3));
  EXPECT_EQ(g.members_config(), 4u);
  auto id = g.submit(AppId::kKv, "op", 1);
  ASSERT_TRUE(id.is_ok());
  g.on_message(TxAck{*id, NodeId(1)});
  g.on_message(TxAck{*id, NodeId(9)});
  g.take_output();
  for (int i = 0; i < 5; i++) g.tick();
  EXPECT_EQ(g.take_output().to_nodes.size(), 1u) << "node 9's ack counted";
  g.on_message(TxAck{*id, NodeId(2)});
  for (int i = 0; i < 10; i++) g.tick();
  EXPECT_TRUE(g.take_output().to_nodes.empty());
  g.set_members(4, {NodeId(1), NodeId(9)});  // not newer: ignored
  EXPECT_EQ(g.members_config(), 4u);
}

}  // namespace
}  // namespace maroon
