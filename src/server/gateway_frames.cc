#include "server/gateway_frames.h"

#include <fmt/format.h>

#include <span>

#include "protocol/cluster_messages.h"

namespace maroon::server {

std::string_view payload_of(const std::string& frame) {
  MAROON_ASSERT(frame.size() >= protocol::kFrameHeaderBytes + 1);
  return std::string_view(frame).substr(protocol::kFrameHeaderBytes + 1);
}

Status deliver_to_gateway(Gateway& gateway, uint64_t node, uint8_t type,
                          std::string_view payload) {
  using protocol::FrameType;
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
      return invalid_argument(fmt::format("unexpected frame type {}", type));
  }
}

void send_tx_batches(std::vector<TxMsg>& txs,
                     const std::function<void(std::string_view payload)>& send) {
  size_t begin = 0;
  while (begin < txs.size()) {
    size_t end = begin, bytes = 0;
    while (end < txs.size() && end - begin < protocol::cluster_batch_txs_max &&
           (end == begin ||
            bytes + protocol::encoded_tx_bytes(txs[end]) <= protocol::cluster_batch_bytes_max)) {
      bytes += protocol::encoded_tx_bytes(txs[end]);
      end++;
    }
    std::string frame;
    protocol::encode_txs(std::span(txs.data() + begin, end - begin), frame);
    send(payload_of(frame));
    begin = end;
  }
  txs.clear();
}

}  // namespace maroon::server
