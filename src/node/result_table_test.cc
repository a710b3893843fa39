#include "node/result_table.h"

#include <gtest/gtest.h>

namespace maroon {
namespace {

TEST(ResultTable, EvictsOldestByCount) {
  ResultTable t(2, 1 << 20);
  t.push(1, "a");
  t.push(2, "b");
  t.push(3, "c");
  EXPECT_FALSE(t.find(1).has_value());
  EXPECT_EQ(t.find(2), "b");
  EXPECT_EQ(t.find(3), "c");
}

TEST(ResultTable, EvictsOldestByBytesButKeepsTheNewest) {
  ResultTable t(100, 10);
  t.push(1, "12345");
  t.push(2, "12345");
  EXPECT_EQ(t.bytes(), 10u);
  t.push(3, "1");
  EXPECT_FALSE(t.find(1).has_value());
  EXPECT_EQ(t.bytes(), 6u);
  t.push(4, std::string(50, 'x'));  // larger than the whole budget: kept alone
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.find(4)->size(), 50u);
}

TEST(ResultTable, ClearForgetsResultsButKeepsCounting) {
  ResultTable t(10, 100);
  t.push(1, "a");
  t.clear();
  EXPECT_FALSE(t.find(1).has_value());
  t.push(2, "b");
  EXPECT_EQ(t.find(2), "b");
  EXPECT_EQ(t.last_offset(), 2u);
}

}  // namespace
}  // namespace maroon
