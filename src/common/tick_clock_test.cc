#include "common/tick_clock.h"

#include <gtest/gtest.h>

namespace maroon {
namespace {

TEST(TickClock, OneTickPerPeriodOnTime) {
  TickClock c(10'000, 100, 1'000'000);
  EXPECT_EQ(c.due(1'000'000), 0u);
  EXPECT_EQ(c.due(1'009'999), 0u);
  EXPECT_EQ(c.due(1'010'000), 1u);
  EXPECT_EQ(c.due(1'010'000), 0u);
  EXPECT_EQ(c.due(1'025'000), 1u);
  EXPECT_EQ(c.due(1'030'000), 1u);
  EXPECT_EQ(c.ticks(), 3u);
}

// A timer that fires late, or an event loop that stalled, must not stretch
// a lease: the ticks the stall swallowed are all due at once.
TEST(TickClock, AStallIsCaughtUpSoLeasesRunInRealTime) {
  TickClock c(10'000, 1000, 0);
  EXPECT_EQ(c.due(10'000), 1u);
  EXPECT_EQ(c.due(510'000), 50u);  // half a second of missed ticks
  EXPECT_EQ(c.ticks(), 51u);
  EXPECT_EQ(c.skipped(), 0u);
}

TEST(TickClock, AVeryLongPauseIsCaughtUpToTheBoundAndTheRestCounted) {
  TickClock c(10'000, 100, 0);
  EXPECT_EQ(c.due(3'600'000'000), 100u);  // an hour: 360000 ticks owed
  EXPECT_EQ(c.skipped(), 360'000u - 100u);
  EXPECT_EQ(c.due(3'600'010'000), 1u);  // and on time again afterwards
}

TEST(TickClock, ATimeBeforeTheStartOrBeforeTheLastReadingGivesNothing) {
  TickClock c(10'000, 100, 50'000);
  EXPECT_EQ(c.due(0), 0u);
  EXPECT_EQ(c.due(100'000), 5u);
  EXPECT_EQ(c.due(60'000), 0u);
  EXPECT_EQ(c.due(110'000), 1u);
}

}  // namespace
}  // namespace maroon
