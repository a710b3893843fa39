#include "storage/snapshot_file.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/hash.h"
#include "storage/wal_format.h"

namespace maroon {

using wal::load_u32;
using wal::load_u64;
using wal::store_u32;
using wal::store_u64;

namespace {

constexpr std::string_view kFileMagic = "MAROONSN";
constexpr std::string_view kTrailerMagic = "MSNAPEND";
constexpr uint32_t kFormatVersion = 1;

// File header: magic, version, caller header length, number, then the
// caller's header bytes and a checksum of everything before it.
constexpr size_t kMagicAt = 0;
constexpr size_t kVersionAt = 8;
constexpr size_t kHeaderBytesAt = 12;
constexpr size_t kNumberAt = 16;
constexpr size_t kFileHeaderFixedBytes = 24;
constexpr size_t kChecksumBytes = 8;

// Chunk: u32 payload_bytes, u8 kind, 3 reserved zero bytes, payload, u64 checksum.
constexpr size_t kPayloadBytesAt = 0;
constexpr size_t kKindAt = 4;
constexpr size_t kReservedAt = 5;
constexpr size_t kChunkHeaderBytes = 8;
constexpr size_t kChunkOverheadBytes = kChunkHeaderBytes + kChecksumBytes;

// Trailer: magic, u64 chunk count, u64 file bytes, u64 combined hash, u32 checksum.
constexpr size_t kChunkCountAt = 8;
constexpr size_t kFileBytesAt = 16;
constexpr size_t kCombinedHashAt = 24;
constexpr size_t kTrailerChecksumAt = 32;
constexpr size_t kTrailerBytes = 36;

// The writer hands the file system about this much at a time: large enough
// that write calls cost nothing next to the bytes, small enough to stay
// out of the way in memory. A payload at least this large is written
// straight from the caller's memory.
constexpr size_t kWriteBytes = 1024 * 1024;
// The reader reads through a window of at least this many bytes: large reads
// keep verification bound by hashing, and memory stays bounded whatever the
// file's size (the window grows only to hold one whole chunk).
constexpr uint64_t kReadWindowBytes = 4 * 1024 * 1024;

constexpr std::string_view kNamePrefix = "snapshot-";
constexpr std::string_view kNameSuffix = ".msnap";
constexpr std::string_view kTempSuffix = ".tmp";
constexpr size_t kNameDigits = 20;  // every uint64 fits

static_assert(kFileMagic.size() == 8 && kTrailerMagic.size() == 8);
static_assert(snapshot_header_bytes_max <= UINT32_MAX);
static_assert(snapshot_chunk_bytes_max <= UINT32_MAX - kChunkOverheadBytes);
// The reader tells a chunk from the trailer by the trailer's magic. Its
// first four bytes, read as a chunk's length, exceed any valid length (and
// its last three are not the zero reserved bytes), so a valid chunk never
// starts with it.
static_assert((uint32_t{kTrailerMagic[0]} | uint32_t{kTrailerMagic[1]} << 8 |
               uint32_t{kTrailerMagic[2]} << 16 | uint32_t{kTrailerMagic[3]} << 24) >
              snapshot_chunk_bytes_max);

std::string at(const std::string& path, uint64_t offset) {
  return path + " offset " + std::to_string(offset) + ": ";
}

Status corrupt(const std::string& path, uint64_t offset, const std::string& what) {
  return corruption(at(path, offset) + what);
}

uint64_t header_checksum(std::string_view covered) { return hash64(covered, 0); }

// The chunk's checksum is seeded with its index, so a chunk moved to another
// position does not verify there.
uint64_t chunk_checksum(std::string_view header_and_payload, uint64_t index) {
  return hash64(header_and_payload, index);
}

// The same as chunk_checksum over head ‖ payload, without copying payload.
uint64_t chunk_checksum(std::string_view head, std::string_view payload, uint64_t index) {
  XXH3_state_t* state = XXH3_createState();
  MAROON_ASSERT(state != nullptr);
  bool ok = XXH3_64bits_reset_withSeed(state, index) == XXH_OK;
  ok = ok && XXH3_64bits_update(state, head.data(), head.size()) == XXH_OK;
  ok = ok && XXH3_64bits_update(state, payload.data(), payload.size()) == XXH_OK;
  MAROON_ASSERT(ok);
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

// The trailer's combined hash: starts at the file header's checksum and
// takes in each chunk's checksum in order, so it changes if any chunk is
// missing, added, replaced or moved, and binds the chunks to the header.
uint64_t combine(uint64_t combined, uint64_t chunk_checksum) {
  char bytes[8];
  store_u64(bytes, chunk_checksum);
  return hash64(std::string_view(bytes, sizeof bytes), combined);
}

std::string strip_trailing_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

}  // namespace

std::string snapshot_file_name(uint64_t number) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%0*llu", static_cast<int>(kNameDigits),
                static_cast<unsigned long long>(number));
  return std::string(kNamePrefix) + digits + std::string(kNameSuffix);
}

