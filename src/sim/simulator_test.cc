#include "sim/simulator.h"

#include <gtest/gtest.h>

#include "sim/kv_service.h"

namespace maroon::sim {
namespace {

TEST(Simulator, SameSeedSameRun) {
  for (uint64_t seed : {3, 17, 101}) {
    SimSettings s = SimSettings::random(seed);
    SimResult a = run_simulation(s);
    SimResult b = run_simulation(s);
    EXPECT_EQ(a.ok, b.ok) << seed;
    EXPECT_EQ(a.failure, b.failure) << seed;
    EXPECT_EQ(a.stats.fingerprint, b.stats.fingerprint) << seed;
    EXPECT_EQ(a.stats.ops_completed, b.stats.ops_completed) << seed;
    EXPECT_EQ(a.stats.simulated_us, b.stats.simulated_us) << seed;
    EXPECT_GT(a.stats.ops_completed, 0u) << seed;
  }
}

TEST(Simulator, DifferentSeedsDifferentRuns) {
  SimResult a = run_simulation(SimSettings::random(1));
  SimResult b = run_simulation(SimSettings::random(2));
  EXPECT_NE(a.stats.fingerprint, b.stats.fingerprint);
}

TEST(Simulator, TracingDoesNotChangeTheRun) {
  SimSettings s = SimSettings::random(42);
  SimResult plain = run_simulation(s);
  SimResult traced = run_simulation(s, 50);
  EXPECT_EQ(plain.stats.fingerprint, traced.stats.fingerprint);
  EXPECT_EQ(traced.trace.size(), 50u);
}

TEST(Simulator, FaultFreeGroupsCommitEverything) {
  for (size_t n : {1, 3, 5, 7}) {
    SimSettings s;
    s.seed = n;
    s.replicas = n;
    s.clients = 4;
    s.safety_us = 1'000'000;
    SimResult r = run_simulation(s);
    EXPECT_TRUE(r.ok) << n << ": " << r.failure;
    EXPECT_EQ(r.stats.ops_pending, 0u);
    EXPECT_EQ(r.stats.max_view, 0u) << "no view change without faults";
    EXPECT_GT(r.stats.committed_ops, 100u);
  }
}

// The sweep that runs under the sanitizers too; maroon-sim sweeps thousands
// more seeds as separate ctest entries (src/sim/CMakeLists.txt).
TEST(Simulator, SweepOfRandomSeeds) {
  uint64_t faults = 0, view_changes = 0, reconfigurations = 0;
  for (uint64_t seed = 1; seed <= 60; seed++) {
    SimSettings s = SimSettings::random(seed);
    SimResult r = run_simulation(s);
    ASSERT_TRUE(r.ok) << s.describe() << "\n"
                      << r.failure << "\nreplay: maroon-sim --seed " << seed;
    faults += r.stats.faults.crashes + r.stats.network.partitions;
    view_changes += r.stats.max_view;
    reconfigurations += r.stats.reconfigurations;
  }
  // The sweep must actually exercise the protocol's hard paths.
  EXPECT_GT(faults, 50u);
  EXPECT_GT(view_changes, 20u);
  EXPECT_GT(reconfigurations, 5u);
}

TEST(Simulator, ReplicasWhoseLogLostItsEndRecoverBeforeTheyVote) {
  // The seeds that lose logs (a third of restarts, in three seeds of ten).
  // With the rule put back (a lost log restarts like any other, and may
  // rejoin by a view change from what is left), seed 499 stops at an
  // assertion: a view's log lacks a committed op.
  uint64_t losses = 0, recoveries = 0;
  for (uint64_t seed = 1; seed <= 520; seed++) {
    SimSettings s = SimSettings::random(seed);
    if (s.log_loss_chance == 0) continue;
    SimResult r = run_simulation(s);
    ASSERT_TRUE(r.ok) << s.describe() << "\n"
                      << r.failure << "\nreplay: maroon-sim --seed " << seed;
    losses += r.stats.log_losses;
    recoveries += r.stats.log_recoveries;
  }
  EXPECT_GE(losses, 20u);
  EXPECT_GE(recoveries, 10u);
}

TEST(KvService, CommandAndResultRoundTrip) {
  KvCommand c{check::KvOpKind::kCas, "k", "new", std::string("old")};
  auto d = decode_command(encode_command(c));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->kind, c.kind);
  EXPECT_EQ(d->key, "k");
  EXPECT_EQ(d->value, "new");
  EXPECT_EQ(d->expected, std::optional<std::string>("old"));
  EXPECT_FALSE(decode_command("garbage"));
  auto r = decode_result(encode_result({std::string("v"), false}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->output, std::optional<std::string>("v"));
  EXPECT_FALSE(r->ok);
}

TEST(KvService, FlagsARequestExecutedTwice) {
  KvService svc(nullptr);
  vr::Entry e{vr::OpNumber(1),         vr::ViewNumber(0),
              vr::EntryKind::kRequest, vr::ClientId(7),
              vr::RequestNumber(1),    encode_command({check::KvOpKind::kIncr, "n", "", {}})};
  svc.execute(e);
  EXPECT_FALSE(svc.violation());
  e.op = vr::OpNumber(2);
  svc.execute(e);
  ASSERT_TRUE(svc.violation());
  EXPECT_NE(svc.violation()->find("executed twice"), std::string::npos);
}

TEST(KvService, SnapshotRestoresStateAndExecutedSet) {
  KvService a(nullptr), b(nullptr);
  vr::Entry e{vr::OpNumber(1),         vr::ViewNumber(0),
              vr::EntryKind::kRequest, vr::ClientId(7),
              vr::RequestNumber(1),    encode_command({check::KvOpKind::kAppend, "k", "x", {}})};
  a.execute(e);
  ASSERT_TRUE(b.restore(a.snapshot()));
  EXPECT_EQ(a.state_hash(), b.state_hash());
  b.execute(e);
  EXPECT_TRUE(b.violation());  // the executed set came with the snapshot
  EXPECT_FALSE(b.restore("\x05"));
}

}  // namespace
}  // namespace maroon::sim
