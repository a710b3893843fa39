// A snapshot transfer this node receives (node_host_transfer.cc), complete
// here so that NodeHost's destructor (node_host_snapshot.cc) sees it.
// Internal to the host.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "host/node_host.h"
#include "storage/env.h"

namespace maroon::host {

struct NodeHost::Fetch {
  bool pulling = false;  // else asking
  NodeId peer;
  uint64_t asked_ms = 0;
  bool asked = false;
  bool not_yet = false;  // the peer asked takes a snapshot: ask it again soon
  int not_yets = 0;       // in a row from that peer
  EpochNumber epoch;
  uint64_t total = 0;
  std::string path;
  std::unique_ptr<File> file;
  uint64_t have = 0;  // bytes written, from the start
  uint64_t next = 0;  // the next offset to pull
  // Pulls in flight: offset -> (length, sent at).
  std::map<uint64_t, std::pair<uint32_t, uint64_t>> in_flight;
  // Chunks that came before the ones ahead of them (bounded by the window).
  std::map<uint64_t, std::string> early;
  uint64_t progress_ms = 0;  // when a chunk last arrived
};

}  // namespace maroon::host
