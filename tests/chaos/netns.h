// The network of a `maroon-chaos --partitions` run (docs/chaos.md): one Linux
// network namespace per node, joined by a bridge in the root namespace, and
// blackhole routes inside the namespaces to cut links between nodes.
//
//   bridge   mrb<pid>            in the root namespace, address S.254/24
//   node ID  mrn<pid>-<ID>       a namespace, address S.<ID>/24 on its veth
//   veth     mrv<pid>-<ID>       root end (a port of the bridge)
//            mrp<pid>-<ID>       namespace end
//
// <pid> is maroon-chaos's pid; S is a /24 of 198.18.0.0/15 (the benchmarking
// range) that no root-namespace address is in yet, first tried at pid % 512.
// The root namespace (the test's clients and status polls) reaches every
// node; blackhole routes are only ever added inside node namespaces, for node
// addresses, so they cut node-to-node traffic only.
//
// Everything is created with `ip` (iproute2) and removed by remove() or the
// destructor; create() first removes what earlier runs of maroon-chaos left
// behind when they died without cleaning up (names whose pid is no live
// process, or is ours).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "maroon/status.h"

namespace maroon::chaos {

class NetLab {
 public:
  struct Node {
    uint32_t id = 0;
    std::string ns;       // namespace name
    std::string veth;     // root end
    std::string peer;     // namespace end
    std::string address;  // its IPv4 address
    int ns_fd = -1;       // /run/netns/<ns>, for setns(2)
  };

  // The root namespace, as a probe's end.
  static constexpr size_t kRoot = static_cast<size_t>(-1);

  // Builds the network for nodes with these ids and checks that every node
  // reaches every other and the root namespace. kUnavailable: network
  // namespaces cannot be made here (not root, no iproute2, ...); the message
  // says why. Anything already made is removed again on failure.
  static Result<std::unique_ptr<NetLab>> create(const std::vector<uint32_t>& ids);

  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;
  ~NetLab();  // remove(), ignoring its problems

  size_t size() const { return nodes_.size(); }
  const Node& node(size_t i) const { return nodes_[i]; }
  const std::string& bridge() const { return bridge_; }
  const std::string& root_address() const { return root_address_; }
  std::string subnet() const { return prefix_ + "0/24"; }

  // A blackhole route to `to`'s address in `from`'s namespace: `from` can no
  // longer send to `to` (its sends fail with EINVAL; TCP segments, SYNs and
  // ACKs included, are dropped). Counted, so that overlapping partitions can
  // add and remove the same route: the route exists while the count is > 0.
  Status block(size_t from, size_t to);
  Status unblock(size_t from, size_t to);
  bool blocked(size_t from, size_t to) const;
  size_t routes() const { return routes_.size(); }

  struct ProbeStats {
    uint64_t matrices = 0;   // verify() calls
    uint64_t delivered = 0;  // open paths seen open
    uint64_t blocked = 0;    // cut paths seen cut
    uint64_t tcp_blocked = 0;
  };
  // Sends a UDP datagram from `from`'s namespace (kRoot: the root one) to a
  // socket bound to `to`'s address in `to`'s namespace. True if it arrived
  // within `timeout`; `how` says what happened either way.
  bool udp_delivers(size_t from, size_t to, std::chrono::milliseconds timeout, std::string* how);
  // A TCP connect from `from`'s namespace to `to`'s address and `port`. True
  // if the other end answered (connected, or refused: RST); false if the
  // connect failed otherwise or timed out.
  bool tcp_reaches(size_t from, size_t to, uint16_t port, std::chrono::milliseconds timeout,
                   std::string* how);
  // Checks every ordered pair of nodes (and root -> node) against the routes:
  // a datagram must arrive exactly when the path is not blocked. Returns one
  // line per mismatch; empty if the network is as intended.
  std::vector<std::string> verify();
  const ProbeStats& stats() const { return stats_; }
  void count_tcp_blocked() { stats_.tcp_blocked++; }

  // Removes every route, veth, namespace and the bridge this run made, then
  // checks that nothing with this run's names is left. Idempotent. Returns a
  // line per thing that could not be removed.
  std::vector<std::string> remove();

 private:
  NetLab() = default;

  std::string pid_;  // the names' <pid>
  std::string bridge_;
  std::string prefix_;  // "198.18.R." or "198.19.R."
  std::string root_address_;
  std::vector<Node> nodes_;
  std::map<std::pair<size_t, size_t>, int> routes_;  // (from, to) -> count
  bool bridge_made_ = false;
  bool removed_ = false;
  ProbeStats stats_;
};

}  // namespace maroon::chaos
