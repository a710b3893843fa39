#include "server/gateway_driver.h"

#include "common/unknown_app.h"

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <random>

#include "protocol/cluster_messages.h"
#include "server/cluster_frames.h"

namespace maroon::server {

namespace {

GatewayConfig config_for(const GatewayDriverOptions& o) {
  std::random_device rd;
  uint64_t id = 0;
  // A fresh incarnation name on every start: a restarted gateway never
  // presents an old name, so it is never handed its old range again.
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  GatewayConfig c{.id = GatewayId(id)};
  c.acks_needed = o.nodes.size() / 2 + 1;
  for (const ClusterMember& m : o.nodes) c.members.push_back(m.id);
  c.members_config = o.membership_epoch;
  c.apps.clear();
  for (const AppInfo& app : o.apps.apps()) c.apps.push_back(app.id);
  c.retry_ticks = std::max<uint64_t>(1, 200 / o.tick_ms);
  c.result_retry_ticks = std::max<uint64_t>(1, 1000 / o.tick_ms);
  c.lease_retry_ticks = std::max<uint64_t>(1, 200 / o.tick_ms);
  c.renew_ticks = std::max<uint64_t>(1, o.lease_ms / 4 / o.tick_ms);
  c.deadline_ticks = std::max<uint64_t>(1, o.unavailable_after_ms / o.tick_ms);
  c.tick_ms = o.tick_ms;
  return c;
}


}  // namespace

GatewayDriver::GatewayDriver(boost::asio::io_context& io, GatewayDriverOptions options)
    : io_(io),
      options_(std::move(options)),
      gateway_(config_for(options_)),
      tick_timer_(io),
      shutdown_timer_(io),
      group_(options_.nodes, options_.membership_epoch),
      txs_submitted_(registry_.counter("maroon_txs_submitted_total", "Write txs accepted by the gateway")),
      txs_completed_(registry_.counter("maroon_txs_completed_total", "Write txs answered to clients")),
      txs_refused_(registry_.counter("maroon_txs_refused_total", "Write txs refused (overload, no range, shutdown)")),
      commit_latency_(registry_.histogram("maroon_commit_latency_seconds", "Tx latency from submit to result")),
      inflight_txs_(registry_.gauge("maroon_inflight_txs", "Txs submitted and not yet answered")),
      nodes_connected_(registry_.gauge("maroon_nodes_connected", "Nodes this gateway has a link to")),
      net_queued_bytes_(registry_.gauge("maroon_net_queued_bytes", "Bytes queued to nodes")),
      quorum_metrics_(registry_),
      clock_(options_.tick_ms * 1000, kTickCatchUpMax, monotonic_us()),
      link_quorum_(options_.nodes.size(), options_.nodes.size() / 2 + 1,
                   std::max<uint64_t>(1, options_.no_quorum_after_ms / options_.tick_ms)) {
  MAROON_ASSERT(!options_.nodes.empty());
}

GatewayDriver::~GatewayDriver() {
  if (net_) net_->close();
}

void GatewayDriver::start() {
  MAROON_ASSERT(!started_);
  net::TransportOptions to;
  to.cluster_id = options_.cluster_id;
  to.self_kind = net::PeerKind::kGateway;
  to.apps = app_ids(options_.apps);
  to.self_id = gateway_.id().value();
  to.send_queue_bytes_max = options_.send_queue_bytes_max;
  to.tls = options_.peer_tls;
  net_ = std::make_unique<net::Transport>(
      io_, to,
      [this](net::PeerKind, uint64_t peer, uint8_t type, std::string_view payload) {
        on_frame(peer, type, payload);
      },
      [](net::PeerKind, uint64_t peer, bool up) {
        spdlog::info("node {} {}", peer, up ? "connected" : "disconnected");
      });
  (void)group_.relink(*net_, linked_, group_.members());
  started_ = true;
  pump();
  schedule_tick();
}

void GatewayDriver::submit(AppId app, std::string op, ReplyFn done) {
  MAROON_ASSERT(started_);
  if (shutting_down_) {
    txs_refused_.inc();
    done(unavailable("the gateway is shutting down"), {});
    return;
  }
  uint64_t token = waiting_.add(std::move(done));
  Result<TxId> id = gateway_.submit(app, std::move(op), token);
  if (!id) {
    txs_refused_.inc();
    waiting_.refuse(token, id.status());
    return;
  }
  txs_submitted_.inc();
  schedule_pump();
}

Result<std::string> GatewayDriver::read(AppId app, std::string_view) {
  if (options_.apps.find(app) == nullptr) return unknown_app(app);
  return unavailable(
      "a gateway holds no state: send the read as an ordinary (ordered) request, or read a "
      "node");
}

EngineStatus GatewayDriver::status() const {
  EngineStatus s;
  s.serving = started_ && gateway_.ready() && !shutting_down_;
  s.detail = !started_          ? "starting"
             : shutting_down_   ? "shutting down"
             : !gateway_.ready() ? "leasing a range of tx ids from the cluster"
                                 : "";
  s.role = "gateway";
  s.quorum = gateway_.quorum();
  s.unavailable_reason = link_quorum_.reason();
  s.range = gateway_.range().value();
  s.inflight_txs = gateway_.inflight();
  s.membership_epoch = group_.config();
  for (NodeId id : group_.members()) s.members.push_back(id.value());
  return s;
}

void GatewayDriver::schedule_pump() {
  if (pump_scheduled_) return;
  pump_scheduled_ = true;
  // Posted: everything submitted in this loop turn goes out in one batch.
  boost::asio::post(io_, [this] {
    pump_scheduled_ = false;
    pump();
  });
}

void GatewayDriver::send_all(protocol::FrameType type, std::string_view payload) {
  for (NodeId n : group_.members()) {
    net_->send(net::PeerKind::kNode, n.value(), static_cast<uint8_t>(type), payload);
  }
}

void GatewayDriver::pump() {
  GatewayOutput g = gateway_.take_output();
  for (GatewayToNode& m : g.to_nodes) outbox_.to_nodes(std::move(m));
  outbox_.flush();
  if (!g.deliveries.empty()) {
    const auto now = std::chrono::steady_clock::now();
    for (Delivery& d : g.deliveries) {
      txs_completed_.inc();
      waiting_.deliver(d, now, commit_latency_);
    }
  }
}

void GatewayDriver::on_frame(uint64_t node, uint8_t type, std::string_view payload) {
  if (type == static_cast<uint8_t>(protocol::FrameType::kGroupMembers)) {
    on_group(node, payload);
    return;
  }
  if (Status s = deliver_to_gateway(gateway_, node, type, payload); !s) {
    spdlog::warn("dropped a frame from node {}: {}", node, s.to_string());
  }
  schedule_pump();
}

void GatewayDriver::on_group(uint64_t node, std::string_view payload) {
  auto m = protocol::decode_group_members(payload);
  if (!m) {
    spdlog::warn("dropped a frame from node {}: {}", node, m.status().to_string());
    return;
  }
  auto adopted = group_.adopt(m->config, m->members, m->address_book);
  if (!adopted) {
    spdlog::warn("node {} told of membership config {} with an address book that does not decode "
                 "({}); the members are followed with the addresses known before",
                 node, m->config, adopted.status().to_string());
    adopted = group_.adopt(m->config, m->members, {});
    MAROON_ASSERT(adopted.is_ok());
  }
  if (!*adopted) return;
  std::string ids;
  for (NodeId id : group_.members()) ids += fmt::format(" {}", id.value());
  spdlog::info("the group is membership config {} (told by node {}):{}", group_.config(), node, ids);
  gateway_.set_members(group_.config(), group_.members());
  link_quorum_.resize(group_.members().size(), gateway_.acks_needed());
  for (NodeId id : group_.relink(*net_, linked_, group_.members())) {
    spdlog::warn("node {} is a member, but its address is unknown: no link to it", id.value());
  }
  schedule_pump();
}

void GatewayDriver::schedule_tick() {
  tick_timer_.expires_after(std::chrono::milliseconds(options_.tick_ms));
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    on_tick();
    schedule_tick();
  });
}

