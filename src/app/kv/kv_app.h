// The built-in kv app: an ordered map of byte-string keys to byte-string
// values. Deterministic; ops and replies are encoded as in kv_op.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "app/kv/kv_op.h"
#include "maroon/state_machine.h"
#include "maroon/limits.h"
#include "maroon/status.h"

namespace maroon::kv {

// One entry's share of KvApp::state_hash(): xxh3 of varint(key size) ++ key ++
// value (docs/formats/kv.md). The length prefix keeps ("ab", "c") and ("a", "bc")
// apart.
uint64_t entry_hash(std::string_view key, std::string_view value);
// A present key's version's share of the state hash: XXH3 of the key, seeded
// with the version.
uint64_t version_hash(std::string_view key, uint64_t version);
// The counters' share: 0 while both are 0, else XXH3 of le64(mutations) ++
// le64(deleted_version_max).
uint64_t counters_hash(uint64_t mutations, uint64_t deleted_version_max);

// The first byte of a snapshot's header piece (docs/formats/kv.md, "Snapshot").
inline constexpr uint8_t kSnapshotFormatVersion = 1;

class KvApp final : public StateMachine {
 public:
  KvApp() = default;
  // index_ points into map_: a copy would point into the original.
  KvApp(const KvApp&) = delete;
  KvApp& operator=(const KvApp&) = delete;
  // A snapshot cursor points at its app: it must be gone first (asserted,
  // rather than leaving the cursor to produce a snapshot cut short).
  ~KvApp() override;

  std::string apply(const TxContext& ctx, std::string_view op) override;
  std::string read(std::string_view op) const override;
  // Covers everything later replies depend on: entries, each key's version
  // and the mutation and deletion counters (WATCH stamps derive from them).
  uint64_t state_hash() const override {
    return state_hash_ + counters_hash(mutations_, deleted_version_max_);
  }

  // Copy-on-write and sliced (docs/formats/kv.md, "Snapshot"): nothing is
  // copied at the start; while the cursor is open, the first change to a key
  // it has not produced yet saves that key's pre-image, and the cursor
  // produces keys in order, merging the live map with the pre-images. A
  // FLUSH moves every entry the cursor has not produced into the pre-images.
  // Destroying the cursor ends the snapshot and frees what it kept.
  std::unique_ptr<AppSnapshotCursor> begin_snapshot() override;
  // Reads and checks every piece (order, sizes, versions, the entry count,
  // the state hash). On an error the app is left empty, as a new one.
  [[nodiscard]] Status restore(SnapshotPieces& pieces) override;
  // Whether a snapshot's cursor is alive, and how many pre-images it keeps
  // now (0 with none open): for tests and metrics.
  bool snapshot_open() const { return snapshot_ != nullptr; }
  size_t snapshot_pre_images() const;

  // Executes a decoded op (read-only ops work here too). An op that fails
  // validate() gets an error reply; so do WATCH and MULTI, whose replies
  // have shapes of their own (apply() and read() serve them).
  Reply execute(const Op& op);
  // As execute, but a write op gets an error reply and nothing changes.
  Reply execute_read(const Op& op) const;
  size_t size() const { return map_.size(); }
  // What a WATCH of `key` sees now: (present, its version), or (absent, the
  // mutation count now).
  KeyStamp stamp(std::string_view key) const;
  // Whether no write touched `key` since a WATCH saw `seen` (MULTI's check).
  bool unchanged_since(std::string_view key, const KeyStamp& seen) const;

