// `maroon cluster up|down`: a local cluster of background processes, one per
// node and gateway, described by DIR/cluster.toml. DIR holds, per process,
// <kind>-<id>.log (stdout and stderr, appended) and <kind>-<id>.pid; the
// nodes' data dirs default to DIR/node-<id>. See docs/cluster.md.
#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/http_get.h"
#include "cli/local_cluster.h"
#include "cluster/config.h"
#include "net/cert_files.h"
#include "server/driver.h"

namespace maroon::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace local {

constexpr auto kKillWait = std::chrono::seconds(5);  // after SIGKILL
constexpr unsigned kPortsPerGateway = 3;

std::vector<Member> members_of(const cluster::ClusterConfig& c, const fs::path& dir) {
  std::vector<Member> out;
  auto add = [&](const char* kind, uint32_t id, const std::string& host, uint16_t http_port) {
    Member m;
    m.kind = kind;
    m.id = id;
    m.host = host;
    m.http_port = http_port;
    m.log = dir / fmt::format("{}-{}.log", kind, id);
    m.pid_file = dir / fmt::format("{}-{}.pid", kind, id);
    out.push_back(std::move(m));
  };
  for (const auto& n : c.nodes) {
    add("node", n.id, n.host, n.http_port);
    out.back().data_dir = n.data_dir;
  }
  for (const auto& g : c.gateways) add("gateway", g.id, g.host, g.http_port);
  return out;
}

std::string errno_text() { return std::strerror(errno); }

std::optional<pid_t> read_pid_file(const fs::path& path) {
  std::ifstream in(path);
  long long pid = 0;
  if (!(in >> pid) || pid <= 1 || pid > std::numeric_limits<pid_t>::max()) return std::nullopt;
  return static_cast<pid_t>(pid);
}

// Crash-safe: write a temporary file, fsync it, rename it over, fsync the directory.
Status write_file_atomically(const fs::path& path, const std::string& contents) {
  const fs::path tmp = path.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error(fmt::format("{}: {}", tmp.string(), errno_text()));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = io_error(fmt::format("{}: {}", tmp.string(), errno_text()));
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    Status s = io_error(fmt::format("{}: fsync: {}", tmp.string(), errno_text()));
    ::close(fd);
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return io_error(fmt::format("{}: rename: {}", path.string(), errno_text()));
  }
  int dir_fd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return io_error(fmt::format("{}: {}", path.parent_path().string(), errno_text()));
  int rc = ::fsync(dir_fd);
  ::close(dir_fd);
  if (rc != 0)
    return io_error(fmt::format("{}: fsync: {}", path.parent_path().string(), errno_text()));
  return Status::ok();
}

// Whether the process exists and has not exited. Reaps it first if it is our
// child, so an exited child does not linger as a zombie that kill() still finds.
bool is_alive(pid_t pid) {
  ::waitpid(pid, nullptr, WNOHANG);
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return false;
  // "pid (comm) state ...": comm may hold spaces and parentheses.
  size_t close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

// Whether the pid is (still) one of ours: `PROGRAM node|gateway --config
// ...`, so that a pid the kernel reused for something else is never
// signalled. PROGRAM is `maroon` or a program with apps of its own
// (docs/apps.md), whose name may be anything.
bool is_maroon_member(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  std::stringstream ss(cmdline);
  for (std::string arg; std::getline(ss, arg, '\0');) argv.push_back(arg);
  if (argv.size() < 4 || (argv[1] != "node" && argv[1] != "gateway")) return false;
  return std::find(argv.begin() + 2, argv.end() - 1, "--config") != argv.end() - 1;
}

// The last lines of the log written since `start`, indented.
std::string log_tail(const fs::path& path, off_t start, size_t lines_max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("    (cannot read {})\n", path.string());
  constexpr std::streamoff kTailBytesMax = 64 * 1024;
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  in.seekg(std::max<std::streamoff>(start, size - kTailBytesMax));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  size_t first = lines.size() > lines_max ? lines.size() - lines_max : 0;
  std::string out;
  for (size_t i = first; i < lines.size(); i++) out += "    " + lines[i] + "\n";
  return out.empty() ? "    (empty)\n" : out;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  }
  return "stopped";
}

