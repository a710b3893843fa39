// The frames of a cluster between nodes and gateways, once, for the node
// driver (driver.cc: its peers, its in-process gateway's links to the other
// nodes, and remote gateways) and the standalone gateway driver
// (gateway_driver.cc): which message is which frame type, decoding a frame
// into the core's messages, and the outbox that batches txs, acks and
// results into frames within protocol::cluster_batch_*_max. The payload
// formats are protocol/cluster_messages.h's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "maroon/status.h"
#include "gateway/gateway.h"
#include "protocol/cluster_messages.h"
#include "protocol/messages.h"

namespace maroon::server {

// A frame's payload as encoded by one of protocol's encode_* functions.
std::string_view payload_of(const std::string& frame);

// --- node -> node ---

// Encodes m and calls send with its frame type and payload (a VR packet's
// bytes go as they are).
void send_peer_message(const PeerMessage& m,
                       const std::function<void(protocol::FrameType, std::string_view)>& send);
// Decodes a frame from a peer node. A frame of another type, or malformed,
// is an error.
[[nodiscard]] Result<PeerMessage> decode_peer_frame(uint8_t type, std::string_view payload);

// --- gateway -> node ---

// Decodes a frame from gateway `from` into its messages, in order: a kTx
// frame's txs, or one lease request or renewal. A malformed frame, a frame
// of another type, or a lease frame naming another gateway is an error.
[[nodiscard]] Result<std::vector<GatewayToNode>> decode_gateway_frame(GatewayId from, uint8_t type,
                                                                    std::string_view payload);

// --- node -> gateway ---

// Decodes one frame from node `node` and hands its messages to `gateway`.
// A malformed frame, or acks claiming to come from another node, is an
// error and changes nothing.
[[nodiscard]] Status deliver_to_gateway(Gateway& gateway, uint64_t node, uint8_t type,
                                        std::string_view payload);

// A process's messages to the other members of its cluster. Lease requests,
// renewals, grants and seals are framed and sent at once; txs (to every
// node), acks and results (to one gateway each) wait for flush(), which cuts
// them into as few frames as the batch bounds allow, so everything one
// event-loop turn produced travels together.
class ClusterOutbox {
 public:
  // Sends a frame to every remote node.
  using ToNodes = std::function<void(protocol::FrameType type, std::string_view payload)>;
  // Sends a frame to one remote gateway.
  using ToGateway =
      std::function<void(uint64_t gateway, protocol::FrameType type, std::string_view payload)>;

  // self is the node whose acks these are; NodeId(0) in a gateway process,
  // which sends nothing to gateways.
  ClusterOutbox(NodeId self, ToNodes to_nodes, ToGateway to_gateway = {})
      : self_(self), to_nodes_(std::move(to_nodes)), to_gateway_(std::move(to_gateway)) {}

  void to_nodes(GatewayToNode m);
  void to_gateway(uint64_t gateway, NodeToGateway m);
  void flush();

  size_t queued() const;

 private:
  // Gateways we owe acks or results to; forgotten beyond this many (a
  // gateway that went away leaves an empty entry behind).
  static constexpr size_t kGatewaysMax = 4096;

  const NodeId self_;
  const ToNodes to_nodes_;
  const ToGateway to_gateway_;
  std::vector<TxMsg> txs_;
  std::unordered_map<uint64_t, std::vector<TxId>> acks_;
  std::unordered_map<uint64_t, std::vector<TxResult>> results_;
};

}  // namespace maroon::server