 private:
  struct Entry {
    std::string value;
    uint64_t version = 0;  // mutations_ at the entry's last change
  };
  using Map = std::map<std::string, Entry, std::less<>>;
  class SnapshotCursor;
  // What an open snapshot keeps. The cursor produces keys in ascending
  // order; `last_key` is the last one it passed (produced, or skipped as
  // absent). Keys at or below it are done, so changes to them need no
  // pre-image; every pre-image is of a key above it.
  struct Snapshot {
    // The state when the snapshot began, for the header.
    uint64_t entries = 0;
    uint64_t mutations = 0;
    uint64_t deleted_version_max = 0;
    uint64_t hash = 0;
    bool header_produced = false;
    bool passed_any = false;  // whether last_key holds a key yet
    bool done = false;
    std::string last_key;
    // The entry each key had when the snapshot began, saved at the key's
    // first change since. Of the same type as map_, so an erase or a FLUSH
    // moves the node over without copying: version 0 marks a key that was
    // absent (a present entry's version is at least 1).
    Map pre_images;
  };

  // Both take an op that passed validate().
  Reply execute_valid(const Op& op);
  Reply execute_read_valid(const Op& op) const;
  // Appends the encoded reply to a valid GET, without building a Reply.
  void encode_get(std::string_view key, std::string& out) const;

  Reply set(std::string_view key, std::string_view value, SetCond cond);
  Reply cas(std::string_view key, std::optional<std::string_view> expected, std::string_view value);
  Reply incr_by(std::string_view key, int64_t delta);
  // At most `room` bytes of reply: an MGET past it is refused before anything
  // is copied; a SCAN stops before it.
  Reply mget(const Op& op, size_t room = limits::reply_bytes_max) const;
  Reply scan(const Op& op, size_t room = limits::reply_bytes_max) const;
  // A read inside MULTI, with `room` bytes left in the EXEC reply: sizes are
  // checked before values are copied, so a MULTI of many reads of a big value
  // costs no more than its reply.
  Reply execute_read_within(const Op& op, size_t room) const;
  std::vector<KeyStamp> watch(const Op& op) const;
  // Runs a MULTI's sub-ops unless a watched key changed (docs/formats/kv.md).
  MultiReply multi(const Op& op);

  void put(std::string_view key, std::string_view value);
  bool erase(std::string_view key);
  void flush();
  // Point lookups go through the hash index; map_.end() if absent.
  Map::iterator locate(std::string_view key);
  Map::const_iterator locate(std::string_view key) const;
  // `key` is absent.
  void insert_at(std::string_view key, std::string_view value);
  void replace_at(Map::iterator it, std::string_view value);
  void clear_state();

  // The copy-on-write hook every change to map_ calls first: if a snapshot
  // is open, the cursor has not passed `key` and no pre-image of it is
  // saved, where in snapshot_->pre_images its pre-image goes (a hint for
  // emplace_hint / insert); else nullopt, and the change needs no copy.
  std::optional<Map::iterator> preserve(std::string_view key) {
    if (snapshot_ == nullptr) return std::nullopt;
    return preserve_slow(key);
  }
  std::optional<Map::iterator> preserve_slow(std::string_view key);
  // The next piece of the open snapshot (AppSnapshotCursor::next).
  bool snapshot_next(std::string& out, size_t bytes_hint);
  void end_snapshot();
  Status restore_pieces(SnapshotPieces& pieces);

  Map map_;  // ordered, for scans
  // Every key of map_, for O(1) point ops. Never iterated, so its order
  // cannot leak into results.
  std::unordered_map<std::string_view, Map::iterator> index_;
  // Sum over entries of hash(key, value), updated on every change, so the
  // hash costs O(1) per write and is independent of insertion order.
  uint64_t state_hash_ = 0;
  // Changes to keys so far (insert, overwrite, delete): the next version.
  uint64_t mutations_ = 0;
  // The newest version any removed entry had (DEL or FLUSH). An absent key
  // written after its WATCH and removed again had a version above the
  // WATCH's mutation count, so this passes that count; removing keys written
  // before the WATCH does not (docs/formats/kv.md, "Watches and versions").
  uint64_t deleted_version_max_ = 0;
  // The open snapshot, if any (at most one).
  std::unique_ptr<Snapshot> snapshot_;
};

}  // namespace maroon::kv