struct StopTarget {
  std::string name;
  pid_t pid = 0;
  bool stopped = false;
  bool killed = false;  // needed SIGKILL
};

// SIGTERM to all, up to `timeout` for them to exit, then SIGKILL.
void stop_all(std::vector<StopTarget>& targets, std::chrono::duration<double> timeout) {
  for (StopTarget& t : targets) {
    if (::kill(t.pid, SIGTERM) != 0 && errno == ESRCH) t.stopped = true;
  }
  auto wait_until = [&](Clock::time_point deadline) {
    while (true) {
      bool all = true;
      for (StopTarget& t : targets) {
        if (!t.stopped && !is_alive(t.pid)) t.stopped = true;
        all = all && t.stopped;
      }
      if (all || Clock::now() >= deadline) return;
      std::this_thread::sleep_for(kPollInterval);
    }
  };
  wait_until(Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout));
  bool any_killed = false;
  for (StopTarget& t : targets) {
    if (t.stopped) continue;
    ::kill(t.pid, SIGKILL);
    t.killed = any_killed = true;
  }
  if (any_killed) wait_until(Clock::now() + kKillWait);
}

// Ports nobody listens on now: bound to port 0 together, then released.
Result<std::vector<uint16_t>> pick_free_ports(size_t count) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  Status error;
  for (size_t i = 0; i < count && error.is_ok(); i++) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = io_error(fmt::format("socket: {}", errno_text()));
      break;
    }
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      error = io_error(fmt::format("picking a free port: {}", errno_text()));
      break;
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) ::close(fd);
  if (!error.is_ok()) return error;
  return ports;
}

uint64_t random_cluster_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) {
    id = ((uint64_t{rd()} << 32) | rd()) &
         static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  }
  return id;
}

Result<cluster::ClusterConfig> new_config(const ClusterUpOptions& o, const fs::path& config_path) {
  cluster::ClusterConfig c;
  c.path = config_path.string();
  c.cluster_id = random_cluster_id();
  if (o.tick_ms) c.settings.tick_ms = *o.tick_ms;
  if (o.lease_ms) c.settings.lease_ms = *o.lease_ms;
  if (o.peer_tls.value_or(true)) c.peer_tls_dir = kTlsDir;  // relative to the config file
  const unsigned nodes = o.nodes.value_or(3), gateways = o.gateways.value_or(0);
  const size_t port_count = size_t{nodes} * kPortsPerNode + size_t{gateways} * kPortsPerGateway;
  std::vector<uint16_t> ports;
  if (o.base_port) {
    if (*o.base_port + port_count - 1 > 65535) {
      return invalid_argument(
          fmt::format("--base-port {}: {} ports from it go past 65535", *o.base_port, port_count));
    }
    for (size_t i = 0; i < port_count; i++)
      ports.push_back(static_cast<uint16_t>(*o.base_port + i));
  } else {
    Result<std::vector<uint16_t>> free = pick_free_ports(port_count);
    if (!free.is_ok()) return free.status();
    ports = std::move(free).value();
  }
  size_t next = 0;
  for (uint32_t id = 1; id <= nodes; id++) {
    cluster::NodeEntry n;
    n.id = id;
    n.peer_port = ports[next++];
    n.http_port = ports[next++];
    n.resp_port = ports[next++];
    n.native_port = ports[next++];
    n.data_dir = fmt::format("node-{}", id);  // relative to the config file
    c.nodes.push_back(n);
  }
  for (uint32_t id = 1; id <= gateways; id++) {
    cluster::GatewayEntry g;
    g.id = id;
    g.http_port = ports[next++];
    g.resp_port = ports[next++];
    g.native_port = ports[next++];
    c.gateways.push_back(g);
  }
  if (Status s = cluster::validate_cluster_config(c); !s) return s;
  return c;
}

