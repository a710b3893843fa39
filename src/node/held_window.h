// Txs a node holds for one range and has not executed yet, indexed by offset.
// Offsets execute in order, so the window slides forward from `applied + 1`;
// txs may arrive out of order and leave gaps until filled. No allocation per
// tx beyond the payload, unlike a hash map; the window is bounded.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "maroon/assert.h"
#include "common/types.h"

namespace maroon {

struct Held {
  AppId app = AppId::kSystem;
  std::string op;
  uint64_t digest = 0;  // tx_digest(app, op)
  bool durable = false;
  bool present = false;
};

class HeldWindow {
 public:
  explicit HeldWindow(uint64_t txs_max) : txs_max_(txs_max) { MAROON_ASSERT(txs_max > 0); }

  // First offset the window covers: everything below is executed.
  uint64_t base() const { return base_; }
  // True if `offset` lies beyond the bound of the window (refuse it for now).
  bool beyond(uint64_t offset) const { return offset >= base_ + txs_max_; }

  Held* find(uint64_t offset) {
    return const_cast<Held*>(static_cast<const HeldWindow*>(this)->find(offset));
  }
  const Held* find(uint64_t offset) const {
    if (offset < base_ || offset - base_ >= slots_.size()) return nullptr;
    const Held& h = slots_[offset - base_];
    return h.present ? &h : nullptr;
  }
  bool contains(uint64_t offset) const { return find(offset) != nullptr; }

  // Inserts a tx not yet held.
  Held& insert(uint64_t offset, AppId app, std::string op, uint64_t digest, bool durable) {
    MAROON_ASSERT(offset >= base_ && !beyond(offset));
    uint64_t index = offset - base_;
    if (index >= slots_.size()) slots_.resize(index + 1);
    Held& h = slots_[index];
    MAROON_ASSERT(!h.present);
    h = Held{app, std::move(op), digest, durable, true};
    size_++;
    return h;
  }

  // Removes a held tx (its bytes are not the ones its id was ordered with).
  void erase(uint64_t offset) {
    Held* h = find(offset);
    MAROON_ASSERT(h != nullptr);
    *h = Held{};
    size_--;
  }

  // An empty window restored from a snapshot starts at `base`.
  void start_at(uint64_t base) {
    MAROON_ASSERT(size_ == 0 && slots_.empty() && base >= 1);
    base_ = base;
  }

  // Removes the tx at base() (it is being executed) and slides forward.
  Held take_front() {
    MAROON_ASSERT(!slots_.empty() && slots_.front().present);
    Held h = std::move(slots_.front());
    slots_.pop_front();
    base_++;
    size_--;
    return h;
  }

  // Removes every tx beyond `last` (its range was sealed there); returns how
  // many were removed.
  size_t drop_after(uint64_t last) {
    size_t dropped = 0;
    while (!slots_.empty() && base_ + slots_.size() - 1 > last) {
      if (slots_.back().present) dropped++;
      slots_.pop_back();
    }
    size_ -= dropped;
    return dropped;
  }

  size_t size() const { return size_; }
  // Calls fn(offset, held) for every tx held, in offset order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (size_t i = 0; i < slots_.size(); i++) {
      if (slots_[i].present) fn(base_ + i, slots_[i]);
    }
  }

 private:
  uint64_t txs_max_;
  uint64_t base_ = 1;
  size_t size_ = 0;
  std::deque<Held> slots_;  // slots_[i] is offset base_ + i
};

}  // namespace maroon
