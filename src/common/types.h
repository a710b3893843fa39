// Strong types for protocol numbers: mixing an epoch number with a tx id, or a
// range with an offset, does not compile.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>

#include "maroon/app_id.h"
#include "maroon/assert.h"

namespace maroon {

template <typename Tag, typename T = uint64_t>
class StrongNumber {
 public:
  using value_type = T;
  constexpr StrongNumber() = default;
  constexpr explicit StrongNumber(T v) : v_(v) {}
  constexpr T value() const { return v_; }
  constexpr auto operator<=>(const StrongNumber&) const = default;
  constexpr StrongNumber next() const { return StrongNumber(v_ + 1); }

 private:
  T v_{};
};

template <typename Tag, typename T>
std::ostream& operator<<(std::ostream& os, StrongNumber<Tag, T> n) {
  return os << n.value();
}

using RangeId = StrongNumber<struct RangeTag>;        // a block of 2^30 tx ids
using EpochNumber = StrongNumber<struct EpochTag>;    // position in the ordering log
using GatewayId = StrongNumber<struct GatewayTag>;    // a gateway incarnation
using NodeId = StrongNumber<struct NodeTag, uint32_t>;
using Lsn = StrongNumber<struct LsnTag>;              // WAL record sequence number

// Offsets inside a range start at 1; offset 0 means "nothing yet".
inline constexpr unsigned kRangeBits = 30;
inline constexpr uint64_t kRangeSize = uint64_t{1} << kRangeBits;
inline constexpr uint64_t kOffsetMax = kRangeSize - 1;

// A tx id is range * 2^30 + offset.
class TxId {
 public:
  constexpr TxId() = default;
  constexpr explicit TxId(uint64_t raw) : raw_(raw) {}
  static constexpr TxId make(RangeId range, uint64_t offset) {
    MAROON_ASSERT(offset >= 1 && offset <= kOffsetMax);
    MAROON_ASSERT(range.value() < (uint64_t{1} << (64 - kRangeBits)));
    return TxId((range.value() << kRangeBits) | offset);
  }
  constexpr uint64_t raw() const { return raw_; }
  constexpr RangeId range() const { return RangeId(raw_ >> kRangeBits); }
  constexpr uint64_t offset() const { return raw_ & kOffsetMax; }
  constexpr auto operator<=>(const TxId&) const = default;

 private:
  uint64_t raw_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, TxId id) {
  return os << id.range() << ":" << id.offset();
}

// Formats before AppId had 32 bits (tx records and node state of format 1,
// snapshots' app sections of one byte) named an app by one byte: 0 for
// system ops, 1 for kv.
constexpr AppId app_id_of_format1(uint8_t app) {
  return app == 0 ? AppId::kSystem : app == 1 ? AppId::kKv : AppId(app);
}

}  // namespace maroon

template <typename Tag, typename T>
struct std::hash<maroon::StrongNumber<Tag, T>> {
  size_t operator()(maroon::StrongNumber<Tag, T> n) const noexcept {
    return std::hash<T>{}(n.value());
  }
};
template <>
struct std::hash<maroon::AppId> {
  size_t operator()(maroon::AppId id) const noexcept { return std::hash<uint32_t>{}(id.value()); }
};
template <>
struct std::hash<maroon::TxId> {
  size_t operator()(maroon::TxId id) const noexcept { return std::hash<uint64_t>{}(id.raw()); }
};
