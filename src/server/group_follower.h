// What a process linked to a cluster's nodes knows of the group
// (docs/membership.md): the newest membership config it was told, its
// members, and the peer address of every node it learned of, from
// cluster.toml first and then from each change's address book. Both drivers
// use it to keep their transports linked to exactly the nodes they need.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/status.h"
#include "common/types.h"
#include "net/transport.h"

namespace maroon::server {

// One node of a cluster as a peer link reaches it.
struct ClusterMember {
  NodeId id;
  std::string host;
  uint16_t peer_port = 0;
};

class GroupFollower {
 public:
  // The group as cluster.toml lists it (config `config`, usually 0).
  GroupFollower(std::vector<ClusterMember> configured, uint64_t config = 0);

  // A group the cluster committed. Adopted (true) if its config is newer
  // than the one held: its members, and the addresses its book gives (an
  // empty book keeps what is known). An address book that does not decode
  // is an error and changes nothing.
  Result<bool> adopt(uint64_t config, const std::vector<NodeId>& members, std::string_view book);

  uint64_t config() const { return config_; }
  const std::vector<NodeId>& members() const { return members_; }
  bool is_member(NodeId id) const;
  // Null if no address of this node was ever learned.
  const ClusterMember* address(NodeId id) const;

  // Makes t's outbound links exactly `want` (ids without an address are
  // skipped, and named in the returned list), given the ids `linked` it was
  // connect()ed to so far, which it updates.
  std::vector<NodeId> relink(net::Transport& t, std::set<uint64_t>& linked,
                             const std::vector<NodeId>& want) const;

 private:
  uint64_t config_ = 0;
  std::vector<NodeId> members_;  // sorted
  std::map<uint64_t, ClusterMember> addresses_;
};

}  // namespace maroon::server
