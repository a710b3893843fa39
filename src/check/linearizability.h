// A linearizability checker for key-value histories, after Porcupine
// (github.com/anishathalye/porcupine): the history is split by key, since
// linearizability is local (Herlihy & Wing), and each key's ops are searched
// for a legal order with the Wing & Gong / Lowe algorithm, memoizing the
// (linearized ops, state) pairs already explored. docs/linearizability.md
// explains the model, the algorithm, its limits and how to read a failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "check/history.h"

namespace maroon::check {

// More ops than this on one key gives kUnknown for that key: the search and
// its memo grow with the ops of a key, and a history this long is better
// checked in pieces.
inline constexpr size_t check_ops_per_key_max = 100'000;

struct CheckOptions {
  // Search steps per key before giving up. A step is one event looked at or
  // one memo entry compared, so this bounds time; the count may pass it by
  // the comparisons of one memo lookup.
  uint64_t steps_max = 10'000'000;
  // Bytes the memo of explored (linearized ops, state) pairs and the table of
  // model states may take per key before giving up.
  uint64_t memo_bytes_max = uint64_t{1} << 30;
};

enum class Verdict {
  kLinearizable,
  kNotLinearizable,
  kUnknown,  // a budget (steps, memo bytes, ops per key) ran out before an answer
};

const char* verdict_name(Verdict verdict);

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  // The first key, in byte order, that is not linearizable; else the first
  // whose check gave up; else empty.
  std::string key;
  // For that key: the furthest point the search reached (the ops it
  // linearized, in order, with times, and the state they leave), the op that
  // had to go next, and each op that could have gone next and why it did not
  // work. Empty when linearizable.
  std::string explanation;
  uint64_t steps = 0;  // search steps, summed over the keys checked
};

// Malformed input (see validate_history) is a programmer error and aborts.
// Keys are checked in byte order; the check stops at the first key that is
// not linearizable.
CheckResult check_kv_history(const std::vector<KvOperation>& history,
                             const CheckOptions& options = {});

}  // namespace maroon::check
