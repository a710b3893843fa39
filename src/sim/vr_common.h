// What both simulators do with VR: show its messages in traces (the VR
// simulator's replica messages, the VR packets between the cluster
// simulator's nodes) and draw its timing options per seed.
#pragma once

#include <string>

#include "maroon/prng.h"
#include "vr/messages.h"
#include "vr/replica.h"

namespace maroon::sim {

// "Prepare e0 v2 ops 5..6 commit 4": kind, epoch, view and what it carries.
std::string describe_vr_message(const vr::ReplicaMessage& m);

// Swarm testing: small heartbeat, lease, view-change and retry tick counts
// and prepare batches, so timeouts, lease expiry and batching happen often.
void random_vr_timing(Prng& p, vr::Options& o);

}  // namespace maroon::sim
