// Gateway core against a cluster (docs/architecture.md steps 2-3 and "Gaps"): acks
// from k distinct nodes, result retries after k acks, sealed ranges and lease
// renewal. The test plays the nodes by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gateway/gateway.h"

namespace maroon {
namespace {

Gateway leased(GatewayConfig config, RangeId range) {
  Gateway g(config);
  g.take_output();
  g.on_message(LeaseGranted{config.id, range});
  return g;
}

GatewayConfig cluster_config() {
  GatewayConfig c;
  c.acks_needed = 2;  // three nodes: k = 2
  c.retry_ticks = 3;
  c.result_retry_ticks = 10;
  return c;
}

template <typename T>
std::vector<T> of_type(const std::vector<GatewayToNode>& msgs) {
  std::vector<T> v;
  for (const auto& m : msgs) {
    if (auto* t = std::get_if<T>(&m)) v.push_back(*t);
  }
  return v;
}

// Ticks once; returns the txs sent in that tick.
std::vector<TxMsg> tick_sends(Gateway& g) {
  g.tick();
  return of_type<TxMsg>(g.take_output().to_nodes);
}

TEST(GatewayCluster, RepeatedAcksFromOneNodeDoNotCountTowardsK) {
  Gateway g = leased(cluster_config(), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "payload", 1);
  g.take_output();
  for (int i = 0; i < 5; i++) g.on_message(TxAck{id, NodeId(1)});
  // Still short of two distinct nodes: resent every retry_ticks.
  EXPECT_TRUE(tick_sends(g).empty());
  EXPECT_TRUE(tick_sends(g).empty());
  auto sent = tick_sends(g);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], (TxMsg{id, AppId::kKv, "payload"}));
  g.on_message(TxAck{id, NodeId(1)});
  for (int i = 0; i < 2; i++) EXPECT_TRUE(tick_sends(g).empty());
  EXPECT_EQ(tick_sends(g).size(), 1u) << "one node's repeated acks counted as k";
}

TEST(GatewayCluster, AcksFromKDistinctNodesStopTheFastRetries) {
  Gateway g = leased(cluster_config(), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "payload", 1);
  g.take_output();
  g.on_message(TxAck{id, NodeId(3)});
  g.on_message(TxAck{id, NodeId(2)});
  // Acked by k: no resend at retry_ticks (3, 6, 9), only at result_retry_ticks (10).
  for (int t = 1; t <= 9; t++) EXPECT_TRUE(tick_sends(g).empty()) << "tick " << t;
  auto sent = tick_sends(g);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], (TxMsg{id, AppId::kKv, "payload"})) << "a result retry carries the same bytes";
  for (int t = 11; t <= 19; t++) EXPECT_TRUE(tick_sends(g).empty()) << "tick " << t;
  EXPECT_EQ(tick_sends(g).size(), 1u);
  EXPECT_EQ(g.inflight(), 1u);
}

TEST(GatewayCluster, AckedTxRetriesOnResultPeriodWhileOthersRetryFast) {
  Gateway g = leased(cluster_config(), RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  TxId b = *g.submit(AppId::kKv, "b", 2);
  g.take_output();
  g.on_message(TxAck{a, NodeId(1)});
  g.on_message(TxAck{a, NodeId(2)});
  g.on_message(TxAck{b, NodeId(1)});
  std::vector<std::pair<int, TxId>> sends;
  for (int t = 1; t <= 10; t++) {
    for (const TxMsg& m : tick_sends(g)) sends.emplace_back(t, m.id);
  }
  EXPECT_EQ(sends, (std::vector<std::pair<int, TxId>>{{3, b}, {6, b}, {9, b}, {10, a}}));
}

TEST(GatewayCluster, ResultAnswersATxWhateverItsAcks) {
  Gateway g = leased(cluster_config(), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "x", 7);
  g.on_message(TxResult{id, "r", false});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 1u);
  EXPECT_EQ(out.deliveries[0].token, 7u);
  EXPECT_FALSE(out.deliveries[0].sealed);
  for (int t = 0; t < 20; t++) EXPECT_TRUE(tick_sends(g).empty());
}

TEST(GatewayCluster, RangeSealedAnswersTxsBeyondLastAsSealedAndLeasesANewRange) {
  Gateway g = leased(cluster_config(), RangeId(4));
  std::vector<TxId> ids;
  for (uint64_t token = 1; token <= 4; token++) ids.push_back(*g.submit(AppId::kKv, "op", token));
  g.take_output();
  g.on_message(RangeSealed{RangeId(4), 2});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 2u);
  EXPECT_EQ(out.deliveries[0].token, 3u);
  EXPECT_EQ(out.deliveries[0].id, ids[2]);
  EXPECT_TRUE(out.deliveries[0].sealed);
  EXPECT_EQ(out.deliveries[1].token, 4u);
  EXPECT_TRUE(out.deliveries[1].sealed);
  EXPECT_EQ(g.inflight(), 2u);
  auto requests = of_type<LeaseRequest>(out.to_nodes);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], (LeaseRequest{g.id(), RangeId(4)}));
  // No more ids from the sealed range.
  EXPECT_FALSE(g.ready());
  auto refused = g.submit(AppId::kKv, "late", 9);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);

  // The same seal from another node changes nothing.
  g.on_message(RangeSealed{RangeId(4), 2});
  out = g.take_output();
  EXPECT_TRUE(out.deliveries.empty());
  EXPECT_TRUE(of_type<LeaseRequest>(out.to_nodes).empty());

  // Txs up to `last` are still answered by their results.
  g.on_message(TxResult{ids[0], "r1", false});
  g.on_message(TxResult{ids[1], "r2", false});
  out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 2u);
  EXPECT_FALSE(out.deliveries[0].sealed);
  EXPECT_EQ(out.deliveries[1].reply, "r2");
  EXPECT_EQ(g.inflight(), 0u);
  // Sealed txs are never resent.
  for (int t = 0; t < 30; t++) EXPECT_TRUE(tick_sends(g).empty());

  g.on_message(LeaseGranted{g.id(), RangeId(9)});
  auto id = g.submit(AppId::kKv, "again", 10);
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(*id, TxId::make(RangeId(9), 1));
}

