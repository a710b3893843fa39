// The on-disk container for node snapshots: a file header holding the
// caller's small metadata, a sequence of chunks (kind, payload), and a
// trailer that proves the file is whole. The container knows nothing about
// what the chunks mean; the node gives kinds their meaning. Layout, checks
// and crash windows are in docs/formats/snapshot.md; keep the two in step.
//
// A snapshot is written under a temp name, fsynced (finish), and only then
// renamed to its final name (publish), so a file under a snapshot name is
// always complete. Reading checks every chunk before handing it out, in
// bounded memory, and refuses any damage or truncation with kCorruption
// naming the file and byte offset.
//
// All file effects go through Env, so the same code runs on the real disk
// and on the simulator's crashable FaultEnv. One thread at a time per object.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maroon/limits.h"
#include "maroon/status.h"
#include "storage/env.h"

namespace maroon {

// The caller's metadata in the file header.
inline constexpr size_t snapshot_header_bytes_max = 64 * 1024;
// One chunk's payload: an app's snapshot piece plus room for the node's own
// framing around it.
inline constexpr size_t snapshot_chunk_bytes_max = limits::snapshot_piece_bytes_max + 64 * 1024;

// "snapshot-<20-digit zero-padded number>.msnap"; the number is the caller's
// (an epoch). Zero-padded to the width of any uint64, so names sort as numbers.
std::string snapshot_file_name(uint64_t number);
// The number in a snapshot file name, or nullopt if name is not exactly one
// (the temp name "<name>.tmp" is not).
std::optional<uint64_t> parse_snapshot_file_name(std::string_view name);

// The numbers of the published snapshots in dir, ascending; none if dir does
// not exist. First makes dir's entries durable (a snapshot renamed by a
// process killed before its directory fsync is made durable before anyone
// relies on it), and deletes leftover "<snapshot name>.tmp" files of a
// writer that never published. So call it only while no SnapshotFileWriter
// is writing into dir (at startup, or from the one thread that writes
// snapshots): it would delete that writer's temp file (its publish() would
// then fail, not succeed silently).
Result<std::vector<uint64_t>> list_snapshots(Env& env, const std::string& dir);

class SnapshotFileWriter {
 public:
  // Creates dir if needed and <dir>/<name>.tmp (replacing a stale one).
  // `header` is the caller's metadata (at most snapshot_header_bytes_max
  // bytes, else kTooLarge), returned by SnapshotFileReader::header().
  static Result<std::unique_ptr<SnapshotFileWriter>> create(Env& env, std::string dir,
                                                            uint64_t number,
                                                            std::string_view header);

  SnapshotFileWriter(const SnapshotFileWriter&) = delete;
  SnapshotFileWriter& operator=(const SnapshotFileWriter&) = delete;
  // Leaves the disk alone: a writer that is neither published nor abandoned
  // leaves its temp file for list_snapshots to delete. (A destructor that
  // removed it could run after a simulated crash and reach into the disk of
  // the next incarnation.)
  ~SnapshotFileWriter();

  // Appends a chunk. kTooLarge (and nothing written; the writer stays
  // usable) if payload exceeds snapshot_chunk_bytes_max. Chunks are
  // buffered and written in writes of about 1 MiB; a large payload is
  // written straight from the caller's memory. After an I/O error the writer
  // is failed for good: this and every later call return that error.
  [[nodiscard]] Status add(uint8_t kind, std::string_view payload);
  // Writes the trailer and fdatasyncs the file. After this, only publish()
  // or abandon(). A failed fsync is never retried (the writer is failed).
  [[nodiscard]] Status finish();
  // Renames <name>.tmp to <name> and fsyncs dir: the snapshot now exists.
  // Separate from finish() so the caller can publish only once its log is
  // durable up to the snapshot's point. Replaces a published snapshot of the
  // same number atomically. An error leaves it unknown whether the snapshot
  // survives a crash: the caller must not rely on it (a restart lists what
  // is there and verifies it).
  [[nodiscard]] Status publish();
  // Removes the temp file, best effort (list_snapshots deletes what is left).
  // Does nothing once published (the file is whole and stays); the writer
  // is done afterwards.
  void abandon();

  // Bytes of the file so far (header, chunks, and after finish() the
  // trailer), buffered or written: after finish() the file's size.
  uint64_t bytes_written() const { return bytes_; }
  uint64_t chunks() const { return chunks_; }
  // The final path, <dir>/<name>, which exists only after publish().
  const std::string& path() const { return path_; }

 private:
  enum class State { kWriting, kFinished, kPublished, kAbandoned };

  SnapshotFileWriter(Env& env, std::string dir, std::string path, std::unique_ptr<File> file);
  // Writes the buffer at the file's end, or fails the writer.
  [[nodiscard]] Status flush();
  [[nodiscard]] Status write(std::string_view bytes);
  Status fail(Status s);

  Env& env_;
  const std::string dir_;
  const std::string path_;
  const std::string temp_path_;
  std::unique_ptr<File> file_;
  State state_ = State::kWriting;
  Status failure_;
  std::string buffer_;    // appended, not yet written
  uint64_t written_ = 0;  // bytes handed to the file (its end)
  uint64_t synced_ = 0;   // bytes fdatasynced so far (see write())
  static constexpr uint64_t kSyncEveryBytes = 1024 * 1024;
  uint64_t bytes_ = 0;    // written_ + buffer_.size()
  uint64_t chunks_ = 0;
  uint64_t combined_hash_ = 0;  // over the header and chunk checksums so far
};

class SnapshotFileReader {
 public:
  // Opens path and checks its file header. kNotFound if it does not exist.
  // Reads come from the disk, not from pages a previous process left in the
  // cache (see File::sync_and_drop_cache). If path's name is a snapshot file
  // name, the number in the header must match it.
  static Result<std::unique_ptr<SnapshotFileReader>> open(Env& env, const std::string& path);

  SnapshotFileReader(const SnapshotFileReader&) = delete;
  SnapshotFileReader& operator=(const SnapshotFileReader&) = delete;
  ~SnapshotFileReader();

  // The caller's metadata, and the number given to the writer.
  const std::string& header() const { return header_; }
  uint64_t number() const { return number_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads the whole file once and checks every chunk and the trailer,
  // handing nothing out: to pick the newest valid snapshot before restoring
  // anything. Independent of next(): it neither moves next()'s position nor
  // invalidates the payload next() returned.
  [[nodiscard]] Status verify();
  // The next chunk, (kind, payload), or nullopt once the trailer is reached
  // and verified. The payload is valid until the next call to next(). Every
  // chunk is checked before it is handed out, but chunks handed out before
  // a later one fails were valid only on their own: restore from a file only
  // after verify(). After an error, every later call returns it.
  Result<std::optional<std::pair<uint8_t, std::string_view>>> next();

 private:
  class Scanner;

  SnapshotFileReader(std::string path, std::unique_ptr<File> file, uint64_t size);

  const std::string path_;
  std::unique_ptr<File> file_;
  const uint64_t size_;
  std::string header_;
  uint64_t number_ = 0;
  uint64_t header_checksum_ = 0;
  uint64_t chunks_offset_ = 0;        // where the first chunk starts
  std::unique_ptr<Scanner> scanner_;  // next()'s position
};

}  // namespace maroon
