// The node processes of one chaos run, each a child of maroon-chaos, so that
// every signal goes to a pid we started and still own (never by name).
//
// The layout is the one `maroon cluster up` makes (DIR/cluster.toml,
// DIR/node-<id>/, DIR/node-<id>.log, DIR/node-<id>.pid), so `maroon status
// --config DIR/cluster.toml` and `maroon cluster down --dir DIR` work on a
// run's directory too. Children get PR_SET_PDEATHSIG(SIGKILL): if
// maroon-chaos itself dies (ctest timeout, SIGKILL), its nodes die with it.
// Hence: start(), kill() and friends must be called from the main thread,
// since the death signal follows the thread that forked.
//
// With ClusterSpec::netns each node runs in its own network namespace: the
// forked child enters it with setns(2) before it execs maroon, so the pid we
// hold is the maroon process itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cluster/config.h"
#include "maroon/status.h"
#include "netns.h"
#include "node_status.h"

namespace maroon::chaos {

struct NodeProc {
  uint32_t id = 0;
  std::string host;
  uint16_t peer_port = 0;
  uint16_t http_port = 0;
  uint16_t native_port = 0;
  std::filesystem::path log;
  std::filesystem::path pid_file;
  std::filesystem::path data_dir;
  pid_t pid = 0;         // 0: not running
  bool stopped = false;  // SIGSTOPped by us
  int starts = 0;
};

struct ClusterSpec {
  std::string maroon;  // path of the maroon binary
  std::filesystem::path dir;
  uint32_t nodes = 3;
  uint64_t tick_ms = 10;
  uint64_t lease_ms = 5000;
  // Each node in its own network namespace (netns.h), with the namespace's
  // address as its host and fixed ports; else loopback and free ports.
  bool netns = false;
  // TLS on the peer links, as `maroon cluster up` makes it: a CA and each
  // node's certificate in DIR/tls (made anew), [peer_tls] dir = "tls".
  bool peer_tls = true;
};

class LocalCluster {
 public:
  // Writes DIR/cluster.toml (fresh free loopback ports, or with spec.netns
  // the network namespaces, made here); starts nothing. With spec.netns,
  // kUnavailable means network namespaces cannot be made here.
  static Result<LocalCluster> create(const ClusterSpec& spec);

  LocalCluster(LocalCluster&&) = default;
  LocalCluster& operator=(LocalCluster&&) = default;
  ~LocalCluster();  // SIGKILLs whatever still runs, then removes the network

  size_t size() const { return nodes_.size(); }
  size_t f() const { return (nodes_.size() - 1) / 2; }
  const NodeProc& node(size_t i) const { return nodes_[i]; }
  const std::filesystem::path& config_path() const { return config_path_; }
  // DIR/tls when spec.peer_tls, else empty: the CA (ca.crt, ca.key) and the
  // nodes' certificates.
  std::filesystem::path tls_dir() const;
  // The namespaces' network; null unless spec.netns.
  NetLab* net() const { return net_.get(); }
  // Removes the namespaces' network (after the nodes are stopped). A line per
  // thing left behind. Idempotent; the destructor does it too.
  std::vector<std::string> remove_network();

  // Loads DIR/cluster.toml, lets `change` edit it, and writes it back
  // (before the nodes start: they read it once).
  Status edit_config(const std::function<void(cluster::ClusterConfig&)>& change);

  // Spawns `maroon node --config DIR/cluster.toml --id ID`, output appended to
  // its log after a banner line naming `why`.
  Status start(size_t i, const std::string& why);
  // SIGKILL and reap (blocks until the kernel has reaped it).
  void kill(size_t i);
  void stop(size_t i);  // SIGSTOP
  void cont(size_t i);  // SIGCONT
  bool running(size_t i) const { return nodes_[i].pid != 0; }

  // For a new cluster whose start failed because a port was taken between
  // picking and binding: with every node stopped, picks fresh free loopback
  // ports, rewrites cluster.toml and removes the nodes' data directories,
  // so the next start is a new cluster's again. Not with network namespaces
  // (their ports are fixed).
  Status repick_ports();

  // Reaps children that exited without being killed by us; for each, a line
  // saying how it ended. Their pid becomes 0.
  std::vector<std::string> reap_unexpected();

  // SIGCONT, then SIGTERM to all, up to `timeout` for them to exit, then
  // SIGKILL. Returns a line per node that did not exit with status 0.
  std::vector<std::string> shutdown(std::chrono::milliseconds timeout);

  Result<NodeStatus> status(size_t i, std::chrono::milliseconds timeout) const;

  // The last lines of a node's log, indented, for failure reports.
  std::string log_tail(size_t i, size_t lines) const;

 private:
  LocalCluster() = default;
  void kill_all_now();

  ClusterSpec spec_;
  std::filesystem::path config_path_;
  std::vector<NodeProc> nodes_;
  std::unique_ptr<NetLab> net_;
};

// The arguments of a process test: --maroon BINARY --dir DIR, both needed.
// False (after printing `usage`) if they are not there.
bool parse_test_args(int argc, char** argv, const char* usage, std::string& maroon,
                     std::string& dir);

// A cluster of `nodes` loopback nodes in `dir`, emptied first (the process
// tests' start); not started.
Result<LocalCluster> fresh_cluster(const std::string& maroon, const std::filesystem::path& dir,
                                   uint32_t nodes, bool peer_tls = true);

// Probes `cond` every 50 ms (a probe interval, not synchronization) until it
// holds or `timeout` has passed; whether it held.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Whether node i answers its status page as a serving primary or backup.
bool serves_as_member(const LocalCluster& cl, size_t i);

// Waits until nodes i and j report the same applied epoch and state hash;
// their last statuses in a and b either way (for the failure message).
bool wait_same_state(const LocalCluster& cl, size_t i, size_t j, std::chrono::milliseconds timeout,
                     NodeStatus& a, NodeStatus& b);

// Starts every node, then waits for each to serve as a member. A new
// cluster whose node could not bind a port (another process took it after
// the ports were picked) is stopped and started again on fresh ports, up to
// 3 times.
Status start_all_serving(LocalCluster& cl, const std::string& why, std::chrono::milliseconds timeout);

// A process test's failure: prints `why` and the last lines of every node's
// log, shuts the cluster down; returns the exit status 1.
int fail_test(LocalCluster& cl, const char* test, const std::string& why);

std::string read_whole_file(const std::filesystem::path& path);

}  // namespace maroon::chaos
