#include "sim/cluster_sim.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "app/kv/kv_app.h"
#include "app/kv/kv_op.h"
#include "check/linearizability.h"
#include "maroon/assert.h"
#include "common/hash.h"
#include "maroon/prng.h"
#include "gateway/gateway.h"
#include "host/node_host.h"
#include "node/node.h"
#include "protocol/cluster_messages.h"
#include "protocol/frame.h"
#include "sequencer/vr_sequencer.h"
#include "sim/faults.h"
#include "sim/kv_history.h"
#include "sim/network.h"
#include "sim/vr_common.h"
#include "sim/world.h"
#include "storage/data_dir.h"
#include "vr/codec.h"

namespace maroon::sim {

namespace {

// Gateways live at addresses above every node id (node ids are 1..5).
constexpr uint64_t kGatewayBase = 1'000'000;
// Live gateways at most (a crashed one may be replaced).
constexpr size_t kGatewaysLiveMax = 3;

// An app no node registers (the gateways of some seeds think otherwise).
constexpr AppId kUnknownApp = AppId::of("no-such-app");

std::string tx_name(TxId id) { return fmt::format("{}:{}", id.range().value(), id.offset()); }

std::string describe_peer(const PeerMessage& m) {
  if (const auto* vr = std::get_if<VrPacket>(&m)) {
    Result<vr::ReplicaMessage> msg = vr::decode_message(vr->bytes);
    return msg ? "vr " + describe_vr_message(*msg) : "vr (undecodable)";
  }
  if (const auto* o = std::get_if<Offsets>(&m)) {
    std::string s = fmt::format("offsets{}", o->full ? " full" : "");
    for (const auto& [r, off] : o->durable) s += fmt::format(" {}:{}", r.value(), off);
    if (o->hash_epoch.value() != 0) s += fmt::format(" hash@{}", o->hash_epoch.value());
    return s;
  }
  if (const auto* p = std::get_if<TxPull>(&m)) {
    return fmt::format("pull {}:{}..{}", p->range.value(), p->first, p->last);
  }
  if (const auto* e = std::get_if<TxEvicted>(&m)) {
    return fmt::format("evicted {}:{}", e->range.value(), e->offset);
  }
  if (const auto* w = std::get_if<SnapshotWanted>(&m)) {
    return fmt::format("snapshot wanted, applied >= {}", w->need.value());
  }
  if (const auto* o = std::get_if<SnapshotOffer>(&m)) {
    return fmt::format("snapshot offer @{} ({} B)", o->epoch.value(), o->bytes);
  }
  if (const auto* p = std::get_if<SnapshotPull>(&m)) {
    return fmt::format("snapshot pull @{} {}+{}", p->epoch.value(), p->offset, p->length);
  }
  if (const auto* c = std::get_if<SnapshotChunk>(&m)) {
    return c->total == 0 ? fmt::format("snapshot chunk @{} gone", c->epoch.value())
                         : fmt::format("snapshot chunk @{} {}+{} of {}", c->epoch.value(),
                                       c->offset, c->data.size(), c->total);
  }
  if (const auto* n = std::get_if<MembershipNote>(&m)) {
    return fmt::format("membership config {} {} @{}", n->config,
                       n->kind == MembershipNote::kHandedOff      ? "handed off"
                       : n->kind == MembershipNote::kHandoffWanted ? "handoff wanted"
                                                                   : "retired",
                       n->epoch.value());
  }
  const auto& push = std::get<TxPush>(m);
  return push.txs.empty() ? "push (empty)"
                          : fmt::format("push {}..{} ({})", tx_name(push.txs.front().id),
                                        tx_name(push.txs.back().id), push.txs.size());
}

std::string describe_to_node(const GatewayToNode& m) {
  if (const auto* tx = std::get_if<TxMsg>(&m)) return "tx " + tx_name(tx->id);
  if (const auto* l = std::get_if<LeaseRequest>(&m)) {
    return fmt::format("lease request after {}", l->after.value());
  }
  return fmt::format("renew {}", std::get<RenewLease>(m).range.value());
}

std::string describe_to_gateway(const NodeToGateway& m) {
  if (const auto* a = std::get_if<TxAck>(&m)) return "ack " + tx_name(a->id);
  if (const auto* r = std::get_if<TxResult>(&m)) {
    return fmt::format("result {}{}", tx_name(r->id), r->expired ? " (expired)" : "");
  }
  if (const auto* g = std::get_if<LeaseGranted>(&m)) {
    return fmt::format("lease granted {}", g->range.value());
  }
  const auto& s = std::get<RangeSealed>(m);
  return fmt::format("range {} sealed at {}", s.range.value(), s.last);
}

// Decodes the one frame `frame` holds; checks its type.
std::optional<std::string_view> frame_payload(const std::string& frame, protocol::FrameType type) {
  protocol::Frame f;
  size_t consumed = 0;
  Status error;
  if (protocol::decode_frame(frame, f, consumed, &error) != protocol::DecodeResult::kFrame ||
      consumed != frame.size() || f.type != static_cast<uint8_t>(type)) {
    return std::nullopt;
  }
  return f.payload;
}

// The kv app, counting what it executes for the checkers: every apply goes
// to the simulator with the state hash before it.
class CheckedApp final : public StateMachine {
 public:
  using Hook =
      std::function<void(const TxContext&, const std::string& reply, uint64_t hash_before)>;
  explicit CheckedApp(Hook hook) : hook_(std::move(hook)) {}
  std::string apply(const TxContext& ctx, std::string_view op) override {
    const uint64_t before = kv_.state_hash();
    std::string reply = kv_.apply(ctx, op);
    hook_(ctx, reply, before);
    return reply;
  }
  std::string read(std::string_view op) const override { return kv_.read(op); }
  uint64_t state_hash() const override { return kv_.state_hash(); }
  std::unique_ptr<AppSnapshotCursor> begin_snapshot() override { return kv_.begin_snapshot(); }
  Status restore(SnapshotPieces& pieces) override { return kv_.restore(pieces); }

