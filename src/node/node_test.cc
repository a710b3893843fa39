// Node core scenarios, driven by hand: the test plays the driver (persisting
// records, reporting durability, carrying messages) and the gateway.
#include "node/node.h"

#include <gtest/gtest.h>

#include <vector>

#include "common/codec.h"
#include "common/hash.h"
#include "maroon/limits.h"
#include "node/test_echo_app.h"
#include "sequencer/vr_sequencer.h"
#include "vr/codec.h"

namespace maroon {
namespace {


struct Harness {
  explicit Harness(NodeConfig config = {}) : node(config, sequencer) {
    node.register_app(AppId::kKv, app);
    node.finish_replay();
  }
  // A restart: the records `before` persisted are replayed first.
  Harness(NodeConfig config, const std::vector<PersistRecord>& before)
      : node(config, sequencer), wal(before) {
    node.register_app(AppId::kKv, app);
    for (const auto& rec : before) EXPECT_TRUE(node.replay(rec.type, rec.payload).is_ok());
    node.finish_replay();
  }
  // Runs the node's output through a perfect disk: everything is persisted,
  // then the after-persist messages are released. Returns every message.
  std::vector<GatewayEnvelope> flush() {
    std::vector<GatewayEnvelope> sent;
    for (int round = 0; round < 100; round++) {
      node.on_flush();
      Output out = node.take_output();
      if (out.empty()) return sent;
      for (auto& e : out.send_now) sent.push_back(std::move(e));
      for (auto& r : out.persist) wal.push_back(std::move(r));
      if (!out.persist.empty()) node.on_persisted(out.next_seq() - 1);
      for (auto& e : out.send_after_persist) sent.push_back(std::move(e));
    }
    ADD_FAILURE() << "node output did not quiesce";
    return sent;
  }
  RangeId lease(GatewayId g) {
    node.on_lease_request(LeaseRequest{g, node.newest_range(g)});
    for (auto& e : flush()) {
      if (auto* l = std::get_if<LeaseGranted>(&e.msg)) return l->range;
    }
    ADD_FAILURE() << "no lease granted";
    return RangeId(0);
  }

  VrSequencer sequencer;
  EchoApp app;
  Node node;
  std::vector<PersistRecord> wal;
};

template <typename T>
std::vector<T> of_type(const std::vector<GatewayEnvelope>& sent) {
  std::vector<T> out;
  for (const auto& e : sent) {
    if (auto* m = std::get_if<T>(&e.msg)) out.push_back(*m);
  }
  return out;
}

TEST(Node, LeasesDistinctRangesToEachRequest) {
  Harness h;
  RangeId a = h.lease(GatewayId(7));
  RangeId b = h.lease(GatewayId(8));
  RangeId c = h.lease(GatewayId(7));
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(b, c);
}

TEST(Node, RetriedLeaseRequestDoesNotLeaseTwice) {
  Harness h;
  RangeId a = h.lease(GatewayId(7));
  // The same request again (after = 0) gets the same range back.
  h.node.on_lease_request(LeaseRequest{GatewayId(7), RangeId(0)});
  auto granted = of_type<LeaseGranted>(h.flush());
  ASSERT_EQ(granted.size(), 1u);
  EXPECT_EQ(granted[0].range, a);
}

TEST(Node, AcksOnlyAfterPersistAndExecutesInOrder) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  h.node.on_tx(g, TxMsg{TxId::make(r, 2), AppId::kKv, "b"});
  Output out = h.node.take_output();
  EXPECT_TRUE(out.send_now.empty()) << "nothing may be acknowledged before it is durable";
  ASSERT_EQ(out.persist.size(), 2u);
  EXPECT_EQ(out.send_after_persist.size(), 2u);
  // Durable: the acks go out, an epoch is proposed and must itself persist.
  h.node.on_persisted(out.next_seq() - 1);
  EXPECT_TRUE(h.app.log.empty()) << "executed before the epoch was durable";
  auto sent = h.flush();
  EXPECT_EQ(h.app.log, (std::vector<std::string>{"a", "b"}));
  auto results = of_type<TxResult>(sent);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].reply, "a#1");
  EXPECT_EQ(results[1].reply, "b#2");
}

