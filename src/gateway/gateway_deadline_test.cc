// Gateway core under quorum loss (docs/cluster.md, "When the cluster has no
// quorum"): requests refused at once while the driver says there is no
// quorum (never sent: not executed), and requests in flight answered
// "outcome unknown" once deadline_ticks have passed since their submit.
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

GatewayConfig deadline_config(uint64_t deadline_ticks) {
  GatewayConfig c;
  c.acks_needed = 2;
  c.retry_ticks = 3;
  c.result_retry_ticks = 10;
  c.deadline_ticks = deadline_ticks;
  c.tick_ms = 10;
  return c;
}

std::vector<TxMsg> txs_of(const GatewayOutput& out) {
  std::vector<TxMsg> v;
  for (const auto& m : out.to_nodes) {
    if (auto* t = std::get_if<TxMsg>(&m)) v.push_back(*t);
  }
  return v;
}

// Ticks n times; returns every delivery made meanwhile.
std::vector<Delivery> tick_n(Gateway& g, int n) {
  std::vector<Delivery> all;
  for (int i = 0; i < n; i++) {
    g.tick();
    for (Delivery& d : g.take_output().deliveries) all.push_back(std::move(d));
  }
  return all;
}

TEST(GatewayDeadline, AnswersOutcomeUnknownExactlyAtTheDeadline) {
  Gateway g = leased(deadline_config(50), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "op", 7);
  g.take_output();
  EXPECT_TRUE(tick_n(g, 49).empty()) << "answered before the deadline";
  auto d = tick_n(g, 1);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].token, 7u);
  EXPECT_EQ(d[0].id, id);
  EXPECT_TRUE(d[0].timed_out);
  EXPECT_FALSE(d[0].sealed);
  EXPECT_FALSE(d[0].expired);
  EXPECT_TRUE(d[0].reply.empty());
  EXPECT_TRUE(d[0].error.starts_with("outcome unknown (timed out): no result within 500 ms"))
      << d[0].error;
  EXPECT_NE(d[0].error.find("may still take effect"), std::string::npos) << d[0].error;
  EXPECT_EQ(g.inflight(), 1u) << "still resent until k nodes hold it";
}

TEST(GatewayDeadline, ResendsDoNotPushTheDeadlineBack) {
  Gateway g = leased(deadline_config(10), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "op", 1);
  g.take_output();
  size_t resends = 0;
  for (int t = 1; t <= 9; t++) {
    g.tick();
    auto out = g.take_output();
    EXPECT_TRUE(out.deliveries.empty()) << "tick " << t;
    resends += txs_of(out).size();
  }
  EXPECT_EQ(resends, 3u) << "resent at ticks 3, 6, 9";
  g.tick();
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 1u);
  EXPECT_EQ(out.deliveries[0].id, id);
  EXPECT_TRUE(out.deliveries[0].timed_out);
}

TEST(GatewayDeadline, ATimedOutTxIsResentUntilKNodesHoldItThenForgotten) {
  // Forgetting it at once would leave a hole in its range: nodes that were
  // down never get it, and no later tx of the range could be ordered.
  Gateway g = leased(deadline_config(5), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "op", 1);
  g.take_output();
  ASSERT_EQ(tick_n(g, 5).size(), 1u);
  EXPECT_EQ(g.inflight(), 1u) << "a timed-out tx stays until k nodes hold it";
  std::vector<int> resent;
  for (int t = 6; t <= 12; t++) {
    g.tick();
    auto out = g.take_output();
    EXPECT_TRUE(out.deliveries.empty()) << "its client was answered already";
    for (const TxMsg& m : txs_of(out)) {
      EXPECT_EQ(m, (TxMsg{id, AppId::kKv, "op"})) << "the same bytes";
      resent.push_back(t);
    }
  }
  EXPECT_EQ(resent, (std::vector<int>{6, 9, 12}));
  g.on_message(TxAck{id, NodeId(1)});
  EXPECT_EQ(tick_n(g, 3).size(), 0u);
  EXPECT_EQ(txs_of(g.take_output()).size(), 0u);
  g.on_message(TxAck{id, NodeId(2)});
  EXPECT_EQ(g.inflight(), 0u) << "held by k = 2 nodes: it will be ordered; forgotten";
  for (int t = 0; t < 30; t++) {
    g.tick();
    auto out = g.take_output();
    EXPECT_TRUE(txs_of(out).empty()) << "resent after k nodes hold it";
    EXPECT_TRUE(out.deliveries.empty());
  }
  // Its result (it was ordered after all) answers nobody a second time.
  g.on_message(TxResult{id, "late", false});
  g.on_message(RangeSealed{RangeId(1), 0});
  EXPECT_TRUE(g.take_output().deliveries.empty());
}

