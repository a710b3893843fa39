#include "sequencer/vr_sequencer.h"

#include <fmt/format.h>

#include "common/limits.h"
#include "vr/codec.h"

namespace maroon {

namespace {
// The node is the only client of its sequencer.
constexpr vr::ClientId kNodeClient(1);
}  // namespace

vr::Options VrSequencer::default_options() {
  vr::Options o;
  // Epochs are small and frequent; a checkpoint only trims the in-memory log
  // (the node rebuilds its state from its WAL).
  o.checkpoint_interval_ops = 4096;
  o.pipeline_ops_max = kPipelineEpochsMax;
  return o;
}

VrSequencer::VrSequencer(vr::ReplicaId self, std::vector<vr::ReplicaId> members,
                         vr::Options options)
    : members_(std::move(members)), replica_(self, options, service_, /*seed=*/self.value()) {
  // A group of one only ever appends (no view change rewrites its log), so
  // its largest record is one Prepare batch; it must fit a WAL record.
  MAROON_ASSERT(members_.size() > 1 ||
                options.prepare_batch_bytes_max + 64 * 1024 <= limits::wal_record_bytes_max);
}

std::string VrSequencer::EpochService::execute(const vr::Entry& entry) {
  Result<Epoch> epoch = decode_epoch(entry.payload);
  if (!epoch) {
    // Only the node proposes, with encoded epochs: this is corruption of
    // the log, reported by the node as a replay or apply failure.
    error = corruption(fmt::format("vr op {}: {}", entry.op.value(), epoch.status().to_string()));
    return {};
  }
  committed.push_back(std::move(epoch).value());
  return {};
}

bool VrSequencer::can_propose() const {
  return replica_.is_primary() &&
         replica_.op().value() - replica_.commit().value() < kPipelineEpochsMax;
}

void VrSequencer::propose(Epoch epoch, Output& out) {
  MAROON_ASSERT(can_propose());
  MAROON_ASSERT(epoch.number == last_proposed_.next());
  MAROON_ASSERT(validate_epoch(epoch).is_ok());
  std::string payload;
  encode_epoch(epoch, payload);
  last_proposed_ = epoch.number;
  // The epoch number is the request number: increasing, so the client table
  // keeps each proposal at most once.
  replica_.on_client_request(
      vr::ClientRequest{kNodeClient, vr::RequestNumber(epoch.number.value()),
                        vr::EntryKind::kRequest, false, std::move(payload)},
      vout_);
  drain(out);
}

void VrSequencer::on_persisted(uint64_t durable_seq, Output& out) {
  uint64_t vr_durable = 0;
  while (!seq_map_.empty() && seq_map_.front().first <= durable_seq) {
    vr_durable = seq_map_.front().second;
    seq_map_.pop_front();
  }
  if (vr_durable != 0) replica_.on_persisted(vr_durable, vout_);
  drain(out);
}

std::vector<Epoch> VrSequencer::take_committed() { return std::exchange(service_.committed, {}); }

Status VrSequencer::replay(RecordType type, std::string_view payload) {
  if (type == RecordType::kLegacyEpoch) {
    return corruption(
        "the WAL holds epoch records of a build before VR (record type 2); this build cannot "
        "read that data directory: start with a fresh one");
  }
  if (type != RecordType::kVrLog && type != RecordType::kVrCheckpoint &&
      type != RecordType::kVrState) {
    return corruption(fmt::format("sequencer: unexpected record type {}", static_cast<int>(type)));
  }
  Result<vr::DurableRecord> record = vr::decode_record(payload);
  if (!record) return record.status();
  replayed_anything_ = true;
  if (Status s = replica_.replay(*record); !s) return s;
  if (!service_.error.is_ok()) return service_.error;
  if (!service_.committed.empty()) last_proposed_ = service_.committed.back().number;
  return Status::ok();
}

void VrSequencer::start(Output& out) {
  if (replayed_anything_) {
    replica_.finish_replay(vout_);
  } else {
    replica_.bootstrap(members_, vout_);
  }
  drain(out);
}

void VrSequencer::tick(Output& out) {
  replica_.tick(vout_);
  drain(out);
}

void VrSequencer::drain(Output& out) {
  for (size_t i = 0; i < vout_.persist.size(); i++) {
    const vr::DurableRecord& r = vout_.persist[i];
    std::string payload;
    vr::encode_record(r, payload);
    RecordType type = std::holds_alternative<vr::LogSuffix>(r)    ? RecordType::kVrLog
                      : std::holds_alternative<vr::Checkpoint>(r) ? RecordType::kVrCheckpoint
                                                                  : RecordType::kVrState;
    uint64_t node_seq = out.add_record(type, std::move(payload));
    seq_map_.emplace_back(node_seq, vout_.first_seq + i);
  }
  // One replica: nobody to send to, and the node answers its own clients.
  MAROON_ASSERT(members_.size() > 1 || (vout_.send_now.empty() && vout_.send_after_persist.empty()));
  vout_.clear();
  MAROON_ASSERT(service_.error.is_ok());
}

}  // namespace maroon
