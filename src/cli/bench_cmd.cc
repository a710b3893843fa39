// `maroon bench`: a native-protocol load generator. Keeps `pipeline` requests
// in flight on each of `connections` connections for `seconds`, then prints
// throughput and latency percentiles. Bounded in time and in memory.
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <string_view>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "app/kv/kv_op.h"
#include "cli/commands.h"
#include "client/native_client.h"
#include "maroon/prng.h"

namespace maroon::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kLatencySamplesMaxPerThread = 4'000'000;
constexpr unsigned kWeightMax = 1'000'000;

struct MixEntry {
  kv::OpType type;
  unsigned weight;
};

Result<std::vector<MixEntry>> parse_mix(const std::string& mix) {
  std::vector<MixEntry> out;
  size_t pos = 0;
  while (pos <= mix.size()) {
    size_t comma = mix.find(',', pos);
    std::string item = mix.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    std::string name = item;
    unsigned weight = 1;
    if (size_t colon = item.find(':'); colon != std::string::npos) {
      name = item.substr(0, colon);
      std::string_view digits = std::string_view(item).substr(colon + 1);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), weight);
      if (ec != std::errc() || end != digits.data() + digits.size() || weight > kWeightMax) {
        return invalid_argument(fmt::format("bad weight in --mix: '{}' (0 to {})", item, kWeightMax));
      }
    }
    kv::OpType type;
    if (name == "set") type = kv::OpType::kSet;
    else if (name == "get") type = kv::OpType::kGet;
    else if (name == "incr") type = kv::OpType::kIncrBy;
    else if (name == "del") type = kv::OpType::kDel;
    else return invalid_argument("unknown op in --mix: '" + name + "' (set, get, incr, del)");
    if (weight > 0) out.push_back({type, weight});
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (out.empty()) return invalid_argument("--mix names no op");
  return out;
}

struct ThreadResult {
  uint64_t ok = 0;
  uint64_t errors = 0;
  uint64_t no_quorum = 0;        // of errors: refused, not executed (no quorum)
  uint64_t outcome_unknown = 0;  // of errors: sent, no result in time
  std::string first_error;
  std::vector<uint32_t> latencies_us;
};

struct Conn {
  client::NativeConnection conn;
  std::deque<std::pair<uint64_t, Clock::time_point>> sent;  // request id order
};

unsigned threads_total(const BenchOptions& o) {
  return std::min(o.connections, std::max(1u, std::thread::hardware_concurrency()));
}

void run_thread(const BenchOptions& o, const client::Options& client_options,
                const std::vector<MixEntry>& mix, unsigned connections, uint64_t seed,
                Clock::time_point deadline, ThreadResult& result, std::atomic<bool>& failed) {
  std::vector<Conn> conns;
  for (unsigned i = 0; i < connections; i++) {
    // Connections spread over the ports given (the nodes of a cluster).
    const uint16_t port = o.native_ports.empty()
                              ? o.native_port
                              : o.native_ports[(seed + i) % o.native_ports.size()];
    auto c = client::NativeConnection::connect(o.host, port, client_options);
    if (!c) {
      result.first_error = c.status().to_string();
      failed = true;
      return;
    }
    conns.push_back(Conn{std::move(c).value(), {}});
  }
  Prng prng(seed);
  uint64_t total_weight = 0;
  for (auto& m : mix) total_weight += m.weight;
  std::string value(o.value_bytes, 'v');
  std::string key;
  std::vector<client::Response> responses;
  std::vector<pollfd> fds(conns.size());
  result.latencies_us.reserve(std::min<size_t>(kLatencySamplesMaxPerThread, 1 << 20));

  // Open loop (--rate): ops are due on a fixed schedule, and an op's latency
  // counts from when it was due, so a slow server is not hidden by the
  // client waiting for it (coordinated omission).
  const bool paced = o.rate > 0;
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
      paced ? static_cast<double>(threads_total(o)) / o.rate : 0.0));
  auto next_due = Clock::now();
  bool sending = true;
  while (true) {
    auto now = Clock::now();
    if (now >= deadline) sending = false;
    size_t in_flight = 0;
    for (auto& c : conns) {
      while (sending && c.conn.in_flight() < o.pipeline && (!paced || next_due <= now)) {
        uint64_t pick = prng.below(total_weight);
        kv::OpType type = mix.back().type;
        for (auto& m : mix) {
          if (pick < m.weight) {
            type = m.type;
            break;
          }
          pick -= m.weight;
        }
        key = fmt::format("key:{:012}", prng.below(o.keys));
        kv::Op op;
        op.type = type;
        op.keys = {key};
        if (type == kv::OpType::kSet) op.values = {value};
        if (type == kv::OpType::kIncrBy) op.delta = 1;
        uint64_t id = c.conn.send(op);
        c.sent.emplace_back(id, paced ? next_due : now);
        next_due += interval;
      }
      responses.clear();
      auto polled = c.conn.poll(responses, std::chrono::milliseconds(0));
      if (!polled) {
        if (result.first_error.empty()) result.first_error = polled.status().to_string();
        failed = true;
        return;
      }
      auto done_at = Clock::now();
      for (auto& r : responses) {
        // Responses may complete out of order; find the send time by id.
        auto it = std::find_if(c.sent.begin(), c.sent.end(),
                               [&](const auto& s) { return s.first == r.request_id; });
        if (it != c.sent.end()) {
          if (result.latencies_us.size() < kLatencySamplesMaxPerThread) {
            result.latencies_us.push_back(static_cast<uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(done_at - it->second).count()));
          }
          c.sent.erase(it);
        }
        if (r.code == Code::kOk) {
          result.ok++;
        } else {
          result.errors++;
          if (r.code == Code::kNoQuorum) result.no_quorum++;
          if (r.code == Code::kOutcomeUnknown) result.outcome_unknown++;
          if (result.first_error.empty()) result.first_error = r.status().to_string();
        }
      }
      in_flight += c.conn.in_flight();
    }
    if (!sending && in_flight == 0) return;
    if (!sending && Clock::now() > deadline + std::chrono::seconds(10)) {
      if (result.first_error.empty()) result.first_error = "responses missing 10 s after the end";
      failed = true;
      return;
    }
    for (size_t i = 0; i < conns.size(); i++) {
      fds[i] = pollfd{conns[i].conn.fd(),
                      static_cast<short>(POLLIN | (conns[i].conn.unsent_bytes() ? POLLOUT : 0)), 0};
    }
    ::poll(fds.data(), fds.size(), 1);
  }
}

