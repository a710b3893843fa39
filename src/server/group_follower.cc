#include "server/group_follower.h"

#include <algorithm>

#include "cluster/address_book.h"
#include "maroon/assert.h"

namespace maroon::server {

GroupFollower::GroupFollower(std::vector<ClusterMember> configured, uint64_t config)
    : config_(config) {
  for (ClusterMember& m : configured) {
    members_.push_back(m.id);
    addresses_[m.id.value()] = std::move(m);
  }
  std::sort(members_.begin(), members_.end());
}

Result<bool> GroupFollower::adopt(uint64_t config, const std::vector<NodeId>& members,
                                  std::string_view book) {
  if (config <= config_) return false;
  MAROON_ASSERT(!members.empty());
  std::vector<cluster::NodeAddress> entries;
  if (!book.empty()) {
    auto decoded = cluster::decode_address_book(book);
    if (!decoded) return decoded.status();
    entries = std::move(decoded).value();
  }
  for (const cluster::NodeAddress& a : entries) {
    addresses_[a.id] = ClusterMember{NodeId(a.id), a.host, a.peer_port};
  }
  config_ = config;
  members_ = members;
  std::sort(members_.begin(), members_.end());
  return true;
}

bool GroupFollower::is_member(NodeId id) const {
  return std::binary_search(members_.begin(), members_.end(), id);
}

const ClusterMember* GroupFollower::address(NodeId id) const {
  auto it = addresses_.find(id.value());
  return it == addresses_.end() ? nullptr : &it->second;
}

std::vector<NodeId> GroupFollower::relink(net::Transport& t, std::set<uint64_t>& linked,
                                          const std::vector<NodeId>& want) const {
  std::vector<NodeId> unknown;
  std::set<uint64_t> wanted;
  for (NodeId id : want) {
    const ClusterMember* a = address(id);
    if (a == nullptr) {
      unknown.push_back(id);
      continue;
    }
    wanted.insert(id.value());
    if (linked.insert(id.value()).second) {
      t.connect(net::PeerAddress{id.value(), a->host, a->peer_port});
    }
  }
  for (auto it = linked.begin(); it != linked.end();) {
    if (wanted.contains(*it)) {
      ++it;
      continue;
    }
    t.disconnect(*it);
    it = linked.erase(it);
  }
  return unknown;
}

}  // namespace maroon::server
