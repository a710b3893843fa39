// Protocol numbers of Viewstamped Replication (Liskov & Cowling, "Viewstamped
// Replication Revisited", 2012), as strong types: a view number cannot be
// passed where an op number is expected.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/types.h"

namespace maroon::vr {

using ViewNumber = StrongNumber<struct ViewTag>;
using OpNumber = StrongNumber<struct OpTag>;                     // position in the log, from 1
using ReplicaId = StrongNumber<struct ReplicaTag, uint32_t>;     // stable across configurations
using ClientId = StrongNumber<struct ClientTag>;
using RequestNumber = StrongNumber<struct RequestTag>;           // per client, from 1
using ConfigEpoch = StrongNumber<struct ConfigEpochTag>;         // §7: one per configuration

// Majority quorums. With n = 2f + 1 this is the paper's f + 1; with an even
// n (reachable through reconfiguration) it stays a majority, so any two
// quorums intersect.
constexpr size_t quorum_size(size_t replicas) { return replicas / 2 + 1; }
// Replicas that may fail while a quorum remains.
constexpr size_t failures_tolerated(size_t replicas) { return replicas - quorum_size(replicas); }

static_assert(quorum_size(1) == 1 && quorum_size(3) == 2 && quorum_size(5) == 3);
static_assert(quorum_size(4) == 3 && failures_tolerated(4) == 1 && failures_tolerated(7) == 3);

// Bounds on the protocol (STYLE.md: a limit on everything, unit last).
namespace limits {
inline constexpr size_t replicas_max = 7;
// One log entry's payload (an encoded maroon epoch, a kv op in the simulator).
inline constexpr size_t entry_bytes_max = 256 * 1024;
// A reconfiguration request's annex (the service's data about the new
// group, such as its addresses).
inline constexpr size_t annex_bytes_max = 16 * 1024;
// The in-memory log between the last checkpoint and the head. Messages that
// carry the whole log (DoViewChange, StartView) are bounded by it.
inline constexpr size_t log_bytes_max = 8 * 1024 * 1024;
inline constexpr size_t log_ops_max = 64 * 1024;
// One durable log record holds entries of at most this many bytes (plus one
// entry that crosses it): a view change adopting a nearly full log writes
// it in several records, each far below the WAL's record limit.
inline constexpr size_t log_record_bytes_max = 1024 * 1024;
// Service snapshot carried by a checkpoint.
inline constexpr size_t checkpoint_bytes_max = 4 * 1024 * 1024;
inline constexpr size_t message_bytes_max = 16 * 1024 * 1024;
inline constexpr size_t reply_bytes_max = 1024 * 1024;
inline constexpr size_t client_table_clients_max = 64 * 1024;

static_assert(entry_bytes_max * 4 <= log_bytes_max);
static_assert(entry_bytes_max <= log_record_bytes_max && log_record_bytes_max <= log_bytes_max);
static_assert(log_bytes_max + checkpoint_bytes_max + 64 * 1024 * 4 <= message_bytes_max);
}  // namespace limits

}  // namespace maroon::vr
