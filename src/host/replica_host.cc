#include "host/replica_host.h"

#include "protocol/output.h"
#include "vr/codec.h"

namespace maroon::host {

namespace {

Status replay_bytes(vr::Replica& replica, std::string_view bytes) {
  Result<vr::DurableRecord> record = vr::decode_record(bytes);
  if (!record) return record.status();
  return replica.replay(*record);
}

}  // namespace

Result<std::unique_ptr<DataDir>> ReplicaHost::open(Env& env, const DataDirOptions& options,
                                                   bool& replayed) {
  replayed = false;
  auto dir = DataDir::open(
      env, options,
      [&](std::string_view state) {
        replayed = true;
        return replay_bytes(replica_, state);
      },
      [&](uint8_t type, std::string_view payload) {
        if (type != static_cast<uint8_t>(RecordType::kVrLog) &&
            type != static_cast<uint8_t>(RecordType::kVrCheckpoint)) {
          return corruption("replica host: unexpected record type " + std::to_string(type));
        }
        replayed = true;
        return replay_bytes(replica_, payload);
      });
  if (dir && (*dir)->log_lost() && replayed) {
    // (A disk with nothing replayed bootstraps or joins: it never voted.)
    replica_.note_log_lost();
    log_lost_ = true;
  }
  return dir;
}

void ReplicaHost::drain() {
  for (const vr::DurableRecord& r : out_.persist) {
    std::string payload;
    vr::encode_record(r, payload);
    if (std::holds_alternative<vr::DurableState>(r)) {
      order_.add_state(std::move(payload));
    } else {
      const RecordType type =
          std::holds_alternative<vr::LogSuffix>(r) ? RecordType::kVrLog : RecordType::kVrCheckpoint;
      order_.add_record(static_cast<uint8_t>(type), payload);
    }
  }
  if (!out_.persist.empty()) order_.emitted(out_.next_seq() - 1);
  for (vr::Envelope& e : out_.send_now) sink_.to_replica(std::move(e));
  const uint64_t needed = out_.next_seq() - 1;
  for (vr::Envelope& e : out_.send_after_persist) {
    order_.after_persist(needed, std::move(e), [this](vr::Envelope m) { sink_.to_replica(std::move(m)); });
  }
  for (vr::ClientReply& r : out_.replies) sink_.to_client(std::move(r));
  out_.clear();
}

std::optional<PendingWrite> ReplicaHost::take_write() {
  if (order_.writing() || failed_) return std::nullopt;
  if (log_lost_ && !replica_.log_lost()) {
    order_.mark_log_recovered();  // as NodeHost::take_write
    log_lost_ = false;
  }
  if (!order_.has_pending()) return std::nullopt;
  return order_.take_write();
}

void ReplicaHost::written(uint64_t last_seq, const std::function<void()>& start_next) {
  order_.written(last_seq, [this](vr::Envelope m) { sink_.to_replica(std::move(m)); });
  if (start_next) start_next();
  replica_.on_persisted(last_seq, out_);
  drain();
}

void ReplicaHost::write_failed() {
  order_.failed();
  failed_ = true;
}

}  // namespace maroon::host
