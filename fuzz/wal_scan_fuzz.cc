// libFuzzer target: WAL recovery. wal::scan_segment reads a segment image
// from memory; every record it reports must lie inside the complete batches it
// accepted, and what it says about the tail must be consistent. Then the
// image is put into a FaultEnv as a segment file (optionally split into two
// segments) and Wal::open recovers it end to end: it must return a Status
// (never abort), accept exactly what the scanner predicts, and a second open
// after a torn-tail repair must see the same records.
//
// Input: a control byte (flags below, bits 5-6 pick the segment index 1..4),
// a knob byte, then:
// - raw mode: the segment image, byte for byte (padded with zeros to one
//   header for scan_segment; the file gets the bytes as they are);
// - kFixup mode: 8 bytes of first_lsn, then what follows the segment header.
//   Random bytes almost never carry a valid checksum, so the harness writes a
//   valid header and repairs every record checksum it can find (a record
//   whose checksum field is 0xDEADBEEF is left broken). That lets the fuzzer
//   build valid batches and reach the torn-tail vs corruption decision.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/assert.h"
#include "common/hash.h"
#include "maroon/status.h"
#include "storage/fault_env.h"
#include "storage/wal.h"
#include "storage/wal_format.h"
#include "storage/wal_scan.h"

namespace {

using namespace maroon;
using namespace maroon::wal;

constexpr uint8_t kFixup = 1;       // repair header and record checksums
constexpr uint8_t kTwoSegments = 2; // split the image into two segments
constexpr uint8_t kSeg2NextLsn = 4; // segment 2's header continues segment 1's LSNs
constexpr uint8_t kFailReplay = 8;  // the replay function fails at some record
constexpr uint8_t kAppend = 16;     // write a batch after a successful open
constexpr uint8_t kFixLsn = 128;    // with kFixup: record LSNs are relative (see fixup)

constexpr uint32_t kLeaveBroken = 0xDEADBEEF;
const std::string kDir = "wal";

struct Rec {
  uint64_t lsn;
  uint8_t type;
  std::string payload;
  bool operator==(const Rec&) const = default;
};

uint64_t header_first_lsn(std::string_view img) {
  return img.size() >= 32 ? load_u64(img.data() + 24) : 0;
}

// Repairs the checksum of every record reachable by walking the image as the
// scanner does. With relative_lsns, each record's LSN field is XORed with the
// LSN it should have (one past the previous record's, the header's first_lsn
// for the first), so a zero field gives a valid sequence and other values
// perturb it.
// The checksum seed Wal::open uses for a segment with this image: its
// header's (index and salt), or, for a header that does not decode (which
// Wal::open refuses anyway), the index's with no salt.
uint64_t seed_for(std::string_view img, uint64_t index) {
  auto h = decode_segment_header(img);
  return h ? checksum_seed(*h) : checksum_seed(SegmentHeader{.segment_index = index});
}

void fix_records(std::string& img, uint64_t index, bool relative_lsns) {
  const uint64_t seed = seed_for(img, index);
  const uint64_t size = img.size();
  uint64_t next_lsn = header_first_lsn(img);
  uint64_t at = kSegmentHeaderBytes;
  while (at < size && size - at >= kRecordHeaderBytes) {
    const RecordHeader h = load_record_header(img.data() + at);
    if (h.payload_bytes == 0 && h.lsn.value() == 0 && h.flags == 0 && h.checksum == 0 &&
        h.type == 0 && h.reserved == 0) {
      at = align_up(at + 1, kBlockBytes);
      continue;
    }
    if (h.payload_bytes > limits::wal_record_bytes_max ||
        record_bytes(h.payload_bytes) > size - at) {
      at = align_up(at + 1, kBlockBytes);
      continue;
    }
    const uint64_t n = record_bytes(h.payload_bytes);
    if (relative_lsns) store_u64(img.data() + at + kLsnAt, h.lsn.value() ^ next_lsn);
    next_lsn = load_u64(img.data() + at + kLsnAt) + 1;
    if (h.checksum != kLeaveBroken) {
      store_u32(img.data() + at, record_checksum(std::string_view(img).substr(at, n), seed));
    }
    at += n;
    if ((h.flags & kFlagBatchLast) != 0) at = align_up(at, kBlockBytes);
  }
}

// A valid segment header followed by body, records repaired.
std::string make_segment(uint64_t index, uint64_t first_lsn, std::string_view body,
                         bool relative_lsns) {
  std::string img = encode_segment_header({.segment_index = index, .first_lsn = Lsn(first_lsn)});
  img.append(body);
  fix_records(img, index, relative_lsns);
  return img;
}

bool all_zero(std::string_view s) {
  for (char c : s) {
    if (c != 0) return false;
  }
  return true;
}

struct ScanOut {
  Result<SegmentScan> scan = Status(Code::kNotFound, "not run");
  std::vector<Rec> recs;
};

// Scans img (at least one header long) and checks every invariant of the result.
ScanOut checked_scan(std::string_view img, uint64_t index, Lsn first_lsn, bool last,
                     int64_t fail_at) {
  MAROON_ASSERT(img.size() >= kSegmentHeaderBytes);
  MemorySource source(img);
  ScanOut out;
  const char* const base = img.data();
  uint64_t expect = first_lsn.value();
  uint64_t batch_end_max = kSegmentHeaderBytes;
  auto replay = [&](Lsn lsn, uint8_t type, std::string_view payload) -> Status {
    MAROON_ASSERT(lsn.value() == expect);
    expect++;
    // The payload is a view into the image, after the segment header and its
    // own record header.
    MAROON_ASSERT(payload.data() >= base + kSegmentHeaderBytes + kRecordHeaderBytes);
    MAROON_ASSERT(payload.size() <= img.size());
    MAROON_ASSERT(static_cast<uint64_t>(payload.data() - base) <= img.size() - payload.size());
    const uint64_t end = static_cast<uint64_t>(payload.data() - base) + payload.size();
    if (end > batch_end_max) batch_end_max = end;
    if (fail_at >= 0 && static_cast<int64_t>(out.recs.size()) == fail_at) {
      return Status(Code::kUnavailable, "replay stopped");
    }
    out.recs.push_back({lsn.value(), type, std::string(payload)});
    return Status::ok();
  };
  out.scan = scan_segment(source, seed_for(img, index), first_lsn, last, replay);
  if (!out.scan) {
    // The only failure a memory source allows is the replay function's.
    MAROON_ASSERT(fail_at >= 0 && static_cast<int64_t>(out.recs.size()) == fail_at);
    MAROON_ASSERT(out.scan.status().code() == Code::kUnavailable);
    return out;
  }
  const SegmentScan& s = *out.scan;
  const uint64_t size = img.size();
  MAROON_ASSERT(s.records == out.recs.size());
  MAROON_ASSERT(s.next_lsn.value() == first_lsn.value() + s.records);
  MAROON_ASSERT(s.end_offset >= kSegmentHeaderBytes && s.end_offset <= size);
  MAROON_ASSERT(s.end_offset % kBlockBytes == 0 || s.end_offset == size);
  // Records lie inside the accepted batches.
  MAROON_ASSERT(batch_end_max <= s.end_offset);
  MAROON_ASSERT(s.dirty_end >= s.end_offset && s.dirty_end <= size);
  MAROON_ASSERT(s.damage.empty() == (s.dirty_end == s.end_offset));
  if (!s.damage.empty()) {
    MAROON_ASSERT(s.damage_offset >= s.end_offset && s.damage_offset <= size);
  }
  if (last) {
    MAROON_ASSERT(all_zero(img.substr(s.dirty_end)));
    if (s.dirty_end > s.end_offset) MAROON_ASSERT(img[s.dirty_end - 1] != 0);
  } else {
    MAROON_ASSERT(!s.later_batch_offset);
  }
  if (s.later_batch_offset) {
    const uint64_t at = *s.later_batch_offset;
    MAROON_ASSERT(!s.damage.empty());
    // At end_offset itself too: a batch there with a later LSN than the one
    // expected (a misdirected write over the batch that belongs there).
    MAROON_ASSERT(at >= s.end_offset && at < s.dirty_end && at % kBlockBytes == 0);
  }
  return out;
}

Status put_file(FaultEnv& env, const std::string& path, std::string_view bytes) {
  auto f = env.open(path, /*create=*/true);
  if (!f) return f.status();
  if (Status s = (*f)->write_at(0, bytes); !s) return s;
  return (*f)->sync();
}

struct OpenOut {
  Result<std::unique_ptr<Wal>> wal = Status(Code::kNotFound, "not run");
  std::vector<Rec> recs;
};

OpenOut open_wal(FaultEnv& env) {
  OpenOut out;
  WalOptions options;
  options.segment_bytes = kSegmentBytesMin;
  out.wal = Wal::open(env, kDir, options, [&](Lsn lsn, uint8_t type, std::string_view payload) {
    out.recs.push_back({lsn.value(), type, std::string(payload)});
    return Status::ok();
  });
  return out;
}

// Would the segment header pass Wal::open's checks for this index and LSN?
bool header_ok(std::string_view img, uint64_t index, const Lsn* expected_first) {
  auto h = decode_segment_header(img);
  if (!h) return false;
  if (h->segment_index != index) return false;
  if (h->first_lsn.value() == 0 || h->first_lsn.value() >= kLsnMax) return false;
  if (expected_first != nullptr && h->first_lsn != *expected_first) return false;
  return true;
}

std::string padded(std::string_view img) {
  std::string s(img);
  if (s.size() < kSegmentHeaderBytes) s.resize(kSegmentHeaderBytes, '\0');
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t control = data[0];
  const uint8_t knob = data[1];
  const uint64_t index = 1 + ((control >> 5) & 3);  // 1..4
  const bool relative_lsns = (control & kFixLsn) != 0;
  const bool keep_lsn_zero = (knob & 0x80) != 0;
  const bool fix = (control & kFixup) != 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);

