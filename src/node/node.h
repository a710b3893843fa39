// The node core (docs/architecture.md): holds txs durably, advertises what it holds,
// proposes epochs through the sequencer, and applies committed epochs in
// order, pulling from peers the txs it lacks. Pure: no I/O, no clocks, no
// threads. Inputs are messages, ticks and durability reports; everything it
// wants done comes out of take_output().
//
// Offsets per range (each "every offset <= x is ..."):
//   applied   executed here
//   committed named by a committed epoch (held here or not)
//   ordered   named by a committed epoch or one this node proposed
//   durable   durable here, or committed
//   written   held here (its record emitted), or committed
// In a cluster an id is ordered only with the bytes k = f + 1 members hold
// durably (a range's orderable offset is the last of a run of offsets each
// held so, by this node's own copy and the digests its peers advertised),
// and the epoch binds each id to those bytes (Interval::digests): a node
// holding other bytes for it (a faulty gateway sent two payloads) replaces
// them from a peer before executing it. On one node (k = 1) a range's
// orderable offset is its durable one.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "maroon/state_machine.h"
#include "maroon/status.h"
#include "common/types.h"
#include "node/held_window.h"
#include "node/result_table.h"
#include "protocol/messages.h"
#include "protocol/output.h"
#include "sequencer/sequencer.h"

namespace maroon {

struct NodeConfig {
  NodeId id{1};
  // Every node of the cluster, this one included; empty means {id}.
  std::vector<NodeId> members;
  // Single node, one WAL: order a tx in the same WAL batch that first makes
  // it durable. Safe because the WAL recovers a batch whole or not at all and
  // an epoch record always follows the records of its txs, so an epoch can
  // never be durable without them; it saves one fdatasync round per write.
  // In a cluster (k > 1) a tx is ordered only once k nodes hold it durably.
  bool order_unsynced_txs = false;
  size_t result_table_txs_per_range_max = 0;    // 0: limits::result_table_txs_per_range_max
  size_t result_table_bytes_per_range_max = 0;  // 0: limits::result_table_bytes_per_range_max
  // The gateways live in this node's process (`maroon dev`): none from before
  // a restart can retry, so their result tables are dropped after replay.
  // In a cluster, a dead gateway's range is sealed instead (SealRange).
  bool gateways_in_process = false;
  size_t lease_requests_queued_max = 1024;
  // How far past the last executed offset of a range a tx may arrive; later
  // ones are dropped and retried by their gateway.
  size_t held_txs_per_range_max = 0;  // 0: 2 * limits::gateway_inflight_txs_max
  // A range whose lease (granted or renewed through an epoch) is older than
  // this, in logical time, is sealed by the proposer. 0: never.
  uint64_t lease_ms = 0;
  // One tick in milliseconds. Ticks come from the driver's monotonic clock
  // (caught up after a stall), so ticks × tick_ms is this node's steady
  // time: logical time advances by it, not by jumps of the wall clock.
  uint64_t tick_ms = 10;
  // A full offsets advert goes to every peer this often (changes go at once).
  uint64_t advert_ticks = 10;
  // A pull that brought nothing is sent again (to another peer) after this.
  uint64_t pull_retry_ticks = 10;
  size_t pull_txs_max = 4096;
  size_t push_bytes_max = 2 * 1024 * 1024;
  // Executed txs kept to serve peers that lag behind, oldest dropped first.
  size_t tx_retention_bytes_max = 256 * 1024 * 1024;
  // A sealed range's results are kept this long (logical time) for retries
  // from its gateway (one cut off, not dead); then they are dropped, and a
  // retry is answered "expired" (executed) or "sealed" (never executed).
  // The range's state goes with the last of its retained txs. 0: results
  // dropped once the range is applied.
  uint64_t sealed_range_grace_ms = 5 * 60 * 1000;
};

struct NodeCounters {
  uint64_t txs_received = 0;    // first copies accepted from gateways
  uint64_t txs_duplicate = 0;   // retries of held or executed txs
  uint64_t txs_rejected = 0;    // unknown range, wrong gateway, oversize, sealed
  uint64_t txs_unknown_app = 0; // ordered and executed as nothing: no app of that id here
  // Copies of an id with other bytes than the copy held here, or than the
  // ones it was ordered with: never held, acknowledged or executed.
  uint64_t txs_conflicting = 0;
  // Copies held here, dropped because their id was ordered with other
  // bytes, and pulled again from a peer.
  uint64_t txs_replaced = 0;
  uint64_t txs_pulled = 0;      // txs received from peers
  uint64_t txs_served = 0;      // txs sent to peers that pulled them
  uint64_t txs_ordered = 0;     // txs in epochs this node proposed
  uint64_t txs_applied = 0;
  uint64_t epochs_proposed = 0;
  uint64_t epochs_applied = 0;
  uint64_t pulls_sent = 0;
  uint64_t ranges_sealed = 0;
  uint64_t ranges_retired = 0;  // sealed, applied and past the grace: state dropped
  uint64_t hashes_compared = 0;
};

// A node snapshot as begin_snapshot() captures it (docs/snapshots.md):
// everything replaying the log so far would rebuild, at the epoch boundary
// the node has applied.
struct NodeSnapshot {
  EpochNumber epoch;  // the last epoch applied
  uint64_t logical_time_ms = 0;
  uint64_t state_hash = 0;  // of the apps, after `epoch`
  // The node's own state (ranges, result tables, held txs, committed epochs
  // not yet applied, leases and seals), for Node::restore_state.
  std::string state;
  // Each app's state, produced piece by piece while the node goes on.
  std::vector<std::pair<AppId, std::unique_ptr<AppSnapshotCursor>>> apps;
  // Replayed after the state and the apps (Sequencer::snapshot_records).
  std::vector<PersistRecord> sequencer;
};

class Node {
 public:
  // Recent per-epoch state hashes kept for comparison with peers.
  static constexpr size_t kHashesKept = 1024;
  // Retired ranges whose seal is remembered to answer their gateways' retries.
  static constexpr size_t kRetiredRangesKept = 4096;

