// A cross-replica checker for log matching, the property adopt_log relies on
// to keep entries that may be the last copies of committed ops: two logs that
// hold an equal entry at some op hold equal entries at every op before it that
// both still have. Harnesses and simulators run it over every live replica.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vr/replica.h"

namespace maroon::vr {

// A description of the first violation between any two of the replicas, or
// nothing. Costs O(replicas² × log length): run it every few steps.
std::optional<std::string> check_log_matching(const std::vector<const Replica*>& replicas);

}  // namespace maroon::vr