  // The segment files' contents; in kFixup mode the second is built only once
  // the first has been scanned (its first_lsn may continue the first's).
  std::vector<std::string> segs;
  std::string_view body2;
  const bool two = (control & kTwoSegments) != 0;
  if (fix) {
    uint64_t first_lsn = 0;
    for (size_t i = 0; i < 8 && i < rest.size(); i++) {
      first_lsn |= uint64_t{static_cast<uint8_t>(rest[i])} << (8 * i);
    }
    if (first_lsn == 0 && !keep_lsn_zero) first_lsn = 1;
    rest.remove_prefix(std::min<size_t>(8, rest.size()));
    std::string_view body1 = rest;
    if (two) {
      const size_t cut = std::min<size_t>(rest.size(), kBlockBytes * (knob % 8));
      body1 = rest.substr(0, cut);
      body2 = rest.substr(cut);
    }
    segs.push_back(make_segment(index, first_lsn, body1, relative_lsns));
  } else if (two && rest.size() > kSegmentHeaderBytes) {
    const size_t cut = std::min<size_t>(rest.size(), kBlockBytes * (1 + knob % 8));
    segs.emplace_back(rest.substr(0, cut));
    segs.emplace_back(rest.substr(cut));
  } else {
    segs.emplace_back(rest);
  }

