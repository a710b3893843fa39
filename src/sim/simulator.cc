#include "sim/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <variant>

#include "check/linearizability.h"
#include "common/assert.h"
#include "common/hash.h"
#include "common/prng.h"
#include "common/tick_clock.h"
#include "host/replica_host.h"
#include "storage/fault_env.h"
#include "vr/codec.h"
#include "sim/kv_service.h"

namespace maroon::sim {

using vr::ClientId;
using vr::ClientReply;
using vr::ClientRequest;
using vr::ReplicaId;
using vr::ReplicaMessage;

namespace {

// Clients and the admin live at addresses above every replica id.
constexpr uint64_t kClientBase = 1'000'000;
constexpr uint64_t kAdminClient = 999'999;
// Far above any healthy run's pending events: more means messages multiply.
constexpr size_t kEventsMax = 2'000'000;

int64_t uniform(Prng& prng, int64_t lo, int64_t hi) {
  MAROON_ASSERT(lo <= hi);
  return lo + static_cast<int64_t>(prng.below(static_cast<uint64_t>(hi - lo) + 1));
}

// Exponentially distributed gap with the given mean (for fault arrivals).
int64_t exponential(Prng& prng, int64_t mean_us) {
  double u = (static_cast<double>(prng.next() >> 11) + 0.5) * 0x1.0p-53;
  return std::max<int64_t>(1, static_cast<int64_t>(-std::log(u) * static_cast<double>(mean_us)));
}

std::string describe_message(const ReplicaMessage& m) {
  const vr::Header& h = vr::header_of(m);
  std::string s = fmt::format("{} e{} v{}", vr::message_name(m), h.epoch.value(), h.view.value());
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        auto ops = [](const vr::LogSuffix& l) {
          return l.entries.empty() ? fmt::format("after {}", l.after.value())
                                   : fmt::format("ops {}..{}", l.after.value() + 1, l.last().value());
        };
        if constexpr (std::is_same_v<T, vr::Prepare>) {
          s += fmt::format(" {} commit {}", ops(x.log), x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::PrepareOk>) {
          s += fmt::format(" op {}", x.op.value());
        } else if constexpr (std::is_same_v<T, vr::Commit>) {
          s += fmt::format(" commit {}", x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::DoViewChange>) {
          s += fmt::format(" lnv {} {} commit {}", x.last_normal_view.value(), ops(x.log),
                           x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::StartView>) {
          s += fmt::format(" {} commit {}", ops(x.log), x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::RecoveryResponse>) {
          s += fmt::format(" primary {} {} commit {}", x.from_primary, ops(x.log), x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::GetState>) {
          s += fmt::format(" after {}", x.after.value());
        } else if constexpr (std::is_same_v<T, vr::NewState>) {
          s += fmt::format(" {} commit {} head {}{}", ops(x.log), x.commit.value(), x.head.value(),
                           x.checkpoint ? fmt::format(" checkpoint {}", x.checkpoint->op.value())
                                        : "");
        } else if constexpr (std::is_same_v<T, vr::StartEpoch>) {
          s += fmt::format(" op {} members {}", x.op.value(), x.members.size());
        }
      },
      m);
  return s;
}

const char* kind_name(check::KvOpKind k) {
  switch (k) {
    case check::KvOpKind::kGet: return "get";
    case check::KvOpKind::kPut: return "put";
    case check::KvOpKind::kAppend: return "append";
    case check::KvOpKind::kCas: return "cas";
    case check::KvOpKind::kIncr: return "incr";
  }
  return "?";
}

class Simulation {
 public:
  Simulation(const SimSettings& s, size_t trace_lines, bool trace_stdout)
      : s_(s), prng_(s.seed ^ 0x5157'5157'5157'5157ull), trace_lines_(trace_lines),
        trace_stdout_(trace_stdout), loss_(s.loss), duplicate_(s.duplicate), stale_(s.stale) {}

  SimResult run();

 private:
  using Body = std::variant<ReplicaMessage, ClientRequest, ClientReply>;

  struct Event {
    int64_t time;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
  };

  // A replica's messages and replies, as its host releases them.
  struct SimSink final : host::ReplicaSink {
    SimSink(Simulation& sim, uint64_t from) : sim(sim), from(from) {}
    void to_replica(vr::Envelope e) override { sim.send(from, e.to.value(), std::move(e.msg)); }
    void to_client(ClientReply r) override {
      const uint64_t client = r.client.value();
      sim.send(from, client, std::move(r));
    }
    Simulation& sim;
    uint64_t from;
  };

  struct Node {
    ReplicaId id;
    bool up = false;
    bool removed = false;  // shut down by a reconfiguration: never restarted
    uint64_t incarnation = 0;
    int64_t tick_us = 0;
    // The replica's disk: the real WAL and superblock (DataDir) on FaultEnv.
    std::unique_ptr<FaultEnv> env;
    std::optional<vr::DurableState> durable_state;  // the newest one durable, for the checker
    std::unique_ptr<KvService> service;
    std::unique_ptr<vr::Replica> replica;
    std::unique_ptr<SimSink> sink;
    std::unique_ptr<host::ReplicaHost> host;
    std::unique_ptr<DataDir> dir;
    std::optional<host::PendingWrite> in_flight;
    bool crash_in_next_write = false;  // a crash waits for the next write to start
    int64_t paused_until = 0;          // the process runs nothing before this time
    std::optional<TickClock> clock;    // ticks from the node's (skewed) monotonic clock
  };

  struct Client {
    ClientId id;
    uint64_t request = 0;
    bool busy = false;
    uint64_t attempt = 0;
    size_t history_index = 0;
    ClientRequest pending;
    std::vector<ReplicaId> members;
    vr::ConfigEpoch epoch{0};
    size_t target = 0;
    std::map<std::string, std::string> seen;  // last value read per key, for cas
  };

  // Events.
  void at(int64_t time, std::function<void()> fn) {
    MAROON_ASSERT(time >= now_);
    queue_.push(Event{time, next_event_seq_++, std::move(fn)});
  }
  // Events that happen whether or not the run is traced go into the
  // fingerprint; detail lines written only when tracing do not.
  void trace(const std::string& line) {
    fingerprint_ = hash64(line, fingerprint_);
    trace_detail(line);
  }
  void trace_detail(const std::string& line) {
    if (trace_lines_ == 0 && !trace_stdout_) return;
    std::string full = fmt::format("{:>10.6f} {}", static_cast<double>(now_) / 1e6, line);
    if (trace_stdout_) {
      fmt::print("{}\n", full);
      std::fflush(stdout);  // a broken invariant aborts: keep every line
    }
    if (trace_lines_ > 0) {
      trace_.push_back(std::move(full));
      if (trace_.size() > trace_lines_) trace_.pop_front();
    }
  }
  bool tracing() const { return trace_lines_ > 0 || trace_stdout_; }
  void fail(const std::string& why) {
    if (!failure_.empty()) return;
    failure_ = fmt::format("t={:.6f}s: {}", static_cast<double>(now_) / 1e6, why);
    // For a debugger: stop at the first violation, with the state intact.
    if (getenv("SIM_ABORT_ON_FAIL") != nullptr) std::abort();
    trace("VIOLATION " + why);
  }

  // Replicas.
  Node& add_node(ReplicaId id);
  void start_node(Node& n, const std::vector<ReplicaId>* bootstrap_members);
  void crash(Node& n);
  void crash_and_restart(Node& n);
  void pause_some();
  // Writes steps to the node's disk, checking that the durable view never
  // goes backwards; returns how many steps became durable.
  size_t write_steps(Node& n, std::vector<WriteStep>& steps);
  void check_states(Node& n, const std::vector<WriteStep>& steps);
  void restart(Node& n);
  void process(Node& n);
  void schedule_tick(Node& n);
  void maybe_sync(Node& n);
  void on_disk_complete(ReplicaId id, uint64_t incarnation);
  void check_replica(Node& n);
  void on_executed(ReplicaId id, const vr::Entry& e);

  // Network.
  void send(uint64_t from, uint64_t to, Body body);
  void deliver(uint64_t from, uint64_t to, const Body& body);
  void deliver_bytes(uint64_t from, uint64_t to, size_t kind, const std::string& bytes);
  bool blocked(uint64_t from, uint64_t to) const { return blocked_.contains({from, to}); }

  // Clients.
  void client_next_op(Client& c);
  void client_send(Client& c);
  void client_on_reply(Client& c, const ClientReply& r);
  void client_timeout(ClientId id, uint64_t request, uint64_t attempt);
  void admin_reconfigure();

  // Faults.
  void schedule_faults();
  void partition_change();
  void crash_some();
  void heal();

  // End.
  bool quiescent_and_converged(std::string* why);
  void final_checks();

  const SimSettings s_;
  Prng prng_;
  size_t trace_lines_;
  bool trace_stdout_;
  std::deque<std::string> trace_;
  uint64_t fingerprint_ = 0;
  std::string failure_;
  SimStats stats_;

  int64_t now_ = 0;
  uint64_t next_event_seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;

  std::map<ReplicaId, Node> nodes_;
  uint32_t next_replica_id_ = 1;
  std::vector<ReplicaId> initial_members_;
  std::set<std::pair<uint64_t, uint64_t>> blocked_;
  double loss_;
  double duplicate_;
  double stale_;
  bool faults_on_ = true;
  bool issuing_ = true;

  std::map<ClientId, Client> clients_;
  std::vector<check::KvOperation> history_;
  bool admin_busy_ = false;

  // Checkers.
  std::map<uint64_t, std::pair<uint64_t, ReplicaId>> committed_;  // op -> (entry hash, first executor)
};

// ---------------------------------------------------------------------------
// Replicas

Simulation::Node& Simulation::add_node(ReplicaId id) {
  auto [it, fresh] = nodes_.try_emplace(id);
  MAROON_ASSERT(fresh);
  Node& n = it->second;
  n.id = id;
  double skew = s_.tick_skew * (2.0 * static_cast<double>(prng_.next() >> 11) * 0x1.0p-53 - 1.0);
  n.tick_us = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(s_.tick_us) * (1.0 + skew)));
  return n;
}

void Simulation::start_node(Node& n, const std::vector<ReplicaId>* bootstrap_members) {
  MAROON_ASSERT(!n.up);
  n.up = true;
  n.incarnation++;
  n.in_flight.reset();
  n.crash_in_next_write = false;
  n.paused_until = 0;
  n.clock.emplace(static_cast<uint64_t>(n.tick_us), kTickCatchUpMax, static_cast<uint64_t>(now_));
  ReplicaId id = n.id;
  if (!n.env) n.env = std::make_unique<FaultEnv>();
  n.service = std::make_unique<KvService>([this, id](const vr::Entry& e) { on_executed(id, e); });
  n.replica = std::make_unique<vr::Replica>(id, s_.options, *n.service, prng_.next());
  n.sink = std::make_unique<SimSink>(*this, id.value());
  n.host = std::make_unique<host::ReplicaHost>(*n.replica, *n.sink, s_.wal_segment_bytes / 4);
  DataDirOptions o;
  o.path = "/replica";
  o.node_id = id.value();
  o.fresh_data_id = prng_.next();
  o.wal.segment_bytes = s_.wal_segment_bytes;
  bool replayed = false;
  auto dir = n.host->open(*n.env, o, replayed);
  if (!dir) {
    fail(fmt::format("r{} replay: {}", id.value(), dir.status().to_string()));
    n.up = false;
    return;
  }
  n.dir = std::move(dir).value();
  const bool initial = std::find(initial_members_.begin(), initial_members_.end(), id) !=
                       initial_members_.end();
  if (bootstrap_members == nullptr && initial && !replayed) {
    // An initial member that crashed before anything was durable is simply
    // bootstrapped again (as an operator would rerun the first start).
    bootstrap_members = &initial_members_;
  }
  if (bootstrap_members != nullptr) {
    n.replica->bootstrap(*bootstrap_members, n.host->out());
  } else if (!replayed) {
    n.replica->join(n.host->out());
  } else {
    n.replica->finish_replay(n.host->out());
  }
  check_replica(n);
  process(n);
  schedule_tick(n);
}

void Simulation::schedule_tick(Node& n) {
  ReplicaId id = n.id;
  uint64_t inc = n.incarnation;
  at(now_ + n.tick_us, [this, id, inc] {
    Node& n = nodes_.at(id);
    if (!n.up || n.incarnation != inc) return;
    if (now_ < n.paused_until) {
      // A paused process (SIGSTOP, a VM pause, a stalled loop) runs nothing;
      // when it wakes, its driver runs every tick its monotonic clock says
      // it missed, as the real driver's TickClock does.
      at(n.paused_until, [this, id, inc] {
        Node& n = nodes_.at(id);
        if (!n.up || n.incarnation != inc) return;
        const uint64_t due = n.clock->due(static_cast<uint64_t>(now_));
        for (uint64_t i = 0; i < due && n.up; i++) {
          n.replica->tick(n.host->out());
          check_replica(n);
          process(n);
        }
        if (n.up && n.incarnation == inc) schedule_tick(n);
      });
      return;
    }
    const uint64_t due = n.clock->due(static_cast<uint64_t>(now_));
    for (uint64_t i = 0; i < due; i++) {
      n.replica->tick(n.host->out());
      check_replica(n);
      process(n);
    }
    schedule_tick(n);
  });
}

void Simulation::pause_some() {
  if (!faults_on_) return;
  at(now_ + exponential(prng_, s_.pause_every_us), [this] { pause_some(); });
  std::vector<ReplicaId> up;
  for (auto& [id, n] : nodes_) {
    if (n.up && now_ >= n.paused_until) up.push_back(id);
  }
  if (up.empty()) return;
  Node& n = nodes_.at(up[prng_.below(up.size())]);
  n.paused_until = now_ + uniform(prng_, 10'000, s_.pause_max_us);
  stats_.pauses++;
  trace(fmt::format("r{} PAUSED for {} ms", n.id.value(), (n.paused_until - now_) / 1000));
}

void Simulation::crash(Node& n) {
  MAROON_ASSERT(n.up);
  // A write in flight may have reached the disk in part: whole steps of it,
  // then maybe some sectors of the next (its sync never returned).
  size_t kept = 0;
  bool torn = false;
  if (s_.crash_keeps_prefix && n.in_flight) {
    std::vector<WriteStep>& steps = n.in_flight->steps;
    const size_t k = prng_.below(steps.size() + 1);
    std::vector<WriteStep> prefix;
    for (size_t i = 0; i < k; i++) prefix.push_back(std::move(steps[i]));
    kept = write_steps(n, prefix);
    if (kept == k && k < steps.size() && prng_.chance(0.5)) {
      torn = true;
      std::vector<WriteStep> next;
      next.push_back(std::move(steps[k]));
      // (Its state, if any, is not recorded as durable: the superblock keeps
      // its previous copy unless the torn write happened to land whole.)
      n.env->inject_sync_errors(1);
      (void)n.dir->write(next);
    }
    if (kept > 0 || torn) stats_.crash_prefixes_kept++;
  }
  trace(fmt::format("r{} CRASH (keeps {} steps of a write in flight{})", n.id.value(), kept,
                    torn ? ", and a torn one" : ""));
  stats_.crashes++;
  n.env->crash(prng_, /*tear=*/true);
  n.up = false;
  n.incarnation++;
  n.in_flight.reset();
  n.dir.reset();
  n.host.reset();
  n.sink.reset();
  n.replica.reset();
  n.service.reset();
}

void Simulation::restart(Node& n) {
  if (n.up || n.removed) return;
  trace(fmt::format("r{} RESTART", n.id.value()));
  start_node(n, nullptr);
}

void Simulation::process(Node& n) {
  n.host->drain();
  maybe_sync(n);
}

void Simulation::maybe_sync(Node& n) {
  std::optional<host::PendingWrite> w = n.host->take_write();
  if (!w) return;
  n.in_flight = std::move(w);
  ReplicaId id = n.id;
  uint64_t inc = n.incarnation;
  const int64_t done = now_ + uniform(prng_, s_.disk_min_us, s_.disk_max_us);
  at(done, [this, id, inc] { on_disk_complete(id, inc); });
  if (n.crash_in_next_write && faults_on_) {
    at(uniform(prng_, now_, done - 1), [this, id, inc] {
      Node& n = nodes_.at(id);
      if (n.up && n.incarnation == inc && faults_on_) crash_and_restart(n);
    });
  }
}

void Simulation::on_disk_complete(ReplicaId id, uint64_t incarnation) {
  Node& n = nodes_.at(id);
  if (!n.up || n.incarnation != incarnation) return;
  if (now_ < n.paused_until) {
    at(n.paused_until, [this, id, incarnation] { on_disk_complete(id, incarnation); });
    return;
  }
  MAROON_ASSERT(n.in_flight);
  host::PendingWrite w = std::move(*n.in_flight);
  n.in_flight.reset();
  if (write_steps(n, w.steps) != w.steps.size()) return;
  n.host->written(w.last_seq, [&] { maybe_sync(n); });
  check_replica(n);
  process(n);
}

size_t Simulation::write_steps(Node& n, std::vector<WriteStep>& steps) {
  check_states(n, steps);
  size_t done = 0;
  if (Status st = n.dir->write(steps, &done); !st) {
    fail(fmt::format("r{} write: {}", n.id.value(), st.to_string()));
  }
  return done;
}

void Simulation::check_states(Node& n, const std::vector<WriteStep>& steps) {
  for (const WriteStep& step : steps) {
    if (!step.state) continue;
    // The durable view never goes backwards (a new epoch starts at view 0).
    Result<vr::DurableRecord> rec = vr::decode_record(*step.state);
    if (!rec || !std::holds_alternative<vr::DurableState>(*rec)) {
      fail(fmt::format("r{}: a superblock state that does not decode", n.id.value()));
      return;
    }
    const auto& st = std::get<vr::DurableState>(*rec);
    if (const auto& prev = n.durable_state;
        prev && (st.epoch < prev->epoch || (st.epoch == prev->epoch && st.view < prev->view))) {
      fail(fmt::format("r{}'s durable view went back from e{} v{} to e{} v{}", n.id.value(),
                       prev->epoch.value(), prev->view.value(), st.epoch.value(),
                       st.view.value()));
    }
    n.durable_state = st;
  }
}

void Simulation::check_replica(Node& n) {
  const vr::Replica& r = *n.replica;
  stats_.max_view = std::max(stats_.max_view, r.view().value());
  stats_.max_epoch = std::max(stats_.max_epoch, r.epoch().value());
  stats_.committed_ops = std::max(stats_.committed_ops, r.executed().value());
  if (n.service->violation()) fail(fmt::format("r{}: {}", n.id.value(), *n.service->violation()));
}

void Simulation::on_executed(ReplicaId id, const vr::Entry& e) {
  std::string bytes = fmt::format("{}/{}/{}/{}", e.op.value(), e.client.value(),
                                  e.request.value(), static_cast<int>(e.kind));
  uint64_t h = hash64(e.payload, hash64(bytes));
  auto [it, fresh] = committed_.try_emplace(e.op.value(), h, id);
  if (!fresh && it->second.first != h) {
    fail(fmt::format("r{} executed a different entry at op {} than r{} did (client {} request {})",
                     id.value(), e.op.value(), it->second.second.value(), e.client.value(),
                     e.request.value()));
  }
}

// ---------------------------------------------------------------------------
// Network

void Simulation::send(uint64_t from, uint64_t to, Body body) {
  stats_.messages_sent++;
  const bool replica_link = from < kAdminClient && to < kAdminClient;
  if ((replica_link && blocked(from, to)) || prng_.chance(loss_)) {
    stats_.messages_dropped++;
    return;
  }
  // Every message crosses the network as the bytes of the real codecs.
  std::string bytes;
  if (const auto* m = std::get_if<ReplicaMessage>(&body)) {
    vr::encode_message(*m, bytes);
  } else if (const auto* req = std::get_if<ClientRequest>(&body)) {
    vr::encode_client_request(*req, bytes);
  } else {
    vr::encode_client_reply(std::get<ClientReply>(body), bytes);
  }
  const size_t kind = body.index();
  int copies = prng_.chance(duplicate_) ? 2 : 1;
  for (int i = 0; i < copies; i++) {
    int64_t when = now_ + uniform(prng_, s_.delay_min_us, s_.delay_max_us);
    if (stale_ > 0 && prng_.chance(stale_)) {
      stats_.stale_messages++;
      when = now_ + uniform(prng_, s_.delay_max_us, s_.stale_delay_max_us);
    }
    at(when, [this, from, to, kind, bytes] { deliver_bytes(from, to, kind, bytes); });
  }
}

void Simulation::deliver_bytes(uint64_t from, uint64_t to, size_t kind, const std::string& bytes) {
  auto decoded = [&]() -> Result<Body> {
    if (kind == 0) {
      auto m = vr::decode_message(bytes);
      if (!m) return m.status();
      return Body(std::move(m).value());
    }
    if (kind == 1) {
      auto m = vr::decode_client_request(bytes);
      if (!m) return m.status();
      return Body(std::move(m).value());
    }
    auto m = vr::decode_client_reply(bytes);
    if (!m) return m.status();
    return Body(std::move(m).value());
  }();
  if (!decoded) {
    fail(fmt::format("a message from {} to {} does not decode: {}", from, to,
                     decoded.status().to_string()));
    return;
  }
  deliver(from, to, *decoded);
}

void Simulation::deliver(uint64_t from, uint64_t to, const Body& body) {
  if (to >= kAdminClient) {
    auto it = clients_.find(ClientId(to));
    if (it != clients_.end()) client_on_reply(it->second, std::get<ClientReply>(body));
    return;
  }
  // A partition that began while the message was in flight also stops it.
  if (from < kAdminClient && blocked(from, to)) return;
  auto it = nodes_.find(ReplicaId(static_cast<uint32_t>(to)));
  if (it == nodes_.end() || !it->second.up) return;
  if (now_ < it->second.paused_until) {
    // The message waits in the paused process's socket buffer.
    at(it->second.paused_until, [this, from, to, body] { deliver(from, to, body); });
    return;
  }
  const uint64_t event[] = {static_cast<uint64_t>(now_), from, to, body.index()};
  fingerprint_ = hash64(std::string_view(reinterpret_cast<const char*>(event), sizeof(event)),
                        fingerprint_);
  Node& n = it->second;
  if (const auto* m = std::get_if<ReplicaMessage>(&body)) {
    if (tracing()) trace_detail(fmt::format("r{} -> r{} {}", from, to, describe_message(*m)));
    n.replica->step(*m, n.host->out());
  } else {
    const ClientRequest& req = std::get<ClientRequest>(body);
    if (tracing()) {
      trace_detail(fmt::format("c{} -> r{} request {}{}", from, to, req.request.value(),
                               req.read_only ? " (read)" : ""));
    }
    n.replica->on_client_request(req, n.host->out());
  }
  check_replica(n);
  process(n);
}

// ---------------------------------------------------------------------------
// Clients

void Simulation::client_next_op(Client& c) {
  MAROON_ASSERT(!c.busy);
  if (!issuing_ || history_.size() >= s_.history_ops_max) return;
  c.busy = true;
  c.request++;
  c.attempt = 0;
  KvCommand cmd;
  uint64_t roll = prng_.below(100);
  cmd.kind = roll < 30 ? check::KvOpKind::kGet
             : roll < 50 ? check::KvOpKind::kPut
             : roll < 75 ? check::KvOpKind::kAppend
             : roll < 87 ? check::KvOpKind::kCas
                         : check::KvOpKind::kIncr;
  cmd.key = fmt::format("k{}", prng_.below(s_.keys));
  cmd.value = fmt::format("{}.{};", c.id.value() - kClientBase, c.request);
  if (s_.padding_bytes_max > 0 && cmd.kind != check::KvOpKind::kGet) {
    cmd.padding_bytes = prng_.below(s_.padding_bytes_max + 1);
  }
  if (cmd.kind == check::KvOpKind::kCas) {
    auto it = c.seen.find(cmd.key);
    if (it != c.seen.end() && prng_.chance(0.8)) cmd.expected = it->second;
  }
  const bool read_only = cmd.kind == check::KvOpKind::kGet && s_.lease_reads && prng_.chance(0.7);
  check::KvOperation op;
  op.client = c.id.value();
  op.call = now_;
  op.ret = check::kPending;
  op.kind = cmd.kind;
  op.key = cmd.key;
  op.value = cmd.value;
  op.expected = cmd.expected;
  c.history_index = history_.size();
  history_.push_back(std::move(op));
  c.pending = ClientRequest{c.id, vr::RequestNumber(c.request), vr::EntryKind::kRequest, read_only,
                            encode_command(cmd)};
  if (tracing()) {
    trace_detail(fmt::format("c{} begins request {}: {} {}", c.id.value(), c.request,
                             kind_name(cmd.kind), cmd.key));
  }
  client_send(c);
}

void Simulation::client_send(Client& c) {
  MAROON_ASSERT(c.busy && !c.members.empty());
  c.attempt++;
  ReplicaId target = c.members[c.target % c.members.size()];
  send(c.id.value(), target.value(), c.pending);
  ClientId id = c.id;
  uint64_t request = c.request, attempt = c.attempt;
  at(now_ + s_.client_timeout_us, [this, id, request, attempt] { client_timeout(id, request, attempt); });
}

void Simulation::client_timeout(ClientId id, uint64_t request, uint64_t attempt) {
  Client& c = clients_.at(id);
  if (!c.busy || c.request != request || c.attempt != attempt) return;
  c.target++;  // try the next replica
  client_send(c);
}

void Simulation::client_on_reply(Client& c, const ClientReply& r) {
  if (!c.busy || r.request.value() != c.request) return;
  if (r.epoch > c.epoch && !r.members.empty()) {
    c.epoch = r.epoch;
    c.members = r.members;
    c.target = 0;
  }
  auto retry_after = [&](int64_t delay_us) {
    ClientId id = c.id;
    uint64_t request = c.request, attempt = ++c.attempt;
    at(now_ + delay_us, [this, id, request, attempt] {
      Client& c = clients_.at(id);
      if (c.busy && c.request == request && c.attempt == attempt) client_send(c);
    });
  };
  switch (r.code) {
    case vr::ReplyCode::kOk: break;
    case vr::ReplyCode::kNotPrimary: {
      auto it = std::find(c.members.begin(), c.members.end(), r.primary);
      if (r.primary.value() != 0 && it != c.members.end() &&
          c.members[c.target % c.members.size()] != r.primary) {
        c.target = static_cast<size_t>(it - c.members.begin());
      } else {
        c.target++;
      }
      retry_after(5'000);
      return;
    }
    case vr::ReplyCode::kNewConfig:
      if (r.epoch >= c.epoch && !r.members.empty()) c.members = r.members;
      c.target++;
      retry_after(5'000);
      return;
    case vr::ReplyCode::kBusy:
      retry_after(50'000);
      return;
    case vr::ReplyCode::kInvalid:
    case vr::ReplyCode::kEvicted:
      fail(fmt::format("client {} request {} rejected: {}", c.id.value(), c.request, r.result));
      return;
  }
  c.busy = false;
  if (c.id.value() == kAdminClient) {
    admin_busy_ = false;
    stats_.reconfigurations++;
    trace(fmt::format("admin: reconfiguration {} done, epoch {}", c.request, r.epoch.value()));
    return;
  }
  auto result = decode_result(r.result);
  if (!result) {
    fail(fmt::format("client {} request {}: undecodable result", c.id.value(), c.request));
    return;
  }
  check::KvOperation& op = history_[c.history_index];
  op.ret = now_;
  op.output = result->output;
  op.ok = result->ok;
  if (op.kind == check::KvOpKind::kGet && result->output) c.seen[op.key] = *result->output;
  stats_.ops_completed++;
  if (tracing()) trace_detail(fmt::format("c{} done request {}", c.id.value(), c.request));
  ClientId id = c.id;
  at(now_ + uniform(prng_, 0, s_.client_think_us_max), [this, id] {
    Client& c = clients_.at(id);
    if (!c.busy) client_next_op(c);
  });
}

void Simulation::admin_reconfigure() {
  if (!faults_on_) return;
  at(now_ + exponential(prng_, s_.reconfigure_every_us), [this] { admin_reconfigure(); });
  if (admin_busy_) return;
  Client& a = clients_.at(ClientId(kAdminClient));
  std::vector<ReplicaId> members = a.members;
  uint64_t choice = prng_.below(3);
  if (choice == 0 && members.size() < vr::limits::replicas_max) {
    ReplicaId fresh(next_replica_id_++);
    Node& n = add_node(fresh);
    start_node(n, nullptr);  // joins: waits for StartEpoch
    members.push_back(fresh);
  } else if (choice == 1 && members.size() > 1) {
    // Ids are never reused: a removed replica is gone for good.
    members.erase(members.begin() + static_cast<ptrdiff_t>(prng_.below(members.size())));
  } else {
    ReplicaId fresh(next_replica_id_++);
    Node& n = add_node(fresh);
    start_node(n, nullptr);
    members[prng_.below(members.size())] = fresh;
  }
  std::string desc;
  for (ReplicaId r : members) desc += fmt::format(" r{}", r.value());
  trace("admin: reconfigure to" + desc);
  admin_busy_ = true;
  a.busy = true;
  a.request++;
  a.attempt = 0;
  a.pending = ClientRequest{a.id, vr::RequestNumber(a.request), vr::EntryKind::kReconfigure, false,
                            vr::encode_members(members)};
  client_send(a);
}

// ---------------------------------------------------------------------------
// Faults

void Simulation::schedule_faults() {
  if (s_.partition_every_us > 0) {
    at(exponential(prng_, s_.partition_every_us), [this] { partition_change(); });
  }
  if (s_.crash_every_us > 0) at(exponential(prng_, s_.crash_every_us), [this] { crash_some(); });
  if (s_.pause_every_us > 0) at(exponential(prng_, s_.pause_every_us), [this] { pause_some(); });
  if (s_.reconfigure_every_us > 0) {
    at(exponential(prng_, s_.reconfigure_every_us), [this] { admin_reconfigure(); });
  }
}

void Simulation::partition_change() {
  if (!faults_on_) return;
  at(now_ + exponential(prng_, s_.partition_every_us), [this] { partition_change(); });
  blocked_.clear();
  if (prng_.chance(0.4)) {
    trace("partition healed");
    return;
  }
  std::vector<uint64_t> ids;
  for (auto& [id, n] : nodes_) ids.push_back(id.value());
  if (ids.size() < 2) return;
  std::set<uint64_t> side;
  for (uint64_t id : ids) {
    if (prng_.chance(0.5)) side.insert(id);
  }
  bool one_way = s_.asymmetric_partitions && prng_.chance(0.5);
  for (uint64_t a : ids) {
    for (uint64_t b : ids) {
      if (side.contains(a) && !side.contains(b)) {
        blocked_.insert({a, b});
        if (!one_way) blocked_.insert({b, a});
      }
    }
  }
  stats_.partitions++;
  std::string desc;
  for (uint64_t id : side) desc += fmt::format(" r{}", id);
  trace(fmt::format("partition{}: {{{} }} vs the rest", one_way ? " (one-way, outbound)" : "", desc));
}

void Simulation::crash_some() {
  if (!faults_on_) return;
  at(now_ + exponential(prng_, s_.crash_every_us), [this] { crash_some(); });
  std::vector<ReplicaId> up;
  for (auto& [id, n] : nodes_) {
    if (n.up) up.push_back(id);
  }
  if (up.empty()) return;
  Node& n = nodes_.at(up[prng_.below(up.size())]);
  if (s_.crash_keeps_prefix && !n.in_flight && prng_.chance(0.5)) {
    // Crash in the middle of the node's next write instead: a crash that
    // keeps part of a write is where a wrong record order shows.
    n.crash_in_next_write = true;
    return;
  }
  crash_and_restart(n);
}

void Simulation::crash_and_restart(Node& n) {
  n.crash_in_next_write = false;
  crash(n);
  ReplicaId id = n.id;
  at(now_ + uniform(prng_, s_.restart_min_us, s_.restart_max_us), [this, id] {
    Node& n = nodes_.at(id);
    if (faults_on_) restart(n);
  });
}

void Simulation::heal() {
  trace("faults stop: partitions heal, loss ends, crashed replicas restart");
  faults_on_ = false;
  blocked_.clear();
  loss_ = 0;
  duplicate_ = 0;
  stale_ = 0;
  for (auto& [id, n] : nodes_) {
    if (!n.up) restart(n);
  }
}

// ---------------------------------------------------------------------------
// Run

bool Simulation::quiescent_and_converged(std::string* why) {
  for (auto& [id, c] : clients_) {
    if (c.busy) {
      *why = fmt::format("client {} still waits for request {}", id.value(), c.request);
      return false;
    }
  }
  // The group is whatever the newest epoch says.
  const vr::Replica* newest = nullptr;
  for (auto& [id, n] : nodes_) {
    if (n.up && (newest == nullptr || n.replica->epoch() > newest->epoch())) newest = n.replica.get();
  }
  if (newest == nullptr) {
    *why = "no replica is up";
    return false;
  }
  const vr::Replica* first = nullptr;
  for (ReplicaId m : newest->members()) {
    Node& n = nodes_.at(m);
    const vr::Replica& r = *n.replica;
    if (!n.up || r.status() != vr::ReplicaStatus::kNormal || r.epoch() != newest->epoch()) {
      *why = fmt::format("r{} is {} in epoch {}", m.value(), vr::status_name(r.status()),
                         r.epoch().value());
      return false;
    }
    if (first == nullptr) {
      first = &r;
      continue;
    }
    if (r.view() != first->view() || r.executed() != first->executed() ||
        r.executed() != r.op() || nodes_.at(first->id()).service->state_hash() != n.service->state_hash()) {
      *why = fmt::format("r{} (view {} op {} executed {}) differs from r{} (view {} op {} executed {})",
                         m.value(), r.view().value(), r.op().value(), r.executed().value(),
                         first->id().value(), first->view().value(), first->op().value(),
                         first->executed().value());
      return false;
    }
  }
  return true;
}

SimResult Simulation::run() {
  // Initial group.
  for (size_t i = 0; i < s_.replicas; i++) initial_members_.push_back(ReplicaId(next_replica_id_++));
  for (ReplicaId id : initial_members_) add_node(id);
  for (ReplicaId id : initial_members_) start_node(nodes_.at(id), &initial_members_);
  for (size_t i = 0; i < s_.clients; i++) {
    ClientId id(kClientBase + i + 1);
    Client& c = clients_[id];
    c.id = id;
    c.members = initial_members_;
    c.target = prng_.below(initial_members_.size());
    at(uniform(prng_, 0, 50'000), [this, id] { client_next_op(clients_.at(id)); });
  }
  {
    Client& a = clients_[ClientId(kAdminClient)];
    a.id = ClientId(kAdminClient);
    a.members = initial_members_;
  }
  schedule_faults();
  at(s_.safety_us, [this] { heal(); });
  // Liveness: everything in flight at the heal, and a few more ops per
  // client, must finish within the bound; then the group must converge.
  const int64_t issue_until = s_.safety_us + std::min<int64_t>(s_.liveness_us / 2, 2'000'000);
  const int64_t deadline = s_.safety_us + s_.liveness_us;
  at(issue_until, [this] { issuing_ = false; });
  bool converged = false;
  std::string why;
  int64_t next_convergence_check = issue_until;
  while (!queue_.empty() && failure_.empty()) {
    if (queue_.size() > kEventsMax) {
      fail(fmt::format("message storm: {} events pending", queue_.size()));
      break;
    }
    Event e = queue_.top();
    queue_.pop();
    MAROON_ASSERT(e.time >= now_);
    now_ = e.time;
    if (now_ > deadline) break;
    e.fn();
    if (now_ >= next_convergence_check) {
      next_convergence_check = now_ + 100'000;
      if (quiescent_and_converged(&why)) {
        converged = true;
        break;
      }
    }
  }
  stats_.simulated_us = now_;
  if (failure_.empty() && !converged) {
    std::string nodes;
    for (auto& [id, n] : nodes_) {
      if (!n.up) {
        nodes += fmt::format("; r{} down", id.value());
        continue;
      }
      const vr::Replica& r = *n.replica;
      nodes += fmt::format("; r{} {} e{} v{} op {} commit {} executed {} log after {}", id.value(),
                           vr::status_name(r.status()), r.epoch().value(), r.view().value(),
                           r.op().value(), r.commit().value(), r.executed().value(),
                           r.log_after().value());
    }
    fail(fmt::format("liveness: not done {:.1f}s after faults stopped: {}{}",
                     static_cast<double>(s_.liveness_us) / 1e6, why, nodes));
  }
  if (failure_.empty()) final_checks();
  for (const check::KvOperation& op : history_) {
    if (op.ret == check::kPending) stats_.ops_pending++;
  }
  stats_.fingerprint = fingerprint_;
  SimResult result;
  result.ok = failure_.empty();
  result.failure = failure_;
  result.stats = stats_;
  result.trace.assign(trace_.begin(), trace_.end());
  return result;
}

void Simulation::final_checks() {
  check::CheckResult lin = check::check_kv_history(history_);
  if (lin.verdict == check::Verdict::kNotLinearizable) {
    fail(fmt::format("history not linearizable on key {}: {}", lin.key, lin.explanation));
  } else if (lin.verdict == check::Verdict::kUnknown) {
    fail(fmt::format("linearizability check gave up on key {} after {} steps", lin.key, lin.steps));
  }
}

}  // namespace

SimSettings SimSettings::random(uint64_t seed) {
  Prng p(seed);
  SimSettings s;
  s.seed = seed;
  static constexpr size_t kSizes[] = {1, 2, 3, 3, 3, 4, 5, 5, 6, 7};
  s.replicas = kSizes[p.below(std::size(kSizes))];
  s.clients = 1 + p.below(6);
  s.keys = 1 + p.below(5);
  s.loss = p.chance(0.3) ? 0 : static_cast<double>(p.below(31)) / 100.0;
  s.duplicate = p.chance(0.5) ? 0 : static_cast<double>(p.below(11)) / 100.0;
  s.delay_min_us = static_cast<int64_t>(50 + p.below(500));
  s.delay_max_us = s.delay_min_us + static_cast<int64_t>(p.below(p.chance(0.2) ? 200'000 : 10'000));
  s.disk_min_us = static_cast<int64_t>(20 + p.below(200));
  s.disk_max_us = s.disk_min_us + static_cast<int64_t>(p.below(5'000));
  s.partition_every_us = p.chance(0.3) ? 0 : static_cast<int64_t>(200'000 + p.below(2'000'000));
  s.asymmetric_partitions = p.chance(0.5);
  s.crash_every_us = p.chance(0.3) ? 0 : static_cast<int64_t>(200'000 + p.below(2'000'000));
  s.restart_min_us = static_cast<int64_t>(10'000 + p.below(300'000));
  s.restart_max_us = s.restart_min_us + static_cast<int64_t>(p.below(2'000'000));
  s.tick_skew = static_cast<double>(p.below(16)) / 100.0;
  s.reconfigure_every_us = p.chance(0.6) ? 0 : static_cast<int64_t>(500'000 + p.below(2'000'000));
  s.lease_reads = p.chance(0.5);
  s.client_timeout_us = static_cast<int64_t>(100'000 + p.below(400'000));
  s.safety_us = static_cast<int64_t>(1'000'000 + p.below(3'000'000));
  s.liveness_us = 30'000'000;
  vr::Options& o = s.options;
  o.heartbeat_ticks = static_cast<uint32_t>(1 + p.below(3));
  o.lease_ticks = o.heartbeat_ticks * 3 + static_cast<uint32_t>(p.below(10));
  o.view_change_timeout_ticks = o.lease_ticks + static_cast<uint32_t>(p.below(20));
  o.retry_ticks = static_cast<uint32_t>(1 + p.below(8));
  o.prepare_batch_ops_max = 1 + p.below(16);
  o.pipeline_ops_max = 1 + p.below(64);
  o.request_queue_max = 1 + p.below(64);
  o.checkpoint_interval_ops = p.chance(0.2) ? 0 : 1 + p.below(100);
  o.state_transfer_ops_max = 1 + p.below(32);
  o.client_table_clients_max = 64;
  // Drawn last, so the draws above stay those of earlier versions' seeds.
  s.stale = p.chance(0.5) ? 0 : static_cast<double>(1 + p.below(50)) / 1000.0;
  s.crash_keeps_prefix = p.chance(0.5);
  o.checkpoint_interval_bytes = p.chance(0.5) ? o.checkpoint_interval_bytes : 1 + p.below(4096);
  // Some seeds write entries large enough that the log fills by bytes long
  // before checkpoint_interval_ops (8 MiB at 100-200 KiB an entry).
  s.padding_bytes_max = p.chance(0.8) ? 0 : 100 * 1024 + p.below(100 * 1024);
  s.pause_every_us = p.chance(0.5) ? 0 : static_cast<int64_t>(300'000 + p.below(3'000'000));
  s.pause_max_us = static_cast<int64_t>(20'000 + p.below(p.chance(0.3) ? 2'000'000 : 300'000));
  // Small segments roll often; a padded seed's writes need room (a view
  // change may write a whole log, up to limits::log_bytes_max, at once).
  // (A log record holds up to log_record_bytes_max plus one entry, so a
  // segment of 2 MiB takes any record. FaultEnv materializes a segment's
  // preallocated bytes, so larger ones cost time.)
  s.wal_segment_bytes = s.padding_bytes_max > 0 ? 16 * 1024 * 1024 : 2 * 1024 * 1024;
  return s;
}

std::string SimSettings::describe() const {
  return fmt::format(
      "seed {}: {} replicas, {} clients, {} keys; loss {:.0f}%, dup {:.0f}%, delay {}..{} us, "
      "disk {}..{} us; partitions every {} ms{}; crashes every {} ms (restart {}..{} ms); "
      "tick skew {:.0f}%; reconfigure every {} ms; lease reads {}; safety {:.1f} s; "
      "heartbeat {} lease {} timeout {} retry {} ticks; batch {} pipeline {} queue {} "
      "checkpoint {} ops/{} bytes transfer {}; stale {:.1f}%; crash keeps prefix {}; padding up to {} "
      "KiB; pauses every {} ms up to {} ms",
      seed, replicas, clients, keys, loss * 100, duplicate * 100, delay_min_us, delay_max_us,
      disk_min_us, disk_max_us, partition_every_us / 1000,
      asymmetric_partitions ? " (some one-way)" : "", crash_every_us / 1000, restart_min_us / 1000,
      restart_max_us / 1000, tick_skew * 100, reconfigure_every_us / 1000,
      lease_reads ? "on" : "off", static_cast<double>(safety_us) / 1e6, options.heartbeat_ticks,
      options.lease_ticks, options.view_change_timeout_ticks, options.retry_ticks,
      options.prepare_batch_ops_max, options.pipeline_ops_max, options.request_queue_max,
      options.checkpoint_interval_ops, options.checkpoint_interval_bytes,
      options.state_transfer_ops_max, stale * 100, crash_keeps_prefix ? "yes" : "no",
      padding_bytes_max / 1024, pause_every_us / 1000, pause_max_us / 1000);
}

SimResult run_simulation(const SimSettings& settings, size_t trace_lines, bool trace_stdout) {
  Simulation sim(settings, trace_lines, trace_stdout);
  return sim.run();
}

}  // namespace maroon::sim
