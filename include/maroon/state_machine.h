// The interface every app implements (docs/apps.md). An app must be a pure
// function of the ops it has applied: no wall clock, no OS randomness, no
// iteration over unordered containers into results, no floating point in
// decisions. A bad op returns an error reply; it never crashes the node,
// because a crash in apply would repeat on every replica.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/limits.h"
#include "maroon/prng.h"
#include "maroon/status.h"

namespace maroon {

// Everything an app may depend on besides its state and the op bytes. The
// same on every node for the same tx.
struct TxContext {
  // The tx's id, unique in the cluster for ever (a range of ids leased to a
  // gateway, times 2^30, plus the tx's offset in it); never 0.
  uint64_t tx_id = 0;
  // The epoch that ordered the tx.
  uint64_t epoch = 0;
  // The epoch's logical time: milliseconds since the Unix epoch as the
  // sequencer saw them; never goes backwards from one epoch to the next.
  // The only clock an app may read.
  uint64_t logical_time_ms = 0;
  // Deterministic randomness for the app: seeded from (tx id, epoch).
  Prng prng() const { return Prng(tx_id * 0x9e3779b97f4a7c15ULL ^ epoch); }
};

// An app's state as it was when StateMachine::begin_snapshot() was called,
// produced in pieces while the app goes on applying ops (docs/snapshots.md).
// The host calls next() on the thread that applies ops, between applies, a
// piece at a time, so a snapshot of a large state never stops the apply
// loop for long; the app keeps what the cursor has not produced yet from
// being changed under it (copy-on-write). A cursor must not outlive its app.
class AppSnapshotCursor {
 public:
  virtual ~AppSnapshotCursor() = default;
  // Appends the next piece to `out`: about `bytes_hint` bytes, or more to
  // hold one item whole. Returns false, appending nothing, once every piece
  // was produced. Pieces are at most limits::snapshot_piece_bytes_max.
  virtual bool next(std::string& out, size_t bytes_hint) = 0;
};

// The pieces of a snapshot, in the order the cursor produced them, for
// StateMachine::restore. Each piece was checksummed on its way to disk and
// back; its content is the app's to validate.
class SnapshotPieces {
 public:
  virtual ~SnapshotPieces() = default;
  // The next piece (valid until the next call), nullopt after the last, or
  // an error if the snapshot cannot be read.
  virtual Result<std::optional<std::string_view>> next() = 0;
};

// A cursor over bytes copied when the snapshot began: for apps whose state
// is small enough to copy at once (tests, examples).
class CopiedSnapshotCursor final : public AppSnapshotCursor {
 public:
  explicit CopiedSnapshotCursor(std::string bytes) : bytes_(std::move(bytes)) {}
  bool next(std::string& out, size_t bytes_hint) override {
    if (at_ == bytes_.size()) return false;  // an empty state has no pieces
    const size_t n = std::min({bytes_.size() - at_, std::max<size_t>(bytes_hint, 1),
                               limits::snapshot_piece_bytes_max});
    out.append(bytes_, at_, n);
    at_ += n;
    return true;
  }

 private:
  std::string bytes_;
  size_t at_ = 0;
};

// Concatenates every piece (for apps restored from a CopiedSnapshotCursor);
// more than `bytes_max` bytes in all is an error.
inline Result<std::string> read_all_pieces(SnapshotPieces& pieces, size_t bytes_max) {
  std::string all;
  for (;;) {
    auto piece = pieces.next();
    if (!piece) return piece.status();
    if (!*piece) return all;
    if (all.size() + (*piece)->size() > bytes_max) {
      return corruption("app snapshot larger than " + std::to_string(bytes_max) + " bytes");
    }
    all.append(**piece);
  }
}

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Executes one op; returns the app's encoded reply (errors included).
  virtual std::string apply(const TxContext& ctx, std::string_view op) = 0;
  // Executes a read-only op against the current state without changing it;
  // an op that would write gets an error reply.
  virtual std::string read(std::string_view op) const = 0;
  // A hash of the whole state, equal on every replica after the same ops.
  virtual uint64_t state_hash() const = 0;
  // Called once per applied epoch, before the epoch's txs, with its logical
  // time (never below the last): an app with timers fires those due. The
  // same calls on every replica, in the same order among the ops. Default:
  // nothing.
  virtual void advance_time(uint64_t logical_time_ms) { (void)logical_time_ms; }

  // Begins a snapshot of the state as it is now (see AppSnapshotCursor). At
  // most one is open at a time.
  virtual std::unique_ptr<AppSnapshotCursor> begin_snapshot() = 0;
  // Replaces the whole state by the one a cursor produced. Bad pieces (a
  // damaged or foreign snapshot) give an error, never a crash; the state is
  // then unspecified and the caller must not use the app. On success,
  // state_hash() equals what it was when the snapshot began.
  [[nodiscard]] virtual Status restore(SnapshotPieces& pieces) = 0;
};

}  // namespace maroon
