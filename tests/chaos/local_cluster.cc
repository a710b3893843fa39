#include "local_cluster.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "cluster/config.h"
#include "maroon/assert.h"
#include "net/cert_files.h"

namespace maroon::chaos {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kReapPollInterval = std::chrono::milliseconds(20);
constexpr auto kKillReapTimeout = std::chrono::seconds(10);
constexpr unsigned kPortsPerNode = 4;
// In a namespace of its own every node has the same ports on its own address.
constexpr uint16_t kNetnsPeerPort = 7000;
constexpr uint16_t kNetnsHttpPort = 7001;
constexpr uint16_t kNetnsRespPort = 7002;
constexpr uint16_t kNetnsNativePort = 7003;

std::string errno_text() { return std::strerror(errno); }

// Ports nobody listens on now: bound to port 0 together, then released.
Result<std::vector<uint16_t>> pick_free_ports(size_t count) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  Status error;
  for (size_t i = 0; i < count; i++) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = io_error(fmt::format("socket: {}", errno_text()));
      break;
    }
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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

Status write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return io_error(fmt::format("cannot write {}", path.string()));
  return Status::ok();
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  }
  return "changed state";
}

}  // namespace

Result<LocalCluster> LocalCluster::create(const ClusterSpec& spec) {
  MAROON_ASSERT(spec.nodes >= 1 && spec.nodes <= cluster::nodes_max);
  std::vector<uint16_t> ports;
  LocalCluster lc;
  if (spec.netns) {
    std::vector<uint32_t> ids;
    for (uint32_t id = 1; id <= spec.nodes; id++) ids.push_back(id);
    Result<std::unique_ptr<NetLab>> net = NetLab::create(ids);
    if (!net.is_ok()) return net.status();
    lc.net_ = std::move(net).value();
    for (uint32_t id = 1; id <= spec.nodes; id++) {
      ports.insert(ports.end(), {kNetnsPeerPort, kNetnsHttpPort, kNetnsRespPort, kNetnsNativePort});
    }
  } else {
    Result<std::vector<uint16_t>> free = pick_free_ports(size_t{spec.nodes} * kPortsPerNode);
    if (!free.is_ok()) return free.status();
    ports = std::move(free).value();
  }
  lc.spec_ = spec;
  lc.config_path_ = spec.dir / "cluster.toml";
  cluster::ClusterConfig c;
  c.cluster_id = 0x6368616f73ULL + static_cast<uint64_t>(::getpid());  // "chaos" + pid
  c.settings.tick_ms = spec.tick_ms;
  c.settings.lease_ms = spec.lease_ms;
  size_t next = 0;
  for (uint32_t id = 1; id <= spec.nodes; id++) {
    cluster::NodeEntry n;
    n.id = id;
    if (lc.net_) n.host = lc.net_->node(id - 1).address;
    n.peer_port = ports[next++];
    n.http_port = ports[next++];
    n.resp_port = ports[next++];
    n.native_port = ports[next++];
    n.data_dir = fmt::format("node-{}", id);  // relative to the config file
    c.nodes.push_back(n);
    NodeProc p;
    p.id = id;
    p.host = n.host;
    p.peer_port = n.peer_port;
    p.http_port = n.http_port;
    p.native_port = n.native_port;
    p.log = spec.dir / fmt::format("node-{}.log", id);
    p.pid_file = spec.dir / fmt::format("node-{}.pid", id);
    p.data_dir = spec.dir / n.data_dir;
    lc.nodes_.push_back(p);
  }
  if (spec.peer_tls) {
    const fs::path tls = spec.dir / "tls";
    std::error_code ec;
    fs::remove_all(tls, ec);
    if (Status s = net::create_ca_files(tls.string(), c.cluster_id, net::ca_days_default); !s)
      return s;
    for (const cluster::NodeEntry& n : c.nodes) {
      Result<net::PeerIdentity> who = net::issue_cert_files(
          tls.string(), net::PeerKind::kNode, n.id, tls.string(), net::cert_days_default);
      if (!who.is_ok()) return who.status();
    }
    c.peer_tls_dir = "tls";  // relative to the config file
  }
  // The harness's clients speak without credentials; its network is private
  // (namespaces on a bridge of its own).
  c.client_allow_anonymous = true;
  if (Status s = cluster::validate_cluster_config(c); !s) return s;
  if (Status s = write_file(lc.config_path_, cluster::format_cluster_config(c)); !s) return s;
  return lc;
}

