// The write-ahead log: records appended in batches, each batch made durable by
// one fdatasync (group commit), replayed in order on open. The on-disk format,
// recovery rules and crash windows are in docs/formats/wal.md.
//
// Threads: the event loop fills a WalBatch and hands it to the WAL thread,
// which calls Wal::write (one thread at a time) and hands the batch back. The
// checksums and LSNs are computed inside write, so that CPU work stays off
// the event loop. last_lsn() and the counters may be read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/limits.h"
#include "maroon/status.h"
#include "common/types.h"
#include "storage/env.h"
#include "storage/wal_scan.h"

namespace maroon {

struct WalOptions {
  // Each segment file is preallocated to this size; a multiple of 4 KiB, at
  // least 8 KiB. A batch larger than a segment's record space is kTooLarge.
  uint64_t segment_bytes = limits::wal_segment_bytes;
  // The last LSN at a clean shutdown, or 0. Nonzero: the log must end
  // exactly there, and any damage after its last batch is corruption, not a
  // torn write (nothing was being written when the process stopped).
  uint64_t clean_last_lsn = 0;
  // In a cluster, where peers hold what a node lost: records missing or
  // damaged after a clean shutdown are cut and reported (lost()) instead of
  // refused. Damage anywhere else is still refused.
  bool recover_lost_records = false;
  // Called when a new segment is durable under its name, before any record
  // goes into it (the data directory records how far the log reaches). An
  // error fails the roll.
  std::function<Status(uint64_t segment_index)> on_roll;
  // Segments below this index were compacted away (a snapshot covers their
  // records): any still present, left by a crash in the middle of removing
  // them, are removed on open and never replayed.
  uint64_t first_segment = 1;
  // A log with no segment yet starts after this LSN (a directory whose
  // state so far comes from a snapshot: its first record follows the
  // snapshot's point).
  uint64_t empty_log_last_lsn = 0;
  // Segments whose every record has an LSN up to this (a snapshot covers
  // them, and nobody asked for their records) are not read past their
  // header: a restart's cost follows the log after the snapshot only.
  uint64_t skip_through_lsn = 0;
};

// What recovery cut from the end of the log: a torn tail (the batch being
// written when the process died), zeroed.
struct WalCut {
  std::string segment;  // file name
  uint64_t offset = 0;  // first byte cut
  uint64_t bytes = 0;   // bytes zeroed
  std::string damage;   // what was wrong at offset
};

// Records encoded into one contiguous buffer, header space reserved in place,
// so write() is a single write call with no copying. Owns no shared state.
class WalBatch {
 public:
  // payload must be at most limits::wal_record_bytes_max bytes.
  void add(uint8_t type, std::string_view payload);
  // Encoded size (headers, payloads, alignment) before write pads the batch
  // to a whole number of 4 KiB blocks.
  size_t bytes() const { return buf_.size(); }
  size_t records() const { return records_; }
  bool empty() const { return records_ == 0; }
  // Calls fn(type, payload) for each record, in order; before write only
  // (tests that crash a node part-way through a write look inside it).
  void for_each_record(const std::function<void(uint8_t type, std::string_view payload)>& fn) const;
  // Forgets the records and keeps the buffer's capacity for reuse.
  void clear();

 private:
  friend class Wal;
  // Fills in LSNs (from first_lsn), batch markers and checksums (with the
  // segment's seed), and pads to a block boundary. After sealing, only
  // clear() may be called.
  void seal(Lsn first_lsn, uint64_t checksum_seed);

  std::string buf_;
  size_t records_ = 0;
  bool sealed_ = false;
};

class Wal {
 public:
  // Creates dir if needed, replays every record in order, truncates a torn
  // tail and positions for appending. Corruption that is not a torn tail
  // fails with kCorruption naming the segment file and byte offset; a read
  // error that is not in a torn tail, with kIoError naming them.
  static Result<std::unique_ptr<Wal>> open(Env& env, std::string dir, WalOptions options,
                                           const ReplayFn& replay);

  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;
  ~Wal();

  // Appends the batch and fdatasyncs once; on success every record in it is
  // durable and LSNs last_lsn()-records()+1 .. last_lsn() are theirs. An
  // empty batch is a no-op. After a write or sync error the Wal is failed
  // for good: this and every later write return that error (a failed fsync is
  // never retried). kTooLarge for a batch bigger than a segment does not fail
  // the Wal. Leaves the batch sealed: clear() it before reuse.
  [[nodiscard]] Status write(WalBatch& batch);

  Lsn last_lsn() const { return Lsn(last_lsn_.load(std::memory_order_acquire)); }
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // Bytes handed to the file system by write (padding included, segment
  // headers not), and fdatasyncs done by write.
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  // Index of the segment being appended to.
  uint64_t segment_index() const { return segment_index_; }
  // The oldest segment and the LSN its first record has (or would have).
  uint64_t first_segment() const { return segments_.begin()->first; }
  Lsn first_lsn() const { return Lsn(segments_.begin()->second); }
  // The segments whose every record has an LSN <= lsn, oldest first; never
  // the one being appended to.
  std::vector<uint64_t> segments_through(Lsn lsn) const;
  // Deletes segments below `index` (their files), oldest first, and makes
  // the removals durable. The caller has made the new first segment durable
  // first (DataDir's superblock), so a crash part-way leaves files that the
  // next open removes (WalOptions::first_segment). Not while writing.
  [[nodiscard]] Status remove_segments_below(uint64_t index);
  // The log lost its end, and a snapshot covers everything up to `lsn`,
  // past its last record: the log continues in a new segment from lsn + 1
  // (so no new record takes an LSN the snapshot covers). The older
  // segments hold only covered records; the caller removes them once the
  // superblock says the log starts at the new one.
  [[nodiscard]] Status continue_after(Lsn lsn);
  // The torn tail recovery cut, if it cut one.
  const std::optional<WalCut>& cut() const { return cut_; }
  // With recover_lost_records: what recovery found missing or damaged that
  // a clean shutdown had vouched for.
  const std::optional<std::string>& lost() const { return lost_; }

 private:
  Wal(Env& env, std::string dir, WalOptions options);

  [[nodiscard]] Status recover(const ReplayFn& replay);
  // Creates the next segment (temp name, preallocate, header, fdatasync,
  // rename, directory sync) and makes it the one being appended to.
  [[nodiscard]] Status roll();
  Status fail(Status s);
  std::string segment_path(uint64_t segment_index) const;

  Env& env_;
  const std::string dir_;
  const WalOptions options_;
  std::unique_ptr<File> file_;
  uint64_t segment_index_ = 0;
  // Every segment on disk: index -> its first LSN.
  std::map<uint64_t, uint64_t> segments_;
  std::optional<WalCut> cut_;
  std::optional<std::string> lost_;
  uint64_t checksum_seed_ = 0;  // of the segment being appended to
  uint64_t write_offset_ = 0;
  uint64_t segment_capacity_bytes_ = 0;
  Status failure_;
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> last_lsn_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> syncs_{0};
};

}  // namespace maroon