// An existing config is reused as it is: options meant for a new one must
// agree with it, so that `--nodes 5` never silently starts 3.
Status check_options_match(const ClusterUpOptions& o, const cluster::ClusterConfig& c) {
  auto differs = [&](const char* option, uint64_t given, const char* what, uint64_t existing) {
    return invalid_argument(fmt::format(
        "{} exists and has {} {}, so {} {} does not apply: leave it out to restart that "
        "cluster, or use a new --dir",
        c.path, what, existing, option, given));
  };
  if (o.nodes && *o.nodes != c.nodes.size()) {
    return differs("--nodes", *o.nodes, "nodes:", c.nodes.size());
  }
  if (o.gateways && *o.gateways != c.gateways.size()) {
    return differs("--gateways", *o.gateways, "gateways:", c.gateways.size());
  }
  if (o.base_port && *o.base_port != c.nodes[0].peer_port) {
    return differs("--base-port", *o.base_port, "nodes[0].peer_port =", c.nodes[0].peer_port);
  }
  if (o.tick_ms && *o.tick_ms != c.settings.tick_ms) {
    return differs("--tick-ms", *o.tick_ms, "settings.tick_ms =", c.settings.tick_ms);
  }
  if (o.lease_ms && *o.lease_ms != c.settings.lease_ms) {
    return differs("--lease-ms", *o.lease_ms, "settings.lease_ms =", c.settings.lease_ms);
  }
  if (o.peer_tls && *o.peer_tls != c.peer_tls()) {
    return invalid_argument(fmt::format(
        "{} exists {} [peer_tls], so --no-peer-tls does not apply: leave it out to restart that "
        "cluster, or use a new --dir",
        c.path, c.peer_tls() ? "with" : "without"));
  }
  return Status::ok();
}

// The CA of a new cluster and a certificate for each of its processes, in
// its [peer_tls] dir (0700, files 0600). The CA key stays there too: this is
// a cluster on one machine, whose user holds every key anyway.
Status make_certificates(const cluster::ClusterConfig& c, const fs::path& tls_dir) {
  if (Status s = net::create_ca_files(tls_dir.string(), c.cluster_id, net::ca_days_default); !s)
    return s;
  auto issue = [&](net::PeerKind kind, uint32_t id) -> Status {
    Result<net::PeerIdentity> who = net::issue_cert_files(tls_dir.string(), kind, id,
                                                          tls_dir.string(), net::ca_days_default);
    return who.is_ok() ? Status::ok() : who.status();
  };
  for (const cluster::NodeEntry& n : c.nodes) {
    if (Status s = issue(net::PeerKind::kNode, n.id); !s) return s;
  }
  for (const cluster::GatewayEntry& g : c.gateways) {
    if (Status s = issue(net::PeerKind::kGateway, g.id); !s) return s;
  }
  return Status::ok();
}

