// maroon-vr-bench: committed VR ops per second for a group of replicas in one
// process, each with its own WAL on disk (fdatasync per batch, on its own
// thread, as on separate machines), messages delivered in memory at once.
// Clients keep a fixed number of requests outstanding at the primary.
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
#include <thread>

#include "storage/env.h"
#include "storage/wal.h"
#include "vr/codec.h"
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

// One replica's disk: a WAL written by its own thread.
struct Disk {
  std::unique_ptr<Wal> wal;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_ptr<WalBatch> to_write;
  uint64_t to_write_seq = 0;
  bool stop = false;
  uint64_t syncs = 0;
};

struct Completion {
  size_t replica;
  uint64_t seq;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"maroon-vr-bench: VR throughput with real storage"};
  size_t n = 3, clients = 64;
  double seconds = 5;
  std::string dir = "/tmp/maroon-vr-bench";
  size_t payload_bytes = 64;
  app.add_option("--replicas", n)->capture_default_str();
  app.add_option("--clients", clients, "Requests kept outstanding")->capture_default_str();
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

  std::vector<std::unique_ptr<CountingService>> services;
  std::vector<std::unique_ptr<vr::Replica>> replicas;
  std::vector<std::unique_ptr<Disk>> disks;
  std::vector<vr::Output> outs(n);
  std::vector<std::deque<std::pair<uint64_t, vr::Envelope>>> held(n);
  std::vector<uint64_t> durable(n, 0), last_emitted(n, 0);
  std::vector<std::unique_ptr<WalBatch>> pending(n);
  std::vector<uint64_t> pending_seq(n, 0);
  std::vector<bool> writing(n, false);
  std::mutex done_mu;
  std::deque<Completion> done;

  for (size_t i = 0; i < n; i++) {
    services.push_back(std::make_unique<CountingService>());
    replicas.push_back(std::make_unique<vr::Replica>(members[i], options, *services[i], i + 1));
    auto d = std::make_unique<Disk>();
    auto wal = Wal::open(*env, fmt::format("{}/r{}", dir, i + 1), WalOptions{},
                         [](Lsn, uint8_t, std::string_view) { return Status::ok(); });
    if (!wal) {
      fmt::print(stderr, "{}\n", wal.status().to_string());
      return 1;
    }
    d->wal = std::move(wal).value();
    Disk* dp = d.get();
    d->thread = std::thread([dp, i, &done_mu, &done] {
      std::unique_lock lock(dp->mu);
      while (true) {
        dp->cv.wait(lock, [dp] { return dp->stop || dp->to_write != nullptr; });
        if (dp->to_write == nullptr) return;
        auto batch = std::move(dp->to_write);
        uint64_t seq = dp->to_write_seq;
        lock.unlock();
        Status s = dp->wal->write(*batch);
        MAROON_ASSERT(s.is_ok());
        dp->syncs++;
        {
          std::lock_guard g(done_mu);
          done.push_back(Completion{i, seq});
        }
        lock.lock();
      }
    });
    disks.push_back(std::move(d));
    pending[i] = std::make_unique<WalBatch>();
  }

  std::deque<std::pair<size_t, vr::ReplicaMessage>> network;
  uint64_t replies = 0;
  std::unordered_map<uint64_t, Clock::time_point> sent_at;  // by client
  std::vector<uint64_t> idle_clients;
  std::vector<uint64_t> next_request_of(clients + 1, 1);
  for (uint64_t c = 1; c <= clients; c++) idle_clients.push_back(c);
  std::vector<double> latencies_us;
  const size_t primary = 0;

  auto process = [&](size_t i) {
    vr::Output& out = outs[i];
    for (size_t k = 0; k < out.persist.size(); k++) {
      const vr::DurableRecord& r = out.persist[k];
      std::string payload;
      vr::encode_record(r, payload);
      pending[i]->add(3, payload);
    }
    if (!out.persist.empty()) pending_seq[i] = out.next_seq() - 1;
    uint64_t needed = out.next_seq() - 1;
    for (auto& e : out.send_now) network.emplace_back(e.to.value() - 1, std::move(e.msg));
    for (auto& e : out.send_after_persist) {
      if (needed <= durable[i]) {
        network.emplace_back(e.to.value() - 1, std::move(e.msg));
      } else {
        held[i].emplace_back(needed, std::move(e));
      }
    }
    for (auto& r : out.replies) {
      if (r.code != vr::ReplyCode::kOk) {
        // Not primary yet (the group starts once its state is durable), or
        // busy: the client sends again.
        if (sent_at.erase(r.client.value()) != 0) idle_clients.push_back(r.client.value());
        continue;
      }
      replies++;
      auto it = sent_at.find(r.client.value());
      if (it != sent_at.end()) {
        latencies_us.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - it->second).count());
        sent_at.erase(it);
        idle_clients.push_back(r.client.value());
      }
    }
    out.clear();
  };
  auto flush = [&](size_t i) {
    if (writing[i] || pending_seq[i] <= last_emitted[i]) return;
    Disk& d = *disks[i];
    {
      std::lock_guard g(d.mu);
      d.to_write = std::move(pending[i]);
      d.to_write_seq = pending_seq[i];
    }
    d.cv.notify_one();
    pending[i] = std::make_unique<WalBatch>();
    last_emitted[i] = pending_seq[i];
    writing[i] = true;
  };
  auto send_request = [&] {
    uint64_t id = idle_clients.back();
    idle_clients.pop_back();
    sent_at[id] = Clock::now();
    replicas[primary]->on_client_request(
        vr::ClientRequest{vr::ClientId(id), vr::RequestNumber(next_request_of[id]++),
                          vr::EntryKind::kRequest, false, std::string(payload_bytes, 'x')},
        outs[primary]);
    process(primary);
  };

  for (size_t i = 0; i < n; i++) {
    replicas[i]->bootstrap(members, outs[i]);
    process(i);
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
      latencies_us.clear();
    }
    if (replicas[primary]->is_primary()) {
      while (!idle_clients.empty()) send_request();
    }
    while (!network.empty()) {
      auto [to, msg] = std::move(network.front());
      network.pop_front();
      replicas[to]->step(msg, outs[to]);
      process(to);
    }
    std::deque<Completion> finished;
    {
      std::lock_guard g(done_mu);
      finished.swap(done);
    }
    for (const Completion& c : finished) {
      writing[c.replica] = false;
      durable[c.replica] = c.seq;
      auto& h = held[c.replica];
      while (!h.empty() && h.front().first <= c.seq) {
        network.emplace_back(h.front().second.to.value() - 1, std::move(h.front().second.msg));
        h.pop_front();
      }
      replicas[c.replica]->on_persisted(c.seq, outs[c.replica]);
      process(c.replica);
    }
    if (Clock::now() >= next_tick) {
      next_tick += std::chrono::milliseconds(10);
      for (size_t i = 0; i < n; i++) {
        replicas[i]->tick(outs[i]);
        process(i);
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
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) {
    return latencies_us.empty() ? 0.0
                                : latencies_us[static_cast<size_t>(p * (latencies_us.size() - 1))];
  };
  uint64_t syncs = 0;
  for (auto& d : disks) syncs += d->syncs;
  fmt::print(
      "vr-bench: {} replicas, each fsyncing its own WAL; {} requests outstanding, {}-byte ops\n"
      "  committed {} ops in {:.2f} s = {:.0f} ops/s; latency p50 {:.2f} ms, p99 {:.2f} ms; "
      "{} fdatasyncs in all ({:.0f} ops per sync per replica)\n",
      n, clients, payload_bytes, committed, elapsed, static_cast<double>(committed) / elapsed,
      pct(0.5) / 1000, pct(0.99) / 1000, syncs,
      static_cast<double>(committed) * static_cast<double>(n) / static_cast<double>(std::max<uint64_t>(syncs, 1)));
  std::filesystem::remove_all(dir);
  return 0;
}