TEST(Node, OrderUnsyncedPutsTxsAndTheirEpochInOneBatch) {
  NodeConfig config;
  config.order_unsynced_txs = true;
  Harness h(config);
  GatewayId g(1);
  RangeId r = h.lease(g);
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  h.node.on_tx(g, TxMsg{TxId::make(r, 2), AppId::kKv, "b"});
  h.node.on_flush();
  Output out = h.node.take_output();
  ASSERT_EQ(out.persist.size(), 3u);
  EXPECT_EQ(out.persist[0].type, RecordType::kTx);
  EXPECT_EQ(out.persist[1].type, RecordType::kTx);
  EXPECT_EQ(out.persist[2].type, RecordType::kVrLog) << "the epoch follows its txs in the log";
  EXPECT_TRUE(h.app.log.empty());
  h.node.on_persisted(out.next_seq() - 1);  // one durability report: ordered and executed
  EXPECT_EQ(h.app.log, (std::vector<std::string>{"a", "b"}));
  Output after = h.node.take_output();
  EXPECT_EQ(of_type<TxResult>(after.send_now).size(), 2u);
}

TEST(Node, WithoutOrderUnsyncedAnEpochWaitsForDurableTxs) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  h.node.on_flush();
  Output out = h.node.take_output();
  ASSERT_EQ(out.persist.size(), 1u) << "no epoch may name a tx before it is durable";
}

TEST(Node, RetriedTxGetsFirstResultNotSecondExecution) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  TxId id = TxId::make(r, 1);
  h.node.on_tx(g, TxMsg{id, AppId::kKv, "incr"});
  h.flush();
  ASSERT_EQ(h.app.log.size(), 1u);
  h.node.on_tx(g, TxMsg{id, AppId::kKv, "a different payload"});
  auto sent = h.flush();
  auto results = of_type<TxResult>(sent);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].reply, "incr#1");
  EXPECT_EQ(h.app.log.size(), 1u);
}

TEST(Node, DuplicateWhileHeldKeepsFirstPayload) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  TxId id = TxId::make(r, 1);
  h.node.on_tx(g, TxMsg{id, AppId::kKv, "first"});
  h.node.on_tx(g, TxMsg{id, AppId::kKv, "second"});
  h.flush();
  EXPECT_EQ(h.app.log, (std::vector<std::string>{"first"}));
  EXPECT_EQ(h.node.counters().txs_duplicate, 0u);
  EXPECT_EQ(h.node.counters().txs_conflicting, 1u) << "other bytes under a held id";
}

TEST(Node, GapHoldsBackOrderingUntilFilled) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  h.node.on_tx(g, TxMsg{TxId::make(r, 2), AppId::kKv, "b"});
  h.flush();
  EXPECT_TRUE(h.app.log.empty()) << "offset 2 ordered before offset 1 arrived";
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  h.flush();
  EXPECT_EQ(h.app.log, (std::vector<std::string>{"a", "b"}));
}

TEST(Node, RejectsTxFromAnotherGatewaysRange) {
  Harness h;
  RangeId r = h.lease(GatewayId(1));
  h.node.on_tx(GatewayId(2), TxMsg{TxId::make(r, 1), AppId::kKv, "x"});
  h.node.on_tx(GatewayId(1), TxMsg{TxId::make(RangeId(99), 1), AppId::kKv, "x"});
  h.node.on_tx(GatewayId(1),
               TxMsg{TxId::make(r, 1), AppId::kKv, std::string(limits::op_bytes_max + 1, 'x')});
  h.flush();
  EXPECT_TRUE(h.app.log.empty());
  EXPECT_EQ(h.node.counters().txs_rejected, 3u);
}

TEST(Node, LogicalTimeNeverGoesBackwards) {
  Harness h;
  GatewayId g(1);
  h.node.tick(1000);
  RangeId r = h.lease(g);  // epoch 1 takes the wall clock: 1000
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  h.flush();
  EXPECT_EQ(h.app.last_ctx.logical_time_ms, 1000u);
  h.node.tick(500);  // a clock step backwards
  h.node.on_tx(g, TxMsg{TxId::make(r, 2), AppId::kKv, "b"});
  h.flush();
  // One tick (10 ms of steady time) later: not back, at most a tick on.
  EXPECT_GE(h.app.last_ctx.logical_time_ms, 1000u);
  EXPECT_LE(h.app.last_ctx.logical_time_ms, 1010u);
}

