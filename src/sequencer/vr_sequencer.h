// The sequencer backed by Viewstamped Replication (src/vr): epochs are the
// ops of a VR log, proposed by the node on the primary and committed by a
// quorum. `maroon dev` runs it with a single replica, whose quorum is itself:
// an epoch commits once its log record is durable. A cluster runs one replica
// per node; VR messages travel as VrPackets between the nodes.
//
// Records: the replica's log suffixes and checkpoints go to the node's WAL
// (kVrLog, kVrCheckpoint, encoded by vr/codec.h); its DurableState is a
// kVrState record that the driver keeps in the superblock. The VR record
// numbering is mapped onto the node's, so "node records up to n are durable"
// becomes "VR records up to m are durable".
//
// Quorum: the replica is part of a working quorum when it is normal in a
// view and either is the primary holding its lease (a quorum of backups
// answered its heartbeats recently) or is a backup that heard from the
// primary of its view within the VR lease and from enough members (itself
// included, a quorum) within a view-change timeout; any message counts
// (on_peer_heard: a node advertises its offsets to every peer every 10
// ticks, well within that). has_quorum() stays true for
// quorum_grace_ticks (3 view-change timeouts) after the last such moment, so
// a primary failover, which the surviving quorum finishes well within that,
// does not count as a quorum loss.
//
// Checkpoints: the node rebuilds its state from its own WAL, so a VR
// checkpoint's snapshot holds only the most recent committed epochs (up to
// snapshot_epochs_max / snapshot_bytes_max). A replica brought forward by
// state transfer learns those epochs from it; one that lags further than the
// snapshot reaches back sees a gap in the epoch numbers (the node reports it:
// catching up from that far needs node snapshots, not built yet).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sequencer/sequencer.h"
#include "vr/replica.h"

namespace maroon {

class VrSequencer final : public Sequencer {
 public:
  // Proposed epochs not yet committed. One node: an epoch per WAL batch,
  // several batches may be in flight. A cluster: fewer, larger epochs; more
  // in flight only multiplies epochs (measured: 2-3 in flight give the same
  // or higher throughput than 8, with a quarter of the epochs under load).
  static constexpr size_t kPipelineEpochsMax = 8;
  static constexpr size_t kClusterPipelineEpochsMax = 3;
  // Recent epochs carried by a checkpoint snapshot.
  // A lagging replica that VR brings forward by state transfer catches up
  // only if it lacks no more than these; at ~1,000 epochs/s under load that
  // is half a minute.
  static constexpr size_t kSnapshotEpochsMax = 32768;
  static constexpr size_t kSnapshotBytesMax = 3 * 1024 * 1024;
  static_assert(kSnapshotBytesMax + 64 * 1024 <= vr::limits::checkpoint_bytes_max);

  // `tick_ms` only words the no-quorum reason (0: in ticks). `seed` seeds the
  // replica's randomness, its recovery nonces among it: it must differ on
  // every start of the process (a stale RecoveryResponse to an earlier
  // incarnation's recovery must not match), so a group of more than one
  // needs a fresh one (the driver draws it from the OS); 0 is for groups of
  // one, which never recover.
  explicit VrSequencer(vr::ReplicaId self = vr::ReplicaId(1),
                       std::vector<vr::ReplicaId> members = {vr::ReplicaId(1)},
                       vr::Options options = default_options(), uint64_t tick_ms = 0,
                       uint64_t seed = 0);
  static vr::Options default_options();

  bool can_propose() const override;
  bool is_primary() const override {
    return replica_.is_primary() && replica_.status() == vr::ReplicaStatus::kNormal;
  }
  // (configuration epoch << 32) | view of the view this replica last began
  // proposing in.
  uint64_t proposer_term() const override { return proposer_term_; }
  void propose(Epoch epoch, Output& out) override;
  EpochNumber last_proposed() const override {
    return proposals_in_view_ == 0 ? service_.last : last_proposed_;
  }
  void on_persisted(uint64_t durable_seq, Output& out) override;
  void on_message(NodeId from, std::string_view bytes, Output& out) override;
  void on_peer_heard(NodeId from) override;
  std::vector<Epoch> take_committed() override;
  Status replay(RecordType type, std::string_view payload) override;
  std::vector<PersistRecord> snapshot_records() const override;
  void note_log_lost() override { log_lost_noted_ = true; }
  // Before start(), with nothing replayed: this node is new to a running
  // group and waits to be added by a membership change (vr::Replica::join)
  // instead of bootstrapping the configured group.
  void join() { join_ = true; }
  void abdicate(Output& out) override;
  bool log_lost() const override { return replica_.log_lost(); }
  void start(Output& out) override;
  void tick(Output& out) override;
  SequencerStatus status() const override;
  const Membership& membership() const override { return service_.membership; }
  bool left_group() const override {
    return replica_.status() == vr::ReplicaStatus::kShutdown;
  }
  std::pair<uint64_t, std::vector<NodeId>> successor_group() const override;
  Status request_membership(uint64_t expect_config, std::vector<NodeId> members,
                            std::string annex, Output& out) override;