void GatewayDriver::on_tick() {
  size_t connected = 0;
  for (NodeId n : group_.members()) {
    connected += net_->connected(net::PeerKind::kNode, n.value()) ? 1 : 0;
  }
  for (uint64_t n = clock_.due(monotonic_us()); n > 0; n--) {
    link_quorum_.update(connected);
    gateway_.set_quorum(link_quorum_.quorum(), link_quorum_.reason());
    gateway_.tick();
  }
  pump();
  inflight_txs_.set(static_cast<int64_t>(waiting_.size()));
  nodes_connected_.set(static_cast<int64_t>(connected));
  net_queued_bytes_.set(static_cast<int64_t>(net_->queued_bytes_total()));
  quorum_metrics_.update(link_quorum_.quorum(), link_quorum_.reason(), waiting_);
}

void GatewayDriver::shutdown(std::function<void()> done) {
  MAROON_ASSERT(!shutting_down_);
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  shutdown_deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.drain_ms);
  poll_shutdown();
}

void GatewayDriver::poll_shutdown() {
  if (waiting_.size() == 0 || std::chrono::steady_clock::now() >= shutdown_deadline_) {
    if (waiting_.size() != 0) spdlog::warn("shutting down with {} txs unanswered", waiting_.size());
    tick_timer_.cancel();
    net_->close();
    auto done = std::move(shutdown_done_);
    done();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(5));
  shutdown_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) poll_shutdown();
  });
}

}  // namespace maroon::server