  Node(NodeConfig config, Sequencer& sequencer);
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Apps one node runs, at most.
  static constexpr size_t kAppsMax = 64;

  // Registers the state machine that executes txs of `app`.
  void register_app(AppId app, StateMachine& machine);
  // The registered app, or nullptr.
  StateMachine* find_app(AppId app) const;

  // Startup: feed every WAL record in order, then finish_replay(). Replay
  // re-executes committed epochs and produces no messages.
  Status replay(RecordType type, std::string_view payload);
  // Before finish_replay, in a cluster: the log lost records that were
  // durable; the sequencer recovers them from peers before it votes, and
  // the txs come back by pulls like any a node lacks.
  void note_log_lost();
  bool log_lost() const { return sequencer_.log_lost(); }
  void finish_replay();

  // --- Snapshots (docs/snapshots.md; node_snapshot.cc) ---
  // Captures the node between inputs (not while replaying). Cheap but for
  // the result tables and held txs, which it copies; the apps' states come
  // later, from their cursors.
  NodeSnapshot begin_snapshot();
  // Restart from a snapshot: before any record is replayed, the state
  // begin_snapshot captured, then each app's pieces, then the snapshot's
  // sequencer records through replay(), then the log after the snapshot.
  // Bad bytes give an error naming what is wrong; the node is then unusable.
  [[nodiscard]] Status restore_state(std::string_view state);
  [[nodiscard]] Status restore_app(AppId app, SnapshotPieces& pieces);
  // A tx record the snapshot covers (the log before its point, kept for a
  // fallback): an executed tx among them is kept for lagging peers again,
  // as a replay from the log's start would keep it. Before finish_replay.
  [[nodiscard]] Status replay_covered(RecordType type, std::string_view payload);
  // Encodes the node's own state as begin_snapshot does (tests compare a
  // restored node with the one it was taken from).
  std::string encode_state() const;

