// The WAL's on-disk layout: segment header, record header, checksums and file
// names. docs/formats/wal.md is the prose version; keep the two in step.
//
// Kept apart from wal.cc so the decoder can be fuzzed and tested on its own.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/limits.h"
#include "maroon/status.h"
#include "common/types.h"

namespace maroon::wal {

inline constexpr uint32_t kFormatVersion = 2;
inline constexpr std::string_view kSegmentMagic = "MAROONWL";

// Batches start on 4 KiB boundaries, so writing a batch never rewrites a
// block that holds an earlier, already-synced batch: a torn write can only
// damage the batch being written. 4 KiB, not a 512-byte sector, because
// the page cache writes back whole pages and many disks' atomic unit is
// 4 KiB: a torn page could otherwise damage an acknowledged batch sharing it.
inline constexpr uint64_t kBlockBytes = 4096;
// LSNs start at 1 and stay below this: at a billion records a second it is
// 146 years away, and with it the arithmetic on a header's first_lsn (plus
// at most a segment's worth of records) cannot wrap.
inline constexpr uint64_t kLsnMax = uint64_t{1} << 62;
// The segment header fills the first block; records start after it.
inline constexpr uint64_t kSegmentHeaderBytes = kBlockBytes;
inline constexpr size_t kSegmentHeaderUsedBytes = 44;

inline constexpr size_t kRecordHeaderBytes = 20;
// Records start on 8-byte boundaries so header fields are naturally aligned.
inline constexpr size_t kRecordAlignBytes = 8;

inline constexpr uint8_t kFlagBatchFirst = 1;
inline constexpr uint8_t kFlagBatchLast = 2;
inline constexpr uint8_t kFlagsKnown = kFlagBatchFirst | kFlagBatchLast;

inline constexpr uint64_t kSegmentBytesMin = kSegmentHeaderBytes + kBlockBytes;

static_assert(kSegmentHeaderUsedBytes <= kSegmentHeaderBytes);
static_assert(limits::wal_segment_bytes % kBlockBytes == 0);
static_assert(limits::wal_record_bytes_max <= UINT32_MAX - kRecordHeaderBytes - kRecordAlignBytes);
static_assert(kBlockBytes % kRecordAlignBytes == 0);

constexpr uint64_t align_up(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// Header, payload and zero padding to the next 8-byte boundary.
constexpr size_t record_bytes(size_t payload_bytes) {
  return align_up(kRecordHeaderBytes + payload_bytes, kRecordAlignBytes);
}

inline void store_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<char>(v >> (8 * i));
}
inline void store_u64(char* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<char>(v >> (8 * i));
}
inline uint32_t load_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}
inline uint64_t load_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

// Record header field offsets.
inline constexpr size_t kChecksumAt = 0;
inline constexpr size_t kPayloadBytesAt = 4;
inline constexpr size_t kLsnAt = 8;
inline constexpr size_t kTypeAt = 16;
inline constexpr size_t kFlagsAt = 17;
inline constexpr size_t kReservedAt = 18;

struct RecordHeader {
  uint32_t checksum = 0;
  uint32_t payload_bytes = 0;
  Lsn lsn;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint16_t reserved = 0;
};

// p must point at kRecordHeaderBytes readable bytes.
RecordHeader load_record_header(const char* p);

// The checksum of one record: xxh3-64 of everything after the checksum field
// (rest of header, payload, padding), seeded with the segment's checksum
// seed (below); low 32 bits.
uint32_t record_checksum(std::string_view record, uint64_t seed);

struct SegmentHeader {
  uint64_t segment_index = 0;
  Lsn first_lsn;  // the LSN the segment's first record has (or would have)
  // Random, drawn when the segment is created. Records are checksummed
  // with a seed derived from it, so bytes a client chose (a value holding
  // well-formed records) never verify as records: whoever wrote them could
  // not know the salt. Never printed or logged.
  uint64_t salt = 0;
};

// The seed of a segment's record checksums: from its index (a record copied
// into another segment does not verify) and its salt.
uint64_t checksum_seed(const SegmentHeader& header);

// Exactly kSegmentHeaderBytes bytes.
std::string encode_segment_header(const SegmentHeader& header);
// Fails with kCorruption (message without the file name) on a bad magic,
// version or checksum, or short input.
Result<SegmentHeader> decode_segment_header(std::string_view bytes);

// "wal-00000001.log"
std::string segment_file_name(uint64_t segment_index);
std::optional<uint64_t> parse_segment_file_name(std::string_view name);
inline constexpr std::string_view kTempSuffix = ".tmp";

}  // namespace maroon::wal