// Apps see each epoch's logical time before its txs, even an epoch without
// txs of theirs (durable fibers' timers fire on it).
TEST(Node, AppsAdvanceTimeAtEachEpochBeforeItsTxs) {
  Harness h;
  GatewayId g(1);
  h.node.tick(1000);
  RangeId r = h.lease(g);  // epoch 1: the lease, at 1000
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  h.flush();
  ASSERT_GE(h.app.events.size(), 3u);
  EXPECT_EQ(h.app.events.front(), "time 1000");  // the lease's epoch: no txs
  EXPECT_EQ(h.app.events.back(), "apply a at " + std::to_string(h.app.last_ctx.logical_time_ms));
  EXPECT_EQ(h.app.events[h.app.events.size() - 2],
            "time " + std::to_string(h.app.last_ctx.logical_time_ms));
  EXPECT_EQ(std::count_if(h.app.events.begin(), h.app.events.end(),
                          [](const std::string& e) { return e.starts_with("time "); }),
            static_cast<long>(h.node.applied_epoch().value()));
}

// Before: logical time was max(proposed, wall clock). A wall clock stepped
// an hour ahead on the proposer expired every live range's lease at once
// and sealed them, then pinned logical time for the hour after the clock
// was stepped back, so no lease expired. Now logical time advances by the
// proposer's steady time (ticks), following the wall clock only by slewing.
TEST(Node, AWallClockStepNeitherSealsLiveRangesNorPinsLogicalTime) {
  NodeConfig config;
  config.lease_ms = 1000;
  Harness h(config);
  GatewayId g(1);
  uint64_t wall = 5'000'000;
  h.node.tick(wall);
  RangeId r = h.lease(g);
  // Five ticks (50 ms) pass; the wall clock says an hour and 50 ms.
  for (int i = 0; i < 5; i++) h.node.tick(wall += 10);
  h.node.tick(wall + 3'600'000);
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "a"});
  auto sent = h.flush();
  EXPECT_TRUE(of_type<RangeSealed>(sent).empty()) << "a live range was sealed by a clock step";
  EXPECT_EQ(h.app.log, (std::vector<std::string>{"a"}));
  const uint64_t after_step = h.app.last_ctx.logical_time_ms;
  EXPECT_LT(after_step, 5'000'000u + 1000) << "logical time jumped with the wall clock";
  // The wall clock is stepped back. The range is not renewed: its lease
  // runs out in logical time about as fast as in real time.
  int ticks = 0;
  bool sealed = false;
  while (!sealed && ticks < 1000) {
    h.node.tick(wall += 10);
    ticks++;
    sealed = !of_type<RangeSealed>(h.flush()).empty();
  }
  EXPECT_TRUE(sealed) << "no lease expired after the clock was stepped back";
  EXPECT_LE(ticks, 150) << "the lease of " << config.lease_ms << " ms took " << ticks
                        << " ticks of 10 ms to run out";
}

TEST(Node, EpochHoldsAtMostEpochTxsMax) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  const uint64_t n = limits::epoch_txs_max + 10;
  for (uint64_t i = 1; i <= n; i++) h.node.on_tx(g, TxMsg{TxId::make(r, i), AppId::kKv, "x"});
  EpochNumber before = h.node.applied_epoch();
  h.flush();
  EXPECT_EQ(h.app.log.size(), n);
  EXPECT_GE(h.node.applied_epoch().value() - before.value(), 2u);
}

// Before: a tx naming an app the node does not run was dropped unanswered;
// its gateway resent it for ever, and the range's later txs (acked by k
// nodes) were never ordered behind the gap. Now it is held, ordered and
// executed as nothing, with an empty reply, so the range goes on; a replay
// of its record does the same instead of refusing the log.
TEST(Node, ATxForAnUnknownAppExecutesAsNothingAndLeavesNoGap) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId(7), "mystery"});
  h.node.on_tx(g, TxMsg{TxId::make(r, 2), AppId::kKv, "b"});
  auto sent = h.flush();
  EXPECT_EQ(of_type<TxAck>(sent).size(), 2u);
  auto results = of_type<TxResult>(sent);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].id, TxId::make(r, 1));
  EXPECT_EQ(results[0].reply, "");
  EXPECT_EQ(results[1].reply, "b#1");
  EXPECT_EQ(h.app.log, (std::vector<std::string>{"b"}));
  EXPECT_EQ(h.node.counters().txs_unknown_app, 1u);

  VrSequencer sequencer2;
  EchoApp app2;
  Node node2({}, sequencer2);
  node2.register_app(AppId::kKv, app2);
  for (const auto& rec : h.wal) ASSERT_TRUE(node2.replay(rec.type, rec.payload).is_ok());
  EXPECT_EQ(app2.log, (std::vector<std::string>{"b"}));
  EXPECT_EQ(node2.state_hash(), h.node.state_hash());
}