// Starts `exe kind --config CONFIG --id ID` in its own session, stdin from
// /dev/null, stdout and stderr appended to the member's log.
Result<pid_t> spawn(const std::string& exe, Member& m, const fs::path& config_path,
                    bool new_cluster, const std::string& bootstrap_from, bool join) {
  int log_fd = ::open(m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return io_error(fmt::format("{}: {}", m.log.string(), errno_text()));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    ::close(log_fd);
    return io_error(fmt::format("/dev/null: {}", errno_text()));
  }
  std::vector<std::string> args = {
      exe, m.kind, "--config", config_path.string(), "--id", std::to_string(m.id)};
  // A new cluster: no node has a directory yet. (A node whose directory is
  // gone while others have theirs lost it, and rejoins: no flag.)
  if (m.kind == "node" && new_cluster) args.push_back("--new-cluster");
  if (m.kind == "node" && join) args.push_back("--join");
  if (m.kind == "node" && !bootstrap_from.empty()) {
    args.push_back("--bootstrap-from");
    args.push_back(bootstrap_from);
  }
  struct stat log_stat {};
  const off_t log_size = ::fstat(log_fd, &log_stat) == 0 ? log_stat.st_size : 0;
  const bool log_empty = log_size == 0;
  m.log_start = log_empty ? 0 : log_size + 1;  // after the blank line that separates starts
  std::string banner =
      fmt::format("{}=== {:%Y-%m-%dT%H:%M:%S} maroon cluster up: {} ===\n", log_empty ? "" : "\n",
                  fmt::localtime(std::time(nullptr)), fmt::join(args, " "));
  if (::write(log_fd, banner.data(), banner.size()) < 0) {
    // Not fatal: the process may still write its own output.
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::setsid();
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv("/proc/self/exe", argv.data());
    static const char kMessage[] = "maroon cluster up: cannot exec /proc/self/exe\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(log_fd);
  ::close(null_fd);
  if (pid < 0) return io_error(fmt::format("fork: {}", std::strerror(fork_errno)));
  return pid;
}

std::string self_exe() {
  std::error_code ec;
  std::string exe = fs::read_symlink("/proc/self/exe", ec).string();
  if (ec) return "maroon";
  constexpr std::string_view kDeleted = " (deleted)";  // the binary was rebuilt meanwhile
  if (exe.ends_with(kDeleted)) exe.resize(exe.size() - kDeleted.size());
  return exe;
}

// Asks the member's /v1/status whether it serves; sets waiting_for if not.
// `tls`: the config's [client_tls] (cluster_http_tls), or null.
// A cluster with [client_auth] users answers only a user's token (MAROON_TOKEN).
void probe(Member& m, boost::asio::ssl::context* tls) {
  const char* token = std::getenv("MAROON_TOKEN");
  Result<HttpResponse> r = http_get(m.host, m.http_port, "/v1/status", kProbeTimeout, tls,
                                    token != nullptr ? token : "");
  if (!r.is_ok()) {
    m.waiting_for = r.status().message();
    return;
  }
  if (r->status == 401) {
    m.waiting_for = "it asks for credentials: set MAROON_TOKEN to a user's password";
    return;
  }
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r->body, ec);
  const boost::json::value* serving = nullptr;
  std::string detail;
  if (!ec && v.is_object()) {
    serving = v.as_object().if_contains("serving");
    if (const auto* d = v.as_object().if_contains("detail");
        d && d->is_string() && !d->get_string().empty()) {
      detail = std::string(d->get_string());
    }
  }
  m.serving = r->status == 200 && serving != nullptr && serving->is_bool() && serving->get_bool();
  m.waiting_for = detail.empty() ? fmt::format("HTTP {}", r->status)
                                 : fmt::format("HTTP {}: {}", r->status, detail);
}

void remove_pid_files(const std::vector<Member>& members) {
  for (const Member& m : members) {
    std::error_code ec;
    fs::remove(m.pid_file, ec);
  }
}

// Stops every started member (they are our children), removes pid files.
void stop_started(std::vector<Member>& members) {
  std::vector<StopTarget> targets;
  for (const Member& m : members) {
    if (m.pid > 0 && is_alive(m.pid)) targets.push_back({m.name(), m.pid});
  }
  if (!targets.empty()) {
    std::printf("stopping the others:");
    for (const StopTarget& t : targets) std::printf(" %s (pid %d)", t.name.c_str(), t.pid);
    std::printf("\n");
    stop_all(targets, std::chrono::seconds(10));
  }
  remove_pid_files(members);
}

void print_started(const cluster::ClusterConfig& c, const std::vector<Member>& members,
                   const fs::path& dir, const std::string& program) {
  std::printf("maroon cluster %llu is serving: %zu nodes (tolerates %zu crashed), %zu gateways\n",
              static_cast<unsigned long long>(c.cluster_id), c.nodes.size(), c.f(),
              c.gateways.size());
  std::vector<std::vector<std::string>> rows = {
      {"kind", "id", "pid", "peer", "http", "resp", "native", "data dir", "log"}};
  for (const Member& m : members) {
    if (m.kind == "node") {
      const cluster::NodeEntry& n = *c.node(m.id);
      rows.push_back({m.kind, std::to_string(m.id), std::to_string(m.pid),
                      std::to_string(n.peer_port), std::to_string(n.http_port),
                      std::to_string(n.resp_port), std::to_string(n.native_port), n.data_dir,
                      m.log.string()});
    } else {
      const cluster::GatewayEntry& g = *c.gateway(m.id);
      rows.push_back({m.kind, std::to_string(m.id), std::to_string(m.pid), "-",
                      std::to_string(g.http_port), std::to_string(g.resp_port),
                      std::to_string(g.native_port), "-", m.log.string()});
    }
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); i++) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line = "  ";
    for (size_t i = 0; i < row.size(); i++) {
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}  ", row[i], widths[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  const cluster::NodeEntry& n = c.nodes[0];
  if (c.client_tls_on()) {
    // CA.crt: whichever CA signed [client_tls] cert (curl also takes the cert itself).
    std::printf(
        "client ports speak TLS ([client_tls]); try:\n"
        "  redis-cli -p %u --tls --cacert CA.crt set greeting hello\n"
        "  curl -s --cacert %s https://%s:%u/v1/kv/greeting\n"
        "  %s status --config %s\n"
        "  %s cluster down --dir %s\n",
        n.resp_port, c.client_tls.cert.c_str(), n.host.c_str(), n.http_port, program.c_str(),
        c.path.c_str(), program.c_str(), dir.c_str());
    return;
  }
  std::printf(
      "try:\n"
      "  redis-cli -p %u set greeting hello\n"
      "  curl -s http://%s:%u/v1/kv/greeting\n"
      "  curl -s http://%s:%u/v1/status\n"
      "  %s status --config %s\n"
      "  %s cluster down --dir %s\n",
      n.resp_port, n.host.c_str(), n.http_port, n.host.c_str(), n.http_port, program.c_str(),
      c.path.c_str(), program.c_str(), dir.c_str());
}

}  // namespace local