fs::path LocalCluster::tls_dir() const { return spec_.peer_tls ? spec_.dir / "tls" : fs::path(); }

LocalCluster::~LocalCluster() { kill_all_now(); }

std::vector<std::string> LocalCluster::remove_network() {
  kill_all_now();
  if (!net_) return {};
  return net_->remove();
}

void LocalCluster::kill_all_now() {
  for (size_t i = 0; i < nodes_.size(); i++) {
    if (nodes_[i].pid != 0) kill(i);
  }
}

Status LocalCluster::start(size_t i, const std::string& why) {
  NodeProc& n = nodes_[i];
  MAROON_ASSERT(n.pid == 0);
  int log_fd = ::open(n.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return io_error(fmt::format("{}: {}", n.log.string(), errno_text()));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    ::close(log_fd);
    return io_error(fmt::format("/dev/null: {}", errno_text()));
  }
  std::vector<std::string> args = {spec_.maroon,          "node", "--config",
                                   config_path_.string(), "--id", std::to_string(n.id)};
  // A new cluster's first start, as `maroon cluster up` does it; a node whose
  // directory was wiped later is started without it and rejoins.
  std::error_code ec;
  if (n.starts == 0 && !fs::exists(n.data_dir, ec)) args.push_back("--new-cluster");
  std::string banner = fmt::format("\n=== {:%Y-%m-%dT%H:%M:%S} maroon-chaos: {}: {} ===\n",
                                   fmt::localtime(std::time(nullptr)), why, fmt::join(args, " "));
  [[maybe_unused]] ssize_t written = ::write(log_fd, banner.data(), banner.size());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int ns_fd = net_ ? net_->node(i).ns_fd : -1;
  const pid_t parent = ::getpid();
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Own process group: a Ctrl-C
    // at the terminal reaches maroon-chaos, which then stops the nodes.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);  // the parent died before prctl
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0) {
      static const char kNsMessage[] = "maroon-chaos: cannot enter the node's network namespace\n";
      [[maybe_unused]] ssize_t m = ::write(STDERR_FILENO, kNsMessage, sizeof kNsMessage - 1);
      ::_exit(125);
    }
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    static const char kMessage[] = "maroon-chaos: cannot exec the maroon binary\n";
    [[maybe_unused]] ssize_t m = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(log_fd);
  ::close(null_fd);
  if (pid < 0) return io_error(fmt::format("fork: {}", std::strerror(fork_errno)));
  n.pid = pid;
  n.stopped = false;
  n.starts++;
  if (Status s = write_file(n.pid_file, fmt::format("{}\n", pid)); !s) return s;
  return Status::ok();
}

void LocalCluster::kill(size_t i) {
  NodeProc& n = nodes_[i];
  if (n.pid == 0) return;
  ::kill(n.pid, SIGKILL);
  // SIGKILL cannot be caught; the wait only lasts until the kernel is done
  // with the process (an fdatasync in progress may hold it briefly).
  const auto deadline = Clock::now() + kKillReapTimeout;
  int status = 0;
  while (::waitpid(n.pid, &status, WNOHANG) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  n.pid = 0;
  n.stopped = false;
  std::error_code ec;
  fs::remove(n.pid_file, ec);
}

void LocalCluster::stop(size_t i) {
  NodeProc& n = nodes_[i];
  MAROON_ASSERT(n.pid != 0 && !n.stopped);
  ::kill(n.pid, SIGSTOP);
  n.stopped = true;
}

void LocalCluster::cont(size_t i) {
  NodeProc& n = nodes_[i];
  if (n.pid == 0 || !n.stopped) return;
  ::kill(n.pid, SIGCONT);
  n.stopped = false;
}

std::vector<std::string> LocalCluster::reap_unexpected() {
  std::vector<std::string> out;
  for (NodeProc& n : nodes_) {
    if (n.pid == 0) continue;
    int status = 0;
    if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
      out.push_back(
          fmt::format("node {} (pid {}) {} on its own", n.id, n.pid, describe_exit(status)));
      n.pid = 0;
      n.stopped = false;
    }
  }
  return out;
}

