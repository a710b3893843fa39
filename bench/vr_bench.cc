// maroon-vr-bench: committed VR ops per second for a group of replicas in one
// process, each with its own data directory on disk (the real DataDir: WAL
// and superblock, each write step durable before the next, on its own
// thread, as on separate machines), messages delivered in memory at once.
// Each replica runs behind host::ReplicaHost, the durability order the VR
// simulator runs (docs/architecture.md, "One host"). Clients keep a fixed
// number of requests outstanding at the primary.
//
//   maroon-vr-bench --replicas 3 --clients 64 --seconds 5 --dir /tmp/vrbench
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "host/replica_host.h"
#include "storage/data_dir.h"
#include "storage/env.h"
#include "vr/replica.h"

using namespace maroon;
using Clock = std::chrono::steady_clock;

namespace {

class CountingService final : public vr::Service {
 public:
  std::string execute(const vr::Entry&) override { return "ok"; }
  std::string read(std::string_view) override { return {}; }
  std::string snapshot() override { return {}; }
  Status restore(std::string_view) override { return Status::ok(); }
};

struct Completion {
  size_t replica;
  uint64_t last_seq;
};

// One replica's disk: its DataDir, written by its own thread, one write at
// a time (the host never has two in flight).
struct Disk {
  std::unique_ptr<DataDir> dir;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<host::PendingWrite> to_write;
  bool stop = false;
  uint64_t writes = 0;
};

// What the bench's clients see and wait for.
struct Clients {
  std::vector<uint64_t> idle;
  std::unordered_map<uint64_t, Clock::time_point> sent_at;  // by client
  std::vector<double> latencies_us;
  uint64_t replies = 0;
};

// A replica's messages go into the one in-memory network, its replies to
// the clients.
class BenchSink final : public host::ReplicaSink {
 public:
  BenchSink(std::deque<std::pair<size_t, vr::ReplicaMessage>>& network, Clients& clients)
      : network_(network), clients_(clients) {}
  void to_replica(vr::Envelope e) override {
    network_.emplace_back(e.to.value() - 1, std::move(e.msg));
  }
  void to_client(vr::ClientReply r) override {
    if (r.code != vr::ReplyCode::kOk) {
      // Not primary yet (the group starts once its state is durable), or
      // busy: the client sends again.
      if (clients_.sent_at.erase(r.client.value()) != 0) clients_.idle.push_back(r.client.value());
      return;
    }
    clients_.replies++;
    auto it = clients_.sent_at.find(r.client.value());
    if (it != clients_.sent_at.end()) {
      clients_.latencies_us.push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - it->second).count());
      clients_.sent_at.erase(it);
      clients_.idle.push_back(r.client.value());
    }
  }

 private:
  std::deque<std::pair<size_t, vr::ReplicaMessage>>& network_;
  Clients& clients_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"maroon-vr-bench: VR throughput with real storage"};
  size_t n = 3, client_count = 64;
  double seconds = 5;
  std::string dir = "/tmp/maroon-vr-bench";
  size_t payload_bytes = 64;
  app.add_option("--replicas", n)->capture_default_str();
  app.add_option("--clients", client_count, "Requests kept outstanding")->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  app.add_option("--payload", payload_bytes, "Bytes per op")->capture_default_str();
  app.add_option("--dir", dir, "Scratch directory (wiped)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::filesystem::remove_all(dir);
  auto env = std::make_unique<PosixEnv>();
  std::vector<vr::ReplicaId> members;
  for (size_t i = 0; i < n; i++) members.push_back(vr::ReplicaId(static_cast<uint32_t>(i + 1)));
  vr::Options options;
  options.checkpoint_interval_ops = 4096;
  options.pipeline_ops_max = 4096;
  options.prepare_batch_ops_max = 1024;
  options.request_queue_max = 64 * 1024;

  std::deque<std::pair<size_t, vr::ReplicaMessage>> network;
  Clients clients;
  for (uint64_t c = 1; c <= client_count; c++) clients.idle.push_back(c);
  std::vector<uint64_t> next_request_of(client_count + 1, 1);

  std::vector<std::unique_ptr<CountingService>> services;
  std::vector<std::unique_ptr<vr::Replica>> replicas;
  std::vector<std::unique_ptr<BenchSink>> sinks;
  std::vector<std::unique_ptr<host::ReplicaHost>> hosts;
  std::vector<std::unique_ptr<Disk>> disks;
  std::mutex done_mu;
  std::deque<Completion> done;

  for (size_t i = 0; i < n; i++) {
    services.push_back(std::make_unique<CountingService>());
    replicas.push_back(std::make_unique<vr::Replica>(members[i], options, *services[i], i + 1));
    sinks.push_back(std::make_unique<BenchSink>(network, clients));
    hosts.push_back(std::make_unique<host::ReplicaHost>(*replicas[i], *sinks[i]));
    DataDirOptions o;
    o.path = fmt::format("{}/r{}", dir, i + 1);
    o.node_id = i + 1;
    o.fresh_data_id = i + 1;
    bool replayed = false;
    auto data_dir = hosts[i]->open(*env, o, replayed);
    if (!data_dir) {
      fmt::print(stderr, "{}\n", data_dir.status().to_string());
      return 1;
    }
    auto d = std::make_unique<Disk>();
    d->dir = std::move(data_dir).value();
    Disk* dp = d.get();
    d->thread = std::thread([dp, i, &done_mu, &done] {
      std::unique_lock lock(dp->mu);
      while (true) {
        dp->cv.wait(lock, [dp] { return dp->stop || dp->to_write.has_value(); });
        if (!dp->to_write) return;
        host::PendingWrite w = std::move(*dp->to_write);
        dp->to_write.reset();
        lock.unlock();
        Status s = dp->dir->write(w.steps);
        MAROON_ASSERT(s.is_ok());
        {
          std::lock_guard g(done_mu);
          done.push_back(Completion{i, w.last_seq});
        }
        lock.lock();
        dp->writes++;
      }
    });
    disks.push_back(std::move(d));
  }

  const size_t primary = 0;
  auto flush = [&](size_t i) {
    std::optional<host::PendingWrite> w = hosts[i]->take_write();
    if (!w) return;
    Disk& d = *disks[i];
    {
      std::lock_guard g(d.mu);
      d.to_write = std::move(w);
    }
    d.cv.notify_one();
  };
  auto send_request = [&] {
    uint64_t id = clients.idle.back();
    clients.idle.pop_back();
    clients.sent_at[id] = Clock::now();
    replicas[primary]->on_client_request(
        vr::ClientRequest{vr::ClientId(id), vr::RequestNumber(next_request_of[id]++),
                          vr::EntryKind::kRequest, false, std::string(payload_bytes, 'x')},
        hosts[primary]->out());
    hosts[primary]->drain();
  };

  for (size_t i = 0; i < n; i++) {
    replicas[i]->bootstrap(members, hosts[i]->out());
    hosts[i]->drain();
  }
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration<double>(seconds);
  auto next_tick = start;
  uint64_t committed_at_start = 0;
  bool measuring = false;
  Clock::time_point measure_start;
  while (Clock::now() < deadline) {
    if (!measuring && Clock::now() - start > std::chrono::milliseconds(500)) {
      measuring = true;  // after a warm-up
      measure_start = Clock::now();
      committed_at_start = replicas[primary]->commit().value();
      clients.latencies_us.clear();
    }
    if (replicas[primary]->is_primary()) {
      while (!clients.idle.empty()) send_request();
    }
    while (!network.empty()) {
      auto [to, msg] = std::move(network.front());
      network.pop_front();
      replicas[to]->step(msg, hosts[to]->out());
      hosts[to]->drain();
    }
    std::deque<Completion> finished;
    {
      std::lock_guard g(done_mu);
      finished.swap(done);
    }
    for (const Completion& c : finished) {
      // The next write starts before the replica hears of this one.
      hosts[c.replica]->written(c.last_seq, [&] { flush(c.replica); });
    }
    if (Clock::now() >= next_tick) {
      next_tick += std::chrono::milliseconds(10);
      for (size_t i = 0; i < n; i++) {
        replicas[i]->tick(hosts[i]->out());
        hosts[i]->drain();
      }
    }
    for (size_t i = 0; i < n; i++) flush(i);
    if (finished.empty() && network.empty()) std::this_thread::yield();
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - measure_start).count();
  uint64_t committed = replicas[primary]->commit().value() - committed_at_start;
  for (auto& d : disks) {
    {
      std::lock_guard g(d->mu);
      d->stop = true;
    }
    d->cv.notify_one();
    d->thread.join();
  }
  std::vector<double>& latencies_us = clients.latencies_us;
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) {
    return latencies_us.empty() ? 0.0
                                : latencies_us[static_cast<size_t>(p * (latencies_us.size() - 1))];
  };
  uint64_t writes = 0;
  for (auto& d : disks) writes += d->writes;
  fmt::print(
      "vr-bench: {} replicas, each writing its own data directory; {} requests outstanding, "
      "{}-byte ops\n"
      "  committed {} ops in {:.2f} s = {:.0f} ops/s; latency p50 {:.2f} ms, p99 {:.2f} ms; "
      "{} group commits in all ({:.0f} ops per group commit per replica)\n",
      n, client_count, payload_bytes, committed, elapsed, static_cast<double>(committed) / elapsed,
      pct(0.5) / 1000, pct(0.99) / 1000, writes,
      static_cast<double>(committed) * static_cast<double>(n) /
          static_cast<double>(std::max<uint64_t>(writes, 1)));
  std::filesystem::remove_all(dir);
  return 0;
}
