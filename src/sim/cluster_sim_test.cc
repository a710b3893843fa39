// The whole-cluster simulator's own tests: determinism, and a short sweep
// that must pass and must have exercised the faults it claims to inject.
// Longer sweeps are the ctest entries cluster_sim_sweep_* (label slow).
#include "sim/cluster_sim.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "app/kv/kv_op.h"

namespace maroon::sim {
namespace {

TEST(ClusterSim, SameSeedSameRun) {
  for (uint64_t seed : {5, 23}) {
    ClusterSettings s = ClusterSettings::random(seed);
    ClusterResult a = run_cluster_simulation(s);
    ClusterResult b = run_cluster_simulation(s);
    EXPECT_TRUE(a.ok) << seed << ": " << a.failure;
    EXPECT_EQ(a.failure, b.failure) << seed;
    EXPECT_EQ(a.stats.fingerprint, b.stats.fingerprint) << seed;
    EXPECT_EQ(a.stats.simulated_us, b.stats.simulated_us) << seed;
    EXPECT_EQ(a.stats.network.sent, b.stats.network.sent) << seed;
  }
}

TEST(ClusterSim, TracingDoesNotChangeTheRun) {
  ClusterSettings s = ClusterSettings::random(42);
  ClusterResult plain = run_cluster_simulation(s);
  ClusterResult traced = run_cluster_simulation(s, /*trace_lines=*/100);
  EXPECT_EQ(plain.stats.fingerprint, traced.stats.fingerprint);
  EXPECT_EQ(plain.failure, traced.failure);
  EXPECT_TRUE(plain.trace.empty());
  EXPECT_EQ(traced.trace.size(), 100u);
}

TEST(ClusterSim, DifferentSeedsDifferentRuns) {
  ClusterResult a = run_cluster_simulation(ClusterSettings::random(1));
  ClusterResult b = run_cluster_simulation(ClusterSettings::random(2));
  EXPECT_NE(a.stats.fingerprint, b.stats.fingerprint);
}

TEST(ClusterSim, SingleNode) {
  for (uint64_t seed : {3, 4}) {
    ClusterSettings s = ClusterSettings::random(seed);
    s.override_nodes(1);
    ClusterResult r = run_cluster_simulation(s);
    EXPECT_TRUE(r.ok) << seed << ": " << r.failure;
    EXPECT_GT(r.stats.ops_completed, 0u) << seed;
  }
}

TEST(ClusterSim, SweepOfRandomSeeds) {
  ClusterStats sum;
  size_t five = 0, one = 0;
  for (uint64_t seed = 1; seed <= 20; seed++) {
    ClusterSettings s = ClusterSettings::random(seed);
    ClusterResult r = run_cluster_simulation(s);
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.failure
                      << "\n  replay: maroon-sim --cluster --seed " << seed;
    EXPECT_EQ(r.stats.ops_unknown + r.stats.ops_completed > 0, true) << seed;
    if (r.ok) {
      // Every unknown op was resolved before the linearizability check.
      EXPECT_EQ(r.stats.unknown_applied + r.stats.unknown_never_applied, r.stats.ops_unknown)
          << seed;
    }
    sum.ops_unknown += r.stats.ops_unknown;
    sum.unknown_applied += r.stats.unknown_applied;
    sum.unknown_never_applied += r.stats.unknown_never_applied;
    sum.ops_completed += r.stats.ops_completed;
    sum.faults.crashes += r.stats.faults.crashes;
    sum.nodes_lost += r.stats.nodes_lost;
    sum.power_failures += r.stats.power_failures;
    sum.gateway_crashes += r.stats.gateway_crashes;
    sum.network.partitions += r.stats.network.partitions;
    sum.ranges_sealed += r.stats.ranges_sealed;
    sum.ranges_retired += r.stats.ranges_retired;
    sum.unknown_app_results += r.stats.unknown_app_results;
    sum.messages_coded += r.stats.messages_coded;
    sum.network.dropped += r.stats.network.dropped;
    sum.faults.pauses += r.stats.faults.pauses;
    sum.gateway_pauses += r.stats.gateway_pauses;
    sum.max_view = std::max(sum.max_view, r.stats.max_view);
    five += s.nodes == 5;
    one += s.nodes == 1;
  }
  // The sweep means something only if the faults happened.
  EXPECT_GT(sum.ops_completed, 2000u);
  EXPECT_GT(sum.unknown_applied, 0u);
  EXPECT_GT(sum.unknown_never_applied, 0u);
  EXPECT_GT(sum.faults.crashes, 20u);
  EXPECT_GT(sum.nodes_lost, 2u);
  EXPECT_GT(sum.power_failures, 2u);
  EXPECT_GT(sum.gateway_crashes, 5u);
  EXPECT_GT(sum.network.partitions, 20u);
  EXPECT_GT(sum.ranges_sealed, 5u);
  EXPECT_GT(sum.ranges_retired, 0u);
  EXPECT_GT(sum.unknown_app_results, 0u);
  EXPECT_GT(sum.messages_coded, 5'000u);
  EXPECT_GT(sum.network.dropped, 500u);
  EXPECT_GT(sum.faults.pauses, 5u);
  EXPECT_GT(sum.gateway_pauses, 0u);
  EXPECT_GT(sum.max_view, 3u);
  EXPECT_GT(five, 0u);
  EXPECT_GT(one, 0u);
}

TEST(ClusterSim, ANodeBackFromALongOutageCatchesUpFromASnapshotOrStopsSayingWhy) {
  // Its peers keep a few KiB of executed txs: some of these seeds bring it
  // back to find what it needs evicted everywhere. With snapshots (most such
  // seeds) it installs a peer's; without, it must stop (a fault naming the
  // evicted tx), not pull for ever.
  size_t runs = 0;
  uint64_t installs = 0;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    ClusterSettings s = ClusterSettings::random(seed);
    if (!s.long_outage) continue;
    runs++;
    ClusterResult r = run_cluster_simulation(s);
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.failure
                      << "\n  replay: maroon-sim --cluster --seed " << seed;
    installs += r.stats.snapshot_installs;
    if (s.snapshot_log_bytes == 0) continue;
    EXPECT_EQ(r.stats.lag_stops, 0u) << "seed " << seed << " has snapshots, yet a node stopped";
  }
  EXPECT_GE(runs, 10u);
  EXPECT_GE(installs, 3u);
}

// Runs the first `runs` random seeds that `eligible` accepts, each with a
// fault forced on by `force` (so not a maroon-sim replay); every run must
// pass. Returns their stats.
std::vector<ClusterStats> run_forced(size_t runs,
                                     const std::function<bool(const ClusterSettings&)>& eligible,
                                     const std::function<void(ClusterSettings&)>& force,
                                     const char* forced) {
  std::vector<ClusterStats> stats;
  for (uint64_t seed = 1; stats.size() < runs; seed++) {
    ClusterSettings s = ClusterSettings::random(seed);
    if (!eligible(s)) continue;
    force(s);
    ClusterResult r = run_cluster_simulation(s);
    EXPECT_TRUE(r.ok) << "seed " << seed << ": " << r.failure << "\n  (" << forced
                      << " forced on: not a maroon-sim replay)";
    stats.push_back(r.stats);
  }
  return stats;
}

TEST(ClusterSim, WithoutSnapshotsANodeBackFromALongOutageStopsSayingWhy) {
  uint64_t stops = 0;
  for (const ClusterStats& st : run_forced(
           10, [](const ClusterSettings& s) { return s.long_outage; },
           [](ClusterSettings& s) { s.snapshot_log_bytes = 0; }, "no snapshots")) {
    stops += st.lag_stops;
    EXPECT_EQ(st.snapshot_installs, 0u);
  }
  EXPECT_GE(stops, 2u);
}

TEST(ClusterSim, AFaultyGatewaysTwoPayloadsExecuteAsOneEverywhereOrSealItsRange) {
  // Seeds whose gateways send one id in ten with two payloads: every node
  // must execute the same bytes (the per-epoch checks), a node holding the
  // other ones replaces them, and a range whose id k nodes do not hold the
  // same way is sealed before it, so its clients go on.
  uint64_t answered = 0, replaced = 0, sealed = 0;
  for (const ClusterStats& st : run_forced(
           12, [](const ClusterSettings& s) { return s.nodes > 1; },
           [](ClusterSettings& s) { s.two_payload_fraction = 0.1; }, "two payloads")) {
    answered += st.two_payload_results;
    replaced += st.txs_replaced;
    sealed += st.ranges_sealed;
  }
  EXPECT_GT(answered, 5u);
  EXPECT_GT(replaced, 0u) << "no node ever held the bytes that lost";
  EXPECT_GT(sealed, 0u);
}

TEST(ClusterSim, NodesWhoseLogLostItsEndRecoverFromPeersBeforeTheyVote) {
  // Restarts that find the last WAL segment (or all) gone, with synced
  // records in them: the node's replica may not vote until it took back a
  // primary's log, the txs it lost come back by pulls, and every check
  // (per-epoch hashes, no acknowledged tx lost, linearizability) holds.
  uint64_t losses = 0, recoveries = 0;
  for (const ClusterStats& st : run_forced(
           10,
           [](const ClusterSettings& s) {
             return s.nodes >= 3 && s.nodes_lost == 0 && !s.long_outage;
           },
           [](ClusterSettings& s) { s.log_loss_chance = 0.3; }, "log losses")) {
    losses += st.log_losses;
    recoveries += st.log_recoveries;
  }
  EXPECT_GE(losses, 3u);
  EXPECT_GT(recoveries, 0u);
}

TEST(ClusterSim, StaleMessagesOnlyWhenAskedFor) {
  size_t drawn = 0;
  for (uint64_t seed = 1; seed <= 20; seed++) {
    ClusterSettings plain = ClusterSettings::random(seed);
    ClusterSettings stale = ClusterSettings::random(seed, /*stale=*/true);
    EXPECT_EQ(plain.network.stale, 0) << seed;
    drawn += stale.network.stale > 0;
    // The rest of the seed is the same run.
    stale.network.stale = 0;
    EXPECT_EQ(plain.describe(), stale.describe()) << seed;
  }
  EXPECT_GT(drawn, 0u);
  // Seed 2 delivers messages stale and passes.
  ClusterResult r = run_cluster_simulation(ClusterSettings::random(2, /*stale=*/true));
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_GT(r.stats.network.stale, 0u);
}

check::KvOperation pending_op(check::KvOpKind kind, int64_t call) {
  check::KvOperation op;
  op.kind = kind;
  op.key = "k";
  op.call = call;
  op.ret = check::kPending;
  return op;
}

TEST(ClusterSim, UnknownOpsResolvedFromWhatTheClusterApplied) {
  const TxId done(TxId::make(RangeId(1), 1));
  const TxId get(TxId::make(RangeId(1), 2));
  const TxId never(TxId::make(RangeId(1), 3));
  const TxId incr(TxId::make(RangeId(2), 1));
  const TxId cas(TxId::make(RangeId(2), 2));
  check::KvOperation completed = pending_op(check::KvOpKind::kPut, 5);
  completed.ret = 9;
  std::vector<check::KvOperation> history = {
      completed,
      pending_op(check::KvOpKind::kGet, 10),
      pending_op(check::KvOpKind::kPut, 20),
      pending_op(check::KvOpKind::kIncr, 30),
      pending_op(check::KvOpKind::kCas, 40),
  };
  std::vector<TxId> txs = {done, get, never, incr, cas};
  std::unordered_map<uint64_t, AppliedTx> applied = {
      {done.raw(), {7, kv::encode_reply(kv::Reply::ok())}},
      {get.raw(), {15, kv::encode_reply(kv::Reply::of_value("v"))}},
      {incr.raw(), {31, kv::encode_reply(kv::Reply::of_int(4))}},
      {cas.raw(), {50, kv::encode_reply(kv::Reply::of_error(Code::kConflict, "no"))}},
  };
  UnknownOpCounts counts;
  ASSERT_TRUE(resolve_unknown_ops(history, txs, applied, counts).is_ok());
  EXPECT_EQ(counts.applied, 3u);
  EXPECT_EQ(counts.never_applied, 1u);
  ASSERT_EQ(history.size(), 4u);  // the put that never executed is gone
  EXPECT_EQ(history[0].ret, 9);   // a completed op keeps what its client saw
  EXPECT_EQ(history[1].kind, check::KvOpKind::kGet);
  EXPECT_EQ(history[1].ret, 15);
  EXPECT_EQ(history[1].output, "v");
  EXPECT_EQ(history[2].kind, check::KvOpKind::kIncr);
  EXPECT_EQ(history[2].ret, 31);
  EXPECT_EQ(history[2].output, "4");
  EXPECT_EQ(history[3].kind, check::KvOpKind::kCas);
  EXPECT_EQ(history[3].ret, 50);
  EXPECT_FALSE(history[3].ok);
  for (const check::KvOperation& op : history) EXPECT_NE(op.ret, check::kPending);
}

TEST(ClusterSim, UnknownOpWithAWrongKindOfReplyIsAnError) {
  const TxId tx(TxId::make(RangeId(1), 1));
  std::vector<check::KvOperation> history = {pending_op(check::KvOpKind::kPut, 1)};
  std::unordered_map<uint64_t, AppliedTx> applied = {
      {tx.raw(), {2, kv::encode_reply(kv::Reply::of_int(1))}}};
  UnknownOpCounts counts;
  EXPECT_FALSE(resolve_unknown_ops(history, {tx}, applied, counts).is_ok());
}

}  // namespace
}  // namespace maroon::sim
