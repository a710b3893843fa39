// The interim single-replica sequencer: an epoch is committed once its record
// is durable in the local WAL. VR with one replica replaces it (and this file
// is deleted then); it exists so the node is written against Sequencer only.
#pragma once

#include <deque>
#include <utility>

#include "sequencer/sequencer.h"

namespace maroon {

class LocalSequencer final : public Sequencer {
 public:
  // At most this many proposed epochs wait for their record to be durable.
  static constexpr size_t kPipelineEpochsMax = 8;

  bool can_propose() const override { return inflight_.size() < kPipelineEpochsMax; }
  void propose(Epoch epoch, Output& out) override;
  EpochNumber last_proposed() const override { return last_proposed_; }
  void on_persisted(uint64_t durable_seq, Output& out) override;
  std::vector<Epoch> take_committed() override;
  Status replay(RecordType type, std::string_view payload) override;

 private:
  EpochNumber last_proposed_{0};
  std::deque<std::pair<uint64_t, Epoch>> inflight_;  // (record seq, epoch)
  std::vector<Epoch> committed_;
};

}  // namespace maroon
