// maroon-chaos: real-process chaos for a maroon cluster (docs/chaos.md).
//
// Starts n `maroon node` processes, runs concurrent clients that record every
// op, and meanwhile SIGKILLs and restarts nodes, SIGSTOPs and SIGCONTs them,
// and kills or pauses the current primary, never more than f nodes at once.
// With --partitions every node runs in its own network namespace (netns.h)
// and the faults include network partitions between nodes: symmetric,
// one-way and bridge, made with blackhole routes and checked to hold.
// Then heals everything, waits for the nodes to serve and converge (same
// state hash at the same applied epoch), reads every key back with ordered
// GETs, and checks: the history is linearizable, no acknowledged write is
// lost, the replicas agree, and no node crashed on its own. Exit status 0
// only if all of that holds.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "chaos_history.h"
#include "check/linearizability.h"
#include "maroon/assert.h"
#include "maroon/prng.h"
#include "local_cluster.h"
#include "workload.h"

namespace maroon::chaos {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kMarkerFile[] = "maroon-chaos.run";
constexpr auto kPollInterval = milliseconds(20);
constexpr auto kStatusTimeout = milliseconds(1000);
constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kHealTimeout = std::chrono::seconds(60);
constexpr auto kConvergeTimeout = std::chrono::seconds(60);
constexpr auto kFinalReadTimeout = std::chrono::seconds(30);
constexpr auto kShutdownTimeout = milliseconds(10000);
constexpr auto kNoPrimaryTimeout = std::chrono::seconds(15);
constexpr auto kProgressEvery = std::chrono::seconds(5);
constexpr size_t kLogTailLines = 30;
constexpr int kCrashRestartsMax = 2;  // restarts of a node that exited on its own

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }
bool interrupted() { return g_signal.load() != 0; }

struct Options {
  std::string maroon;
  std::string dir;
  double seconds = 20;
  uint32_t nodes = 3;
  uint32_t clients = 8;
  uint32_t keys = 8;
  uint64_t seed = 0;
  bool seed_given = false;
  uint64_t tick_ms = 10;
  uint64_t lease_ms = 2000;
  uint64_t op_timeout_ms = 5000;
  uint64_t recover_timeout_s = 30;
  uint64_t check_steps_max = 100'000'000;
  bool faults = true;
  bool require_all_faults = false;
  bool keep_data = false;
  bool partitions = false;
};

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: maroon-chaos --maroon PATH --dir DIR [--seconds S] [--nodes N] [--clients C]\n"
      "                    [--keys K] [--seed N] [--lease-ms MS] [--tick-ms MS]\n"
      "                    [--op-timeout-ms MS] [--recover-timeout S] [--check-steps N]\n"
      "                    [--no-faults] [--require-all-faults] [--keep-data] [--partitions]\n"
      "Runs a cluster of N maroon nodes under client load and faults for S seconds,\n"
      "then checks linearizability, lost writes and convergence. See docs/chaos.md.\n"
      "DIR must be new, empty, or a previous maroon-chaos run (it is then wiped).\n"
      "--partitions: each node in its own network namespace (needs root and iproute2;\n"
      "exit status 77 if unavailable), and network partitions among the faults.\n");
}

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  auto need = [&](int& i) -> const char* {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "maroon-chaos: %s needs a value\n", argv[i]);
      return nullptr;
    }
    return argv[++i];
  };
  auto number = [&](int& i, uint64_t& out, uint64_t lo, uint64_t hi) {
    const char* v = need(i);
    if (v == nullptr) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long x = std::strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi) {
      std::fprintf(stderr, "maroon-chaos: %s: %s is not a number in %llu..%llu\n", argv[i - 1], v,
                   static_cast<unsigned long long>(lo), static_cast<unsigned long long>(hi));
      return false;
    }
    out = x;
    return true;
  };
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    uint64_t x = 0;
    if (a == "-h" || a == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--maroon") {
      const char* v = need(i);
      if (v == nullptr) return std::nullopt;
      o.maroon = v;
    } else if (a == "--dir") {
      const char* v = need(i);
      if (v == nullptr) return std::nullopt;
      o.dir = v;
    } else if (a == "--seconds") {
      const char* v = need(i);
      if (v == nullptr) return std::nullopt;
      char* end = nullptr;
      o.seconds = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(o.seconds > 0) || o.seconds > 86400) {
        std::fprintf(stderr, "maroon-chaos: --seconds: %s is not in (0, 86400]\n", v);
        return std::nullopt;
      }
    } else if (a == "--nodes") {
      if (!number(i, x, 1, 7)) return std::nullopt;
      o.nodes = static_cast<uint32_t>(x);
    } else if (a == "--clients") {
      if (!number(i, x, 1, 256)) return std::nullopt;
      o.clients = static_cast<uint32_t>(x);
    } else if (a == "--keys") {
      if (!number(i, x, 1, 10000)) return std::nullopt;
      o.keys = static_cast<uint32_t>(x);
    } else if (a == "--seed") {
      if (!number(i, o.seed, 0, UINT64_MAX)) return std::nullopt;
      o.seed_given = true;
    } else if (a == "--lease-ms") {
      if (!number(i, o.lease_ms, 100, 3600000)) return std::nullopt;
    } else if (a == "--tick-ms") {
      if (!number(i, o.tick_ms, 1, 1000)) return std::nullopt;
    } else if (a == "--op-timeout-ms") {
      if (!number(i, o.op_timeout_ms, 100, 600000)) return std::nullopt;
    } else if (a == "--recover-timeout") {
      if (!number(i, o.recover_timeout_s, 1, 3600)) return std::nullopt;
    } else if (a == "--check-steps") {
      if (!number(i, o.check_steps_max, 1000, UINT64_MAX)) return std::nullopt;
    } else if (a == "--no-faults") {
      o.faults = false;
    } else if (a == "--require-all-faults") {
      o.require_all_faults = true;
    } else if (a == "--keep-data") {
      o.keep_data = true;
    } else if (a == "--partitions") {
      o.partitions = true;
    } else {
      std::fprintf(stderr, "maroon-chaos: unknown argument %s\n", a.c_str());
      usage(stderr);
      return std::nullopt;
    }
  }
  if (o.maroon.empty() || o.dir.empty()) {
    std::fprintf(stderr, "maroon-chaos: --maroon and --dir are required\n");
    usage(stderr);
    return std::nullopt;
  }
  if (!o.seed_given) {
    o.seed = static_cast<uint64_t>(std::time(nullptr)) ^ (static_cast<uint64_t>(::getpid()) << 20);
  }
  return o;
}