std::vector<std::string> LocalCluster::shutdown(std::chrono::milliseconds timeout) {
  std::vector<std::string> problems;
  for (NodeProc& n : nodes_) {
    if (n.pid == 0) continue;
    if (n.stopped) ::kill(n.pid, SIGCONT);
    n.stopped = false;
    ::kill(n.pid, SIGTERM);
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    bool all = true;
    for (NodeProc& n : nodes_) {
      if (n.pid == 0) continue;
      int status = 0;
      if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          problems.push_back(
              fmt::format("node {} (pid {}) {} after SIGTERM", n.id, n.pid, describe_exit(status)));
        }
        n.pid = 0;
        std::error_code ec;
        fs::remove(n.pid_file, ec);
      } else {
        all = false;
      }
    }
    if (all) break;
    if (Clock::now() >= deadline) {
      for (size_t i = 0; i < nodes_.size(); i++) {
        if (nodes_[i].pid == 0) continue;
        problems.push_back(fmt::format("node {} (pid {}) did not exit within {} ms of SIGTERM",
                                       nodes_[i].id, nodes_[i].pid, timeout.count()));
        kill(i);
      }
      break;
    }
    std::this_thread::sleep_for(kReapPollInterval);
  }
  return problems;
}

Result<NodeStatus> LocalCluster::status(size_t i, std::chrono::milliseconds timeout) const {
  return get_node_status(nodes_[i].host, nodes_[i].http_port, timeout);
}

std::string LocalCluster::log_tail(size_t i, size_t lines_max) const {
  std::ifstream in(nodes_[i].log, std::ios::binary);
  if (!in) return fmt::format("    (cannot read {})\n", nodes_[i].log.string());
  constexpr std::streamoff kTailBytesMax = 64 * 1024;
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  in.seekg(std::max<std::streamoff>(0, size - kTailBytesMax));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  size_t first = lines.size() > lines_max ? lines.size() - lines_max : 0;
  std::string out;
  for (size_t k = first; k < lines.size(); k++) out += "    " + lines[k] + "\n";
  return out.empty() ? "    (empty)\n" : out;
}

Status LocalCluster::edit_config(const std::function<void(cluster::ClusterConfig&)>& change) {
  Result<cluster::ClusterConfig> config = cluster::load_cluster_config(config_path_.string());
  if (!config.is_ok()) return config.status();
  change(*config);
  config->path.clear();
  return write_file(config_path_, cluster::format_cluster_config(*config));
}

Result<LocalCluster> fresh_cluster(const std::string& maroon, const std::filesystem::path& dir,
                                   uint32_t nodes, bool peer_tls) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error(fmt::format("{}: {}", dir.string(), ec.message()));
  ClusterSpec spec;
  spec.maroon = maroon;
  spec.dir = dir;
  spec.nodes = nodes;
  spec.peer_tls = peer_tls;
  return LocalCluster::create(spec);
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool serves_as_member(const LocalCluster& cl, size_t i) {
  auto s = cl.status(i, std::chrono::milliseconds(2000));
  return s.is_ok() && s->serving && (s->role == "primary" || s->role == "backup");
}

bool wait_same_state(const LocalCluster& cl, size_t i, size_t j, std::chrono::milliseconds timeout,
                     NodeStatus& a, NodeStatus& b) {
  return wait_until(
      [&] {
        auto si = cl.status(i, std::chrono::milliseconds(2000));
        auto sj = cl.status(j, std::chrono::milliseconds(2000));
        if (!si.is_ok() || !sj.is_ok()) return false;
        a = *si;
        b = *sj;
        return a.applied_epoch == b.applied_epoch && a.state_hash == b.state_hash &&
               !a.state_hash.empty();
      },
      timeout);
}

