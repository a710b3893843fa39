#include "workload.h"

#include <fmt/format.h>

#include <algorithm>

#include "app/kv/kv_op.h"
#include "client/native_client.h"
#include "maroon/assert.h"
#include "maroon/prng.h"

namespace maroon::chaos {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kPollSlice = std::chrono::milliseconds(100);
constexpr auto kRetryPause = std::chrono::milliseconds(20);
constexpr auto kNoNodePause = std::chrono::milliseconds(50);

int64_t micros_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}

// kUnavailable is ambiguous: refusals before the tx got an id (or after its
// range was sealed) were not executed; anything else (a result no longer
// kept, a WAL failure with the tx in flight) may have been. Only the known
// refusals count as failed.
bool refused_before_execution(const client::Response& r) {
  if (r.code == Code::kOverloaded || r.code == Code::kInvalidArgument ||
      r.code == Code::kTooLarge) {
    return true;
  }
  if (r.code != Code::kUnavailable) return false;
  static const char* const kRefusals[] = {
      "not executed",               // the gateway's range was sealed
      "the node is shutting down",  // Driver::submit
      "the node is starting",       //
      "the gateway is leasing",     // Gateway::submit, before an id is assigned
      "the WAL failed",             // read-only node refusing new writes
  };
  for (const char* prefix : kRefusals) {
    if (r.error.starts_with(prefix)) return true;
  }
  return false;
}

struct CallResult {
  Outcome outcome = Outcome::kUnknown;
  client::Response response;
  std::string error;
};

// Sends one request and waits for its response until `deadline`.
CallResult call_once(client::NativeConnection& conn, const std::string& op_bytes, bool read_only,
                     Clock::time_point deadline, std::chrono::milliseconds timeout,
                     const std::atomic<bool>* abandon) {
  const uint64_t id = conn.send(AppId::kKv, op_bytes, read_only);
  std::vector<client::Response> got;
  for (;;) {
    if (abandon != nullptr && abandon->load()) {
      return {Outcome::kUnknown, {}, "abandoned: the run was interrupted"};
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      return {Outcome::kUnknown, {}, fmt::format("no answer within {} ms", timeout.count())};
    }
    auto slice = std::min<Clock::duration>(deadline - now, kPollSlice);
    auto n = conn.poll(got, std::chrono::duration_cast<std::chrono::milliseconds>(slice) +
                                std::chrono::milliseconds(1));
    if (!n.is_ok()) return {Outcome::kUnknown, {}, n.status().to_string()};
    for (client::Response& r : got) {
      if (r.request_id != id) continue;
      if (r.code == Code::kOk) return {Outcome::kOk, std::move(r), ""};
      std::string error = r.status().to_string();
      return {refused_before_execution(r) ? Outcome::kFailed : Outcome::kUnknown, std::move(r),
              std::move(error)};
    }
    got.clear();
  }
}

Result<client::NativeConnection> connect(const Endpoint& e, std::chrono::milliseconds timeout,
                                         const std::string& name) {
  client::Options options;
  options.connect_timeout = timeout;
  options.client_name = name;
  return client::NativeConnection::connect(e.host, e.native_port, options);
}

// Fills op's outputs from an ok response; false if the reply is not one the
// op can produce (a protocol bug, reported as such).
bool take_reply(ChaosOp& op, const client::Response& r) {
  Result<kv::Reply> reply = kv::decode_reply(r.reply);
  if (!reply.is_ok()) {
    op.error = "undecodable reply: " + reply.status().to_string();
    return false;
  }
  using Kind = kv::Reply::Kind;
  switch (op.kind) {
    case OpKind::kGet:
      if (reply->kind == Kind::kValue) {
        op.output = reply->value;
        return true;
      }
      if (reply->kind == Kind::kNil) {
        op.output = std::nullopt;
        return true;
      }
      break;
    case OpKind::kSet:
      if (reply->kind == Kind::kOk) return true;
      break;
    case OpKind::kCas:
      if (reply->kind == Kind::kOk) {
        op.cas_swapped = true;
        return true;
      }
      if (reply->kind == Kind::kError && reply->error == Code::kConflict) {
        op.cas_swapped = false;
        return true;
      }
      break;
    case OpKind::kIncr:
      if (reply->kind == Kind::kInt) {
        op.output = std::to_string(reply->integer);
        return true;
      }
      if (reply->kind == Kind::kError && reply->error == Code::kWrongType) {
        op.output = std::nullopt;
        return true;
      }
      break;
  }
  op.error = fmt::format("unexpected reply kind {} to {}", static_cast<int>(reply->kind),
                         op_kind_name(op.kind));
  return false;
}