uint32_t percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

}  // namespace

int run_bench(const BenchOptions& o) {
  auto mix = parse_mix(o.mix);
  if (!mix) {
    std::fprintf(stderr, "maroon bench: %s\n", mix.status().message().c_str());
    return 2;
  }
  client::Options client_options;
  client_options.client_name = "maroon-bench";
  client_options.user = o.user;
  client_options.password = o.password;
  if (o.tls) {
    if (o.cacert.empty()) {
      std::fprintf(
          stderr,
          "maroon bench: --tls needs --cacert FILE (the CA the server's certificate chains to)\n");
      return 2;
    }
    Result<std::shared_ptr<const client::ClientTls>> tls =
        client::ClientTls::load(o.cacert, o.cert, o.key);
    if (!tls) {
      std::fprintf(stderr, "maroon bench: %s\n", tls.status().message().c_str());
      return 2;
    }
    client_options.tls = std::move(tls).value();
  }
  unsigned threads = threads_total(o);
  fmt::print(
      "maroon bench: {}:{}{} mix={} connections={} pipeline={} keys={} value={}B for {}s ({} "
      "threads){}\n",
      o.host,
      o.native_ports.empty() ? fmt::to_string(o.native_port)
                             : fmt::format("{}", fmt::join(o.native_ports, ",")),
      o.tls ? " (TLS)" : "", o.mix, o.connections, o.pipeline, o.keys, o.value_bytes, o.seconds,
      threads, o.rate > 0 ? fmt::format(", open loop at {:.0f} ops/s", o.rate) : std::string());
  std::fflush(stdout);
  auto start = Clock::now();
  auto deadline = start + std::chrono::microseconds(static_cast<int64_t>(o.seconds * 1e6));
  std::vector<ThreadResult> results(threads);
  std::vector<std::thread> pool;
  std::atomic<bool> failed{false};
  for (unsigned t = 0; t < threads; t++) {
    unsigned n = o.connections / threads + (t < o.connections % threads ? 1 : 0);
    pool.emplace_back(run_thread, std::cref(o), std::cref(client_options), std::cref(*mix), n,
                      0x5eed + t, deadline, std::ref(results[t]), std::ref(failed));
  }
  for (auto& th : pool) th.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  ThreadResult all;
  for (auto& r : results) {
    all.ok += r.ok;
    all.errors += r.errors;
    all.no_quorum += r.no_quorum;
    all.outcome_unknown += r.outcome_unknown;
    if (all.first_error.empty()) all.first_error = r.first_error;
    all.latencies_us.insert(all.latencies_us.end(), r.latencies_us.begin(), r.latencies_us.end());
  }
  std::sort(all.latencies_us.begin(), all.latencies_us.end());
  fmt::print("ops: {} ok, {} errors in {:.2f} s\n", all.ok, all.errors, elapsed);
  if (all.no_quorum + all.outcome_unknown > 0) {
    fmt::print(
        "unavailable: {} no quorum (not executed), {} outcome unknown (no result within "
        "unavailable_after_ms)\n",
        all.no_quorum, all.outcome_unknown);
  }
  // Only successful ops count: fast refusals (overload) must not inflate it.
  fmt::print("throughput: {:.0f} ops/s\n", static_cast<double>(all.ok) / elapsed);
  fmt::print("latency: p50 {} us, p99 {} us, p999 {} us, max {} us\n",
             percentile(all.latencies_us, 0.50), percentile(all.latencies_us, 0.99),
             percentile(all.latencies_us, 0.999),
             all.latencies_us.empty() ? 0 : all.latencies_us.back());
  if (!all.first_error.empty()) fmt::print("first error: {}\n", all.first_error);
  return failed || all.errors > 0 ? 1 : 0;
}

}  // namespace maroon::cli
