#include "objstore/uploader.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "common/backoff.h"

namespace maroon::objstore {

Uploader::Uploader(std::unique_ptr<ObjectStore> store, UploaderOptions options)
    : store_(std::move(store)), options_(options) {
  MAROON_ASSERT(store_ != nullptr && options_.node_id != 0 &&
                options_.retry_min_ms <= options_.retry_max_ms);
  status_.store = store_->describe();
  thread_ = std::thread([this] { main(); });
}

Uploader::~Uploader() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  store_->cancel();
  cv_.notify_all();
  thread_.join();
}

void Uploader::offer(uint64_t epoch, std::string path, uint64_t bytes) {
  {
    std::lock_guard lock(mu_);
    if (pending_ && pending_->epoch > epoch) return;
    pending_ = Offer{epoch, std::move(path), bytes};
    status_.pending_epoch = epoch;
  }
  cv_.notify_all();
}

uint64_t Uploader::force_next(uint64_t min_epoch) {
  uint64_t uploads = 0;
  {
    std::lock_guard lock(mu_);
    forced_epoch_ = forced_ ? std::max(forced_epoch_, min_epoch) : min_epoch;
    forced_ = true;
    status_.forced = true;
    status_.forced_epoch = forced_epoch_;
    uploads = status_.uploads;
  }
  cv_.notify_all();
  return uploads;
}

UploaderStatus Uploader::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void Uploader::main() {
  Backoff backoff(std::chrono::milliseconds(options_.retry_min_ms),
                  std::chrono::milliseconds(options_.retry_max_ms), std::random_device{}());
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_until(lock, next_allowed_, [&] {
      return stop_ || (pending_ && (forced_ || std::chrono::steady_clock::now() >= next_allowed_));
    });
    if (stop_) return;
    if (!pending_) {
      // Woken by the deadline with nothing to do: wait for an offer.
      cv_.wait(lock, [&] { return stop_ || pending_.has_value(); });
      continue;
    }
    if (!forced_ && std::chrono::steady_clock::now() < next_allowed_) continue;
    Offer o = std::move(*pending_);
    pending_.reset();
    status_.pending_epoch = 0;
    status_.uploading = true;
    lock.unlock();
    const auto began = std::chrono::steady_clock::now();
    uint64_t pruned = 0;
    bool gone = false;
    Status s = upload(o, pruned, gone);
    const auto took = std::chrono::steady_clock::now() - began;
    lock.lock();
    status_.uploading = false;
    status_.pruned += pruned;
    if (s.is_ok() && gone) {
      // Deleted by compaction before its upload began: a newer one exists
      // (and is offered, or will be). Not a failure of the store.
      spdlog::info("snapshot of epoch {} no longer on disk; not uploaded", o.epoch);
    } else if (s.is_ok()) {
      backoff.reset();
      if (o.epoch >= forced_epoch_) {
        forced_ = false;
        status_.forced = false;
      }
      status_.uploads++;
      status_.last_epoch = o.epoch;
      status_.last_bytes = o.bytes;
      status_.last_ms = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
      status_.last_error.clear();
      next_allowed_ = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(options_.interval_ms);
      spdlog::info("uploaded the snapshot of epoch {} ({} bytes) to {} in {} ms", o.epoch, o.bytes,
                   status_.store, status_.last_ms);
    } else {
      status_.failures++;
      status_.last_error = s.to_string();
      spdlog::warn("backup: {}", status_.last_error);
      // Tried again after the backoff, unless a newer one came meanwhile.
      if (!pending_) {
        pending_ = std::move(o);
        status_.pending_epoch = pending_->epoch;
      }
      next_allowed_ = std::chrono::steady_clock::now() + backoff.next();
      if (forced_) {
        // A forced upload waits for the backoff too: a store that is down
        // is not hammered.
        cv_.wait_until(lock, next_allowed_, [&] { return stop_; });
        if (stop_) return;
      }
    }
  }
}

}  // namespace maroon::objstore

namespace maroon::objstore {

Status Uploader::upload(const Offer& o, uint64_t& pruned, bool& gone) {
  if (!env_.exists(o.path)) {
    gone = true;
    return Status::ok();
  }
  auto stored = list_snapshots(*store_, options_.node_id);
  if (!stored) return stored.status();
  const std::string key = snapshot_key(options_.node_id, o.epoch);
  bool there = false;
  for (const StoredSnapshot& s : *stored) {
    if (s.key == key && s.bytes == o.bytes) there = true;  // uploaded before a restart
    if (options_.one_timeline_check && s.epoch > o.epoch) {
      return Status(Code::kConflict, fmt::format(
          "{} holds a snapshot of node {} at epoch {}, newer than this one ({}): it is of "
          "another timeline (a data directory restored from an older snapshot, or another "
          "cluster using the same store); not mixing them: give this node another store "
          "prefix, or remove those",
          store_->describe(), options_.node_id, s.epoch, o.epoch));
    }
  }
  if (!there) {
    if (Status s = store_->put_file(key, o.path); !s) {
      // Deleted (by compaction) between the check above and the open.
      if (s.code() == Code::kNotFound && !env_.exists(o.path)) gone = true;
      return gone ? Status::ok() : s;
    }
    stored->push_back(StoredSnapshot{options_.node_id, o.epoch, o.bytes, key});
  }
  if (options_.kept == 0) return Status::ok();
  // The newest `kept` stay, and the one just uploaded (a cluster node's may
  // be older than one it uploaded before it lost its disk).
  std::sort(stored->begin(), stored->end(),
            [](const StoredSnapshot& a, const StoredSnapshot& b) { return a.epoch > b.epoch; });
  for (size_t i = options_.kept; i < stored->size(); i++) {
    const StoredSnapshot& s = (*stored)[i];
    if (s.key == key) continue;
    if (Status st = store_->remove(s.key); !st) return st;
    pruned++;
  }
  return Status::ok();
}

}  // namespace maroon::objstore
