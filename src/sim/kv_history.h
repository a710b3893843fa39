// The clients' kv history, as both simulators record it: the names of its
// ops in traces, and the linearizability check at the end of a run
// (check/linearizability.h).
#pragma once

#include <vector>

#include "check/history.h"
#include "sim/world.h"

namespace maroon::sim {

const char* kv_op_name(check::KvOpKind kind);

// Fails the run if the history is not linearizable, or if the checker gives
// up (kUnknown): an unchecked history is not a pass.
void check_kv_linearizable(World& world, const std::vector<check::KvOperation>& history);

}  // namespace maroon::sim