using namespace local;

// No node has a data directory yet: the cluster's first start.
bool is_new_cluster(const std::vector<Member>& members) {
  std::error_code ec;
  for (const Member& m : members) {
    if (m.kind == "node" && (m.data_dir.empty() || fs::exists(m.data_dir, ec))) return false;
  }
  return true;
}

// Waits until every member serves (true), or one exits or the timeout
// passes (false, after saying why with the end of its log).
bool wait_serving(std::vector<Member>& members, boost::asio::ssl::context* http_tls,
                  double timeout_seconds, const char* what) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(timeout_seconds));
  auto next_progress = start + std::chrono::seconds(1);
  while (true) {
    // Any member that exited fails the whole start; report every one that did.
    std::vector<std::pair<const Member*, int>> exited;
    for (Member& m : members) {
      int status = 0;
      if (::waitpid(m.pid, &status, WNOHANG) == m.pid) exited.emplace_back(&m, status);
    }
    if (!exited.empty()) {
      for (const auto& [m, status] : exited) {
        std::fprintf(stderr, "maroon cluster %s: %s (pid %d) %s; the end of %s:\n%s",
                     what, m->name().c_str(), m->pid, describe_exit(status).c_str(), m->log.c_str(),
                     log_tail(m->log, m->log_start, kLogTailLines).c_str());
      }
      return false;
    }
    bool all_serving = true;
    for (Member& m : members) {
      if (!m.serving) probe(m, http_tls);
      all_serving = all_serving && m.serving;
    }
    if (all_serving) return true;
    const auto now = Clock::now();
    if (now >= deadline) {
      std::fprintf(stderr, "maroon cluster %s: not serving after %.0f s:\n", what, timeout_seconds);
      for (const Member& m : members) {
        if (m.serving) continue;
        std::fprintf(stderr, "  %s: %s; the end of %s:\n%s", m.name().c_str(),
                     m.waiting_for.c_str(), m.log.c_str(),
                     log_tail(m.log, m.log_start, kLogTailLines).c_str());
      }
      return false;
    }
    if (now >= next_progress) {
      std::string waiting;
      for (const Member& m : members) {
        if (!m.serving)
          waiting += fmt::format("{}{} ({})", waiting.empty() ? "" : ", ", m.name(), m.waiting_for);
      }
      std::printf("waiting %.0f s: not serving yet: %s\n",
                  std::chrono::duration<double>(now - start).count(), waiting.c_str());
      std::fflush(stdout);
      next_progress += std::chrono::seconds(1);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

int run_cluster_up(const ClusterUpOptions& o) {
  const fs::path dir = fs::absolute(o.dir).lexically_normal();
  const fs::path config_path = dir / kConfigFile;
  auto fail = [](const std::string& message) {
    std::fprintf(stderr, "maroon cluster up: %s\n", message.c_str());
    return 1;
  };

  std::error_code ec;
  if (!fs::exists(config_path, ec)) {
    Result<cluster::ClusterConfig> fresh = new_config(o, config_path);
    if (!fresh.is_ok()) return fail(fresh.status().message());
    const bool made_dir = !fs::exists(dir, ec);
    fs::create_directories(dir, ec);
    if (ec) return fail(fmt::format("{}: {}", dir.string(), ec.message()));
    // Data, keys and logs inside: nobody else's business.
    if (made_dir) fs::permissions(dir, fs::perms::owner_all, ec);
    if (fresh->peer_tls()) {
      const fs::path tls_dir = dir / kTlsDir;
      if (fs::exists(tls_dir, ec)) {
        return fail(fmt::format("{} exists without {}: move it away, or use a new --dir",
                                tls_dir.string(), config_path.string()));
      }
      if (Status s = make_certificates(*fresh, tls_dir); !s) {
        fs::remove_all(tls_dir, ec);
        return fail(fmt::format("making the certificates in {}: {}", tls_dir.string(), s.message()));
      }
    }
    if (Status s = write_file_atomically(config_path, cluster::format_cluster_config(*fresh)); !s) {
      return fail(s.message());
    }
    std::printf("wrote %s: cluster %llu, %zu nodes, %zu gateways, peer links %s\n",
                config_path.c_str(), static_cast<unsigned long long>(fresh->cluster_id),
                fresh->nodes.size(), fresh->gateways.size(),
                fresh->peer_tls() ? fmt::format("TLS (certificates in {})",
                                                (dir / kTlsDir).string()).c_str()
                                  : "plaintext");
  } else {
    std::printf("reusing %s\n", config_path.c_str());
  }
  Result<cluster::ClusterConfig> config = cluster::load_cluster_config(config_path.string());
  if (!config.is_ok()) return fail(config.status().message());
  if (Status s = check_options_match(o, *config); !s) return fail(s.message());
  Result<std::shared_ptr<boost::asio::ssl::context>> http_tls = cluster_http_tls(*config);
  if (!http_tls.is_ok()) return fail(http_tls.status().message());

  std::vector<Member> members = members_of(*config, dir);
  for (const Member& m : members) {
    std::optional<pid_t> pid = read_pid_file(m.pid_file);
    if (pid && is_alive(*pid) && is_maroon_member(*pid)) {
      return fail(fmt::format(
          "{} is still running (pid {}, {}); stop the cluster first: {} cluster down --dir {}",
          m.name(), *pid, m.pid_file.string(), o.program, dir.string()));
    }
  }
  remove_pid_files(members);  // stale ones

  const std::string exe = self_exe();
  const bool new_cluster = is_new_cluster(members);
  for (Member& m : members) {
    Result<pid_t> pid = spawn(exe, m, config_path, new_cluster, {}, false);
    if (!pid.is_ok()) {
      std::fprintf(stderr, "maroon cluster up: cannot start %s: %s\n", m.name().c_str(),
                   pid.status().message().c_str());
      stop_started(members);
      return 1;
    }
    m.pid = *pid;
    if (Status s = write_file_atomically(m.pid_file, fmt::format("{}\n", m.pid)); !s) {
      std::fprintf(stderr, "maroon cluster up: %s\n", s.message().c_str());
      stop_started(members);
      return 1;
    }
    std::printf("started %s (pid %d), log %s\n", m.name().c_str(), m.pid, m.log.c_str());
  }

  if (!wait_serving(members, http_tls->get(), o.timeout_seconds, "up")) {
    stop_started(members);
    return 1;
  }
  print_started(*config, members, dir, o.program);
  return 0;
}

int run_cluster_down(const ClusterDownOptions& o) {
  const fs::path dir = fs::absolute(o.dir).lexically_normal();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    std::fprintf(stderr, "maroon cluster down: %s: no such directory\n", dir.c_str());
    return 1;
  }
  static const std::regex kPidFile(R"((node|gateway)-([0-9]+)\.pid)");
  std::vector<fs::path> pid_files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (std::regex_match(entry.path().filename().string(), kPidFile))
      pid_files.push_back(entry.path());
  }
  if (ec) {
    std::fprintf(stderr, "maroon cluster down: %s: %s\n", dir.c_str(), ec.message().c_str());
    return 1;
  }
  std::sort(pid_files.begin(), pid_files.end());

  std::vector<StopTarget> targets;
  std::vector<fs::path> target_files;  // beside targets
  for (const fs::path& file : pid_files) {
    std::string name = file.stem().string();
    name[name.find('-')] = ' ';  // "node-1" -> "node 1"
    std::optional<pid_t> pid = read_pid_file(file);
    if (!pid) {
      std::printf("%s: %s holds no pid; removed\n", name.c_str(), file.c_str());
    } else if (!is_alive(*pid)) {
      std::printf("%s (pid %d) was not running\n", name.c_str(), *pid);
    } else if (!is_maroon_member(*pid)) {
      std::printf("%s: pid %d is no longer a maroon process; left alone\n", name.c_str(), *pid);
    } else {
      targets.push_back({name, *pid});
      target_files.push_back(file);
      continue;
    }
    fs::remove(file, ec);
  }
  stop_all(targets, std::chrono::duration<double>(o.timeout_seconds));
  bool all_stopped = true;
  for (size_t i = 0; i < targets.size(); i++) {
    const StopTarget& t = targets[i];
    if (!t.stopped) {
      all_stopped = false;
      std::printf("%s (pid %d) did not stop even after SIGKILL; %s is kept\n", t.name.c_str(),
                  t.pid, target_files[i].c_str());
      continue;
    }
    fs::remove(target_files[i], ec);
    if (t.killed) {
      std::printf("killed %s (pid %d): it did not stop within %.0f s of SIGTERM\n", t.name.c_str(),
                  t.pid, o.timeout_seconds);
    } else {
      std::printf("stopped %s (pid %d)\n", t.name.c_str(), t.pid);
    }
  }
  if (targets.empty()) std::printf("no running processes in %s\n", dir.c_str());
  return all_stopped ? 0 : 1;
}

