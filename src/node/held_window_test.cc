#include "node/held_window.h"

#include <gtest/gtest.h>

namespace maroon {
namespace {

TEST(HeldWindow, HoldsOutOfOrderAndSlidesInOrder) {
  HeldWindow w(10);
  w.insert(3, AppId::kKv, "c", 0, false);
  w.insert(1, AppId::kKv, "a", 0, true);
  EXPECT_TRUE(w.contains(1));
  EXPECT_FALSE(w.contains(2));
  EXPECT_TRUE(w.contains(3));
  EXPECT_EQ(w.size(), 2u);
  EXPECT_EQ(w.take_front().op, "a");
  EXPECT_EQ(w.base(), 2u);
  w.insert(2, AppId::kKv, "b", 0, false);
  EXPECT_EQ(w.take_front().op, "b");
  EXPECT_EQ(w.take_front().op, "c");
  EXPECT_EQ(w.size(), 0u);
  EXPECT_FALSE(w.contains(3)) << "executed offsets are gone";
}

TEST(HeldWindow, BoundsHowFarAheadTxsMayArrive) {
  HeldWindow w(4);
  EXPECT_FALSE(w.beyond(4));
  EXPECT_TRUE(w.beyond(5));
  w.insert(1, AppId::kKv, "a", 0, true);
  w.take_front();
  EXPECT_FALSE(w.beyond(5));
  EXPECT_TRUE(w.beyond(6));
}

TEST(HeldWindow, EraseEmptiesOneSlotAndItCanBeFilledAgain) {
  HeldWindow w(10);
  w.insert(1, AppId::kKv, "a", 7, true);
  w.insert(2, AppId::kKv, "b", 8, true);
  w.erase(1);
  EXPECT_FALSE(w.contains(1));
  EXPECT_EQ(w.size(), 1u);
  EXPECT_EQ(w.find(2)->digest, 8u);
  w.insert(1, AppId::kKv, "z", 9, false);
  Held h = w.take_front();
  EXPECT_EQ(h.op, "z");
  EXPECT_EQ(h.digest, 9u);
  EXPECT_FALSE(h.durable);
}

}  // namespace
}  // namespace maroon
