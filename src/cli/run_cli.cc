// The `maroon` command line (maroon/cli.h): every subcommand, with the apps
// the program registered. See README.md.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/client_auth.h"
#include "cli/commands.h"
#include "maroon/cli.h"

int maroon::run_cli(int argc, char** argv, const AppRegistry& apps) {
  using namespace maroon::cli;
  CLI::App app{"maroon: durable, replicated, deterministic execution"};
  app.require_subcommand(1);

  DevOptions dev;
  auto* dev_cmd = app.add_subcommand("dev", "Run one node with its gateway and every app of this program");
  dev_cmd->add_option("--data-dir", dev.data_dir, "Where the WAL lives")->capture_default_str();
  dev_cmd->add_option("--host", dev.host, "Address to listen on")->capture_default_str();
  dev_cmd->add_option("--http-port", dev.http_port, "HTTP/JSON port")->capture_default_str();
  dev_cmd->add_option("--resp-port", dev.resp_port, "RESP (redis-cli) port")->capture_default_str();
  dev_cmd->add_option("--native-port", dev.native_port, "Native binary protocol port")
      ->capture_default_str();
  dev_cmd->add_option("--max-clients", dev.max_clients,
                      "Client connections, all ports (lowered to fit the descriptor limit)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{16}, size_t{1} << 20));
  dev_cmd->add_option("--max-clients-per-address", dev.max_clients_per_address,
                      "Client connections from one remote address")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  dev_cmd->add_option("--client-buffer-mb", dev.client_buffer_mb,
                      "MiB of client input and output buffered, all connections together")
      ->capture_default_str()
      ->check(CLI::Range(size_t{32}, size_t{1} << 20));
  dev_cmd->add_option("--users", dev.users,
                      "Users file: clients must log in (make one with `maroon user add`)");
  dev_cmd->add_flag("--allow-anonymous", dev.allow_anonymous,
                    "Serve a non-loopback --host without credentials (not recommended)");

  dev_cmd->add_option("--snapshot-log-mb", dev.snapshot_log_mb,
                      "Take a snapshot once this many MiB of log were written since the last "
                      "(and at least the last snapshot's size); 0: only on demand")
      ->capture_default_str();
  dev_cmd->add_option("--snapshot-epochs", dev.snapshot_epochs,
                      "Also take one once this many epochs were applied since the last (0: off)")
      ->capture_default_str();
  dev_cmd->add_option("--snapshots-kept", dev.snapshots_kept,
                      "Snapshots kept; the log is kept back to the oldest of them")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100}));

  dev_cmd->add_option("--backup-to", dev.backup_to,
                      "Upload snapshots to this object store: a directory or s3://bucket/prefix "
                      "(endpoint, region, credentials: AWS_* environment variables)");
  dev_cmd->add_option("--backup-interval-s", dev.backup_interval_s,
                      "Upload a snapshot at most this often (`maroon backup`: at once)")
      ->capture_default_str();
  dev_cmd->add_option("--backups-kept", dev.backups_kept,
                      "Newest snapshots kept in the object store (0: none deleted)")
      ->capture_default_str();
  dev_cmd->add_option("--backup-part-mb", dev.backup_part_mb,
                      "S3 multipart upload part size, MiB")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{5}, uint64_t{5120}));
  dev_cmd->add_option("--bootstrap-from", dev.bootstrap_from,
                      "If DATA-DIR is new: start from the newest snapshot in this object store "
                      "(as `maroon restore`)");

  auto* dev_tls = dev_cmd->add_flag(
      "--tls", dev.tls,
      "TLS on every client port, with a local CA and a certificate for localhost made in "
      "DATA-DIR/client-tls (kept and reused); clients trust DATA-DIR/client-tls/ca.crt");
  auto* dev_tls_cert =
      dev_cmd
          ->add_option("--tls-cert", dev.tls_cert,
                       "TLS on every client port with this certificate chain (PEM)")
          ->excludes(dev_tls);
  auto* dev_tls_key =
      dev_cmd->add_option("--tls-key", dev.tls_key, "The key of --tls-cert (PEM, mode 0600)")
          ->excludes(dev_tls);
  dev_tls_cert->needs(dev_tls_key);
  dev_tls_key->needs(dev_tls_cert);
  dev_cmd->add_option("--tls-client-ca", dev.tls_client_ca,
                      "With --tls or --tls-cert: clients must present a certificate this CA "
                      "(PEM) signed (mutual TLS)");

  UserAddOptions user_add;
  auto* user_cmd = app.add_subcommand("user", "Manage the users of the client ports");
  user_cmd->require_subcommand(1);
  auto* user_add_cmd = user_cmd->add_subcommand(
      "add", "Add a user to a users file (made 0600) and print its new password once");
  user_add_cmd->add_option("--file", user_add.file, "The users file")->required();
  user_add_cmd->add_option("--name", user_add.name, "The user's name")->required();
  user_add_cmd->add_option("--access", user_add.access, "read-write | read-only")
      ->capture_default_str()
      ->check(CLI::IsMember({"read-write", "read-only"}));
  user_add_cmd->add_flag("--password-stdin", user_add.password_stdin,
                         "Read the password from standard input instead of making one");

  ClientOptions client;
  std::string verb, key, value;
  auto* kv_cmd = app.add_subcommand("kv", "Read or write one key over HTTP");
  kv_cmd->add_option("verb", verb, "get | put | del")->required()->check(CLI::IsMember({"get", "put", "del"}));
  kv_cmd->add_option("key", key, "The key")->required();
  kv_cmd->add_option("value", value, "The value (put)");
  kv_cmd->add_option("--host", client.host)->capture_default_str();
  kv_cmd->add_option("--http-port", client.http_port)->capture_default_str();
  kv_cmd->add_option("--token", client.token, "Bearer token (a user's password)")
      ->envname("MAROON_TOKEN");

  auto* apps_cmd = app.add_subcommand("apps", "List the apps this binary runs");
  CallOptions call;
  auto* call_cmd = app.add_subcommand("call", "Send one op to an app over HTTP; print its reply");
  call_cmd->add_option("app", call.app, "The app's name (maroon apps lists them)")->required();
  call_cmd->add_option("op", call.op, "The op, as the app encodes it")->required();
  call_cmd->add_flag("--read", call.read,
                     "Execute against the node's applied state (StateMachine::read), unordered");
  call_cmd->add_option("--host", call.client.host)->capture_default_str();
  call_cmd->add_option("--http-port", call.client.http_port)->capture_default_str();
  call_cmd->add_option("--token", call.client.token, "Bearer token (a user's password)")
      ->envname("MAROON_TOKEN");
  call_cmd->add_option("--timeout-ms", call.timeout_ms, "Give up after this long")
      ->capture_default_str();

  StatusOptions status;
  auto* status_cmd =
      app.add_subcommand("status", "Show a node's status, or every node's of a cluster");
  auto* status_host = status_cmd->add_option("--host", status.client.host)->capture_default_str();
  auto* status_port =
      status_cmd->add_option("--http-port", status.client.http_port)->capture_default_str();
  status_cmd->add_option("--token", status.client.token, "Bearer token (a user's password)")
      ->envname("MAROON_TOKEN");
  status_cmd->add_option("--config", status.config, "A cluster config: show every node of it")
      ->excludes(status_host)
      ->excludes(status_port);

  SnapshotCreateOptions snapshot_create;
  auto* snapshot_cmd = app.add_subcommand("snapshot", "Node snapshots (docs/snapshots.md)");
  snapshot_cmd->require_subcommand(1);
  auto* snapshot_create_cmd = snapshot_cmd->add_subcommand(
      "create", "Take a snapshot of a node now, and wait until it is written");
  snapshot_create_cmd->add_option("--host", snapshot_create.client.host)->capture_default_str();
  snapshot_create_cmd->add_option("--http-port", snapshot_create.client.http_port)
      ->capture_default_str();
  snapshot_create_cmd
      ->add_option("--token", snapshot_create.client.token,
                   "Bearer token (a read-write user's password)")
      ->envname("MAROON_TOKEN");
  snapshot_create_cmd->add_option("--wait", snapshot_create.wait_s, "Seconds to wait at most")
      ->capture_default_str();

  SnapshotListOptions snapshot_list;
  auto* snapshot_list_cmd = snapshot_cmd->add_subcommand(
      "list", "List the snapshots in an object store (docs/backups.md)");
  snapshot_list_cmd->add_option("--store", snapshot_list.store,
                                "A directory or s3://bucket/prefix")->required();
  snapshot_list_cmd->add_option("--node", snapshot_list.node, "Only this node's");
  SnapshotDownloadOptions snapshot_download;
  auto* snapshot_download_cmd = snapshot_cmd->add_subcommand(
      "download", "Download a snapshot from an object store, and verify it");
  snapshot_download_cmd->add_option("--store", snapshot_download.store,
                                    "A directory or s3://bucket/prefix")->required();
  snapshot_download_cmd->add_option("--node", snapshot_download.node, "Of this node (default: any)");
  snapshot_download_cmd->add_option("--epoch", snapshot_download.epoch,
                                    "Of this epoch (default: the newest)");
  snapshot_download_cmd->add_option("--to", snapshot_download.to, "A file, or a directory")
      ->required();

  BackupOptions backup;
  auto* backup_cmd = app.add_subcommand(
      "backup", "Take a snapshot of a node now and upload it to its object store; wait for it");
  backup_cmd->add_option("--host", backup.client.host)->capture_default_str();
  backup_cmd->add_option("--http-port", backup.client.http_port)->capture_default_str();
  backup_cmd->add_option("--token", backup.client.token, "Bearer token (a read-write user's password)")
      ->envname("MAROON_TOKEN");
  backup_cmd->add_option("--wait", backup.wait_s, "Seconds to wait at most")->capture_default_str();
  RestoreOptions restore;
  auto* restore_cmd = app.add_subcommand(
      "restore", "Make a new data directory for `maroon dev` from a snapshot in an object store");
  restore_cmd->add_option("--from", restore.from, "A directory or s3://bucket/prefix")->required();
  restore_cmd->add_option("--data-dir", restore.data_dir, "The new data directory")
      ->capture_default_str();
  restore_cmd->add_option("--epoch", restore.epoch, "The snapshot of this epoch (default: newest)");

  NodeOptions node;
  auto* node_cmd = app.add_subcommand("node", "Run one node of a cluster");
  node_cmd->add_option("--config", node.config, "The cluster config (cluster.toml)")->required();
  node_cmd->add_option("--id", node.id, "This node's id in the config")->required();
  node_cmd->add_flag("--new-cluster", node.new_cluster,
                     "If this node's data directory does not exist yet, this is a new cluster's "
                     "first start: bootstrap it. Without it, a node with a new directory rejoins "
                     "its cluster and recovers from its peers (its old directory was lost)");
  auto* join_flag = node_cmd->add_flag(
      "--join", node.join,
      "If this node's data directory does not exist yet, it is new to a running cluster: it "
      "waits to be added by a membership change (what `maroon cluster add-node` does)");
  join_flag->excludes("--new-cluster");
  node_cmd->add_option("--bootstrap-from", node.bootstrap_from,
                       "If this node's data directory is new: fetch the newest snapshot in this "
                       "object store first, and start from it rather than from a peer's");

  GatewayOptions gateway;
  auto* gateway_cmd = app.add_subcommand("gateway", "Run one standalone gateway of a cluster");
  gateway_cmd->add_option("--config", gateway.config, "The cluster config (cluster.toml)")
      ->required();
  gateway_cmd->add_option("--id", gateway.id, "This gateway's id in the config")->required();

  auto* cluster_cmd = app.add_subcommand("cluster", "Run a local cluster as background processes");
  cluster_cmd->require_subcommand(1);
  ClusterUpOptions up;
  unsigned up_nodes = 3, up_gateways = 0;
  uint16_t up_base_port = 0;
  uint64_t up_tick_ms = 0, up_lease_ms = 0;
  auto* up_cmd = cluster_cmd->add_subcommand(
      "up", "Start the cluster in DIR, writing DIR/cluster.toml first if it does not exist");
  up_cmd->add_option("--dir", up.dir, "Directory of the config, data, logs and pid files")
      ->required();
  up_cmd->add_option("--nodes", up_nodes, "Nodes in a new cluster (default 3)")
      ->check(CLI::Range(1, 7));
  up_cmd->add_option("--gateways", up_gateways, "Standalone gateways in a new cluster (default 0)")
      ->check(CLI::Range(0, 63));
  up_cmd->add_option("--base-port", up_base_port,
                     "First of consecutive ports for a new cluster (default: free ports)")
      ->check(CLI::Range(1, 65535));
  up_cmd->add_option("--tick-ms", up_tick_ms, "settings.tick_ms of a new cluster");
  up_cmd->add_option("--lease-ms", up_lease_ms, "settings.lease_ms of a new cluster");
  bool up_no_peer_tls = false;
  up_cmd->add_flag(
      "--no-peer-tls", up_no_peer_tls,
      "A new cluster without peer TLS: plaintext, unauthenticated node links (loopback only!)");
  up_cmd->add_option("--timeout", up.timeout_seconds, "Seconds to wait for every process to serve")
      ->capture_default_str()->check(CLI::Range(1.0, 3600.0));
  ClusterDownOptions down;
  auto* down_cmd = cluster_cmd->add_subcommand("down", "Stop the processes of the cluster in DIR");
  down_cmd->add_option("--dir", down.dir, "The directory `cluster up` used")->required();
  down_cmd->add_option("--timeout", down.timeout_seconds, "Seconds after SIGTERM before SIGKILL")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));

  ClusterMemberOptions member_start, member_stop;
  member_stop.timeout_seconds = 10;
  auto* start_cmd = cluster_cmd->add_subcommand(
      "start", "Start one node (or gateway) of the cluster in DIR, and wait until it serves");
  auto* stop_cmd = cluster_cmd->add_subcommand("stop", "Stop one node (or gateway) of the cluster in DIR");
  for (auto [cmd, opts] : {std::pair{start_cmd, &member_start}, std::pair{stop_cmd, &member_stop}}) {
    cmd->add_option("--dir", opts->dir, "The directory `cluster up` used")->required();
    cmd->add_option("--id", opts->id, "The node's (or gateway's) id")->required();
    cmd->add_flag("--gateway", opts->gateway, "A standalone gateway, not a node");
    cmd->add_option("--timeout", opts->timeout_seconds,
                    cmd == start_cmd ? "Seconds to wait for it to serve"
                                     : "Seconds after SIGTERM before SIGKILL")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 3600.0));
  }
  MembershipChangeOptions add_node, remove_node, replace_node;
  auto* add_node_cmd = cluster_cmd->add_subcommand(
      "add-node", "Add a node to the running cluster in DIR: start it, make it a member, rewrite "
                  "cluster.toml (docs/membership.md)");
  auto* remove_node_cmd = cluster_cmd->add_subcommand(
      "remove-node", "Remove node N from the running cluster in DIR; it hands over and exits");
  auto* replace_node_cmd = cluster_cmd->add_subcommand(
      "replace-node", "Replace node N (running or lost) by a new node, in one change");
  for (auto [cmd, opts] : {std::pair{add_node_cmd, &add_node}, std::pair{remove_node_cmd, &remove_node},
                           std::pair{replace_node_cmd, &replace_node}}) {
    cmd->add_option("--dir", opts->dir, "The directory `cluster up` used")->required();
    if (cmd != add_node_cmd) {
      cmd->add_option("--id", opts->id, "The node that leaves the group")->required();
    }
    if (cmd != remove_node_cmd) {
      cmd->add_option("--bootstrap-from", opts->bootstrap_from,
                      "The new node starts from the newest snapshot in this object store "
                      "(docs/backups.md) rather than a peer's");
    }
    cmd->add_option("--timeout", opts->timeout_seconds,
                    "Seconds for each wait: the change to commit, the new node to serve, the "
                    "removed one to retire")
        ->capture_default_str()
        ->check(CLI::Range(1.0, 3600.0));
  }
  start_cmd->add_option("--bootstrap-from", member_start.bootstrap_from,
                        "A node with no data directory starts from the newest snapshot in this "
                        "object store (docs/backups.md)");

  auto* cert_cmd = app.add_subcommand(
      "cert", "Make the certificates of a cluster's peer links (TLS between nodes and gateways)");
  cert_cmd->require_subcommand(1);
  CertCaOptions cert_ca;
  auto* cert_ca_cmd = cert_cmd->add_subcommand(
      "ca", "Make a cluster's CA: DIR/ca.crt and DIR/ca.key (keep ca.key safe)");
  cert_ca_cmd->add_option("--out", cert_ca.out, "Directory to write to (made 0700)")->required();
  auto* ca_cluster = cert_ca_cmd->add_option("--cluster-id", cert_ca.cluster_id,
                                             "The cluster_id of the cluster's cluster.toml");
  cert_ca_cmd->add_option("--config", cert_ca.config, "Take the cluster id from this cluster.toml")
      ->excludes(ca_cluster);
  cert_ca_cmd->add_option("--days", cert_ca.days, "Validity in days (default 3650)")
      ->check(CLI::Range(1, 36500));
  CertIssueOptions cert_issue;
  uint32_t issue_node = 0, issue_gateway = 0;
  auto* cert_issue_cmd = cert_cmd->add_subcommand(
      "issue",
      "Make one node's or gateway's key and certificate, signed by the CA: OUT/node-N.crt, "
      "OUT/node-N.key (or gateway-N.*) and a copy of ca.crt; OUT is that process's [peer_tls] dir");
  cert_issue_cmd->add_option("--ca", cert_issue.ca, "The directory of ca.crt and ca.key")
      ->required();
  auto* issue_node_opt =
      cert_issue_cmd->add_option("--node", issue_node, "For node N")->check(CLI::Range(1, 63));
  cert_issue_cmd->add_option("--gateway", issue_gateway, "For standalone gateway N")
      ->check(CLI::Range(1, 63))
      ->excludes(issue_node_opt);
  cert_issue_cmd->add_option("--out", cert_issue.out, "Directory to write to (made 0700)")
      ->required();
  cert_issue_cmd->add_option("--days", cert_issue.days, "Validity in days (default 825)")
      ->check(CLI::Range(1, 36500));

  BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "Native load generator: throughput and latency");
  bench_cmd->add_option("--host", bench.host)->capture_default_str();
  bench_cmd->add_option("--native-port", bench.native_port)->capture_default_str();
  bench_cmd->add_option("--rate", bench.rate,
                        "Open loop: ops/s in total, latency counted from when each op was due")
      ->check(CLI::Range(0.0, 1e8));
  bench_cmd->add_option("--native-ports", bench.native_ports,
                        "Spread connections over these ports (e.g. every node of a cluster)")
      ->delimiter(',');
  bench_cmd->add_option("-c,--connections", bench.connections, "Concurrent connections")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  bench_cmd->add_option("-P,--pipeline", bench.pipeline, "Requests in flight per connection")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  bench_cmd->add_option("--seconds", bench.seconds, "How long to run")
      ->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  bench_cmd->add_option("--keys", bench.keys, "Distinct keys")->capture_default_str()->check(CLI::Range(1, 100000000));
  bench_cmd->add_option("--value-bytes", bench.value_bytes, "Value size")
      ->capture_default_str()->check(CLI::Range(0, 1024 * 1024));
  bench_cmd->add_option("--mix", bench.mix, "Op mix, e.g. set | get | incr | set:20,get:80")
      ->capture_default_str();
  bench_cmd->add_option("--user", bench.user, "User to log in as")->envname("MAROON_USER");
  bench_cmd->add_option("--password", bench.password, "Password (alone: names its user)")
      ->envname("MAROON_PASSWORD");
  auto* bench_tls = bench_cmd->add_flag("--tls", bench.tls, "Connect with TLS");
  bench_cmd
      ->add_option("--cacert", bench.cacert,
                   "With --tls: the CA (PEM) the server's certificate must chain to")
      ->needs(bench_tls);
  auto* bench_cert =
      bench_cmd
          ->add_option("--cert", bench.cert, "With --tls: a client certificate (PEM) to present")
          ->needs(bench_tls);
  auto* bench_key =
      bench_cmd->add_option("--key", bench.key, "The key of --cert (PEM)")->needs(bench_tls);
  bench_cert->needs(bench_key);
  bench_key->needs(bench_cert);

  CLI11_PARSE(app, argc, argv);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  dev.apps = &apps;
  node.apps = &apps;
  gateway.apps = &apps;
  if (*dev_cmd) {
    dev.program = argv[0];
    return run_dev(dev);
  }
  if (*kv_cmd) {
    if (verb == "put" && kv_cmd->count("value") == 0) {
      std::fprintf(stderr, "maroon kv put: a VALUE is required\n");
      return 2;
    }
    return run_kv(client, verb, key, value);
  }
  if (*status_cmd) return run_status(status);
  if (*apps_cmd) return run_apps(apps);
  if (*call_cmd) return run_call(call);
  if (*snapshot_create_cmd) return run_snapshot_create(snapshot_create);
  if (*snapshot_list_cmd) return run_snapshot_list(snapshot_list);
  if (*snapshot_download_cmd) return run_snapshot_download(snapshot_download);
  if (*backup_cmd) return run_backup(backup);
  if (*restore_cmd) return run_restore(restore);
  if (*node_cmd) return run_node(node);
  if (*gateway_cmd) return run_gateway(gateway);
  if (*up_cmd) {
    if (up_cmd->count("--nodes")) up.nodes = up_nodes;
    if (up_cmd->count("--gateways")) up.gateways = up_gateways;
    if (up_cmd->count("--base-port")) up.base_port = up_base_port;
    if (up_cmd->count("--tick-ms")) up.tick_ms = up_tick_ms;
    if (up_cmd->count("--lease-ms")) up.lease_ms = up_lease_ms;
    if (up_no_peer_tls) up.peer_tls = false;
    up.program = argv[0];
    return run_cluster_up(up);
  }
  if (*down_cmd) return run_cluster_down(down);
  if (*start_cmd) return run_cluster_start(member_start);
  if (*stop_cmd) return run_cluster_stop(member_stop);
  if (*add_node_cmd) return run_cluster_add_node(add_node);
  if (*remove_node_cmd) return run_cluster_remove_node(remove_node);
  if (*replace_node_cmd) return run_cluster_replace_node(replace_node);
  if (*cert_ca_cmd) return run_cert_ca(cert_ca);
  if (*cert_issue_cmd) {
    if (cert_issue_cmd->count("--node")) cert_issue.node = issue_node;
    if (cert_issue_cmd->count("--gateway")) cert_issue.gateway = issue_gateway;
    return run_cert_issue(cert_issue);
  }
  if (*bench_cmd) return run_bench(bench);
  if (*user_add_cmd) return run_user_add(user_add);
  return 2;
}