  // The client id of membership requests (never a node's: those are
  // replica ids, below 2^32); the request number is the config asked for,
  // so the client table runs each at most once across primaries.
  static constexpr uint64_t kMembershipClient = uint64_t{1} << 40;
  // An operator's guard, checked by the admin endpoint before it asks
  // (docs/membership.md): refuses a group a quorum of which are not current
  // members heard from lately, since it could not work at once (a lost
  // member would be kept, or too many new ones added at a time). Not part
  // of request_membership: whether to ask anyway is the caller's choice.
  Status check_group_can_work(const std::vector<NodeId>& members) const;

  const vr::Replica& replica() const { return replica_; }
  // See "Quorum" above. The reason is empty while has_quorum().
  bool has_quorum() const;
  std::string no_quorum_reason() const;
  uint64_t quorum_grace_ticks() const { return quorum_grace_ticks_; }
  uint64_t messages_dropped() const { return messages_dropped_; }

 private:
  // The replicated service: collects committed epochs for the node and keeps
  // the most recent ones for checkpoint snapshots.
  class EpochService final : public vr::Service {
   public:
    std::string execute(const vr::Entry& entry) override;
    std::string read(std::string_view) override { return {}; }
    std::string snapshot() override;
    Status restore(std::string_view snapshot) override;
    void on_reconfigure(vr::ConfigEpoch epoch, const std::vector<vr::ReplicaId>& members,
                        const std::vector<vr::ReplicaId>& old_members, std::string_view annex,
                        vr::OpNumber op) override;
    std::vector<Epoch> committed;
    EpochNumber last;  // the last committed epoch
    Status error;  // a committed entry that is not an epoch
    Membership membership;
   private:
    void remember(std::string encoded);
    std::deque<std::string> recent_;  // encoded, oldest first
    size_t recent_bytes_ = 0;
  };

  void drain(Output& out);
  void note_view();
  // Is there evidence of a working quorum right now? (See "Quorum".)
  bool quorum_evidence() const;
  void note_quorum();
  std::string ticks_text(uint64_t ticks) const;
  // Other members heard from within the last `window` ticks.
  size_t peers_heard_within(uint64_t window) const;

  const vr::ReplicaId self_;
  const std::vector<vr::ReplicaId> members_;
  const size_t pipeline_epochs_max_;
  EpochService service_;
  vr::Replica replica_;
  vr::Output vout_;
  std::deque<std::pair<uint64_t, uint64_t>> seq_map_;  // (node seq, VR seq)
  EpochNumber last_proposed_{0};
  // The view in which this replica last became primary, and its log head
  // then: ops up to it came from earlier views and must commit before this
  // replica proposes (their epochs decide where its own ones start).
  uint64_t proposer_term_ = 0;
  bool proposing_ = false;
  vr::OpNumber view_start_op_{0};
  uint64_t proposals_in_view_ = 0;
  // A replica with nothing to replay never voted: it bootstraps as new.
  bool log_lost_noted_ = false;
  bool join_ = false;
  bool replayed_anything_ = false;
  uint64_t messages_dropped_ = 0;

  // Quorum tracking, in replica ticks.
  const uint64_t tick_ms_;
  const uint64_t lease_ticks_;
  const uint64_t peer_window_ticks_;  // a view-change timeout
  const uint64_t quorum_grace_ticks_;
  bool quorum_seen_ = false;
  uint64_t quorum_seen_tick_ = 0;
  // The tick a message from each other member of the current group last
  // arrived.
  std::map<vr::ReplicaId, uint64_t> heard_;
  // A backup: the last tick the primary of `primary_heard_view_` was heard.
  std::optional<uint64_t> primary_heard_tick_;
  uint64_t primary_heard_view_ = 0;
};

}  // namespace maroon