// DIR must be new, empty or an earlier run's (marked); anything else is
// somebody's data and is left alone.
Status prepare_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return invalid_argument(dir.string() + " is not a directory");
    const bool empty = fs::is_empty(dir, ec);
    if (!empty && !fs::exists(dir / kMarkerFile, ec)) {
      return invalid_argument(dir.string() +
                              " is not empty and not a maroon-chaos run directory; refusing to "
                              "wipe it");
    }
    if (!empty) {
      // Refuse while an earlier run's node still runs there.
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.path().extension() != ".pid") continue;
        std::ifstream in(entry.path());
        long pid = 0;
        if (in >> pid && pid > 1 && ::kill(static_cast<pid_t>(pid), 0) == 0) {
          std::ifstream cmd(fmt::format("/proc/{}/cmdline", pid));
          std::string cmdline((std::istreambuf_iterator<char>(cmd)), {});
          if (cmdline.find("node") != std::string::npos) {
            return invalid_argument(fmt::format(
                "{}: pid {} ({}) is still running; stop it first (maroon cluster down --dir {})",
                entry.path().string(), pid, entry.path().filename().string(), dir.string()));
          }
        }
      }
      fs::remove_all(dir, ec);
      if (ec) return io_error(fmt::format("{}: {}", dir.string(), ec.message()));
    }
  }
  fs::create_directories(dir, ec);
  if (ec) return io_error(fmt::format("{}: {}", dir.string(), ec.message()));
  std::ofstream(dir / kMarkerFile) << "a maroon-chaos run directory; the next run here wipes it\n";
  return Status::ok();
}

enum class FaultKind : uint8_t {
  kKill,
  kWipe,  // SIGKILL, its data directory removed; restarted, it rejoins

  kStop,
  kKillPrimary,
  kStopPrimary,
  kPartitionSymmetric,  // two sides, neither can send to the other
  kPartitionOneway,     // one side cannot send to the other; the other way works
  kPartitionBridge,     // two sides cut from each other; the rest sees both
};
constexpr std::array<FaultKind, 5> kProcessFaultKinds = {FaultKind::kKill, FaultKind::kWipe,
                                                         FaultKind::kStop, FaultKind::kKillPrimary,
                                                         FaultKind::kStopPrimary};
constexpr std::array<FaultKind, 3> kPartitionFaultKinds = {
    FaultKind::kPartitionSymmetric, FaultKind::kPartitionOneway, FaultKind::kPartitionBridge};
constexpr std::array<FaultKind, 8> kAllFaultKinds = {FaultKind::kKill,
                                                     FaultKind::kWipe,
                                                     FaultKind::kStop,
                                                     FaultKind::kKillPrimary,
                                                     FaultKind::kStopPrimary,
                                                     FaultKind::kPartitionSymmetric,
                                                     FaultKind::kPartitionOneway,
                                                     FaultKind::kPartitionBridge};

const char* fault_name(FaultKind k) {
  switch (k) {
    case FaultKind::kKill:
      return "kill";
    case FaultKind::kWipe:
      return "wipe";
    case FaultKind::kStop:
      return "stop";
    case FaultKind::kKillPrimary:
      return "kill_primary";
    case FaultKind::kStopPrimary:
      return "stop_primary";
    case FaultKind::kPartitionSymmetric:
      return "partition_symmetric";
    case FaultKind::kPartitionOneway:
      return "partition_oneway";
    case FaultKind::kPartitionBridge:
      return "partition_bridge";
  }
  return "?";
}
bool is_kill(FaultKind k) {
  return k == FaultKind::kKill || k == FaultKind::kWipe || k == FaultKind::kKillPrimary;
}
bool targets_primary(FaultKind k) {
  return k == FaultKind::kKillPrimary || k == FaultKind::kStopPrimary;
}
bool is_partition(FaultKind k) {
  return k == FaultKind::kPartitionSymmetric || k == FaultKind::kPartitionOneway ||
         k == FaultKind::kPartitionBridge;
}

struct ActiveFault {
  FaultKind kind;
  // The nodes it takes out: the killed or stopped node, or a partition's
  // cut-off side (every link the partition cuts has one end in it). They
  // count against the f-nodes budget and must serve again after the heal.
  std::vector<size_t> nodes;
  Clock::time_point heal_at;
  std::vector<std::pair<size_t, size_t>> routes;  // a partition's cut paths (from, to)
  bool healed = false;
  Clock::time_point healed_at;
  uint64_t catch_up_epoch = 0;  // the others' highest applied epoch when healed
};

class Run {
 public:
  Run(Options o, LocalCluster cluster)
      : o_(std::move(o)), cluster_(std::move(cluster)), rng_(o_.seed), t0_(Clock::now()) {
    kinds_.assign(kProcessFaultKinds.begin(), kProcessFaultKinds.end());
    if (o_.partitions)
      kinds_.insert(kinds_.end(), kPartitionFaultKinds.begin(), kPartitionFaultKinds.end());
  }

  int main();

 private:
  double now_s() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  template <typename... Args>
  void log(fmt::format_string<Args...> f, Args&&... args) {
    std::printf("[%8.3fs] %s\n", now_s(), fmt::format(f, std::forward<Args>(args)...).c_str());
    std::fflush(stdout);
  }
  void problem(std::string p) {
    log("PROBLEM: {}", p);
    problems_.push_back(std::move(p));
  }
  std::vector<Endpoint> endpoints() const;
  bool healthy(size_t i, uint64_t min_epoch, std::string* why);
  std::optional<size_t> find_primary(std::string* detail);
  void reap();
  void handle_exits(std::vector<std::string> lines);
  // A node of the first start exited because another process took its port.
  bool port_taken() const;
  bool start_all();
  bool start_once(int attempt);
  void fault_phase(Workload& w, Clock::time_point end);
  bool excluded(size_t i) const;
  size_t down_now() const;
  std::string node_set(const std::vector<size_t>& nodes) const;
  bool try_inject(FaultKind kind);
  bool try_inject_partition(FaultKind kind);
  void check_network(const std::string& when);
  void heal(ActiveFault& f);
  bool heal_everything();
  bool final_reads(std::map<std::string, std::optional<std::string>>& finals,
                   std::vector<ChaosOp>& reads);
  bool converge();
  void replica_reads(const std::map<std::string, std::optional<std::string>>& finals);
  milliseconds random_ms(uint64_t lo, uint64_t hi) {
    return milliseconds(lo + rng_.below(hi - lo + 1));
  }

