// A node's `GET /v1/status`, read with a small blocking HTTP client (plain
// POSIX sockets, one deadline for connect, send and receive).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "maroon/status.h"

namespace maroon::chaos {

struct NodeStatus {
  int http_status = 0;
  bool serving = false;
  std::string role;  // "primary", "backup", "view-change", "recovering", ...
  uint64_t view = 0;
  uint64_t primary = 0;
  uint64_t applied_epoch = 0;
  uint64_t commit_epoch = 0;
  std::string state_hash;
  std::string detail;
  uint64_t snapshots_installed = 0;  // snapshot.transfer.installed
  bool snapshot_needed = false;      // snapshot.transfer.needed
};

// GETs http://host:port/v1/status. A refused or timed-out connection, or a
// body that is not the status JSON, is kUnavailable.
Result<NodeStatus> get_node_status(const std::string& host, uint16_t port,
                                   std::chrono::milliseconds timeout);

}  // namespace maroon::chaos
