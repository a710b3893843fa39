#include "storage/wal.h"

#include <algorithm>
#include <vector>

#include "storage/wal_format.h"

namespace maroon {

using wal::kRecordHeaderBytes;
using wal::kBlockBytes;
using wal::kSegmentHeaderBytes;

namespace {

// Recovery reads segments through a window of at least this many bytes: large
// reads keep replay bound by hashing, and memory stays bounded whatever the
// segment size (a window grows only to hold one whole batch).
constexpr uint64_t kReadChunkBytes = 4 * 1024 * 1024;

class FileSource final : public wal::SegmentSource {
 public:
  FileSource(File& file, const std::string& path, uint64_t size, std::string& buffer)
      : file_(file), path_(path), size_(size), buffer_(buffer) {
    buffer_.clear();
  }

  uint64_t size() const override { return size_; }

  Result<std::string_view> read(uint64_t offset, uint64_t n) override {
    MAROON_ASSERT(offset <= size_ && n <= size_ - offset);
    if (offset < start_ || offset + n > start_ + buffer_.size()) {
      uint64_t want = std::min(size_ - offset, n + kReadChunkBytes);
      Status s = file_.read_at(offset, want, buffer_);
      if (!s && want > n) {
        // An unreadable sector past the bytes asked for must not fail the
        // read: the scan decides what a bad sector means where it is.
        want = n;
        s = file_.read_at(offset, want, buffer_);
      }
      if (s && buffer_.size() != want) s = io_error("short read");
      if (!s) {
        buffer_.clear();
        start_ = 0;
        return io_error(path_ + " offset " + std::to_string(offset) + ": cannot read " +
                        std::to_string(n) + " bytes (" + s.message() + ")");
      }
      start_ = offset;
    }
    return std::string_view(buffer_).substr(offset - start_, n);
  }