  // Segment 1 alone, as the last segment and as an earlier one.
  const std::string img0 = padded(segs[0]);
  const Lsn first0(header_first_lsn(img0));
  const int64_t fail_at = (control & kFailReplay) != 0 ? knob % 4 : -1;
  ScanOut as_last = checked_scan(img0, index, first0, /*last=*/true, fail_at);
  ScanOut not_last = checked_scan(img0, index, first0, /*last=*/false, fail_at);
  MAROON_ASSERT(as_last.scan.is_ok() == not_last.scan.is_ok());
  MAROON_ASSERT(as_last.recs == not_last.recs);
  if (fail_at >= 0) {
    // Without a failing replay, to compare with Wal::open below.
    as_last = checked_scan(img0, index, first0, true, -1);
    not_last = checked_scan(img0, index, first0, false, -1);
  }
  MAROON_ASSERT(as_last.scan->end_offset == not_last.scan->end_offset);
  MAROON_ASSERT(as_last.scan->next_lsn == not_last.scan->next_lsn);
  MAROON_ASSERT(as_last.scan->damage.empty() || !not_last.scan->damage.empty() ||
                as_last.scan->damage == "unexpected bytes after the last record");

  // Segment 2, continuing segment 1.
  // With kFixup its first_lsn continues segment 1's, or (to model lost
  // batches or a stale segment) is one past or one before that.
  if (fix && two) {
    uint64_t next = not_last.scan->next_lsn.value();
    if ((control & kSeg2NextLsn) == 0) next += (knob & 0x40) != 0 ? -1 : 1;
    segs.push_back(make_segment(index + 1, next, body2, relative_lsns));
  }
  ScanOut seg2;
  std::string img1;
  if (segs.size() == 2) {
    img1 = padded(segs[1]);
    const Lsn first1(header_first_lsn(img1));
    seg2 = checked_scan(img1, index + 1, first1, /*last=*/true, -1);
    if (~uint64_t{0} - first1.value() < segs[1].size()) return 0;
  }

