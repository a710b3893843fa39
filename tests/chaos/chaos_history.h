// What maroon-chaos's clients did, and the checks run on it afterwards:
// conversion to the linearizability checker's history (check/history.h) and
// the acknowledged-writes check.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "check/history.h"

namespace maroon::chaos {

enum class Outcome : uint8_t {
  kOk,       // the server answered: the op took effect once, with this output
  kFailed,   // the server said it was not executed (refused before it got a tx id, or sealed)
  kUnknown,  // no answer (node killed or stopped, timeout): it may take effect, or never
};

enum class OpKind : uint8_t { kGet, kSet, kCas, kIncr };

const char* op_kind_name(OpKind kind);
const char* outcome_name(Outcome outcome);

struct ChaosOp {
  uint32_t client = 0;
  uint32_t node = 0;  // the node whose native port took the request
  OpKind kind = OpKind::kGet;
  std::string key;
  std::string value;                    // set: the value; cas: the new value
  std::optional<std::string> expected;  // cas: nullopt = "must be absent"
  int64_t call_us = 0;                  // since the run's start
  int64_t ret_us = 0;                   // when the outcome was known (also for unknown)
  Outcome outcome = Outcome::kUnknown;
  // Outputs, meaningful when outcome == kOk.
  std::optional<std::string> output;  // get: the value (nullopt = absent); incr: new value
  bool cas_swapped = false;           // cas: Ok (true) or Error(kConflict) (false)
  std::string error;                  // why failed or unknown
};

// The checker's history: ok ops as they completed, unknown ops as pending,
// failed ops left out (they never took effect; if one did, a read of its
// unique value has no writer and the check fails).
std::vector<check::KvOperation> to_checker_history(const std::vector<ChaosOp>& ops);

struct WriteCheck {
  size_t keys = 0;
  size_t acknowledged_writes = 0;
  size_t lost = 0;                    // acknowledged writes that the final state does not hold
  std::vector<std::string> problems;  // one line each: lost writes and impossible final values
};

// Checks every acknowledged write against the final state (read with ordered
// GETs after the cluster healed). For a register key, the final value must
// come from an acknowledged or unknown write W, and no acknowledged write may
// have started after W was acknowledged (it would have overwritten W); an
// absent key must have no acknowledged write. For a counter key (INCR only),
// the final count must be at least the number of acknowledged increments and
// every value they returned, and at most that plus the unknown ones.
WriteCheck check_acknowledged_writes(
    const std::vector<ChaosOp>& ops,
    const std::map<std::string, std::optional<std::string>>& final_values,
    const std::set<std::string>& counter_keys);

// One op per line, tab-separated, for reading a failure next to node logs.
std::string format_history(const std::vector<ChaosOp>& ops);

}  // namespace maroon::chaos
