// What the node driver (for its in-process gateway) and the standalone
// gateway driver share: decoding the frames nodes send to a gateway, and
// cutting a gateway's txs into kTx frames.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "gateway/gateway.h"
#include "protocol/messages.h"

namespace maroon::server {

// Decodes one frame from node `node` and hands its messages to `gateway`.
// A malformed frame, or acks claiming to come from another node, is an
// error and changes nothing.
[[nodiscard]] Status deliver_to_gateway(Gateway& gateway, uint64_t node, uint8_t type,
                                        std::string_view payload);

// Encodes `txs` as kTx frames, each within protocol::cluster_batch_*_max,
// and calls `send` with each frame's payload; then clears `txs`.
void send_tx_batches(std::vector<TxMsg>& txs,
                     const std::function<void(std::string_view payload)>& send);

// A frame's payload as encoded by one of protocol's encode_* functions.
std::string_view payload_of(const std::string& frame);

}  // namespace maroon::server
