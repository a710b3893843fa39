// What a node shows of snapshot transfers (docs/snapshots.md, "Transfer"):
// NodeHost::transfer_status(), carried in EngineStatus to `/v1/status`.
#pragma once

#include <cstdint>
#include <string>

namespace maroon::host {

// What `maroon status` shows of snapshot transfers.
struct TransferStatus {
  bool fetching = false;  // this node waits for a peer's snapshot
  std::string why;        // ... because
  uint64_t need_epoch = 0;
  uint64_t peer = 0;  // being fetched from (0: still asking)
  uint64_t epoch = 0;
  uint64_t received = 0;  // bytes of it so far
  uint64_t total = 0;
  uint64_t installed = 0;       // peers' snapshots installed (Node::snapshots_installed)
  uint64_t bytes_received = 0;  // over every transfer
  uint64_t bytes_sent = 0;      // to peers
  // The epoch of the bootstrap snapshot (fetched from an object store
  // before the start) once installed; 0: none installed.
  uint64_t bootstrap_epoch = 0;
  std::string last_error;
};

}  // namespace maroon::host
