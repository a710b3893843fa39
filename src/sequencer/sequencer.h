// The sequencer: the replicated ordering log of epochs (docs/architecture.md). The
// node proposes epochs and applies committed ones in order; it never knows
// which backend (VR among the nodes, or etcd later) is underneath.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maroon/status.h"
#include "common/types.h"
#include "protocol/output.h"
#include "sequencer/epoch.h"

namespace maroon {

// What `maroon status` shows of the sequencer.
struct SequencerStatus {
  std::string role;  // "primary", "backup", "view-change", "recovering", ...
  uint64_t view = 0;
  NodeId primary;
  EpochNumber committed;  // the last committed epoch this replica knows
  // Whether this replica is part of a working quorum now, or was within a
  // grace period (a primary failover is not a quorum loss); if not, why.
  bool quorum = true;
  std::string no_quorum_reason;
};

// The group that orders epochs, as the sequencer committed it
// (docs/membership.md). A change takes effect between two epochs: those up
// to switch_epoch were ordered by `previous`, later ones by `members`.
struct Membership {
  uint64_t config = 0;  // 0: the group the cluster was created with
  std::vector<NodeId> members;
  std::vector<NodeId> previous;  // empty in config 0
  EpochNumber switch_epoch;
  std::string annex;  // the node's address book, opaque here
  // Bit n: node n was removed by this or an earlier change (ids 1..63);
  // such an id never becomes a member again.
  uint64_t removed_ids = 0;
  bool operator==(const Membership&) const = default;
};

class Sequencer {
 public:
  virtual ~Sequencer() = default;
  // True when this replica may propose now (it is the proposer, everything
  // proposed by earlier proposers is committed, and its pipeline has room).
  virtual bool can_propose() const = 0;
  // True when this replica leads the sequencer now (the VR primary).
  virtual bool is_primary() const = 0;
  // Changes whenever this replica becomes the proposer anew: what it
  // proposed in an earlier term may have been lost, so the node restarts its
  // proposals from the committed state.
  virtual uint64_t proposer_term() const = 0;
  // Proposes the next epoch; its number must be last_proposed() + 1.
  virtual void propose(Epoch epoch, Output& out) = 0;
  virtual EpochNumber last_proposed() const = 0;
  // Every record with seq <= durable_seq is on disk.
  virtual void on_persisted(uint64_t durable_seq, Output& out) = 0;
  // A message from another replica (its encoded bytes; bad bytes are dropped).
  virtual void on_message(NodeId from, std::string_view bytes, Output& out) = 0;
  // Some message (of any kind, e.g. the node's offset adverts) arrived from
  // peer `from`: it is alive and linked to us. For quorum detection only.
  virtual void on_peer_heard(NodeId /*from*/) {}
  // Committed epochs not yet handed out, in order.
  virtual std::vector<Epoch> take_committed() = 0;
  // Rebuilds state from a record of this sequencer during startup replay
  // (the superblock's state record first, then the WAL's records in order).
  virtual Status replay(RecordType type, std::string_view payload) = 0;
  // Records that, replayed (after the superblock's state), rebuild this
  // sequencer as every record it emitted so far would: what a node
  // snapshot carries so the log before it can be deleted. After start().
  virtual std::vector<PersistRecord> snapshot_records() const = 0;
  // Before start(): the log lost records it had made durable; the sequencer
  // must get them back from peers before it votes (vr::Replica::note_log_lost).
  virtual void note_log_lost() {}
  // Marked by note_log_lost and not yet recovered.
  virtual bool log_lost() const { return false; }
  // After replay: a fresh sequencer bootstraps, a restarted one resumes.
  virtual void start(Output& out) = 0;
  // Time passes (heartbeats, timeouts).
  virtual void tick(Output& out) = 0;
  // This replica leads but cannot propose (the node's committed state has
  // a gap until it installs a snapshot): another should lead meanwhile.
  virtual void abdicate(Output& /*out*/) {}
  virtual SequencerStatus status() const = 0;

  // --- Membership ---
  // This replica was removed from the group and the new group has started
  // without it (VR: shut down). It orders and votes no more.
  virtual bool left_group() const { return false; }
  // After left_group(): the configuration and members of the group that went
  // on without it, as far as this replica knows (its membership() may not
  // have seen that change, if it learned of it late).
  virtual std::pair<uint64_t, std::vector<NodeId>> successor_group() const { return {}; }
  // The current group; changes only between inputs, and only to a larger
  // config.
  virtual const Membership& membership() const = 0;
  // On the primary: asks the group to become `members` (with `annex` for
  // every node), if it is still in config `expect_config`. Committed, it
  // shows in membership(); a refusal says why. At most one change is in
  // flight; epochs wait for it.
  [[nodiscard]] virtual Status request_membership(uint64_t /*expect_config*/,
                                                  std::vector<NodeId> /*members*/,
                                                  std::string /*annex*/, Output& /*out*/) {
    return invalid_argument("this sequencer cannot change its group");
  }
};

}  // namespace maroon