TEST(GatewayCluster, RangeSealedOfAnOlderRangeAnswersItsTxsAndKeepsTheCurrentRange) {
  GatewayConfig c = cluster_config();
  c.offsets_per_range_max = 3;
  Gateway g = leased(c, RangeId(1));
  for (uint64_t token = 1; token <= 3; token++)
    ASSERT_TRUE(g.submit(AppId::kKv, "op", token).is_ok());
  g.on_message(LeaseGranted{c.id, RangeId(2)});
  TxId x = *g.submit(AppId::kKv, "x", 4);
  g.take_output();
  g.on_message(RangeSealed{RangeId(1), 1});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 2u);
  EXPECT_EQ(out.deliveries[0].token, 2u);
  EXPECT_EQ(out.deliveries[1].token, 3u);
  EXPECT_TRUE(out.deliveries[0].sealed && out.deliveries[1].sealed);
  EXPECT_TRUE(of_type<LeaseRequest>(out.to_nodes).empty());
  EXPECT_TRUE(g.ready());
  EXPECT_EQ(g.range(), RangeId(2));
  g.on_message(TxResult{x, "rx", false});
  EXPECT_EQ(g.take_output().deliveries.size(), 1u);
  EXPECT_EQ(g.inflight(), 1u);
}

TEST(GatewayCluster, RangeSealedAtZeroAnswersEveryTxOfTheRange) {
  Gateway g = leased(cluster_config(), RangeId(2));
  for (uint64_t token = 1; token <= 3; token++)
    ASSERT_TRUE(g.submit(AppId::kKv, "op", token).is_ok());
  g.take_output();
  g.on_message(RangeSealed{RangeId(2), 0});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 3u);
  for (const Delivery& d : out.deliveries) EXPECT_TRUE(d.sealed);
  EXPECT_EQ(g.inflight(), 0u);
}

TEST(GatewayCluster, RenewTicksRenewTheRangesInUse) {
  GatewayConfig c = cluster_config();
  c.renew_ticks = 5;
  c.offsets_per_range_max = 2;
  Gateway g = leased(c, RangeId(1));
  auto renewals_at_tick = [&]() {
    g.tick();
    return of_type<RenewLease>(g.take_output().to_nodes);
  };
  // The first tick renews, then every renew_ticks.
  EXPECT_EQ(renewals_at_tick(), (std::vector<RenewLease>{{c.id, RangeId(1)}}));
  for (int t = 2; t <= 5; t++) EXPECT_TRUE(renewals_at_tick().empty()) << "tick " << t;
  EXPECT_EQ(renewals_at_tick(), (std::vector<RenewLease>{{c.id, RangeId(1)}}));

  // Range 1 runs out while one of its txs is in flight: both are renewed.
  TxId a = *g.submit(AppId::kKv, "a", 1);
  TxId b = *g.submit(AppId::kKv, "b", 2);
  g.on_message(TxResult{a, "ra", false});
  g.on_message(LeaseGranted{c.id, RangeId(2)});
  for (int t = 7; t <= 10; t++) EXPECT_TRUE(renewals_at_tick().empty()) << "tick " << t;
  EXPECT_EQ(renewals_at_tick(), (std::vector<RenewLease>{{c.id, RangeId(1)}, {c.id, RangeId(2)}}));
  // Once range 1 has nothing in flight, only range 2.
  g.on_message(TxResult{b, "rb", false});
  for (int t = 12; t <= 15; t++) renewals_at_tick();
  EXPECT_EQ(renewals_at_tick(), (std::vector<RenewLease>{{c.id, RangeId(2)}}));
}

TEST(GatewayCluster, NoRenewalsWithoutRenewTicksOrALease) {
  GatewayConfig c = cluster_config();
  c.renew_ticks = 0;
  Gateway g = leased(c, RangeId(1));
  GatewayConfig r = cluster_config();
  r.renew_ticks = 2;
  Gateway waiting(r);  // renews, but has no range yet
  for (int t = 0; t < 10; t++) {
    g.tick();
    waiting.tick();
    EXPECT_TRUE(of_type<RenewLease>(g.take_output().to_nodes).empty());
    EXPECT_TRUE(of_type<RenewLease>(waiting.take_output().to_nodes).empty());
  }
}

}  // namespace
}  // namespace maroon