TEST(GatewayDeadline, ATimedOutTxsLateResultOrSealEndsItSilently) {
  Gateway g = leased(deadline_config(5), RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  *g.submit(AppId::kKv, "b", 2);
  ASSERT_EQ(tick_n(g, 5).size(), 2u);
  g.on_message(TxResult{a, "late", false});
  EXPECT_TRUE(g.take_output().deliveries.empty());
  EXPECT_EQ(g.inflight(), 1u);
  g.on_message(RangeSealed{RangeId(1), 1});  // b never executes
  auto out = g.take_output();
  EXPECT_TRUE(out.deliveries.empty()) << "b's client already heard \"outcome unknown\"";
  EXPECT_EQ(g.inflight(), 0u);
  for (int t = 0; t < 10; t++) {
    g.tick();
    EXPECT_TRUE(txs_of(g.take_output()).empty());
  }
}

TEST(GatewayDeadline, ATxHeldByKNodesAtItsDeadlineIsForgottenAtOnce) {
  Gateway g = leased(deadline_config(5), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "op", 1);
  g.on_message(TxAck{id, NodeId(1)});
  g.on_message(TxAck{id, NodeId(3)});
  auto d = tick_n(g, 5);
  ASSERT_EQ(d.size(), 1u) << "k acks but no result: the outcome is unknown to the client";
  EXPECT_TRUE(d[0].timed_out);
  EXPECT_EQ(g.inflight(), 0u);
}

TEST(GatewayDeadline, AResultBeforeTheDeadlineWinsAndNothingTimesOutLater) {
  Gateway g = leased(deadline_config(5), RangeId(1));
  TxId id = *g.submit(AppId::kKv, "op", 3);
  g.take_output();
  EXPECT_TRUE(tick_n(g, 4).empty());
  g.on_message(TxResult{id, "r", false});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 1u);
  EXPECT_FALSE(out.deliveries[0].timed_out);
  EXPECT_EQ(out.deliveries[0].reply, "r");
  EXPECT_TRUE(tick_n(g, 20).empty()) << "an answered tx timed out too";
}

TEST(GatewayDeadline, EachTxHasItsOwnDeadlineFromItsSubmit) {
  Gateway g = leased(deadline_config(5), RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  tick_n(g, 2);
  TxId b = *g.submit(AppId::kKv, "b", 2);
  TxId c = *g.submit(AppId::kKv, "c", 3);
  tick_n(g, 1);
  TxId d = *g.submit(AppId::kKv, "d", 4);
  // b is answered in time; a, c and d time out in submission order, each at
  // its own deadline (submitted at ticks 0, 2, 2, 3).
  g.on_message(TxResult{b, "rb", false});
  ASSERT_EQ(g.take_output().deliveries.size(), 1u);
  std::vector<std::pair<int, TxId>> timed_out;
  for (int t = 4; t <= 12; t++) {
    for (const Delivery& x : tick_n(g, 1)) {
      EXPECT_TRUE(x.timed_out);
      timed_out.emplace_back(t, x.id);
    }
  }
  EXPECT_EQ(timed_out, (std::vector<std::pair<int, TxId>>{{5, a}, {7, c}, {8, d}}));
  EXPECT_EQ(g.inflight(), 3u) << "timed out, not yet held by k nodes";
}

TEST(GatewayDeadline, SealedBeforeTheDeadlineIsAnsweredSealedNotTimedOut) {
  Gateway g = leased(deadline_config(5), RangeId(2));
  *g.submit(AppId::kKv, "a", 1);
  g.take_output();
  g.on_message(RangeSealed{RangeId(2), 0});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 1u);
  EXPECT_TRUE(out.deliveries[0].sealed);
  EXPECT_TRUE(tick_n(g, 10).empty());
}