TEST(Node, ReplayRebuildsStateAndContinuesIds) {
  Harness h;
  GatewayId g(1);
  RangeId r = h.lease(g);
  for (uint64_t i = 1; i <= 5; i++) {
    h.node.on_tx(g, TxMsg{TxId::make(r, i), AppId::kKv, "op" + std::to_string(i)});
  }
  h.flush();
  // A sixth tx is durable but its epoch never made it to disk.
  h.node.on_tx(g, TxMsg{TxId::make(r, 6), AppId::kKv, "op6"});
  Output out = h.node.take_output();
  for (auto& rec : out.persist) h.wal.push_back(rec);

  VrSequencer sequencer2;
  EchoApp app2;
  Node node2({}, sequencer2);
  node2.register_app(AppId::kKv, app2);
  for (const auto& rec : h.wal) ASSERT_TRUE(node2.replay(rec.type, rec.payload).is_ok());
  EXPECT_EQ(app2.log.size(), 5u);
  EXPECT_EQ(node2.state_hash(), h.node.state_hash());
  node2.finish_replay();
  // The durable-but-unordered tx is ordered after restart: no gap, no loss.
  Output o2 = node2.take_output();
  // The restarted replica's state record, then the epoch ordering tx 6.
  ASSERT_EQ(o2.persist.size(), 2u);
  EXPECT_EQ(o2.persist[0].type, RecordType::kVrState);
  EXPECT_EQ(o2.persist[1].type, RecordType::kVrLog);
  node2.on_persisted(o2.next_seq() - 1);
  EXPECT_EQ(app2.log.size(), 6u);
  // A new lease after restart never reuses the old range.
  node2.on_lease_request(LeaseRequest{GatewayId(2), RangeId(0)});
  Output o3 = node2.take_output();
  node2.on_persisted(o3.next_seq() - 1);
  Output o4 = node2.take_output();
  auto granted = of_type<LeaseGranted>(o4.send_now);
  ASSERT_EQ(granted.size(), 1u);
  EXPECT_NE(granted[0].range, r);
}

TEST(Node, RangesOfGatewaysThatDiedWithTheProcessAreSealedThenRetiredAfterTheGrace) {
  // `maroon dev`: every restart leases a new range to its in-process
  // gateway. The old ones must not pile up (one per restart, for ever).
  NodeConfig config;
  config.order_unsynced_txs = true;
  config.gateways_in_process = true;
  config.sealed_range_grace_ms = 1000;
  Harness h(config);
  const GatewayId g(1);
  RangeId r = h.lease(g);
  for (uint64_t i = 1; i <= 3; i++) {
    h.node.on_tx(g, TxMsg{TxId::make(r, i), AppId::kKv, "op" + std::to_string(i)});
  }
  h.flush();
  ASSERT_EQ(h.app.log.size(), 3u);

  Harness h2(config, h.wal);
  h2.flush();
  EXPECT_EQ(h2.node.counters().ranges_sealed, 1u) << "the dead gateway's range is sealed";
  h2.node.on_tx(g, TxMsg{TxId::make(r, 4), AppId::kKv, "op4"});
  auto sealed = of_type<RangeSealed>(h2.flush());
  ASSERT_EQ(sealed.size(), 1u);
  EXPECT_EQ(sealed[0], (RangeSealed{r, 3}));
  EXPECT_EQ(h2.node.ranges_kept(), 1u);

  // Two seconds later (steady time), another gateway's lease is the next
  // epoch: past the grace, the sealed range is retired.
  for (int t = 0; t < 200; t++) h2.node.tick(2'000'000 + 10 * t);
  const RangeId r2 = h2.lease(GatewayId(2));
  EXPECT_EQ(h2.node.counters().ranges_retired, 1u);
  EXPECT_EQ(h2.node.ranges_kept(), 1u) << "only the new range is kept";
  EXPECT_FALSE(h2.node.oldest_sealed().has_value());
  // A late retry still gets the truth: executed (its result is gone), or never.
  h2.node.on_tx(g, TxMsg{TxId::make(r, 2), AppId::kKv, "op2"});
  h2.node.on_tx(g, TxMsg{TxId::make(r, 5), AppId::kKv, "op5"});
  auto sent = h2.flush();
  auto results = of_type<TxResult>(sent);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0], (TxResult{TxId::make(r, 2), "", /*expired=*/true}));
  sealed = of_type<RangeSealed>(sent);
  ASSERT_EQ(sealed.size(), 1u);
  EXPECT_EQ(sealed[0], (RangeSealed{r, 3}));
  EXPECT_EQ(h2.app.log.size(), 3u) << "nothing executed twice";
  EXPECT_NE(r2, r);
}

