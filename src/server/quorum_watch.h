// What the node driver and the standalone gateway driver share for quorum
// loss (docs/cluster.md, "When the cluster has no quorum"): the /metrics
// they export about it, the clock that drives the gateway core's deadlines,
// and the standalone gateway's own notion of "no quorum" (too few nodes
// linked). Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/metrics.h"
#include "server/waiting_clients.h"

namespace maroon::server {

// maroon_quorum (gauge), maroon_requests_unavailable_total and
// maroon_requests_outcome_unknown_total, mirrored once per tick; logs when
// the quorum is lost (with the reason) and when it returns.
class QuorumMetrics {
 public:
  explicit QuorumMetrics(Registry& registry);
  void update(bool quorum, std::string_view reason, const WaitingClients& waiting);

 private:
  enum class Logged : uint8_t { kNothing, kQuorum, kNoQuorum } logged_ = Logged::kNothing;
  bool had_quorum_ = false;
  Gauge& quorum_;
  Counter& unavailable_;
  Counter& outcome_unknown_;
};

// A standalone gateway knows no VR state. It knows the cluster has no
// quorum it can use when it is linked to fewer than `needed` nodes (it
// cannot collect k acks): after `grace_ticks` of that, quorum() is false.
class LinkQuorum {
 public:
  LinkQuorum(size_t nodes, size_t needed, uint64_t grace_ticks)
      : nodes_(nodes), needed_(needed), grace_ticks_(grace_ticks) {}
  // Once per tick, with the number of nodes linked now.
  void update(size_t connected);
  // The group changed (docs/membership.md): its size and k.
  void resize(size_t nodes, size_t needed) {
    nodes_ = nodes;
    needed_ = needed;
  }
  bool quorum() const { return quorum_; }
  // Why not (empty while quorum()).
  const std::string& reason() const { return reason_; }

 private:
  size_t nodes_;
  size_t needed_;
  uint64_t grace_ticks_;
  uint64_t now_ = 0;
  uint64_t short_since_ = 0;
  bool short_ = false;
  bool quorum_ = true;
  std::string reason_;
};

}  // namespace maroon::server
