// Every queue, batch, message and buffer has a named upper bound, unit last.
// Relations between them are checked at compile time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace maroon::limits {

// Sized for stock Redis clients (docs/resp.md): a value of several MiB, and
// MGET/MSET of ten thousand keys, go through in one op. Redis itself allows
// 512 MiB values; a replicated tx that must fit one WAL record and one peer
// frame cannot, so larger values are refused with an error reply.
inline constexpr size_t key_bytes_max = 16 * 1024;
inline constexpr size_t value_bytes_max = 8 * 1024 * 1024;
// One wire frame between nodes, gateways and native clients.
inline constexpr size_t message_bytes_max = 32 * 1024 * 1024;
// One kv op carries at most this many keys (MGET, MSET, scan limit), and a
// MULTI/EXEC tx at most this many commands.
inline constexpr size_t op_keys_max = 16 * 1024;
inline constexpr size_t tx_ops_max = op_keys_max;
// An encoded op: keys and values plus framing. MSET of many big values is
// capped by this, not by op_keys_max * value_bytes_max; so is a whole
// MULTI/EXEC tx.
inline constexpr size_t op_bytes_max = 12 * 1024 * 1024;
inline constexpr size_t reply_bytes_max = 12 * 1024 * 1024;

inline constexpr size_t epoch_txs_max = 64 * 1024;
inline constexpr size_t epoch_intervals_max = 4096;
// Txs a gateway may have submitted but not yet answered.
inline constexpr size_t gateway_inflight_txs_max = 64 * 1024;
// Bytes of ops a gateway may have submitted but not yet answered.
inline constexpr size_t gateway_inflight_bytes_max = 256 * 1024 * 1024;
// Results kept per range for retried requests, oldest evicted first.
inline constexpr size_t result_table_txs_per_range_max = 256 * 1024;
inline constexpr size_t result_table_bytes_per_range_max = 64 * 1024 * 1024;
// One piece of an app's snapshot (AppSnapshotCursor::next): one item of the
// largest key and value fits, with room to spare.
inline constexpr size_t snapshot_piece_bytes_max = 16 * 1024 * 1024;
// Records handed to one WAL write + fdatasync.
inline constexpr size_t wal_batch_bytes_max = 16 * 1024 * 1024;
inline constexpr size_t wal_record_bytes_max = 16 * 1024 * 1024;
inline constexpr uint64_t wal_segment_bytes = 64 * 1024 * 1024;

// Per connection: bytes buffered from a client before we stop reading.
inline constexpr size_t connection_read_bytes_max = 2 * message_bytes_max;
// Per connection: requests parsed but not yet answered.
inline constexpr size_t connection_inflight_requests_max = 1024;
inline constexpr size_t connections_max = 4096;

static_assert(key_bytes_max + value_bytes_max < op_bytes_max);
static_assert(op_bytes_max < message_bytes_max);
static_assert(reply_bytes_max < message_bytes_max);
static_assert(op_bytes_max + 64 * 1024 <= wal_record_bytes_max);
// A batch is cut at wal_batch_bytes_max, so it may overshoot by one record.
static_assert(wal_batch_bytes_max + wal_record_bytes_max <= wal_segment_bytes);
static_assert(wal_batch_bytes_max < wal_segment_bytes);
static_assert(op_bytes_max <= wal_batch_bytes_max);
static_assert(connection_inflight_requests_max <= gateway_inflight_txs_max);
static_assert(epoch_txs_max <= result_table_txs_per_range_max);
static_assert(op_bytes_max <= gateway_inflight_bytes_max);
static_assert(reply_bytes_max <= result_table_bytes_per_range_max);
// A node pushes up to 2 MiB of txs plus one that crosses it, each up to an op
// (node/node.cc), in one frame.
static_assert(2 * 1024 * 1024 + 2 * op_bytes_max <= message_bytes_max);
// The largest SET, and the largest value as a reply, fit.
static_assert(key_bytes_max + value_bytes_max + 64 <= reply_bytes_max);
static_assert(tx_ops_max <= op_keys_max);

}  // namespace maroon::limits