  Options o_;
  LocalCluster cluster_;
  Prng rng_;
  Clock::time_point t0_;
  std::vector<std::string> problems_;
  bool retry_start_ = false;  // start_once: a port was taken, start again
  std::vector<ActiveFault> active_;
  std::map<FaultKind, uint64_t> faults_;
  uint64_t faults_total_ = 0;
  double recovery_max_s_ = 0;
  std::vector<FaultKind> kinds_;     // the kinds of this run
  std::vector<FaultKind> schedule_;  // the first faults, one of each kind
  uint64_t tcp_cut_checks_ = 0;      // TCP connects across a new cut that failed as they should
  uint64_t tcp_heal_checks_ = 0;     // and that got through again after the heal
  std::vector<int> crash_restarts_ = std::vector<int>(cluster_.size(), 0);
  std::vector<bool> down_for_good_ = std::vector<bool>(cluster_.size(), false);
};

std::vector<Endpoint> Run::endpoints() const {
  std::vector<Endpoint> out;
  for (size_t i = 0; i < cluster_.size(); i++) {
    const NodeProc& n = cluster_.node(i);
    out.push_back({n.id, n.host, n.native_port});
  }
  return out;
}

bool Run::healthy(size_t i, uint64_t min_epoch, std::string* why) {
  if (!cluster_.running(i) || cluster_.node(i).stopped) {
    if (why) *why = "not running";
    return false;
  }
  Result<NodeStatus> s = cluster_.status(i, kStatusTimeout);
  if (!s.is_ok()) {
    if (why) *why = s.status().message();
    return false;
  }
  if (!s->serving || (s->role != "primary" && s->role != "backup" && s->role != "single")) {
    if (why) *why = fmt::format("serving={} role={} {}", s->serving, s->role, s->detail);
    return false;
  }
  if (s->applied_epoch < min_epoch) {
    if (why) *why = fmt::format("catching up: epoch {} of {}", s->applied_epoch, min_epoch);
    return false;
  }
  return true;
}

std::optional<size_t> Run::find_primary(std::string* detail) {
  std::optional<size_t> best;
  uint64_t best_view = 0;
  for (size_t i = 0; i < cluster_.size(); i++) {
    if (!cluster_.running(i) || cluster_.node(i).stopped) continue;
    Result<NodeStatus> s = cluster_.status(i, kStatusTimeout);
    if (!s.is_ok() || (s->role != "primary" && s->role != "single") || !s->serving) continue;
    if (!best || s->view > best_view) {
      best = i;
      best_view = s->view;
    }
  }
  if (best && detail) *detail = fmt::format("primary of view {}", best_view);
  return best;
}

void Run::reap() { handle_exits(cluster_.reap_unexpected()); }

bool Run::port_taken() const {
  for (size_t i = 0; i < cluster_.size(); i++) {
    if (cluster_.log_tail(i, 5).find("Address already in use") != std::string::npos) return true;
  }
  return false;
}

void Run::handle_exits(std::vector<std::string> lines) {
  for (std::string& line : lines) {
    problem(line);
    for (size_t i = 0; i < cluster_.size(); i++) {
      if (!line.starts_with(fmt::format("node {} ", cluster_.node(i).id))) continue;
      // Its log holds the reason; show it once per node.
      if (crash_restarts_[i] == 0) {
        std::printf("  the end of %s:\n%s", cluster_.node(i).log.c_str(),
                    cluster_.log_tail(i, kLogTailLines).c_str());
      }
      bool faulted = std::any_of(active_.begin(), active_.end(), [&](const ActiveFault& f) {
        return !is_partition(f.kind) && f.nodes.front() == i && !f.healed;
      });
      if (faulted) continue;  // the fault's heal restarts it
      // Keep the run going: restart it, a few times; a node that keeps
      // crashing stays down and uses up the fault budget.
      if (crash_restarts_[i] >= kCrashRestartsMax) {
        if (!down_for_good_[i]) {
          down_for_good_[i] = true;
          problem(fmt::format("node {} crashed {} times; left down", cluster_.node(i).id,
                              crash_restarts_[i] + 1));
        }
        continue;
      }
      crash_restarts_[i]++;
      if (Status st = cluster_.start(i, "restart after an unexpected exit"); !st) {
        problem(fmt::format("cannot restart node {}: {}", cluster_.node(i).id, st.message()));
      }
    }
  }
}

bool Run::start_all() {
  for (int attempt = 1;; attempt++) {
    if (start_once(attempt)) return true;
    if (retry_start_) {
      retry_start_ = false;
      continue;
    }
    return false;
  }
}

