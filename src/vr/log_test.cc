// Properties of the durable log: replaying the records a replica writes
// (log suffixes that append, truncate or start after a gap, and checkpoints
// that drop a prefix) rebuilds exactly the log a simple model keeps.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "common/codec.h"
#include "vr/codec.h"
#include "vr/null_service.h"
#include "vr/replica.h"

namespace maroon::vr {
namespace {

std::string encode_state_for_checkpoint() {
  // The checkpoint state format of replica.cc: format 2, epoch 0, epoch
  // start 0, members {1,2,3}, no clients, empty service snapshot.
  std::string out;
  ByteWriter w(out);
  w.u8(2);
  w.u64(0);
  w.u64(0);
  w.bytes(encode_members({ReplicaId(1), ReplicaId(2), ReplicaId(3)}));
  w.varint(0);
  w.bytes("");
  return out;
}

// The model: entries (start, start + size].
struct ModelLog {
  uint64_t start = 0;
  std::vector<std::string> payloads;
  uint64_t last() const { return start + payloads.size(); }
};

RC_GTEST_PROP(VrLog, ReplayRebuildsTheModelLog, ()) {
  ModelLog model;
  std::vector<DurableRecord> records;
  DurableState state;
  state.members = {ReplicaId(1), ReplicaId(2), ReplicaId(3)};
  records.push_back(state);
  uint64_t checkpoint = 0;
  const int steps = *rc::gen::inRange(1, 40);
  for (int i = 0; i < steps; i++) {
    const int kind = *rc::gen::inRange(0, 10);
    if (kind < 6) {  // append, possibly truncating first
      uint64_t after = model.last();
      if (kind >= 4 && model.last() > std::max(model.start, checkpoint)) {
        after = *rc::gen::inRange<uint64_t>(std::max(model.start, checkpoint), model.last() + 1);
      }
      const size_t n = *rc::gen::inRange<size_t>(0, 5);
      LogSuffix s{OpNumber(after), {}};
      model.payloads.resize(after - model.start);
      for (size_t k = 0; k < n; k++) {
        std::string p = std::to_string(i) + "/" + std::to_string(k);
        s.entries.push_back(Entry{OpNumber(after + k + 1), ViewNumber(0), EntryKind::kRequest,
                                  ClientId(1), RequestNumber(after + k + 1), p});
        model.payloads.push_back(p);
      }
      records.push_back(s);
    } else if (kind < 8) {  // a gap: the log starts again further on
      const uint64_t after = model.last() + *rc::gen::inRange<uint64_t>(1, 10);
      LogSuffix s{OpNumber(after), {}};
      s.entries.push_back(Entry{OpNumber(after + 1), ViewNumber(1), EntryKind::kRequest,
                                ClientId(2), RequestNumber(after + 1), "gap"});
      model.start = after;
      model.payloads = {"gap"};
      records.push_back(s);
    } else if (model.last() > std::max(model.start, checkpoint)) {  // checkpoint inside the log
      const uint64_t op =
          *rc::gen::inRange<uint64_t>(std::max(model.start, checkpoint) + 1, model.last() + 1);
      records.push_back(Checkpoint{OpNumber(op), encode_state_for_checkpoint()});
      model.payloads.erase(model.payloads.begin(),
                           model.payloads.begin() + static_cast<ptrdiff_t>(op - model.start));
      model.start = op;
      checkpoint = op;
    }
  }
  NullService service;
  Replica r(ReplicaId(1), Options{}, service, 1);
  for (const DurableRecord& rec : records) {
    // Through the codec, as the WAL stores them.
    std::string bytes;
    encode_record(rec, bytes);
    Result<DurableRecord> decoded = decode_record(bytes);
    RC_ASSERT(decoded.is_ok());
    RC_ASSERT(r.replay(*decoded).is_ok());
  }
  RC_ASSERT(r.op().value() == model.last());
  RC_ASSERT(r.log_after().value() == model.start);
  for (uint64_t op = model.start + 1; op <= model.last(); op++) {
    const Entry* e = r.entry(OpNumber(op));
    RC_ASSERT(e != nullptr);
    RC_ASSERT(e->payload == model.payloads[op - model.start - 1]);
  }
  RC_ASSERT(r.entry(OpNumber(model.start)) == nullptr);
  RC_ASSERT(r.entry(OpNumber(model.last() + 1)) == nullptr);
}

}  // namespace
}  // namespace maroon::vr
