#include "sim/world.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "maroon/assert.h"
#include "common/hash.h"

namespace maroon::sim {

World::World(uint64_t seed, size_t trace_lines, bool trace_stdout)
    : prng_(seed), trace_lines_(trace_lines), trace_stdout_(trace_stdout) {}

void World::at(int64_t time_us, std::function<void()> fn) {
  MAROON_ASSERT(time_us >= now_);
  queue_.push(Event{time_us, next_seq_++, std::move(fn)});
}

World::RunEnd World::run_until(int64_t deadline_us, const std::function<bool()>& stop) {
  while (!queue_.empty()) {
    if (failed()) return RunEnd::kFailed;
    if (queue_.size() > kEventsPendingMax) {
      fail(fmt::format("message storm: {} events pending", queue_.size()));
      return RunEnd::kFailed;
    }
    if (queue_.top().time > deadline_us) {
      now_ = std::max(now_, deadline_us);
      return RunEnd::kDeadline;
    }
    // The queue's top is const; the event is moved out before it is popped.
    Event e = std::move(const_cast<Event&>(queue_.top()));
    queue_.pop();
    MAROON_ASSERT(e.time >= now_);
    now_ = e.time;
    events_run_++;
    e.fn();
    if (failed()) return RunEnd::kFailed;
    if (stop && stop()) return RunEnd::kStopped;
  }
  return failed() ? RunEnd::kFailed : RunEnd::kIdle;
}

World::RunEnd World::run_until_done(int64_t deadline_us, int64_t check_from_us,
                                    int64_t check_every_us, const std::function<bool()>& done) {
  MAROON_ASSERT(check_every_us > 0);
  int64_t next_check_us = check_from_us;
  return run_until(deadline_us, [&] {
    if (now_ < next_check_us) return false;
    next_check_us = now_ + check_every_us;
    return done();
  });
}

int64_t World::uniform(int64_t lo, int64_t hi) {
  MAROON_ASSERT(lo <= hi);
  return lo + static_cast<int64_t>(prng_.below(static_cast<uint64_t>(hi - lo) + 1));
}

int64_t World::exponential(int64_t mean_us) {
  MAROON_ASSERT(mean_us > 0);
  const double u = (static_cast<double>(prng_.next() >> 11) + 0.5) * 0x1.0p-53;
  return std::max<int64_t>(1, static_cast<int64_t>(-std::log(u) * static_cast<double>(mean_us)));
}

double World::skew(double skew_max) {
  MAROON_ASSERT(skew_max >= 0 && skew_max < 1);
  return 1.0 + skew_max * (2.0 * static_cast<double>(prng_.next() >> 11) * 0x1.0p-53 - 1.0);
}

void World::trace(const std::string& line) {
  fingerprint_ = hash64(line, fingerprint_);
  trace_detail(line);
}

void World::trace_detail(const std::string& line) {
  if (!tracing()) return;
  std::string full = fmt::format("{:>10.6f} {}", static_cast<double>(now_) / 1e6, line);
  if (trace_stdout_) {
    fmt::print("{}\n", full);
    std::fflush(stdout);  // a broken invariant aborts: keep every line
  }
  if (trace_lines_ > 0) {
    trace_.push_back(std::move(full));
    if (trace_.size() > trace_lines_) trace_.pop_front();
  }
}

void World::fingerprint(std::initializer_list<uint64_t> values) {
  fingerprint_ = hash64(std::string_view(reinterpret_cast<const char*>(values.begin()),
                                         values.size() * sizeof(uint64_t)),
                        fingerprint_);
}

void World::fail(const std::string& why) {
  if (failed()) return;
  failure_ = fmt::format("t={:.6f}s: {}", static_cast<double>(now_) / 1e6, why);
  // For a debugger: stop at the first violation, with the state intact.
  if (std::getenv("SIM_ABORT_ON_FAIL") != nullptr) std::abort();
  trace("VIOLATION " + why);
}

}  // namespace maroon::sim