  // --- Catching up from a peer's snapshot (docs/snapshots.md, "Transfer") ---
  // Called by a host that can fetch peers' snapshots (a cluster node with
  // snapshots on): a node that lags beyond what its peers keep (every peer
  // evicted a tx it waits for, or the committed epochs it is given start
  // after its own) then waits for one instead of stopping with a fault. It
  // keeps voting, holding and advertising txs meanwhile; it does not
  // propose while its committed epochs have a gap.
  void enable_snapshot_transfer() { snapshot_transfer_ = true; }
  // The applied epoch a peer's snapshot must have for this node to go on,
  // and why it needs one; nullopt while it needs none.
  std::optional<EpochNumber> snapshot_needed() const { return snapshot_need_; }
  const std::string& snapshot_needed_why() const { return snapshot_need_why_; }
  // Installs a peer's snapshot while running: begin_install with its node
  // state (refused, changing nothing, if it is malformed or not new
  // enough), then install_app with each app's pieces, then finish_install
  // with the apps' state hash the snapshot's header gives. The node keeps
  // its own held txs (never the peer's: this node's durability claims are
  // its own), the committed epochs it knows beyond the snapshot's, its
  // sequencer and what it proposed; everything else is the snapshot's. A
  // failure after begin_install stops the node with a fault (its apps are
  // half replaced). The host then takes a snapshot of its own at once.
  [[nodiscard]] Status begin_install(std::string_view state);
  void install_app(AppId app, SnapshotPieces& pieces);
  void finish_install(uint64_t state_hash);
  // The host could not read the rest of the snapshot: the node stops.
  void abort_install(Status why);
  uint64_t snapshots_installed() const { return snapshots_installed_; }
  // The epoch the last snapshot installed was taken at.
  EpochNumber installed_epoch() const { return installed_epoch_; }

  void on_tx(GatewayId from, TxMsg msg);
  void on_lease_request(const LeaseRequest& request);
  void on_renew_lease(const RenewLease& renew);
  void on_peer(NodeId from, PeerMessage msg);
  // Every record this node emitted with seq <= durable_seq is on disk.
  void on_persisted(uint64_t durable_seq);
  // The driver is about to persist everything emitted so far: the last
  // chance to add records (an epoch) to the same batch.
  void on_flush();
  void tick(uint64_t now_ms);

  Output take_output();

  EpochNumber applied_epoch() const { return applied_epoch_; }
  EpochNumber committed_epoch() const { return committed_epoch_; }
  // The newest committed epoch this node has heard of: beyond
  // committed_epoch() while it waits across a gap for a snapshot.
  EpochNumber known_committed_epoch() const {
    return gap_epochs_.empty() ? committed_epoch_ : std::max(committed_epoch_, gap_epochs_.back().number);
  }
  uint64_t applied_time_ms() const { return applied_time_ms_; }
  const NodeCounters& counters() const { return counters_; }
  // Txs held but not yet executed.
  size_t held_txs() const { return held_txs_; }
  size_t retained_bytes() const { return retained_bytes_; }
  // Committed epochs waiting for txs this node lacks.
  size_t epochs_waiting() const { return committed_queue_.size(); }
  // Combined hash of every app's state, compared across replicas per epoch.
  uint64_t state_hash() const;
  // The hash after `epoch`, if this node applied it recently.
  std::optional<uint64_t> state_hash_at(EpochNumber epoch) const;
  // Not ok once this node's state diverged from a peer's (equal epochs,
  // different hashes), or it cannot go on (a gap in the committed epochs).
  // The driver must stop the node: it must not serve or vote any more.
  const Status& fault() const { return fault_; }
  // The newest range leased to `gateway`, or RangeId(0).
  RangeId newest_range(GatewayId gateway) const;
  size_t quorum() const { return k_; }
  // The group that orders epochs now (the sequencer's membership, sorted).
  const std::vector<NodeId>& members() const { return members_; }
  // Every node this one talks with: the members and the nodes the last
  // change removed that have not retired yet, this one excluded.
  const std::vector<NodeId>& peers() const { return peers_; }
  bool is_peer(NodeId id) const { return peer_index(id) != SIZE_MAX; }