TEST(Node, ReplayRejectsEpochOrderingTxsItNeverHeld) {
  VrSequencer seq;
  EchoApp app;
  Node node({}, seq);
  node.register_app(AppId::kKv, app);
  // The records a single-replica VR sequencer writes: its state, then log
  // suffixes whose entries are epochs.
  auto log_record = [](const Epoch& e) {
    std::string payload;
    encode_epoch(e, payload);
    vr::Entry entry{vr::OpNumber(e.number.value()), vr::ViewNumber(0), vr::EntryKind::kRequest,
                    vr::ClientId(1), vr::RequestNumber(e.number.value()), payload};
    std::string out;
    vr::encode_record(vr::LogSuffix{vr::OpNumber(e.number.value() - 1), {entry}}, out);
    return out;
  };
  std::string state;
  vr::DurableState ds;
  ds.members = {vr::ReplicaId(1)};
  vr::encode_record(ds, state);
  ASSERT_TRUE(node.replay(RecordType::kVrState, state).is_ok());
  Epoch lease{EpochNumber(1), 0, {}, {LeaseRange{GatewayId(1), RangeId(0)}}};
  ASSERT_TRUE(node.replay(RecordType::kVrLog, log_record(lease)).is_ok());
  Epoch bad{EpochNumber(2), 0, {Interval{RangeId(1), 1, 3}}, {}};
  Status s = node.replay(RecordType::kVrLog, log_record(bad));
  EXPECT_EQ(s.code(), Code::kCorruption);
}

TEST(Node, ResultTableEvictsOldestAndReportsExpiry) {
  NodeConfig config;
  config.result_table_txs_per_range_max = 2;
  Harness h(config);
  GatewayId g(1);
  RangeId r = h.lease(g);
  for (uint64_t i = 1; i <= 3; i++) h.node.on_tx(g, TxMsg{TxId::make(r, i), AppId::kKv, "x"});
  h.flush();
  h.node.on_tx(g, TxMsg{TxId::make(r, 1), AppId::kKv, "x"});
  auto results = of_type<TxResult>(h.flush());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].expired);
  EXPECT_EQ(h.app.log.size(), 3u) << "an expired result must never mean re-execution";
}

TEST(TxRecord, RoundTripsAndRejectsGarbage) {
  std::string p;
  encode_tx_record(TxMsg{TxId::make(RangeId(3), 9), AppId::kKv, "payload"}, p);
  Result<TxMsg> tx = decode_tx_record(p);
  ASSERT_TRUE(tx.is_ok());
  EXPECT_EQ(tx->id, TxId::make(RangeId(3), 9));
  EXPECT_EQ(tx->op, "payload");
  EXPECT_EQ(tx->app, AppId::kKv);
  EXPECT_FALSE(decode_tx_record(p.substr(0, p.size() - 1)).is_ok());
  EXPECT_FALSE(decode_tx_record(p + "x").is_ok());
  p[0] = 3;  // a format this build does not know
  EXPECT_FALSE(decode_tx_record(p).is_ok());
}

// Logs written before apps had 32-bit ids still replay: format 1 named the
// app by one byte, 1 for kv.
TEST(TxRecord, Format1IsStillRead) {
  std::string p;
  ByteWriter w(p);
  w.u8(1);
  w.u64(TxId::make(RangeId(3), 9).raw());
  w.u8(1);
  w.bytes("payload");
  Result<TxMsg> tx = decode_tx_record(p);
  ASSERT_TRUE(tx.is_ok()) << tx.status().to_string();
  EXPECT_EQ(tx->app, AppId::kKv);
  EXPECT_EQ(tx->op, "payload");
  // A tx's digest, which epochs bind it to, is what it was then.
  EXPECT_EQ(tx_digest(AppId::kKv, "payload"), hash64("payload", 0x6d61726f6f6e7478 + 1));
}

}  // namespace
}  // namespace maroon
