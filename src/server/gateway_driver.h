// The real driver of a standalone gateway (`maroon gateway`): the gateway
// core on a Boost.Asio loop, linked to every node of the cluster by the
// transport. It holds no state: it leases a range of tx ids, sends each tx to
// every node, counts k = f + 1 durable acks per tx (retrying until then),
// renews its lease, and answers each client with the first result any node
// pushes back. If it dies its range is sealed when the lease expires; its
// clients retry through another gateway or node.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/tick_clock.h"
#include "gateway/gateway.h"
#include "protocol/frame.h"
#include "net/transport.h"
#include "server/cluster_frames.h"
#include "server/driver.h"
#include "server/engine.h"
#include "server/quorum_watch.h"
#include "server/group_follower.h"
#include "server/waiting_clients.h"

namespace maroon::server {

struct GatewayDriverOptions {
  uint64_t cluster_id = 0;
  std::vector<ClusterMember> nodes;
  uint64_t membership_epoch = 0;  // the config `nodes` lists (cluster.toml)
  uint64_t tick_ms = 10;
  uint64_t lease_ms = 5000;
  size_t send_queue_bytes_max = 64 * 1024 * 1024;
  // TLS on the links to the nodes, with this gateway's certificate; null:
  // plaintext (net/transport.h).
  std::shared_ptr<net::TlsContext> peer_tls;
  uint64_t drain_ms = 3000;
  // A request with no result this long after it arrived is answered "outcome
  // unknown"; linked to fewer than k nodes for no_quorum_after_ms, the
  // gateway refuses requests at once ("no quorum"). docs/cluster.md.
  uint64_t unavailable_after_ms = 5000;
  uint64_t no_quorum_after_ms = 600;
  // The apps the cluster's nodes run: requests for others are refused here.
  AppRegistry apps = builtin_apps();
};

class GatewayDriver final : public Engine {
 public:
  GatewayDriver(boost::asio::io_context& io, GatewayDriverOptions options);
  ~GatewayDriver() override;

  void start();
  // Refuses new writes, waits up to drain_ms for answers, then calls done.
  void shutdown(std::function<void()> done);

  void submit(AppId app, std::string op, ReplyFn done) override;
  Result<std::string> read(AppId app, std::string_view op) override;
  const AppRegistry& apps() const override { return options_.apps; }
  EngineStatus status() const override;
  Registry& metrics() override { return registry_; }
  bool orders_reads() const override { return true; }

 private:
  void pump();
  void schedule_pump();
  void on_frame(uint64_t node, uint8_t type, std::string_view payload);
  void send_all(protocol::FrameType type, std::string_view payload);
  void schedule_tick();
  void on_tick();
  void poll_shutdown();
  // A node told us the group (docs/membership.md): adopt a newer one.
  void on_group(uint64_t node, std::string_view payload);

  boost::asio::io_context& io_;
  GatewayDriverOptions options_;
  Gateway gateway_;
  std::unique_ptr<net::Transport> net_;
  boost::asio::steady_timer tick_timer_;
  boost::asio::steady_timer shutdown_timer_;
  std::function<void()> shutdown_done_;
  std::chrono::steady_clock::time_point shutdown_deadline_;
  bool started_ = false;
  bool shutting_down_ = false;
  bool pump_scheduled_ = false;
  // The nodes we link to and send txs to: cluster.toml's, then each newer
  // group a node tells us of.
  GroupFollower group_;
  std::set<uint64_t> linked_;
  WaitingClients waiting_;
  // Frames for every node; txs batched until the end of each pump.
  ClusterOutbox outbox_{NodeId(0), [this](protocol::FrameType type, std::string_view payload) {
                          send_all(type, payload);
                        }};

  Registry registry_;
  Counter& txs_submitted_;
  Counter& txs_completed_;
  Counter& txs_refused_;
  Histogram& commit_latency_;
  Gauge& inflight_txs_;
  Gauge& nodes_connected_;
  Gauge& net_queued_bytes_;
  QuorumMetrics quorum_metrics_;
  // Ticks from the monotonic clock, stalls included (common/tick_clock.h).
  TickClock clock_;
  LinkQuorum link_quorum_;
};

}  // namespace maroon::server