  // --- Membership changes (node_membership.cc; docs/membership.md) ---
  // The configuration of members(): 0 until the first change.
  uint64_t membership_config() const { return membership_config_; }
  // Removed by the last change; serves its peers until retired().
  bool leaving() const { return leaving_; }
  // Removed, and a quorum of the new group holds everything it held (each
  // applied every epoch up to the switch, durably) and the new group's
  // sequencer runs without it: the driver stops it. Final.
  bool retired() const { return node_retired_; }
  // On the primary: asks the group to become `members` (with `annex`, the
  // address book, for every node) if it is still in config `expect_config`
  // (Sequencer::request_membership). Committed, membership_config() moves.
  [[nodiscard]] Status request_membership(uint64_t expect_config, std::vector<NodeId> members,
                                          std::string annex);
  // The host made the state the last install gave durable (its own
  // snapshot of it is published).
  void on_install_durable();
  NodeId id() const { return config_.id; }
  // Ticks × tick_ms: this node's steady time since it started.
  uint64_t steady_ms() const { return ticks_ * config_.tick_ms; }
  // This node's durable offset per range (for status pages).
  std::vector<std::pair<RangeId, uint64_t>> durable_offsets() const;
  // This node's committed offset in a live (unsealed) range it keeps.
  std::optional<uint64_t> committed_offset(RangeId range) const;
  // Whether it holds the tx durably, not yet executed.
  bool holds_durable(TxId id) const;
  // Ranges whose state this node keeps (live, sealed within the grace).
  size_t ranges_kept() const { return ranges_.size(); }
  // The oldest sealed range whose results are kept, with its seal's logical time.
  std::optional<std::pair<RangeId, uint64_t>> oldest_sealed() const;

 private:
  struct RangeState {
    RangeState(GatewayId owner_, const NodeConfig& c, size_t peers)
        : owner(owner_),
          held(c.held_txs_per_range_max),
          results(c.result_table_txs_per_range_max, c.result_table_bytes_per_range_max),
          peer_durable(peers, 0),
          peer_copies(peers) {}
    GatewayId owner;
    uint64_t written = 0;
    uint64_t durable = 0;
    uint64_t ordered = 0;
    uint64_t committed = 0;
    uint64_t applied = 0;
    HeldWindow held;  // offsets > applied
    ResultTable results;
    std::vector<uint64_t> peer_durable;  // advertised, indexed like peers_
    // The copies a peer advertised holding durably above this node's
    // committed offset: digests[i] is the tx_digest at offset lo + i.
    struct PeerCopies {
      uint64_t lo = 0;
      std::deque<uint64_t> digests;
    };
    std::vector<PeerCopies> peer_copies;  // indexed like peers_
    // In a cluster, the digest each committed, unexecuted offset was ordered
    // with: committed_digests[i] is offset applied + 1 + i (0: not bound, an
    // epoch of format 1). Empty on a single node.
    std::deque<uint64_t> committed_digests;
    uint64_t advertised = 0;             // own durable as last advertised
    bool advert_dirty = false;           // listed in advert_dirty_
    bool sealed = false;
    uint64_t seal_last = 0;
    bool sealing = false;  // this node proposed a seal not yet committed
    // Sealed, applied and past the grace: results dropped; retired (erased)
    // once its retained txs are evicted.
    bool expired = false;
    // Its gateway lived in an earlier incarnation of this process
    // (gateways_in_process): sealed once all its txs are ordered.
    bool orphaned = false;
    uint64_t lease_expiry_ms = 0;
    uint64_t proposed_expiry_ms = 0;  // by a renewal this node proposed in this term
    // Executed txs kept for pulls: retained[i] is offset retained_base + i.
    std::deque<Held> retained;
    uint64_t retained_base = 1;
    uint64_t pull_offset = 0;  // the offset last pulled, and when
    uint64_t pull_tick = 0;
    size_t pull_peer = 0;  // index (in peers_) of the peer last pulled from
    bool pull_served = false;  // ... and it answered
    // Peers (bits indexed like peers_) that answered a pull for
    // evicted_offset with TxEvicted.
    uint64_t evicted_offset = 0;
    uint64_t evicted_peers = 0;
    uint64_t evicted_tick = 0;  // when the first of them said so
  };

