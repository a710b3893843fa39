// The `maroon` command's subcommands.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "maroon/app.h"

namespace maroon::cli {

struct DevOptions {
  std::string data_dir = "./maroon-data";
  std::string host = "127.0.0.1";
  uint16_t http_port = 8080;
  uint16_t resp_port = 6380;
  uint16_t native_port = 6390;
  std::string program = "maroon";  // how to name this binary in the examples printed at start
  // Client connection and buffer bounds (docs/architecture.md, "Limits").
  size_t max_clients = 4096;
  size_t max_clients_per_address = 1024;
  size_t client_buffer_mb = 256;
  // Credentials (docs/security.md): a users file, or explicit consent to
  // serve a non-loopback host without any.
  std::string users;
  bool allow_anonymous = false;
  // TLS on the client ports (docs/security.md, "Client TLS"): `tls` makes a
  // local CA and a certificate for localhost in <data_dir>/client-tls (or
  // reuses them); tls_cert and tls_key name the files to use instead.
  // tls_client_ca (with either): clients must present a certificate it signed.
  bool tls = false;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Snapshots (docs/snapshots.md): one per this many MiB of log (0: only on
  // demand), or per this many epochs (0: not by count); this many kept.
  uint64_t snapshot_log_mb = 32;
  uint64_t snapshot_epochs = 0;
  size_t snapshots_kept = 2;
  // Backups (docs/backups.md): upload snapshots to this object store (a
  // directory or s3://bucket/prefix; endpoint, region and credentials from
  // the AWS environment variables), one per interval at most, keeping the
  // newest `backups_kept` there. bootstrap_from: a new data directory
  // starts from the newest snapshot in that store (`maroon restore`).
  std::string backup_to;
  uint64_t backup_interval_s = 60;
  size_t backups_kept = 7;
  uint64_t backup_part_mb = 16;
  std::string bootstrap_from;
  const AppRegistry* apps = nullptr;  // nullptr: the built-in apps
};
int run_dev(const DevOptions& options);

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t http_port = 8080;
  // A bearer token (a user's password) for a server with users; from
  // --token or MAROON_TOKEN.
  std::string token;
};
// `maroon kv get|put|del KEY [VALUE]` over HTTP.
int run_kv(const ClientOptions& options, const std::string& verb, const std::string& key,
           const std::string& value);

// `maroon snapshot create`: a snapshot of the node now; waits until written.
// `maroon apps`: the apps this binary runs, one per line.
int run_apps(const AppRegistry& apps);
// `maroon call APP OP [--read]`: one op of an app over HTTP; prints the reply.
struct CallOptions {
  ClientOptions client;
  std::string app;
  std::string op;
  bool read = false;
  uint64_t timeout_ms = 10000;
};
int run_call(const CallOptions& options);

struct SnapshotCreateOptions {
  ClientOptions client;
  uint64_t wait_s = 600;
};
int run_snapshot_create(const SnapshotCreateOptions& options);

struct StatusOptions {
  ClientOptions client;  // one node
  std::string config;    // if set: every node of this cluster config instead
};
// `maroon status` over HTTP: one node, or a table of every node of a cluster.
int run_status(const StatusOptions& options);

// `maroon node --config FILE --id N`: one node of a cluster.
struct NodeOptions {
  std::string config;
  uint32_t id = 0;
  // A data directory that does not exist yet belongs to a new cluster's
  // first start (else: the node rejoins after losing it).
  bool new_cluster = false;
  // A node with a new data directory fetches the newest snapshot in this
  // object store first, and installs it when it needs one, before asking
  // its peers (docs/backups.md).
  std::string bootstrap_from;
  // A node added to a running cluster (maroon cluster add-node): with a new
  // data directory, it waits to be made a member by a membership change
  // (docs/membership.md) and then fetches a snapshot from the group.
  bool join = false;
  const AppRegistry* apps = nullptr;  // nullptr: the built-in apps
};
int run_node(const NodeOptions& options);

// Object stores (docs/backups.md). `store`: a directory or
// s3://bucket/prefix; endpoint, region and credentials from the AWS
// environment variables.
struct SnapshotListOptions {
  std::string store;
  std::optional<uint64_t> node;
};
int run_snapshot_list(const SnapshotListOptions& options);
struct SnapshotDownloadOptions {
  std::string store;
  std::optional<uint64_t> node;
  std::optional<uint64_t> epoch;  // unset: the newest
  std::string to;                 // a file, or an existing directory
};
int run_snapshot_download(const SnapshotDownloadOptions& options);
// `maroon backup`: a snapshot of the node now, uploaded to its store.
struct BackupOptions {
  ClientOptions client;
  uint64_t wait_s = 600;
};
int run_backup(const BackupOptions& options);
// `maroon restore`: a new data directory for `maroon dev` that starts from
// a stored snapshot of a single node.
struct RestoreOptions {
  std::string from;
  std::string data_dir = "./maroon-data";
  std::optional<uint64_t> epoch;
};
int run_restore(const RestoreOptions& options);

// `maroon gateway --config FILE --id N`: one standalone gateway of a cluster.
struct GatewayOptions {
  std::string config;
  uint32_t id = 0;
  const AppRegistry* apps = nullptr;  // nullptr: the built-in apps
};
int run_gateway(const GatewayOptions& options);

// `maroon cluster up`: writes DIR/cluster.toml unless it exists, starts every
// node and gateway of it as a background process, waits until they serve.
struct ClusterUpOptions {
  std::string dir;
  // These shape a new config; with an existing one they must not be given.
  std::optional<unsigned> nodes;      // default 3
  std::optional<unsigned> gateways;   // default 0
  std::optional<uint16_t> base_port;  // default: free ports picked by the OS
  std::optional<uint64_t> tick_ms;    // default: ClusterSettings
  std::optional<uint64_t> lease_ms;
  // A new cluster gets a CA and a certificate per process in DIR/tls and
  // [peer_tls] in its config, unless this is false.
  std::optional<bool> peer_tls;
  double timeout_seconds = 30;     // for every process to serve
  std::string program = "maroon";  // how to name this binary in the examples printed
};
int run_cluster_up(const ClusterUpOptions& options);

// `maroon cluster down`: stops the processes whose pid files are in DIR.
struct ClusterDownOptions {
  std::string dir;
  double timeout_seconds = 10;  // per process, after SIGTERM, before SIGKILL
};
int run_cluster_down(const ClusterDownOptions& options);

// `maroon cluster start|stop --dir D --id N [--gateway]`: one member of the
// cluster `cluster up` started in D. A node started without a data
// directory rejoins (it never bootstraps a new cluster).
struct ClusterMemberOptions {
  std::string dir;
  uint32_t id = 0;
  bool gateway = false;
  double timeout_seconds = 30;  // start: to serve; stop: after SIGTERM, before SIGKILL
  // start: passed to `maroon node --bootstrap-from` (docs/backups.md).
  std::string bootstrap_from;
};
int run_cluster_start(const ClusterMemberOptions& options);
int run_cluster_stop(const ClusterMemberOptions& options);

// `maroon cluster add-node|remove-node|replace-node --dir DIR [--id N]`: a
// membership change of the running cluster in DIR (docs/membership.md).
struct MembershipChangeOptions {
  std::string dir;
  uint32_t id = 0;  // remove-node, replace-node: the node that goes
  double timeout_seconds = 60;  // each wait: the commit, the new node serving, the old retiring
  std::string bootstrap_from;  // the new node starts from a snapshot in this store
};
int run_cluster_add_node(const MembershipChangeOptions& options);
int run_cluster_remove_node(const MembershipChangeOptions& options);
int run_cluster_replace_node(const MembershipChangeOptions& options);

// `maroon cert ca`: a new CA for a cluster's peer links, DIR/ca.crt and ca.key.
struct CertCaOptions {
  std::string out;
  uint64_t cluster_id = 0;  // or from `config`
  std::string config;
  uint32_t days = 0;  // 0: net::ca_days_default
};
int run_cert_ca(const CertCaOptions& options);

// `maroon cert issue`: a key and certificate for one node or gateway, signed
// by the CA in `ca`, into `out` (with a copy of ca.crt).
struct CertIssueOptions {
  std::string ca;
  std::string out;
  std::optional<uint32_t> node;
  std::optional<uint32_t> gateway;
  uint32_t days = 0;  // 0: net::cert_days_default
};
int run_cert_issue(const CertIssueOptions& options);

struct BenchOptions {
  std::string host = "127.0.0.1";
  uint16_t native_port = 6390;
  std::vector<uint16_t> native_ports;  // if set: connections spread over these
  unsigned connections = 16;
  unsigned pipeline = 16;  // requests in flight per connection
  double seconds = 10;
  unsigned keys = 100000;
  unsigned value_bytes = 16;
  std::string mix = "set";  // e.g. "set", "get", "set:50,get:50", "incr"
  double rate = 0;  // ops/s in total, open loop; 0: closed loop (as fast as answers come)
  // Credentials for a server with users: --user/--password or MAROON_USER /
  // MAROON_PASSWORD (a password alone names its user).
  std::string user;
  std::string password;
  // TLS (docs/security.md, "Client TLS"): the server's certificate must
  // chain to `cacert`; `cert` and `key`: a client certificate to present.
  bool tls = false;
  std::string cacert;
  std::string cert;
  std::string key;
};
int run_bench(const BenchOptions& options);

}  // namespace maroon::cli
