// The simulated world both simulators run in (simulator.h, the VR group;
// cluster_sim.h, the whole cluster): one event queue in simulated
// microseconds, the seed's PRNG, a trace of the last events and the run's
// fingerprint, and the first violation seen. docs/simulator.md, "Layout".
//
// Determinism: events run in order of (time, insertion), so ties break the
// same way every run, and every random choice comes from the one PRNG.
// `trace()` lines are hashed into the fingerprint whether or not tracing is
// on; `trace_detail()` lines are written only when tracing, so they must not
// be the only record of anything that changes the run.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <queue>
#include <string>
#include <vector>

#include "maroon/prng.h"

namespace maroon::sim {

// How a run ended, whichever simulator ran it.
struct RunOutcome {
  bool ok = true;
  std::string failure;             // the first violation, with the time it was seen
  std::vector<std::string> trace;  // the last events, when tracing was on
};

// How often the liveness phase asks whether a run has converged.
inline constexpr int64_t kConvergenceCheckUs = 100'000;

class World {
 public:
  // Far above any healthy run's pending events: more means messages multiply.
  static constexpr size_t kEventsPendingMax = 2'000'000;

  World(uint64_t seed, size_t trace_lines, bool trace_stdout);

  // Time and events.
  int64_t now() const { return now_; }
  void at(int64_t time_us, std::function<void()> fn);
  void after(int64_t delay_us, std::function<void()> fn) { at(now_ + delay_us, std::move(fn)); }
  size_t pending() const { return queue_.size(); }
  uint64_t events_run() const { return events_run_; }

  enum class RunEnd { kIdle, kDeadline, kStopped, kFailed };
  // Runs events in order until none is left, the next is past deadline_us,
  // a violation was seen (a message storm counts), or `stop` (asked after
  // every event) says so.
  RunEnd run_until(int64_t deadline_us, const std::function<bool()>& stop);
  // The same, asking `done` (has the run converged?) once check_from_us is
  // reached and then every check_every_us; kStopped: it was done.
  RunEnd run_until_done(int64_t deadline_us, int64_t check_from_us, int64_t check_every_us,
                        const std::function<bool()>& done);

  // Randomness: every choice of the run.
  Prng& prng() { return prng_; }
  uint64_t next() { return prng_.next(); }
  uint64_t below(uint64_t n) { return prng_.below(n); }
  bool chance(double p) { return prng_.chance(p); }
  int64_t uniform(int64_t lo, int64_t hi);  // in [lo, hi]
  // An exponentially distributed gap with the given mean, at least 1 (for
  // fault arrivals).
  int64_t exponential(int64_t mean_us);
  // A factor within 1 ± skew (a clock's rate).
  double skew(double skew_max);

  // Trace and fingerprint.
  void trace(const std::string& line);         // an event of the run: fingerprinted
  void trace_detail(const std::string& line);  // shown only when tracing
  bool tracing() const { return trace_lines_ > 0 || trace_stdout_; }
  // Folds values (a delivery: time, from, to, kind) into the fingerprint.
  void fingerprint(std::initializer_list<uint64_t> values);
  uint64_t fingerprint() const { return fingerprint_; }
  std::vector<std::string> last_events() const { return {trace_.begin(), trace_.end()}; }

  // The first violation, with the time it was seen; later ones are ignored.
  // SIM_ABORT_ON_FAIL=1 aborts there instead, for a debugger.
  void fail(const std::string& why);
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  RunOutcome outcome() const { return RunOutcome{!failed(), failure_, last_events()}; }

 private:
  struct Event {
    int64_t time;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
  };

  Prng prng_;
  size_t trace_lines_;
  bool trace_stdout_;
  std::deque<std::string> trace_;
  uint64_t fingerprint_ = 0;
  std::string failure_;
  int64_t now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t events_run_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
};

}  // namespace maroon::sim
