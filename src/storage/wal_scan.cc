#include "storage/wal_scan.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "storage/wal_format.h"

namespace maroon::wal {
namespace {

constexpr uint64_t kZeroChunkBytes = 64 * 1024;
constexpr char kZeros[kZeroChunkBytes] = {};

bool all_zero(std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t n = std::min<size_t>(bytes.size(), kZeroChunkBytes);
    if (std::memcmp(bytes.data(), kZeros, n) != 0) return false;
    bytes.remove_prefix(n);
  }
  return true;
}

// What lies in [from, size) of the last segment, read in chunks; a chunk that
// cannot be read is read again block by block, and a block that still cannot
// counts as damage (it may hold anything) but does not stop the survey.
struct TailSurvey {
  uint64_t first_dirty = 0;                   // the first nonzero or unreadable byte, or size
  uint64_t dirty_end = 0;                     // just past the last one, or from
  std::optional<uint64_t> unreadable_offset;  // the first unreadable block
  Status unreadable;                          // and why
};

TailSurvey survey_tail(SegmentSource& source, uint64_t from) {
  TailSurvey t{.first_dirty = source.size(), .dirty_end = from};
  auto take = [&](uint64_t at, std::string_view bytes) {
    if (all_zero(bytes)) return;
    if (t.first_dirty == source.size()) {
      t.first_dirty = at + bytes.find_first_not_of('\0');
    }
    t.dirty_end = std::max(t.dirty_end, at + bytes.find_last_not_of('\0') + 1);
  };
  for (uint64_t at = from; at < source.size(); at += kZeroChunkBytes) {
    const uint64_t n = std::min(kZeroChunkBytes, source.size() - at);
    if (auto chunk = source.read(at, n)) {
      take(at, *chunk);
      continue;
    }
    for (uint64_t block = at; block < at + n; block += kBlockBytes) {
      const uint64_t block_bytes = std::min(kBlockBytes, at + n - block);
      auto bytes = source.read(block, block_bytes);
      if (bytes) {
        take(block, *bytes);
        continue;
      }
      if (!t.unreadable_offset) {
        t.unreadable_offset = block;
        t.unreadable = bytes.status();
      }
      t.first_dirty = std::min(t.first_dirty, block);
      t.dirty_end = std::max(t.dirty_end, block + block_bytes);
    }
  }
  return t;
}

struct BatchParse {
  bool complete = false;
  uint64_t end = 0;  // just past the last record, before sector padding
  uint64_t records = 0;
  uint64_t bad_offset = 0;
  std::string error;
};

// Parses the batch starting at pos. With exact, its first LSN must be lsn;
// otherwise at least lsn (looking for a batch after damage). On success the
// whole batch is in source's window: source.read(pos, end - pos) is free.
Result<BatchParse> parse_batch(SegmentSource& source, uint64_t pos, uint64_t seed, Lsn lsn,
                               bool exact) {
  BatchParse r;
  Lsn expected = lsn;
  const uint64_t size = source.size();
  for (uint64_t at = pos;;) {
    r.bad_offset = at;
    if (size - at < kRecordHeaderBytes) {
      r.error = "record header runs past the end of the segment";
      return r;
    }
    // Reads always start at the batch start so the batch stays in the window.
    auto head = source.read(pos, at - pos + kRecordHeaderBytes);
    if (!head) return head.status();
    const RecordHeader h = load_record_header(head->data() + (at - pos));
    if (h.payload_bytes > limits::wal_record_bytes_max) {
      r.error = "record length " + std::to_string(h.payload_bytes) + " exceeds the limit";
      return r;
    }
    const uint64_t n = record_bytes(h.payload_bytes);
    if (n > size - at) {
      r.error = "record runs past the end of the segment";
      return r;
    }
    auto batch = source.read(pos, at - pos + n);
    if (!batch) return batch.status();
    if (h.checksum != record_checksum(batch->substr(at - pos), seed)) {
      r.error = "record checksum mismatch";
      return r;
    }
    if (h.reserved != 0 || (h.flags & ~kFlagsKnown) != 0) {
      r.error = "record has unknown flags";
      return r;
    }
    const bool first = r.records == 0;
    if (first != ((h.flags & kFlagBatchFirst) != 0)) {
      r.error = first ? "batch does not start with a batch-first record"
                      : "batch-first record inside a batch";
      return r;
    }
    if (first && !exact && h.lsn >= lsn) expected = h.lsn;
    if (h.lsn != expected) {
      r.error = "record has lsn " + std::to_string(h.lsn.value()) + ", expected " +
                std::to_string(expected.value());
      return r;
    }
    r.records++;
    expected = expected.next();
    at += n;
    if ((h.flags & kFlagBatchLast) != 0) {
      r.complete = true;
      r.end = at;
      return r;
    }
  }
}

// Cheap filter before a checksum: could a batch at pos start at lsn or later?
// Keeps the search after damage from hashing garbage lengths.
Result<bool> may_start_batch(SegmentSource& source, uint64_t pos, Lsn lsn) {
  if (source.size() - pos < kRecordHeaderBytes) return false;
  auto head = source.read(pos, kRecordHeaderBytes);
  if (!head) return head.status();
  const RecordHeader h = load_record_header(head->data());
  const uint64_t lsns_max = source.size() / record_bytes(0);
  return (h.flags & kFlagBatchFirst) != 0 && (h.flags & ~kFlagsKnown) == 0 && h.reserved == 0 &&
         h.lsn >= lsn && h.lsn.value() - lsn.value() <= lsns_max &&
         record_bytes(h.payload_bytes) <= source.size() - pos;
}

}  // namespace

