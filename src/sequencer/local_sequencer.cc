#include "sequencer/local_sequencer.h"

#include <fmt/format.h>

namespace maroon {

void LocalSequencer::propose(Epoch epoch, Output& out) {
  MAROON_ASSERT(can_propose());
  MAROON_ASSERT(epoch.number == last_proposed_.next());
  MAROON_ASSERT(validate_epoch(epoch).is_ok());
  std::string payload;
  encode_epoch(epoch, payload);
  uint64_t seq = out.add_record(RecordType::kEpoch, std::move(payload));
  MAROON_ASSERT(inflight_.empty() || inflight_.back().first < seq);
  last_proposed_ = epoch.number;
  inflight_.emplace_back(seq, std::move(epoch));
}

void LocalSequencer::on_persisted(uint64_t durable_seq, Output&) {
  while (!inflight_.empty() && inflight_.front().first <= durable_seq) {
    committed_.push_back(std::move(inflight_.front().second));
    inflight_.pop_front();
  }
}

std::vector<Epoch> LocalSequencer::take_committed() { return std::exchange(committed_, {}); }

Status LocalSequencer::replay(RecordType type, std::string_view payload) {
  if (type != RecordType::kEpoch) return corruption("sequencer: unexpected record type");
  Result<Epoch> epoch = decode_epoch(payload);
  if (!epoch) return epoch.status();
  if (epoch->number != last_proposed_.next()) {
    return corruption(fmt::format("sequencer: epoch {} follows epoch {} in the WAL",
                                  epoch->number.value(), last_proposed_.value()));
  }
  last_proposed_ = epoch->number;
  committed_.push_back(std::move(epoch).value());
  return Status::ok();
}

}  // namespace maroon
