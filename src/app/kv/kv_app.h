// The built-in kv app: an ordered map of byte-string keys to byte-string
// values. Deterministic; ops and replies are encoded as in kv_op.h.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "app/kv/kv_op.h"
#include "app/state_machine.h"

namespace maroon::kv {

class KvApp final : public StateMachine {
 public:
  std::string apply(const TxContext& ctx, std::string_view op) override;
  std::string read(std::string_view op) const override;
  uint64_t state_hash() const override { return state_hash_; }

  // Executes a decoded op (read-only ops work here too).
  Reply execute(const Op& op);
  Reply execute_read(const Op& op) const;
  size_t size() const { return map_.size(); }

 private:
  void put(std::string_view key, std::string_view value);
  bool erase(std::string_view key);

  std::map<std::string, std::string, std::less<>> map_;
  // Sum over entries of hash(key, value), updated on every change, so the
  // hash costs O(1) per write and is independent of insertion order.
  uint64_t state_hash_ = 0;
};

}  // namespace maroon::kv
