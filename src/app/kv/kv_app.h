// The built-in kv app: an ordered map of byte-string keys to byte-string
// values. Deterministic; ops and replies are encoded as in kv_op.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "app/kv/kv_op.h"
#include "app/state_machine.h"

namespace maroon::kv {

// One entry's share of KvApp::state_hash(): xxh3 of varint(key size) ++ key ++
// value (docs/formats/kv.md). The length prefix keeps ("ab", "c") and ("a", "bc")
// apart.
uint64_t entry_hash(std::string_view key, std::string_view value);

class KvApp final : public StateMachine {
 public:
  KvApp() = default;
  // index_ points into map_: a copy would point into the original.
  KvApp(const KvApp&) = delete;
  KvApp& operator=(const KvApp&) = delete;

  std::string apply(const TxContext& ctx, std::string_view op) override;
  std::string read(std::string_view op) const override;
  uint64_t state_hash() const override { return state_hash_; }

  // Executes a decoded op (read-only ops work here too). An op that fails
  // validate() gets an error reply.
  Reply execute(const Op& op);
  // As execute, but a write op gets an error reply and nothing changes.
  Reply execute_read(const Op& op) const;
  size_t size() const { return map_.size(); }

 private:
  using Map = std::map<std::string, std::string, std::less<>>;

  // Both take an op that passed validate().
  Reply execute_valid(const Op& op);
  Reply execute_read_valid(const Op& op) const;
  // Appends the encoded reply to a valid GET, without building a Reply.
  void encode_get(std::string_view key, std::string& out) const;

  Reply set(std::string_view key, std::string_view value, SetCond cond);
  Reply cas(std::string_view key, std::optional<std::string_view> expected, std::string_view value);
  Reply incr_by(std::string_view key, int64_t delta);
  Reply mget(const Op& op) const;
  Reply scan(const Op& op) const;

  void put(std::string_view key, std::string_view value);
  bool erase(std::string_view key);
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
};

}  // namespace maroon::kv