Status LocalCluster::repick_ports() {
  if (net_) return unavailable("network namespaces have fixed ports");
  for (const NodeProc& n : nodes_) {
    if (n.pid != 0) return unavailable("a node runs");
  }
  Result<std::vector<uint16_t>> free = pick_free_ports(nodes_.size() * kPortsPerNode);
  if (!free.is_ok()) return free.status();
  size_t next = 0;
  Status s = edit_config([&](cluster::ClusterConfig& c) {
    for (cluster::NodeEntry& n : c.nodes) {
      n.peer_port = (*free)[next++];
      n.http_port = (*free)[next++];
      n.resp_port = (*free)[next++];
      n.native_port = (*free)[next++];
    }
  });
  if (!s) return s;
  auto loaded = cluster::load_cluster_config(config_path_.string());
  if (!loaded.is_ok()) return loaded.status();
  for (NodeProc& p : nodes_) {
    const cluster::NodeEntry* n = loaded->node(p.id);
    MAROON_ASSERT(n != nullptr);
    p.peer_port = n->peer_port;
    p.http_port = n->http_port;
    p.native_port = n->native_port;
    p.starts = 0;
    std::error_code ec;
    fs::remove_all(p.data_dir, ec);
  }
  return Status::ok();
}

Status start_all_serving(LocalCluster& cl, const std::string& why,
                         std::chrono::milliseconds timeout) {
  for (int attempt = 1;; attempt++) {
    for (size_t i = 0; i < cl.size(); i++) {
      if (Status s = cl.start(i, why); !s) return s;
    }
    // A node that exits because its port was taken fails the start at once.
    bool port_taken = false;
    std::string exited;
    auto serving_or_exited = [&](size_t i) {
      return wait_until(
          [&] {
            for (const std::string& line : cl.reap_unexpected()) exited += line + "; ";
            if (!exited.empty()) return true;
            return serves_as_member(cl, i);
          },
          timeout);
    };
    Status result = Status::ok();
    for (size_t i = 0; i < cl.size() && result.is_ok(); i++) {
      if (!serving_or_exited(i)) {
        result = unavailable(fmt::format("node {} never served", cl.node(i).id));
      } else if (!exited.empty()) {
        for (size_t j = 0; j < cl.size(); j++) {
          if (cl.log_tail(j, 5).find("Address already in use") != std::string::npos) {
            port_taken = true;
          }
        }
        result = unavailable("a node exited while starting: " + exited);
      }
    }
    if (result.is_ok() || !port_taken || attempt == 3 || cl.net() != nullptr) return result;
    std::fprintf(stderr, "%s: a port was taken by another process (%s); starting again on "
                         "fresh ports\n",
                 why.c_str(), exited.c_str());
    cl.shutdown(std::chrono::milliseconds(10000));
    if (Status s = cl.repick_ports(); !s) return s;
  }
}

int fail_test(LocalCluster& cl, const char* test, const std::string& why) {
  std::fprintf(stderr, "%s: FAILED: %s\n", test, why.c_str());
  for (size_t i = 0; i < cl.size(); i++) {
    std::fprintf(stderr, "node %u log:\n%s", cl.node(i).id, cl.log_tail(i, 20).c_str());
  }
  cl.shutdown(std::chrono::milliseconds(10000));
  return 1;
}

std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool parse_test_args(int argc, char** argv, const char* usage, std::string& maroon,
                     std::string& dir) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--maroon") {
      maroon = argv[i + 1];
    } else if (flag == "--dir") {
      dir = argv[i + 1];
    } else {
      std::fprintf(stderr, "unknown option %s\n%s\n", argv[i], usage);
      return false;
    }
  }
  if (maroon.empty() || dir.empty()) {
    std::fprintf(stderr, "%s\n", usage);
    return false;
  }
  return true;
}

}  // namespace maroon::chaos
