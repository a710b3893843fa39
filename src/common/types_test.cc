#include "common/types.h"

#include <gtest/gtest.h>

#include <type_traits>

namespace maroon {
namespace {

TEST(TxId, ComposesRangeAndOffset) {
  TxId id = TxId::make(RangeId(5), 42);
  EXPECT_EQ(id.range(), RangeId(5));
  EXPECT_EQ(id.offset(), 42u);
  EXPECT_EQ(id.raw(), 5 * kRangeSize + 42);
}

TEST(TxId, OrdersByRangeThenOffset) {
  EXPECT_LT(TxId::make(RangeId(1), kOffsetMax), TxId::make(RangeId(2), 1));
  EXPECT_LT(TxId::make(RangeId(2), 1), TxId::make(RangeId(2), 2));
}

TEST(StrongNumber, DistinctTypesDoNotMix) {
  static_assert(!std::is_convertible_v<EpochNumber, RangeId>);
  static_assert(!std::is_convertible_v<uint64_t, EpochNumber>);
  EXPECT_EQ(EpochNumber(3).next(), EpochNumber(4));
}

}  // namespace
}  // namespace maroon
