// The clients' kv history, as both simulators record it: the names of its
// ops in traces, and the linearizability check at the end of a run
// (check/linearizability.h).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "check/history.h"
#include "sim/world.h"

namespace maroon::sim {

const char* kv_op_name(check::KvOpKind kind);

// What the run knows of an op's execution: when the first replica or node
// executed it, and the outputs it computed (every one computes the same).
struct KnownExecution {
  int64_t first_us = 0;
  std::optional<std::string> output;
  bool ok = true;
};

struct ResolvedOps {
  uint64_t executed = 0;   // pending ops given the outcome they had
  uint64_t never_ran = 0;  // pending ops left out: they had no effect
};

// Gives each pending op (its client never learned the outcome: a timeout, an
// eviction, a crash) the outcome the run knows, so the check need not try it
// at every later point of the history (which can make the search explode).
// Both rules keep the verdict sound:
// - An op that executed took effect at its place in the order, after its
//   call and no later than its first execution, with the outputs computed
//   there: it completes at first_us with those outputs. The checker still
//   verifies them against the model (a replica's wrong result is caught).
// - An op that never executed by the end of the run had no effect on any op
//   in the history (execution follows the log order, so nothing after it
//   executed either): it may be placed after every op, where it changes
//   nothing, and is left out.
// `known(i)` says what is known of history[i], or nullopt if it never ran.
ResolvedOps resolve_pending_ops(
    std::vector<check::KvOperation>& history,
    const std::function<std::optional<KnownExecution>(size_t index)>& known);

// Fails the run if the history is not linearizable, or if the checker gives
// up (kUnknown): an unchecked history is not a pass.
void check_kv_linearizable(World& world, const std::vector<check::KvOperation>& history);

}  // namespace maroon::sim
