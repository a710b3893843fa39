// The one seam for file effects (LevelDB's Env). Storage code never calls the
// OS directly, so the same WAL runs on a real disk (PosixEnv) and on the
// simulator's deterministic, crashable disk (FaultEnv).
//
// Every call returns a Status: a full disk or a failed fsync is an operating
// error, never an exception or an abort.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/status.h"

namespace maroon {

// An open file, read-write. Offsets are explicit, so there is no shared file
// position to get wrong; one File may be used by one thread at a time.
class File {
 public:
  virtual ~File() = default;

  // Writes all of data at offset (extending the file if needed), or fails.
  [[nodiscard]] virtual Status write_at(uint64_t offset, std::string_view data) = 0;
  // Reads up to n bytes at offset into out (replacing its contents). Fewer
  // bytes only at end of file.
  [[nodiscard]] virtual Status read_at(uint64_t offset, size_t n, std::string& out) = 0;
  // fdatasync: the data written so far, and the size, survive a crash.
  [[nodiscard]] virtual Status sync() = 0;
  // For recovery, before reading what a previous process left: sync(), then
  // drop the file's cached pages so later reads come from the disk. Without
  // it a restart reads the page cache: pages a killed process wrote but
  // never synced (durable only by this sync), or, after a failed fsync,
  // pages Linux marked clean although the disk never got them (no sync makes
  // those durable; only a read from the disk shows they are not there).
  [[nodiscard]] virtual Status sync_and_drop_cache() = 0;
  // Reserves space so the file is at least size_bytes long; new bytes read as
  // zero. Preallocation keeps appends from changing metadata or hitting ENOSPC.
  [[nodiscard]] virtual Status allocate(uint64_t size_bytes) = 0;
  [[nodiscard]] virtual Status truncate(uint64_t size_bytes) = 0;
  [[nodiscard]] virtual Result<uint64_t> size() = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // Opens path read-write. With create, a missing file is created empty (its
  // name durable only after sync_dir of the parent); without it a missing
  // file is kNotFound.
  [[nodiscard]] virtual Result<std::unique_ptr<File>> open(const std::string& path,
                                                           bool create) = 0;
  // The names (not paths) of the entries in dir, sorted.
  [[nodiscard]] virtual Result<std::vector<std::string>> list_dir(const std::string& dir) = 0;
  [[nodiscard]] virtual Status remove(const std::string& path) = 0;
  // Atomically replaces to with from. Durable only after sync_dir.
  [[nodiscard]] virtual Status rename(const std::string& from, const std::string& to) = 0;
  // Makes creations, renames and removals of entries in dir durable.
  [[nodiscard]] virtual Status sync_dir(const std::string& dir) = 0;
  // mkdir -p; the new directories are durable when it returns.
  [[nodiscard]] virtual Status create_dirs(const std::string& dir) = 0;
  virtual bool exists(const std::string& path) = 0;
  // Random bits for what must not be guessable from outside (the WAL's
  // segment salts). The simulated Env draws them deterministically.
  virtual uint64_t random64() = 0;
};

// The real file system. Error messages carry the path and the errno text.
class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<File>> open(const std::string& path, bool create) override;
  Result<std::vector<std::string>> list_dir(const std::string& dir) override;
  Status remove(const std::string& path) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status sync_dir(const std::string& dir) override;
  Status create_dirs(const std::string& dir) override;
  bool exists(const std::string& path) override;
  uint64_t random64() override;  // from the OS (std::random_device)
};

// The directory part of path ("a/b/c" -> "a/b", "c" -> ".").
std::string parent_dir(std::string_view path);
std::string join_path(std::string_view dir, std::string_view name);

}  // namespace maroon