 private:
  File& file_;
  const std::string& path_;
  const uint64_t size_;
  std::string& buffer_;
  uint64_t start_ = 0;
};

}  // namespace

void WalBatch::add(uint8_t type, std::string_view payload) {
  MAROON_ASSERT(!sealed_);
  MAROON_ASSERT(payload.size() <= limits::wal_record_bytes_max);
  const size_t start = buf_.size();
  const size_t n = wal::record_bytes(payload.size());
  buf_.append(kRecordHeaderBytes, '\0');
  buf_.append(payload);
  buf_.append(start + n - buf_.size(), '\0');
  char* h = buf_.data() + start;
  wal::store_u32(h + wal::kPayloadBytesAt, static_cast<uint32_t>(payload.size()));
  h[wal::kTypeAt] = static_cast<char>(type);
  records_++;
}

void WalBatch::for_each_record(
    const std::function<void(uint8_t type, std::string_view payload)>& fn) const {
  MAROON_ASSERT(!sealed_);
  size_t at = 0;
  for (size_t i = 0; i < records_; i++) {
    const char* h = buf_.data() + at;
    const uint32_t payload_bytes = wal::load_u32(h + wal::kPayloadBytesAt);
    const size_t n = wal::record_bytes(payload_bytes);
    MAROON_ASSERT(at + n <= buf_.size());
    fn(static_cast<uint8_t>(h[wal::kTypeAt]),
       std::string_view(h + kRecordHeaderBytes, payload_bytes));
    at += n;
  }
  MAROON_ASSERT(at == buf_.size());
}

void WalBatch::clear() {
  buf_.clear();
  records_ = 0;
  sealed_ = false;
}

void WalBatch::seal(Lsn first_lsn, uint64_t checksum_seed) {
  MAROON_ASSERT(!sealed_ && records_ > 0);
  uint64_t lsn = first_lsn.value();
  size_t at = 0;
  for (size_t i = 0; i < records_; i++) {
    char* h = buf_.data() + at;
    const size_t n = wal::record_bytes(wal::load_u32(h + wal::kPayloadBytesAt));
    MAROON_ASSERT(at + n <= buf_.size());
    uint8_t flags = 0;
    if (i == 0) flags |= wal::kFlagBatchFirst;
    if (i + 1 == records_) flags |= wal::kFlagBatchLast;
    wal::store_u64(h + wal::kLsnAt, lsn++);
    h[wal::kFlagsAt] = static_cast<char>(flags);
    wal::store_u32(h + wal::kChecksumAt,
                   wal::record_checksum(std::string_view(h, n), checksum_seed));
    at += n;
  }
  MAROON_ASSERT(at == buf_.size());
  buf_.resize(wal::align_up(buf_.size(), kBlockBytes), '\0');
  sealed_ = true;
}

Wal::Wal(Env& env, std::string dir, WalOptions options)
    : env_(env), dir_(std::move(dir)), options_(options) {}

Wal::~Wal() = default;

std::string Wal::segment_path(uint64_t segment_index) const {
  return join_path(dir_, wal::segment_file_name(segment_index));
}

Result<std::unique_ptr<Wal>> Wal::open(Env& env, std::string dir, WalOptions options,
                                       const ReplayFn& replay) {
  MAROON_ASSERT(options.segment_bytes % kBlockBytes == 0);
  MAROON_ASSERT(options.segment_bytes >= wal::kSegmentBytesMin);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::unique_ptr<Wal> w(new Wal(env, std::move(dir), options));
  if (Status s = w->recover(replay); !s) return s;
  return w;
}

Status Wal::recover(const ReplayFn& replay) {
  if (Status s = env_.create_dirs(dir_); !s) return s;
  // Recovery acts only on what the disk holds: a segment created or renamed
  // by a killed process is made durable before anything from it is used.
  if (Status s = env_.sync_dir(dir_); !s) return s;
  auto names = env_.list_dir(dir_);
  if (!names) return names.status();

  std::vector<uint64_t> indexes;
  for (const std::string& name : *names) {
    // A segment still under its temp name was never published: the crash hit
    // roll() before the rename was durable, and no record went into it.
    if (name.ends_with(wal::kTempSuffix) &&
        wal::parse_segment_file_name(name.substr(0, name.size() - wal::kTempSuffix.size()))) {
      if (Status s = env_.remove(join_path(dir_, name)); !s) return s;
      continue;
    }
    if (auto index = wal::parse_segment_file_name(name)) {
      if (*index < options_.first_segment) {
        // Compacted away; its removal was interrupted.
        if (Status s = env_.remove(join_path(dir_, name)); !s) return s;
        continue;
      }
      indexes.push_back(*index);
    }
  }
  std::sort(indexes.begin(), indexes.end());
  if (indexes.empty()) {
    if (options_.clean_last_lsn != 0) {
      const std::string what = dir_ + ": no segment, but the log ended at lsn " +
                               std::to_string(options_.clean_last_lsn) +
                               " at the last clean shutdown";
      if (!options_.recover_lost_records) return corruption(what);
      lost_ = what;
    }
    MAROON_ASSERT(options_.empty_log_last_lsn < wal::kLsnMax);
    last_lsn_.store(options_.empty_log_last_lsn, std::memory_order_release);
    // The first segment is never below the log's recorded start: a segment
    // below it would be taken for a compacted one and removed.
    segment_index_ = std::max<uint64_t>(segment_index_, options_.first_segment - 1);
    return roll();
  }

  // Each segment's first LSN, from its header, to skip the ones a snapshot
  // covers whole (the next one starts at or before skip_through_lsn + 1).
  // A header that does not read is left to the scan below to report.
  std::vector<uint64_t> first_lsns(indexes.size(), 0);
  if (options_.skip_through_lsn != 0) {
    for (size_t i = 0; i < indexes.size(); i++) {
      auto f = env_.open(segment_path(indexes[i]), /*create=*/false);
      if (!f) continue;
      std::string header;
      if (!(*f)->read_at(0, kSegmentHeaderBytes, header).is_ok()) continue;
      if (auto h = wal::decode_segment_header(header); h && h->segment_index == indexes[i]) {
        first_lsns[i] = h->first_lsn.value();
      }
    }
  }
  Lsn next_lsn;
  std::string buffer;
  // Damage in an earlier segment, refused unless the next segment's first
  // LSN shows that it lies after the segment's last record (its unused
  // tail, which no record ever used).
  std::optional<Status> earlier_damage;
  for (size_t i = 0; i < indexes.size(); i++) {
    const uint64_t index = indexes[i];
    if (i > 0 && index != indexes[i - 1] + 1) {
      return corruption(dir_ + ": segment " + wal::segment_file_name(indexes[i - 1] + 1) +
                        " is missing");
    }
    const std::string path = segment_path(index);
    auto file = env_.open(path, /*create=*/false);
    if (!file) return file.status();
    auto size = (*file)->size();
    if (!size) return size.status();
    if (*size < kSegmentHeaderBytes) {
      return corruption(path + " offset 0: segment shorter than its header");
    }
    if (i + 1 == indexes.size()) {
      // The last segment is the only one a killed process may have left
      // unsynced pages in (a segment is complete and synced before the next
      // is created). Sync them, so every record replayed below is durable
      // (replaying it acks it to peers and clients), and drop the cache, so
      // pages a failed fsync marked clean without writing are read as what
      // the disk holds (docs/formats/wal.md, "Recovery").
      if (Status s = (*file)->sync_and_drop_cache(); !s) return s;
    }
    FileSource source(**file, path, *size, buffer);
    auto header_bytes = source.read(0, kSegmentHeaderBytes);
    if (!header_bytes) return header_bytes.status();
    auto header = wal::decode_segment_header(*header_bytes);
    if (!header) return corruption(path + " offset 0: " + header.status().message());
    if (header->segment_index != index) {
      return corruption(path + " offset 0: header names segment " +
                        std::to_string(header->segment_index));
    }
    if (header->first_lsn.value() == 0 || header->first_lsn.value() >= wal::kLsnMax) {
      return corruption(path + " offset 0: segment starts at impossible lsn " +
                        std::to_string(header->first_lsn.value()));
    }
    if (i == 0) next_lsn = header->first_lsn;
    segments_[index] = header->first_lsn.value();
    if (earlier_damage) {
      if (header->first_lsn != next_lsn) return *earlier_damage;
      earlier_damage.reset();
    }
    if (header->first_lsn != next_lsn) {
      return corruption(path + " offset 0: segment starts at lsn " +
                        std::to_string(header->first_lsn.value()) + ", expected " +
                        std::to_string(next_lsn.value()));
    }

    const bool last = i + 1 == indexes.size();
    if (!last && !earlier_damage && first_lsns[i + 1] != 0 &&
        first_lsns[i + 1] <= options_.skip_through_lsn + 1 && first_lsns[i + 1] > next_lsn.value()) {
      next_lsn = Lsn(first_lsns[i + 1]);  // covered whole: not read
      continue;
    }
    auto scan = wal::scan_segment(source, wal::checksum_seed(*header), next_lsn, last, replay);
    if (!scan) return scan.status();
    next_lsn = scan->next_lsn;
    if (scan->dirty_end > scan->end_offset) {
      // A read error's message already names the file and offset.
      const std::string what =
          scan->unreadable
              ? scan->damage
              : path + " offset " + std::to_string(scan->damage_offset) + ": " + scan->damage;
      // Unreadable bytes are unknown, not wrong: an I/O error, not corruption.
      auto refuse = [&](const std::string& why) {
        return scan->unreadable ? io_error(what + why) : corruption(what + why);
      };
      // Every segment but the last was complete and synced before the next
      // one was created, so damage there cannot be a torn write: refused,
      // unless it lies in the segment's unused tail (decided above, by the
      // next segment's first LSN).
      if (!last) {
        earlier_damage = refuse(" in a segment that is not the last");
        continue;
      }
      if (scan->later_batch_offset) {
        return refuse(", followed by a valid batch at offset " +
                      std::to_string(*scan->later_batch_offset));
      }
      if (options_.clean_last_lsn != 0) {
        // Nothing was being written at a clean shutdown: this is damage to
        // data that was acknowledged, not a torn write.
        const std::string why = " after a clean shutdown (the log ended at lsn " +
                                std::to_string(options_.clean_last_lsn) + ")";
        if (!options_.recover_lost_records) return refuse(why);
        lost_ = what + why;  // cut below, and recovered from peers
      }
      // A torn tail: the batch being written when the process died, which
      // may have left sectors unreadable. Zero it rather than truncate, so
      // the segment stays preallocated and a later scan sees clean zeros,
      // never stale records; unreadable blocks are rewritten whole.
      const std::string zeros(scan->dirty_end - scan->end_offset, '\0');
      if (Status s = (*file)->write_at(scan->end_offset, zeros); !s) return s;
      if (Status s = (*file)->sync(); !s) return s;
      cut_ = WalCut{wal::segment_file_name(index), scan->end_offset, zeros.size(), scan->damage};
    }
    if (last) {
      file_ = std::move(*file);
      segment_index_ = index;
      checksum_seed_ = wal::checksum_seed(*header);
      write_offset_ = scan->end_offset;
      segment_capacity_bytes_ = *size;
    }
  }
  MAROON_ASSERT(next_lsn.value() >= 1);
  last_lsn_.store(next_lsn.value() - 1, std::memory_order_release);
  if (options_.clean_last_lsn != 0 && options_.clean_last_lsn != next_lsn.value() - 1 &&
      !lost_) {
    const std::string what = dir_ + ": the log ends at lsn " +
                             std::to_string(next_lsn.value() - 1) + ", but it ended at lsn " +
                             std::to_string(options_.clean_last_lsn) +
                             " at the last clean shutdown: records are missing";
    if (!options_.recover_lost_records) return corruption(what);
    lost_ = what;
  }
  return Status::ok();
}

Status Wal::roll() {
  const uint64_t index = segment_index_ + 1;
  const std::string path = segment_path(index);
  const std::string temp_path = path + std::string(wal::kTempSuffix);
  if (env_.exists(temp_path)) {
    if (Status s = env_.remove(temp_path); !s) return s;
  }
  auto file = env_.open(temp_path, /*create=*/true);
  if (!file) return file.status();
  if (Status s = (*file)->truncate(0); !s) return s;
  if (Status s = (*file)->allocate(options_.segment_bytes); !s) return s;
  const wal::SegmentHeader h{
      .segment_index = index, .first_lsn = last_lsn().next(), .salt = env_.random64()};
  const std::string header = wal::encode_segment_header(h);
  if (Status s = (*file)->write_at(0, header); !s) return s;
  // The header and the preallocated size are durable before the name is, so
  // a segment visible under its final name always has a valid header.
  if (Status s = (*file)->sync(); !s) return s;
  if (Status s = env_.rename(temp_path, path); !s) return s;
  if (Status s = env_.sync_dir(dir_); !s) return s;
  if (options_.on_roll) {
    if (Status s = options_.on_roll(index); !s) return s;
  }
  file_ = std::move(*file);
  segment_index_ = index;
  segments_[index] = h.first_lsn.value();
  checksum_seed_ = wal::checksum_seed(h);
  write_offset_ = kSegmentHeaderBytes;
  segment_capacity_bytes_ = options_.segment_bytes;
  return Status::ok();
}

std::vector<uint64_t> Wal::segments_through(Lsn lsn) const {
  std::vector<uint64_t> out;
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    auto next = std::next(it);
    // Segment i's records end before segment i + 1's first LSN.
    if (next == segments_.end() || next->second > lsn.value() + 1) break;
    out.push_back(it->first);
  }
  return out;
}

