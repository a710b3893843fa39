#include "netns.h"

#include "fd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace maroon::chaos {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kNsPrefix[] = "mrn";      // namespace mrn<pid>-<id>
constexpr char kBridgePrefix[] = "mrb";  // bridge mrb<pid>
constexpr char kVethPrefix[] = "mrv";    // root end mrv<pid>-<id>
constexpr char kPeerPrefix[] = "mrp";    // namespace end mrp<pid>-<id>
constexpr unsigned kSubnets = 512;       // the /24s of 198.18.0.0/15
constexpr unsigned kRootHost = 254;
constexpr auto kOpenProbeTimeout = milliseconds(1000);
constexpr auto kCutProbeTimeout = milliseconds(200);
constexpr int kOpenProbeTries = 3;

std::string errno_text(int e) { return std::strerror(e); }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

std::string find_ip() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');) {
      if (!d.empty()) dirs.push_back(d);
    }
  }
  for (const char* d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.push_back(d);
  for (const std::string& d : dirs) {
    std::string p = d + "/ip";
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string& ip_binary() {
  static std::string ip = find_ip();
  return ip;
}

// Runs `ip ARGS...`; its stdout and stderr together are the result, or the
// error's message if it exits non-zero. Its own process group (a Ctrl-C at
// the terminal reaches maroon-chaos only, which then cleans up with `ip`)
// and PR_SET_PDEATHSIG, like the nodes.
Result<std::string> run_ip(const std::vector<std::string>& args) {
  const std::string& ip = ip_binary();
  if (ip.empty()) return unavailable("ip (iproute2) not found");
  std::vector<std::string> all = {ip};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string what = fmt::format("ip {}", fmt::join(args, " "));
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return io_error(what + ": pipe: " + errno_text(errno));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    static const char kMessage[] = "cannot exec ip\n";
    [[maybe_unused]] ssize_t m = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(pipe_fds[1]);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    return io_error(what + ": fork: " + errno_text(fork_errno));
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return out;
  if (WIFEXITED(status)) {
    return io_error(fmt::format("{}: exit status {}: {}", what, WEXITSTATUS(status), trim(out)));
  }
  return io_error(fmt::format("{}: killed by signal {}", what, WTERMSIG(status)));
}

// "mrn123-4" with prefix "mrn" -> "123"; empty if the name is not
// <prefix><digits>[-<digits>].
std::string name_pid(const std::string& name, const char* prefix) {
  if (!name.starts_with(prefix)) return "";
  size_t i = std::strlen(prefix);
  size_t start = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') i++;
  if (i == start) return "";
  std::string pid = name.substr(start, i - start);
  if (i == name.size()) return pid;
  if (name[i] != '-' || i + 1 == name.size()) return "";
  for (size_t k = i + 1; k < name.size(); k++) {
    if (name[k] < '0' || name[k] > '9') return "";
  }
  return pid;
}

// Whether the pid in a name may still own it: any live process other than
// this one (this one has made nothing yet when sweeping). Only names whose
// process is gone are clearly stale; a reused pid keeps its leftovers until
// it exits, which harms nothing (the names and subnet of a run differ).
bool owner_alive(const std::string& pid) {
  if (pid == std::to_string(::getpid())) return false;
  errno = 0;
  char* end = nullptr;
  const long p = std::strtol(pid.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || p <= 0) return true;  // not ours to judge
  return ::kill(static_cast<pid_t>(p), 0) == 0 || errno != ESRCH;
}

std::vector<std::string> list_netns() {
  std::vector<std::string> out;
  Result<std::string> r = run_ip({"netns", "list"});
  if (!r.is_ok()) return out;
  std::stringstream ss(*r);
  for (std::string line; std::getline(ss, line);) {
    std::string name = line.substr(0, line.find(' '));
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

std::vector<std::string> list_links() {
  std::vector<std::string> out;
  Result<std::string> r = run_ip({"-o", "link", "show"});
  if (!r.is_ok()) return out;
  std::stringstream ss(*r);
  for (std::string line; std::getline(ss, line);) {
    // "8: mrv123-1@if2: <BROADCAST,...> ..."
    size_t a = line.find(": ");
    if (a == std::string::npos) continue;
    size_t b = line.find(':', a + 2);
    std::string name = line.substr(a + 2, b == std::string::npos ? std::string::npos : b - a - 2);
    name = name.substr(0, name.find('@'));
    out.push_back(name);
  }
  return out;
}

bool is_link_of(const std::string& name, const std::string& pid) {
  for (const char* p : {kBridgePrefix, kVethPrefix, kPeerPrefix}) {
    if (name_pid(name, p) == pid && !pid.empty()) return true;
  }
  return false;
}

// Removes what runs that are gone left behind. Returns a line per removal.
std::vector<std::string> sweep_stale() {
  std::vector<std::string> done;
  std::vector<std::string> links = list_links();
  // veths first (deleting one end deletes the pair), then bridges.
  for (int pass = 0; pass < 2; pass++) {
    for (const std::string& l : links) {
      const bool bridge = !name_pid(l, kBridgePrefix).empty();
      if (bridge != (pass == 1)) continue;
      std::string pid = name_pid(l, kBridgePrefix);
      if (pid.empty()) pid = name_pid(l, kVethPrefix);
      if (pid.empty()) pid = name_pid(l, kPeerPrefix);
      if (pid.empty() || owner_alive(pid)) continue;
      if (run_ip({"link", "del", l}).is_ok()) done.push_back("link " + l);
    }
  }
  for (const std::string& ns : list_netns()) {
    std::string pid = name_pid(ns, kNsPrefix);
    if (pid.empty() || ns.find('-') == std::string::npos || owner_alive(pid)) continue;
    if (run_ip({"netns", "del", ns}).is_ok()) done.push_back("netns " + ns);
  }
  return done;
}

// The /24s of 198.18.0.0/15 that root-namespace addresses are in.
std::set<unsigned> subnets_in_use() {
  std::set<unsigned> used;
  Result<std::string> r = run_ip({"-4", "-o", "addr", "show"});
  if (!r.is_ok()) return used;
  std::stringstream ss(*r);
  for (std::string line; std::getline(ss, line);) {
    size_t at = line.find(" inet ");
    if (at == std::string::npos) continue;
    std::string addr = line.substr(at + 6);
    addr = addr.substr(0, addr.find_first_of("/ "));
    in_addr a{};
    if (::inet_pton(AF_INET, addr.c_str(), &a) != 1) continue;
    uint32_t h = ntohl(a.s_addr);
    if ((h >> 17) == ((198u << 7) | (18u >> 1))) used.insert((h >> 8) & 0x1ff);
  }
  return used;
}

// A socket made inside the namespace `ns_fd` (-1: this thread's): a thread
// enters it, makes the socket, and ends. The socket stays in that namespace.
Result<int> socket_in(int ns_fd, int type) {
  int fd = -1;
  int err = 0;
  std::thread t([&] {
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fd = ::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) err = errno;
  });
  t.join();
  if (fd < 0)
    return io_error(std::string(ns_fd >= 0 ? "setns/socket: " : "socket: ") + errno_text(err));
  return fd;
}

// Writes "0" to net.ipv4.conf.{all,default,DEV}.rp_filter inside a namespace,
// so that one-way partitions stay one-way: with reverse-path filtering, a
// node would drop packets from an address it has a blackhole route to.
void disable_rp_filter(int ns_fd, const std::string& dev) {
  std::thread t([&] {
    if (::setns(ns_fd, CLONE_NEWNET) != 0) return;
    for (const std::string& conf : {std::string("all"), std::string("default"), dev}) {
      std::ofstream(fmt::format("/proc/sys/net/ipv4/conf/{}/rp_filter", conf)) << "0\n";
    }
  });
  t.join();
}

sockaddr_in make_addr(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

}  // namespace

Result<std::unique_ptr<NetLab>> NetLab::create(const std::vector<uint32_t>& ids) {
  if (ip_binary().empty()) {
    return unavailable("ip (iproute2) not found; scripts/install-deps.sh installs it");
  }
  std::unique_ptr<NetLab> lab(new NetLab());
  lab->pid_ = std::to_string(::getpid());
  const std::vector<std::string> swept = sweep_stale();
  for (const std::string& s : swept) {
    std::printf("maroon-chaos: removed a stale %s left by a run that is gone\n", s.c_str());
  }
  // The subnet: pid % 512 first, else the next one no root address is in.
  const std::set<unsigned> used = subnets_in_use();
  unsigned subnet = kSubnets;
  for (unsigned k = 0; k < kSubnets; k++) {
    unsigned s = (static_cast<unsigned>(::getpid()) + k) % kSubnets;
    if (!used.contains(s)) {
      subnet = s;
      break;
    }
  }
  if (subnet == kSubnets) return io_error("every /24 of 198.18.0.0/15 is in use here");
  lab->prefix_ = fmt::format("198.{}.{}.", 18 + subnet / 256, subnet % 256);
  lab->root_address_ = lab->prefix_ + std::to_string(kRootHost);
  lab->bridge_ = kBridgePrefix + lab->pid_;

  auto fail = [&](const Status& s) -> Status {
    std::vector<std::string> left = lab->remove();
    std::string msg = s.message();
    for (const std::string& l : left) msg += "; " + l;
    return Status(s.code(), msg);
  };
  // The first namespace tells whether this works here at all.
  for (uint32_t id : ids) {
    Node n;
    n.id = id;
    n.ns = fmt::format("{}{}-{}", kNsPrefix, lab->pid_, id);
    n.veth = fmt::format("{}{}-{}", kVethPrefix, lab->pid_, id);
    n.peer = fmt::format("{}{}-{}", kPeerPrefix, lab->pid_, id);
    n.address = lab->prefix_ + std::to_string(id);
    Result<std::string> r = run_ip({"netns", "add", n.ns});
    if (!r.is_ok()) {
      return fail(unavailable(fmt::format("{} (euid {})", r.status().message(), ::geteuid())));
    }
    lab->nodes_.push_back(n);
  }
  auto step = [&](std::vector<std::string> args) -> Status {
    Result<std::string> r = run_ip(args);
    if (!r.is_ok()) return unavailable(r.status().message());
    return Status::ok();
  };
  if (Status s = step({"link", "add", lab->bridge_, "type", "bridge"}); !s) return fail(s);
  lab->bridge_made_ = true;
  if (Status s = step({"addr", "add", lab->root_address_ + "/24", "dev", lab->bridge_}); !s)
    return fail(s);
  if (Status s = step({"link", "set", lab->bridge_, "up"}); !s) return fail(s);
  for (Node& n : lab->nodes_) {
    for (std::vector<std::string> args : {
             std::vector<std::string>{"link", "add", n.veth, "type", "veth", "peer", "name", n.peer,
                                      "netns", n.ns},
             std::vector<std::string>{"link", "set", n.veth, "master", lab->bridge_, "up"},
             std::vector<std::string>{"-n", n.ns, "addr", "add", n.address + "/24", "dev", n.peer},
             std::vector<std::string>{"-n", n.ns, "link", "set", n.peer, "up"},
             std::vector<std::string>{"-n", n.ns, "link", "set", "lo", "up"},
         }) {
      if (Status s = step(args); !s) return fail(s);
    }
    n.ns_fd = ::open(("/run/netns/" + n.ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (n.ns_fd < 0) {
      return fail(unavailable(fmt::format("/run/netns/{}: {}", n.ns, errno_text(errno))));
    }
    disable_rp_filter(n.ns_fd, n.peer);
  }
  // Every path must be open before the run starts.
  std::vector<std::string> bad = lab->verify();
  if (!bad.empty()) {
    return fail(io_error(
        fmt::format("the namespaces' network does not work as set up: {}", fmt::join(bad, "; "))));
  }
  return lab;
}

NetLab::~NetLab() { remove(); }

Status NetLab::block(size_t from, size_t to) {
  int& count = routes_[{from, to}];
  if (count++ > 0) return Status::ok();
  Result<std::string> r =
      run_ip({"-n", nodes_[from].ns, "route", "add", "blackhole", nodes_[to].address + "/32"});
  if (!r.is_ok()) {
    routes_.erase({from, to});
    return r.status();
  }
  return Status::ok();
}

Status NetLab::unblock(size_t from, size_t to) {
  auto it = routes_.find({from, to});
  if (it == routes_.end()) return invalid_argument("no such blackhole route");
  if (--it->second > 0) return Status::ok();
  routes_.erase(it);
  Result<std::string> r =
      run_ip({"-n", nodes_[from].ns, "route", "del", "blackhole", nodes_[to].address + "/32"});
  return r.is_ok() ? Status::ok() : r.status();
}

bool NetLab::blocked(size_t from, size_t to) const { return routes_.contains({from, to}); }

bool NetLab::udp_delivers(size_t from, size_t to, milliseconds timeout, std::string* how) {
  auto say = [&](std::string s) {
    if (how) *how = std::move(s);
  };
  Result<int> rfd = socket_in(nodes_[to].ns_fd, SOCK_DGRAM);
  if (!rfd.is_ok()) {
    say(rfd.status().message());
    return false;
  }
  Fd receiver(*rfd);
  sockaddr_in at = make_addr(nodes_[to].address, 0);
  socklen_t len = sizeof at;
  if (::bind(receiver.get(), reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 ||
      ::getsockname(receiver.get(), reinterpret_cast<sockaddr*>(&at), &len) != 0) {
    say("bind: " + errno_text(errno));
    return false;
  }
  Result<int> sfd = socket_in(from == kRoot ? -1 : nodes_[from].ns_fd, SOCK_DGRAM);
  if (!sfd.is_ok()) {
    say(sfd.status().message());
    return false;
  }
  Fd sender(*sfd);
  static std::atomic<uint64_t> counter{0};
  const std::string token = fmt::format("maroon-chaos probe {}", counter.fetch_add(1));
  if (::sendto(sender.get(), token.data(), token.size(), 0, reinterpret_cast<sockaddr*>(&at),
               sizeof at) < 0) {
    say("send failed: " + errno_text(errno));
    return false;
  }
  const auto deadline = Clock::now() + timeout;
  char buf[128];
  while (wait_fd(receiver.get(), POLLIN, deadline)) {
    ssize_t n = ::recv(receiver.get(), buf, sizeof buf, 0);
    if (n == static_cast<ssize_t>(token.size()) &&
        std::memcmp(buf, token.data(), token.size()) == 0) {
      say("delivered");
      return true;
    }
  }
  say(fmt::format("sent, nothing arrived within {} ms", timeout.count()));
  return false;
}

bool NetLab::tcp_reaches(size_t from, size_t to, uint16_t port, milliseconds timeout,
                         std::string* how) {
  auto say = [&](std::string s) {
    if (how) *how = std::move(s);
  };
  Result<int> fd = socket_in(from == kRoot ? -1 : nodes_[from].ns_fd, SOCK_STREAM);
  if (!fd.is_ok()) {
    say(fd.status().message());
    return false;
  }
  Fd s(*fd);
  sockaddr_in a = make_addr(nodes_[to].address, port);
  const auto start = Clock::now();
  auto took = [&] {
    return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  };
  int err = 0;
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      if (!wait_fd(s.get(), POLLOUT, start + timeout)) {
        say(fmt::format("connect timed out after {} ms", took()));
        return false;
      }
      socklen_t len = sizeof err;
      ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    }
  }
  if (err == 0) {
    say(fmt::format("connected in {} ms", took()));
    return true;
  }
  if (err == ECONNREFUSED) {
    say(fmt::format("refused in {} ms (the host answered)", took()));
    return true;
  }
  say(fmt::format("connect failed in {} ms: {}", took(), errno_text(err)));
  return false;
}

std::vector<std::string> NetLab::verify() {
  std::vector<std::string> bad;
  auto name = [&](size_t i) {
    return i == kRoot ? std::string("root namespace") : fmt::format("node {}", nodes_[i].id);
  };
  std::vector<size_t> froms = {kRoot};
  for (size_t i = 0; i < nodes_.size(); i++) froms.push_back(i);
  for (size_t from : froms) {
    for (size_t to = 0; to < nodes_.size(); to++) {
      if (from == to) continue;
      const bool open = from == kRoot || !blocked(from, to);
      std::string how;
      bool got = false;
      for (int tries = 0; tries < (open ? kOpenProbeTries : 1); tries++) {
        got = udp_delivers(from, to, open ? kOpenProbeTimeout : kCutProbeTimeout, &how);
        if (got) break;
      }
      if (got == open) {
        (open ? stats_.delivered : stats_.blocked)++;
      } else {
        bad.push_back(fmt::format("{} -> {} ({}): should be {}, but the probe datagram was {} ({})",
                                  name(from), name(to),
                                  to < nodes_.size() ? nodes_[to].address : "?",
                                  open ? "open" : "cut", got ? "delivered" : "not delivered", how));
      }
    }
  }
  stats_.matrices++;
  return bad;
}

std::vector<std::string> NetLab::remove() {
  std::vector<std::string> problems;
  if (removed_) return problems;
  removed_ = true;
  for (const auto& [route, count] : routes_) {
    Result<std::string> r = run_ip({"-n", nodes_[route.first].ns, "route", "del", "blackhole",
                                    nodes_[route.second].address + "/32"});
    if (!r.is_ok()) problems.push_back(r.status().message());
  }
  routes_.clear();
  for (Node& n : nodes_) {
    if (n.ns_fd >= 0) ::close(n.ns_fd);
    n.ns_fd = -1;
  }
  // The root end of each veth pair (its other end goes with it), the bridge,
  // then the namespaces. Errors for things never made are expected; what
  // matters is the check below.
  std::set<std::string> links;
  for (const std::string& l : list_links()) links.insert(l);
  for (const Node& n : nodes_) {
    if (links.contains(n.veth)) (void)run_ip({"link", "del", n.veth});
  }
  if (bridge_made_ && links.contains(bridge_)) (void)run_ip({"link", "del", bridge_});
  std::set<std::string> namespaces;
  for (const std::string& ns : list_netns()) namespaces.insert(ns);
  for (const Node& n : nodes_) {
    if (namespaces.contains(n.ns)) (void)run_ip({"netns", "del", n.ns});
  }
  // Nothing with this run's names may be left.
  for (const std::string& l : list_links()) {
    if (is_link_of(l, pid_)) problems.push_back("left behind: link " + l);
  }
  for (const std::string& ns : list_netns()) {
    if (name_pid(ns, kNsPrefix) == pid_) problems.push_back("left behind: netns " + ns);
  }
  return problems;
}

}  // namespace maroon::chaos