Result<SegmentScan> scan_segment(SegmentSource& source, uint64_t checksum_seed, Lsn first_lsn,
                                 bool last, const ReplayFn& replay) {
  const uint64_t size = source.size();
  MAROON_ASSERT(size >= kSegmentHeaderBytes);
  SegmentScan scan;
  uint64_t pos = kSegmentHeaderBytes;
  Lsn lsn = first_lsn;
  // A read error stops the scan where a torn write may be (the last
  // segment: the tail survey below classifies it) or where the segment's
  // unused tail may start (an earlier one: its successor's first LSN tells).
  auto unreadable = [&](Status s) {
    MAROON_ASSERT(!s.is_ok());
    scan.damage_offset = pos;
    scan.damage = s.message();
    scan.unreadable = true;
  };
  while (pos < size) {
    auto head = source.read(pos, std::min<uint64_t>(kRecordHeaderBytes, size - pos));
    if (!head) {
      unreadable(head.status());
      break;
    }
    // No valid record header is all zero (its LSN is at least 1), so zeros
    // mean the preallocated space after the last batch, or a lost sector.
    if (all_zero(*head)) break;
    auto batch = parse_batch(source, pos, checksum_seed, lsn, /*exact=*/true);
    if (!batch) {
      unreadable(batch.status());
      break;
    }
    if (!batch->complete) {
      scan.damage_offset = batch->bad_offset;
      scan.damage = std::move(batch->error);
      break;
    }
    // A batch is replayed only once all of it has verified, so recovery
    // yields whole batches: a torn batch is never half applied.
    auto bytes = source.read(pos, batch->end - pos);
    if (!bytes) return bytes.status();
    for (uint64_t at = 0; at < bytes->size();) {
      const RecordHeader h = load_record_header(bytes->data() + at);
      const std::string_view payload = bytes->substr(at + kRecordHeaderBytes, h.payload_bytes);
      if (Status s = replay(h.lsn, h.type, payload); !s) return s;
      at += record_bytes(h.payload_bytes);
    }
    scan.records += batch->records;
    lsn = Lsn(lsn.value() + batch->records);
    pos = std::min<uint64_t>(align_up(batch->end, kBlockBytes), size);
  }
  scan.next_lsn = lsn;
  scan.end_offset = pos;
  scan.dirty_end = pos;
  if (!last) {
    if (!scan.damage.empty()) scan.dirty_end = size;
    return scan;
  }

  const TailSurvey tail = survey_tail(source, pos);
  scan.dirty_end = tail.dirty_end;
  if (scan.dirty_end == pos) {
    // Nothing there after all (a read error that did not repeat).
    scan.damage.clear();
    scan.unreadable = false;
    return scan;
  }
  if (tail.unreadable_offset &&
      (scan.unreadable || (scan.damage.empty() && *tail.unreadable_offset == tail.first_dirty))) {
    scan.damage_offset = *tail.unreadable_offset;
    scan.damage = tail.unreadable.message();
    scan.unreadable = true;
  } else if (scan.damage.empty()) {
    scan.damage_offset = tail.first_dirty;
    scan.damage = "unexpected bytes after the last record";
  }
  // From pos itself: a valid batch there with a later first LSN than
  // expected (a misdirected write over the batch that belongs there) proves
  // data was written after the missing records, as much as one further on.
  for (uint64_t at = pos; at < scan.dirty_end; at += kBlockBytes) {
    // An unreadable candidate is no evidence of a later batch.
    auto maybe = may_start_batch(source, at, lsn);
    if (!maybe || !*maybe) continue;
    auto batch = parse_batch(source, at, checksum_seed, lsn, /*exact=*/false);
    if (batch && batch->complete) {
      scan.later_batch_offset = at;
      break;
    }
  }
  return scan;
}

}  // namespace maroon::wal
