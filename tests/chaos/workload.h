// maroon-chaos's clients: threads, each with its own native connection to one
// node, one op at a time, every op recorded with its invocation and response
// times and its outcome (chaos_history.h).
//
// Every request, GETs included, is sent WITHOUT the read-only flag: it is
// ordered through the cluster and so linearizable. (A read-only request reads
// the local applied state, which on a backup may be stale.)
//
// Keys: "reg-<i>" registers (SET of a value unique in the run, GET, CAS from
// the value this client last saw) and, every fourth key, "ctr-<i>" counters
// (INCR, GET).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chaos_history.h"
#include "maroon/status.h"

namespace maroon::chaos {

struct Endpoint {
  uint32_t node_id = 0;
  std::string host;
  uint16_t native_port = 0;
};

struct WorkloadOptions {
  std::vector<Endpoint> nodes;
  uint32_t clients = 8;
  uint32_t keys = 8;
  uint64_t seed = 1;
  // No answer within this long: the op's outcome is unknown, and the client
  // moves to another node.
  std::chrono::milliseconds op_timeout{5000};
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::steady_clock::time_point t0;  // time 0 of the history
};

std::vector<std::string> workload_keys(uint32_t keys);
std::set<std::string> counter_keys(uint32_t keys);

class Workload {
 public:
  explicit Workload(WorkloadOptions options);
  ~Workload();
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  void start();
  // Asks the clients to finish their current op and waits for them. With
  // `abandon`, ops in flight are given up at once (as unknown).
  void stop(bool abandon);

  // After stop(): every op of every client, in no particular order.
  std::vector<ChaosOp> take_ops();

  uint64_t ok() const { return ok_.load(); }
  uint64_t failed() const { return failed_.load(); }
  uint64_t unknown() const { return unknown_.load(); }
  // Ok responses whose reply the op cannot produce (counted as unknown too).
  uint64_t odd_replies() const { return odd_replies_.load(); }

 private:
  void client_main(uint32_t client);
  // Waits up to `d`, returning early (false) when asked to stop.
  bool pause(std::chrono::milliseconds d);

  WorkloadOptions o_;
  std::vector<std::string> keys_;
  std::set<std::string> counters_;
  std::vector<std::thread> threads_;
  std::vector<std::vector<ChaosOp>> per_client_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> abandon_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> ok_{0}, failed_{0}, unknown_{0}, odd_replies_{0};
};

// An ordered (non-read-only) GET through any node, retried until it gets an
// answer or the deadline passes. Used for the final read-back.
Result<std::optional<std::string>> ordered_get(const std::vector<Endpoint>& nodes,
                                               const std::string& key,
                                               std::chrono::steady_clock::time_point deadline,
                                               uint32_t& answered_by);

// A read-only GET on one node: its local applied state.
Result<std::optional<std::string>> local_get(const Endpoint& node, const std::string& key);

}  // namespace maroon::chaos
