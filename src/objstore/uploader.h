// Uploads a node's published snapshots to an object store, on a thread of
// its own, so that serving never waits for the store (docs/backups.md).
//
// The host offers each snapshot it publishes; the uploader keeps only the
// newest offer (an older one not yet uploaded is dropped), and uploads it
// once `interval_ms` passed since the last upload, or at once after
// force_next(). The file is opened when its upload begins; a file deleted
// by compaction before that is skipped (a newer one replaced it). After an
// upload, the node's snapshots in the store beyond the newest `kept` are
// deleted. A failed upload is retried with backoff (or replaced by a newer
// offer); the store's own requests are retried inside it.
//
// A single node's epochs only grow, so a store folder holding a newer
// snapshot of it than the one to upload belongs to another timeline (a
// data directory restored from an older snapshot, or another node sharing
// the prefix): the upload is refused, saying so, rather than mixing them
// (one_timeline_check).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "objstore/object_store.h"
#include "storage/env.h"

namespace maroon::objstore {

struct UploaderOptions {
  uint64_t node_id = 0;
  // At most one upload per interval, unless forced (0: every snapshot).
  uint64_t interval_ms = 60 * 1000;
  // This node's newest `kept` snapshots stay in the store; 0: none deleted.
  size_t kept = 7;
  // A single node: a newer snapshot of it in the store is of another
  // timeline (this directory was restored from an older one), and the
  // upload is refused (below). A cluster node's epochs are the cluster's,
  // one history: a newer one of its own (from before it lost its disk, or
  // taken before a damaged newest was passed over) is no conflict.
  bool one_timeline_check = true;
  // After a failed upload, the next try waits from retry_min_ms, doubling
  // up to retry_max_ms.
  uint64_t retry_min_ms = 1000;
  uint64_t retry_max_ms = 60 * 1000;
};

struct UploaderStatus {
  std::string store;
  uint64_t uploads = 0;   // succeeded, since this process started
  uint64_t failures = 0;  // attempts that failed
  uint64_t last_epoch = 0;  // of the newest uploaded
  uint64_t last_bytes = 0;
  uint64_t last_ms = 0;  // how long its upload took
  uint64_t pruned = 0;   // old snapshots deleted from the store
  std::string last_error;  // of the last failed attempt; cleared by a success
  bool uploading = false;
  uint64_t pending_epoch = 0;  // offered, not yet uploaded (0: none)
  bool forced = false;
  uint64_t forced_epoch = 0;  // while forced: uploads go at once until one of this epoch
};

class Uploader {
 public:
  Uploader(std::unique_ptr<ObjectStore> store, UploaderOptions options);
  // Stops: an upload in progress is cancelled within its current request.
  // No partial object becomes visible; the parts of an unfinished multipart
  // upload stay until the bucket's lifecycle rule removes them.
  ~Uploader();
  Uploader(const Uploader&) = delete;
  Uploader& operator=(const Uploader&) = delete;

  // A snapshot was published at `path`.
  void offer(uint64_t epoch, std::string path, uint64_t bytes);
  // Uploads go at once, whatever the interval says, until one of a
  // snapshot of `min_epoch` or later succeeded (`maroon backup`: the
  // snapshot it asked for).
  // Returns the uploads done so far (status().uploads), read with it.
  uint64_t force_next(uint64_t min_epoch);
  UploaderStatus status() const;

 private:
  struct Offer {
    uint64_t epoch = 0;
    std::string path;
    uint64_t bytes = 0;
  };

  void main();
  // Uploads o and prunes; the error if it failed. `gone`: its file was
  // deleted before the upload began (nothing done).
  Status upload(const Offer& o, uint64_t& pruned, bool& gone);

  const std::unique_ptr<ObjectStore> store_;
  const UploaderOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Offer> pending_;
  bool forced_ = false;
  uint64_t forced_epoch_ = 0;
  bool stop_ = false;
  std::chrono::steady_clock::time_point next_allowed_{};
  UploaderStatus status_;
  PosixEnv env_;
  std::thread thread_;
};

}  // namespace maroon::objstore
