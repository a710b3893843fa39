#include "server/cluster_frames.h"

#include <fmt/format.h>

#include <span>

#include "protocol/frame.h"

namespace maroon::server {

using protocol::FrameType;

std::string_view payload_of(const std::string& frame) {
  MAROON_ASSERT(frame.size() >= protocol::kFrameHeaderBytes + 1);
  return std::string_view(frame).substr(protocol::kFrameHeaderBytes + 1);
}

namespace {

Status unexpected(uint8_t type) { return invalid_argument(fmt::format("unexpected frame type {}", type)); }

// Frames as many items as the batch bounds allow each, in order, calling
// send with each frame's payload; then clears the items.
template <typename T, typename ItemBytes, typename Encode, typename Send>
void send_batches(std::vector<T>& items, ItemBytes item_bytes, Encode encode, Send send) {
  size_t begin = 0;
  while (begin < items.size()) {
    size_t end = begin, bytes = 0;
    while (end < items.size() && protocol::batch_has_room(end - begin, bytes, item_bytes(items[end]))) {
      bytes += item_bytes(items[end]);
      end++;
    }
    std::string frame;
    encode(std::span<const T>(items.data() + begin, end - begin), frame);
    send(payload_of(frame));
    begin = end;
  }
  items.clear();
}

template <typename M>
Result<PeerMessage> as_peer(Result<M> m) {
  if (!m) return m.status();
  return PeerMessage(std::move(m).value());
}

}  // namespace

void send_peer_message(const PeerMessage& m,
                       const std::function<void(FrameType, std::string_view)>& send) {
  std::string frame;
  if (auto* vr = std::get_if<VrPacket>(&m)) {
    send(FrameType::kVr, vr->bytes);
  } else if (auto* offsets = std::get_if<Offsets>(&m)) {
    protocol::encode_offsets(*offsets, frame);
    send(FrameType::kOffsets, payload_of(frame));
  } else if (auto* pull = std::get_if<TxPull>(&m)) {
    protocol::encode_tx_pull(*pull, frame);
    send(FrameType::kTxPull, payload_of(frame));
  } else if (auto* push = std::get_if<TxPush>(&m)) {
    protocol::encode_tx_push(*push, frame);
    send(FrameType::kTxPush, payload_of(frame));
  } else if (auto* evicted = std::get_if<TxEvicted>(&m)) {
    protocol::encode_tx_evicted(*evicted, frame);
    send(FrameType::kTxEvicted, payload_of(frame));
  } else if (auto* wanted = std::get_if<SnapshotWanted>(&m)) {
    protocol::encode_snapshot_wanted(*wanted, frame);
    send(FrameType::kSnapshotWanted, payload_of(frame));
  } else if (auto* offer = std::get_if<SnapshotOffer>(&m)) {
    protocol::encode_snapshot_offer(*offer, frame);
    send(FrameType::kSnapshotOffer, payload_of(frame));
  } else if (auto* spull = std::get_if<SnapshotPull>(&m)) {
    protocol::encode_snapshot_pull(*spull, frame);
    send(FrameType::kSnapshotPull, payload_of(frame));
  } else if (auto* note = std::get_if<MembershipNote>(&m)) {
    protocol::encode_membership_note(*note, frame);
    send(FrameType::kMembershipNote, payload_of(frame));
  } else {
    protocol::encode_snapshot_chunk(std::get<SnapshotChunk>(m), frame);
    send(FrameType::kSnapshotChunk, payload_of(frame));
  }
}

Result<PeerMessage> decode_peer_frame(uint8_t type, std::string_view payload) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kVr:
      return PeerMessage(VrPacket{std::string(payload)});
    case FrameType::kOffsets:
      return as_peer(protocol::decode_offsets(payload));
    case FrameType::kTxPull:
      return as_peer(protocol::decode_tx_pull(payload));
    case FrameType::kTxPush:
      return as_peer(protocol::decode_tx_push(payload));
    case FrameType::kTxEvicted:
      return as_peer(protocol::decode_tx_evicted(payload));
    case FrameType::kSnapshotWanted:
      return as_peer(protocol::decode_snapshot_wanted(payload));
    case FrameType::kSnapshotOffer:
      return as_peer(protocol::decode_snapshot_offer(payload));
    case FrameType::kSnapshotPull:
      return as_peer(protocol::decode_snapshot_pull(payload));
    case FrameType::kSnapshotChunk:
      return as_peer(protocol::decode_snapshot_chunk(payload));
    case FrameType::kMembershipNote:
      return as_peer(protocol::decode_membership_note(payload));
    default:
      return unexpected(type);
  }
}

