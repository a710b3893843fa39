// The cluster config file: which nodes and gateways make up a cluster, where
// they listen, and the settings they share. Every process of a cluster reads
// the same file (`maroon node --config FILE --id N`). The TOML layout, every
// setting and its default are described in docs/cluster.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/limits.h"
#include "maroon/status.h"

namespace maroon::cluster {

inline constexpr size_t nodes_max = 7;
inline constexpr uint32_t node_id_max = 63;
inline constexpr uint32_t gateway_id_max = 63;
inline constexpr uint64_t tick_ms_max = 1000;
// A lease must outlast a few ticks, or a busy gateway loses its range.
inline constexpr uint64_t lease_ticks_min = 10;
inline constexpr uint64_t lease_ms_max = 3600 * 1000;
// vr::Options::lease_ticks (12) must not exceed the view change timeout.
inline constexpr uint64_t view_change_ticks_min = 12;
inline constexpr uint64_t view_change_ticks_max = 100000;
// vr::Options::view_change_timeout_ticks, used when view_change_ticks is 0
// (node_cmd.cc checks that they agree).
inline constexpr uint64_t vr_view_change_ticks_default = 20;
// unavailable_after_ms: the default, and its bounds. At least 4 view-change
// timeouts (a primary failover, which the backups start within 2, must end
// well within it) and at least 2 s (a gateway asks again for a result lost
// with a connection after 1 s).
inline constexpr uint64_t unavailable_after_ms_default = 5000;
inline constexpr uint64_t unavailable_after_view_changes_min = 4;
inline constexpr uint64_t unavailable_after_ms_floor = 2000;
inline constexpr uint64_t unavailable_after_ms_max = 24 * 3600 * 1000;
// The send queue must hold a message of the largest size
// (limits::message_bytes_max, 32 MiB), the retention a tx of the largest size
// (limits::op_bytes_max); the upper bounds catch unit mistakes.
inline constexpr size_t send_queue_bytes_min = limits::message_bytes_max;
inline constexpr size_t send_queue_bytes_max_max = size_t{16} << 30;
inline constexpr size_t tx_retention_bytes_min = 16 * 1024 * 1024;
static_assert(tx_retention_bytes_min >= limits::op_bytes_max);
inline constexpr size_t tx_retention_bytes_max_max = size_t{1} << 40;

struct NodeEntry {
  uint32_t id = 0;
  std::string host = "127.0.0.1";
  uint16_t peer_port = 0;  // node-to-node traffic (VR, tx replication)
  uint16_t http_port = 0;
  uint16_t resp_port = 0;
  uint16_t native_port = 0;  // clients and gateways
  std::string data_dir;      // absolute once loaded from a file

  bool operator==(const NodeEntry&) const = default;
};

struct GatewayEntry {
  uint32_t id = 0;
  std::string host = "127.0.0.1";
  uint16_t http_port = 0;
  uint16_t resp_port = 0;
  uint16_t native_port = 0;

  bool operator==(const GatewayEntry&) const = default;
};

struct ClusterSettings {
  uint64_t tick_ms = 10;
  uint64_t lease_ms = 5000;        // a gateway's range lease; unrenewed ranges are sealed after it
  uint64_t view_change_ticks = 0;  // 0: the VR default
  size_t send_queue_bytes_max = 64 << 20;     // per peer connection
  size_t tx_retention_bytes_max = 256 << 20;  // applied txs a node keeps to serve lagging peers
  // A client request with no result this long after it arrived is answered
  // "outcome unknown" (docs/cluster.md). 0: the default,
  // effective_unavailable_after_ms().
  uint64_t unavailable_after_ms = 0;

