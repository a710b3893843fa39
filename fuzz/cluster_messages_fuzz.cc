// libFuzzer target: the node/gateway frame decoders (protocol/cluster_messages.h).
// The first byte picks a decoder, the rest is its payload. Decoding must never
// crash or fail other than as invalid argument; whatever decodes must
// re-encode without tripping an encoder assertion (the decoder accepted
// nothing the encoder refuses) into a frame of the right type, decode again to
// an equal value, and the re-encoding must be a fixed point.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/assert.h"
#include "protocol/cluster_messages.h"

namespace {

using namespace maroon;
using namespace maroon::protocol;

std::string_view payload_of(const std::string& wire, FrameType type) {
  Frame f;
  size_t consumed = 0;
  MAROON_ASSERT(decode_frame(wire, f, consumed, nullptr) == DecodeResult::kFrame);
  MAROON_ASSERT(consumed == wire.size());
  MAROON_ASSERT(f.type == static_cast<uint8_t>(type));
  return f.payload;
}

template <typename T, typename Decode, typename Encode>
void check(std::string_view in, FrameType type, Decode decode, Encode encode) {
  Result<T> first = decode(in);
  if (!first) {
    MAROON_ASSERT(first.status().code() == Code::kInvalidArgument);
    MAROON_ASSERT(!first.status().message().empty());
    return;
  }
  std::string again;
  encode(*first, again);
  const std::string_view payload = payload_of(again, type);
  // ByteReader accepts padded varints and ByteWriter writes minimal ones, so
  // the re-encoding can only be shorter.
  MAROON_ASSERT(payload.size() <= in.size());
  Result<T> second = decode(payload);
  MAROON_ASSERT(second.is_ok());
  MAROON_ASSERT(*second == *first);
  std::string third;
  encode(*second, third);
  MAROON_ASSERT(third == again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 17) {
    case 0:
      check<Offsets>(in, FrameType::kOffsets, decode_offsets, encode_offsets);
      break;
    case 1:
      check<TxPull>(in, FrameType::kTxPull, decode_tx_pull, encode_tx_pull);
      break;
    case 2:
      check<TxPush>(in, FrameType::kTxPush, decode_tx_push, encode_tx_push);
      break;
    case 3:
      check<std::vector<TxMsg>>(
          in, FrameType::kTx, decode_txs,
          [](const std::vector<TxMsg>& m, std::string& out) { encode_txs(m, out); });
      break;
    case 4:
      check<LeaseRequest>(in, FrameType::kLeaseRequest, decode_lease_request, encode_lease_request);
      break;
    case 5:
      check<RenewLease>(in, FrameType::kRenewLease, decode_renew_lease, encode_renew_lease);
      break;
    case 6:
      check<TxAcks>(in, FrameType::kTxAck, decode_tx_acks,
                    [](const TxAcks& m, std::string& out) { encode_tx_acks(m.node, m.ids, out); });
      break;
    case 7:
      check<std::vector<TxResult>>(
          in, FrameType::kTxResult, decode_tx_results,
          [](const std::vector<TxResult>& m, std::string& out) { encode_tx_results(m, out); });
      break;
    case 8:
      check<LeaseGranted>(in, FrameType::kLeaseGranted, decode_lease_granted, encode_lease_granted);
      break;
    case 9:
      check<RangeSealed>(in, FrameType::kRangeSealed, decode_range_sealed, encode_range_sealed);
      break;
    case 10:
      check<TxEvicted>(in, FrameType::kTxEvicted, decode_tx_evicted, encode_tx_evicted);
      break;
    case 11:
      check<SnapshotWanted>(in, FrameType::kSnapshotWanted, decode_snapshot_wanted,
                            encode_snapshot_wanted);
      break;
    case 12:
      check<SnapshotOffer>(in, FrameType::kSnapshotOffer, decode_snapshot_offer,
                           encode_snapshot_offer);
      break;
    case 13:
      check<SnapshotPull>(in, FrameType::kSnapshotPull, decode_snapshot_pull, encode_snapshot_pull);
      break;
    case 14:
      check<SnapshotChunk>(in, FrameType::kSnapshotChunk, decode_snapshot_chunk,
                           encode_snapshot_chunk);
      break;
    case 15:
      check<MembershipNote>(in, FrameType::kMembershipNote, decode_membership_note,
                            encode_membership_note);
      break;
    case 16:
      check<GroupMembers>(in, FrameType::kGroupMembers, decode_group_members, encode_group_members);
      break;
  }
  return 0;
}
