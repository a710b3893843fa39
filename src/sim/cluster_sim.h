// The whole-cluster simulator (docs/architecture.md, §10): nodes (each a Node core
// with its VrSequencer and the kv app), gateways (Gateway cores) and clients
// in one thread, over a simulated network (delay, loss, duplication,
// reordering, stale delivery, symmetric and one-way partitions), simulated
// disks (group commit; a crash keeps only what was synced) and per-node
// clocks with skew.
// One seed picks every setting and every event: `maroon-sim --cluster --seed
// N` replays a run exactly. docs/simulator.md, "The cluster simulation".
//
// The simulator plays the real driver (src/server/driver.cc): every record a
// node emits goes to its disk in emission order, in group commits; messages
// marked "after persist" leave only once every record emitted before them is
// durable; a restart replays the durable records into fresh cores. A share of
// the messages goes through the real frame codecs (protocol/cluster_messages.h).
//
// Phases: safety (faults, node crashes and power failures, gateway crashes,
// short leases so ranges get sealed), then liveness (faults stop, crashed
// nodes restart, at least one gateway is alive): every client op must
// resolve and every node must apply everything committed. Up to f nodes may
// be lost for good: they crash in the safety phase and never return.
// Checkers:
//   - no acknowledged tx lost: a tx whose result reached a client is
//     executed, with that reply, on every surviving node at the end; a tx
//     reported sealed never executes anywhere;
//   - per epoch, every node (every incarnation) has the same state hash and
//     executed the same txs with the same replies; no node ends with fault();
//   - each tx executes at most once per node incarnation;
//   - a tx a faulty gateway sent with two payloads executes with one of
//     them, the same everywhere (the per-epoch checks above);
//   - the clients' kv history is linearizable (check/linearizability.h).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "check/history.h"
#include "maroon/status.h"
#include "common/types.h"
#include "sim/faults.h"
#include "sim/network.h"
#include "sim/world.h"
#include "vr/replica.h"

namespace maroon::sim {

struct ClusterSettings {
  uint64_t seed = 0;
  size_t nodes = 3;     // 1, 3 or 5
  size_t gateways = 1;  // gateways at the start
  size_t clients = 4;
  size_t keys = 3;
  // Delays, loss, duplication, partitions between nodes and gateways.
  NetworkOptions network;
  // The nodes' disk latency, crashes and restarts, tick skew and process
  // pauses (gateways' too): a paused process runs nothing, its messages
  // (a node's disk completions too, a gateway's clients' calls) wait, and it
  // wakes with every tick it missed run at once, as the real driver does.
  ProcessFaults process;
  // Mean time between power failures (every node crashes at once, each
  // gateway with probability 1/2); 0 = none.
  int64_t power_failure_every_us = 0;
  // Nodes (at most f) that crash during the safety phase and never come
  // back, as if their disks were destroyed: k = f + 1 holders is what keeps
  // their txs.
  size_t nodes_lost = 0;
  int64_t gateway_crash_every_us = 0;   // 0 = none
  double gateway_replace_chance = 0.8;  // a crashed gateway is replaced by a new incarnation
  uint64_t clock_offset_max_ms = 0;     // node wall clocks differ by up to this
  // A node's wall clock is stepped (a bad NTP server, an operator) by a
  // minute to two hours, ahead or back, this often; 0 = never.
  int64_t clock_step_every_us = 0;
  // Node and gateway tunings (0: the core's default).
  uint64_t lease_ms = 1000;
  size_t held_txs_per_range_max = 0;
  size_t tx_retention_bytes_max = 0;
  // NodeConfig::sealed_range_grace_ms: short, so ranges retire within a run.
  uint64_t sealed_range_grace_ms = 0;
  // One node is down from early in the safety phase until it ends, while
  // its peers keep only a few KiB of executed txs: it may come back to find
  // what it needs evicted everywhere, and must then stop, saying so (it is
  // counted as lost). No other process faults, so no other node lags so far.
  bool long_outage = false;
  // Share of client calls that also send a tx for an app no node runs,
  // through gateways misconfigured to accept it; 0: none.
  double unknown_app_fraction = 0;
  // Share of client calls after which the client's gateway, faulty, also
  // sends a tx whose id it gives different bytes for different nodes (a
  // SET of a key no client reads, to one of two values); 0: none. Every
  // node must execute the same bytes for it.
  double two_payload_fraction = 0;
  // A node's restart (safety phase) finds its log's end gone with this
  // chance (the last segment, or all of them, removed with the synced
  // records in them): it must recover from its peers before its replica
  // votes, and pull the txs it lost. At most f nodes at a time; only in
  // seeds that lose no node for good.
  double log_loss_chance = 0;
  // Membership changes (docs/membership.md) during the safety phase, each
  // adding, removing or replacing a node, requested at the primary and
  // retried until committed; a removed node stops once it retired, a new
  // one joins from nothing (a node lost for good is replaced first). Only
  // in seeds that lose at most one node and no log.
  size_t membership_changes = 0;
  size_t result_table_txs_per_range_max = 0;
  size_t pull_txs_max = 0;
  uint64_t advert_ticks = 10;
  uint64_t pull_retry_ticks = 10;
  uint64_t offsets_per_range_max = 0;
  uint64_t gateway_retry_ticks = 20;
  uint64_t result_retry_ticks = 100;
  uint64_t lease_retry_ticks = 20;
  uint64_t renew_ticks = 25;
  // One node only: order txs in the WAL batch that makes them durable, as
  // `maroon dev` does (NodeConfig::order_unsynced_txs).
  bool order_unsynced_txs = false;
  double codec_fraction = 0.2;  // messages that go through the frame codecs
  // Probability that a node's fsync fails: the node stops (refusing writes
  // until restarted, as the driver does) and restarts from its disk.
  double fsync_failure = 0;
  // The WAL's segment size on the simulated disk (small, to roll often).
  uint64_t wal_segment_bytes = 4 * 1024 * 1024;
  // Node snapshots (docs/snapshots.md): one is taken once this many bytes
  // of log were written since the last (0: none), written this many bytes
  // of app state per step while the node goes on; two kept, the log behind
  // the older compacted. Restarts restore the newest.
  uint64_t snapshot_log_bytes = 0;
  size_t snapshot_step_bytes = 4096;
  int64_t client_timeout_us = 2'000'000;  // safety phase only
  int64_t client_think_us_max = 20'000;
  size_t history_ops_max = 50'000;
  int64_t safety_us = 5'000'000;
  int64_t liveness_us = 30'000'000;  // bound on resolving everything after faults stop
  vr::Options vr;

