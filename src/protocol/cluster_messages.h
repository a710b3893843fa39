// Frames between nodes and gateways and between nodes (frame types 17..27),
// carrying the structs of protocol/messages.h. Layouts, field by field, are in
// docs/formats/frames.md §4; this file and that section change together.
//
// Every payload but kVr's starts with a format byte (kClusterFormat) so the
// layouts can evolve. At 100k txs/s one frame per tx is too many, so kTx,
// kTxPush, kTxAck and kTxResult carry batches.
//
// Encoders append one complete frame to `out`. Their input must be valid
// (ids in range, sizes and counts within the bounds below): only our code
// calls them, so anything else is a programmer error and stops the process.
// Decoders take the frame payload and trust nothing: short input, trailing
// bytes, a bad format byte, unknown flag bits, zero or out-of-range ids,
// oversize fields and counts over the bounds are kInvalidArgument (the
// connection is closed, as for a bad frame). Counts are checked against the
// bytes left before anything is reserved. Whatever decodes re-encodes without
// tripping an encoder assertion and decodes again to an equal value.
//
// Decoded messages own their bytes (std::string), unlike client messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/limits.h"
#include "maroon/status.h"
#include "common/types.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace maroon::protocol {

inline constexpr uint8_t kClusterFormat = 1;

// Items (txs, ids, results) in one kTx, kTxPush, kTxAck or kTxResult frame.
// A gateway never has more than gateway_inflight_txs_max txs unanswered, so a
// bigger batch could not be filled by one gateway anyway.
inline constexpr size_t cluster_batch_txs_max = 8 * 1024;
// Callers cut a batch of txs or results before the item that would take the
// sum of encoded_*_bytes over this (batch_has_room below); a batch of a
// single item may be bigger (one op_bytes_max op, one reply_bytes_max reply).
inline constexpr size_t cluster_batch_bytes_max = 4 * 1024 * 1024;
// (range, durable offset) pairs in one kOffsets frame. A node tracks one entry
// per live range, i.e. roughly per gateway incarnation.
inline constexpr size_t offsets_ranges_max = 64 * 1024;
// Tx digests in one kOffsets frame, over all its ranges.
inline constexpr size_t offsets_digests_max = 256 * 1024;

// Encoded sizes used by the static_asserts: a varint is at most 10 bytes.
inline constexpr size_t kVarintBytesMax = 10;
// Format byte + a node id or flags + a count.
inline constexpr size_t kBatchHeaderBytesMax = 1 + 2 * kVarintBytesMax;
// u64 id + u32 app (or u8 flags) + varint length, before the op or reply bytes.
inline constexpr size_t kBatchItemHeaderBytesMax = 8 + 4 + kVarintBytesMax;
inline constexpr size_t kBatchItemBytesMin = 8 + 1 + 1;  // a result: u8 flags, empty reply

// A batch is either one item (up to an op_bytes_max op or a reply_bytes_max
// reply) or items totalling at most cluster_batch_bytes_max: both fit in a
// frame. Acks (8 bytes each) and offsets pairs are bounded by their counts.
static_assert(kBatchHeaderBytesMax + cluster_batch_bytes_max <= kFramePayloadBytesMax);
static_assert(kBatchHeaderBytesMax + kBatchItemHeaderBytesMax + limits::op_bytes_max <=
              kFramePayloadBytesMax);
static_assert(kBatchHeaderBytesMax + kBatchItemHeaderBytesMax + limits::reply_bytes_max <=
              kFramePayloadBytesMax);
static_assert(kBatchHeaderBytesMax + cluster_batch_txs_max * 8 <= kFramePayloadBytesMax);
static_assert(cluster_batch_bytes_max < limits::message_bytes_max);
static_assert(cluster_batch_txs_max <= limits::gateway_inflight_txs_max);
static_assert(1 + 1 + 3 * kVarintBytesMax + 8 + offsets_ranges_max * 3 * kVarintBytesMax +
                  offsets_digests_max * 8 <=
              kFramePayloadBytesMax);

// Bytes one item adds to a kTx/kTxPush or kTxResult payload (exact, so also
// an upper bound).
size_t encoded_tx_bytes(const TxMsg& tx);
size_t encoded_result_bytes(const TxResult& result);

// May an item of `item_bytes` join a batch that already holds `items` items
// totalling `bytes`? An empty batch takes any one item.
constexpr bool batch_has_room(size_t items, size_t bytes, size_t item_bytes) {
  return items == 0 ||
         (items < cluster_batch_txs_max && bytes + item_bytes <= cluster_batch_bytes_max);
}

// Ids as the wire requires them: a range is 1 .. 2^34-1 (a TxId holds its
// range in 34 bits; 0 means "none"), a tx id has a range and offset >= 1.
constexpr bool is_valid_range(RangeId r) {
  return r.value() >= 1 && r.value() < (uint64_t{1} << (64 - kRangeBits));
}
constexpr bool is_valid_tx_id(TxId id) { return id.offset() >= 1 && id.range().value() >= 1; }

// kOffsets flags.
inline constexpr uint8_t kOffsetsFull = 0x01;
inline constexpr uint8_t kOffsetsDigests = 0x02;  // each range is followed by its digests
inline constexpr uint8_t kOffsetsFlagsKnown = kOffsetsFull | kOffsetsDigests;
// kTxResult item flags.
inline constexpr uint8_t kResultExpired = 0x01;
inline constexpr uint8_t kResultFlagsKnown = kResultExpired;

