// Tests: an app that appends each op to a log and replies "<op>#<position>",
// with a snapshot of its log.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "maroon/state_machine.h"
#include "common/codec.h"
#include "common/hash.h"

namespace maroon {

class EchoApp final : public StateMachine {
 public:
  std::string apply(const TxContext& ctx, std::string_view op) override {
    events.push_back("apply " + std::string(op) + " at " + std::to_string(ctx.logical_time_ms));
    log.push_back(std::string(op));
    last_ctx = ctx;
    hash = hash64(op, hash);
    return std::string(op) + "#" + std::to_string(log.size());
  }
  std::string read(std::string_view) const override { return std::to_string(log.size()); }
  uint64_t state_hash() const override { return hash; }
  std::unique_ptr<AppSnapshotCursor> begin_snapshot() override {
    std::string bytes;
    ByteWriter w(bytes);
    w.u64(hash);
    for (const std::string& op : log) w.bytes(op);
    return std::make_unique<CopiedSnapshotCursor>(std::move(bytes));
  }
  Status restore(SnapshotPieces& pieces) override {
    auto bytes = read_all_pieces(pieces, 1 << 30);
    if (!bytes) return bytes.status();
    ByteReader r(*bytes);
    log.clear();
    if (!r.u64(hash)) return corruption("echo app: bad snapshot");
    while (!r.at_end()) {
      std::string_view op;
      if (!r.bytes(op, bytes->size())) return corruption("echo app: bad snapshot");
      log.emplace_back(op);
    }
    return Status::ok();
  }

  void advance_time(uint64_t logical_time_ms) override {
    events.push_back("time " + std::to_string(logical_time_ms));
  }

  std::vector<std::string> log;
  std::vector<std::string> events;  // applies and advance_time calls, in order
  TxContext last_ctx;
  uint64_t hash = 0;
};

}  // namespace maroon
