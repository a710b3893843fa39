// The built-in kv app: an ordered map of byte-string keys to byte-string
// values. Deterministic; ops and replies are encoded as in kv_op.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "app/kv/kv_op.h"
#include "common/limits.h"
#include "app/state_machine.h"

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

class KvApp final : public StateMachine {
 public:
  KvApp() = default;
  // index_ points into map_: a copy would point into the original.
  KvApp(const KvApp&) = delete;
  KvApp& operator=(const KvApp&) = delete;

  std::string apply(const TxContext& ctx, std::string_view op) override;
  std::string read(std::string_view op) const override;
  // Covers everything later replies depend on: entries, each key's version
  // and the mutation and deletion counters (WATCH stamps derive from them).
  uint64_t state_hash() const override {
    return state_hash_ + counters_hash(mutations_, deleted_version_max_);
  }

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
};

}  // namespace maroon::kv
