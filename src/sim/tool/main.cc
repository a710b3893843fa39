// maroon-sim: runs the deterministic simulator.
//   maroon-sim --seed 42            replay one seed (prints its settings and result)
//   maroon-sim --seed 42 --trace    ... printing every event
//   maroon-sim --seeds 1..10000     sweep; a failure prints its seed and the last events
//   maroon-sim --bench --replicas 3 throughput of a fault-free group, and simulator speed
//   maroon-sim --cluster --seed 42  the whole-cluster simulation (nodes, gateways, clients);
//                                   --trace, --seeds A..B and --jobs J work as above
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <mutex>
#include <thread>

#include "sim/cluster_sim.h"
#include "sim/simulator.h"

using namespace maroon;

namespace {

// The seed each thread is running, so that a broken invariant (an abort)
// still tells which seed to replay.
thread_local uint64_t t_seed = 0;
bool g_cluster = false;  // the replay command needs --cluster
bool g_stale = false;    // and --stale

void on_abort(int) {
  char buf[128];
  char digits[24];
  int n = 0;
  uint64_t v = t_seed;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  int len = 0;
  const char* replay = !g_cluster ? "maroon-sim: aborted; replay: maroon-sim --seed "
                       : g_stale
                           ? "maroon-sim: aborted; replay: maroon-sim --cluster --stale --seed "
                           : "maroon-sim: aborted; replay: maroon-sim --cluster --seed ";
  for (const char* p = replay; *p; p++) {
    buf[len++] = *p;
  }
  while (n > 0) buf[len++] = digits[--n];
  buf[len++] = '\n';
  ssize_t ignored = write(2, buf, static_cast<size_t>(len));
  (void)ignored;
  std::signal(SIGABRT, SIG_DFL);
  std::raise(SIGABRT);
}

bool parse_range(const std::string& s, uint64_t& a, uint64_t& b) {
  auto dots = s.find("..");
  if (dots == std::string::npos) return false;
  try {
    a = std::stoull(s.substr(0, dots));
    b = std::stoull(s.substr(dots + 2));
  } catch (...) {
    return false;
  }
  return a <= b;
}

void print_failure(const sim::SimSettings& settings, const sim::SimResult& r, size_t trace_lines) {
  // Rerun with tracing: the run is deterministic, so it fails the same way.
  sim::SimResult traced = sim::run_simulation(settings, trace_lines);
  fmt::print("FAIL {}\n  {}\n", settings.describe(), r.failure);
  if (traced.failure != r.failure) {
    fmt::print("  (the traced rerun differed: {}; this is a determinism bug)\n", traced.failure);
  }
  fmt::print("  last {} events:\n", traced.trace.size());
  for (const std::string& line : traced.trace) fmt::print("    {}\n", line);
  fmt::print("  replay: maroon-sim --seed {}{}\n", settings.seed, "");
}

void print_cluster_failure(const sim::ClusterSettings& settings, const sim::ClusterResult& r,
                           size_t trace_lines) {
  sim::ClusterResult traced = sim::run_cluster_simulation(settings, trace_lines);
  fmt::print("FAIL {}\n  {}\n", settings.describe(), r.failure);
  if (traced.failure != r.failure) {
    fmt::print("  (the traced rerun differed: {}; this is a determinism bug)\n", traced.failure);
  }
  fmt::print("  last {} events:\n", traced.trace.size());
  for (const std::string& line : traced.trace) fmt::print("    {}\n", line);
  fmt::print("  replay: maroon-sim --cluster{} --seed {}\n",
             settings.network.stale > 0 ? " --stale" : "", settings.seed);
}

void print_cluster_result(const sim::ClusterResult& r) {
  const sim::ClusterStats& t = r.stats;
  fmt::print(
      "{}: {:.2f} simulated s, {} ops done ({} unknown: {} applied, {} never), "
      "{} messages ({} dropped, {} through codecs), "
      "{} node crashes ({} kept part of a write, {} fsync failures, {} lost for good, "
      "{} power failures), {} pauses ({} of gateways), {} gateway crashes, {} partitions, "
      "{} seals delivered, {} ranges retired (at most {} kept), {} lag stops, {} unknown-app txs answered, {} two-payload txs answered ({} copies replaced), {} logs lost ({} whole disks; {} recovered), {} snapshots ({} restored, {} installed from peers), {} membership changes ({} nodes retired), view {}, epoch {}, {} txs applied, fingerprint {:016x}\n",
      r.ok ? "ok" : "FAIL", static_cast<double>(t.simulated_us) / 1e6, t.ops_completed,
      t.ops_unknown, t.unknown_applied, t.unknown_never_applied, t.network.sent, t.network.dropped,
      t.messages_coded, t.faults.crashes, t.faults.partial_writes, t.fsync_failures, t.nodes_lost,
      t.power_failures, t.faults.pauses, t.gateway_pauses, t.gateway_crashes, t.network.partitions,
      t.ranges_sealed, t.ranges_retired, t.ranges_kept_max, t.lag_stops, t.unknown_app_results, t.two_payload_results, t.txs_replaced, t.log_losses, t.wipes, t.log_recoveries, t.snapshots, t.snapshot_restores, t.snapshot_installs, t.membership_changes, t.nodes_retired, t.max_view, t.max_epoch, t.txs_applied, t.fingerprint);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"maroon-sim: the deterministic VR simulator"};
  uint64_t seed = 0;
  std::string seeds;
  bool trace = false;
  size_t trace_lines = 300;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
  bool bench = false;
  size_t replicas = 0;
  size_t clients = 32;
  double seconds = 10;
  auto* seed_opt = app.add_option("--seed", seed, "Run one seed");
  app.add_option("--seeds", seeds, "Sweep seeds A..B (inclusive)");
  app.add_flag("--trace", trace, "Print every event of a single seed");
  app.add_option("--trace-lines", trace_lines, "Events shown for a failing seed")
      ->capture_default_str();
  app.add_option("--jobs", jobs, "Parallel runs in a sweep")->capture_default_str();
  app.add_flag("--bench", bench,
               "Fault-free throughput run (with --replicas, --clients, --seconds)");
  app.add_option("--replicas", replicas,
                 "Group size (bench; or override the seed's; with --cluster, the node count)");
  app.add_option("--clients", clients, "Clients (bench)")->capture_default_str();
  app.add_option("--seconds", seconds, "Simulated seconds (bench)")->capture_default_str();
  bool cluster = false;
  app.add_flag("--cluster", cluster,
               "The whole-cluster simulation (nodes, gateways, clients) instead of the VR one");
  bool stale_messages = true;
  app.add_flag("--stale,!--no-stale", stale_messages,
               "With --cluster: deliver the seed's share of messages stale (long delayed; the "
               "default), or not");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGABRT, on_abort);

  if (bench) {
    sim::SimSettings s;
    s.seed = seed;
    s.replicas = replicas == 0 ? 3 : replicas;
    s.clients = clients;
    s.keys = 64;
    s.safety_us = static_cast<int64_t>(seconds * 1e6);
    s.liveness_us = 10'000'000;
    s.network.delay_min_us = 100;
    s.network.delay_max_us = 300;
    s.process.disk_min_us = 500;
    s.process.disk_max_us = 1500;
    s.client_timeout_us = 1'000'000;
    s.client_think_us_max = 0;  // closed loop: each client sends again at once
    s.history_ops_max = 2'000'000;
    auto start = std::chrono::steady_clock::now();
    sim::SimResult r = sim::run_simulation(s);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double sim_s = static_cast<double>(r.stats.simulated_us) / 1e6;
    fmt::print(
        "bench: {} replicas, {} clients, {:.1f} simulated s in {:.2f} wall s = {:.1f} simulated s "
        "per wall s\n  committed ops {} ({:.0f} per simulated s during the run), client ops {}, "
        "messages {}\n  {}\n",
        s.replicas, s.clients, sim_s, wall, sim_s / wall, r.stats.committed_ops,
        static_cast<double>(r.stats.committed_ops) / sim_s, r.stats.ops_completed,
        r.stats.network.sent, r.ok ? "checks passed" : "FAILED: " + r.failure);
    return r.ok ? 0 : 1;
  }

  g_cluster = cluster;
  g_stale = stale_messages;
  if (cluster && bench) {
    fmt::print(stderr, "--bench is for the VR simulation only\n");
    return 2;
  }
  if (cluster && *seed_opt) {
    sim::ClusterSettings s = sim::ClusterSettings::random(seed, stale_messages);
    if (replicas != 0) s.override_nodes(replicas);
    t_seed = seed;
    fmt::print("{}\n", s.describe());
    std::fflush(stdout);  // a broken invariant aborts
    auto start = std::chrono::steady_clock::now();
    sim::ClusterResult r = sim::run_cluster_simulation(s, 0, trace);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    print_cluster_result(r);
    fmt::print("{:.2f} wall s ({:.1f} simulated s per wall s)\n", wall,
               static_cast<double>(r.stats.simulated_us) / 1e6 / wall);
    if (!r.ok) print_cluster_failure(s, r, trace_lines);
    return r.ok ? 0 : 1;
  }

  if (*seed_opt) {
    sim::SimSettings s = sim::SimSettings::random(seed);
    if (replicas != 0) s.replicas = replicas;
    t_seed = seed;
    fmt::print("{}\n", s.describe());
    sim::SimResult r = sim::run_simulation(s, 0, trace);
    fmt::print(
        "{}: {:.2f} simulated s, {} ops done ({} pending: {} executed, {} never ran), {} messages "
        "({} dropped, {} stale), "
        "{} crashes ({} kept part of a sync), {} pauses, {} partitions, {} reconfigurations, {} "
        "evictions, {} logs lost ({} recovered), view {}, epoch {}, {} ops committed, fingerprint {:016x}\n",
        r.ok ? "ok" : "FAIL", static_cast<double>(r.stats.simulated_us) / 1e6,
        r.stats.ops_completed, r.stats.ops_pending, r.stats.ops_resolved_executed,
        r.stats.ops_resolved_never_ran, r.stats.network.sent, r.stats.network.dropped,
        r.stats.network.stale, r.stats.faults.crashes, r.stats.faults.partial_writes,
        r.stats.faults.pauses, r.stats.network.partitions, r.stats.reconfigurations,
        r.stats.evictions, r.stats.log_losses, r.stats.log_recoveries, r.stats.max_view, r.stats.max_epoch, r.stats.committed_ops, r.stats.fingerprint);
    if (!r.ok) print_failure(s, r, trace_lines);
    return r.ok ? 0 : 1;
  }

  uint64_t a = 0, b = 0;
  if (!parse_range(seeds, a, b)) {
    fmt::print(stderr, "give --seed N, --seeds A..B or --bench\n");
    return 2;
  }
  std::atomic<uint64_t> next{a};
  std::atomic<uint64_t> failures{0}, done{0}, sim_us{0}, ops{0};
  // Faults injected, by kind, over the sweep.
  std::atomic<uint64_t> crashes{0}, partial_writes{0}, partitions{0}, stale{0}, dropped{0},
      pauses{0}, reconfigurations{0}, power_failures{0}, clock_steps{0}, nodes_lost{0}, gateway_crashes{0},
      fsync_failures{0}, gateway_pauses{0}, evictions{0}, snapshots{0}, snapshot_restores{0}, snapshot_installs{0};
  // The faults both simulators inject (sim/network.h, sim/faults.h).
  auto add_shared = [&](const sim::NetworkCounters& n, const sim::FaultCounters& f) {
    crashes += f.crashes;
    partial_writes += f.partial_writes;
    pauses += f.pauses;
    partitions += n.partitions;
    dropped += n.dropped;
    stale += n.stale;
  };
  std::mutex print_mu;
  auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    while (true) {
      uint64_t sd = next.fetch_add(1);
      if (sd > b) return;
      t_seed = sd;
      bool ok = true;
      std::function<void()> report;
      if (cluster) {
        sim::ClusterSettings s = sim::ClusterSettings::random(sd, stale_messages);
        if (replicas != 0) s.override_nodes(replicas);
        sim::ClusterResult r = sim::run_cluster_simulation(s);
        sim_us += static_cast<uint64_t>(r.stats.simulated_us);
        ops += r.stats.ops_completed;
        add_shared(r.stats.network, r.stats.faults);
        power_failures += r.stats.power_failures;
        clock_steps += r.stats.clock_steps;
        nodes_lost += r.stats.nodes_lost;
        gateway_crashes += r.stats.gateway_crashes;
        gateway_pauses += r.stats.gateway_pauses;
        fsync_failures += r.stats.fsync_failures;
        snapshots += r.stats.snapshots;
        snapshot_restores += r.stats.snapshot_restores;
        snapshot_installs += r.stats.snapshot_installs;
        ok = r.ok;
        if (!ok) report = [&, s, r] { print_cluster_failure(s, r, trace_lines); };
      } else {
        sim::SimSettings s = sim::SimSettings::random(sd);
        if (replicas != 0) s.replicas = replicas;
        sim::SimResult r = sim::run_simulation(s);
        sim_us += static_cast<uint64_t>(r.stats.simulated_us);
        ops += r.stats.ops_completed;
        add_shared(r.stats.network, r.stats.faults);
        reconfigurations += r.stats.reconfigurations;
        evictions += r.stats.evictions;
        ok = r.ok;
        if (!ok) report = [&, s, r] { print_failure(s, r, trace_lines); };
      }
      uint64_t d = ++done;
      std::lock_guard lock(print_mu);
      if (!ok) {
        failures++;
        report();
      }
      if (d % 1000 == 0) {
        double wall =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        fmt::print("... {} of {} seeds, {} failed, {:.0f} s\n", d, b - a + 1, failures.load(),
                   wall);
        std::fflush(stdout);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < jobs; i++) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{}{} seeds ({}..{}): {} failed; {:.0f} simulated s in {:.1f} wall s; {} client ops\n",
             cluster ? "cluster: " : "", b - a + 1, a, b, failures.load(),
             static_cast<double>(sim_us.load()) / 1e6, wall, ops.load());
  fmt::print(
      "faults: {} crashes ({} kept part of a write in flight), {} partitions, {} messages "
      "dropped, {} delivered stale, {} reconfigurations, {} power failures, {} nodes lost, {} "
      "gateway crashes, {} fsync failures, {} process pauses ({} of gateways), {} client "
      "evictions, {} clock steps; {} snapshots ({} restored, {} installed from peers)\n",
      crashes.load(), partial_writes.load(), partitions.load(), dropped.load(), stale.load(),
      reconfigurations.load(), power_failures.load(), nodes_lost.load(), gateway_crashes.load(),
      fsync_failures.load(), pauses.load(), gateway_pauses.load(), evictions.load(),
      clock_steps.load(), snapshots.load(), snapshot_restores.load(), snapshot_installs.load());
  return failures == 0 ? 0 : 1;
}
