// The deterministic simulator (docs/architecture.md, §10): VR replicas, clients and a
// reconfiguring admin in one thread, over a simulated network (delay, loss,
// duplication, reordering, symmetric and asymmetric partitions), simulated
// disks (a crash drops unsynced writes) and per-replica clocks with skew. One
// seed picks every setting and every event, so `maroon-sim --seed N` replays
// a run exactly.
//
// A run has two phases. Safety: faults come and go while clients run. Then
// liveness: faults stop (partitions heal, crashed replicas restart, loss
// ends) and every client request must complete within a bound, after which
// the live members must converge. Checkers run throughout and at the end:
//   - committed-prefix agreement: every replica executes the same entry at
//     each op number (so nothing committed is lost or reordered);
//   - at-most-once: no (client, request) executes twice on any replica;
//   - linearizability of the client history (check/linearizability.h);
//   - convergence: live members end with the same executed op and state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vr/replica.h"

namespace maroon::sim {

struct SimSettings {
  uint64_t seed = 0;
  size_t replicas = 3;  // initial group, 1..7
  size_t clients = 4;
  size_t keys = 4;
  double loss = 0;       // probability a message is dropped
  double duplicate = 0;  // probability a message is delivered twice
  // Probability a message is delayed long (up to stale_delay_max_us): it may
  // arrive after its sender crashed, restarted and moved on.
  double stale = 0;
  int64_t stale_delay_max_us = 3'000'000;
  // A crash keeps a random prefix of the records of the sync in flight (it
  // was never reported durable, so keeping it is as legal as losing it).
  bool crash_keeps_prefix = false;
  // The WAL's segment size on the simulated disks (small, to roll often).
  uint64_t wal_segment_bytes = 2 * 1024 * 1024;
  // Writes carry up to this many bytes of padding (0: none), so the log
  // reaches its byte limit.
  size_t padding_bytes_max = 0;
  // Process pauses (SIGSTOP, a VM pause): mean time between them (0: none)
  // and the longest. A paused replica handles nothing; it wakes with every
  // tick it missed run at once, as the real driver does.
  int64_t pause_every_us = 0;
  int64_t pause_max_us = 500'000;
  int64_t delay_min_us = 100;
  int64_t delay_max_us = 2000;  // delays are uniform in between: messages reorder
  int64_t disk_min_us = 50;
  int64_t disk_max_us = 1000;
  int64_t partition_every_us = 0;  // mean time between partition changes; 0 = none
  bool asymmetric_partitions = false;
  int64_t crash_every_us = 0;  // mean time between crashes; 0 = none
  int64_t restart_min_us = 100'000;
  int64_t restart_max_us = 2'000'000;
  int64_t tick_us = 10'000;
  double tick_skew = 0;          // each replica's tick period within tick_us * (1 ± skew)
  int64_t reconfigure_every_us = 0;  // 0 = no reconfigurations
  bool lease_reads = false;
  int64_t client_timeout_us = 300'000;
  int64_t client_think_us_max = 20'000;  // pause between a client's ops, uniform in [0, max]
  size_t history_ops_max = 200'000;       // clients stop issuing beyond this many ops
  int64_t safety_us = 5'000'000;
  int64_t liveness_us = 20'000'000;  // bound on completing everything after faults stop
  vr::Options options;

  // Swarm testing: every knob drawn from the seed.
  static SimSettings random(uint64_t seed);
  std::string describe() const;
};

struct SimStats {
  uint64_t ops_completed = 0;
  uint64_t ops_pending = 0;  // outcome unknown at the end (none, if liveness held)
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t crashes = 0;
  uint64_t crash_prefixes_kept = 0;  // crashes that kept part of an in-flight sync
  uint64_t stale_messages = 0;
  uint64_t pauses = 0;
  uint64_t partitions = 0;
  uint64_t reconfigurations = 0;
  uint64_t max_view = 0;
  uint64_t max_epoch = 0;
  uint64_t committed_ops = 0;  // highest op executed anywhere
  int64_t simulated_us = 0;
  uint64_t fingerprint = 0;  // hash of every event: equal for equal seeds
};

struct SimResult {
  bool ok = true;
  std::string failure;  // the first violation, with the time it was seen
  SimStats stats;
  std::vector<std::string> trace;  // the last events, when tracing was on
};

// Runs one seed. With trace_lines > 0 the last that many events are kept in
// the result (rerun a failing seed with tracing to see how it got there);
// with trace_stdout every event is printed as it happens.
SimResult run_simulation(const SimSettings& settings, size_t trace_lines = 0,
                         bool trace_stdout = false);

}  // namespace maroon::sim