bool Run::start_once(int attempt) {
  for (size_t i = 0; i < cluster_.size(); i++) {
    if (Status s = cluster_.start(i, "start"); !s) {
      problem(fmt::format("cannot start node {}: {}", cluster_.node(i).id, s.message()));
      return false;
    }
    log("started node {} (pid {}), log {}", cluster_.node(i).id, cluster_.node(i).pid,
        cluster_.node(i).log.string());
  }
  const auto deadline = Clock::now() + kStartTimeout;
  for (;;) {
    if (interrupted()) return false;
    std::vector<std::string> exited = cluster_.reap_unexpected();
    if (!exited.empty() && attempt < 3 && !o_.partitions && port_taken()) {
      // Not the cluster's fault: another process took a port between the
      // pick and the bind. A new cluster on fresh ports.
      log("a port was taken by another process ({}); starting again on fresh ports",
          fmt::join(exited, "; "));
      cluster_.shutdown(kShutdownTimeout);
      if (Status s = cluster_.repick_ports(); !s) {
        problem(fmt::format("cannot pick fresh ports: {}", s.message()));
        return false;
      }
      retry_start_ = true;
      return false;
    }
    handle_exits(std::move(exited));
    std::vector<std::string> waiting;
    for (size_t i = 0; i < cluster_.size(); i++) {
      std::string why;
      if (!healthy(i, 0, &why))
        waiting.push_back(fmt::format("node {}: {}", cluster_.node(i).id, why));
    }
    if (waiting.empty() && find_primary(nullptr)) return true;
    if (Clock::now() >= deadline) {
      problem(fmt::format("the cluster did not serve within {} s: {}",
                          std::chrono::duration_cast<std::chrono::seconds>(kStartTimeout).count(),
                          fmt::join(waiting, "; ")));
      return false;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

bool Run::excluded(size_t i) const {
  return down_for_good_[i] ||
         std::any_of(active_.begin(), active_.end(), [&](const ActiveFault& f) {
           return std::find(f.nodes.begin(), f.nodes.end(), i) != f.nodes.end();
         });
}

size_t Run::down_now() const {
  size_t down = static_cast<size_t>(std::count(down_for_good_.begin(), down_for_good_.end(), true));
  for (const ActiveFault& f : active_) down += f.nodes.size();
  return down;
}

std::string Run::node_set(const std::vector<size_t>& nodes) const {
  std::vector<uint32_t> ids;
  for (size_t i : nodes) ids.push_back(cluster_.node(i).id);
  std::sort(ids.begin(), ids.end());
  return fmt::format("{{{}}}", fmt::join(ids, ","));
}

bool Run::try_inject(FaultKind kind) {
  // Never more than f nodes down, stopped or cut off: every node not under a
  // fault must be serving before another one is taken out.
  for (size_t i = 0; i < cluster_.size(); i++) {
    if (!excluded(i) && !healthy(i, 0, nullptr)) return false;
  }
  if (is_partition(kind)) return try_inject_partition(kind);
  size_t target = 0;
  std::string what;
  if (targets_primary(kind)) {
    std::optional<size_t> p = find_primary(&what);
    if (!p) return false;
    if (excluded(*p)) return false;
    target = *p;
  } else {
    std::vector<size_t> candidates;
    for (size_t i = 0; i < cluster_.size(); i++) {
      if (!excluded(i)) candidates.push_back(i);
    }
    if (candidates.empty()) return false;
    target = candidates[rng_.below(candidates.size())];
    if (find_primary(nullptr) == target) what = "the primary";
  }
  // The first faults are the fixed schedule: short holds. Later a pause may
  // outlast the gateway lease, so that ranges get sealed.
  milliseconds hold = random_ms(300, 2000);
  if (!is_kill(kind) && faults_total_ >= kinds_.size() && rng_.chance(0.25)) {
    hold = milliseconds(o_.lease_ms) + random_ms(500, 1500);
  }
  const NodeProc& n = cluster_.node(target);
  faults_total_++;
  faults_[kind]++;
  log("fault {} ({}): {} node {} (pid {}{}{}) for {} ms", faults_total_, fault_name(kind),
      is_kill(kind) ? "SIGKILL" : "SIGSTOP", n.id, n.pid, what.empty() ? "" : ", ", what,
      hold.count());
  if (is_kill(kind)) {
    cluster_.kill(target);
    if (kind == FaultKind::kWipe) {
      // A lost disk: restarted without --new-cluster, the node rejoins and
      // takes its state back from its peers (docs/cluster.md).
      std::error_code ec;
      fs::remove_all(n.data_dir, ec);
      log("removed node {}'s data directory {}{}", n.id, n.data_dir.string(),
          ec ? ": " + ec.message() : std::string());
    }
  } else {
    cluster_.stop(target);
  }
  active_.push_back({kind, {target}, Clock::now() + hold, {}});
  return true;
}

bool Run::try_inject_partition(FaultKind kind) {
  NetLab* net = cluster_.net();
  MAROON_ASSERT(net != nullptr);
  const size_t n = cluster_.size();
  const size_t down = down_now();
  if (down >= cluster_.f()) return false;
  // The cut-off side: 1 .. (f - down) nodes not under a fault, half the time
  // with the primary in it.
  std::vector<size_t> candidates;
  for (size_t i = 0; i < n; i++) {
    if (!excluded(i)) candidates.push_back(i);
  }
  if (candidates.empty()) return false;
  for (size_t i = candidates.size(); i > 1; i--)
    std::swap(candidates[i - 1], candidates[rng_.below(i)]);
  std::string primary_what;
  std::optional<size_t> primary = find_primary(&primary_what);
  if (primary && !excluded(*primary) && rng_.chance(0.5)) {
    auto it = std::find(candidates.begin(), candidates.end(), *primary);
    std::rotate(candidates.begin(), it, it + 1);
  }
  const size_t k = 1 + rng_.below(std::min(cluster_.f() - down, candidates.size()));
  std::vector<size_t> cut(candidates.begin(), candidates.begin() + static_cast<long>(k));
  std::vector<size_t> others;
  for (size_t i = 0; i < n; i++) {
    if (std::find(cut.begin(), cut.end(), i) == cut.end()) others.push_back(i);
  }
  // Every cut path has one end in `cut`; the nodes outside every fault stay
  // connected to each other, and there are at least n - f of them.
  std::vector<std::pair<size_t, size_t>> routes;
  std::string shape;
  if (kind == FaultKind::kPartitionSymmetric) {
    for (size_t c : cut) {
      for (size_t o : others) {
        routes.push_back({c, o});
        routes.push_back({o, c});
      }
    }
    shape =
        fmt::format("{} | {}: neither side can send to the other", node_set(cut), node_set(others));
  } else if (kind == FaultKind::kPartitionOneway) {
    const bool cut_cannot_send = rng_.chance(0.5);
    const std::vector<size_t>& senders = cut_cannot_send ? cut : others;
    const std::vector<size_t>& receivers = cut_cannot_send ? others : cut;
    for (size_t a : senders) {
      for (size_t b : receivers) routes.push_back({a, b});
    }
    shape = fmt::format("{} -/-> {}: the first cannot send to the second; the other way works",
                        node_set(senders), node_set(receivers));
  } else {
    if (others.size() < 2) return false;
    for (size_t i = others.size(); i > 1; i--) std::swap(others[i - 1], others[rng_.below(i)]);
    const size_t m = 1 + rng_.below(others.size() - 1);
    std::vector<size_t> bridge(others.begin(), others.begin() + static_cast<long>(m));
    std::vector<size_t> far(others.begin() + static_cast<long>(m), others.end());
    for (size_t c : cut) {
      for (size_t r : far) {
        routes.push_back({c, r});
        routes.push_back({r, c});
      }
    }
    shape = fmt::format("{} | {} cut from each other; {} {} both", node_set(cut), node_set(far),
                        node_set(bridge), bridge.size() == 1 ? "sees" : "see");
  }
  // The first faults are the fixed schedule: shorter holds.
  const milliseconds hold =
      faults_total_ >= kinds_.size() ? random_ms(500, 4000) : random_ms(500, 2000);
  faults_total_++;
  faults_[kind]++;
  std::string primary_note;
  if (primary) {
    primary_note = fmt::format(" (node {} was the {})", cluster_.node(*primary).id, primary_what);
  }
  log("fault {} ({}): {} for {} ms{}", faults_total_, fault_name(kind), shape, hold.count(),
      primary_note);
  ActiveFault f{kind, cut, Clock::now() + hold, {}};
  for (const auto& [from, to] : routes) {
    if (Status st = net->block(from, to); !st) {
      problem(fmt::format("cannot cut node {} -> node {}: {}", cluster_.node(from).id,
                          cluster_.node(to).id, st.message()));
      continue;
    }
    f.routes.push_back({from, to});
  }
  f.heal_at = Clock::now() + hold;
  active_.push_back(f);
  // The cut must hold: datagrams over every cut path fail and every other
  // path works; and a TCP connect across the cut to a node's peer port fails.
  check_network(fmt::format("after fault {}", faults_total_));
  if (!f.routes.empty()) {
    const auto [from, to] = f.routes.front();
    std::string how;
    if (net->tcp_reaches(from, to, cluster_.node(to).peer_port, milliseconds(300), &how)) {
      problem(fmt::format("fault {}: node {} still reaches node {}:{} over TCP across the cut ({})",
                          faults_total_, cluster_.node(from).id, cluster_.node(to).id,
                          cluster_.node(to).peer_port, how));
    } else {
      tcp_cut_checks_++;
      log("  cut checked: {} paths blocked; node {} -> node {}:{} over TCP: {}", f.routes.size(),
          cluster_.node(from).id, cluster_.node(to).id, cluster_.node(to).peer_port, how);
    }
  }
  return true;
}

void Run::check_network(const std::string& when) {
  NetLab* net = cluster_.net();
  if (net == nullptr) return;
  for (std::string& line : net->verify()) {
    problem(fmt::format("network {}: {}", when, line));
  }
}

void Run::heal(ActiveFault& f) {
  uint64_t others = 0;
  for (size_t i = 0; i < cluster_.size(); i++) {
    if (std::find(f.nodes.begin(), f.nodes.end(), i) != f.nodes.end()) continue;
    if (!cluster_.running(i) || cluster_.node(i).stopped) continue;
    Result<NodeStatus> s = cluster_.status(i, kStatusTimeout);
    if (s.is_ok()) others = std::max(others, s->applied_epoch);
  }
  f.catch_up_epoch = others;
  if (is_partition(f.kind)) {
    NetLab* net = cluster_.net();
    for (const auto& [from, to] : f.routes) {
      if (Status st = net->unblock(from, to); !st) {
        problem(fmt::format("cannot remove the cut node {} -> node {}: {}", cluster_.node(from).id,
                            cluster_.node(to).id, st.message()));
      }
    }
    std::string primary_what;
    std::optional<size_t> primary = find_primary(&primary_what);
    log("healed the {} of {}: routes removed; {}", fault_name(f.kind), node_set(f.nodes),
        primary ? fmt::format("node {} is the {}", cluster_.node(*primary).id, primary_what)
                : std::string("no primary now"));
    check_network("after a heal");
    if (!f.routes.empty()) {
      const auto [from, to] = f.routes.front();
      if (!net->blocked(from, to)) {
        std::string how;
        if (net->tcp_reaches(from, to, cluster_.node(to).peer_port, milliseconds(1000), &how)) {
          tcp_heal_checks_++;
        } else {
          problem(fmt::format("after a heal node {} does not reach node {}:{} over TCP ({})",
                              cluster_.node(from).id, cluster_.node(to).id,
                              cluster_.node(to).peer_port, how));
        }
      }
    }
  } else if (is_kill(f.kind)) {
    const size_t node = f.nodes.front();
    if (Status s = cluster_.start(node, "restart after SIGKILL"); !s) {
      problem(fmt::format("cannot restart node {}: {}", cluster_.node(node).id, s.message()));
    }
    log("restarted node {} (pid {})", cluster_.node(node).id, cluster_.node(node).pid);
  } else {
    const size_t node = f.nodes.front();
    cluster_.cont(node);
    log("SIGCONT node {}", cluster_.node(node).id);
  }
  f.healed = true;
  f.healed_at = Clock::now();
}

void Run::fault_phase(Workload& w, Clock::time_point end) {
  // The first faults: one of each kind, in a seeded order, so that even a
  // short run has them all; then kinds at random.
  schedule_ = kinds_;
  for (size_t i = schedule_.size(); i > 1; i--)
    std::swap(schedule_[i - 1], schedule_[rng_.below(i)]);
  std::reverse(schedule_.begin(), schedule_.end());  // popped from the back
  auto next_fault_at = Clock::now() + random_ms(500, 1000);
  // GCC's maybe-uninitialized misfires on std::optional here: plain flags.
  bool have_next_kind = false;
  FaultKind next_kind = FaultKind::kKill;
  bool waiting = false;
  Clock::time_point waiting_since;
  auto next_progress = Clock::now() + kProgressEvery;
  const auto recover_timeout = std::chrono::seconds(o_.recover_timeout_s);
  // With --require-all-faults, a slow build (sanitizers) may not fit one
  // fault of each kind into the load time: the load then goes on until the
  // schedule is done, at most as long again.
  const auto hard_end = end + (end - Clock::now());
  auto phase_end = [&] {
    return o_.require_all_faults && !(schedule_.empty() && !have_next_kind) ? hard_end : end;
  };
  bool extended = false;
  while (Clock::now() < phase_end() && !interrupted()) {
    if (!extended && Clock::now() >= end) {
      extended = true;
      log("load goes on past --seconds: {} scheduled fault(s) not injected yet",
          schedule_.size() + (have_next_kind ? 1 : 0));
    }
    reap();
    const auto now = Clock::now();
    for (ActiveFault& f : active_) {
      if (!f.healed && now >= f.heal_at) heal(f);
    }
    for (auto it = active_.begin(); it != active_.end();) {
      if (!it->healed) {
        ++it;
        continue;
      }
      std::string why;
      std::string who = it->nodes.size() == 1
                            ? fmt::format("node {}", cluster_.node(it->nodes.front()).id)
                            : fmt::format("nodes {}", node_set(it->nodes));
      bool all = true;
      for (size_t node : it->nodes) {
        std::string node_why;
        if (!healthy(node, it->catch_up_epoch, &node_why)) {
          all = false;
          why = fmt::format("node {}: {}", cluster_.node(node).id, node_why);
          break;
        }
      }
      if (all) {
        double took = std::chrono::duration<double>(Clock::now() - it->healed_at).count();
        recovery_max_s_ = std::max(recovery_max_s_, took);
        log("{} {} again {:.2f} s after {} (caught up to epoch {})", who,
            it->nodes.size() == 1 ? "serves" : "serve", took,
            is_partition(it->kind) ? "the heal"
            : is_kill(it->kind)    ? "restart"
                                   : "SIGCONT",
            it->catch_up_epoch);
        next_fault_at = std::max(next_fault_at, Clock::now() + random_ms(300, 1500));
        it = active_.erase(it);
      } else if (Clock::now() - it->healed_at > recover_timeout) {
        problem(fmt::format("{} did not serve again within {} s of being healed: {}", who,
                            o_.recover_timeout_s, why));
        it = active_.erase(it);
      } else {
        ++it;
      }
    }
    const size_t down = down_now();
    if (o_.faults && down < cluster_.f() && Clock::now() >= next_fault_at &&
        Clock::now() + milliseconds(300) < phase_end()) {
      if (!have_next_kind) {
        have_next_kind = true;
        if (!schedule_.empty()) {
          next_kind = schedule_.back();
          schedule_.pop_back();
        } else {
          next_kind = kinds_[rng_.below(kinds_.size())];
        }
      }
      if (try_inject(next_kind)) {
        have_next_kind = false;
        waiting = false;
        next_fault_at = Clock::now() + random_ms(300, 1500);
      } else {
        if (!waiting) {
          waiting = true;
          waiting_since = Clock::now();
        }
        if (Clock::now() - waiting_since > kNoPrimaryTimeout) {
          problem(fmt::format(
              "for {} s the cluster was not fit for the next fault ({}): not "
              "every other node serving, or no primary",
              std::chrono::duration_cast<std::chrono::seconds>(kNoPrimaryTimeout).count(),
              fault_name(next_kind)));
          waiting_since = Clock::now();
        }
      }
    }
    if (Clock::now() >= next_progress) {
      log("progress: ops ok={} unknown={} failed={}; faults {}", w.ok(), w.unknown(), w.failed(),
          faults_total_);
      next_progress += kProgressEvery;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

bool Run::heal_everything() {
  for (ActiveFault& f : active_) {
    if (!f.healed) heal(f);
  }
  active_.clear();
  if (NetLab* net = cluster_.net()) {
    if (net->routes() != 0) problem(fmt::format("{} cut paths left after healing", net->routes()));
    check_network("after healing everything");
  }
  for (size_t i = 0; i < cluster_.size(); i++) {
    if (!cluster_.running(i)) {
      crash_restarts_[i] = kCrashRestartsMax;  // one more try; no restart if it crashes again
      down_for_good_[i] = true;
      if (Status s = cluster_.start(i, "restart for the final check"); !s) {
        problem(fmt::format("cannot restart node {}: {}", cluster_.node(i).id, s.message()));
      }
    }
    cluster_.cont(i);
  }
  const auto start = Clock::now();
  const auto deadline = start + kHealTimeout;
  for (;;) {
    if (interrupted()) return false;
    reap();
    std::vector<std::string> waiting;
    for (size_t i = 0; i < cluster_.size(); i++) {
      std::string why;
      if (!healthy(i, 0, &why))
        waiting.push_back(fmt::format("node {}: {}", cluster_.node(i).id, why));
    }
    for (size_t i = 0; i < cluster_.size(); i++) {
      if (!cluster_.running(i)) {
        problem(fmt::format("node {} is down for good (it keeps crashing); cannot heal",
                            cluster_.node(i).id));
        return false;
      }
    }
    if (waiting.empty()) {
      log("healed: every node serves, {:.2f} s after the faults stopped",
          std::chrono::duration<double>(Clock::now() - start).count());
      return true;
    }
    if (Clock::now() >= deadline) {
      problem(fmt::format("not every node served within {} s of healing: {}",
                          std::chrono::duration_cast<std::chrono::seconds>(kHealTimeout).count(),
                          fmt::join(waiting, "; ")));
      return false;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

bool Run::final_reads(std::map<std::string, std::optional<std::string>>& finals,
                      std::vector<ChaosOp>& reads) {
  const std::vector<Endpoint> eps = endpoints();
  const auto deadline = Clock::now() + kFinalReadTimeout;
  for (const std::string& key : workload_keys(o_.keys)) {
    ChaosOp op;
    op.client = o_.clients;  // the reader, after the clients
    op.kind = OpKind::kGet;
    op.key = key;
    op.call_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0_).count();
    uint32_t by = 0;
    Result<std::optional<std::string>> v = ordered_get(eps, key, deadline, by);
    op.ret_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0_).count();
    if (!v.is_ok()) {
      problem(fmt::format("final read of {} failed: {}", key, v.status().message()));
      return false;
    }
    op.node = by;
    op.outcome = Outcome::kOk;
    op.output = *v;
    finals[key] = *v;
    reads.push_back(std::move(op));
  }
  log("read back {} keys with ordered GETs", finals.size());
  return true;
}

bool Run::converge() {
  // Epochs keep coming (lease renewals), so nodes are compared when they
  // report the same applied epoch. Any two reports of one epoch, from any
  // poll, must carry the same state hash.
  std::map<uint64_t, std::map<uint32_t, std::string>> hashes;
  const auto start = Clock::now();
  const auto deadline = start + kConvergeTimeout;
  std::string last;
  for (;;) {
    if (interrupted()) return false;
    std::vector<NodeStatus> round;
    bool all = true;
    for (size_t i = 0; i < cluster_.size(); i++) {
      Result<NodeStatus> s = cluster_.status(i, kStatusTimeout);
      if (!s.is_ok() || !s->serving) {
        all = false;
        continue;
      }
      auto& at = hashes[s->applied_epoch];
      at.emplace(cluster_.node(i).id, s->state_hash);
      for (const auto& [other, hash] : at) {
        if (hash != s->state_hash) {
          problem(
              fmt::format("replicas diverged: at applied epoch {} node {} has state hash {} "
                          "but node {} has {}",
                          s->applied_epoch, cluster_.node(i).id, s->state_hash, other, hash));
          return false;
        }
      }
      round.push_back(*s);
    }
    if (all && !round.empty() && std::all_of(round.begin(), round.end(), [&](const NodeStatus& s) {
          return s.applied_epoch == round[0].applied_epoch;
        })) {
      log("converged: all {} nodes at applied epoch {} with state hash {} ({:.2f} s)", round.size(),
          round[0].applied_epoch, round[0].state_hash,
          std::chrono::duration<double>(Clock::now() - start).count());
      return true;
    }
    last.clear();
    for (const NodeStatus& s : round) {
      last += fmt::format(" [epoch {} hash {} role {}]", s.applied_epoch, s.state_hash, s.role);
    }
    if (Clock::now() >= deadline) {
      problem(fmt::format(
          "nodes did not reach the same applied epoch within {} s; last:{}",
          std::chrono::duration_cast<std::chrono::seconds>(kConvergeTimeout).count(), last));
      return false;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

void Run::replica_reads(const std::map<std::string, std::optional<std::string>>& finals) {
  const std::vector<Endpoint> eps = endpoints();
  size_t mismatches = 0;
  for (const Endpoint& e : eps) {
    for (const auto& [key, want] : finals) {
      Result<std::optional<std::string>> got = local_get(e, key);
      if (!got.is_ok()) {
        problem(fmt::format("local read of {} on node {} failed: {}", key, e.node_id,
                            got.status().message()));
        return;
      }
      if (*got != want) {
        mismatches++;
        problem(fmt::format("node {} holds {} = {}, the ordered read gave {}", e.node_id, key,
                            check::describe_value(*got), check::describe_value(want)));
      }
    }
  }
  if (mismatches == 0) log("replicas agree: every node's local state holds the values read back");
}

int Run::main() {
  const std::string started_at =
      fmt::format("{:%Y-%m-%dT%H:%M:%S}", fmt::localtime(std::time(nullptr)));
  std::printf(
      "maroon-chaos: seed %llu, %u nodes (f=%zu), %u clients, %u keys, %.0f s, lease %llu ms, dir "
      "%s\n"
      "  t=0 is %s (node logs use wall-clock time)\n"
      "  rerun: maroon-chaos --maroon %s --dir %s --seconds %g --nodes %u --clients %u --keys %u "
      "--seed %llu --lease-ms %llu%s\n",
      static_cast<unsigned long long>(o_.seed), o_.nodes, cluster_.f(), o_.clients, o_.keys,
      o_.seconds, static_cast<unsigned long long>(o_.lease_ms), o_.dir.c_str(), started_at.c_str(),
      o_.maroon.c_str(), o_.dir.c_str(), o_.seconds, o_.nodes, o_.clients, o_.keys,
      static_cast<unsigned long long>(o_.seed), static_cast<unsigned long long>(o_.lease_ms),
      o_.partitions ? " --partitions" : "");
  if (const NetLab* net = cluster_.net()) {
    std::printf(
        "  network: bridge %s (%s, root namespace %s); namespaces %s..%s, nodes at %s..%s\n",
        net->bridge().c_str(), net->subnet().c_str(), net->root_address().c_str(),
        net->node(0).ns.c_str(), net->node(net->size() - 1).ns.c_str(),
        net->node(0).address.c_str(), net->node(net->size() - 1).address.c_str());
  }
  std::fflush(stdout);
  if (o_.faults && cluster_.f() == 0) {
    log("note: {} node(s) tolerate no fault; running without faults", o_.nodes);
    o_.faults = false;
  }
  const auto run_start = Clock::now();
  bool ok = start_all();
  std::vector<ChaosOp> ops;
  std::map<std::string, std::optional<std::string>> finals;
  uint64_t odd_replies = 0;
  double load_seconds = 0;
  if (ok) {
    log("cluster serving; starting {} clients", o_.clients);
    WorkloadOptions wo;
    wo.nodes = endpoints();
    wo.clients = o_.clients;
    wo.keys = o_.keys;
    wo.seed = o_.seed;
    wo.op_timeout = milliseconds(o_.op_timeout_ms);
    wo.t0 = t0_;
    Workload w(wo);
    const auto load_start = Clock::now();
    w.start();
    fault_phase(w, load_start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(o_.seconds)));
    log("stopping the clients (each finishes its op in flight, at most {} ms)", o_.op_timeout_ms);
    w.stop(interrupted());
    load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
    odd_replies = w.odd_replies();
    ops = w.take_ops();
    log("clients stopped: ops ok={} unknown={} failed={}", w.ok(), w.unknown(), w.failed());
    if (odd_replies > 0) problem(fmt::format("{} replies did not fit their op", odd_replies));
  }
  auto stop_interrupted = [&] {
    log("interrupted by signal {}: stopping the nodes", g_signal.load());
    cluster_.shutdown(kShutdownTimeout);
    for (const std::string& p : cluster_.remove_network()) std::printf("problem: %s\n", p.c_str());
    std::printf("maroon-chaos: interrupted; run directory kept: %s\n", o_.dir.c_str());
    return 130;
  };
  if (interrupted()) return stop_interrupted();
  bool healed = ok && heal_everything();
  std::vector<ChaosOp> reads;
  bool read_back = healed && final_reads(finals, reads);
  bool converged = healed && converge();
  if (converged && read_back) replica_reads(finals);
  if (interrupted()) return stop_interrupted();
  log("stopping the nodes (SIGTERM)");
  for (std::string& p : cluster_.shutdown(kShutdownTimeout)) problem(std::move(p));
  std::string net_line;
  if (const NetLab* net = cluster_.net()) {
    const NetLab::ProbeStats st = net->stats();
    std::vector<std::string> left = cluster_.remove_network();
    for (std::string& p : left) problem(std::move(p));
    log("network removed{}", left.empty() ? "" : " (with problems)");
    net_line = fmt::format(
        "network checked {} times: {} open paths delivered, {} cut paths blocked; {} TCP connects "
        "across a new cut failed, {} got through after the heal; removed: {}",
        st.matrices, st.delivered, st.blocked, tcp_cut_checks_, tcp_heal_checks_,
        left.empty() ? "yes" : "NO");
  }

  // The checks.
  std::vector<ChaosOp> all = ops;
  all.insert(all.end(), reads.begin(), reads.end());
  {
    std::ofstream out(fs::path(o_.dir) / "history.tsv", std::ios::trunc);
    out << format_history(all);
  }
  WriteCheck writes;
  if (read_back) {
    writes = check_acknowledged_writes(all, finals, counter_keys(o_.keys));
    for (const std::string& p : writes.problems) problem(p);
  }
  check::CheckResult lin;
  bool checked = false;
  const auto check_start = Clock::now();
  if (ok) {
    check::CheckOptions co;
    co.steps_max = o_.check_steps_max;
    lin = check::check_kv_history(to_checker_history(all), co);
    checked = true;
  }
  const double check_seconds = std::chrono::duration<double>(Clock::now() - check_start).count();

  uint64_t n_ok = 0, n_unknown = 0, n_failed = 0;
  std::map<std::string, uint64_t> by_kind;
  for (const ChaosOp& op : ops) {
    n_ok += op.outcome == Outcome::kOk;
    n_unknown += op.outcome == Outcome::kUnknown;
    n_failed += op.outcome == Outcome::kFailed;
    by_kind[op_kind_name(op.kind)]++;
  }
  std::string kinds;
  for (const auto& [k, n] : by_kind) kinds += fmt::format(" {}={}", k, n);
  std::string fault_counts;
  for (FaultKind k : kAllFaultKinds)
    fault_counts += fmt::format(" {}={}", fault_name(k), faults_[k]);
  if (o_.require_all_faults) {
    for (FaultKind k : kinds_) {
      if (faults_[k] == 0)
        problem(fmt::format("--require-all-faults: no {} fault was injected", fault_name(k)));
    }
  }
  const bool linearizable = checked && lin.verdict == check::Verdict::kLinearizable;
  const bool pass = problems_.empty() && linearizable && read_back && converged && writes.lost == 0;

  std::printf("\n=== maroon-chaos summary (seed %llu) ===\n",
              static_cast<unsigned long long>(o_.seed));
  std::printf("duration: %.1f s total, %.1f s of load, check %.2f s\n",
              std::chrono::duration<double>(Clock::now() - run_start).count(), load_seconds,
              check_seconds);
  std::printf("ops: %zu (ok=%llu unknown=%llu failed=%llu;%s), %.0f ok/s\n", ops.size(),
              static_cast<unsigned long long>(n_ok), static_cast<unsigned long long>(n_unknown),
              static_cast<unsigned long long>(n_failed), kinds.c_str(),
              load_seconds > 0 ? static_cast<double>(n_ok) / load_seconds : 0.0);
  std::printf("faults: %llu (%s), slowest recovery %.2f s\n",
              static_cast<unsigned long long>(faults_total_), fault_counts.c_str() + 1,
              recovery_max_s_);
  if (!net_line.empty()) std::printf("%s\n", net_line.c_str());
  std::printf("converged: %s\n", converged ? "yes" : "no");
  if (read_back) {
    std::printf("lost=%zu (%zu acknowledged writes on %zu keys)\n", writes.lost,
                writes.acknowledged_writes, writes.keys);
  } else {
    std::printf("lost=? (keys not read back)\n");
  }
  if (checked) {
    std::printf("linearizable: %s (%s, %llu search steps)\n", linearizable ? "yes" : "no",
                check::verdict_name(lin.verdict), static_cast<unsigned long long>(lin.steps));
    if (!linearizable) std::printf("%s\n", lin.explanation.c_str());
  } else {
    std::printf("linearizable: not checked\n");
  }
  for (const std::string& p : problems_) std::printf("problem: %s\n", p.c_str());
  if (pass) {
    if (!o_.keep_data) {
      // The WALs take hundreds of MB; a passing run keeps its logs and history.
      for (size_t i = 0; i < cluster_.size(); i++) {
        std::error_code ec;
        fs::remove_all(fs::path(o_.dir) / fmt::format("node-{}", cluster_.node(i).id), ec);
      }
    }
    std::printf("result: PASS\n");
  } else {
    std::printf("result: FAIL; run directory kept: %s (node-N.log, history.tsv)\n", o_.dir.c_str());
  }
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace maroon::chaos

int main(int argc, char** argv) {
  using namespace maroon::chaos;
  std::optional<Options> o = parse(argc, argv);
  if (!o) return 2;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  if (!std::filesystem::exists(o->maroon, ec)) {
    std::fprintf(stderr, "maroon-chaos: %s: no such file\n", o->maroon.c_str());
    return 2;
  }
  o->maroon = std::filesystem::absolute(o->maroon).string();
  o->dir = std::filesystem::absolute(o->dir).lexically_normal().string();
  if (maroon::Status s = prepare_dir(o->dir); !s) {
    std::fprintf(stderr, "maroon-chaos: %s\n", s.message().c_str());
    return 2;
  }
  ClusterSpec spec;
  spec.maroon = o->maroon;
  spec.dir = o->dir;
  spec.nodes = o->nodes;
  spec.tick_ms = o->tick_ms;
  spec.lease_ms = o->lease_ms;
  spec.netns = o->partitions;
  maroon::Result<LocalCluster> cluster = LocalCluster::create(spec);
  if (!cluster.is_ok()) {
    if (o->partitions && cluster.status().code() == maroon::Code::kUnavailable) {
      // ctest's SKIP_RETURN_CODE.
      std::printf("skipped: network namespaces unavailable (%s)\n",
                  cluster.status().message().c_str());
      return 77;
    }
    std::fprintf(stderr, "maroon-chaos: %s\n", cluster.status().message().c_str());
    return o->partitions ? 1 : 2;
  }
  Run run(*o, std::move(cluster).value());
  return run.main();
}
