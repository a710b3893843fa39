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

#include "sim/faults.h"
#include "sim/network.h"
#include "sim/world.h"
#include "vr/replica.h"

namespace maroon::sim {

struct SimSettings {
  uint64_t seed = 0;
  size_t replicas = 3;  // initial group, 1..7
  size_t clients = 4;
  size_t keys = 4;
  // Delays, loss, duplication, stale messages (they may arrive after their
  // sender crashed, restarted and moved on), partitions between replicas.
  NetworkOptions network;
  // Disk latency, crashes and restarts, tick skew, process pauses.
  ProcessFaults process;
  // A crash keeps a random prefix of the records of the sync in flight (it
  // was never reported durable, so keeping it is as legal as losing it).
  bool crash_keeps_prefix = false;
  // The WAL's segment size on the simulated disks (small, to roll often).
  uint64_t wal_segment_bytes = 2 * 1024 * 1024;
  // Writes carry up to this many bytes of padding (0: none), so the log
  // reaches its byte limit.
  size_t padding_bytes_max = 0;
  int64_t reconfigure_every_us = 0;  // 0 = no reconfigurations
  // A restart (safety phase) finds its log's end gone with this chance: the
  // last segment, or every segment, removed with the synced records in it,
  // as a faulty disk or an operator's mistake may leave it. At most f
  // replicas of a group of 3 or more at a time are in that state, which
  // lasts until the replica took back a primary's log.
  double log_loss_chance = 0;
  bool lease_reads = false;
  int64_t client_timeout_us = 300'000;
  int64_t client_think_us_max = 20'000;  // pause between a client's ops, uniform in [0, max]
  size_t history_ops_max = 200'000;      // clients stop issuing beyond this many ops
  int64_t safety_us = 5'000'000;
  int64_t liveness_us = 20'000'000;  // bound on completing everything after faults stop
  vr::Options options;

  // Swarm testing: every knob drawn from the seed.
  static SimSettings random(uint64_t seed);
  std::string describe() const;
};

struct SimStats {
  uint64_t ops_completed = 0;
  uint64_t ops_pending = 0;  // outcome unknown to the client at the end
  // Of those, how many the run knew to have executed (checked with the
  // outcome they had) or never to have run (left out): resolve_pending_ops.
  uint64_t ops_resolved_executed = 0;
  uint64_t ops_resolved_never_ran = 0;
  NetworkCounters network;   // messages sent, dropped, stale; partitions
  FaultCounters faults;      // crashes (and those that kept part of a write), pauses
  uint64_t reconfigurations = 0;
  uint64_t log_losses = 0;     // restarts that found their log's end gone
  uint64_t log_recoveries = 0;  // ... and took it back from a primary
  uint64_t evictions = 0;  // requests answered "evicted" (client table full)
  uint64_t max_view = 0;
  uint64_t max_epoch = 0;
  uint64_t committed_ops = 0;  // highest op executed anywhere
  int64_t simulated_us = 0;
  uint64_t fingerprint = 0;  // hash of every event: equal for equal seeds
};

struct SimResult : RunOutcome {
  SimStats stats;
};

// Runs one seed. With trace_lines > 0 the last that many events are kept in
// the result (rerun a failing seed with tracing to see how it got there);
// with trace_stdout every event is printed as it happens.
SimResult run_simulation(const SimSettings& settings, size_t trace_lines = 0,
                         bool trace_stdout = false);

}  // namespace maroon::sim
