// Recovery's reading half: verify the records of one segment image in memory
// and classify whatever follows the last complete batch. Pure (no files), so
// it can be fuzzed; Wal::open decides what to do with the result.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/status.h"
#include "common/types.h"

namespace maroon {

// Called once per recovered record, in LSN order. A non-ok Status stops
// recovery and is returned by Wal::open.
using ReplayFn = std::function<Status(Lsn lsn, uint8_t type, std::string_view payload)>;

namespace wal {

// Random access to one segment's bytes. Lets the scanner read a file through
// a bounded window instead of loading whole segments.
class SegmentSource {
 public:
  virtual ~SegmentSource() = default;
  virtual uint64_t size() const = 0;
  // Bytes [offset, offset + n), offset + n <= size(); valid until the next
  // call. A read error's message names the file and the offset.
  virtual Result<std::string_view> read(uint64_t offset, uint64_t n) = 0;
};

// A segment already in memory (tests, fuzzing).
class MemorySource final : public SegmentSource {
 public:
  explicit MemorySource(std::string_view image) : image_(image) {}
  uint64_t size() const override { return image_.size(); }
  Result<std::string_view> read(uint64_t offset, uint64_t n) override {
    MAROON_ASSERT(offset <= image_.size() && n <= image_.size() - offset);
    return image_.substr(offset, n);
  }

 private:
  std::string_view image_;
};

struct SegmentScan {
  uint64_t records = 0;
  // The LSN the next appended record gets.
  Lsn next_lsn;
  // Just past the last complete batch, on a block boundary: appends go here.
  uint64_t end_offset = 0;
  // Nonzero bytes lie in [end_offset, dirty_end); equal when the tail is clean.
  uint64_t dirty_end = 0;
  // When the tail is not clean: the first bad byte and what is wrong there.
  uint64_t damage_offset = 0;
  std::string damage;
  // The damage is a read error (damage is its message, which names the file
  // and offset): the bytes there are unknown, not wrong.
  bool unreadable = false;
  // A complete, valid batch after the damage: the damage is not a torn tail.
  std::optional<uint64_t> later_batch_offset;
};

// source is the whole segment file; its header must already be verified, and
// checksum_seed is wal::checksum_seed of it.
// Replays every record of every complete batch from the start, expecting the
// first to have first_lsn. Only in the last segment is the space after the
// last batch examined (dirty_end, damage, later_batch_offset): in earlier
// segments lost batches show up as an LSN gap at the next segment's header.
// A read error ends the complete batches like damage does (a torn write may
// leave sectors unreadable; in an earlier segment it may lie in the unused
// tail), and in the last segment unreadable blocks after them count as
// damage; whether that is a torn tail, or an earlier segment's unused tail,
// is the caller's call, as for other damage. Fails only with a Status from
// replay, or from source when rereading a batch that verified.
Result<SegmentScan> scan_segment(SegmentSource& source, uint64_t checksum_seed, Lsn first_lsn,
                                 bool last, const ReplayFn& replay);

}  // namespace wal
}  // namespace maroon
