// An in-memory, deterministic Env whose disk can crash, for tests and the
// simulator (LevelDB's FaultInjectionTestEnv, TigerBeetle's simulated storage).
//
// The model, per file: `data` is what reads see; `durable` is what survives a
// crash. write_at changes data and marks the touched 512-byte sectors dirty;
// File::sync copies the dirty sectors (and the size) to durable. A crash
// rebuilds every file from its durable content; with tear, each dirty sector
// independently survives or not (the disk wrote some of them, in any order).
//
// Directories: creating, renaming and removing a file change the live
// namespace; sync_dir(dir) makes the entries of dir durable; a crash reverts
// the namespace to its durable state. create_dirs is durable at once (the WAL
// and superblock never depend on directory creation racing a crash).
//
// Error injection: after `after` more successful calls, the next `count` write
// calls (write_at, allocate) or sync calls (File::sync, sync_dir) fail with
// kIoError "no space left on device". A failed write changes nothing; a failed
// sync makes nothing durable and leaves the writes pending, so a later crash
// may persist any subset of them, as after a real failed fsync. With
// linux_failed_sync, a failed File::sync instead does what Linux does after a
// failed writeback: the pages are marked clean though the disk never got
// them. Reads still see them (the page cache) until sync_and_drop_cache()
// drops the cache; no later sync makes them durable; a crash loses them.
//
// A process that dies without a crash of the machine (kill -9) is modelled by
// simply reopening: the page cache (data, dirty and lost sectors) stays.
//
// Thread-safe (one mutex); deterministic given the same calls and Prng seed.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/prng.h"
#include "storage/env.h"

namespace maroon {

class FaultEnv final : public Env {
 public:
  static constexpr uint64_t kSectorBytes = 512;

  // seed: where random64() starts (the same seed, the same salts).
  explicit FaultEnv(uint64_t seed = 1);
  ~FaultEnv() override;

  Result<std::unique_ptr<File>> open(const std::string& path, bool create) override;
  Result<std::vector<std::string>> list_dir(const std::string& dir) override;
  Status remove(const std::string& path) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status sync_dir(const std::string& dir) override;
  Status create_dirs(const std::string& dir) override;
  bool exists(const std::string& path) override;
  uint64_t random64() override;

  // Loses everything not durable. Files opened before stay usable but are
  // detached: nothing they do is visible any more. Pending injected errors
  // are cleared (a new process starts).
  void crash(Prng& prng, bool tear);
  void inject_write_errors(uint64_t count, uint64_t after = 0);
  void inject_sync_errors(uint64_t count, uint64_t after = 0);
  void set_linux_failed_sync(bool on);

  uint64_t file_syncs() const;
  uint64_t dir_syncs() const;

 private:
  struct Node;
  class FaultFile;
  struct Injection {
    uint64_t after = 0;
    uint64_t count = 0;
    bool fire();  // true if this call must fail
  };

  Status write_fault();
  Status sync_fault();

  mutable std::mutex mu_;
  std::set<std::string> dirs_;
  std::map<std::string, std::shared_ptr<Node>> live_;
  std::map<std::string, std::shared_ptr<Node>> durable_;
  Injection write_errors_;
  Injection sync_errors_;
  bool linux_failed_sync_ = false;
  uint64_t file_syncs_ = 0;
  uint64_t dir_syncs_ = 0;
  Prng random_;
};

}  // namespace maroon
