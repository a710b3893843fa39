// Messages between gateways and nodes (DESIGN.md §2). In `maroon dev` they
// cross function calls inside one process; in a cluster they travel in frames.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "common/types.h"

namespace maroon {

// gateway -> node: hold this tx durably. Retried with the same id and bytes.
struct TxMsg {
  TxId id;
  AppId app = AppId::kKv;
  std::string op;
};

// node -> gateway: the tx is durable on this node.
struct TxAck {
  TxId id;
};

// node -> gateway: the tx was executed; `reply` is the app's encoded reply.
// `expired` means the tx was executed long ago and its result was evicted
// from the result table: it will never execute again, but its reply is lost.
struct TxResult {
  TxId id;
  std::string reply;
  bool expired = false;
};

// gateway -> node: ask the sequencer for a fresh range. `gateway` names this
// gateway incarnation, so a restarted gateway never reuses a range.
struct LeaseRequest {
  GatewayId gateway;
  // The gateway's newest range (0 if none): a new range is granted only if
  // this is still the newest, so a retried request never leases twice.
  RangeId after;
};

// node -> gateway: the range leased to the gateway through the sequencer.
struct LeaseGranted {
  GatewayId gateway;
  RangeId range;
};

using GatewayToNode = std::variant<TxMsg, LeaseRequest>;
using NodeToGateway = std::variant<TxAck, TxResult, LeaseGranted>;

}  // namespace maroon
