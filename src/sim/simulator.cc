#include "sim/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <variant>

#include "check/linearizability.h"
#include "maroon/assert.h"
#include "common/hash.h"
#include "maroon/prng.h"
#include "host/replica_host.h"
#include "sim/faults.h"
#include "sim/kv_history.h"
#include "sim/kv_service.h"
#include "sim/network.h"
#include "sim/vr_common.h"
#include "sim/world.h"
#include "vr/codec.h"
#include "vr/log_matching.h"

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

class Simulation {
 public:
  Simulation(const SimSettings& s, size_t trace_lines, bool trace_stdout)
      : s_(s),
        world_(s.seed ^ 0x5157'5157'5157'5157ull, trace_lines, trace_stdout),
        net_(world_, s.network,
             [this](uint64_t from, uint64_t to, const Wire& w) { deliver_bytes(from, to, w); }),
        faults_(world_) {
    net_.set_paused_until([this](uint64_t to) -> int64_t {
      auto it = nodes_.find(ReplicaId(static_cast<uint32_t>(to)));
      return it == nodes_.end() || !it->second.up ? 0 : it->second.clock.paused_until();
    });
  }

  SimResult run();

 private:
  using Body = std::variant<ReplicaMessage, ClientRequest, ClientReply>;
  // A message on the wire: the bytes of the real codecs, and which codec.
  struct Wire {
    size_t kind = 0;  // Body's index
    std::string bytes;
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

  // A replica process; its clock ticks from its (skewed) monotonic clock.
  struct Node : Process {
    ReplicaId id;
    bool removed = false;  // shut down by a reconfiguration: never restarted
    // The replica's disk: the real WAL and superblock (DataDir) on FaultEnv.
    Disk disk;
    std::optional<vr::DurableState> durable_state;  // the newest one durable, for the checker
    // Its disk says its log lost records (DataDir::log_lost), not yet recovered.
    bool log_lost = false;
    std::unique_ptr<KvService> service;
    std::unique_ptr<vr::Replica> replica;
    std::unique_ptr<SimSink> sink;
    std::unique_ptr<host::ReplicaHost> host;
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
    // The client's session (0: none yet, or evicted). Without one, the client
    // registers first and sends `after_register` once it has one.
    uint64_t session = 0;
    std::optional<ClientRequest> after_register;
  };

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
  void maybe_lose_log(Node& n);
  void process(Node& n);
  void run_ticks(Node& n, uint64_t due);
  void maybe_sync(Node& n);
  void on_disk_complete(Node& n, host::PendingWrite& w);
  void check_epoch_justified(Node& n);
  void check_lease_read(Node& n);
  void check_replica(Node& n);
  void on_executed(ReplicaId id, const vr::Entry& e, const std::string& result);

  // Network: every message crosses it as the bytes of the real codecs.
  void send(uint64_t from, uint64_t to, const Body& body);
  void deliver_bytes(uint64_t from, uint64_t to, const Wire& w);
  void deliver(uint64_t from, uint64_t to, const Body& body);

  // Clients.
  void client_next_op(Client& c);
  // Sends `req` (its number and session filled in here), registering first
  // if the client has no session.
  void client_start(Client& c, ClientRequest req);
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
  World world_;
  Network<Wire> net_;
  FaultSchedule faults_;
  SimStats stats_;

  std::map<ReplicaId, Node> nodes_;
  uint32_t next_replica_id_ = 1;
  std::vector<ReplicaId> initial_members_;
  // The newest (epoch, view) any replica has been normal in.
  std::pair<vr::ConfigEpoch, vr::ViewNumber> newest_normal_{};
  bool issuing_ = true;

  std::map<ClientId, Client> clients_;
  std::vector<check::KvOperation> history_;
  bool admin_busy_ = false;
  uint64_t checks_ = 0;  // check_replica calls
  // (client, request) -> its first execution; history index -> its request.
  std::map<std::pair<uint64_t, uint64_t>, KnownExecution> executions_;
  std::map<size_t, uint64_t> request_of_op_;

  // Checkers.
  std::map<uint64_t, std::pair<uint64_t, ReplicaId>>
      committed_;  // op -> (entry hash, first executor)
};

// ---------------------------------------------------------------------------
// Replicas

Simulation::Node& Simulation::add_node(ReplicaId id) {
  auto [it, fresh] = nodes_.try_emplace(id);
  MAROON_ASSERT(fresh);
  Node& n = it->second;
  n.id = id;
  n.clock = ProcessClock(s_.process.skewed_tick_us(world_));
  return n;
}

void Simulation::start_node(Node& n, const std::vector<ReplicaId>* bootstrap_members) {
  n.start(world_.now());
  // Half the incarnations run on a disk with Linux's failed-fsync semantics
  // (pages a failed sync could not write are marked clean): with a kill
  // that keeps the page cache, the restart must read past the cache.
  n.disk.env->set_linux_failed_sync(world_.chance(0.5));
  ReplicaId id = n.id;
  n.service = std::make_unique<KvService>(
      [this, id](const vr::Entry& e, const std::string& result) { on_executed(id, e, result); });
  n.replica = std::make_unique<vr::Replica>(id, s_.options, *n.service, world_.next());
  n.sink = std::make_unique<SimSink>(*this, id.value());
  n.host = std::make_unique<host::ReplicaHost>(*n.replica, *n.sink, s_.wal_segment_bytes / 4);
  DataDirOptions o;
  o.path = "/replica";
  o.node_id = id.value();
  o.fresh_data_id = world_.next();
  o.wal.segment_bytes = s_.wal_segment_bytes;
  o.recover_lost_log = true;  // lost only by maybe_lose_log, in groups of 3 or more
  bool replayed = false;
  auto dir = n.host->open(*n.disk.env, o, replayed);
  if (!dir) {
    world_.fail(fmt::format("r{} replay: {}", id.value(), dir.status().to_string()));
    n.stop();
    return;
  }
  n.disk.dir = std::move(dir).value();
  n.log_lost = n.disk.dir->log_lost().has_value();
  const bool initial =
      std::find(initial_members_.begin(), initial_members_.end(), id) != initial_members_.end();
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
    // A lost log may end before the op that began its epoch: it recovers.
    if (!n.log_lost) check_epoch_justified(n);
  }
  check_replica(n);
  process(n);
  start_ticks(world_, n, [this, &n](uint64_t due) { run_ticks(n, due); });
}

void Simulation::run_ticks(Node& n, uint64_t due) {
  for (uint64_t i = 0; i < due && n.up; i++) {
    n.replica->tick(n.host->out());
    check_replica(n);
    process(n);
  }
}

void Simulation::pause_some() {
  std::vector<ReplicaId> up;
  for (auto& [id, n] : nodes_) {
    if (n.up && !n.clock.paused(world_.now())) up.push_back(id);
  }
  if (up.empty()) return;
  Node& n = nodes_.at(up[world_.below(up.size())]);
  pause_process(world_, faults_, n.clock, s_.process, fmt::format("r{}", n.id.value()));
}

void Simulation::crash(Node& n) {
  MAROON_ASSERT(n.up);
  const CrashedWrite c = crash_disk(
      world_, faults_, n.disk, s_.crash_keeps_prefix,
      [&](std::vector<WriteStep>& steps) { return write_steps(n, steps); },
      /*kill_only=*/world_.chance(0.3));
  world_.trace(fmt::format("r{} {} (keeps {} steps of a write in flight{})", n.id.value(),
                           c.kill_only ? "KILLED" : "CRASH", c.kept,
                           c.torn ? ", and a torn one" : ""));
  n.stop();
  n.host.reset();
  n.sink.reset();
  n.replica.reset();
  n.service.reset();
}

void Simulation::restart(Node& n) {
  if (n.up || n.removed) return;
  world_.trace(fmt::format("r{} RESTART", n.id.value()));
  maybe_lose_log(n);
  start_node(n, nullptr);
}

void Simulation::maybe_lose_log(Node& n) {
  if (s_.log_loss_chance == 0 || !faults_.on() || !world_.chance(s_.log_loss_chance)) return;
  // A replica that lost its log is faulty until it recovered: at most f of
  // the group, which does not change meanwhile (admin_reconfigure waits).
  const std::vector<ReplicaId>& members = clients_.at(ClientId(kAdminClient)).members;
  if (admin_busy_ || members.size() < 3 ||
      std::find(members.begin(), members.end(), n.id) == members.end()) {
    return;
  }
  const size_t f = (members.size() - 1) / 2;
  size_t lost = 0;
  for (const auto& [id, m] : nodes_) lost += m.log_lost && id != n.id;
  if (lost >= f) return;
  const std::optional<std::string> removed = lose_log_end(world_, *n.disk.env, "/replica/wal");
  if (!removed) return;
  n.log_lost = true;
  stats_.log_losses++;
  world_.trace(fmt::format("r{} LOSES its log from {}", n.id.value(), *removed));
}

void Simulation::process(Node& n) {
  n.host->drain();
  maybe_sync(n);
}

void Simulation::maybe_sync(Node& n) {
  std::optional<host::PendingWrite> w = n.host->take_write();
  if (!w) return;
  // A write with a durable state before later records (a view or epoch
  // change with the log records around it) is where a wrong record order
  // shows: such writes are cut by a crash more often.
  const bool state_mid_write =
      w->steps.size() > 1 && std::any_of(w->steps.begin(), w->steps.end() - 1,
                                         [](const WriteStep& s) { return s.state.has_value(); });
  if (state_mid_write && s_.crash_keeps_prefix && faults_.on()) {
    arm_crash_in_next_write(world_, n.disk, 0.3);
  }
  start_write(
      world_, faults_, s_.process, n, n.disk, std::move(*w),
      [this, &n](host::PendingWrite w) { on_disk_complete(n, w); },
      [this, &n] { crash_and_restart(n); });
}

void Simulation::on_disk_complete(Node& n, host::PendingWrite& w) {
  if (write_steps(n, w.steps) != w.steps.size()) return;
  if (n.log_lost && !n.disk.dir->log_lost()) {
    n.log_lost = false;
    stats_.log_recoveries++;
    world_.trace(fmt::format("r{} recovered its lost log", n.id.value()));
  }
  n.host->written(w.last_seq, [&] { maybe_sync(n); });
  check_replica(n);
  process(n);
}

size_t Simulation::write_steps(Node& n, std::vector<WriteStep>& steps) {
  check_states(n, steps);
  size_t done = 0;
  if (Status st = n.disk.dir->write(steps, &done); !st) {
    world_.fail(fmt::format("r{} write: {}", n.id.value(), st.to_string()));
  }
  return done;
}

void Simulation::check_states(Node& n, const std::vector<WriteStep>& steps) {
  for (const WriteStep& step : steps) {
    if (!step.state) continue;
    // The durable view never goes backwards (a new epoch starts at view 0).
    Result<vr::DurableRecord> rec = vr::decode_record(*step.state);
    if (!rec || !std::holds_alternative<vr::DurableState>(*rec)) {
      world_.fail(fmt::format("r{}: a superblock state that does not decode", n.id.value()));
      return;
    }
    const auto& st = std::get<vr::DurableState>(*rec);
    if (const auto& prev = n.durable_state;
        prev && (st.epoch < prev->epoch || (st.epoch == prev->epoch && st.view < prev->view))) {
      world_.fail(fmt::format("r{}'s durable view went back from e{} v{} to e{} v{}", n.id.value(),
                              prev->epoch.value(), prev->view.value(), st.epoch.value(),
                              st.view.value()));
    }
    n.durable_state = st;
  }
}

void Simulation::check_epoch_justified(Node& n) {
  // The disk learns an epoch only with the log up to the reconfiguration
  // that began it (a checkpoint at or past it, or the entries through it):
  // a restart then knows that log is committed. A state durable without
  // what justifies it would have the replica execute a stale log as
  // committed (issue bug 2, `Review_EpochStateOrder`).
  const vr::Replica& r = *n.replica;
  if (r.op() < r.epoch_start()) {
    world_.fail(fmt::format("r{} restarted in epoch {} (begun at op {}) holding only ops to {}: "
                            "the epoch was durable before the log that justifies it",
                            n.id.value(), r.epoch().value(), r.epoch_start().value(),
                            r.op().value()));
  }
}

void Simulation::check_lease_read(Node& n) {
  // A primary answers a read from its own state only while its lease holds:
  // while it does, a quorum of its backups has promised not to vote for a
  // new view, so no later view (and no later epoch) can have started. The
  // check is on that rule, not on the value read: a stale answer needs a
  // write to the same key in between to show.
  const vr::Replica& r = *n.replica;
  const auto [epoch, view] = newest_normal_;
  if (epoch > r.epoch() || (epoch == r.epoch() && view > r.view())) {
    world_.fail(fmt::format("r{} answered a lease read in epoch {} view {}, but epoch {} view {} "
                            "has started: the lease outlived the promises behind it",
                            n.id.value(), r.epoch().value(), r.view().value(), epoch.value(),
                            view.value()));
  }
}

void Simulation::check_replica(Node& n) {
  const vr::Replica& r = *n.replica;
  if (r.status() == vr::ReplicaStatus::kNormal) {
    newest_normal_ = std::max(newest_normal_, std::pair{r.epoch(), r.view()});
  }
  // Log matching across the live replicas (vr/log_matching.h): adopt_log
  // keeps entries on its strength. Every few steps; it reads every log.
  if (++checks_ % 16 == 0) {
    std::vector<const vr::Replica*> live;
    for (const auto& [id, node] : nodes_) {
      if (node.up && node.replica) live.push_back(node.replica.get());
    }
    if (auto v = vr::check_log_matching(live)) world_.fail(*v);
  }
  stats_.max_view = std::max(stats_.max_view, r.view().value());
  stats_.max_epoch = std::max(stats_.max_epoch, r.epoch().value());
  stats_.committed_ops = std::max(stats_.committed_ops, r.executed().value());
  if (n.service->violation())
    world_.fail(fmt::format("r{}: {}", n.id.value(), *n.service->violation()));
}

void Simulation::on_executed(ReplicaId id, const vr::Entry& e, const std::string& result) {
  // The first execution of each request: what resolves ops whose clients
  // never learned the outcome (resolve_pending_ops).
  if (auto r = decode_result(result)) {
    executions_.try_emplace({e.client.value(), e.request.value()},
                            KnownExecution{world_.now(), r->output, r->ok});
  }
  std::string bytes = fmt::format("{}/{}/{}/{}", e.op.value(), e.client.value(), e.request.value(),
                                  static_cast<int>(e.kind));
  uint64_t h = hash64(e.payload, hash64(bytes));
  auto [it, fresh] = committed_.try_emplace(e.op.value(), h, id);
  if (!fresh && it->second.first != h) {
    world_.fail(fmt::format(
        "r{} executed a different entry at op {} than r{} did (client {} request {})", id.value(),
        e.op.value(), it->second.second.value(), e.client.value(), e.request.value()));
  }
}

// ---------------------------------------------------------------------------
// Network

void Simulation::send(uint64_t from, uint64_t to, const Body& body) {
  Wire w;
  w.kind = body.index();
  if (const auto* m = std::get_if<ReplicaMessage>(&body)) {
    vr::encode_message(*m, w.bytes);
  } else if (const auto* req = std::get_if<ClientRequest>(&body)) {
    vr::encode_client_request(*req, w.bytes);
  } else {
    vr::encode_client_reply(std::get<ClientReply>(body), w.bytes);
  }
  net_.send(from, to, std::move(w));
}

void Simulation::deliver_bytes(uint64_t from, uint64_t to, const Wire& w) {
  auto decoded = [&]() -> Result<Body> {
    if (w.kind == 0) {
      auto m = vr::decode_message(w.bytes);
      if (!m) return m.status();
      return Body(std::move(m).value());
    }
    if (w.kind == 1) {
      auto m = vr::decode_client_request(w.bytes);
      if (!m) return m.status();
      return Body(std::move(m).value());
    }
    auto m = vr::decode_client_reply(w.bytes);
    if (!m) return m.status();
    return Body(std::move(m).value());
  }();
  if (!decoded) {
    world_.fail(fmt::format("a message from {} to {} does not decode: {}", from, to,
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
  auto it = nodes_.find(ReplicaId(static_cast<uint32_t>(to)));
  if (it == nodes_.end() || !it->second.up) return;
  world_.fingerprint({static_cast<uint64_t>(world_.now()), from, to, body.index()});
  Node& n = it->second;
  if (const auto* m = std::get_if<ReplicaMessage>(&body)) {
    if (world_.tracing())
      world_.trace_detail(fmt::format("r{} -> r{} {}", from, to, describe_vr_message(*m)));
    n.replica->step(*m, n.host->out());
  } else {
    const ClientRequest& req = std::get<ClientRequest>(body);
    if (world_.tracing()) {
      world_.trace_detail(fmt::format("c{} -> r{} request {}{}", from, to, req.request.value(),
                                      req.read_only ? " (read)" : ""));
    }
    const uint64_t lease_reads = n.replica->lease_reads();
    n.replica->on_client_request(req, n.host->out());
    if (n.replica->lease_reads() != lease_reads) check_lease_read(n);
  }
  check_replica(n);
  process(n);
}

// ---------------------------------------------------------------------------
// Clients

void Simulation::client_next_op(Client& c) {
  MAROON_ASSERT(!c.busy);
  if (!issuing_ || history_.size() >= s_.history_ops_max) return;
  KvCommand cmd;
  uint64_t roll = world_.below(100);
  cmd.kind = roll < 30   ? check::KvOpKind::kGet
             : roll < 50 ? check::KvOpKind::kPut
             : roll < 75 ? check::KvOpKind::kAppend
             : roll < 87 ? check::KvOpKind::kCas
                         : check::KvOpKind::kIncr;
  cmd.key = fmt::format("k{}", world_.below(s_.keys));
  cmd.value = fmt::format("{}.{};", c.id.value() - kClientBase, history_.size());
  if (s_.padding_bytes_max > 0 && cmd.kind != check::KvOpKind::kGet) {
    cmd.padding_bytes = world_.below(s_.padding_bytes_max + 1);
  }
  if (cmd.kind == check::KvOpKind::kCas) {
    auto it = c.seen.find(cmd.key);
    if (it != c.seen.end() && world_.chance(0.8)) cmd.expected = it->second;
  }
  const bool read_only = cmd.kind == check::KvOpKind::kGet && s_.lease_reads && world_.chance(0.7);
  check::KvOperation op;
  op.client = c.id.value();
  op.call = world_.now();
  op.ret = check::kPending;
  op.kind = cmd.kind;
  op.key = cmd.key;
  op.value = cmd.value;
  op.expected = cmd.expected;
  c.history_index = history_.size();
  history_.push_back(std::move(op));
  if (world_.tracing()) {
    world_.trace_detail(fmt::format("c{} begins op {}: {} {}", c.id.value(), c.history_index,
                                    kv_op_name(cmd.kind), cmd.key));
  }
  client_start(c, ClientRequest{c.id, vr::RequestNumber(0), vr::EntryKind::kRequest, read_only,
                                encode_command(cmd)});
}

void Simulation::client_start(Client& c, ClientRequest req) {
  MAROON_ASSERT(!c.busy);
  c.busy = true;
  c.attempt = 0;
  c.request++;
  if (c.session == 0) {
    c.after_register = std::move(req);
    c.pending = ClientRequest{c.id, vr::RequestNumber(c.request), vr::EntryKind::kRegister, false,
                              {}};
    if (world_.tracing()) world_.trace_detail(fmt::format("c{} registers", c.id.value()));
  } else {
    req.request = vr::RequestNumber(c.request);
    req.session = c.session;
    if (req.kind == vr::EntryKind::kRequest) request_of_op_[c.history_index] = c.request;
    c.pending = std::move(req);
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
  world_.after(s_.client_timeout_us,
               [this, id, request, attempt] { client_timeout(id, request, attempt); });
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
    world_.after(delay_us, [this, id, request, attempt] {
      Client& c = clients_.at(id);
      if (c.busy && c.request == request && c.attempt == attempt) client_send(c);
    });
  };
  switch (r.code) {
    case vr::ReplyCode::kOk:
      break;
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
      world_.fail(fmt::format("client {} request {} rejected: {}", c.id.value(), c.request,
                              r.result));
      return;
    case vr::ReplyCode::kEvicted: {
      // Newer clients pushed ours out of the client table: the request did
      // not run now, and whether an earlier copy ran is unknown (its op stays
      // pending in the history). The next op registers again.
      if (c.pending.kind == vr::EntryKind::kRegister) {
        world_.fail(fmt::format("client {}'s register was answered evicted", c.id.value()));
        return;
      }
      stats_.evictions++;
      if (world_.tracing())
        world_.trace_detail(fmt::format("c{} evicted at request {}", c.id.value(), c.request));
      c.session = 0;
      c.busy = false;
      if (c.id.value() == kAdminClient) {
        admin_busy_ = false;
        return;
      }
      ClientId id = c.id;
      world_.after(world_.uniform(0, s_.client_think_us_max), [this, id] {
        Client& c = clients_.at(id);
        if (!c.busy) client_next_op(c);
      });
      return;
    }
  }
  if (c.pending.kind == vr::EntryKind::kRegister) {
    // The session is the op the register executed at.
    c.session = std::strtoull(r.result.c_str(), nullptr, 10);
    if (c.session == 0 || !c.after_register) {
      world_.fail(fmt::format("client {}: bad register reply \"{}\"", c.id.value(), r.result));
      return;
    }
    ClientRequest next = std::move(*c.after_register);
    c.after_register.reset();
    c.busy = false;
    client_start(c, std::move(next));
    return;
  }
  c.busy = false;
  if (c.id.value() == kAdminClient) {
    admin_busy_ = false;
    stats_.reconfigurations++;
    world_.trace(
        fmt::format("admin: reconfiguration {} done, epoch {}", c.request, r.epoch.value()));
    return;
  }
  auto result = decode_result(r.result);
  if (!result) {
    world_.fail(fmt::format("client {} request {}: undecodable result", c.id.value(), c.request));
    return;
  }
  check::KvOperation& op = history_[c.history_index];
  op.ret = world_.now();
  op.output = result->output;
  op.ok = result->ok;
  if (op.kind == check::KvOpKind::kGet && result->output) c.seen[op.key] = *result->output;
  stats_.ops_completed++;
  if (world_.tracing())
    world_.trace_detail(fmt::format("c{} done request {}", c.id.value(), c.request));
  ClientId id = c.id;
  world_.after(world_.uniform(0, s_.client_think_us_max), [this, id] {
    Client& c = clients_.at(id);
    if (!c.busy) client_next_op(c);
  });
}

void Simulation::admin_reconfigure() {
  if (admin_busy_) return;
  // Not while a replica recovers a lost log: the group it counts on (f + 1
  // others) must stay (a smaller one might need it for a quorum).
  for (const auto& [id, n] : nodes_) {
    if (n.log_lost) return;
  }
  Client& a = clients_.at(ClientId(kAdminClient));
  std::vector<ReplicaId> members = a.members;
  uint64_t choice = world_.below(3);
  if (choice == 0 && members.size() < vr::limits::replicas_max) {
    ReplicaId fresh(next_replica_id_++);
    Node& n = add_node(fresh);
    start_node(n, nullptr);  // joins: waits for StartEpoch
    members.push_back(fresh);
  } else if (choice == 1 && members.size() > 1) {
    // Ids are never reused: a removed replica is gone for good.
    members.erase(members.begin() + static_cast<ptrdiff_t>(world_.below(members.size())));
  } else {
    ReplicaId fresh(next_replica_id_++);
    Node& n = add_node(fresh);
    start_node(n, nullptr);
    members[world_.below(members.size())] = fresh;
  }
  std::string desc;
  for (ReplicaId r : members) desc += fmt::format(" r{}", r.value());
  world_.trace("admin: reconfigure to" + desc);
  admin_busy_ = true;
  client_start(a, ClientRequest{a.id, vr::RequestNumber(0), vr::EntryKind::kReconfigure, false,
                                vr::encode_members(members)});
}

// ---------------------------------------------------------------------------
// Faults

void Simulation::schedule_faults() {
  faults_.every(s_.network.partition_every_us, [this] { partition_change(); });
  faults_.every(s_.process.crash_every_us, [this] { crash_some(); });
  faults_.every(s_.process.pause_every_us, [this] { pause_some(); });
  faults_.every(s_.reconfigure_every_us, [this] { admin_reconfigure(); });
}

void Simulation::partition_change() {
  // Replicas only: clients are never partitioned.
  std::vector<uint64_t> ids;
  for (auto& [id, n] : nodes_) ids.push_back(id.value());
  net_.change_partition(ids, [](uint64_t id) { return fmt::format("r{}", id); });
}

void Simulation::crash_some() {
  std::vector<ReplicaId> up;
  for (auto& [id, n] : nodes_) {
    if (n.up) up.push_back(id);
  }
  if (up.empty()) return;
  Node& n = nodes_.at(up[world_.below(up.size())]);
  if (s_.crash_keeps_prefix && arm_crash_in_next_write(world_, n.disk, 0.5)) return;
  crash_and_restart(n);
}

void Simulation::crash_and_restart(Node& n) {
  crash(n);
  ReplicaId id = n.id;
  world_.after(world_.uniform(s_.process.restart_min_us, s_.process.restart_max_us), [this, id] {
    if (faults_.on()) restart(nodes_.at(id));
  });
}

void Simulation::heal() {
  world_.trace("faults stop: partitions heal, loss ends, crashed replicas restart");
  faults_.stop();
  net_.stop_faults();
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
    if (n.up && (newest == nullptr || n.replica->epoch() > newest->epoch()))
      newest = n.replica.get();
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
    if (r.view() != first->view() || r.executed() != first->executed() || r.executed() != r.op() ||
        nodes_.at(first->id()).service->state_hash() != n.service->state_hash()) {
      *why = fmt::format(
          "r{} (view {} op {} executed {}) differs from r{} (view {} op {} executed {})", m.value(),
          r.view().value(), r.op().value(), r.executed().value(), first->id().value(),
          first->view().value(), first->op().value(), first->executed().value());
      return false;
    }
  }
  return true;
}

SimResult Simulation::run() {
  // Initial group.
  for (size_t i = 0; i < s_.replicas; i++)
    initial_members_.push_back(ReplicaId(next_replica_id_++));
  for (ReplicaId id : initial_members_) add_node(id);
  for (ReplicaId id : initial_members_) start_node(nodes_.at(id), &initial_members_);
  for (size_t i = 0; i < s_.clients; i++) {
    ClientId id(kClientBase + i + 1);
    Client& c = clients_[id];
    c.id = id;
    c.members = initial_members_;
    c.target = world_.below(initial_members_.size());
    world_.at(world_.uniform(0, 50'000), [this, id] { client_next_op(clients_.at(id)); });
  }
  {
    Client& a = clients_[ClientId(kAdminClient)];
    a.id = ClientId(kAdminClient);
    a.members = initial_members_;
  }
  schedule_faults();
  world_.at(s_.safety_us, [this] { heal(); });
  // Liveness: everything in flight at the heal, and a few more ops per
  // client, must finish within the bound; then the group must converge.
  const int64_t issue_until = s_.safety_us + std::min<int64_t>(s_.liveness_us / 2, 2'000'000);
  const int64_t deadline = s_.safety_us + s_.liveness_us;
  world_.at(issue_until, [this] { issuing_ = false; });
  std::string why;
  const World::RunEnd end = world_.run_until_done(deadline, issue_until, kConvergenceCheckUs,
                                                  [&] { return quiescent_and_converged(&why); });
  stats_.simulated_us = world_.now();
  if (end != World::RunEnd::kStopped && !world_.failed()) {
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
    world_.fail(fmt::format("liveness: not done {:.1f}s after faults stopped: {}{}",
                            static_cast<double>(s_.liveness_us) / 1e6, why, nodes));
  }
  for (const check::KvOperation& op : history_) {
    if (op.ret == check::kPending) stats_.ops_pending++;
  }
  if (!world_.failed()) final_checks();
  stats_.network = net_.counters();
  stats_.faults = faults_.counters();
  stats_.fingerprint = world_.fingerprint();
  return SimResult{world_.outcome(), stats_};
}

void Simulation::final_checks() {
  const ResolvedOps resolved = resolve_pending_ops(history_, [&](size_t i) {
    std::optional<KnownExecution> known;
    auto r = request_of_op_.find(i);
    MAROON_ASSERT(r != request_of_op_.end());
    auto e = executions_.find({history_[i].client, r->second});
    if (e != executions_.end()) known = e->second;
    return known;
  });
  stats_.ops_resolved_executed = resolved.executed;
  stats_.ops_resolved_never_ran = resolved.never_ran;
  check_kv_linearizable(world_, history_);
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
  s.network = NetworkOptions::random(p, NetworkOptions::Bounds{});
  s.process = ProcessFaults::random(p, /*crash_every_min_us=*/200'000);
  s.reconfigure_every_us = p.chance(0.6) ? 0 : static_cast<int64_t>(500'000 + p.below(2'000'000));
  s.lease_reads = p.chance(0.5);
  s.client_timeout_us = static_cast<int64_t>(100'000 + p.below(400'000));
  s.safety_us = static_cast<int64_t>(1'000'000 + p.below(3'000'000));
  s.liveness_us = 30'000'000;
  vr::Options& o = s.options;
  random_vr_timing(p, o);
  o.pipeline_ops_max = 1 + p.below(64);
  o.request_queue_max = 1 + p.below(64);
  o.checkpoint_interval_ops = p.chance(0.2) ? 0 : 1 + p.below(100);
  o.state_transfer_ops_max = 1 + p.below(32);
  // Some seeds have a client table smaller than their clients (the admin
  // counts too), so clients are evicted and their retries answered so.
  o.client_table_clients_max = p.chance(0.3) ? std::max<size_t>(1, s.clients - 1) : 64;
  s.crash_keeps_prefix = p.chance(0.5);
  o.checkpoint_interval_bytes = p.chance(0.5) ? o.checkpoint_interval_bytes : 1 + p.below(4096);
  // Some seeds write entries large enough that the log fills by bytes long
  // before checkpoint_interval_ops (8 MiB at 100-200 KiB an entry).
  s.padding_bytes_max = p.chance(0.8) ? 0 : 100 * 1024 + p.below(100 * 1024);
  // Small segments roll often; a padded seed's writes need room (a view
  // change may write a whole log, up to limits::log_bytes_max, at once).
  // (A log record holds up to log_record_bytes_max plus one entry, so a
  // segment of 2 MiB takes any record. FaultEnv materializes a segment's
  // preallocated bytes, so larger ones cost time.)
  s.wal_segment_bytes = s.padding_bytes_max > 0 ? 16 * 1024 * 1024 : 2 * 1024 * 1024;
  // Some seeds' clients idle between ops for longer than a view change
  // takes: a client's next op then goes to the primary it last heard from,
  // which may have been cut off or paused meanwhile (a stale lease read).
  s.client_think_us_max = p.chance(0.7) ? 20'000 : static_cast<int64_t>(100'000 + p.below(900'000));
  // Drawn last, so the draws above stay those of earlier versions' seeds.
  s.log_loss_chance = p.chance(0.7) ? 0 : 0.3;
  return s;
}

std::string SimSettings::describe() const {
  return fmt::format(
      "seed {}: {} replicas, {} clients, {} keys; {}; {}; reconfigure every {} ms; lease reads {}; "
      "safety {:.1f} s; heartbeat {} lease {} timeout {} retry {} ticks; batch {} pipeline {} "
      "queue {} checkpoint {} ops/{} bytes transfer {} client table {}; crash keeps prefix {}; "
      "padding up to {} KiB; log lost at {:.0f}% of restarts",
      seed, replicas, clients, keys, network.describe(), process.describe(),
      reconfigure_every_us / 1000, lease_reads ? "on" : "off", static_cast<double>(safety_us) / 1e6,
      options.heartbeat_ticks, options.lease_ticks, options.view_change_timeout_ticks,
      options.retry_ticks, options.prepare_batch_ops_max, options.pipeline_ops_max,
      options.request_queue_max, options.checkpoint_interval_ops, options.checkpoint_interval_bytes,
      options.state_transfer_ops_max, options.client_table_clients_max,
      crash_keeps_prefix ? "yes" : "no", padding_bytes_max / 1024, log_loss_chance * 100);
}

SimResult run_simulation(const SimSettings& settings, size_t trace_lines, bool trace_stdout) {
  Simulation sim(settings, trace_lines, trace_stdout);
  return sim.run();
}

}  // namespace maroon::sim