// The member `kind id` of the cluster in DIR, its config and the config's path.
Result<Member> find_member(const fs::path& dir, const std::string& kind, uint32_t id,
                           cluster::ClusterConfig& config) {
  Result<cluster::ClusterConfig> loaded = cluster::load_cluster_config((dir / kConfigFile).string());
  if (!loaded.is_ok()) return loaded.status();
  config = std::move(loaded).value();
  for (Member& m : members_of(config, dir)) {
    if (m.kind == kind && m.id == id) return m;
  }
  return invalid_argument(fmt::format("{} has no {} {}", (dir / kConfigFile).string(), kind, id));
}

int run_cluster_start(const ClusterMemberOptions& o) {
  const fs::path dir = fs::absolute(o.dir).lexically_normal();
  auto fail = [](const std::string& message) {
    std::fprintf(stderr, "maroon cluster start: %s\n", message.c_str());
    return 1;
  };
  cluster::ClusterConfig config;
  fs::path config_path = dir / kConfigFile;
  Result<Member> found = find_member(dir, o.gateway ? "gateway" : "node", o.id, config);
  // A node a membership change removed, that has not retired yet: it starts
  // from the config as it was, hands over and exits (docs/membership.md).
  const fs::path leaving = dir / fmt::format("{}.leaving-{}", kConfigFile, o.id);
  std::error_code leaving_ec;
  if (!found.is_ok() && !o.gateway && fs::exists(leaving, leaving_ec)) {
    Result<cluster::ClusterConfig> old = cluster::load_cluster_config(leaving.string());
    if (!old.is_ok()) return fail(old.status().message());
    const cluster::NodeEntry* n = old->node(o.id);
    if (n == nullptr) return fail(fmt::format("{} has no node {}", leaving.string(), o.id));
    if (fs::exists(fs::path(n->data_dir) / server::Driver::kRemovedMarker, leaving_ec)) {
      fs::remove(leaving, leaving_ec);
      return fail(fmt::format("node {} was removed from the cluster and retired; its directory {} "
                              "is no longer used",
                              o.id, n->data_dir));
    }
    std::printf("node %u was removed from the group and has not retired: it starts from %s to "
                "hand over, then exits\n",
                o.id, leaving.c_str());
    config = std::move(old).value();
    config_path = leaving;
    for (Member& m : members_of(config, dir)) {
      if (m.kind == "node" && m.id == o.id) found = m;
    }
  }
  if (!found.is_ok()) return fail(found.status().message());
  std::vector<Member> members{std::move(found).value()};
  Member& m = members.front();
  std::optional<pid_t> pid = read_pid_file(m.pid_file);
  if (pid && is_alive(*pid) && is_maroon_member(*pid)) {
    return fail(fmt::format("{} is running already (pid {})", m.name(), *pid));
  }
  Result<std::shared_ptr<boost::asio::ssl::context>> http_tls = cluster_http_tls(config);
  if (!http_tls.is_ok()) return fail(http_tls.status().message());
  std::error_code ec;
  if (m.kind == "node" && !fs::exists(m.data_dir, ec)) {
    std::printf("%s has no data directory (%s): it rejoins the cluster, taking its state from "
                "%s\n",
                m.name().c_str(), m.data_dir.c_str(),
                o.bootstrap_from.empty() ? "its peers"
                                         : ("a snapshot in " + o.bootstrap_from + ", then its peers").c_str());
  }
  // One node of an existing cluster: never a new cluster's first start.
  Result<pid_t> started =
      spawn(self_exe(), m, config_path, /*new_cluster=*/false, o.bootstrap_from, false);
  if (!started.is_ok()) return fail(started.status().message());
  m.pid = *started;
  if (Status s = write_file_atomically(m.pid_file, fmt::format("{}\n", m.pid)); !s) {
    stop_started(members);
    return fail(s.message());
  }
  std::printf("started %s (pid %d), log %s\n", m.name().c_str(), m.pid, m.log.c_str());
  if (config_path == leaving) {
    // It serves nobody's writes: wait for it to hand over and exit.
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(o.timeout_seconds));
    int st = 0;
    while (Clock::now() < deadline) {
      if (::waitpid(m.pid, &st, WNOHANG) == m.pid) {
        fs::remove(m.pid_file, ec);
        if (fs::exists(m.data_dir / server::Driver::kRemovedMarker, ec)) {
          fs::remove(leaving, ec);
          std::printf("%s handed over and retired\n", m.name().c_str());
          return 0;
        }
        return fail(fmt::format("{} {}; the end of {}:\n{}", m.name(), describe_exit(st),
                                m.log.string(), log_tail(m.log, m.log_start, kLogTailLines)));
      }
      std::this_thread::sleep_for(kPollInterval);
    }
    std::printf("%s runs and hands over; it exits once the new group holds what it held\n",
                m.name().c_str());
    return 0;
  }
  if (!wait_serving(members, http_tls->get(), o.timeout_seconds, "start")) {
    stop_started(members);
    return 1;
  }
  std::printf("%s serves\n", m.name().c_str());
  return 0;
}

