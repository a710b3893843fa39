#include "sim/world.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace maroon::sim {
namespace {

TEST(World, EventsRunInTimeThenInsertionOrder) {
  World w(1, 0, false);
  std::vector<int> order;
  w.at(20, [&] { order.push_back(3); });
  w.at(10, [&] { order.push_back(1); });
  w.at(10, [&] { order.push_back(2); });  // same time: after the one inserted first
  w.at(20, [&] { order.push_back(4); });
  EXPECT_EQ(w.run_until(100, nullptr), World::RunEnd::kIdle);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(w.now(), 20);
  EXPECT_EQ(w.events_run(), 4u);
}

TEST(World, AfterIsRelativeToNow) {
  World w(1, 0, false);
  std::vector<int64_t> times;
  w.at(5, [&] { w.after(7, [&] { times.push_back(w.now()); }); });
  w.run_until(100, nullptr);
  EXPECT_EQ(times, (std::vector<int64_t>{12}));
}

TEST(World, StopsAtTheDeadlineAndWhenAsked) {
  World w(1, 0, false);
  int ran = 0;
  for (int64_t t = 10; t <= 100; t += 10) w.at(t, [&] { ran++; });
  EXPECT_EQ(w.run_until(35, nullptr), World::RunEnd::kDeadline);
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(w.now(), 35);
  EXPECT_EQ(w.run_until(1000, [&] { return ran == 5; }), World::RunEnd::kStopped);
  EXPECT_EQ(w.now(), 50);
  EXPECT_EQ(w.pending(), 5u);
}

TEST(World, RunUntilDoneChecksFromATimeAtAnInterval) {
  World w(1, 0, false);
  for (int64_t t = 10; t <= 1000; t += 10) w.at(t, [] {});
  std::vector<int64_t> checks;
  EXPECT_EQ(w.run_until_done(10'000, 300, 100,
                             [&] {
                               checks.push_back(w.now());
                               return checks.size() == 4;
                             }),
            World::RunEnd::kStopped);
  EXPECT_EQ(checks, (std::vector<int64_t>{300, 400, 500, 600}));
}

TEST(World, AFailureStopsTheRunAndTheFirstOneIsKept) {
  World w(1, 10, false);
  int ran = 0;
  w.at(10, [&] {
    ran++;
    w.fail("first");
    w.fail("second");
  });
  w.at(20, [&] { ran++; });
  EXPECT_EQ(w.run_until(100, nullptr), World::RunEnd::kFailed);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(w.failure(), "t=0.000010s: first");
  EXPECT_FALSE(w.outcome().ok);
  EXPECT_EQ(w.outcome().failure, w.failure());
  ASSERT_EQ(w.last_events().size(), 1u);
  EXPECT_NE(w.last_events()[0].find("VIOLATION first"), std::string::npos);
}

TEST(World, AMessageStormFails) {
  World w(1, 0, false);
  for (size_t i = 0; i <= World::kEventsPendingMax; i++) w.at(1, [] {});
  EXPECT_EQ(w.run_until(100, nullptr), World::RunEnd::kFailed);
  EXPECT_NE(w.failure().find("message storm"), std::string::npos);
}

TEST(World, SameSeedSameDraws) {
  World a(7, 0, false), b(7, 0, false), c(8, 0, false);
  bool differs = false;
  for (int i = 0; i < 100; i++) {
    const int64_t x = a.uniform(3, 9);
    EXPECT_EQ(x, b.uniform(3, 9));
    EXPECT_GE(x, 3);
    EXPECT_LE(x, 9);
    const int64_t e = a.exponential(1000);
    EXPECT_EQ(e, b.exponential(1000));
    EXPECT_GE(e, 1);
    const double k = a.skew(0.15);
    EXPECT_EQ(k, b.skew(0.15));
    EXPECT_GE(k, 0.85);
    EXPECT_LE(k, 1.15);
    differs |= c.uniform(3, 9) != x;
  }
  EXPECT_TRUE(differs);
}

TEST(World, ExponentialHasTheMean) {
  World w(3, 0, false);
  double sum = 0;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; i++) sum += static_cast<double>(w.exponential(10'000));
  EXPECT_NEAR(sum / kDraws, 10'000, 500);
}

TEST(World, TraceLinesAreFingerprintedDetailLinesAreNot) {
  World plain(1, 0, false), traced(1, 3, false);
  for (World* w : {&plain, &traced}) {
    w->trace("a");
    w->trace_detail("only when tracing");
    w->fingerprint({1, 2, 3});
    w->trace("b");
    w->trace("c");
  }
  EXPECT_EQ(plain.fingerprint(), traced.fingerprint());
  EXPECT_TRUE(plain.last_events().empty());
  ASSERT_EQ(traced.last_events().size(), 3u);  // a ring: the last three
  EXPECT_NE(traced.last_events()[0].find("only when tracing"), std::string::npos);
  World other(1, 0, false);
  other.trace("a");
  other.trace("b");
  EXPECT_NE(other.fingerprint(), plain.fingerprint());
}

}  // namespace
}  // namespace maroon::sim
