#include "storage/wal_format.h"

#include <cstdio>

#include "common/hash.h"

namespace maroon::wal {
namespace {

// Segment header field offsets; the checksum covers [0, kHeaderChecksumAt).
constexpr size_t kMagicAt = 0;
constexpr size_t kVersionAt = 8;
constexpr size_t kSegmentIndexAt = 16;
constexpr size_t kFirstLsnAt = 24;
constexpr size_t kSaltAt = 32;
constexpr size_t kHeaderChecksumAt = 40;
static_assert(kHeaderChecksumAt + 4 == kSegmentHeaderUsedBytes);

constexpr std::string_view kNamePrefix = "wal-";
constexpr std::string_view kNameSuffix = ".log";
constexpr size_t kNameDigits = 8;

}  // namespace

RecordHeader load_record_header(const char* p) {
  RecordHeader h;
  h.checksum = load_u32(p + kChecksumAt);
  h.payload_bytes = load_u32(p + kPayloadBytesAt);
  h.lsn = Lsn(load_u64(p + kLsnAt));
  h.type = static_cast<uint8_t>(p[kTypeAt]);
  h.flags = static_cast<uint8_t>(p[kFlagsAt]);
  h.reserved = static_cast<uint16_t>(static_cast<uint8_t>(p[kReservedAt]) |
                                     static_cast<uint8_t>(p[kReservedAt + 1]) << 8);
  return h;
}

uint32_t record_checksum(std::string_view record, uint64_t seed) {
  MAROON_ASSERT(record.size() >= kRecordHeaderBytes);
  return static_cast<uint32_t>(hash64(record.substr(kChecksumAt + 4), seed));
}

uint64_t checksum_seed(const SegmentHeader& header) {
  char bytes[16];
  store_u64(bytes, header.segment_index);
  store_u64(bytes + 8, header.salt);
  return hash64(std::string_view(bytes, sizeof bytes), 0);
}

std::string encode_segment_header(const SegmentHeader& header) {
  std::string out(kSegmentHeaderBytes, '\0');
  std::memcpy(out.data() + kMagicAt, kSegmentMagic.data(), kSegmentMagic.size());
  store_u32(out.data() + kVersionAt, kFormatVersion);
  store_u64(out.data() + kSegmentIndexAt, header.segment_index);
  store_u64(out.data() + kFirstLsnAt, header.first_lsn.value());
  store_u64(out.data() + kSaltAt, header.salt);
  store_u32(out.data() + kHeaderChecksumAt,
            checksum32(std::string_view(out).substr(0, kHeaderChecksumAt)));
  return out;
}

Result<SegmentHeader> decode_segment_header(std::string_view bytes) {
  if (bytes.size() < kSegmentHeaderBytes) return corruption("segment shorter than its header");
  if (bytes.substr(kMagicAt, kSegmentMagic.size()) != kSegmentMagic) {
    return corruption("bad segment magic");
  }
  if (load_u32(bytes.data() + kHeaderChecksumAt) !=
      checksum32(bytes.substr(0, kHeaderChecksumAt))) {
    return corruption("segment header checksum mismatch");
  }
  const uint32_t version = load_u32(bytes.data() + kVersionAt);
  if (version != kFormatVersion) {
    return corruption("unsupported segment format version " + std::to_string(version) +
                      (version == 1 ? " (from a build before salted record checksums and 4 KiB "
                                      "batches; start with a fresh data directory)"
                                    : ""));
  }
  SegmentHeader h;
  h.segment_index = load_u64(bytes.data() + kSegmentIndexAt);
  h.first_lsn = Lsn(load_u64(bytes.data() + kFirstLsnAt));
  h.salt = load_u64(bytes.data() + kSaltAt);
  if (h.first_lsn == Lsn(0)) return corruption("segment header has first lsn 0");
  return h;
}

std::string segment_file_name(uint64_t segment_index) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%0*llu", static_cast<int>(kNameDigits),
                static_cast<unsigned long long>(segment_index));
  return std::string(kNamePrefix) + digits + std::string(kNameSuffix);
}

std::optional<uint64_t> parse_segment_file_name(std::string_view name) {
  if (!name.starts_with(kNamePrefix) || !name.ends_with(kNameSuffix)) return std::nullopt;
  const std::string_view digits =
      name.substr(kNamePrefix.size(), name.size() - kNamePrefix.size() - kNameSuffix.size());
  if (digits.size() < kNameDigits || digits.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (segment_file_name(v) != name) return std::nullopt;  // one spelling per index
  return v;
}

}  // namespace maroon::wal