  void hold(RangeState& range, TxId id, AppId app, std::string op, uint64_t digest,
            bool durable);
  void advance_durable(RangeId id, RangeState& range);
  // The last offset that may be ordered in `range`, at most `budget` past
  // range.ordered; in a cluster, with the digests it binds them to. Sets
  // `conflict` if the offset after it is held with different bytes and no
  // bytes by k members.
  uint64_t orderable(const RangeState& range, uint64_t budget, std::vector<uint64_t>& digests,
                     bool& conflict) const;
  // The digest a committed, unexecuted offset was ordered with; 0 if none.
  uint64_t committed_digest(const RangeState& range, uint64_t offset) const;
  void learn_copies(RangeState& range, RangeState::PeerCopies& copies, uint64_t last,
                    const std::vector<uint64_t>& digests);
  // Adds `range` to an advert: its durable offset, and the digests of the
  // txs it holds from offset `from` on, within `digests_left`.
  void advertise_range(Offsets& m, RangeId id, RangeState& range, uint64_t from,
                       size_t& digests_left);
  void propose_epochs();
  void take_committed();
  void on_committed(Epoch epoch);
  void apply_committed();
  bool ready_to_apply(const Epoch& epoch);
  void pull(RangeId id, RangeState& range, uint64_t offset, uint64_t last);
  void apply_epoch(const Epoch& epoch);
  void retain(RangeId id, RangeState& range, Held held);
  void on_offsets(size_t peer, const Offsets& m);
  void on_pull(NodeId from, const TxPull& m);
  void on_push(size_t peer, const TxPush& m);
  void on_evicted(size_t peer, const TxEvicted& m);
  void on_retired_range_tx(GatewayId from, const TxMsg& msg);
  void retire_sealed(uint64_t logical_time_ms);
  void retire(std::map<RangeId, RangeState>::iterator it);
  void lags_too_far(std::string_view why);
  void compare_hash(NodeId peer, EpochNumber epoch, uint64_t hash);
  void advertise(bool full);
  void send(GatewayId to, NodeToGateway msg, bool after_persist);
  void send_peer(NodeId to, PeerMessage msg);
  void check_invariants(const RangeState& range) const;
  void set_fault(Status s);
  size_t peer_index(NodeId id) const;
  // Follows the sequencer's membership: members_, k_, peers_ and every
  // array indexed like peers_.
  void sync_membership();
  void set_peers(std::vector<NodeId> peers);
  void on_membership_note(NodeId from, const MembershipNote& m);
  // Asks for handoffs and retires, as the membership change asks (each tick).
  void membership_tick();
  // Puts the executed txs replay_covered found back into the ranges'
  // retained txs, before the ones executed since.
  void adopt_covered();

  NodeConfig config_;
  Sequencer& sequencer_;
  std::vector<NodeId> members_;
  std::vector<NodeId> peers_;  // members_ and removed nodes not retired, without this node
  // Bit i: peers_[i] is a member (only members' copies count towards k_,
  // and only members' eviction answers make "every peer evicted it").
  uint64_t member_peers_ = 0;
  size_t k_ = 1;
  // Membership (node_membership.cc).
  uint64_t membership_config_ = 0;
  EpochNumber switch_epoch_{0};
  bool leaving_ = false;
  bool node_retired_ = false;
  std::vector<NodeId> removed_;  // by the last change, not yet retired
  // Leaving: the group whose members must hand off, and those that did.
  uint64_t handoff_config_ = 0;
  std::vector<NodeId> handoff_members_;
  std::vector<NodeId> handed_off_from_;
  uint64_t handoff_asked_tick_ = 0;
  bool install_durable_pending_ = false;
  // The newest epoch whose applied state a restart rebuilds (its records
  // durable, or an installed snapshot published); and (epoch, the seq after
  // the records emitted when it applied) for later ones, oldest first.
  EpochNumber durable_applied_epoch_{0};
  std::deque<std::pair<EpochNumber, uint64_t>> applied_marks_;
  void advance_durable_applied();
  void note_applied(EpochNumber epoch);
  std::vector<std::pair<AppId, StateMachine*>> apps_;  // sorted by id
  Output out_;
  bool replaying_ = true;
  uint64_t now_ms_ = 0;
  uint64_t ticks_ = 0;
  uint64_t next_logical_time(EpochNumber number) const;
  uint64_t durable_seq_ = 0;
  Status fault_;