std::optional<uint64_t> parse_snapshot_file_name(std::string_view name) {
  if (name.size() != kNamePrefix.size() + kNameDigits + kNameSuffix.size()) return std::nullopt;
  if (!name.starts_with(kNamePrefix) || !name.ends_with(kNameSuffix)) return std::nullopt;
  uint64_t v = 0;
  for (char c : name.substr(kNamePrefix.size(), kNameDigits)) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');  // may wrap: caught below
  }
  if (snapshot_file_name(v) != name) return std::nullopt;  // above UINT64_MAX
  return v;
}

Result<std::vector<uint64_t>> list_snapshots(Env& env, const std::string& dir_in) {
  MAROON_ASSERT(!dir_in.empty());
  const std::string dir = strip_trailing_slashes(dir_in);
  std::vector<uint64_t> numbers;
  if (!env.exists(dir)) return numbers;
  // What is listed is what a crash keeps: a snapshot renamed by a process
  // killed before its directory fsync becomes durable here, before the
  // caller relies on it (and, say, trims its log).
  if (Status s = env.sync_dir(dir); !s) return s;
  auto names = env.list_dir(dir);
  if (!names) return names.status();
  for (const std::string& name : *names) {
    // A temp file was never published: its writer crashed or gave up
    // before the rename, and nobody else knows of it.
    if (name.ends_with(kTempSuffix) && parse_snapshot_file_name(std::string_view(name).substr(
                                           0, name.size() - kTempSuffix.size()))) {
      if (Status s = env.remove(join_path(dir, name)); !s) return s;
      continue;
    }
    if (auto number = parse_snapshot_file_name(name)) numbers.push_back(*number);
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

// --- Writer ---

SnapshotFileWriter::SnapshotFileWriter(Env& env, std::string dir, std::string path,
                                       std::unique_ptr<File> file)
    : env_(env),
      dir_(std::move(dir)),
      path_(std::move(path)),
      temp_path_(path_ + std::string(kTempSuffix)),
      file_(std::move(file)) {}

SnapshotFileWriter::~SnapshotFileWriter() = default;

Result<std::unique_ptr<SnapshotFileWriter>> SnapshotFileWriter::create(Env& env, std::string dir,
                                                                       uint64_t number,
                                                                       std::string_view header) {
  if (header.size() > snapshot_header_bytes_max) {
    return too_large("snapshot header of " + std::to_string(header.size()) + " bytes exceeds " +
                     std::to_string(snapshot_header_bytes_max));
  }
  MAROON_ASSERT(!dir.empty());
  dir = strip_trailing_slashes(std::move(dir));
  if (Status s = env.create_dirs(dir); !s) return s;
  std::string path = join_path(dir, snapshot_file_name(number));
  const std::string temp_path = path + std::string(kTempSuffix);
  if (env.exists(temp_path)) {
    if (Status s = env.remove(temp_path); !s) return s;
  }
  auto file = env.open(temp_path, /*create=*/true);
  if (!file) return file.status();
  if (Status s = (*file)->truncate(0); !s) return s;

  std::unique_ptr<SnapshotFileWriter> w(
      new SnapshotFileWriter(env, std::move(dir), std::move(path), std::move(*file)));
  std::string& b = w->buffer_;
  b.reserve(2 * kWriteBytes);
  b.resize(kFileHeaderFixedBytes, '\0');
  std::memcpy(b.data() + kMagicAt, kFileMagic.data(), kFileMagic.size());
  store_u32(b.data() + kVersionAt, kFormatVersion);
  store_u32(b.data() + kHeaderBytesAt, static_cast<uint32_t>(header.size()));
  store_u64(b.data() + kNumberAt, number);
  b.append(header);
  const uint64_t checksum = header_checksum(b);
  b.resize(b.size() + kChecksumBytes);
  store_u64(b.data() + b.size() - kChecksumBytes, checksum);
  w->combined_hash_ = checksum;
  w->bytes_ = b.size();
  return w;
}

Status SnapshotFileWriter::fail(Status s) {
  MAROON_ASSERT(!s.is_ok());
  failure_ = s;
  return s;
}

Status SnapshotFileWriter::write(std::string_view bytes) {
  if (Status s = file_->write_at(written_, bytes); !s) return fail(s);
  written_ += bytes.size();
  // Synced as it goes: a file system that orders data before its journal
  // commits (ext4 data=ordered) makes the WAL's next fdatasync also write
  // back whatever of this file is dirty, so a large snapshot synced only at
  // the end would stall the node's commits behind it.
  if (written_ - synced_ >= kSyncEveryBytes) {
    if (Status s = file_->sync(); !s) return fail(s);
    synced_ = written_;
  }
  return Status::ok();
}

Status SnapshotFileWriter::flush() {
  if (buffer_.empty()) return Status::ok();
  if (Status s = write(buffer_); !s) return s;
  buffer_.clear();
  return Status::ok();
}

Status SnapshotFileWriter::add(uint8_t kind, std::string_view payload) {
  if (!failure_.is_ok()) return failure_;
  MAROON_ASSERT(state_ == State::kWriting);
  if (payload.size() > snapshot_chunk_bytes_max) {
    return too_large("snapshot chunk of " + std::to_string(payload.size()) + " bytes exceeds " +
                     std::to_string(snapshot_chunk_bytes_max));
  }
  char head[kChunkHeaderBytes] = {};
  store_u32(head + kPayloadBytesAt, static_cast<uint32_t>(payload.size()));
  head[kKindAt] = static_cast<char>(kind);
  const std::string_view head_view(head, sizeof head);

  uint64_t checksum;
  if (payload.size() < kWriteBytes) {
    const size_t start = buffer_.size();
    buffer_.append(head_view);
    buffer_.append(payload);
    checksum = chunk_checksum(std::string_view(buffer_).substr(start), chunks_);
  } else {
    // A large payload goes to the file from the caller's memory rather
    // than through a copy in the buffer.
    checksum = chunk_checksum(head_view, payload, chunks_);
    buffer_.append(head_view);
    if (Status s = flush(); !s) return s;
    if (Status s = write(payload); !s) return s;
  }
  buffer_.resize(buffer_.size() + kChecksumBytes);
  store_u64(buffer_.data() + buffer_.size() - kChecksumBytes, checksum);
  combined_hash_ = combine(combined_hash_, checksum);
  chunks_++;
  bytes_ += kChunkOverheadBytes + payload.size();
  if (buffer_.size() >= kWriteBytes) {
    if (Status s = flush(); !s) return s;
  }
  MAROON_ASSERT(written_ + buffer_.size() == bytes_);
  return Status::ok();
}

Status SnapshotFileWriter::finish() {
  if (!failure_.is_ok()) return failure_;
  MAROON_ASSERT(state_ == State::kWriting);
  const size_t start = buffer_.size();
  buffer_.resize(start + kTrailerBytes, '\0');
  char* t = buffer_.data() + start;
  std::memcpy(t, kTrailerMagic.data(), kTrailerMagic.size());
  store_u64(t + kChunkCountAt, chunks_);
  store_u64(t + kFileBytesAt, bytes_ + kTrailerBytes);
  store_u64(t + kCombinedHashAt, combined_hash_);
  store_u32(t + kTrailerChecksumAt, checksum32(std::string_view(t, kTrailerChecksumAt)));
  bytes_ += kTrailerBytes;
  if (Status s = flush(); !s) return s;
  MAROON_ASSERT(written_ == bytes_);
  // The content is durable before the name is (publish), so a file under a
  // snapshot name is always whole. A failed fsync is never retried: after
  // one, Linux may report success without having written the pages.
  if (Status s = file_->sync(); !s) return fail(s);
  state_ = State::kFinished;
  return Status::ok();
}

Status SnapshotFileWriter::publish() {
  if (!failure_.is_ok()) return failure_;
  MAROON_ASSERT(state_ == State::kFinished);
  if (Status s = env_.rename(temp_path_, path_); !s) return fail(s);
  if (Status s = env_.sync_dir(dir_); !s) return fail(s);
  state_ = State::kPublished;
  file_.reset();
  return Status::ok();
}

void SnapshotFileWriter::abandon() {
  // Published before its owner gave up on it (its publishing job was under
  // way): the file is a whole snapshot and stays.
  if (state_ == State::kAbandoned || state_ == State::kPublished) return;
  state_ = State::kAbandoned;
  file_.reset();
  buffer_.clear();
  buffer_.shrink_to_fit();
  if (env_.exists(temp_path_)) {
    // Best effort: list_snapshots deletes what is left.
    Status s = env_.remove(temp_path_);
    (void)s;
  }
}

// --- Reader ---

// Walks the chunks from the first to the trailer, checking each before
// handing it out. verify() runs one of its own, so it does not disturb
// next()'s position or the payload next() handed out.
class SnapshotFileReader::Scanner {
 public:
  Scanner(File& file, const std::string& path, uint64_t size, uint64_t offset,
          uint64_t header_checksum)
      : file_(file), path_(path), size_(size), offset_(offset), combined_(header_checksum) {}

  Result<std::optional<std::pair<uint8_t, std::string_view>>> next() {
    if (!failure_.is_ok()) return failure_;
    if (done_) return std::optional<std::pair<uint8_t, std::string_view>>();
    auto chunk = step();
    if (!chunk) {
      failure_ = chunk.status();
      // The window may be large; a failed scanner has no use for it.
      buffer_.clear();
      buffer_.shrink_to_fit();
    }
    return chunk;
  }

 private:
  Result<std::optional<std::pair<uint8_t, std::string_view>>> step() {
    MAROON_ASSERT(offset_ <= size_);
    const uint64_t remaining = size_ - offset_;
    if (remaining == 0) {
      return corrupt(
          path_, offset_,
          "the file ends after chunk " + std::to_string(index_) + " without a trailer (truncated)");
    }
    if (remaining < kChunkHeaderBytes) {
      return corrupt(path_, offset_,
                     "the file ends " + std::to_string(remaining) +
                         " bytes into a chunk header or the trailer (truncated)");
    }
    auto head = read(offset_, kChunkHeaderBytes);
    if (!head) return head.status();
    if (*head == kTrailerMagic) {
      if (Status s = trailer(); !s) return s;
      done_ = true;
      return std::optional<std::pair<uint8_t, std::string_view>>();
    }
    const std::string chunk_name = "chunk " + std::to_string(index_);
    // The length is checked against the maximum and against the file before
    // anything is read or allocated for it.
    const uint32_t payload_bytes = load_u32(head->data() + kPayloadBytesAt);
    if (payload_bytes > snapshot_chunk_bytes_max) {
      return corrupt(path_, offset_,
                     chunk_name + " claims " + std::to_string(payload_bytes) +
                         " payload bytes, more than the maximum " +
                         std::to_string(snapshot_chunk_bytes_max));
    }
    const uint64_t chunk_bytes = kChunkOverheadBytes + uint64_t{payload_bytes};
    if (chunk_bytes > remaining) {
      return corrupt(path_, offset_,
                     chunk_name + " of " + std::to_string(chunk_bytes) +
                         " bytes runs past the end of the file at offset " + std::to_string(size_) +
                         " (truncated)");
    }
    auto bytes = read(offset_, chunk_bytes);
    if (!bytes) return bytes.status();
    const std::string_view covered = bytes->substr(0, kChunkHeaderBytes + payload_bytes);
    const uint64_t checksum = load_u64(bytes->data() + covered.size());
    if (checksum != chunk_checksum(covered, index_)) {
      return corrupt(path_, offset_, chunk_name + ": checksum mismatch");
    }
    // Covered by the checksum: nonzero here means a writer of another format.
    if (bytes->substr(kReservedAt, 3) != std::string_view("\0\0\0", 3)) {
      return corrupt(path_, offset_, chunk_name + ": reserved bytes are not zero");
    }
    const uint8_t kind = static_cast<uint8_t>((*bytes)[kKindAt]);
    combined_ = combine(combined_, checksum);
    offset_ += chunk_bytes;
    index_++;
    return std::optional(std::pair(kind, bytes->substr(kChunkHeaderBytes, payload_bytes)));
  }

  Status trailer() {
    const uint64_t remaining = size_ - offset_;
    if (remaining < kTrailerBytes) {
      return corrupt(path_, offset_,
                     "the trailer is cut short: " + std::to_string(remaining) + " of " +
                         std::to_string(kTrailerBytes) + " bytes (truncated)");
    }
    auto t = read(offset_, kTrailerBytes);
    if (!t) return t.status();
    if (load_u32(t->data() + kTrailerChecksumAt) != checksum32(t->substr(0, kTrailerChecksumAt))) {
      return corrupt(path_, offset_, "trailer checksum mismatch");
    }
    const uint64_t count = load_u64(t->data() + kChunkCountAt);
    const uint64_t file_bytes = load_u64(t->data() + kFileBytesAt);
    const uint64_t combined = load_u64(t->data() + kCombinedHashAt);
    if (count != index_) {
      return corrupt(path_, offset_,
                     "the trailer counts " + std::to_string(count) + " chunks, the file holds " +
                         std::to_string(index_));
    }
    if (file_bytes != offset_ + kTrailerBytes) {
      return corrupt(path_, offset_,
                     "the trailer says the file is " + std::to_string(file_bytes) +
                         " bytes, but it ends at " + std::to_string(offset_ + kTrailerBytes));
    }
    if (combined != combined_) {
      return corrupt(path_, offset_,
                     "the trailer's combined hash does not match the header and chunks");
    }
    if (remaining > kTrailerBytes) {
      return corrupt(path_, offset_ + kTrailerBytes,
                     std::to_string(remaining - kTrailerBytes) + " bytes after the trailer");
    }
    return Status::ok();
  }

  // Bytes [offset, offset + n) of the file, through the window.
  Result<std::string_view> read(uint64_t offset, uint64_t n) {
    MAROON_ASSERT(offset <= size_ && n <= size_ - offset);
    if (offset < start_ || offset + n > start_ + buffer_.size()) {
      // n is at most one chunk (bounded above), so the window is too.
      const uint64_t want = std::min(size_ - offset, std::max(n, kReadWindowBytes));
      Status s = file_.read_at(offset, want, buffer_);
      if (s && buffer_.size() != want) {
        s = io_error("short read: " + std::to_string(buffer_.size()) + " bytes, the file shrank");
      }
      if (!s) {
        buffer_.clear();
        start_ = 0;
        return io_error(at(path_, offset) + "cannot read " + std::to_string(n) + " bytes (" +
                        s.message() + ")");
      }
      start_ = offset;
    }
    return std::string_view(buffer_).substr(offset - start_, n);
  }

  File& file_;
  const std::string& path_;
  const uint64_t size_;
  uint64_t offset_;     // of the next chunk (or the trailer)
  uint64_t index_ = 0;  // of the next chunk
  uint64_t combined_;   // over the header and the chunks checked so far
  std::string buffer_;
  uint64_t start_ = 0;  // file offset of buffer_[0]
  bool done_ = false;
  Status failure_;
};

SnapshotFileReader::SnapshotFileReader(std::string path, std::unique_ptr<File> file, uint64_t size)
    : path_(std::move(path)), file_(std::move(file)), size_(size) {}

SnapshotFileReader::~SnapshotFileReader() = default;

Result<std::unique_ptr<SnapshotFileReader>> SnapshotFileReader::open(Env& env,
                                                                     const std::string& path) {
  auto file = env.open(path, /*create=*/false);
  if (!file) return file.status();
  // Read what the disk holds, not what a previous process left in the page
  // cache: a lost write or one a failed fsync marked clean would otherwise
  // verify here and be gone after the next power cut, when the caller may
  // already have trimmed its log on the strength of this snapshot.
  if (Status s = (*file)->sync_and_drop_cache(); !s) return s;
  auto size = (*file)->size();
  if (!size) return size.status();
  std::unique_ptr<SnapshotFileReader> r(new SnapshotFileReader(path, std::move(*file), *size));

  if (*size < kFileHeaderFixedBytes) {
    return corrupt(path, 0,
                   "the file is " + std::to_string(*size) +
                       " bytes, shorter than a snapshot header (truncated)");
  }
  std::string bytes;
  auto read = [&](uint64_t n) -> Status {
    Status s = r->file_->read_at(0, n, bytes);
    if (s && bytes.size() != n) s = io_error("short read, the file shrank");
    if (!s) {
      return io_error(at(path, 0) + "cannot read " + std::to_string(n) + " bytes (" + s.message() +
                      ")");
    }
    return Status::ok();
  };
  if (Status s = read(kFileHeaderFixedBytes); !s) return s;
  if (std::string_view(bytes).substr(kMagicAt, kFileMagic.size()) != kFileMagic) {
    return corrupt(path, 0, "not a snapshot file (bad magic)");
  }
  const uint32_t version = load_u32(bytes.data() + kVersionAt);
  if (version != kFormatVersion) {
    return corrupt(path, 0,
                   "unsupported snapshot format version " + std::to_string(version) +
                       " (this build reads " + std::to_string(kFormatVersion) + ")");
  }
  const uint32_t header_bytes = load_u32(bytes.data() + kHeaderBytesAt);
  if (header_bytes > snapshot_header_bytes_max) {
    return corrupt(path, 0,
                   "header length " + std::to_string(header_bytes) + " exceeds the maximum " +
                       std::to_string(snapshot_header_bytes_max));
  }
  const uint64_t header_end = kFileHeaderFixedBytes + uint64_t{header_bytes} + kChecksumBytes;
  if (header_end > *size) {
    return corrupt(path, 0,
                   "the header of " + std::to_string(header_end) +
                       " bytes runs past the end of the file at offset " + std::to_string(*size) +
                       " (truncated)");
  }
  if (Status s = read(header_end); !s) return s;
  const std::string_view covered = std::string_view(bytes).substr(0, header_end - kChecksumBytes);
  const uint64_t checksum = load_u64(bytes.data() + covered.size());
  if (checksum != header_checksum(covered)) {
    return corrupt(path, 0, "header checksum mismatch");
  }
  r->number_ = load_u64(bytes.data() + kNumberAt);
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string::npos
                                    ? std::string_view(path)
                                    : std::string_view(path).substr(slash + 1);
  if (auto named = parse_snapshot_file_name(name); named && *named != r->number_) {
    return corrupt(path, 0,
                   "the file is named for snapshot " + std::to_string(*named) +
                       " but holds snapshot " + std::to_string(r->number_));
  }
  r->header_ = std::string(covered.substr(kFileHeaderFixedBytes));
  r->header_checksum_ = checksum;
  r->chunks_offset_ = header_end;
  r->scanner_ = std::make_unique<Scanner>(*r->file_, r->path_, r->size_, r->chunks_offset_,
                                          r->header_checksum_);
  return r;
}

Status SnapshotFileReader::verify() {
  Scanner scanner(*file_, path_, size_, chunks_offset_, header_checksum_);
  while (true) {
    auto chunk = scanner.next();
    if (!chunk) return chunk.status();
    if (!*chunk) return Status::ok();
  }
}

Result<std::optional<std::pair<uint8_t, std::string_view>>> SnapshotFileReader::next() {
  return scanner_->next();
}

}  // namespace maroon
