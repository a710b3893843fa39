// Protocol ticks from a monotonic clock.
//
// The pure cores count time in ticks: VR's lease promises and view-change
// timeouts, the node's lease expiry and seals, the gateway's renewals. Those
// rules hold in real time only if the tick count keeps pace with the clock.
// A driver that ticks from a periodic timer loses ticks whenever its event
// loop stalls (a long fsync, a GC'd neighbour, a paused VM or SIGSTOP): a
// promise of 12 ticks then lasts as long as the stall. So the driver asks
// this clock how many ticks are due by the monotonic clock and runs them all,
// before it handles anything else.
//
// A stall longer than `catch_up_ticks_max` ticks is caught up only that far:
// by then every lease, promise and timeout the cores keep has run out (the
// caller checks its own timeouts against the bound), and running thousands
// of ticks back to back would only delay the inputs waiting behind them.
// The ticks skipped are counted.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "maroon/assert.h"

namespace maroon {

// Ticks a real driver runs back to back after a stall, at most: 10 s at
// 10 ms ticks, by which time every lease, promise and deadline the cores
// keep (gateway leases and request deadlines, VR's lease promises: a few
// seconds) has run out; a view-change timer that was not due yet fires at
// the next timeout instead, which costs only time.
inline constexpr uint64_t kTickCatchUpMax = 1000;

// The real drivers' clock: steady, in microseconds.
inline uint64_t monotonic_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

class TickClock {
 public:
  TickClock(uint64_t tick_us, uint64_t catch_up_ticks_max, uint64_t start_us)
      : tick_us_(tick_us), catch_up_ticks_max_(catch_up_ticks_max), start_us_(start_us) {
    MAROON_ASSERT(tick_us_ > 0 && catch_up_ticks_max_ > 0);
  }

  // Ticks due at now_us and not yet handed out. A clock reading earlier
  // than one seen before (the monotonic clock does not do that, but a
  // simulated one may be told to) yields none.
  uint64_t due(uint64_t now_us) {
    if (now_us < start_us_) return 0;
    const uint64_t elapsed = (now_us - start_us_) / tick_us_;
    if (elapsed <= ticks_) return 0;
    const uint64_t owed = elapsed - ticks_;
    const uint64_t run = std::min(owed, catch_up_ticks_max_);
    skipped_ += owed - run;
    ticks_ = elapsed;
    return run;
  }

  uint64_t ticks() const { return ticks_; }      // ticks handed out or skipped
  uint64_t skipped() const { return skipped_; }  // beyond the catch-up bound

 private:
  uint64_t tick_us_;
  uint64_t catch_up_ticks_max_;
  uint64_t start_us_;
  uint64_t ticks_ = 0;
  uint64_t skipped_ = 0;
};

}  // namespace maroon