  // Swarm testing: every knob drawn from the seed. Stale (long-delayed)
  // messages are drawn as the VR simulator's, but only used with `stale`:
  // they break VR recovery, whose nonce a restarted node draws again
  // (docs/simulator.md, "The cluster simulation").
  static ClusterSettings random(uint64_t seed, bool stale = false);
  // Sets the node count (1..5), losing at most f of them.
  void override_nodes(size_t n);
  std::string describe() const;
};

struct ClusterStats {
  uint64_t ops_completed = 0;  // with a result
  uint64_t ops_unknown = 0;    // timed out, gateway died, sealed or result expired
  // The unknown ops, resolved before the linearizability check (see
  // resolve_unknown_ops): executed by the cluster, or never executed.
  uint64_t unknown_applied = 0;
  uint64_t unknown_never_applied = 0;
  NetworkCounters network;      // messages sent and dropped; partitions
  FaultCounters faults;         // node crashes (and those that kept part of a write), pauses
  uint64_t gateway_pauses = 0;  // of faults.pauses
  uint64_t messages_coded = 0;  // through the frame codecs
  uint64_t fsync_failures = 0;
  uint64_t nodes_lost = 0;
  uint64_t power_failures = 0;
  uint64_t clock_steps = 0;
  uint64_t gateway_crashes = 0;
  uint64_t ranges_sealed = 0;  // seals delivered to gateways
  uint64_t ranges_retired = 0;  // most retired by one node incarnation
  uint64_t lag_stops = 0;       // nodes that stopped: every peer had evicted what they needed
  uint64_t log_losses = 0;      // restarts that found their log's end gone
  uint64_t snapshots = 0;        // published
  uint64_t snapshot_restores = 0;  // restarts that restored one
  uint64_t snapshot_installs = 0;  // peers' snapshots installed by lagging nodes
  uint64_t wipes = 0;              // nodes whose whole disk was lost (log losses too)
  uint64_t log_recoveries = 0;  // ... and recovered it from peers
  uint64_t membership_changes = 0;  // committed
  uint64_t nodes_retired = 0;       // removed by a change, handed over and stopped
  uint64_t unknown_app_results = 0;  // txs for an unknown app answered (empty) to their gateway
  uint64_t two_payload_results = 0;  // txs sent with two payloads, answered to their gateway
  // Copies with other bytes than their id was ordered with, replaced from a
  // peer (most by one node incarnation).
  uint64_t txs_replaced = 0;
  size_t ranges_kept_max = 0;   // most ranges one node kept at once
  uint64_t max_epoch = 0;
  uint64_t max_view = 0;
  uint64_t txs_applied = 0;  // highest count of txs executed by one node incarnation
  int64_t simulated_us = 0;
  uint64_t fingerprint = 0;  // hash of every event: equal for equal seeds
};

struct ClusterResult : RunOutcome {
  ClusterStats stats;
};

// A tx as the cluster executed it: when a node first applied it, and the
// reply its app computed (every node that applies it computes the same).
struct AppliedTx {
  int64_t first_us = 0;
  std::string reply;
  uint64_t epoch = 0;  // the epoch it executed in (the same on every node)
};

struct UnknownOpCounts {
  uint64_t applied = 0;
  uint64_t never_applied = 0;
};

// Sets `op`'s outputs from the kv app's encoded reply to it. An error if the
// reply does not decode, or is not one an op of that kind can get.
[[nodiscard]] Status set_kv_outputs(check::KvOperation& op, std::string_view reply);

// Resolves, once a run has converged, each op of `history` whose client never
// learned its outcome (ret == check::kPending) from what the cluster did with
// its tx (`txs[i]` is the tx of history[i]; `applied` has every tx any node
// applied, by raw id):
//   - never applied: removed; it had no effect and, the run having
//     converged, never will;
//   - applied: it took effect at its place in the order, no later than its
//     first apply, with the reply the app computed, so `ret` becomes the
//     time of that first apply and the outputs that reply.
// Either way the history becomes one the checker accepts only if it accepted
// the unresolved one: a pending op may take effect or not, at any time after
// its call, with any output; here that choice is made by the facts. The
// checker still verifies the reply against the model. Without this, long
// histories with many pending ops on one key make the search explode.
[[nodiscard]] Status resolve_unknown_ops(std::vector<check::KvOperation>& history,
                                         const std::vector<TxId>& txs,
                                         const std::unordered_map<uint64_t, AppliedTx>& applied,
                                         UnknownOpCounts& counts);

// Runs one seed. With trace_lines > 0 the last that many events are kept in
// the result; with trace_stdout every event is printed as it happens.
ClusterResult run_cluster_simulation(const ClusterSettings& settings, size_t trace_lines = 0,
                                     bool trace_stdout = false);

}  // namespace maroon::sim
