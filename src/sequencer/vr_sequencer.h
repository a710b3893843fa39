// The sequencer backed by Viewstamped Replication (src/vr): epochs are the
// ops of a VR log, proposed by the node on the primary and committed by a
// quorum. `maroon dev` runs it with a single replica, whose quorum is itself:
// an epoch commits once its log record is durable.
//
// Records: the replica's log suffixes and checkpoints go to the node's WAL
// (kVrLog, kVrCheckpoint, encoded by vr/codec.h); its DurableState is a
// kVrState record that the driver keeps in the superblock. The VR record
// numbering is mapped onto the node's, so "node records up to n are durable"
// becomes "VR records up to m are durable".
#pragma once

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "sequencer/sequencer.h"
#include "vr/replica.h"

namespace maroon {

class VrSequencer final : public Sequencer {
 public:
  // Proposed epochs not yet committed.
  static constexpr size_t kPipelineEpochsMax = 8;

  explicit VrSequencer(vr::ReplicaId self = vr::ReplicaId(1),
                       std::vector<vr::ReplicaId> members = {vr::ReplicaId(1)},
                       vr::Options options = default_options());
  static vr::Options default_options();

  bool can_propose() const override;
  void propose(Epoch epoch, Output& out) override;
  EpochNumber last_proposed() const override { return last_proposed_; }
  void on_persisted(uint64_t durable_seq, Output& out) override;
  std::vector<Epoch> take_committed() override;
  Status replay(RecordType type, std::string_view payload) override;
  void start(Output& out) override;
  void tick(Output& out) override;

  const vr::Replica& replica() const { return replica_; }

 private:
  // The replicated service: collects committed epochs for the node. Its
  // snapshot is empty: the node's state is rebuilt from its own WAL records.
  class EpochService final : public vr::Service {
   public:
    std::string execute(const vr::Entry& entry) override;
    std::string read(std::string_view) override { return {}; }
    std::string snapshot() override { return {}; }
    Status restore(std::string_view) override { return Status::ok(); }
    std::vector<Epoch> committed;
    Status error;  // a committed entry that is not an epoch
  };

  void drain(Output& out);

  const std::vector<vr::ReplicaId> members_;
  EpochService service_;
  vr::Replica replica_;
  vr::Output vout_;
  std::deque<std::pair<uint64_t, uint64_t>> seq_map_;  // (node seq, VR seq)
  EpochNumber last_proposed_{0};
  bool replayed_anything_ = false;
};

}  // namespace maroon