  std::map<RangeId, RangeState> ranges_;  // ordered: epochs list ranges ascending
  RangeId next_range_{1};
  std::unordered_map<GatewayId, RangeId> newest_range_;
  std::deque<LeaseRequest> lease_requests_;
  std::map<RangeId, GatewayId> renewals_;  // waiting for the next epoch
  // Tx records emitted and not yet durable, in seq order.
  std::deque<std::pair<uint64_t, TxId>> pending_durable_;
  std::vector<RangeId> advert_dirty_;  // ranges whose durable offset moved
  size_t held_txs_ = 0;
  // Executed txs kept for peers, in execution order, for eviction.
  std::deque<RangeId> retained_order_;
  size_t retained_bytes_ = 0;
  // Sealed ranges not yet retired, in seal order: (seal time, range).
  std::deque<std::pair<uint64_t, RangeId>> sealed_order_;
  // Every seal, in order, to forget its gateway a grace later (at commit:
  // lease grants must not depend on what a node has applied).
  struct SealedGateway {
    uint64_t sealed_at_ms;
    GatewayId owner;
    RangeId range;
  };
  std::deque<SealedGateway> sealed_gateways_;
  // (owner, seal's last offset) of recently retired ranges, to answer their
  // gateways' retries.
  std::map<RangeId, std::pair<GatewayId, uint64_t>> retired_;
  size_t pull_rotation_ = 0;
  // replay_covered's executed txs, until finish_replay: range -> offset ->
  // tx, with the order they came in (to drop the oldest past the retention
  // bound) and their bytes.
  std::map<RangeId, std::map<uint64_t, Held>> covered_;
  std::deque<std::pair<RangeId, uint64_t>> covered_order_;
  size_t covered_bytes_ = 0;

  // Catching up from a peer's snapshot (node_snapshot.cc).
  bool snapshot_transfer_ = false;
  std::optional<EpochNumber> snapshot_need_;
  std::string snapshot_need_why_;
  // Committed epochs given after a gap (the sequencer's checkpoint jumped
  // past epochs this node never saw), kept for after the install; bounded.
  static constexpr size_t kGapEpochsMax = 65536;
  bool epoch_gap_ = false;
  uint64_t abdicated_tick_ = 0;
  std::deque<Epoch> gap_epochs_;
  // During an install: the epochs to feed after it, the apps installed.
  std::vector<Epoch> install_later_;
  std::vector<AppId> install_apps_;
  bool installing_ = false;
  uint64_t snapshots_installed_ = 0;
  EpochNumber installed_epoch_{0};
  void need_snapshot(EpochNumber need, std::string why);
  void on_gap(Epoch epoch);

  // Where ready_to_apply stopped scanning the front epoch.
  EpochNumber scan_epoch_{0};
  size_t scan_interval_ = 0;
  uint64_t scan_offset_ = 0;
  // Committed epochs not yet applied (waiting for txs), in order.
  std::deque<Epoch> committed_queue_;
  EpochNumber committed_epoch_{0};
  uint64_t committed_time_ms_ = 0;
  EpochNumber applied_epoch_{0};
  uint64_t applied_time_ms_ = 0;
  uint64_t proposed_time_ms_ = 0;
  // Steady time (ticks × tick_ms) of this node's last proposal, or of when
  // it saw the last committed epoch if it has not proposed in this term.
  uint64_t proposal_steady_ms_ = 0;
  uint64_t committed_seen_steady_ms_ = 0;
  uint64_t proposer_term_ = UINT64_MAX;
  // (epoch, state hash after it) for the most recent epochs applied.
  std::deque<std::pair<EpochNumber, uint64_t>> hashes_;
  // A peer's claim about an epoch this node has not applied yet.
  std::vector<std::pair<EpochNumber, uint64_t>> peer_claims_;  // indexed like peers_
  NodeCounters counters_;
};

// What binds a tx id to its bytes: equal for equal (app, op), and unequal,
// but for a 2^-64 chance, for any other. Not a cryptographic digest: it
// finds a faulty gateway's two payloads, not ones crafted to collide.
uint64_t tx_digest(AppId app, std::string_view op);

// WAL payload of a RecordType::kTx record.
void encode_tx_record(const TxMsg& tx, std::string& out);
Result<TxMsg> decode_tx_record(std::string_view payload);

}  // namespace maroon
