// The durability order, once (docs/architecture.md, "One host").
//
// A pure core numbers the records it emits from 1, in emission order, and
// marks some of its messages "send after persist": they may leave only once
// every record emitted up to and including their output's records is
// durable. This class is everything between such an output and storage that
// must be the same in every driver:
//
//   - records join the pending write in emission order; the core's small
//     durable state (the superblock's payload) is a record too, and closes
//     the current step: the steps are written in order, each batch before its
//     state, so what is durable is always a prefix of what was emitted;
//   - held messages leave when the write covering their records completes,
//     in the order they were emitted;
//   - a write is taken whole (group commit): everything emitted since the
//     previous one, its WAL batches cut at a bound so each fits a segment
//     (limits.h: wal_batch_bytes_max + wal_record_bytes_max <= segment).
//
// The real driver, the simulators, the benches and the test harnesses all
// run their cores' output through it. It owns no I/O: take_write() hands the
// steps to whoever writes them (DataDir::write on a thread, or inline on
// FaultEnv), and written() reports completion.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maroon/assert.h"
#include "maroon/limits.h"
#include "host/held_messages.h"
#include "storage/data_dir.h"

namespace maroon::host {

struct PendingWrite {
  std::vector<WriteStep> steps;
  uint64_t last_seq = 0;  // every record up to this seq is in the steps
};

template <typename Msg>
class DurabilityOrder {
 public:
  // A WAL batch is cut at batch_bytes_max (it may overshoot by one record):
  // records keep arriving from peers while a slow sync is in flight, and a
  // batch must fit in a WAL segment.
  explicit DurabilityOrder(size_t batch_bytes_max = limits::wal_batch_bytes_max)
      : batch_bytes_max_(batch_bytes_max) {
    MAROON_ASSERT(batch_bytes_max_ > 0);
    pending_.emplace_back();
  }

  // --- Routing one output (records first, then its messages). ---
  void add_record(uint8_t type, std::string_view payload) {
    MAROON_ASSERT(payload.size() <= limits::wal_record_bytes_max);
    const WriteStep& last = pending_.back();
    if (last.state || (!last.batch->empty() && last.batch->bytes() + payload.size() > batch_bytes_max_)) {
      pending_.emplace_back();
    }
    pending_.back().batch->add(type, payload);
    pending_bytes_ += payload.size();
    records_added_++;
    record_bytes_added_ += payload.size();
  }
  // Once everything before it is durable, the log up to `lsn` is deleted
  // and then `files` (DataDir: WriteStep::compact_through_lsn).
  void add_compaction(uint64_t lsn, std::vector<std::string> files) {
    WriteStep& step = pending_.back();
    step.compact_through_lsn = std::max(step.compact_through_lsn.value_or(0), lsn);
    for (std::string& f : files) step.remove_files.push_back(std::move(f));
  }
  // Only the newest state matters among states with no record between them.
  void add_state(std::string payload) { pending_.back().state = std::move(payload); }
  // A lost log is recovered once everything emitted so far is durable.
  void mark_log_recovered() { pending_.back().log_recovered = true; }
  // The output's records end at last_seq (they were all added).
  void emitted(uint64_t last_seq) {
    MAROON_ASSERT(last_seq >= emitted_seq_);
    emitted_seq_ = last_seq;
  }
  // A message that may leave once every record up to `needed` is durable:
  // sent at once if that is so already, held otherwise.
  template <typename Send>
  void after_persist(uint64_t needed, Msg msg, Send&& send) {
    MAROON_ASSERT(needed <= emitted_seq_);
    held_.hold(needed, durable_seq_, std::move(msg), send);
  }

  // --- Writing. ---
  bool writing() const { return writing_; }
  // Something may be written now: records or states emitted and not yet
  // taken (with a barrier set: only those from before it).
  bool has_pending() const {
    if (barrier_) {
      for (size_t i = 0; i < barrier_steps_; i++) {
        if (!pending_[i].empty()) return true;
      }
      return false;
    }
    return pending_.size() > 1 || !pending_[0].empty();
  }
  // Everything emitted since the last write, to be written now (with a
  // barrier set: only what was emitted before it). Only one write is in
  // flight at a time.
  PendingWrite take_write() {
    MAROON_ASSERT(!writing_ && has_pending());
    writing_ = true;
    if (barrier_) {
      PendingWrite w{{}, barrier_seq_};
      for (size_t i = 0; i < barrier_steps_; i++) w.steps.push_back(std::move(pending_[i]));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(barrier_steps_));
      barrier_steps_ = 0;
      pending_bytes_ = 0;
      for (const WriteStep& s : pending_) pending_bytes_ += s.batch->bytes();
      return w;
    }
    PendingWrite w{std::move(pending_), emitted_seq_};
    pending_.clear();
    pending_.emplace_back();
    pending_bytes_ = 0;
    return w;
  }
  // A barrier: what was emitted so far is written as before, and nothing
  // emitted after it until release_barrier(). (After a peer's snapshot is
  // installed, no record that depends on it may be durable before the
  // node's own snapshot of the installed state is.)
  void set_barrier() {
    MAROON_ASSERT(!barrier_);
    barrier_ = true;
    barrier_seq_ = emitted_seq_;
    barrier_steps_ = pending_.size();
    pending_.emplace_back();
  }
  void release_barrier() {
    MAROON_ASSERT(barrier_);
    // What came before it was written (or there was nothing): only empty
    // steps may be left of it.
    for (size_t i = 0; i < barrier_steps_; i++) MAROON_ASSERT(pending_[i].empty());
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(barrier_steps_));
    barrier_steps_ = 0;
    barrier_ = false;
  }
  bool barrier() const { return barrier_; }
  // The write taken last is durable: releases the messages it covers.
  template <typename Send>
  void written(uint64_t last_seq, Send&& send) {
    MAROON_ASSERT(writing_);
    MAROON_ASSERT(last_seq >= durable_seq_ && last_seq <= emitted_seq_);
    writing_ = false;
    durable_seq_ = last_seq;
    held_.release(durable_seq_, send);
  }
  // The write taken last failed: it stays in flight for good (the storage
  // refuses every later write; the caller stops writing).
  void failed() { MAROON_ASSERT(writing_); }

  uint64_t durable_seq() const { return durable_seq_; }
  uint64_t emitted_seq() const { return emitted_seq_; }
  // WAL records (not states) added so far, and their payload bytes: the
  // log's LSNs continue from its last at open by one per record.
  uint64_t records_added() const { return records_added_; }
  uint64_t record_bytes_added() const { return record_bytes_added_; }
  size_t pending_bytes() const { return pending_bytes_; }
  size_t held() const { return held_.size(); }

 private:
  const size_t batch_bytes_max_;
  std::vector<WriteStep> pending_;
  size_t pending_bytes_ = 0;
  uint64_t emitted_seq_ = 0;
  uint64_t durable_seq_ = 0;
  uint64_t records_added_ = 0;
  uint64_t record_bytes_added_ = 0;
  bool writing_ = false;
  bool barrier_ = false;
  uint64_t barrier_seq_ = 0;   // every record before the barrier has seq <= this
  size_t barrier_steps_ = 0;   // pending_'s first steps, from before it, not yet taken
  HeldMessages<Msg> held_;
};

}  // namespace maroon::host