std::string encode(const ChaosOp& op) {
  kv::Op k;
  k.keys.push_back(op.key);
  switch (op.kind) {
    case OpKind::kGet:
      k.type = kv::OpType::kGet;
      break;
    case OpKind::kSet:
      k.type = kv::OpType::kSet;
      k.values.push_back(op.value);
      break;
    case OpKind::kCas:
      k.type = kv::OpType::kCas;
      k.values.push_back(op.value);
      if (op.expected) k.expected = std::string_view(*op.expected);
      break;
    case OpKind::kIncr:
      k.type = kv::OpType::kIncrBy;
      k.delta = 1;
      break;
  }
  MAROON_ASSERT(kv::validate(k).is_ok());
  return kv::encode_op(k);
}

}  // namespace

std::vector<std::string> workload_keys(uint32_t keys) {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < keys; i++) {
    out.push_back(fmt::format("{}-{}", i % 4 == 3 ? "ctr" : "reg", i));
  }
  return out;
}

std::set<std::string> counter_keys(uint32_t keys) {
  std::set<std::string> out;
  for (const std::string& k : workload_keys(keys)) {
    if (k.starts_with("ctr-")) out.insert(k);
  }
  return out;
}

Workload::Workload(WorkloadOptions options)
    : o_(std::move(options)), keys_(workload_keys(o_.keys)), counters_(counter_keys(o_.keys)) {
  MAROON_ASSERT(!o_.nodes.empty() && o_.clients > 0 && o_.keys > 0);
  per_client_.resize(o_.clients);
}

Workload::~Workload() { stop(true); }

void Workload::start() {
  MAROON_ASSERT(threads_.empty());
  for (uint32_t c = 0; c < o_.clients; c++) threads_.emplace_back([this, c] { client_main(c); });
}

void Workload::stop(bool abandon) {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (abandon) abandon_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::vector<ChaosOp> Workload::take_ops() {
  std::vector<ChaosOp> all;
  for (auto& ops : per_client_) {
    std::move(ops.begin(), ops.end(), std::back_inserter(all));
    ops.clear();
  }
  return all;
}

bool Workload::pause(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, d, [&] { return stopping_.load(); });
}

