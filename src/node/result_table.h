// Results of executed txs per range, kept so a retried tx gets its first
// result instead of a second execution. Offsets are executed in order per
// range, so a ring indexed by offset suffices; the oldest are evicted.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "common/assert.h"

namespace maroon {

class ResultTable {
 public:
  explicit ResultTable(size_t txs_max) : txs_max_(txs_max) { MAROON_ASSERT(txs_max > 0); }

  // Records the result of the next offset (last_offset() + 1).
  void push(uint64_t offset, std::string reply) {
    MAROON_ASSERT(offset == last_offset() + 1);
    if (results_.size() == txs_max_) {
      results_.pop_front();
      first_offset_++;
    }
    results_.push_back(std::move(reply));
  }
  // The result of an executed offset, or nullopt if evicted.
  std::optional<std::string_view> find(uint64_t offset) const {
    MAROON_ASSERT(offset <= last_offset());
    if (offset < first_offset_) return std::nullopt;
    return std::string_view(results_[offset - first_offset_]);
  }
  uint64_t last_offset() const { return first_offset_ + results_.size() - 1; }
  size_t size() const { return results_.size(); }

 private:
  size_t txs_max_;
  uint64_t first_offset_ = 1;
  std::deque<std::string> results_;
};

}  // namespace maroon
