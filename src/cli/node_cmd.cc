// `maroon node` and `maroon gateway`: one process of a cluster.
#include <boost/asio/io_context.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <utility>

#include "cli/commands.h"
#include "cli/store_setup.h"
#include "cli/serve.h"
#include "cluster/config.h"
#include "net/cert_files.h"
#include "cli/client_auth.h"
#include "net/tls.h"
#include "server/client_tls.h"
#include "server/driver.h"
#include "server/gateway_driver.h"

namespace maroon::cli {

namespace {

static_assert(cluster::vr_view_change_ticks_default == vr::Options{}.view_change_timeout_ticks,
              "the config's notion of the VR default view-change timeout is stale");

// Loads and validates the config; prints why not and returns false if it is invalid.
bool load(const char* what, const std::string& path, cluster::ClusterConfig& out) {
  Result<cluster::ClusterConfig> config = cluster::load_cluster_config(path);
  if (!config.is_ok()) {
    std::fprintf(stderr, "maroon %s: %s\n", what, config.status().message().c_str());
    return false;
  }
  out = std::move(config).value();
  return true;
}

// The process's peer TLS (docs/cluster.md, "Peer TLS"), into `out`; null if
// the config has none, after a loud warning if its nodes are reachable from
// other machines. Prints why and returns false if the files do not load.
bool load_peer_tls(const char* what, const cluster::ClusterConfig& config, net::PeerKind kind,
                   uint32_t id, std::shared_ptr<net::TlsContext>& out) {
  if (!config.peer_tls()) {
    if (!config.loopback_only()) {
      spdlog::warn(
          "{}: peer links are NOT authenticated or encrypted: {} has no [peer_tls] and its nodes "
          "listen beyond loopback, so anyone who can reach a peer port and read the cluster id "
          "can join, vote and forge messages. Make certificates with `maroon cert` and set "
          "[peer_tls] dir (docs/cluster.md, \"Peer TLS\")",
          what, config.path);
    }
    return true;
  }
  const net::PeerIdentity self{.cluster_id = config.cluster_id, .kind = kind, .id = id};
  Result<std::shared_ptr<net::TlsContext>> tls =
      net::TlsContext::load(net::tls_paths_in(config.peer_tls_dir, kind, id), self);
  if (!tls.is_ok()) {
    std::fprintf(stderr, "maroon %s: peer TLS ([peer_tls] of %s): %s\n", what,
                 config.path.c_str(), tls.status().message().c_str());
    return false;
  }
  out = std::move(tls).value();
  return true;
}

// [client_limits] over the defaults.
server::ClientLimits client_limits(const cluster::ClusterConfig& c) {
  server::ClientLimits l;
  if (c.client_max_clients != 0) l.connections_max = c.client_max_clients;
  if (c.client_max_clients_per_address != 0) {
    l.connections_per_address_max = c.client_max_clients_per_address;
  }
  if (c.client_buffer_mb != 0) l.buffer_bytes_max = c.client_buffer_mb << 20;
  return l;
}

// The client ports' TLS ([client_tls], docs/cluster.md), into `out`; none if
// the config has none. Prints why and returns false if the files do not load.
bool load_client_tls(const char* what, const cluster::ClusterConfig& config,
                     server::ClientSecurity& out) {
  if (!config.client_tls_on()) return true;
  Result<std::shared_ptr<boost::asio::ssl::context>> tls =
      server::load_client_tls_context({.cert = config.client_tls.cert,
                                       .key = config.client_tls.key,
                                       .client_ca = config.client_tls.client_ca});
  if (!tls.is_ok()) {
    std::fprintf(stderr, "maroon %s: client TLS ([client_tls] of %s): %s\n", what,
                 config.path.c_str(), tls.status().message().c_str());
    return false;
  }
  out.tls = std::move(tls).value();
  return true;
}

const char* client_ports_kind(const server::ClientSecurity& security) {
  return security.tls ? "TLS" : "plaintext";
}

// A node's or gateway's client ports as the config sets them: addresses,
// [client_limits], [client_tls] and [client_auth]. Prints why and returns
// false if the process must not start.
template <typename Entry>
bool client_ports(const char* what, const cluster::ClusterConfig& config, const Entry& self,
                  ServeAddresses& out) {
  out = ServeAddresses{.host = self.host,
                       .http_port = self.http_port,
                       .resp_port = self.resp_port,
                       .native_port = self.native_port,
                       .client_limits = client_limits(config)};
  if (!load_client_tls(what, config, out.security)) return false;
  return setup_client_auth(fmt::format("maroon {}", what).c_str(), config.client_users_path,
                           config.client_allow_anonymous, self.host,
                           "[client_auth] users, or allow_anonymous = true",
                           !config.client_tls.client_ca.empty(), out.security);
}

}  // namespace

int run_node(const NodeOptions& o) {
  cluster::ClusterConfig config;
  if (!load("node", o.config, config)) return 1;
  if (config.node(o.id) == nullptr) {
    std::fprintf(stderr, "maroon node: %s has no node with id %u\n", o.config.c_str(), o.id);
    return 1;
  }
  const cluster::NodeEntry& self = *config.node(o.id);
  server::DriverOptions d;
  d.data_dir = self.data_dir;
  if (o.apps != nullptr) d.apps = *o.apps;
  d.new_cluster = o.new_cluster;
  d.tick_ms = config.settings.tick_ms;
  d.snapshots.log_bytes = config.snapshot_log_mb << 20;
  d.snapshots.epochs = config.snapshot_epochs;
  d.snapshots.kept = config.snapshots_kept;
  if (!config.backup.store.empty()) {
    const cluster::ClusterConfig::Backup& b = config.backup;
    d.backup_store = objstore::StoreConfig{.url = b.store,
                                           .endpoint = b.endpoint,
                                           .region = b.region,
                                           .access_key = b.access_key,
                                           .secret_key = b.secret_key,
                                           .part_bytes = b.part_mb << 20};
    d.backup.interval_ms = b.interval_s * 1000;
    d.backup.kept = b.kept;
  }
  d.join = o.join;
  d.membership_epoch = config.membership_epoch;
  if (!holds_data(d.data_dir) && !o.new_cluster && !o.join && config.membership_epoch != 0) {
    // A member of a changed group whose directory was lost: its replica
    // would restart from the cluster as created, which the group left.
    std::fprintf(stderr,
                 "maroon node: %s holds no data and the cluster's group changed since it was "
                 "created (membership config %llu): a node that lost its directory is replaced, "
                 "not restarted empty: `maroon cluster replace-node --id %u` (docs/membership.md)\n",
                 d.data_dir.c_str(), static_cast<unsigned long long>(config.membership_epoch),
                 o.id);
    return 1;
  }
  if (o.join && holds_data(d.data_dir)) {
    spdlog::info("{} already holds data: --join is not used (the node restarts as it was)",
                 d.data_dir);
  }
  if (!o.bootstrap_from.empty()) {
    if (o.new_cluster || config.nodes.size() == 1) {
      std::fprintf(stderr, "maroon node: --bootstrap-from joins a running cluster of several "
                           "nodes; %s (docs/backups.md)\n",
                   o.new_cluster ? "a new cluster cannot start from a backup"
                                 : "a one-node cluster has no peers to join");
      return 1;
    }
    if (holds_data(d.data_dir)) {
      spdlog::info("{} already holds data: --bootstrap-from {} is not used", d.data_dir,
                   o.bootstrap_from);
    } else {
      // The [backup] section's endpoint, region and credentials, if any.
      objstore::StoreConfig from = d.backup_store ? *d.backup_store : objstore::StoreConfig{};
      from.url = o.bootstrap_from;
      if (Status s = fetch_bootstrap(from, d.data_dir, config.cluster_id); !s) {
        std::fprintf(stderr, "maroon node: --bootstrap-from: %s\n", s.to_string().c_str());
        return 1;
      }
    }
  }
  server::ClusterOptions c;
  c.cluster_id = config.cluster_id;
  c.self = NodeId(o.id);
  for (const cluster::NodeEntry& n : config.nodes) {
    c.members.push_back(server::ClusterMember{NodeId(n.id), n.host, n.peer_port});
  }
  c.lease_ms = config.settings.lease_ms;
  c.view_change_ticks = static_cast<uint32_t>(config.settings.view_change_ticks);
  c.send_queue_bytes_max = config.settings.send_queue_bytes_max;
  c.tx_retention_bytes_max = config.settings.tx_retention_bytes_max;
  c.unavailable_after_ms = cluster::effective_unavailable_after_ms(config.settings);
  spdlog::set_pattern(fmt::format("%Y-%m-%dT%H:%M:%S.%e node-{} %^%l%$ %v", o.id));
  if (!load_peer_tls("node", config, net::PeerKind::kNode, o.id, c.peer_tls)) return 1;
  ServeAddresses addresses;
  if (!client_ports("node", config, self, addresses)) return 1;
  d.cluster = c;
  spdlog::info("maroon node {} of {}: opening {}", o.id, config.nodes.size(), d.data_dir);
  boost::asio::io_context io(1);
  server::Driver driver(io, d);
  return serve(io, driver, d.drain_ms, addresses,
               [&](uint16_t http, uint16_t resp, uint16_t native) {
                 spdlog::info("node {} serving: peer {}:{} ({}) HTTP {} RESP {} native {} ({})",
                              o.id, self.host, self.peer_port, c.peer_tls ? "TLS" : "plaintext",
                              http, resp, native, client_ports_kind(addresses.security));
               });
}

int run_gateway(const GatewayOptions& o) {
  cluster::ClusterConfig config;
  if (!load("gateway", o.config, config)) return 1;
  if (config.gateway(o.id) == nullptr) {
    std::fprintf(stderr, "maroon gateway: %s has no gateway with id %u\n", o.config.c_str(), o.id);
    return 1;
  }
  const cluster::GatewayEntry& self = *config.gateway(o.id);
  server::GatewayDriverOptions g;
  g.cluster_id = config.cluster_id;
  if (o.apps != nullptr) g.apps = *o.apps;
  g.membership_epoch = config.membership_epoch;
  for (const cluster::NodeEntry& n : config.nodes) {
    g.nodes.push_back(server::ClusterMember{NodeId(n.id), n.host, n.peer_port});
  }
  g.tick_ms = config.settings.tick_ms;
  g.lease_ms = config.settings.lease_ms;
  g.send_queue_bytes_max = config.settings.send_queue_bytes_max;
  g.unavailable_after_ms = cluster::effective_unavailable_after_ms(config.settings);
  g.no_quorum_after_ms = cluster::no_quorum_after_ms(config.settings);
  spdlog::set_pattern(fmt::format("%Y-%m-%dT%H:%M:%S.%e gateway-{} %^%l%$ %v", o.id));
  if (!load_peer_tls("gateway", config, net::PeerKind::kGateway, o.id, g.peer_tls)) return 1;
  ServeAddresses addresses;
  if (!client_ports("gateway", config, self, addresses)) return 1;
  boost::asio::io_context io(1);
  server::GatewayDriver driver(io, g);
  driver.start();
  return serve_engine(
      io, driver, addresses, [&](std::function<void()> done) { driver.shutdown(std::move(done)); },
      g.drain_ms,
      [&](uint16_t http, uint16_t resp, uint16_t native) {
        spdlog::info("gateway {} serving: HTTP {} RESP {} native {} ({}; {} nodes)", o.id, http,
                     resp, native, client_ports_kind(addresses.security), g.nodes.size());
      });
}

}  // namespace maroon::cli