Result<std::vector<GatewayToNode>> decode_gateway_frame(GatewayId from, uint8_t type,
                                                        std::string_view payload) {
  std::vector<GatewayToNode> v;
  switch (static_cast<FrameType>(type)) {
    case FrameType::kTx: {
      auto m = protocol::decode_txs(payload);
      if (!m) return m.status();
      v.reserve(m->size());
      for (TxMsg& tx : *m) v.emplace_back(std::move(tx));
      return v;
    }
    case FrameType::kLeaseRequest: {
      auto m = protocol::decode_lease_request(payload);
      if (!m) return m.status();
      if (m->gateway != from) return invalid_argument("a lease request names another gateway");
      v.emplace_back(*m);
      return v;
    }
    case FrameType::kRenewLease: {
      auto m = protocol::decode_renew_lease(payload);
      if (!m) return m.status();
      if (m->gateway != from) return invalid_argument("a lease renewal names another gateway");
      v.emplace_back(*m);
      return v;
    }
    default:
      return unexpected(type);
  }
}

Status deliver_to_gateway(Gateway& gateway, uint64_t node, uint8_t type,
                          std::string_view payload) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kTxAck: {
      auto m = protocol::decode_tx_acks(payload);
      if (!m) return m.status();
      if (m->node.value() != node) return invalid_argument("acks name another node");
      for (TxId id : m->ids) gateway.on_message(TxAck{id, m->node});
      return Status::ok();
    }
    case FrameType::kTxResult: {
      auto m = protocol::decode_tx_results(payload);
      if (!m) return m.status();
      for (TxResult& r : *m) gateway.on_message(std::move(r));
      return Status::ok();
    }
    case FrameType::kLeaseGranted: {
      auto m = protocol::decode_lease_granted(payload);
      if (!m) return m.status();
      gateway.on_message(*m);
      return Status::ok();
    }
    case FrameType::kRangeSealed: {
      auto m = protocol::decode_range_sealed(payload);
      if (!m) return m.status();
      gateway.on_message(*m);
      return Status::ok();
    }
    default:
      return unexpected(type);
  }
}

void ClusterOutbox::to_nodes(GatewayToNode m) {
  std::string frame;
  if (auto* tx = std::get_if<TxMsg>(&m)) {
    txs_.push_back(std::move(*tx));
  } else if (auto* lease = std::get_if<LeaseRequest>(&m)) {
    protocol::encode_lease_request(*lease, frame);
    to_nodes_(FrameType::kLeaseRequest, payload_of(frame));
  } else {
    protocol::encode_renew_lease(std::get<RenewLease>(m), frame);
    to_nodes_(FrameType::kRenewLease, payload_of(frame));
  }
}

void ClusterOutbox::to_gateway(uint64_t gateway, NodeToGateway m) {
  MAROON_ASSERT(self_.value() != 0 && to_gateway_);
  std::string frame;
  if (auto* ack = std::get_if<TxAck>(&m)) {
    acks_[gateway].push_back(ack->id);
  } else if (auto* result = std::get_if<TxResult>(&m)) {
    results_[gateway].push_back(std::move(*result));
  } else if (auto* granted = std::get_if<LeaseGranted>(&m)) {
    protocol::encode_lease_granted(*granted, frame);
    to_gateway_(gateway, FrameType::kLeaseGranted, payload_of(frame));
  } else {
    protocol::encode_range_sealed(std::get<RangeSealed>(m), frame);
    to_gateway_(gateway, FrameType::kRangeSealed, payload_of(frame));
  }
}

void ClusterOutbox::flush() {
  send_batches(
      txs_, [](const TxMsg& tx) { return protocol::encoded_tx_bytes(tx); },
      [](std::span<const TxMsg> span, std::string& out) { protocol::encode_txs(span, out); },
      [this](std::string_view payload) { to_nodes_(FrameType::kTx, payload); });
  for (auto& [to, acks] : acks_) {
    send_batches(
        acks, [](TxId) { return protocol::kVarintBytesMax; },
        [this](std::span<const TxId> span, std::string& out) {
          protocol::encode_tx_acks(self_, span, out);
        },
        [this, to = to](std::string_view payload) { to_gateway_(to, FrameType::kTxAck, payload); });
  }
  for (auto& [to, results] : results_) {
    send_batches(
        results, [](const TxResult& r) { return protocol::encoded_result_bytes(r); },
        [](std::span<const TxResult> span, std::string& out) {
          protocol::encode_tx_results(span, out);
        },
        [this, to = to](std::string_view payload) {
          to_gateway_(to, FrameType::kTxResult, payload);
        });
  }
  if (acks_.size() > kGatewaysMax) acks_.clear();
  if (results_.size() > kGatewaysMax) results_.clear();
}

size_t ClusterOutbox::queued() const {
  size_t n = txs_.size();
  for (const auto& [to, acks] : acks_) n += acks.size();
  for (const auto& [to, results] : results_) n += results.size();
  return n;
}

}  // namespace maroon::server
