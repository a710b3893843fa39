// Object stores for node snapshots (docs/backups.md): a directory on a
// file system, or an S3-compatible bucket. Nodes upload their published
// snapshots to one (objstore/uploader.h); `maroon snapshot list|download`
// and `--bootstrap-from` read them back.
//
// Keys are relative to the store's root (the directory, or the bucket's
// prefix) and use '/' as separator. An object is written whole or not at
// all: the directory store renames a fsynced temp file into place, S3 makes
// a PUT or a completed multipart upload visible atomically.
//
// Every call blocks (the callers run on threads of their own: the uploader,
// the CLI) and is bounded in time: each request has a timeout, and failures
// a retry could cure (connection refused, 5xx, 429, timeouts) are retried
// with exponential backoff up to `attempts` times. Errors name the store,
// the key and what the store said.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "maroon/status.h"

namespace maroon::objstore {

struct StoreConfig {
  // "s3://bucket/prefix" (prefix optional), "file:///abs/dir", or a plain
  // directory path.
  std::string url;
  // S3 only. Empty: from the environment as the AWS tools read it
  // (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL; AWS_REGION, AWS_DEFAULT_REGION;
  // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Without an
  // endpoint: AWS itself, https://s3.<region>.amazonaws.com, with
  // virtual-hosted bucket names; with one, path-style (what S3-compatible
  // servers expect).
  std::string endpoint;
  std::string region;
  std::string access_key;
  std::string secret_key;
  std::string session_token;
  // Objects larger than this go up in parts of this size (multipart
  // upload); each part is read into memory once, to be signed. S3 needs
  // parts of at least 5 MiB.
  uint64_t part_bytes = 16 * 1024 * 1024;
  // Tries per request (1 = no retry), backoff from retry_min_ms doubling up
  // to retry_max_ms, with jitter.
  uint32_t attempts = 5;
  uint64_t retry_min_ms = 200;
  uint64_t retry_max_ms = 5000;
  // A request that moves no byte for this long fails (and is retried).
  uint64_t stall_timeout_ms = 30000;
  // Connecting fails after this long.
  uint64_t connect_timeout_ms = 5000;
};

struct ObjectInfo {
  std::string key;  // relative to the store's root
  uint64_t bytes = 0;
};

// Progress of a long transfer: bytes done so far, of total.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // What it is, for messages: "s3://bucket/prefix (endpoint ...)" or the
  // directory's path.
  virtual std::string describe() const = 0;
  // Stores the file at `path` as `key`, replacing an object of that key.
  virtual Status put_file(const std::string& key, const std::string& path,
                          const ProgressFn& progress = {}) = 0;
  // Every object whose key starts with `prefix`, sorted by key.
  virtual Result<std::vector<ObjectInfo>> list(const std::string& prefix) = 0;
  // Writes object `key` to `path` (through "<path>.part", renamed once
  // whole and fsynced; removed on failure). kNotFound if there is no such
  // object. `bytes`: its size as listed; an object of another size is
  // refused (and never written beyond it). 0: any size.
  virtual Status get_file(const std::string& key, const std::string& path, uint64_t bytes,
                          const ProgressFn& progress = {}) = 0;
  // Deletes object `key`; deleting one that does not exist is no error.
  virtual Status remove(const std::string& key) = 0;
  // From any thread: the call in progress, and every later one, fails soon
  // (kUnavailable, "cancelled"). For a process that stops.
  virtual void cancel() = 0;
};

// The store the config names, its settings checked (an S3 store without
// credentials, a malformed URL: kInvalidArgument saying what is missing).
// Nothing is contacted yet.
Result<std::unique_ptr<ObjectStore>> open_store(const StoreConfig& config);

// True if url names an S3 bucket (s3://...).
bool is_s3_url(const std::string& url);

// --- Snapshots in a store ---
// Layout: <root>/node-<id>/snapshot-<20-digit epoch>.msnap, one folder per
// node (each node uploads its own snapshots; any of them can bootstrap a
// node, docs/backups.md).

std::string snapshot_key(uint64_t node_id, uint64_t epoch);

struct StoredSnapshot {
  uint64_t node_id = 0;
  uint64_t epoch = 0;
  uint64_t bytes = 0;
  std::string key;
};

// The snapshots in the store (objects of other names are skipped), oldest
// epoch first (ties by node); of one node only if node_id is set.
Result<std::vector<StoredSnapshot>> list_snapshots(ObjectStore& store,
                                                   std::optional<uint64_t> node_id = {});

}  // namespace maroon::objstore
