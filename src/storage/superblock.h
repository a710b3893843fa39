// Durable small state (replica id, VR view and status, config epoch): one
// file holding two copies of an opaque payload. A write replaces the older
// copy and fsyncs, so a crash mid-write leaves the newer copy intact and
// recovery falls back to it. Layout in docs/formats/wal.md ("Superblock").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/status.h"
#include "storage/env.h"

namespace maroon {

class Superblock {
 public:
  // Each copy fills one 4 KiB slot, so the two never share a sector.
  static constexpr uint64_t kSlotBytes = 4096;
  static constexpr size_t kHeaderBytes = 32;
  static constexpr size_t payload_bytes_max = kSlotBytes - kHeaderBytes;

  // Opens path, creating it (crash-safely: temp file, fsync, rename, directory
  // fsync) if missing. kCorruption if neither copy verifies, or if a copy
  // newer than the one to return lies in the wrong slot (a misdirected write).
  static Result<std::unique_ptr<Superblock>> open(Env& env, std::string path);

  // The payload last written, or nullopt if nothing was ever written.
  const std::optional<std::string>& current() const { return current_; }
  // Number of successful writes over the file's life; 0 before the first.
  uint64_t sequence() const { return sequence_; }

  // Durably replaces the payload. kTooLarge above payload_bytes_max. After an
  // I/O error the superblock is failed for good (a failed fsync is never
  // retried); the previous payload stays durable on disk.
  [[nodiscard]] Status write(std::string_view payload);

 private:
  Superblock(std::unique_ptr<File> file, std::string path)
      : file_(std::move(file)), path_(std::move(path)) {}

  std::unique_ptr<File> file_;
  const std::string path_;
  std::optional<std::string> current_;
  uint64_t sequence_ = 0;
  Status failure_;
};

}  // namespace maroon
