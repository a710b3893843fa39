// Results of executed txs per range, kept so a retried tx gets its first
// result instead of a second execution. Offsets are executed in order per
// range, so a ring indexed by offset suffices; the oldest are evicted once
// the table holds txs_max results or bytes_max bytes of them.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/assert.h"

namespace maroon {

class ResultTable {
 public:
  ResultTable(size_t txs_max, size_t bytes_max) : txs_max_(txs_max), bytes_max_(bytes_max) {
    MAROON_ASSERT(txs_max > 0);
  }

  // Records the result of the next offset (last_offset() + 1).
  void push(uint64_t offset, std::string reply) {
    MAROON_ASSERT(offset == last_offset() + 1);
    bytes_ += reply.size();
    results_.push_back(std::move(reply));
    while (results_.size() > txs_max_ || (bytes_ > bytes_max_ && results_.size() > 1)) {
      pop_oldest();
    }
  }
  // Forgets every result (their gateway can no longer retry); later offsets
  // are still recorded.
  void clear() {
    while (!results_.empty()) pop_oldest();
  }
  // The result of an executed offset, or nullopt if evicted.
  std::optional<std::string_view> find(uint64_t offset) const {
    MAROON_ASSERT(offset <= last_offset());
    if (offset < first_offset_) return std::nullopt;
    return std::string_view(results_[offset - first_offset_]);
  }
  uint64_t last_offset() const { return first_offset_ + results_.size() - 1; }
  uint64_t first_offset() const { return first_offset_; }
  // An empty table restored from a snapshot: the next push is `first`.
  void start_at(uint64_t first) {
    MAROON_ASSERT(results_.empty() && first >= 1);
    first_offset_ = first;
  }
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const std::string& r : results_) fn(r);
  }
  size_t size() const { return results_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  void pop_oldest() {
    bytes_ -= results_.front().size();
    results_.pop_front();
    first_offset_++;
  }

  size_t txs_max_;
  size_t bytes_max_;
  size_t bytes_ = 0;
  uint64_t first_offset_ = 1;
  std::deque<std::string> results_;
};

}  // namespace maroon