Status Wal::remove_segments_below(uint64_t index) {
  if (failed()) return failure_;
  MAROON_ASSERT(index <= segment_index_);
  bool removed = false;
  while (!segments_.empty() && segments_.begin()->first < index) {
    // A failure here loses nothing (the next open removes what is left),
    // so it does not fail the log.
    if (Status s = env_.remove(segment_path(segments_.begin()->first)); !s) return s;
    segments_.erase(segments_.begin());
    removed = true;
  }
  if (removed) {
    if (Status s = env_.sync_dir(dir_); !s) return s;
  }
  return Status::ok();
}

Status Wal::continue_after(Lsn lsn) {
  if (failed()) return failure_;
  MAROON_ASSERT(lsn > last_lsn() && lsn.value() < wal::kLsnMax);
  last_lsn_.store(lsn.value(), std::memory_order_release);
  if (Status s = roll(); !s) return fail(s);
  return Status::ok();
}

Status Wal::fail(Status s) {
  MAROON_ASSERT(!s.is_ok());
  failure_ = s;
  failed_.store(true, std::memory_order_release);
  return s;
}

Status Wal::write(WalBatch& batch) {
  if (failed()) return failure_;
  if (batch.empty()) return Status::ok();
  const uint64_t padded_bytes = wal::align_up(batch.bytes(), kBlockBytes);
  if (padded_bytes > options_.segment_bytes - kSegmentHeaderBytes) {
    return too_large("wal batch of " + std::to_string(batch.bytes()) +
                     " bytes does not fit in a segment of " +
                     std::to_string(options_.segment_bytes) + " bytes");
  }
  // Reachable only from a crafted segment header (see wal::kLsnMax).
  if (last_lsn().value() + batch.records() >= wal::kLsnMax) {
    return corruption("the WAL's LSN space is exhausted (a segment header claims lsn " +
                      std::to_string(last_lsn().value()) + ")");
  }
  // A batch never straddles segments, so each segment can be verified alone.
  if (write_offset_ + padded_bytes > segment_capacity_bytes_) {
    if (Status s = roll(); !s) return fail(s);
  }
  MAROON_ASSERT(write_offset_ % kBlockBytes == 0);
  MAROON_ASSERT(write_offset_ + padded_bytes <= segment_capacity_bytes_);

  const Lsn first_lsn = last_lsn().next();
  batch.seal(first_lsn, checksum_seed_);
  MAROON_ASSERT(batch.buf_.size() == padded_bytes);
  if (Status s = file_->write_at(write_offset_, batch.buf_); !s) return fail(s);
  if (Status s = file_->sync(); !s) return fail(s);
  write_offset_ += padded_bytes;
  bytes_written_.fetch_add(padded_bytes, std::memory_order_relaxed);
  syncs_.fetch_add(1, std::memory_order_relaxed);
  last_lsn_.store(first_lsn.value() + batch.records() - 1, std::memory_order_release);
  return Status::ok();
}

}  // namespace maroon