// kTxAck: ids made durable on `node`.
struct TxAcks {
  NodeId node;
  std::vector<TxId> ids;
  bool operator==(const TxAcks&) const = default;
};

// --- node -> node ---

// kVr: the payload is the VR codec's bytes as they are (vr/codec.h has its
// own format byte); decode them with vr::decode_message.
void encode_vr(std::string_view vr_bytes, std::string& out);

// kOffsets: `durable` ranges strictly ascending (the node's std::map order),
// each range valid, each offset 0..kOffsetMax, at most offsets_ranges_max;
// `digests` empty or one list per range, no list longer than its offset,
// at most offsets_digests_max in all.
void encode_offsets(const Offsets& m, std::string& out);
Result<Offsets> decode_offsets(std::string_view payload);

// kTxPull: valid range, 1 <= first <= last <= kOffsetMax.
void encode_tx_pull(const TxPull& m, std::string& out);
Result<TxPull> decode_tx_pull(std::string_view payload);

// kTxPush: 0..cluster_batch_txs_max txs. Empty is allowed: "I hold none of
// them" is an answer. Offset order is the sender's promise; not checked here.
void encode_tx_push(const TxPush& m, std::string& out);
Result<TxPush> decode_tx_push(std::string_view payload);

// kTxEvicted: valid range, 1 <= offset <= kOffsetMax.
void encode_tx_evicted(const TxEvicted& m, std::string& out);
Result<TxEvicted> decode_tx_evicted(std::string_view payload);

// Bytes of snapshot file in one kSnapshotChunk (and asked for by one
// kSnapshotPull).
inline constexpr uint32_t snapshot_chunk_bytes_max = 1024 * 1024;

// The address book a GroupMembers frame carries at most: the largest
// reconfiguration annex (vr::limits::annex_bytes_max; the driver asserts
// they agree).
inline constexpr size_t kGroupBookBytesMax = 16 * 1024;
// kGroupMembers: 1 to 63 distinct member ids (1..63), a book of at most
// limits::annex_bytes_max bytes.
void encode_group_members(const GroupMembers& m, std::string& out);
Result<GroupMembers> decode_group_members(std::string_view payload);
// kMembershipNote: config >= 1, kind 1, 2 or 3.
void encode_membership_note(const MembershipNote& m, std::string& out);
Result<MembershipNote> decode_membership_note(std::string_view payload);

// kSnapshotWanted: need >= 1.
void encode_snapshot_wanted(const SnapshotWanted& m, std::string& out);
Result<SnapshotWanted> decode_snapshot_wanted(std::string_view payload);

// kSnapshotOffer: epoch 0 with bytes 0 (none yet), or epoch >= 1 with
// bytes >= 1.
void encode_snapshot_offer(const SnapshotOffer& m, std::string& out);
Result<SnapshotOffer> decode_snapshot_offer(std::string_view payload);

// kSnapshotPull: epoch >= 1, 1 <= length <= snapshot_chunk_bytes_max.
void encode_snapshot_pull(const SnapshotPull& m, std::string& out);
Result<SnapshotPull> decode_snapshot_pull(std::string_view payload);

// kSnapshotChunk: epoch >= 1; either "gone" (total 0, no data) or
// 1..snapshot_chunk_bytes_max bytes within [0, total). The checksum is
// checked by the receiver, not here (a damaged chunk is dropped and asked
// for again, not a broken link).
void encode_snapshot_chunk(const SnapshotChunk& m, std::string& out);
Result<SnapshotChunk> decode_snapshot_chunk(std::string_view payload);

// --- gateway -> node ---

// kTx: 1..cluster_batch_txs_max txs (an empty batch is never sent).
void encode_txs(std::span<const TxMsg> txs, std::string& out);
Result<std::vector<TxMsg>> decode_txs(std::string_view payload);

// kLeaseRequest: gateway != 0; `after` is 0 or a valid range.
void encode_lease_request(const LeaseRequest& m, std::string& out);
Result<LeaseRequest> decode_lease_request(std::string_view payload);

// kRenewLease: gateway != 0, valid range.
void encode_renew_lease(const RenewLease& m, std::string& out);
Result<RenewLease> decode_renew_lease(std::string_view payload);

// --- node -> gateway ---

// kTxAck: node != 0, 1..cluster_batch_txs_max ids.
void encode_tx_acks(NodeId node, std::span<const TxId> ids, std::string& out);
Result<TxAcks> decode_tx_acks(std::string_view payload);

// kTxResult: 1..cluster_batch_txs_max results; an expired result has an
// empty reply (it was evicted, that is what expired means).
void encode_tx_results(std::span<const TxResult> results, std::string& out);
Result<std::vector<TxResult>> decode_tx_results(std::string_view payload);

// kLeaseGranted: gateway != 0, valid range.
void encode_lease_granted(const LeaseGranted& m, std::string& out);
Result<LeaseGranted> decode_lease_granted(std::string_view payload);

// kRangeSealed: valid range, last 0..kOffsetMax (0: sealed before any tx).
void encode_range_sealed(const RangeSealed& m, std::string& out);
Result<RangeSealed> decode_range_sealed(std::string_view payload);

}  // namespace maroon::protocol