  bool operator==(const ClusterSettings&) const = default;
};

uint64_t effective_view_change_ticks(const ClusterSettings& s);
// The smallest unavailable_after_ms allowed with these settings.
uint64_t unavailable_after_ms_min(const ClusterSettings& s);
// unavailable_after_ms, or if 0 the default: 5000, or the minimum if larger.
uint64_t effective_unavailable_after_ms(const ClusterSettings& s);
// How long a node (or gateway) sees no working quorum before it refuses
// requests at once: 3 view-change timeouts.
uint64_t no_quorum_after_ms(const ClusterSettings& s);

// 127.0.0.0/8, ::1 or "localhost": nothing outside the machine reaches it.
bool is_loopback_host(std::string_view host);

struct ClusterConfig {
  uint64_t cluster_id = 0;
  ClusterSettings settings;
  // [peer_tls] dir: the directory of the cluster's CA certificate and each
  // process's certificate and key (net/cert_files.h names the files);
  // absolute once loaded from a file. Empty: plaintext peer links.
  std::string peer_tls_dir;
  // [client_tls]: TLS on the client ports (RESP, HTTP, native) of every node
  // and gateway (docs/security.md, "Client TLS"): the server certificate
  // chain and key files, and optionally a CA whose certificates clients must
  // present. Absolute once loaded from a file. Empty cert: plaintext.
  struct ClientTls {
    std::string cert;
    std::string key;
    std::string client_ca;  // empty: no client certificates
    bool operator==(const ClientTls&) const = default;
  } client_tls;
  std::vector<NodeEntry> nodes;
  std::vector<GatewayEntry> gateways;
  std::string path;  // the file it was loaded from; empty if parsed from text

  const NodeEntry* node(uint32_t id) const;
  const GatewayEntry* gateway(uint32_t id) const;
  // Crash faults tolerated.
  size_t f() const { return (nodes.size() - 1) / 2; }
  bool peer_tls() const { return !peer_tls_dir.empty(); }
  bool client_tls_on() const { return !client_tls.cert.empty(); }
  // Whether every node listens on a loopback address (127.0.0.0/8, ::1,
  // "localhost"): then nothing outside the machine reaches a peer port.
  bool loopback_only() const;
  // [client_auth] users: the users file of every node's and gateway's client
  // ports (absolute once loaded). Empty: no credentials asked.
  std::string client_users_path;
  // [client_auth] allow_anonymous: serve client ports on non-loopback
  // addresses without credentials (logged as a warning at start).
  bool client_allow_anonymous = false;
  // [client_limits]: every node's and gateway's client connection bounds
  // (docs/architecture.md, "Client connections and buffers"); 0: the default.
  uint64_t client_max_clients = 0;              // 16..2^20
  uint64_t client_max_clients_per_address = 0;  // 1..2^20
  uint64_t client_buffer_mb = 0;                // 32..2^20
  // [snapshots] (docs/snapshots.md): every node takes one once log_mb MiB
  // of log were written since its last (0: only on demand), or `epochs`
  // epochs were applied since (0: not by count), and keeps `kept`.
  uint64_t snapshot_log_mb = 32;
  uint64_t snapshot_epochs = 0;
  uint64_t snapshots_kept = 2;
  // [backup] (docs/backups.md): every node uploads its snapshots to this
  // object store (a directory, or s3://bucket/prefix), at most one per
  // interval_s, keeping its newest `kept` there. Empty store: no uploads.
  // Endpoint, region and credentials left empty come from the standard AWS
  // environment variables.
  struct Backup {
    std::string store;
    std::string endpoint;
    std::string region;
    std::string access_key;
    std::string secret_key;
    uint64_t interval_s = 60;
    uint64_t kept = 7;
    uint64_t part_mb = 16;
    bool operator==(const Backup&) const = default;
  };
  Backup backup;
  // [membership] (docs/membership.md): the membership config the node list
  // describes (0: the cluster as created; `maroon cluster add-node` and the
  // others write the config they committed), and the ids of nodes removed
  // from the cluster, never used again.
  uint64_t membership_epoch = 0;
  std::vector<uint32_t> removed_nodes;

  bool operator==(const ClusterConfig&) const = default;
};

// Reads, parses and validates the file. A relative data_dir is taken relative
// to the file's directory and made absolute. Errors start with the path.
Result<ClusterConfig> load_cluster_config(const std::string& path);
// Parses and validates TOML text; relative data_dirs are resolved against
// base_dir (made absolute first). Unknown keys are errors.
Result<ClusterConfig> parse_cluster_config(std::string_view toml_text, const std::string& base_dir);
// Checks everything that parsing alone cannot: counts, id ranges, unique ids,
// ports, settings and their relations. Errors name the file, the field, and
// what is wrong, e.g. "cluster.toml: nodes[2].peer_port: 7101 is already used
// by nodes[1].peer_port".
Status validate_cluster_config(const ClusterConfig& config);
// TOML text with a header comment; parse_cluster_config(format(c)) == c for a
// valid c whose data_dirs are absolute and whose path is empty.
std::string format_cluster_config(const ClusterConfig& config);

}  // namespace maroon::cluster