int run_cluster_stop(const ClusterMemberOptions& o) {
  const fs::path dir = fs::absolute(o.dir).lexically_normal();
  cluster::ClusterConfig config;
  Result<Member> found = find_member(dir, o.gateway ? "gateway" : "node", o.id, config);
  if (!found.is_ok()) {
    std::fprintf(stderr, "maroon cluster stop: %s\n", found.status().message().c_str());
    return 1;
  }
  const Member& m = *found;
  std::error_code ec;
  std::optional<pid_t> pid = read_pid_file(m.pid_file);
  if (!pid || !is_alive(*pid)) {
    std::printf("%s was not running\n", m.name().c_str());
    fs::remove(m.pid_file, ec);
    return 0;
  }
  if (!is_maroon_member(*pid)) {
    std::printf("%s: pid %d is no longer a maroon process; left alone\n", m.name().c_str(), *pid);
    fs::remove(m.pid_file, ec);
    return 0;
  }
  std::vector<StopTarget> targets{{m.name(), *pid}};
  stop_all(targets, std::chrono::duration<double>(o.timeout_seconds));
  if (!targets.front().stopped) {
    std::printf("%s (pid %d) did not stop even after SIGKILL\n", m.name().c_str(), *pid);
    return 1;
  }
  fs::remove(m.pid_file, ec);
  std::printf("%s %s (pid %d)\n", targets.front().killed ? "killed" : "stopped", m.name().c_str(),
              *pid);
  return 0;
}

}  // namespace maroon::cli
