#include "sim/network.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace maroon::sim {
namespace {

struct Arrival {
  int64_t time;
  uint64_t from;
  uint64_t to;
  std::string msg;
};

struct Fixture {
  explicit Fixture(NetworkOptions o, uint64_t seed = 1)
      : world(seed, 0, false),
        net(world, o, [this](uint64_t from, uint64_t to, const std::string& m) {
          arrivals.push_back({world.now(), from, to, m});
        }) {}
  World world;
  std::vector<Arrival> arrivals;
  Network<std::string> net;
};

NetworkOptions reliable() {
  NetworkOptions o;
  o.delay_min_us = 100;
  o.delay_max_us = 2000;
  return o;
}

TEST(Network, DelaysWithinBoundsAndReorders) {
  Fixture f(reliable());
  for (int i = 0; i < 200; i++) {
    f.world.at(i, [&f, i] { f.net.send(1, 2, std::to_string(i)); });
  }
  f.world.run_until(1'000'000, nullptr);
  ASSERT_EQ(f.arrivals.size(), 200u);
  bool reordered = false;
  for (size_t i = 0; i < f.arrivals.size(); i++) {
    const int sent = std::stoi(f.arrivals[i].msg);
    EXPECT_GE(f.arrivals[i].time - sent, 100);
    EXPECT_LE(f.arrivals[i].time - sent, 2000);
    if (i > 0 && sent < std::stoi(f.arrivals[i - 1].msg)) reordered = true;
  }
  EXPECT_TRUE(reordered);
  EXPECT_EQ(f.net.counters().sent, 200u);
  EXPECT_EQ(f.net.counters().dropped, 0u);
}

TEST(Network, LossDuplicationAndStaleDelays) {
  NetworkOptions o = reliable();
  o.loss = 0.2;
  o.duplicate = 0.1;
  o.stale = 0.05;
  o.stale_delay_max_us = 3'000'000;
  Fixture f(o);
  constexpr int kSent = 5000;
  for (int i = 0; i < kSent; i++) f.net.send(1, 2, "m");
  f.world.run_until(10'000'000, nullptr);
  const NetworkCounters& c = f.net.counters();
  EXPECT_EQ(c.sent, uint64_t{kSent});
  EXPECT_NEAR(static_cast<double>(c.dropped), kSent * 0.2, kSent * 0.03);
  EXPECT_NEAR(static_cast<double>(c.duplicated), kSent * 0.8 * 0.1, kSent * 0.02);
  EXPECT_EQ(f.arrivals.size(), kSent - c.dropped + c.duplicated);
  size_t late = 0;
  for (const Arrival& a : f.arrivals) late += a.time > 2000;
  EXPECT_EQ(late, c.stale);
  EXPECT_GT(c.stale, 0u);
}

TEST(Network, PartitionsBlockLinksAlsoInFlight) {
  Fixture f(reliable());
  const std::vector<uint64_t> ends = {1, 2, 3, 4, 5, 6};
  auto name = [](uint64_t e) { return std::to_string(e); };
  // Draw partitions until one splits the ends.
  for (int i = 0; i < 100 && f.net.counters().partitions == 0; i++) {
    f.net.change_partition(ends, name);
  }
  ASSERT_EQ(f.net.counters().partitions, 1u);
  uint64_t a = 0, b = 0;
  for (uint64_t x : ends) {
    for (uint64_t y : ends) {
      if (f.net.blocked(x, y)) a = x, b = y;
    }
  }
  ASSERT_NE(a, 0u);
  EXPECT_TRUE(f.net.blocked(b, a)) << "symmetric";
  f.net.send(a, b, "blocked when sent");
  f.world.run_until(f.world.now() + 10'000, nullptr);
  EXPECT_TRUE(f.arrivals.empty());

  f.net.stop_faults();
  f.net.send(a, b, "in flight");
  // Block it again while the message is on its way.
  for (int i = 0; i < 1000 && !f.net.blocked(a, b); i++) f.net.change_partition(ends, name);
  ASSERT_TRUE(f.net.blocked(a, b));
  f.world.run_until(f.world.now() + 10'000, nullptr);
  EXPECT_TRUE(f.arrivals.empty());
  EXPECT_EQ(f.net.counters().dropped, 2u);

  f.net.stop_faults();
  f.net.send(a, b, "healed");
  f.world.run_until(f.world.now() + 10'000, nullptr);
  EXPECT_EQ(f.arrivals.size(), 1u);
}

TEST(Network, OneWayPartitionsBlockOneDirection) {
  NetworkOptions o = reliable();
  o.asymmetric_partitions = true;
  Fixture f(o, 5);
  const std::vector<uint64_t> ends = {1, 2, 3, 4};
  bool one_way = false;
  for (int i = 0; i < 1000 && !one_way; i++) {
    f.net.change_partition(ends, [](uint64_t e) { return std::to_string(e); });
    for (uint64_t x : ends) {
      for (uint64_t y : ends) one_way |= f.net.blocked(x, y) && !f.net.blocked(y, x);
    }
  }
  EXPECT_TRUE(one_way);
}

TEST(Network, APausedDestinationGetsItsMessagesWhenItWakes) {
  Fixture f(reliable());
  int64_t paused_until = 50'000;
  f.net.set_paused_until([&](uint64_t to) { return to == 2 ? paused_until : 0; });
  f.net.send(1, 2, "to the paused one");
  f.net.send(2, 1, "from it");
  f.world.run_until(1'000'000, nullptr);
  ASSERT_EQ(f.arrivals.size(), 2u);
  EXPECT_EQ(f.arrivals[0].to, 1u);
  EXPECT_LE(f.arrivals[0].time, 2000);
  EXPECT_EQ(f.arrivals[1].to, 2u);
  // Just after it wakes, in a shuffled order (within 2 ms).
  EXPECT_GE(f.arrivals[1].time, 50'000);
  EXPECT_LE(f.arrivals[1].time, 52'000);
  EXPECT_EQ(f.net.counters().held, 1u);
}

TEST(Network, SameSeedSameDeliveries) {
  NetworkOptions o = reliable();
  o.loss = 0.1;
  o.duplicate = 0.1;
  auto run = [&](uint64_t seed) {
    Fixture f(o, seed);
    for (int i = 0; i < 100; i++) f.net.send(static_cast<uint64_t>(i % 3), 7, std::to_string(i));
    f.world.run_until(1'000'000, nullptr);
    std::vector<std::pair<int64_t, std::string>> out;
    for (const Arrival& a : f.arrivals) out.emplace_back(a.time, a.msg);
    return out;
  };
  EXPECT_EQ(run(9), run(9));
  EXPECT_NE(run(9), run(10));
}

}  // namespace
}  // namespace maroon::sim