  // End to end: the segments as files of a FaultEnv, recovered by Wal::open.
  FaultEnv env;
  MAROON_ASSERT(env.create_dirs(kDir).is_ok());
  for (size_t i = 0; i < segs.size(); i++) {
    MAROON_ASSERT(put_file(env, join_path(kDir, segment_file_name(index + i)), segs[i]).is_ok());
  }
  MAROON_ASSERT(env.sync_dir(kDir).is_ok());

  // What recovery must do, from the scanner's verdicts.
  bool expect_ok;
  std::vector<Rec> expect_recs;
  Lsn expect_next;
  if (segs.size() == 1) {
    expect_ok = segs[0].size() >= kSegmentHeaderBytes && header_ok(segs[0], index, nullptr) &&
                !as_last.scan->later_batch_offset;
    expect_recs = as_last.recs;
    expect_next = as_last.scan->next_lsn;
  } else {
    // Damage after segment 1's last complete batch is harmless when segment
    // 2 starts at the LSN after it (the space no record used): the header
    // check below says so.
    const Lsn next = not_last.scan->next_lsn;
    expect_ok = segs[0].size() >= kSegmentHeaderBytes && header_ok(segs[0], index, nullptr) &&
                segs[1].size() >= kSegmentHeaderBytes && header_ok(segs[1], index + 1, &next) &&
                !seg2.scan->later_batch_offset;
    expect_recs = not_last.recs;
    expect_recs.insert(expect_recs.end(), seg2.recs.begin(), seg2.recs.end());
    expect_next = seg2.scan->next_lsn;
  }

  OpenOut opened = open_wal(env);
  MAROON_ASSERT(opened.wal.is_ok() == expect_ok);
  if (!opened.wal) {
    MAROON_ASSERT(opened.wal.status().code() == Code::kCorruption);
    // Nothing was replayed past what the scanner accepted.
    MAROON_ASSERT(opened.recs.size() <= expect_recs.size());
    return 0;
  }
  MAROON_ASSERT(opened.recs == expect_recs);
  MAROON_ASSERT((*opened.wal)->last_lsn().value() == expect_next.value() - 1);

  std::vector<Rec> all = opened.recs;
  if ((control & kAppend) != 0) {
    WalBatch batch;
    const std::string payload(knob % 64, 'p');
    batch.add(knob, payload);
    batch.add(1, "q");
    const uint64_t first = (*opened.wal)->last_lsn().value() + 1;
    if ((*opened.wal)->write(batch).is_ok()) {
      all.push_back({first, knob, payload});
      all.push_back({first + 1, 1, "q"});
    }
  }
  opened.wal->reset();

  // A torn tail was zeroed: opening again recovers the same records (plus
  // any appended batch) and finds a clean tail.
  OpenOut again = open_wal(env);
  MAROON_ASSERT(again.wal.is_ok());
  MAROON_ASSERT(again.recs == all);
  return 0;
}