void Workload::client_main(uint32_t client) {
  Prng rng(o_.seed * 0x9e3779b97f4a7c15ULL + client + 1);
  const size_t n = o_.nodes.size();
  size_t node = client % n;
  std::optional<client::NativeConnection> conn;
  std::map<std::string, std::optional<std::string>> last_seen;
  uint64_t seq = 0;
  std::vector<ChaosOp>& ops = per_client_[client];
  const std::string name = fmt::format("maroon-chaos-c{}", client);
  while (!stopping_.load()) {
    if (!conn) {
      for (size_t k = 0; k < n && !conn && !stopping_.load(); k++) {
        size_t candidate = (node + k) % n;
        auto c = connect(o_.nodes[candidate], o_.connect_timeout, name);
        if (c.is_ok()) {
          conn.emplace(std::move(c).value());
          node = candidate;
        }
      }
      if (!conn) {
        pause(kNoNodePause);
        continue;
      }
    }
    ChaosOp op;
    op.client = client;
    op.node = o_.nodes[node].node_id;
    op.key = keys_[rng.below(keys_.size())];
    const uint64_t dice = rng.below(100);
    if (counters_.contains(op.key)) {
      op.kind = dice < 50 ? OpKind::kIncr : OpKind::kGet;
    } else if (dice < 45) {
      op.kind = OpKind::kSet;
      op.value = fmt::format("c{}-{}", client, ++seq);
    } else if (dice < 85) {
      op.kind = OpKind::kGet;
    } else {
      op.kind = OpKind::kCas;
      op.value = fmt::format("c{}-{}", client, ++seq);
      op.expected = last_seen[op.key];
    }
    const std::string bytes = encode(op);
    op.call_us = micros_since(o_.t0);
    CallResult r = call_once(*conn, bytes, /*read_only=*/false, Clock::now() + o_.op_timeout,
                             o_.op_timeout, &abandon_);
    op.ret_us = micros_since(o_.t0);
    op.outcome = r.outcome;
    op.error = r.error;
    if (op.outcome == Outcome::kOk && !take_reply(op, r.response)) {
      odd_replies_++;
      op.outcome = Outcome::kUnknown;
    }
    switch (op.outcome) {
      case Outcome::kOk:
        ok_++;
        if (op.kind == OpKind::kGet) last_seen[op.key] = op.output;
        if (op.kind == OpKind::kSet || (op.kind == OpKind::kCas && op.cas_swapped))
          last_seen[op.key] = op.value;
        break;
      case Outcome::kFailed:
        failed_++;
        // Refused (a node without a lease, sealed, shutting down): another
        // node may serve, so move on, after a short pause.
        conn.reset();
        node = (node + 1) % n;
        pause(kRetryPause);
        break;
      case Outcome::kUnknown:
        unknown_++;
        // A late response must not be taken for the next op's: new connection.
        conn.reset();
        node = (node + 1) % n;
        break;
    }
    ops.push_back(std::move(op));
  }
}

Result<std::optional<std::string>> ordered_get(const std::vector<Endpoint>& nodes,
                                               const std::string& key, Clock::time_point deadline,
                                               uint32_t& answered_by) {
  ChaosOp op;
  op.kind = OpKind::kGet;
  op.key = key;
  const std::string bytes = encode(op);
  std::string last_error = "no attempt";
  constexpr auto kTimeout = std::chrono::milliseconds(3000);
  for (size_t attempt = 0; Clock::now() < deadline; attempt++) {
    const Endpoint& e = nodes[attempt % nodes.size()];
    auto c = connect(e, std::chrono::milliseconds(1000), "maroon-chaos-reader");
    if (!c.is_ok()) {
      last_error = c.status().to_string();
      continue;
    }
    CallResult r =
        call_once(*c, bytes, false, std::min(deadline, Clock::now() + kTimeout), kTimeout, nullptr);
    if (r.outcome != Outcome::kOk) {
      last_error = fmt::format("node {}: {}", e.node_id, r.error);
      continue;
    }
    if (!take_reply(op, r.response)) return unavailable(op.error);
    answered_by = e.node_id;
    return op.output;
  }
  return unavailable("no answer before the deadline; last: " + last_error);
}

Result<std::optional<std::string>> local_get(const Endpoint& node, const std::string& key) {
  ChaosOp op;
  op.kind = OpKind::kGet;
  op.key = key;
  constexpr auto kTimeout = std::chrono::milliseconds(3000);
  auto c = connect(node, std::chrono::milliseconds(1000), "maroon-chaos-replica-reader");
  if (!c.is_ok()) return c.status();
  CallResult r =
      call_once(*c, encode(op), /*read_only=*/true, Clock::now() + kTimeout, kTimeout, nullptr);
  if (r.outcome != Outcome::kOk) return unavailable(r.error);
  if (!take_reply(op, r.response)) return unavailable(op.error);
  return op.output;
}

}  // namespace maroon::chaos
