// Reconnect delays: exponential from `min` to `max`, each with equal jitter
// (uniform in [d/2, d]) so that nodes that lost a peer together do not redial
// it in lockstep.
#pragma once

#include <chrono>
#include <cstdint>

#include "maroon/assert.h"
#include "maroon/prng.h"

namespace maroon {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds min, std::chrono::milliseconds max, uint64_t seed)
      : min_(min), max_(max), prng_(seed) {
    MAROON_ASSERT(min_.count() >= 0 && min_ <= max_);
  }

  // The delay before the next attempt; each call counts one more failure.
  std::chrono::milliseconds next() {
    std::chrono::milliseconds d = min_;
    for (uint32_t i = 0; i < failures_ && d < max_; i++) d *= 2;
    if (d > max_) d = max_;
    if (failures_ < failures_cap) failures_++;
    const uint64_t half = static_cast<uint64_t>(d.count()) / 2;
    const uint64_t jittered = static_cast<uint64_t>(d.count()) - half + prng_.below(half + 1);
    MAROON_ASSERT(jittered <= static_cast<uint64_t>(max_.count()));
    return std::chrono::milliseconds(jittered);
  }

  // After a success: the next delay starts from `min` again.
  void reset() { failures_ = 0; }
  uint32_t failures() const { return failures_; }

 private:
  // Enough doublings to reach any max from min >= 1 ms; bounds the loop in next().
  static constexpr uint32_t failures_cap = 64;

  const std::chrono::milliseconds min_;
  const std::chrono::milliseconds max_;
  Prng prng_;
  uint32_t failures_ = 0;
};

}  // namespace maroon