 private:
  kv::KvApp kv_;
  Hook hook_;
};

class ClusterSimulation {
 public:
  ClusterSimulation(const ClusterSettings& s, size_t trace_lines, bool trace_stdout)
      : s_(s),
        world_(s.seed ^ 0xc1a5'7e55'c1a5'7e55ull, trace_lines, trace_stdout),
        net_(world_, s.network,
             [this](uint64_t from, uint64_t to, const Payload& p) { deliver(from, to, p); }),
        faults_(world_) {
    // A paused node's or gateway's messages wait for it.
    net_.set_paused_until([this](uint64_t to) -> int64_t {
      if (to >= kGatewayBase) {
        auto it = gateways_.find(GatewayId(to - kGatewayBase));
        return it != gateways_.end() && it->second.up ? it->second.clock.paused_until() : 0;
      }
      const SimNode& n = node_at(to);
      return n.up ? n.clock.paused_until() : 0;
    });
  }

  ClusterResult run();

 private:
  using Payload = std::variant<PeerMessage, GatewayToNode, NodeToGateway>;

  // A node's messages, as the host releases them, into the network.
  struct SimSink final : host::NodeSink {
    SimSink(ClusterSimulation& sim, uint64_t from) : sim(sim), from(from) {}
    void to_peer(PeerEnvelope e) override { sim.send(from, e.to.value(), std::move(e.msg)); }
    void to_gateway(GatewayEnvelope e) override {
      sim.send(from, kGatewayBase + e.to.value(), std::move(e.msg));
    }
    ClusterSimulation& sim;
    uint64_t from;
  };

  // A node process; its clock ticks from its (skewed) monotonic clock.
  struct SimNode : Process {
    NodeId id;
    bool lost = false;  // crashed for good
    bool stopping = false;  // stopped itself (lags too far); crashed and lost next
    // Its log lost records: faulty (one of f) until its disk no longer says
    // so and it applied every epoch committed when it lost them (its txs
    // were some of the k copies of those epochs' txs).
    bool log_lost = false;
    uint64_t log_lost_epoch = 0;
    int64_t clock_offset_ms = 0;
    // The node's disk: the real WAL and superblock (DataDir) on FaultEnv,
    // which keeps what was synced across crashes.
    Disk disk;
    std::unique_ptr<CheckedApp> app;
    std::unique_ptr<VrSequencer> sequencer;
    std::unique_ptr<Node> node;
    std::unique_ptr<SimSink> sink;
    std::unique_ptr<host::NodeHost> host;
    // Checkers, per incarnation.
    std::unordered_map<uint64_t, uint64_t> executed;  // tx id -> reply hash
    uint64_t hashed_upto = 0;                         // epochs whose hash and digest were recorded
    bool snapshot_job = false;  // a snapshot's fsync and rename are under way
    // The epoch this incarnation restored a snapshot of: its state is
    // compared, but no txs of it executed here to digest.
    uint64_t restored_epoch = 0;
    uint64_t installs_seen = 0;  // peers' snapshots it installed (Node::snapshots_installed)
    // Its disk was wiped once: a restart that finds it empty rejoins (the
    // node process without --new-cluster), never bootstraps.
    bool wiped = false;
    // Added by a membership change: starts by joining (Sequencer join),
    // configured with the group it joins and itself.
    bool joiner = false;
    std::vector<NodeId> configured;
    bool retired = false;  // removed, handed over and stopped (and so `lost`)
    uint64_t digest_epoch = 0;                        // the epoch `digest` is being built for
    uint64_t digest = 0;
  };

  // A gateway process: paused as nodes are; a crashed one never returns (a
  // new incarnation is a new gateway).
  struct SimGateway : Process {
    GatewayId id;
    std::unique_ptr<Gateway> core;
  };

  struct Client {
    uint64_t id = 0;
    bool busy = false;       // an op is outstanding (submitted or waiting to be)
    bool submitted = false;  // the op is with a gateway, waiting for its result
    uint64_t token = 0;
    GatewayId gateway;
    TxId tx;
    uint64_t ops = 0;
    size_t history_index = 0;
    check::KvOpKind kind = check::KvOpKind::kGet;
    std::string op_bytes;
    std::map<std::string, std::string> seen;  // last value read per key, for cas
  };

  struct EpochRecord {
    uint64_t hash = 0;
    uint64_t digest = 0;
    NodeId node;
    uint64_t incarnation = 0;
  };

  // Nodes.
  SimNode& node_at(uint64_t address) { return nodes_.at(address - 1); }
  const SimNode& node_at(uint64_t address) const { return nodes_.at(address - 1); }
  void run_node_ticks(SimNode& n, uint64_t due);
  void start_node(SimNode& n);
  void crash_node(SimNode& n, bool kill_only = false);
  void restart_node(SimNode& n);
  void maybe_lose_log(SimNode& n);
  uint64_t clock_ms(const SimNode& n) const {
    return static_cast<uint64_t>(std::max<int64_t>(0, world_.now() / 1000 + n.clock_offset_ms));
  }
  template <typename F>
  void node_input(SimNode& n, F&& f) {
    f(*n.node);
    process(n);
  }
  void process(SimNode& n);
  void drain(SimNode& n);
  void check_bounded(SimNode& n);
  bool lag_stop(SimNode& n);
  void check_advertised_kept(SimNode& n);
  void maybe_sync(SimNode& n);
  void on_synced(SimNode& n, host::PendingWrite& w);
  void snapshot_work(SimNode& n);
  void on_apply(SimNode& n, const TxContext& ctx, const std::string& reply, uint64_t hash_before);
  void record_hashes(SimNode& n);
  void sync_install(SimNode& n);
  void record_epoch(SimNode& n, uint64_t epoch, uint64_t hash);

  // Gateways.
  SimGateway& start_gateway();
  void crash_gateway(SimGateway& g);
  void process_gateway(SimGateway& g);
  void on_delivery(SimGateway& g, const Delivery& d);
  std::vector<GatewayId> live_gateways() const;

  // Network.
  void send(uint64_t from, uint64_t to, Payload p);
  void deliver(uint64_t from, uint64_t to, const Payload& p);
  std::optional<Payload> through_codec(uint64_t from, const Payload& p);

  // Clients.
  void client_next_op(Client& c);
  void client_submit(Client& c);
  void client_unknown(Client& c, const char* why);
  void client_done(Client& c);
  void client_timeout(uint64_t id, uint64_t token);
  void pick_gateway(Client& c, bool move);

  // Faults.
  void schedule_faults();
  void partition_change();
  void crash_some();
  void crash_some_gateway();
  void pause_some();
  void lose_node();
  void power_failure();
  void step_some_clock();
  void check_logical_time(const TxContext& ctx);
  // (logical, real) ms when the first tx was applied anywhere.
  std::optional<std::pair<uint64_t, uint64_t>> time_anchor_;
  std::optional<uint64_t> first_proposal_ms_;  // real time of the first epoch proposed
  void crash_and_restart(SimNode& n, bool kill_only = false);
  void heal();
  // Membership changes.
  void begin_membership_change();
  // A node out of the cluster for good, but not lost (not one of f): it
  // retired, or the operator stopped it.
  void stop_for_good(SimNode& n) {
    if (n.up) crash_node(n);
    n.lost = true;
    n.retired = true;
  }
  void request_membership_change();
  struct PendingChange {
    uint64_t config = 0;  // the group's config when asked
    std::vector<NodeId> members;
  };
  std::optional<PendingChange> change_;

  // End.
  bool converged(std::string* why);
  void final_checks();
  std::string node_states() const;

  const ClusterSettings s_;
  World world_;
  Network<Payload> net_;
  FaultSchedule faults_;
  ClusterStats stats_;

  std::vector<SimNode> nodes_;  // nodes_[i] has id i + 1
  std::vector<NodeId> members_;
  std::map<GatewayId, SimGateway> gateways_;
  uint64_t next_gateway_id_ = 1;
  bool issuing_ = true;

  std::vector<Client> clients_;
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, size_t> token_client_;  // outstanding token -> client index
  std::set<uint64_t> junk_tokens_;  // txs for an app no node runs, not yet delivered
  // Txs sent with two payloads: raw id -> the second payload; and their
  // tokens, not yet delivered.
  std::unordered_map<uint64_t, std::string> two_payloads_;
  std::set<uint64_t> two_payload_tokens_;
  uint64_t two_payload_keys_ = 0;
  std::vector<check::KvOperation> history_;
  std::vector<TxId> history_txs_;  // history_txs_[i]: the tx of history_[i], once submitted

  // Checkers.
  std::vector<EpochRecord> epochs_;     // epochs_[e - 1]: the first record of epoch e
  std::map<uint64_t, uint64_t> acked_;  // tx id -> reply hash, for results that reached a client
  std::set<uint64_t> expired_;          // executed (the result was evicted): must be everywhere
  std::set<uint64_t> sealed_;           // reported sealed: must never execute
  // node -> range -> (its committed offset then, the highest durable offset
  // it advertised to peers).
  std::map<uint64_t, std::map<uint64_t, std::pair<uint64_t, uint64_t>>> advertised_;
  std::unordered_map<uint64_t, AppliedTx> applied_anywhere_;  // tx id -> first apply
  uint64_t target_epoch_ = 0;  // liveness: every node must apply up to this
};

// ---------------------------------------------------------------------------
// Nodes

void ClusterSimulation::start_node(SimNode& n) {
  n.start(world_.now());
  // Half the incarnations run on a disk with Linux's failed-fsync semantics
  // (pages a failed sync could not write are marked clean): with a kill
  // that keeps the page cache, the restart must read past the cache.
  n.disk.env->set_linux_failed_sync(world_.chance(0.5));
  n.executed.clear();
  n.hashed_upto = 0;
  n.digest_epoch = 0;
  n.snapshot_job = false;
  n.restored_epoch = 0;
  n.installs_seen = 0;
  n.digest = 0;
  NodeId id = n.id;
  n.app = std::make_unique<CheckedApp>(
      [this, id](const TxContext& ctx, const std::string& reply, uint64_t hash_before) {
        on_apply(nodes_.at(id.value() - 1), ctx, reply, hash_before);
      });
  std::vector<vr::ReplicaId> members;
  for (NodeId m : members_) members.emplace_back(m.value());
  n.sequencer = std::make_unique<VrSequencer>(vr::ReplicaId(id.value()), members, s_.vr,
                                              /*tick_ms=*/0, world_.next() | 1);
  if (n.joiner) n.sequencer->join();
  NodeConfig c;
  c.id = id;
  c.members = n.configured;
  c.lease_ms = s_.lease_ms;
  c.held_txs_per_range_max = s_.held_txs_per_range_max;
  c.result_table_txs_per_range_max = s_.result_table_txs_per_range_max;
  if (s_.tx_retention_bytes_max != 0) c.tx_retention_bytes_max = s_.tx_retention_bytes_max;
  c.sealed_range_grace_ms = s_.sealed_range_grace_ms;
  if (s_.pull_txs_max != 0) c.pull_txs_max = s_.pull_txs_max;
  c.order_unsynced_txs = s_.order_unsynced_txs && members_.size() == 1;
  c.advert_ticks = s_.advert_ticks;
  c.pull_retry_ticks = s_.pull_retry_ticks;
  n.node = std::make_unique<Node>(c, *n.sequencer);
  n.node->register_app(AppId::kKv, *n.app);
  n.sink = std::make_unique<SimSink>(*this, id.value());
  n.host = std::make_unique<host::NodeHost>(*n.node, *n.sink, s_.wal_segment_bytes / 4);
  // Replay as the node process does: the real DataDir, superblock state
  // first, then the WAL, through the real codecs.
  DataDirOptions o;
  o.path = "/node";
  o.node_id = id.value();
  o.fresh_data_id = world_.next();
  o.wal.segment_bytes = s_.wal_segment_bytes;
  o.recover_lost_log = members_.size() > 1;
  if (n.wiped) o.fresh_log_lost = "its disk was wiped";
  if (s_.snapshot_log_bytes != 0) {
    n.host->set_snapshots(*n.disk.env,
                          host::SnapshotSettings{.dir = "/node/snapshots",
                                                 .log_bytes = s_.snapshot_log_bytes,
                                                 .kept = 2,
                                                 .step_bytes = s_.snapshot_step_bytes});
  }
  host::ReplayCounts counts;
  auto dir = n.host->open(*n.disk.env, o, counts, [&] {
    // A restored snapshot is the state at its epoch: recorded (and so
    // compared with every other node's) as that epoch's alone.
    if (counts.snapshot_epoch > n.hashed_upto + 1) n.hashed_upto = counts.snapshot_epoch - 1;
    if (counts.snapshot_epoch != 0 && n.restored_epoch == 0) {
      n.restored_epoch = counts.snapshot_epoch;
      // What the restored state executed (every node executes the same
      // txs in an epoch; the per-epoch digests check it).
      for (const auto& [raw, tx] : applied_anywhere_) {
        if (tx.epoch <= n.restored_epoch) n.executed.emplace(raw, hash64(tx.reply));
      }
    }
    record_hashes(n);
  });
  if (!counts.snapshot.empty()) {
    stats_.snapshot_restores++;
    world_.trace(fmt::format("n{} restored snapshot of epoch {}", id.value(), counts.snapshot_epoch));
  }
  if (!dir) {
    world_.fail(fmt::format("n{} replay: {}", id.value(), dir.status().to_string()));
    n.stop();
    return;
  }
  n.disk.dir = std::move(dir).value();
  n.log_lost = n.log_lost || n.disk.dir->log_lost().has_value();
  // What it advertised before losing its log is gone with it (a fault,
  // within f); later adverts count again.
  if (!n.log_lost) check_advertised_kept(n);
  // As the driver's start(): a first tick once replayed.
  n.host->tick(clock_ms(n));
  process(n);
  start_ticks(world_, n, [this, &n](uint64_t due) { run_node_ticks(n, due); });
}

void ClusterSimulation::run_node_ticks(SimNode& n, uint64_t due) {
  const uint64_t inc = n.incarnation;
  for (uint64_t i = 0; i < due && n.running(inc) && !world_.failed(); i++) {
    n.host->tick(clock_ms(n));
    process(n);
  }
}

void ClusterSimulation::crash_node(SimNode& n, bool kill_only) {
  MAROON_ASSERT(n.up);
  const CrashedWrite c = crash_disk(
      world_, faults_, n.disk, world_.chance(0.5),
      [&](std::vector<WriteStep>& steps) {
        size_t done = 0;
        if (Status st = n.disk.dir->write(steps, &done); !st) {
          world_.fail(fmt::format("n{} write: {}", n.id.value(), st.to_string()));
        }
        return done;
      },
      kill_only);
  world_.trace(fmt::format("n{} {} (keeps {} steps of a write in flight{})", n.id.value(),
                           kill_only ? "KILLED" : "CRASH", c.kept,
                           c.torn ? ", and a torn one" : ""));
  stats_.txs_applied = std::max(stats_.txs_applied, n.node->counters().txs_applied);
  stats_.txs_replaced = std::max(stats_.txs_replaced, n.node->counters().txs_replaced);
  n.stop();
  n.host.reset();
  n.sink.reset();
  n.node.reset();
  n.sequencer.reset();
  n.app.reset();
}

void ClusterSimulation::restart_node(SimNode& n) {
  if (n.up || n.lost) return;
  world_.trace(fmt::format("n{} RESTART", n.id.value()));
  maybe_lose_log(n);
  start_node(n);
}

void ClusterSimulation::maybe_lose_log(SimNode& n) {
  if (s_.log_loss_chance == 0 || !faults_.on() || !world_.chance(s_.log_loss_chance)) return;
  // A node whose log lost records is faulty until it recovered: at most f.
  size_t lost = 0;
  for (const SimNode& m : nodes_) lost += (m.log_lost || m.lost || m.stopping) && m.id != n.id;
  if (lost >= (members_.size() - 1) / 2) return;
  if (world_.chance(0.4)) {
    // The whole disk is lost: the node restarts with an empty one, rejoins
    // and takes everything back from its peers (a snapshot, when they keep
    // no txs that old).
    n.disk.env = std::make_unique<FaultEnv>();
    n.disk.dir.reset();
    n.disk.in_flight.reset();
    n.disk.crash_in_next_write = false;
    n.wiped = true;
    stats_.wipes++;
    world_.trace(fmt::format("n{} WIPED: its disk is replaced by an empty one", n.id.value()));
  } else {
    const std::optional<std::string> removed = lose_log_end(world_, *n.disk.env, "/node/wal");
    if (!removed) return;
    world_.trace(fmt::format("n{} LOSES its log from {}", n.id.value(), *removed));
  }
  advertised_.erase(n.id.value());
  n.log_lost = true;
  for (const SimNode& m : nodes_) {
    if (m.up && m.node) n.log_lost_epoch = std::max(n.log_lost_epoch, m.node->committed_epoch().value());
  }
  stats_.log_losses++;
}

void ClusterSimulation::drain(SimNode& n) {
  if (!first_proposal_ms_ && n.node->counters().epochs_proposed > 0) {
    first_proposal_ms_ = static_cast<uint64_t>(world_.now() / 1000);
  }
  n.host->drain();
  record_hashes(n);
  if (n.log_lost && n.disk.dir && !n.disk.dir->log_lost() &&
      n.node->applied_epoch().value() >= n.log_lost_epoch) {
    n.log_lost = false;
    stats_.log_recoveries++;
    world_.trace(fmt::format("n{} recovered its lost log", n.id.value()));
  }
  if (!n.node->fault().is_ok() && !n.stopping && !lag_stop(n))
    world_.fail(fmt::format("n{} fault: {}", n.id.value(), n.node->fault().to_string()));
  check_bounded(n);
  if (n.node->retired() && !n.retired) {
    // As the driver does: the process exits, for good.
    n.retired = true;
    stats_.nodes_retired++;
    world_.trace(fmt::format("n{} RETIRES: removed from the group, handed over", n.id.value()));
    const NodeId id = n.id;
    world_.after(0, [this, id] {
      stop_for_good(nodes_.at(id.value() - 1));
      if (stats_.nodes_lost < s_.nodes_lost && faults_.on()) lose_node();
    });
  }
}

void ClusterSimulation::check_advertised_kept(SimNode& n) {
  // A durable offset a node advertised counted toward k on its peers: the
  // txs it held to say so must survive any later crash of it, a power
  // failure included (recovery that trusts the page cache fails this after
  // a kill), unless they are committed by now (ordered: k hold them).
  auto it = advertised_.find(n.id.value());
  if (it == advertised_.end()) return;
  for (const auto& [raw, claim] : it->second) {
    const RangeId range(raw);
    const auto [committed_then, offset] = claim;
    uint64_t committed = committed_then;
    bool live = true;
    for (const SimNode& m : nodes_) {
      if (!m.up || m.node == nullptr) continue;
      const std::optional<uint64_t> c = m.node->committed_offset(range);
      if (!c) live = false;  // sealed (or retired) somewhere: its txs may be dropped
      committed = std::max(committed, c.value_or(0));
    }
    if (!live || offset <= committed || offset - committed > 100'000) continue;
    for (uint64_t x = committed + 1; x <= offset; x++) {
      if (!n.node->holds_durable(TxId::make(range, x))) {
        world_.fail(fmt::format("n{} advertised range {} durable up to {}, but after its "
                                "restart lacks tx {} (committed only up to {})",
                                n.id.value(), raw, offset, x, committed));
        return;
      }
    }
  }
}

bool ClusterSimulation::lag_stop(SimNode& n) {
  // Expected only where peers keep so little, and only of at most f nodes.
  const std::string fault = n.node->fault().to_string();
  if (!s_.long_outage || fault.find("lags too far") == std::string::npos) return false;
  size_t lost = 0;
  for (const SimNode& m : nodes_) lost += m.lost || m.stopping;
  if (lost + 1 > (members_.size() - 1) / 2) {
    world_.fail(fmt::format("n{} is the {}th node to stop lagging too far: {}", n.id.value(),
                            lost + 1, fault));
    return true;
  }
  n.stopping = true;
  stats_.lag_stops++;
  world_.trace(fmt::format("n{} STOPS: {}", n.id.value(), fault));
  // Not from inside its own processing: at once, as the driver exits.
  const NodeId id = n.id;
  world_.after(0, [this, id] {
    SimNode& m = nodes_.at(id.value() - 1);
    if (m.up) crash_node(m);
    m.lost = true;
    m.stopping = false;
  });
  return true;
}

void ClusterSimulation::check_bounded(SimNode& n) {
  // Node state stays bounded: a sealed range is retired at the first epoch
  // applied a grace after its seal, whatever gateways come and go.
  // (A seal is known at commit; an epoch applied before the sealing one
  // may have the same logical time, hence the strict comparison.)
  const Node& node = *n.node;
  if (auto sealed = node.oldest_sealed();
      sealed && node.applied_time_ms() >= sealed->second + s_.sealed_range_grace_ms &&
      node.applied_time_ms() > sealed->second) {
    world_.fail(fmt::format(
        "n{} still keeps range {} sealed at logical {} ms, past the grace of {} ms (applied {} ms)",
        n.id.value(), sealed->first.value(), sealed->second, s_.sealed_range_grace_ms,
        node.applied_time_ms()));
  }
  stats_.ranges_kept_max = std::max(stats_.ranges_kept_max, node.ranges_kept());
  stats_.ranges_retired = std::max(stats_.ranges_retired, node.counters().ranges_retired);
}

void ClusterSimulation::process(SimNode& n) {
  drain(n);
  maybe_sync(n);
  snapshot_work(n);
}

void ClusterSimulation::snapshot_work(SimNode& n) {
  if (s_.snapshot_log_bytes == 0 || world_.failed() || !n.up || n.host == nullptr ||
      n.snapshot_job) {
    return;
  }
  host::NodeHost& h = *n.host;
  if (h.snapshot_due()) {
    if (Status st = h.begin_snapshot(); !st) {
      world_.trace(fmt::format("n{} could not begin a snapshot: {}", n.id.value(), st.to_string()));
      return;
    }
    world_.trace(fmt::format("n{} snapshot of epoch {} begun", n.id.value(),
                             n.node->applied_epoch().value()));
  }
  host::NodeHost::SnapshotStep step = h.snapshot_step();
  const uint64_t inc = n.incarnation;
  for (host::NodeHost::SnapshotJob& job : step.jobs) {
    if (!job.publishes) {
      // Writes into the page cache: at once.
      h.snapshot_job_done(job.snapshot, false, job.run());
      continue;
    }
    // The fsync and rename take a while, off the node's loop: a crash may
    // come first, and the snapshot is then never published.
    n.snapshot_job = true;
    world_.after(world_.uniform(s_.process.disk_min_us, 4 * s_.process.disk_max_us),
                 [this, &n, inc, job = std::move(job)] {
                   if (!n.running(inc)) return;
                   n.snapshot_job = false;
                   const Status st = job.run();
                   n.host->snapshot_job_done(job.snapshot, true, st);
                   if (st) {
                     // Never ahead of its log: what the snapshot covers is
                     // durable in the WAL.
                     const uint64_t covers = n.host->snapshots().back().lsn;
                     const uint64_t durable = n.disk.dir->wal().last_lsn().value();
                     if (covers > durable) {
                       world_.fail(fmt::format("n{} published a snapshot covering the log "
                                               "through lsn {}, but its log is durable only "
                                               "through {}",
                                               n.id.value(), covers, durable));
                       return;
                     }
                     stats_.snapshots++;
                     world_.trace(fmt::format("n{} snapshot of epoch {} published", n.id.value(),
                                              n.host->snapshots().back().epoch));
                   } else {
                     world_.trace(fmt::format("n{} snapshot abandoned: {}", n.id.value(),
                                              st.to_string()));
                   }
                   process(n);  // the compaction goes with the next write
                 });
  }
  if (step.more) {
    world_.after(100, [this, &n, inc] {
      if (n.running(inc)) snapshot_work(n);
    });
  }
}

void ClusterSimulation::maybe_sync(SimNode& n) {
  if (n.host->writing() || world_.failed()) return;
  // As the driver's flush: the host gives the node its last chance to add
  // records (an epoch ordering these very txs) to the write.
  std::optional<host::PendingWrite> w = n.host->take_write();
  record_hashes(n);
  if (!w) return;
  start_write(
      world_, faults_, s_.process, n, n.disk, std::move(*w),
      [this, &n](host::PendingWrite w) { on_synced(n, w); },
      [this, &n] { crash_and_restart(n, /*kill_only=*/world_.chance(0.3)); });
}

void ClusterSimulation::on_synced(SimNode& n, host::PendingWrite& w) {
  // A write of nothing but a compaction (its superblock write and file
  // removals) may sync nothing at all: no fsync to fail.
  const bool syncs = std::any_of(w.steps.begin(), w.steps.end(), [](const WriteStep& st) {
    return !st.batch->empty() || st.state || st.log_recovered;
  });
  if (syncs && faults_.on() && s_.fsync_failure > 0 && world_.chance(s_.fsync_failure)) {
    // A failed fsync: the node process refuses writes until restarted (the
    // driver's read-only mode), which here is a crash now and a restart later.
    n.disk.env->inject_sync_errors(1);
    if (n.disk.dir->write(w.steps).is_ok())
      world_.fail("an injected sync error did not fail the write");
    stats_.fsync_failures++;
    world_.trace(fmt::format("n{} FSYNC FAILED: the node stops", n.id.value()));
    n.host->write_failed();
    // The process exits; mostly the machine runs on, its page cache (with
    // Linux's semantics, pages the failed sync marked clean) intact.
    crash_and_restart(n, /*kill_only=*/world_.chance(0.7));
    return;
  }
  if (Status st = n.disk.dir->write(w.steps); !st) {
    world_.fail(fmt::format("n{} write: {}", n.id.value(), st.to_string()));
    return;
  }
  n.host->written(w.last_seq, [&] { maybe_sync(n); });
  process(n);
}

void ClusterSimulation::sync_install(SimNode& n) {
  if (n.node->snapshots_installed() == n.installs_seen) return;
  n.installs_seen = n.node->snapshots_installed();
  stats_.snapshot_installs++;
  // Like a restart from a snapshot: the state at its epoch is compared with
  // every other node's, and the txs it executed are this node's now.
  const uint64_t epoch = n.node->installed_epoch().value();
  MAROON_ASSERT(epoch > n.hashed_upto);
  const std::optional<uint64_t> hash = n.node->state_hash_at(EpochNumber(epoch));
  if (!hash) {
    world_.fail(fmt::format("n{} installed a snapshot of epoch {} and has no hash for it",
                            n.id.value(), epoch));
    return;
  }
  world_.trace(fmt::format("n{} INSTALLED a peer's snapshot of epoch {}", n.id.value(), epoch));
  n.restored_epoch = epoch;
  n.digest_epoch = 0;
  n.hashed_upto = epoch - 1;
  for (const auto& [raw, tx] : applied_anywhere_) {
    if (tx.epoch <= epoch) n.executed.emplace(raw, hash64(tx.reply));
  }
  record_epoch(n, epoch, *hash);
  n.hashed_upto = epoch;
}

void ClusterSimulation::on_apply(SimNode& n, const TxContext& ctx, const std::string& reply,
                                 uint64_t hash_before) {
  sync_install(n);
  const uint64_t epoch = ctx.epoch;
  // Epochs before this one are complete: the state before this tx is the
  // state after each of them.
  if (epoch > n.hashed_upto + 1) {
    for (uint64_t e = n.hashed_upto + 1; e < epoch; e++) record_epoch(n, e, hash_before);
    n.hashed_upto = epoch - 1;
  }
  if (epoch <= n.hashed_upto) {
    world_.fail(fmt::format("n{} executes tx {} in epoch {}, after epoch {} was complete",
                            n.id.value(), tx_name(TxId(ctx.tx_id)), epoch, n.hashed_upto));
    return;
  }
  if (n.digest_epoch != epoch) {
    n.digest_epoch = epoch;
    n.digest = 0x9e3779b97f4a7c15ULL;
  }
  const uint64_t raw = ctx.tx_id;
  const uint64_t reply_hash = hash64(reply);
  const uint64_t item[] = {raw, reply_hash};
  n.digest = hash64(std::string_view(reinterpret_cast<const char*>(item), sizeof(item)), n.digest);
  if (!n.executed.emplace(raw, reply_hash).second) {
    world_.fail(fmt::format("n{} (incarnation {}) executed tx {} twice", n.id.value(),
                            n.incarnation, tx_name(TxId(ctx.tx_id))));
    return;
  }
  check_logical_time(ctx);
  auto [first, inserted] = applied_anywhere_.try_emplace(raw, AppliedTx{world_.now(), reply, epoch});
  if (!inserted && first->second.reply != reply) {
    world_.fail(fmt::format("n{} computed another reply to tx {} than the first node to apply it",
                            n.id.value(), tx_name(TxId(ctx.tx_id))));
    return;
  }
  if (sealed_.contains(raw)) {
    world_.fail(
        fmt::format("n{} executed tx {}, which its gateway reported sealed (never to execute)",
                    n.id.value(), tx_name(TxId(ctx.tx_id))));
  }
}

void ClusterSimulation::record_hashes(SimNode& n) {
  sync_install(n);
  const uint64_t applied = n.node->applied_epoch().value();
  if (applied <= n.hashed_upto) return;
  const uint64_t hash = n.app->state_hash();
  if (members_.size() > 1) {
    // The node's own record of its hash (what it compares with its peers).
    std::optional<uint64_t> own = n.node->state_hash_at(EpochNumber(applied));
    if (!own || *own != hash || n.node->state_hash() != hash) {
      world_.fail(fmt::format("n{} reports state hash {:016x} after epoch {}, its app has {:016x}",
                              n.id.value(), own.value_or(0), applied, hash));
    }
  }
  for (uint64_t e = n.hashed_upto + 1; e <= applied; e++) record_epoch(n, e, hash);
  n.hashed_upto = applied;
  stats_.max_epoch = std::max(stats_.max_epoch, applied);
}

void ClusterSimulation::record_epoch(SimNode& n, uint64_t epoch, uint64_t hash) {
  const uint64_t digest = n.digest_epoch == epoch ? n.digest : 0;
  if (epoch == n.restored_epoch && n.digest_epoch != epoch) {
    // Restored from a snapshot: the state must be the one every node had.
    if (epoch <= epochs_.size() && epochs_[epoch - 1].hash != hash) {
      world_.fail(fmt::format("n{} (incarnation {}) restored a snapshot of epoch {} with state "
                              "hash {:016x}; n{} had {:016x} after that epoch",
                              n.id.value(), n.incarnation, epoch, hash,
                              epochs_[epoch - 1].node.value(), epochs_[epoch - 1].hash));
    }
    if (epoch == epochs_.size() + 1) epochs_.push_back(EpochRecord{hash, 0, n.id, n.incarnation});
    return;
  }
  MAROON_ASSERT(epoch >= 1 && epoch <= epochs_.size() + 1);
  if (epoch == epochs_.size() + 1) {
    epochs_.push_back(EpochRecord{hash, digest, n.id, n.incarnation});
    return;
  }
  const EpochRecord& first = epochs_[epoch - 1];
  if (first.hash != hash || first.digest != digest) {
    world_.fail(fmt::format(
        "after epoch {} n{} (incarnation {}) has state hash {:016x} and tx digest {:016x}; n{} "
        "(incarnation {}) had {:016x} and {:016x}{}",
        epoch, n.id.value(), n.incarnation, hash, digest, first.node.value(), first.incarnation,
        first.hash, first.digest,
        first.digest != digest ? " (different txs or replies in the epoch)" : ""));
  }
}

// ---------------------------------------------------------------------------
// Gateways

ClusterSimulation::SimGateway& ClusterSimulation::start_gateway() {
  GatewayId id(next_gateway_id_++);
  SimGateway& g = gateways_[id];
  g.id = id;
  g.clock = ProcessClock(s_.process.skewed_tick_us(world_));
  g.start(world_.now());
  GatewayConfig c;
  c.id = id;
  c.acks_needed = members_.size() / 2 + 1;
  c.retries = true;
  c.retry_ticks = s_.gateway_retry_ticks;
  c.result_retry_ticks = s_.result_retry_ticks;
  c.lease_retry_ticks = s_.lease_retry_ticks;
  c.renew_ticks = s_.renew_ticks;
  if (s_.offsets_per_range_max != 0) c.offsets_per_range_max = s_.offsets_per_range_max;
  if (s_.unknown_app_fraction > 0) c.apps.push_back(kUnknownApp);  // misconfigured
  g.core = std::make_unique<Gateway>(c);
  world_.trace(fmt::format("g{} STARTS", id.value()));
  process_gateway(g);
  start_ticks(world_, g, [this, &g](uint64_t due) {
    for (uint64_t i = 0; i < due && g.up; i++) {
      g.core->tick();
      process_gateway(g);
    }
  });
  return g;
}

void ClusterSimulation::crash_gateway(SimGateway& g) {
  MAROON_ASSERT(g.up);
  world_.trace(fmt::format("g{} CRASH ({} txs in flight)", g.id.value(), g.core->inflight()));
  stats_.gateway_crashes++;
  g.stop();
  g.core.reset();
  for (Client& c : clients_) {
    if (c.submitted && c.gateway == g.id) client_unknown(c, "its gateway crashed");
  }
}

std::vector<GatewayId> ClusterSimulation::live_gateways() const {
  std::vector<GatewayId> live;
  for (const auto& [id, g] : gateways_) {
    if (g.up) live.push_back(id);
  }
  return live;
}

void ClusterSimulation::process_gateway(SimGateway& g) {
  for (int rounds = 0; g.up; rounds++) {
    MAROON_ASSERT(rounds < 1000);
    GatewayOutput out = g.core->take_output();
    if (out.to_nodes.empty() && out.deliveries.empty()) return;
    for (GatewayToNode& m : out.to_nodes) {
      const TxMsg* tx = std::get_if<TxMsg>(&m);
      auto other = tx ? two_payloads_.find(tx->id.raw()) : two_payloads_.end();
      for (const SimNode& node : nodes_) {
        if (node.retired) continue;
        const NodeId n = node.id;
        if (other != two_payloads_.end() && world_.chance(0.5)) {
          // Faulty: this node gets the other bytes under the same id.
          send(kGatewayBase + g.id.value(), n.value(),
               GatewayToNode(TxMsg{tx->id, tx->app, other->second}));
        } else {
          send(kGatewayBase + g.id.value(), n.value(), m);
        }
      }
    }
    for (const Delivery& d : out.deliveries) on_delivery(g, d);
  }
}

void ClusterSimulation::on_delivery(SimGateway& g, const Delivery& d) {
  const uint64_t raw = d.id.raw();
  if (world_.tracing()) {
    world_.trace_detail(fmt::format("g{} delivers {}{}{}", g.id.value(), tx_name(d.id),
                                    d.sealed ? " sealed" : "", d.expired ? " expired" : ""));
  }
  if (two_payload_tokens_.erase(d.token) > 0) {
    two_payloads_.erase(raw);
    if (!d.sealed && !d.expired && !d.timed_out) {
      // Either payload is a SET: both answer OK.
      Result<kv::Reply> reply = kv::decode_reply(d.reply);
      if (!reply || reply->kind != kv::Reply::Kind::kOk) {
        world_.fail(fmt::format("tx {} sent with two payloads got a reply other than OK",
                                tx_name(d.id)));
      }
      stats_.two_payload_results++;
    }
    return;
  }
  if (junk_tokens_.erase(d.token) > 0) {
    // A tx for an app no node runs executes as nothing, with an empty reply.
    if (!d.sealed && !d.expired && !d.timed_out && !d.reply.empty()) {
      world_.fail(fmt::format("tx {} for an unknown app got a reply", tx_name(d.id)));
    }
    if (!d.sealed && !d.expired && !d.timed_out) stats_.unknown_app_results++;
    return;
  }
  if (d.sealed) {
    stats_.ranges_sealed++;
    if (applied_anywhere_.contains(raw)) {
      world_.fail(fmt::format("g{} reports tx {} sealed (never to execute), but it was executed",
                              g.id.value(), tx_name(d.id)));
    }
    sealed_.insert(raw);
  } else if (d.expired) {
    expired_.insert(raw);
  } else {
    acked_.emplace(raw, hash64(d.reply));
  }
  auto it = token_client_.find(d.token);
  if (it == token_client_.end()) return;  // the client gave up on it
  Client& c = clients_[it->second];
  MAROON_ASSERT(c.submitted && c.token == d.token);
  if (c.tx != d.id) {
    world_.fail(fmt::format("g{} delivered tx {} for the token of tx {}", g.id.value(),
                            tx_name(d.id), tx_name(c.tx)));
    return;
  }
  if (d.sealed) {
    client_unknown(c, "its range was sealed");
    return;
  }
  if (d.expired) {
    client_unknown(c, "its result expired");
    return;
  }
  check::KvOperation& op = history_[c.history_index];
  if (Status st = set_kv_outputs(op, d.reply); !st) {
    world_.fail(fmt::format("client {}: tx {}: {}", c.id, tx_name(d.id), st.to_string()));
    return;
  }
  if (op.kind == check::KvOpKind::kGet && op.output) c.seen[op.key] = *op.output;
  op.ret = world_.now();
  stats_.ops_completed++;
  client_done(c);
}

// ---------------------------------------------------------------------------
// Network

std::optional<ClusterSimulation::Payload> ClusterSimulation::through_codec(uint64_t from,
                                                                           const Payload& p) {
  using protocol::FrameType;
  std::string frame;
  std::optional<Payload> back;
  auto bad = [&](const char* what) {
    world_.fail(fmt::format("frame codec: a {} did not survive encode and decode", what));
    return std::nullopt;
  };
  if (const auto* peer = std::get_if<PeerMessage>(&p)) {
    if (const auto* vr = std::get_if<VrPacket>(peer)) {
      protocol::encode_vr(vr->bytes, frame);
      auto payload = frame_payload(frame, FrameType::kVr);
      if (!payload) return bad("vr frame");
      back = Payload(PeerMessage(VrPacket{std::string(*payload)}));
    } else if (const auto* o = std::get_if<Offsets>(peer)) {
      protocol::encode_offsets(*o, frame);
      auto payload = frame_payload(frame, FrameType::kOffsets);
      auto m = payload ? protocol::decode_offsets(*payload) : invalid_argument("frame");
      if (!m) return bad("offsets frame");
      back = Payload(PeerMessage(std::move(m).value()));
    } else if (const auto* pull = std::get_if<TxPull>(peer)) {
      protocol::encode_tx_pull(*pull, frame);
      auto payload = frame_payload(frame, FrameType::kTxPull);
      auto m = payload ? protocol::decode_tx_pull(*payload) : invalid_argument("frame");
      if (!m) return bad("pull frame");
      back = Payload(PeerMessage(std::move(m).value()));
    } else if (const auto* push = std::get_if<TxPush>(peer)) {
      protocol::encode_tx_push(*push, frame);
      auto payload = frame_payload(frame, FrameType::kTxPush);
      auto m = payload ? protocol::decode_tx_push(*payload) : invalid_argument("frame");
      if (!m) return bad("push frame");
      back = Payload(PeerMessage(std::move(m).value()));
    } else if (const auto* e = std::get_if<TxEvicted>(peer)) {
      protocol::encode_tx_evicted(*e, frame);
      auto payload = frame_payload(frame, FrameType::kTxEvicted);
      auto m = payload ? protocol::decode_tx_evicted(*payload) : invalid_argument("frame");
      if (!m) return bad("evicted frame");
      back = Payload(PeerMessage(std::move(m).value()));
    } else if (const auto* w = std::get_if<SnapshotWanted>(peer)) {
      protocol::encode_snapshot_wanted(*w, frame);
      auto payload = frame_payload(frame, FrameType::kSnapshotWanted);
      auto m = payload ? protocol::decode_snapshot_wanted(*payload) : invalid_argument("frame");
      if (!m) return bad("snapshot wanted frame");
      back = Payload(PeerMessage(*m));
    } else if (const auto* o = std::get_if<SnapshotOffer>(peer)) {
      protocol::encode_snapshot_offer(*o, frame);
      auto payload = frame_payload(frame, FrameType::kSnapshotOffer);
      auto m = payload ? protocol::decode_snapshot_offer(*payload) : invalid_argument("frame");
      if (!m) return bad("snapshot offer frame");
      back = Payload(PeerMessage(*m));
    } else if (const auto* sp = std::get_if<SnapshotPull>(peer)) {
      protocol::encode_snapshot_pull(*sp, frame);
      auto payload = frame_payload(frame, FrameType::kSnapshotPull);
      auto m = payload ? protocol::decode_snapshot_pull(*payload) : invalid_argument("frame");
      if (!m) return bad("snapshot pull frame");
      back = Payload(PeerMessage(*m));
    } else if (const auto* n = std::get_if<MembershipNote>(peer)) {
      protocol::encode_membership_note(*n, frame);
      auto payload = frame_payload(frame, FrameType::kMembershipNote);
      auto m = payload ? protocol::decode_membership_note(*payload) : invalid_argument("frame");
      if (!m) return bad("membership note frame");
      back = Payload(PeerMessage(*m));
    } else {
      protocol::encode_snapshot_chunk(std::get<SnapshotChunk>(*peer), frame);
      auto payload = frame_payload(frame, FrameType::kSnapshotChunk);
      auto m = payload ? protocol::decode_snapshot_chunk(*payload) : invalid_argument("frame");
      if (!m) return bad("snapshot chunk frame");
      back = Payload(PeerMessage(std::move(m).value()));
    }
  } else if (const auto* to_node = std::get_if<GatewayToNode>(&p)) {
    if (const auto* tx = std::get_if<TxMsg>(to_node)) {
      protocol::encode_txs(std::span(tx, 1), frame);
      auto payload = frame_payload(frame, FrameType::kTx);
      auto m = payload ? protocol::decode_txs(*payload) : invalid_argument("frame");
      if (!m || m->size() != 1) return bad("tx frame");
      back = Payload(GatewayToNode(std::move(m->front())));
    } else if (const auto* l = std::get_if<LeaseRequest>(to_node)) {
      protocol::encode_lease_request(*l, frame);
      auto payload = frame_payload(frame, FrameType::kLeaseRequest);
      auto m = payload ? protocol::decode_lease_request(*payload) : invalid_argument("frame");
      if (!m) return bad("lease request frame");
      back = Payload(GatewayToNode(*m));
    } else {
      protocol::encode_renew_lease(std::get<RenewLease>(*to_node), frame);
      auto payload = frame_payload(frame, FrameType::kRenewLease);
      auto m = payload ? protocol::decode_renew_lease(*payload) : invalid_argument("frame");
      if (!m) return bad("renew frame");
      back = Payload(GatewayToNode(*m));
    }
  } else {
    const auto& to_gw = std::get<NodeToGateway>(p);
    if (const auto* a = std::get_if<TxAck>(&to_gw)) {
      protocol::encode_tx_acks(NodeId(static_cast<uint32_t>(from)), std::span(&a->id, 1), frame);
      auto payload = frame_payload(frame, FrameType::kTxAck);
      auto m = payload ? protocol::decode_tx_acks(*payload) : invalid_argument("frame");
      if (!m || m->ids.size() != 1) return bad("ack frame");
      back = Payload(NodeToGateway(TxAck{m->ids[0], m->node}));
    } else if (const auto* r = std::get_if<TxResult>(&to_gw)) {
      protocol::encode_tx_results(std::span(r, 1), frame);
      auto payload = frame_payload(frame, FrameType::kTxResult);
      auto m = payload ? protocol::decode_tx_results(*payload) : invalid_argument("frame");
      if (!m || m->size() != 1) return bad("result frame");
      back = Payload(NodeToGateway(std::move(m->front())));
    } else if (const auto* g = std::get_if<LeaseGranted>(&to_gw)) {
      protocol::encode_lease_granted(*g, frame);
      auto payload = frame_payload(frame, FrameType::kLeaseGranted);
      auto m = payload ? protocol::decode_lease_granted(*payload) : invalid_argument("frame");
      if (!m) return bad("lease granted frame");
      back = Payload(NodeToGateway(*m));
    } else {
      protocol::encode_range_sealed(std::get<RangeSealed>(to_gw), frame);
      auto payload = frame_payload(frame, FrameType::kRangeSealed);
      auto m = payload ? protocol::decode_range_sealed(*payload) : invalid_argument("frame");
      if (!m) return bad("range sealed frame");
      back = Payload(NodeToGateway(*m));
    }
  }
  if (!(*back == p)) {
    world_.fail("frame codec: a message decoded to something else than was encoded");
    return std::nullopt;
  }
  stats_.messages_coded++;
  return back;
}

void ClusterSimulation::send(uint64_t from, uint64_t to, Payload p) {
  if (const auto* peer = std::get_if<PeerMessage>(&p)) {
    if (const auto* o = std::get_if<Offsets>(peer)) {
      // Only what lies above the sender's committed offset is a claim to
      // hold txs (a committed offset counts as durable, held or not).
      const Node& node = *nodes_.at(from - 1).node;
      auto& adv = advertised_[from];
      for (const auto& [range, offset] : o->durable) {
        const uint64_t committed = node.committed_offset(range).value_or(offset);
        auto& [c, a] = adv[range.value()];
        if (offset > committed && offset > a) {
          c = committed;
          a = offset;
        }
      }
    }
  }
  if (world_.chance(s_.codec_fraction)) {
    std::optional<Payload> back = through_codec(from, p);
    if (!back) return;
    p = std::move(*back);
  }
  net_.send(from, to, std::move(p));
}

void ClusterSimulation::deliver(uint64_t from, uint64_t to, const Payload& p) {
  if (world_.failed()) return;
  if (to >= kGatewayBase) {
    auto it = gateways_.find(GatewayId(to - kGatewayBase));
    if (it == gateways_.end() || !it->second.up) return;
    world_.fingerprint({static_cast<uint64_t>(world_.now()), from, to, 2});
    const NodeToGateway& m = std::get<NodeToGateway>(p);
    if (world_.tracing()) {
      world_.trace_detail(
          fmt::format("n{} -> g{} {}", from, to - kGatewayBase, describe_to_gateway(m)));
    }
    SimGateway& g = it->second;
    g.core->on_message(m);
    process_gateway(g);
    return;
  }
  SimNode& n = node_at(to);
  if (!n.up) {
    if (world_.tracing()) {
      if (const auto* peer = std::get_if<PeerMessage>(&p)) {
        world_.trace_detail(fmt::format("n{} -> n{} (down) {}", from, to, describe_peer(*peer)));
      }
    }
    return;
  }
  world_.fingerprint({static_cast<uint64_t>(world_.now()), from, to, p.index()});
  if (const auto* peer = std::get_if<PeerMessage>(&p)) {
    if (world_.tracing())
      world_.trace_detail(fmt::format("n{} -> n{} {}", from, to, describe_peer(*peer)));
    n.host->on_peer(NodeId(static_cast<uint32_t>(from)), *peer);
    process(n);
    return;
  }
  const GatewayToNode& m = std::get<GatewayToNode>(p);
  if (world_.tracing()) {
    world_.trace_detail(fmt::format("g{} -> n{} {}", from - kGatewayBase, to, describe_to_node(m)));
  }
  GatewayId gateway(from - kGatewayBase);
  node_input(n, [&](Node& node) {
    if (const auto* tx = std::get_if<TxMsg>(&m)) {
      node.on_tx(gateway, *tx);
    } else if (const auto* l = std::get_if<LeaseRequest>(&m)) {
      node.on_lease_request(*l);
    } else {
      node.on_renew_lease(std::get<RenewLease>(m));
    }
  });
}

// ---------------------------------------------------------------------------
// Clients

void ClusterSimulation::pick_gateway(Client& c, bool move) {
  std::vector<GatewayId> live = live_gateways();
  if (live.empty()) {
    c.gateway = GatewayId(0);
    return;
  }
  auto here = std::find(live.begin(), live.end(), c.gateway);
  if (here != live.end() && (!move || live.size() == 1)) return;
  if (here != live.end()) live.erase(here);
  c.gateway = live[world_.below(live.size())];
}

void ClusterSimulation::client_next_op(Client& c) {
  MAROON_ASSERT(!c.busy);
  if (!issuing_ || history_.size() >= s_.history_ops_max || world_.failed()) return;
  c.busy = true;
  c.ops++;
  const std::string key = fmt::format("k{}", world_.below(s_.keys));
  // Values are unique per client and op; some are integers, so incr works
  // on them too.
  const std::string value = world_.chance(0.3) ? std::to_string(c.id * 1'000'000 + c.ops * 1000)
                                               : fmt::format("c{}.{}", c.id, c.ops);
  kv::Op op;
  check::KvOperation h;
  h.client = c.id;
  h.key = key;
  const uint64_t roll = world_.below(100);
  if (roll < 35) {
    h.kind = check::KvOpKind::kGet;
    op.type = kv::OpType::kGet;
    op.keys.push_back(key);
  } else if (roll < 65) {
    h.kind = check::KvOpKind::kPut;
    h.value = value;
    op.type = kv::OpType::kSet;
    op.keys.push_back(key);
    op.values.push_back(h.value);
  } else if (roll < 85) {
    h.kind = check::KvOpKind::kIncr;
    op.type = kv::OpType::kIncrBy;
    op.delta = 1;
    op.keys.push_back(key);
  } else {
    h.kind = check::KvOpKind::kCas;
    h.value = value;
    auto it = c.seen.find(key);
    if (it != c.seen.end() && world_.chance(0.8)) h.expected = it->second;
    op.type = kv::OpType::kCas;
    op.keys.push_back(key);
    op.values.push_back(h.value);
    if (h.expected) op.expected = std::string_view(*h.expected);
  }
  MAROON_ASSERT(kv::validate(op).is_ok());
  c.op_bytes = kv::encode_op(op);
  c.kind = h.kind;
  h.ret = check::kPending;
  c.history_index = history_.size();
  history_.push_back(std::move(h));
  history_txs_.emplace_back();
  client_submit(c);
}

void ClusterSimulation::client_submit(Client& c) {
  MAROON_ASSERT(c.busy && !c.submitted);
  if (world_.failed()) return;
  pick_gateway(c, false);
  auto retry = [this, &c](int64_t delay_us) {
    uint64_t id = c.id;
    uint64_t ops = c.ops;
    world_.after(delay_us, [this, id, ops] {
      Client& c = clients_[id - 1];
      if (c.busy && !c.submitted && c.ops == ops) client_submit(c);
    });
  };
  if (c.gateway.value() == 0) {
    retry(50'000);
    return;
  }
  SimGateway& g = gateways_.at(c.gateway);
  if (g.clock.paused(world_.now())) {
    // A paused gateway serves no one: the client's call waits for it.
    retry(g.clock.paused_until() - world_.now());
    return;
  }
  if (s_.unknown_app_fraction > 0 && world_.chance(s_.unknown_app_fraction)) {
    // A tx for an app no node runs, through a gateway that thinks one does:
    // it must execute as nothing everywhere and leave no gap in its range.
    const uint64_t junk = next_token_++;
    if (g.core->submit(kUnknownApp, "no such app", junk)) junk_tokens_.insert(junk);
  }
  if (s_.two_payload_fraction > 0 && world_.chance(s_.two_payload_fraction)) {
    // One id, two payloads: SETs of a key no client reads, to two values.
    const uint64_t token = next_token_++;
    const std::string key = fmt::format("two{}", ++two_payload_keys_);
    auto set = [&](std::string_view value) {  // views: key and value outlive op
      kv::Op op;
      op.type = kv::OpType::kSet;
      op.keys.push_back(key);
      op.values.push_back(value);
      return kv::encode_op(op);
    };
    if (Result<TxId> id = g.core->submit(AppId::kKv, set("one"), token)) {
      two_payloads_[id->raw()] = set("two");
      two_payload_tokens_.insert(token);
    }
  }
  const uint64_t token = next_token_++;
  Result<TxId> id = g.core->submit(AppId::kKv, c.op_bytes, token);
  if (!id) {
    // Not submitted (no range leased yet, or overloaded): nothing happened.
    process_gateway(g);  // the lease request submit() may have made
    retry(20'000);
    return;
  }
  c.submitted = true;
  c.token = token;
  c.tx = *id;
  history_txs_[c.history_index] = *id;
  token_client_.emplace(token, c.id - 1);
  check::KvOperation& op = history_[c.history_index];
  op.call = world_.now();
  if (world_.tracing()) {
    world_.trace_detail(fmt::format("c{} submits {} {} as tx {} through g{}", c.id,
                                    kv_op_name(op.kind), op.key, tx_name(*id), g.id.value()));
  }
  uint64_t cid = c.id;
  world_.after(s_.client_timeout_us, [this, cid, token] { client_timeout(cid, token); });
  process_gateway(g);
}

void ClusterSimulation::client_timeout(uint64_t id, uint64_t token) {
  Client& c = clients_[id - 1];
  if (!c.submitted || c.token != token || !faults_.on()) return;
  client_unknown(c, "it timed out");
}

void ClusterSimulation::client_unknown(Client& c, const char* why) {
  MAROON_ASSERT(c.submitted);
  // The op may or may not take effect: it stays pending in the history.
  if (world_.tracing())
    world_.trace_detail(
        fmt::format("c{}: tx {} has an unknown outcome: {}", c.id, tx_name(c.tx), why));
  stats_.ops_unknown++;
  pick_gateway(c, true);
  client_done(c);
}

void ClusterSimulation::client_done(Client& c) {
  token_client_.erase(c.token);
  c.submitted = false;
  c.busy = false;
  uint64_t id = c.id;
  world_.after(world_.uniform(0, s_.client_think_us_max), [this, id] {
    Client& c = clients_[id - 1];
    if (!c.busy) client_next_op(c);
  });
}

// ---------------------------------------------------------------------------
// Faults

void ClusterSimulation::schedule_faults() {
  faults_.every(s_.network.partition_every_us, [this] { partition_change(); });
  faults_.every(s_.process.crash_every_us, [this] { crash_some(); });
  faults_.every(s_.process.pause_every_us, [this] { pause_some(); });
  faults_.every(s_.gateway_crash_every_us, [this] { crash_some_gateway(); });
  faults_.every(s_.power_failure_every_us, [this] { power_failure(); });
  faults_.every(s_.clock_step_every_us, [this] { step_some_clock(); });
  // With membership changes, the node lost for good goes just as a
  // removed node retires: what the removed node held must then be on
  // enough of the others (docs/membership.md, "Durability across a change").
  for (size_t i = 0; i < s_.nodes_lost && s_.membership_changes == 0; i++) {
    world_.at(world_.uniform(0, s_.safety_us - 1), [this] { lose_node(); });
  }
  for (size_t i = 0; i < s_.membership_changes; i++) {
    world_.at(world_.uniform(s_.safety_us / 10, s_.safety_us * 3 / 4),
              [this] { begin_membership_change(); });
  }
  if (s_.long_outage) {
    // Down until heal() restarts it.
    world_.at(world_.uniform(0, s_.safety_us / 3), [this] {
      SimNode& n = nodes_[world_.below(nodes_.size())];
      world_.trace(fmt::format("n{} goes down for the rest of the safety phase", n.id.value()));
      if (n.up) crash_node(n);
    });
  }
}

void ClusterSimulation::lose_node() {
  std::vector<size_t> left;
  for (size_t i = 0; i < nodes_.size(); i++) {
    if (!nodes_[i].lost) left.push_back(i);
  }
  SimNode& n = nodes_[left[world_.below(left.size())]];
  world_.trace(fmt::format("n{} is LOST for good", n.id.value()));
  if (n.up) crash_node(n);
  n.lost = true;
  stats_.nodes_lost++;
}

void ClusterSimulation::partition_change() {
  std::vector<uint64_t> ends;
  for (const SimNode& n : nodes_) ends.push_back(n.id.value());
  for (GatewayId g : live_gateways()) ends.push_back(kGatewayBase + g.value());
  net_.change_partition(ends, [](uint64_t e) {
    return e >= kGatewayBase ? fmt::format("g{}", e - kGatewayBase) : fmt::format("n{}", e);
  });
}

void ClusterSimulation::crash_some() {
  std::vector<size_t> up;
  for (size_t i = 0; i < nodes_.size(); i++) {
    if (nodes_[i].up) up.push_back(i);
  }
  if (up.empty()) return;
  SimNode& n = nodes_[up[world_.below(up.size())]];
  if (arm_crash_in_next_write(world_, n.disk, 0.3)) return;
  // Some crashes are kills (kill -9): the machine runs on, with its page cache.
  crash_and_restart(n, /*kill_only=*/world_.chance(0.3));
}

void ClusterSimulation::pause_some() {
  // Nodes and gateways alike: addresses of the running, unpaused ones.
  std::vector<uint64_t> up;
  for (const SimNode& n : nodes_) {
    if (n.up && !n.clock.paused(world_.now())) up.push_back(n.id.value());
  }
  for (const auto& [id, g] : gateways_) {
    if (g.up && !g.clock.paused(world_.now())) up.push_back(kGatewayBase + id.value());
  }
  if (up.empty()) return;
  const uint64_t address = up[world_.below(up.size())];
  if (address >= kGatewayBase) {
    SimGateway& g = gateways_.at(GatewayId(address - kGatewayBase));
    pause_process(world_, faults_, g.clock, s_.process, fmt::format("g{}", g.id.value()));
    stats_.gateway_pauses++;
    return;
  }
  SimNode& n = node_at(address);
  pause_process(world_, faults_, n.clock, s_.process, fmt::format("n{}", n.id.value()));
}

void ClusterSimulation::crash_and_restart(SimNode& n, bool kill_only) {
  crash_node(n, kill_only);
  NodeId id = n.id;
  world_.after(world_.uniform(s_.process.restart_min_us, s_.process.restart_max_us), [this, id] {
    SimNode& n = nodes_.at(id.value() - 1);
    if (faults_.on() && !world_.failed()) restart_node(n);
  });
}

void ClusterSimulation::check_logical_time(const TxContext& ctx) {
  // Logical time advances by the proposers' steady time (ticks, skewed by
  // up to 15%), slewing up to an eighth faster toward a wall clock ahead of
  // it, never by a step of a wall clock: from the first epoch seen applied
  // on, it advances at most 3/8 faster than real time (plus the clock
  // offsets). The cluster's first epoch takes a wall clock as it is, stepped
  // or not. A wall clock stepped ahead later must not carry it along (that
  // expired and sealed every live range at once).
  const uint64_t real_ms = static_cast<uint64_t>(world_.now() / 1000);
  // Real time is counted from the cluster's first proposal: an epoch
  // applied long after it was proposed (the cluster waited for txs, or for
  // a quorum) carries the logical time of its proposal (cluster sim seed
  // 2225: epochs 1..7 proposed from 0.5 s on, first applied at 7.9 s).
  if (!first_proposal_ms_) first_proposal_ms_ = real_ms;  // proposed within this very step
  if (!time_anchor_) time_anchor_ = {ctx.logical_time_ms, *first_proposal_ms_};
  const auto [logical0, real0] = *time_anchor_;
  const uint64_t real = real_ms - real0;
  const uint64_t bound = logical0 + real + real * 3 / 8 + s_.clock_offset_max_ms + 250;
  if (ctx.logical_time_ms > bound) {
    world_.fail(fmt::format("epoch {} has logical time {} ms at real time {} ms; the first "
                            "epoch applied had {} ms at {} ms: more than any steady clock "
                            "allows (a wall clock step carried it)",
                            ctx.epoch, ctx.logical_time_ms, real_ms, logical0, real0));
  }
}

void ClusterSimulation::step_some_clock() {
  // The wall clock only: ticks (the steady clock) go on as before. The
  // step stays (nothing steps it back but another step), into the liveness
  // phase too.
  SimNode& n = nodes_[world_.below(nodes_.size())];
  const int64_t step_ms = static_cast<int64_t>(60'000 + world_.below(2 * 3'600'000));
  n.clock_offset_ms += world_.chance(0.5) ? step_ms : -step_ms;
  stats_.clock_steps++;
  world_.trace(fmt::format("n{} wall clock stepped to offset {} ms", n.id.value(),
                           n.clock_offset_ms));
}

void ClusterSimulation::power_failure() {
  world_.trace("POWER FAILURE");
  stats_.power_failures++;
  for (SimNode& n : nodes_) {
    if (n.up) crash_and_restart(n);
  }
  for (GatewayId id : live_gateways()) {
    if (world_.chance(0.5)) crash_gateway(gateways_.at(id));
  }
  if (live_gateways().empty()) {
    world_.after(world_.uniform(50'000, 1'500'000), [this] {
      if (faults_.on() && !world_.failed() && live_gateways().empty()) start_gateway();
    });
  }
}

void ClusterSimulation::crash_some_gateway() {
  std::vector<GatewayId> live = live_gateways();
  if (live.empty()) return;
  crash_gateway(gateways_.at(live[world_.below(live.size())]));
  if (world_.chance(s_.gateway_replace_chance)) {
    world_.after(world_.uniform(50'000, 1'500'000), [this] {
      if (faults_.on() && !world_.failed() && live_gateways().size() < kGatewaysLiveMax) {
        start_gateway();
      }
    });
  }
}

void ClusterSimulation::begin_membership_change() {
  if (world_.failed()) return;
  if (change_) {
    // One at a time: this one goes after it.
    world_.after(500'000, [this] { begin_membership_change(); });
    return;
  }
  // The group as the most advanced node knows it.
  const SimNode* know = nullptr;
  for (const SimNode& n : nodes_) {
    if (n.up && n.node && !n.retired &&
        (know == nullptr || n.node->membership_config() > know->node->membership_config())) {
      know = &n;
    }
  }
  if (know == nullptr) {
    world_.after(200'000, [this] { begin_membership_change(); });
    return;
  }
  std::vector<NodeId> group = know->node->members();
  const uint64_t config = know->node->membership_config();
  enum { kAdd, kRemove, kReplace } kind = kReplace;
  const uint64_t pick = world_.below(3);
  if (pick == 0 && group.size() < 5) kind = kAdd;
  if (pick == 1 && group.size() > 3) kind = kRemove;
  std::vector<NodeId> next = group;
  // A member lost for good is what an operator replaces first.
  auto lost = std::find_if(next.begin(), next.end(),
                           [&](NodeId id) { return nodes_.at(id.value() - 1).lost; });
  if (lost != next.end()) {
    kind = kReplace;
    next.erase(lost);
  } else if (kind != kAdd) {
    next.erase(next.begin() + static_cast<ptrdiff_t>(world_.below(next.size())));
  }
  if (kind != kRemove) {
    MAROON_ASSERT(nodes_.size() < nodes_.capacity());
    const NodeId id(static_cast<uint32_t>(nodes_.size() + 1));
    SimNode& n = nodes_.emplace_back();
    n.id = id;
    n.joiner = true;
    n.configured = group;
    n.configured.push_back(id);
    n.clock = ProcessClock(s_.process.skewed_tick_us(world_));
    n.clock_offset_ms = static_cast<int64_t>(world_.below(s_.clock_offset_max_ms + 1));
    world_.trace(fmt::format("n{} STARTS to join", id.value()));
    start_node(n);
    next.push_back(id);
  }
  std::sort(next.begin(), next.end());
  std::string text;
  for (NodeId id : next) text += fmt::format(" n{}", id.value());
  world_.trace(fmt::format("MEMBERSHIP change from config {} asked:{}", config, text));
  change_ = PendingChange{config, std::move(next)};
  request_membership_change();
}

void ClusterSimulation::request_membership_change() {
  if (!change_ || world_.failed()) return;
  for (const SimNode& n : nodes_) {
    if (!n.up || !n.node || n.node->membership_config() <= change_->config) continue;
    if (n.node->membership_config() == change_->config + 1 &&
        n.node->members() == change_->members) {
      stats_.membership_changes++;
      world_.trace(fmt::format("MEMBERSHIP config {} committed", n.node->membership_config()));
    } else {
      // Asked of a group that had moved on (an earlier change the asker
      // had not seen): refused, as the operator's command would be. A node
      // started to join it is stopped.
      world_.trace(fmt::format("MEMBERSHIP change from config {} superseded", change_->config));
      for (SimNode& m : nodes_) {
        if (m.joiner && !m.lost && n.node->membership_config() == change_->config + 1 &&
            std::find(n.node->members().begin(), n.node->members().end(), m.id) ==
                n.node->members().end() &&
            std::find(change_->members.begin(), change_->members.end(), m.id) !=
                change_->members.end()) {
          stop_for_good(m);
        }
      }
    }
    change_.reset();
    return;
  }
  // Asked of whichever node leads now; retried (the same request: it runs
  // at most once) across crashes and view changes.
  for (SimNode& n : nodes_) {
    if (!n.up || !n.node || !n.sequencer->is_primary() || !n.node->fault().is_ok() ||
        n.node->membership_config() != change_->config) {
      continue;
    }
    Status st = Status::ok();
    node_input(n, [&](Node& node) { st = node.request_membership(change_->config, change_->members, ""); });
    if (!st) world_.trace(fmt::format("n{} refuses the membership change: {}", n.id.value(), st.to_string()));
    break;
  }
  world_.after(300'000, [this] { request_membership_change(); });
}

void ClusterSimulation::heal() {
  world_.trace("faults stop: partitions heal, loss ends, crashed nodes restart");
  faults_.stop();
  net_.stop_faults();
  for (SimNode& n : nodes_) {
    if (!n.up && !world_.failed()) restart_node(n);
  }
  if (live_gateways().empty() && !world_.failed()) start_gateway();
}

// ---------------------------------------------------------------------------
// Run

std::string ClusterSimulation::node_states() const {
  std::string s;
  for (const SimNode& n : nodes_) {
    if (!n.up) {
      s += fmt::format("; n{} {}", n.id.value(), n.lost ? "lost" : "down");
      continue;
    }
    const Node& node = *n.node;
    const SequencerStatus q = n.sequencer->status();
    s += fmt::format("; n{} {} v{} committed {} applied {} waiting {} held {}{}", n.id.value(),
                     q.role, q.view, node.committed_epoch().value(), node.applied_epoch().value(),
                     node.epochs_waiting(), node.held_txs(),
                     node.fault().is_ok() ? "" : " FAULT " + node.fault().to_string());
  }
  for (const auto& [id, g] : gateways_) {
    if (g.up)
      s += fmt::format("; g{} range {} inflight {}", id.value(), g.core->range().value(),
                       g.core->inflight());
  }
  return s;
}

bool ClusterSimulation::converged(std::string* why) {
  for (const Client& c : clients_) {
    if (c.busy) {
      *why = fmt::format("client {} still waits for {}", c.id,
                         c.submitted ? "tx " + tx_name(c.tx) : std::string("a gateway"));
      return false;
    }
  }
  // A gateway goes on resending a tx whose client gave up until k nodes
  // hold it, and its result may still come: wait until none is in flight,
  // so that every result a gateway was given is checked below.
  for (GatewayId id : live_gateways()) {
    const SimGateway& g = gateways_.at(id);
    if (g.core->inflight() > 0) {
      *why = fmt::format("g{} has {} txs in flight", id.value(), g.core->inflight());
      return false;
    }
  }
  // Everything committed when the clients and gateways were done must be
  // applied everywhere (epochs go on: gateways renew their leases).
  if (target_epoch_ == 0) {
    for (const SimNode& n : nodes_) {
      if (n.up) target_epoch_ = std::max(target_epoch_, n.node->committed_epoch().value());
    }
    target_epoch_ = std::max<uint64_t>(target_epoch_, 1);
  }
  if (change_) {
    *why = fmt::format("the membership change from config {} is not committed", change_->config);
    return false;
  }
  // A node removed while it was down, whose old group is gone since, cannot
  // learn of its removal: the operator's remove-node stops it.
  const SimNode* latest = nullptr;
  for (const SimNode& n : nodes_) {
    if (n.up && !n.lost &&
        (latest == nullptr || n.node->membership_config() > latest->node->membership_config())) {
      latest = &n;
    }
  }
  for (SimNode& n : nodes_) {
    if (latest == nullptr || n.lost || !n.up || n.node->leaving() ||
        std::find(latest->node->members().begin(), latest->node->members().end(), n.id) !=
            latest->node->members().end()) {
      continue;
    }
    world_.trace(fmt::format("n{} was removed and never learned it: the operator stops it",
                             n.id.value()));
    stop_for_good(n);
  }
  for (const SimNode& n : nodes_) {
    if (n.lost) continue;
    if (!n.up) {
      *why = fmt::format("n{} is down", n.id.value());
      return false;
    }
    if (n.node->leaving()) {
      *why = fmt::format("n{} was removed and has not retired", n.id.value());
      return false;
    }
    if (n.node->applied_epoch().value() < target_epoch_) {
      *why = fmt::format("n{} applied epoch {} of {}", n.id.value(),
                         n.node->applied_epoch().value(), target_epoch_);
      return false;
    }
  }
  return true;
}

ClusterResult ClusterSimulation::run() {
  for (size_t i = 0; i < s_.nodes; i++) members_.push_back(NodeId(static_cast<uint32_t>(i + 1)));
  // Callbacks hold references to the nodes: the vector never reallocates.
  nodes_.reserve(s_.nodes + s_.membership_changes);
  nodes_.resize(s_.nodes);
  for (size_t i = 0; i < s_.nodes; i++) {
    SimNode& n = nodes_[i];
    n.id = members_[i];
    n.configured = members_;
    n.clock = ProcessClock(s_.process.skewed_tick_us(world_));
    n.clock_offset_ms = static_cast<int64_t>(world_.below(s_.clock_offset_max_ms + 1));
  }
  for (SimNode& n : nodes_) start_node(n);
  for (size_t i = 0; i < s_.gateways; i++) start_gateway();
  clients_.resize(s_.clients);
  for (size_t i = 0; i < s_.clients; i++) {
    Client& c = clients_[i];
    c.id = i + 1;
    pick_gateway(c, false);
    uint64_t id = c.id;
    world_.at(world_.uniform(0, 50'000), [this, id] { client_next_op(clients_[id - 1]); });
  }
  schedule_faults();
  world_.at(s_.safety_us, [this] { heal(); });
  const int64_t issue_until = s_.safety_us + std::min<int64_t>(s_.liveness_us / 2, 1'000'000);
  const int64_t deadline = s_.safety_us + s_.liveness_us;
  world_.at(issue_until, [this] { issuing_ = false; });
  std::string why;
  const World::RunEnd end = world_.run_until_done(deadline, issue_until, kConvergenceCheckUs,
                                                  [&] { return converged(&why); });
  const bool done = end == World::RunEnd::kStopped;
  stats_.simulated_us = world_.now();
  if (!world_.failed() && !done) {
    world_.fail(fmt::format("liveness: not done {:.1f}s after faults stopped: {}{}",
                            static_cast<double>(s_.liveness_us) / 1e6, why, node_states()));
  }
  if (!world_.failed()) final_checks();
  for (const SimNode& n : nodes_) {
    if (n.up) {
      stats_.txs_applied = std::max(stats_.txs_applied, n.node->counters().txs_applied);
      stats_.txs_replaced = std::max(stats_.txs_replaced, n.node->counters().txs_replaced);
      stats_.max_view = std::max(stats_.max_view, n.sequencer->status().view);
    }
  }
  stats_.network = net_.counters();
  stats_.faults = faults_.counters();
  stats_.fingerprint = world_.fingerprint();
  return ClusterResult{world_.outcome(), stats_};
}

void ClusterSimulation::final_checks() {
  std::vector<const SimNode*> alive;
  for (const SimNode& n : nodes_) {
    if (!n.lost) alive.push_back(&n);
  }
  MAROON_ASSERT(!alive.empty());
  for (const SimNode* p : alive) {
    const SimNode& n = *p;
    if (!n.node->fault().is_ok()) {
      world_.fail(
          fmt::format("n{} ends with a fault: {}", n.id.value(), n.node->fault().to_string()));
      return;
    }
  }
  // One membership everywhere: the group, the one before, the switch, the
  // address book and the removed ids are replicated state, a joiner's too.
  auto describe = [](const Membership& m) {
    std::string ids, prev;
    for (NodeId id : m.members) ids += fmt::format(" n{}", id.value());
    for (NodeId id : m.previous) prev += fmt::format(" n{}", id.value());
    return fmt::format("config {} members{} previous{} switch {} removed {:x} annex {} bytes",
                       m.config, ids, prev, m.switch_epoch.value(), m.removed_ids, m.annex.size());
  };
  for (const SimNode* p : alive) {
    const Membership& a = alive.front()->sequencer->membership();
    const Membership& b = p->sequencer->membership();
    if (!(a == b)) {
      world_.fail(fmt::format("memberships differ: n{} has {}, n{} has {}",
                              alive.front()->id.value(), describe(a), p->id.value(), describe(b)));
      return;
    }
  }
  // No acknowledged tx lost: each is executed, with the reply its client
  // got, by every node's current incarnation.
  for (const auto& [raw, reply_hash] : acked_) {
    for (const SimNode* p : alive) {
      const SimNode& n = *p;
      auto it = n.executed.find(raw);
      if (it == n.executed.end()) {
        world_.fail(
            fmt::format("acknowledged tx {} is lost: n{} (applied epoch {}) never executed it",
                        tx_name(TxId(raw)), n.id.value(), n.node->applied_epoch().value()));
        return;
      }
      if (it->second != reply_hash) {
        world_.fail(fmt::format("tx {}: n{} executed it with another reply than its client got",
                                tx_name(TxId(raw)), n.id.value()));
        return;
      }
    }
  }
  for (uint64_t raw : expired_) {
    for (const SimNode* p : alive) {
      const SimNode& n = *p;
      if (!n.executed.contains(raw)) {
        world_.fail(
            fmt::format("tx {} was reported executed (result expired), but n{} never executed it",
                        tx_name(TxId(raw)), n.id.value()));
        return;
      }
    }
  }
  // The ops whose clients never learned their outcome take the one the
  // cluster gave them (resolve_unknown_ops says why that is sound).
  UnknownOpCounts unknown;
  if (Status st = resolve_unknown_ops(history_, history_txs_, applied_anywhere_, unknown); !st) {
    world_.fail(st.to_string());
    return;
  }
  stats_.unknown_applied = unknown.applied;
  stats_.unknown_never_applied = unknown.never_applied;
  check_kv_linearizable(world_, history_);
}

}  // namespace

Status set_kv_outputs(check::KvOperation& op, std::string_view reply_bytes) {
  Result<kv::Reply> reply = kv::decode_reply(reply_bytes);
  if (!reply)
    return invalid_argument(fmt::format("undecodable reply to a {}", kv_op_name(op.kind)));
  using Kind = kv::Reply::Kind;
  bool good = false;
  switch (op.kind) {
    case check::KvOpKind::kGet:
      good = reply->kind == Kind::kValue || reply->kind == Kind::kNil;
      op.output = reply->kind == Kind::kValue ? std::optional(reply->value) : std::nullopt;
      break;
    case check::KvOpKind::kPut:
      good = reply->kind == Kind::kOk;
      break;
    case check::KvOpKind::kIncr:
      good = reply->kind == Kind::kInt || reply->kind == Kind::kError;
      op.output =
          reply->kind == Kind::kInt ? std::optional(std::to_string(reply->integer)) : std::nullopt;
      break;
    case check::KvOpKind::kCas:
      op.ok = reply->kind == Kind::kOk;
      good = op.ok || (reply->kind == Kind::kError && reply->error == Code::kConflict);
      break;
    case check::KvOpKind::kAppend:
      MAROON_UNREACHABLE();
  }
  if (!good) return invalid_argument(fmt::format("unexpected reply to a {}", kv_op_name(op.kind)));
  return {};
}

Status resolve_unknown_ops(std::vector<check::KvOperation>& history, const std::vector<TxId>& txs,
                           const std::unordered_map<uint64_t, AppliedTx>& applied,
                           UnknownOpCounts& counts) {
  MAROON_ASSERT(history.size() == txs.size());
  size_t kept = 0;
  for (size_t i = 0; i < history.size(); i++) {
    check::KvOperation& op = history[i];
    if (op.ret == check::kPending) {
      // Every op was submitted by the time the run converged.
      MAROON_ASSERT(txs[i].raw() != 0);
      auto it = applied.find(txs[i].raw());
      if (it == applied.end()) {
        counts.never_applied++;
        continue;
      }
      // The tx was created by the submit at op.call, so applied after it.
      MAROON_ASSERT(it->second.first_us >= op.call);
      if (Status st = set_kv_outputs(op, it->second.reply); !st) {
        return invalid_argument(fmt::format("tx {}: {}", tx_name(txs[i]), st.to_string()));
      }
      op.ret = it->second.first_us;
      counts.applied++;
    }
    if (kept != i) history[kept] = std::move(op);
    kept++;
  }
  history.resize(kept);
  return {};
}

ClusterSettings ClusterSettings::random(uint64_t seed, bool stale) {
  Prng p(seed ^ 0x00c1'0057'e500'0000ull);
  ClusterSettings s;
  s.seed = seed;
  static constexpr size_t kSizes[] = {1, 3, 3, 3, 3, 3, 5, 5};
  s.nodes = kSizes[p.below(std::size(kSizes))];
  s.gateways = 1 + p.below(3);
  s.clients = 2 + p.below(7);
  s.keys = 1 + p.below(4);
  NetworkOptions::Bounds net;
  net.loss_percent_max = 20;
  net.slow_chance = 0.1;
  net.slow_delay_max_us = 100'000;
  net.partition_every_min_us = 300'000;
  s.network = NetworkOptions::random(p, net);
  if (!stale) s.network.stale = 0;
  s.process = ProcessFaults::random(p, /*crash_every_min_us=*/300'000);
  // Up to f nodes lost for good in a third of the seeds.
  s.nodes_lost = s.nodes >= 3 && p.chance(0.33) ? 1 + p.below((s.nodes - 1) / 2) : 0;
  s.power_failure_every_us =
      p.chance(0.75) ? 0 : static_cast<int64_t>(1'000'000 + p.below(3'000'000));
  s.gateway_crash_every_us = p.chance(0.4) ? 0 : static_cast<int64_t>(500'000 + p.below(2'500'000));
  s.gateway_replace_chance = 0.8;
  s.lease_ms = 200 + p.below(1801);
  s.clock_offset_max_ms = p.chance(0.5) ? 0 : p.below(s.lease_ms / 2 + 1);
  s.held_txs_per_range_max = p.chance(0.3) ? 2 + p.below(31) : 0;
  s.tx_retention_bytes_max = p.chance(0.3) ? (256 << 10) + p.below(768 << 10) : 0;
  s.result_table_txs_per_range_max = p.chance(0.2) ? 1 + p.below(16) : 0;
  s.pull_txs_max = p.chance(0.3) ? 1 + p.below(8) : 0;
  s.advert_ticks = 1 + p.below(10);
  s.pull_retry_ticks = 1 + p.below(20);
  s.offsets_per_range_max = p.chance(0.3) ? 3 + p.below(48) : 0;
  s.gateway_retry_ticks = 2 + p.below(29);
  s.result_retry_ticks = 10 + p.below(91);
  s.lease_retry_ticks = 5 + p.below(26);
  // Well below the lease: a few renewals may be lost before it expires.
  s.renew_ticks = std::max<uint64_t>(1, s.lease_ms / 10 / (4 + p.below(5)));
  s.order_unsynced_txs = p.chance(0.5);
  s.codec_fraction = static_cast<double>(5 + p.below(46)) / 100.0;
  s.client_timeout_us = static_cast<int64_t>(500'000 + p.below(2'500'000));
  s.safety_us = static_cast<int64_t>(3'000'000 + p.below(5'000'001));
  s.liveness_us = 30'000'000;
  vr::Options& o = s.vr;
  o = VrSequencer::default_options();
  random_vr_timing(p, o);
  o.checkpoint_interval_ops = p.chance(0.2) ? o.checkpoint_interval_ops : 1 + p.below(200);
  o.state_transfer_ops_max = 1 + p.below(32);
  // Drawn last, so the draws above stay those of earlier versions' seeds.
  s.fsync_failure = p.chance(0.7) ? 0 : static_cast<double>(1 + p.below(20)) / 10000.0;
  // A batch is cut at a quarter of a segment; a single record (a VR
  // checkpoint carries up to 32768 epochs) must still fit in one. FaultEnv
  // materializes a segment's preallocated bytes, so larger ones cost time.
  s.wal_segment_bytes = p.chance(0.5) ? 2 * 1024 * 1024 : 4 * 1024 * 1024;
  s.clock_step_every_us = p.chance(0.7) ? 0 : static_cast<int64_t>(500'000 + p.below(2'500'000));
  s.sealed_range_grace_ms = p.chance(0.2) ? 0 : 1 + p.below(3000);
  s.long_outage = s.nodes >= 3 && p.chance(0.1);
  s.unknown_app_fraction = p.chance(0.8) ? 0 : 0.02 + static_cast<double>(p.below(9)) / 100.0;
  s.two_payload_fraction =
      s.nodes == 1 || p.chance(0.8) ? 0 : 0.02 + static_cast<double>(p.below(9)) / 100.0;
  s.log_loss_chance = s.nodes < 3 || s.nodes_lost > 0 || s.long_outage || p.chance(0.7) ? 0 : 0.3;
  // Drawn after the rest, so the draws above stay those of earlier seeds.
  s.snapshot_log_bytes = p.chance(0.4) ? 0 : 1024 + p.below(31 << 10);
  s.snapshot_step_bytes = 64 + p.below(8192);
  // A node out for long lags beyond what its peers keep: mostly it catches
  // up from a peer's snapshot (snapshots on), else it stops (lag_stop).
  if (s.long_outage && s.snapshot_log_bytes == 0 && p.chance(0.75)) {
    s.snapshot_log_bytes = 1024 + p.below(31 << 10);
  }
  if (s.long_outage) {
    s.tx_retention_bytes_max = (16 << 10) + p.below(16 << 10);
    s.network.partition_every_us = 0;
    s.process.crash_every_us = 0;
    s.process.pause_every_us = 0;
    s.power_failure_every_us = 0;
    s.nodes_lost = 0;
    s.fsync_failure = 0;
  }
  // Drawn after the rest, so the draws above stay those of earlier seeds.
  s.membership_changes =
      s.nodes >= 3 && s.nodes_lost <= 1 && !s.long_outage && s.log_loss_chance == 0 &&
              p.chance(0.35)
          ? 1 + p.below(2)
          : 0;
  return s;
}

void ClusterSettings::override_nodes(size_t n) {
  MAROON_ASSERT(n >= 1 && n <= 5);
  nodes = n;
  nodes_lost = std::min(nodes_lost, (n - 1) / 2);
  if (n < 3) membership_changes = 0;
}

std::string ClusterSettings::describe() const {
  return fmt::format(
      "cluster seed {}: {} nodes, {} gateways, {} clients, {} keys; {}; nodes: {}, {} lost for "
      "good; "
      "power failures every {} ms; gateway crashes every {} ms; clock offsets up to {} ms, steps "
      "every {} ms; lease {} ms, renew {} ticks, sealed ranges kept {} ms{}{}{}{}; held window {}, retention {} B, result table {}, pull {}, offsets "
      "per range {}; advert {} pull retry {} gateway retry {} result retry {} lease retry {} "
      "ticks; codec {:.0f}%; fsync failures {:.2f}%, WAL segments {} KiB{}; client timeout {} ms; "
      "safety {:.1f} s; vr heartbeat {} lease {} timeout {} retry {} batch {} checkpoint {} "
      "transfer {}{}",
      seed, nodes, gateways, clients, keys, network.describe(), process.describe(), nodes_lost,
      power_failure_every_us / 1000, gateway_crash_every_us / 1000, clock_offset_max_ms,
      clock_step_every_us / 1000, lease_ms,
      renew_ticks, sealed_range_grace_ms,
      long_outage ? "; a long outage"
      : membership_changes > 0 ? fmt::format("; {} membership changes", membership_changes)
                               : std::string(),
      unknown_app_fraction > 0
          ? fmt::format("; unknown-app txs {:.0f}%", unknown_app_fraction * 100)
          : std::string(),
      two_payload_fraction > 0
          ? fmt::format("; two-payload txs {:.0f}%", two_payload_fraction * 100)
          : std::string(),
      log_loss_chance > 0 ? fmt::format("; log lost at {:.0f}% of restarts", log_loss_chance * 100)
                          : std::string(), held_txs_per_range_max, tx_retention_bytes_max, result_table_txs_per_range_max,
      pull_txs_max, offsets_per_range_max, advert_ticks, pull_retry_ticks, gateway_retry_ticks,
      result_retry_ticks, lease_retry_ticks, codec_fraction * 100, fsync_failure * 100,
      wal_segment_bytes / 1024, nodes == 1 && order_unsynced_txs ? "; order unsynced txs" : "",
      client_timeout_us / 1000, static_cast<double>(safety_us) / 1e6, vr.heartbeat_ticks,
      vr.lease_ticks, vr.view_change_timeout_ticks, vr.retry_ticks, vr.prepare_batch_ops_max,
      vr.checkpoint_interval_ops, vr.state_transfer_ops_max,
      snapshot_log_bytes == 0 ? std::string()
                              : fmt::format("; snapshots every {} KiB of log, {} B a step",
                                            snapshot_log_bytes / 1024, snapshot_step_bytes));
}

ClusterResult run_cluster_simulation(const ClusterSettings& settings, size_t trace_lines,
                                     bool trace_stdout) {
  ClusterSimulation sim(settings, trace_lines, trace_stdout);
  return sim.run();
}

}  // namespace maroon::sim
