#include "sim/faults.h"

#include <gtest/gtest.h>

#include <vector>

namespace maroon::sim {
namespace {

TEST(FaultSchedule, EveryRunsUntilFaultsStop) {
  World w(1, 0, false);
  FaultSchedule f(w);
  int64_t last = 0;
  int fired = 0;
  f.every(10'000, [&] {
    fired++;
    last = w.now();
  });
  f.every(0, [] { FAIL() << "a mean of 0 is never"; });
  w.at(1'000'000, [&] { f.stop(); });
  w.run_until(10'000'000, nullptr);
  EXPECT_FALSE(f.on());
  EXPECT_NEAR(fired, 100, 35);  // a mean gap of 10 ms over 1 s
  EXPECT_LT(last, 1'000'000);
  EXPECT_EQ(w.pending(), 0u);
}

TEST(ProcessClock, TicksAtItsPeriod) {
  World w(1, 0, false);
  Process p;
  p.clock = ProcessClock(10'000);
  p.start(0);
  std::vector<int64_t> ticks;
  start_ticks(w, p, [&](uint64_t due) {
    EXPECT_EQ(due, 1u);
    ticks.push_back(w.now());
  });
  w.at(55'000, [&] { p.stop(); });  // a crash ends the ticks
  w.run_until(1'000'000, nullptr);
  EXPECT_EQ(ticks, (std::vector<int64_t>{10'000, 20'000, 30'000, 40'000, 50'000}));
}

TEST(ProcessClock, APausedProcessCatchesUpItsTicksWhenItWakes) {
  World w(1, 0, false);
  Process p;
  p.clock = ProcessClock(10'000);
  p.start(0);
  std::vector<std::pair<int64_t, uint64_t>> runs;  // (time, ticks run)
  start_ticks(w, p, [&](uint64_t due) { runs.emplace_back(w.now(), due); });
  w.at(15'000, [&] { p.clock.pause_until(72'000); });
  w.at(100'000, [&] { p.stop(); });
  w.run_until(1'000'000, nullptr);
  // 10 ms: one tick; paused from 15 to 72 ms: the ticks of 20..70 ms run at
  // 72 ms, six at once; then one every 10 ms again.
  ASSERT_GE(runs.size(), 3u);
  EXPECT_EQ(runs[0], (std::pair<int64_t, uint64_t>{10'000, 1}));
  EXPECT_EQ(runs[1], (std::pair<int64_t, uint64_t>{72'000, 6}));
  uint64_t total = 0;
  for (const auto& [t, due] : runs) total += due;
  EXPECT_EQ(total, 9u);  // 10..90 ms
}

TEST(Process, ARestartVoidsTheOldIncarnationsTicks) {
  World w(1, 0, false);
  Process p;
  p.clock = ProcessClock(10'000);
  p.start(0);
  int old_ticks = 0, new_ticks = 0;
  start_ticks(w, p, [&](uint64_t due) { old_ticks += static_cast<int>(due); });
  w.at(25'000, [&] {
    p.stop();
    p.start(w.now());
    start_ticks(w, p, [&](uint64_t due) { new_ticks += static_cast<int>(due); });
  });
  w.at(100'000, [&] { p.stop(); });
  w.run_until(1'000'000, nullptr);
  EXPECT_EQ(old_ticks, 2);  // 10 and 20 ms
  EXPECT_EQ(new_ticks, 7);  // 35..95 ms
}

TEST(Pauses, PauseProcessCountsAndBounds) {
  World w(1, 10, false);
  FaultSchedule f(w);
  ProcessClock clock(10'000);
  clock.restart(0);
  ProcessFaults o;
  o.pause_max_us = 200'000;
  pause_process(w, f, clock, o, "r1");
  EXPECT_EQ(f.counters().pauses, 1u);
  EXPECT_GE(clock.paused_until(), 10'000);
  EXPECT_LE(clock.paused_until(), 200'000);
  EXPECT_TRUE(clock.paused(0));
  clock.restart(0);  // a crash and restart ends a pause
  EXPECT_FALSE(clock.paused(0));
}

TEST(Disk, AWriteCompletesAfterItsLatencyOrAnArmedCrashStrikesFirst) {
  World w(2, 0, false);
  FaultSchedule f(w);
  ProcessFaults o;
  o.disk_min_us = 100;
  o.disk_max_us = 500;
  Process p;
  p.start(0);
  Disk disk;
  int64_t completed = 0, crashed = 0;
  host::PendingWrite write;
  write.last_seq = 7;
  start_write(
      w, f, o, p, disk, std::move(write),
      [&](host::PendingWrite back) {
        EXPECT_EQ(back.last_seq, 7u);
        completed = w.now();
      },
      [&] { crashed = w.now(); });
  EXPECT_TRUE(disk.in_flight);
  w.run_until(10'000, nullptr);
  EXPECT_GE(completed, 100);
  EXPECT_LE(completed, 500);
  EXPECT_EQ(crashed, 0);
  EXPECT_FALSE(disk.in_flight);

  disk.crash_in_next_write = true;
  const int64_t start = w.now();
  completed = 0;
  start_write(
      w, f, o, p, disk, {}, [&](host::PendingWrite) { completed = w.now(); },
      [&] {
        crashed = w.now();
        p.stop();  // the crash voids the completion
      });
  w.run_until(20'000, nullptr);
  EXPECT_GE(crashed, start);
  EXPECT_LT(crashed, start + 500);
  EXPECT_EQ(completed, 0);
}

TEST(Disk, APausedProcessGetsItsWriteBackWhenItWakes) {
  World w(3, 0, false);
  FaultSchedule f(w);
  ProcessFaults o;
  Process p;
  p.start(0);
  p.clock.pause_until(30'000);
  Disk disk;
  int64_t completed = 0;
  start_write(
      w, f, o, p, disk, {}, [&](host::PendingWrite) { completed = w.now(); }, [] {});
  w.run_until(100'000, nullptr);
  EXPECT_EQ(completed, 30'000);
}

TEST(Disk, ArmingNeedsNoWriteInFlight) {
  World w(1, 0, false);
  Disk disk;
  EXPECT_TRUE(arm_crash_in_next_write(w, disk, 1.0));
  EXPECT_TRUE(disk.crash_in_next_write);
  Disk busy;
  busy.in_flight.emplace();
  EXPECT_FALSE(arm_crash_in_next_write(w, busy, 1.0));
  EXPECT_FALSE(busy.crash_in_next_write);
}

TEST(Disk, ACrashKeepsAPrefixOfTheWriteInFlight) {
  // Over many crashes, every prefix length of a three-step write is kept
  // somewhere, and the rest is given to the disk never (checked by the
  // write callback seeing only prefixes).
  std::vector<int> kept_counts(4, 0);
  int torn = 0;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    World w(seed, 0, false);
    FaultSchedule f(w);
    Disk disk;
    DataDirOptions o;
    o.path = "/d";
    o.node_id = 1;
    o.fresh_data_id = 7;
    o.wal.segment_bytes = 64 * 1024;
    auto dir = DataDir::open(*disk.env, o, nullptr, nullptr);
    if (!dir) GTEST_SKIP() << dir.status().to_string();
    disk.dir = std::move(dir).value();
    disk.in_flight.emplace();
    for (int i = 0; i < 3; i++) disk.in_flight->steps.emplace_back();
    std::vector<size_t> written;
    const CrashedWrite c = crash_disk(w, f, disk, true, [&](std::vector<WriteStep>& steps) {
      written.push_back(steps.size());
      return steps.size();
    });
    ASSERT_EQ(written.size(), 1u);
    EXPECT_EQ(written[0], c.kept);
    kept_counts[c.kept]++;
    torn += c.torn;
    EXPECT_EQ(f.counters().crashes, 1u);
    EXPECT_EQ(f.counters().partial_writes, c.kept > 0 || c.torn ? 1u : 0u);
    EXPECT_FALSE(disk.in_flight);
    EXPECT_FALSE(disk.dir);
  }
  for (int k = 0; k <= 3; k++) EXPECT_GT(kept_counts[k], 0) << k;
  EXPECT_GT(torn, 0);
}

}  // namespace
}  // namespace maroon::sim
