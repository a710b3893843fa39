// Messages held until the records they depend on are durable: the heart of
// the durability order (durability_order.h), on its own so that harnesses
// that model the disk record by record (vr/test_cluster.h) hold and release
// messages with the same code as every host.
//
// A message that may leave once every record up to `needed` is durable is
// sent at once if that is so already, or held; released() sends the held
// ones, in the order they were emitted, once `durable` covers them. Seqs
// only grow: a message emitted later never needs less than an earlier one.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

#include "maroon/assert.h"

namespace maroon::host {

template <typename Msg>
class HeldMessages {
 public:
  template <typename Send>
  void hold(uint64_t needed, uint64_t durable, Msg msg, Send&& send) {
    MAROON_ASSERT(held_.empty() || held_.back().first <= needed);
    if (needed <= durable && held_.empty()) {
      send(std::move(msg));
    } else {
      held_.emplace_back(needed, std::move(msg));
    }
  }
  template <typename Send>
  void release(uint64_t durable, Send&& send) {
    while (!held_.empty() && held_.front().first <= durable) {
      Msg m = std::move(held_.front().second);
      held_.pop_front();
      send(std::move(m));
    }
  }
  // A crash: whatever was held is lost with the process.
  void clear() { held_.clear(); }
  size_t size() const { return held_.size(); }

 private:
  std::deque<std::pair<uint64_t, Msg>> held_;
};

}  // namespace maroon::host