TEST(GatewayDeadline, TimedOutTxsHoldTheirCapacityUntilKNodesHoldThem) {
  GatewayConfig c = deadline_config(3);
  c.inflight_txs_max = 2;
  Gateway g = leased(c, RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  TxId b = *g.submit(AppId::kKv, "b", 2);
  EXPECT_EQ(g.submit(AppId::kKv, "c", 3).status().code(), Code::kOverloaded);
  EXPECT_EQ(tick_n(g, 3).size(), 2u);
  EXPECT_EQ(g.submit(AppId::kKv, "c", 3).status().code(), Code::kOverloaded)
      << "memory stays bounded while timed-out txs are resent";
  for (TxId id : {a, b}) {
    g.on_message(TxAck{id, NodeId(1)});
    g.on_message(TxAck{id, NodeId(2)});
  }
  EXPECT_TRUE(g.submit(AppId::kKv, "c", 3).is_ok());
}

TEST(GatewayDeadline, NoDeadlineByDefault) {
  GatewayConfig c;
  c.retries = false;  // as in `maroon dev`
  Gateway g = leased(c, RangeId(1));
  ASSERT_TRUE(g.submit(AppId::kKv, "a", 1).is_ok());
  EXPECT_TRUE(tick_n(g, 100000).empty());
  EXPECT_EQ(g.inflight(), 1u);
}

TEST(GatewayDeadline, WithoutAQuorumSubmitRefusesAtOnceAndSendsNothing) {
  Gateway g = leased(deadline_config(50), RangeId(1));
  EXPECT_TRUE(g.quorum());
  g.set_quorum(false, "node 1 is in a view change (view 7)");
  EXPECT_FALSE(g.quorum());
  auto r = g.submit(AppId::kKv, "op", 1);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNoQuorum);
  EXPECT_EQ(r.status().message(),
            "no quorum; not executed: node 1 is in a view change (view 7); retry later");
  EXPECT_EQ(r.status().to_string(), r.status().message()) << "the code's name is not repeated";
  auto out = g.take_output();
  EXPECT_TRUE(out.to_nodes.empty()) << "a refused request must never reach a node";
  EXPECT_TRUE(out.deliveries.empty());
  EXPECT_EQ(g.inflight(), 0u);
  // The range's offsets were not used: the next tx gets offset 1.
  g.set_quorum(true, "");
  EXPECT_TRUE(g.quorum());
  auto id = g.submit(AppId::kKv, "op", 2);
  ASSERT_TRUE(id.is_ok());
  EXPECT_EQ(*id, TxId::make(RangeId(1), 1));
}

TEST(GatewayDeadline, NoQuorumIsReportedBeforeAMissingRange) {
  Gateway g(deadline_config(50));
  g.set_quorum(false, "");
  auto r = g.submit(AppId::kKv, "op", 1);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNoQuorum);
  EXPECT_NE(r.status().message().find("the cluster has no working quorum"), std::string::npos)
      << r.status().message();
}

TEST(GatewayDeadline, TxsInFlightWhenTheQuorumIsLostWaitForTheDeadlineAndSaySo) {
  Gateway g = leased(deadline_config(20), RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  g.take_output();
  EXPECT_TRUE(tick_n(g, 5).empty());
  g.set_quorum(false, "node 2 is a backup in view 3 and has not heard from primary node 1");
  // Losing the quorum does not answer txs in flight: it may return in time.
  EXPECT_TRUE(tick_n(g, 14).empty());
  auto d = tick_n(g, 1);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].id, a);
  EXPECT_TRUE(d[0].timed_out);
  EXPECT_EQ(d[0].error,
            "outcome unknown (no quorum): no result within 200 ms (node 2 is a backup in view 3 "
            "and has not heard from primary node 1); the request was sent to the nodes and may "
            "still take effect");
}

TEST(GatewayDeadline, TheQuorumReturningInTimeLetsTxsInFlightSucceed) {
  Gateway g = leased(deadline_config(20), RangeId(1));
  TxId a = *g.submit(AppId::kKv, "a", 1);
  g.set_quorum(false, "x");
  tick_n(g, 10);
  g.set_quorum(true, "");
  g.on_message(TxResult{a, "ok", false});
  auto out = g.take_output();
  ASSERT_EQ(out.deliveries.size(), 1u);
  EXPECT_FALSE(out.deliveries[0].timed_out);
  EXPECT_EQ(out.deliveries[0].reply, "ok");
  EXPECT_TRUE(g.submit(AppId::kKv, "b", 2).is_ok());
}

TEST(GatewayDeadline, MessagesInTicksWithoutTickMs) {
  GatewayConfig c = deadline_config(4);
  c.tick_ms = 0;
  Gateway g = leased(c, RangeId(1));
  *g.submit(AppId::kKv, "a", 1);
  auto d = tick_n(g, 4);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].error.find("no result within 4 ticks"), std::string::npos) << d[0].error;
}

}  // namespace
}  // namespace maroon
