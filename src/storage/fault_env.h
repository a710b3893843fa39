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
// calls (write_at, allocate), sync calls (File::sync, sync_dir) or read calls
// (read_at) fail with kIoError. A failed write changes nothing; a failed
// sync makes nothing durable and leaves the writes pending, so a later crash
// may persist any subset of them, as after a real failed fsync. With
// linux_failed_sync, a failed File::sync instead does what Linux does after a
// failed writeback: the pages are marked clean though the disk never got
// them. Reads still see them (the page cache) until sync_and_drop_cache()
// drops the cache; no later sync makes them durable; a crash loses them.
//
// Faults of the medium, which the disk does not report (the silent ones are
// what checksums are for):
// - Latent sector errors: reading any byte of a bad sector fails with
//   kIoError, unless the page cache holds a newer write of it, until a write
//   of the whole sector reaches the disk (a sync; drives remap a sector when
//   it is rewritten). A write of part of a bad sector fails: the kernel would
//   have to read the rest first. A crash keeps the sectors bad.
// - Bit flips: one bit changes in the durable content and in what reads see
//   (unless the cache holds a newer write of that sector).
// - Lost writes: write_at succeeds and reads see the data, but its sectors
//   never reach the disk: syncs succeed without them, a crash or
//   sync_and_drop_cache() shows the sectors' old durable content.
// - Misdirected writes: as a lost write, and in addition the next successful
//   sync writes the same whole sectors at another sector offset of the same
//   file (chosen by a Prng, within the file's size), where the page cache
//   does not see them until sync_and_drop_cache(). A crash before that sync
//   loses them, or with tear keeps them (all or nothing) with odds 1/2.
//
// A process that dies without a crash of the machine (kill -9) is modelled by
// simply reopening: the page cache (data, dirty and lost sectors) stays.
//
// A machine crash at a chosen point (a power cut): crash_after_ops(n) lets
// the next n mutating calls through (write_at, allocate, truncate, File::sync,
// sync_and_drop_cache, open with create, remove, rename, sync_dir,
// create_dirs); the one after, and every mutating call from then on, fails
// with kIoError "machine crashed" and changes nothing, as nothing reaches a
// disk whose power is gone. The process above sees its I/O error at exactly
// that point; reads keep seeing the page cache, which is harmless since
// nothing can become durable any more. The test then calls crash(), which
// loses what was not durable and lifts the freeze (the machine boots again).
// Calls are counted in the order they take the mutex, so with one thread
// doing I/O at a time the crash point is a function of n alone.
//
// Thread-safe (one mutex); deterministic given the same calls and Prng seed.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/prng.h"
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
  // are cleared and a frozen disk thaws (the machine boots, a new process
  // starts).
  void crash(Prng& prng, bool tear);
  void inject_write_errors(uint64_t count, uint64_t after = 0);
  void inject_sync_errors(uint64_t count, uint64_t after = 0);
  void inject_read_errors(uint64_t count, uint64_t after = 0);
  void set_linux_failed_sync(bool on);
  // Freezes the disk after `ops` more mutating calls (see the header).
  void crash_after_ops(uint64_t ops);
  // What the armed crash struck ("sync /data/wal/wal-00000001.log"), once it has.
  std::optional<std::string> crash_point() const;
  // Mutating calls let through since construction, for choosing where to crash.
  uint64_t mutating_ops() const;

  // Medium faults (see the header). path names a live file; offsets must lie
  // inside its durable content (bad sectors: inside its visible content).
  // Every sector touching [offset, offset + bytes) becomes unreadable.
  void add_bad_sectors(const std::string& path, uint64_t offset, uint64_t bytes);
  void flip_bit(const std::string& path, uint64_t bit_offset);
  // Flips a bit chosen by prng in [offset, offset + bytes); returns its bit offset.
  uint64_t flip_random_bit(const std::string& path, Prng& prng, uint64_t offset, uint64_t bytes);
  // The next `count` write_at calls, on any file, are lost / misdirected.
  // Misdirected targets are drawn from a Prng seeded by prng (the same seed,
  // the same targets). A crash clears both, like the injected errors.
  void lose_next_writes(uint64_t count);
  void misdirect_next_writes(uint64_t count, Prng& prng);

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

  // Called first by every mutating call, under mu_: counts it, or fails it
  // if the machine is frozen (and freezes it if this call hits the limit).
  Status mutation(std::string_view op, const std::string& path);
  Status mutation(std::string_view op, const Node& node);
  Status write_fault();
  Status sync_fault();
  Status read_fault();
  std::shared_ptr<Node> live_node(const std::string& path) const;

  mutable std::mutex mu_;
  std::set<std::string> dirs_;
  std::map<std::string, std::shared_ptr<Node>> live_;
  std::map<std::string, std::shared_ptr<Node>> durable_;
  Injection write_errors_;
  Injection sync_errors_;
  Injection read_errors_;
  uint64_t lost_writes_ = 0;
  uint64_t misdirected_writes_ = 0;
  Prng misdirect_{0};
  bool linux_failed_sync_ = false;
  std::optional<uint64_t> ops_until_crash_;  // armed by crash_after_ops
  std::optional<std::string> crash_point_;   // set once frozen
  uint64_t mutating_ops_ = 0;
  uint64_t file_syncs_ = 0;
  uint64_t dir_syncs_ = 0;
  Prng random_;
};

}  // namespace maroon
