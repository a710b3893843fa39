#include "storage/superblock.h"

#include <cstring>

#include "common/hash.h"
#include "storage/wal_format.h"

namespace maroon {
namespace {

constexpr std::string_view kMagic = "MAROONSB";
constexpr uint32_t kVersion = 1;
constexpr size_t kSlots = 2;
constexpr uint64_t kFileBytes = kSlots * Superblock::kSlotBytes;

// Slot field offsets; the checksum covers [kChecksumCoversFrom, header + payload).
constexpr size_t kMagicAt = 0;
constexpr size_t kChecksumAt = 8;
constexpr size_t kChecksumCoversFrom = 12;
constexpr size_t kVersionAt = 12;
constexpr size_t kSequenceAt = 16;
constexpr size_t kPayloadBytesAt = 24;
constexpr size_t kReservedAt = 28;
static_assert(kReservedAt + 4 == Superblock::kHeaderBytes);
static_assert(Superblock::kSlotBytes % wal::kBlockBytes == 0);

// The copy with sequence n lives in slot n % 2: a write always goes to the
// slot not holding the newest copy.
uint64_t slot_offset(uint64_t sequence) { return (sequence % kSlots) * Superblock::kSlotBytes; }

std::string encode_slot(uint64_t sequence, std::string_view payload) {
  MAROON_ASSERT(payload.size() <= Superblock::payload_bytes_max);
  std::string slot(Superblock::kSlotBytes, '\0');
  std::memcpy(slot.data() + kMagicAt, kMagic.data(), kMagic.size());
  wal::store_u32(slot.data() + kVersionAt, kVersion);
  wal::store_u64(slot.data() + kSequenceAt, sequence);
  wal::store_u32(slot.data() + kPayloadBytesAt, static_cast<uint32_t>(payload.size()));
  std::memcpy(slot.data() + Superblock::kHeaderBytes, payload.data(), payload.size());
  const std::string_view covered = std::string_view(slot).substr(
      kChecksumCoversFrom, Superblock::kHeaderBytes - kChecksumCoversFrom + payload.size());
  wal::store_u32(slot.data() + kChecksumAt, checksum32(covered));
  return slot;
}

struct Copy {
  uint64_t sequence = 0;
  std::string_view payload;
};

// A copy that verifies, wherever it lies (the caller checks the slot).
std::optional<Copy> decode_slot(std::string_view slot) {
  if (slot.size() < Superblock::kSlotBytes) return std::nullopt;
  if (slot.substr(kMagicAt, kMagic.size()) != kMagic) return std::nullopt;
  const uint32_t payload_bytes = wal::load_u32(slot.data() + kPayloadBytesAt);
  if (payload_bytes > Superblock::payload_bytes_max) return std::nullopt;
  const std::string_view covered = slot.substr(
      kChecksumCoversFrom, Superblock::kHeaderBytes - kChecksumCoversFrom + payload_bytes);
  if (wal::load_u32(slot.data() + kChecksumAt) != checksum32(covered)) return std::nullopt;
  if (wal::load_u32(slot.data() + kVersionAt) != kVersion) return std::nullopt;
  if (wal::load_u32(slot.data() + kReservedAt) != 0) return std::nullopt;
  Copy copy;
  copy.sequence = wal::load_u64(slot.data() + kSequenceAt);
  copy.payload = slot.substr(Superblock::kHeaderBytes, payload_bytes);
  return copy;
}

// The file comes into existence already holding a valid copy (sequence 0, no
// payload) so that "neither copy verifies" can only mean corruption, never "a
// crash during the first write".
Status create_file(Env& env, const std::string& path) {
  const std::string temp_path = path + std::string(wal::kTempSuffix);
  if (env.exists(temp_path)) {
    if (Status s = env.remove(temp_path); !s) return s;
  }
  auto file = env.open(temp_path, /*create=*/true);
  if (!file) return file.status();
  std::string image = encode_slot(0, "");
  image.resize(kFileBytes, '\0');
  if (Status s = (*file)->truncate(0); !s) return s;
  if (Status s = (*file)->write_at(0, image); !s) return s;
  if (Status s = (*file)->sync(); !s) return s;
  if (Status s = env.rename(temp_path, path); !s) return s;
  return env.sync_dir(parent_dir(path));
}

}  // namespace

Result<std::unique_ptr<Superblock>> Superblock::open(Env& env, std::string path) {
  if (!env.exists(path)) {
    if (Status s = create_file(env, path); !s) return s;
  }
  // Its name and its content as the disk holds them, not as a killed
  // process left them in the page cache (see File::sync_and_drop_cache).
  if (Status s = env.sync_dir(parent_dir(path)); !s) return s;
  auto file = env.open(path, /*create=*/false);
  if (!file) return file.status();
  if (Status s = (*file)->sync_and_drop_cache(); !s) return s;

  // Each slot is read on its own: a sector of one that cannot be read (a
  // write torn by a power loss may leave one so) makes that copy invalid,
  // as a torn or corrupt copy is, and the other copy is used.
  std::string images[kSlots];
  Status read[kSlots];
  std::optional<Copy> best;
  std::optional<Copy> misplaced;
  size_t misplaced_slot = 0;
  for (size_t i = 0; i < kSlots; i++) {
    read[i] = (*file)->read_at(i * kSlotBytes, kSlotBytes, images[i]);
    if (!read[i]) continue;
    const std::optional<Copy> copy = decode_slot(images[i]);
    if (!copy) continue;
    if (copy->sequence % kSlots != i) {
      misplaced = copy;
      misplaced_slot = i;
    } else if (!best || copy->sequence > best->sequence) {
      best = copy;
    }
  }
  // A newer copy in the wrong slot can only come from a misdirected write,
  // which destroyed the copy that slot held, and the copy where it belongs
  // is older still: falling back would silently undo two writes.
  if (misplaced && (!best || misplaced->sequence > best->sequence)) {
    return corruption(path + ": slot " + std::to_string(misplaced_slot) + " holds copy " +
                      std::to_string(misplaced->sequence) + ", which belongs in slot " +
                      std::to_string(misplaced->sequence % kSlots) +
                      " (a misdirected write); refusing to fall back to an older copy");
  }
  if (!best) {
    for (const Status& s : read) {
      if (!s) return Status(s.code(), path + ": neither superblock copy is readable: " + s.message());
    }
    return corruption(path + ": neither superblock copy is valid");
  }

  std::unique_ptr<Superblock> sb(new Superblock(std::move(*file), std::move(path)));
  sb->sequence_ = best->sequence;
  if (best->sequence > 0) sb->current_ = std::string(best->payload);
  return sb;
}

Status Superblock::write(std::string_view payload) {
  if (!failure_.is_ok()) return failure_;
  if (payload.size() > payload_bytes_max) {
    return too_large("superblock payload of " + std::to_string(payload.size()) + " bytes exceeds " +
                     std::to_string(payload_bytes_max));
  }
  const uint64_t sequence = sequence_ + 1;
  const std::string slot = encode_slot(sequence, payload);
  Status s = file_->write_at(slot_offset(sequence), slot);
  if (s) s = file_->sync();
  if (!s) {
    failure_ = s;
    return s;
  }
  sequence_ = sequence;
  current_ = std::string(payload);
  return Status::ok();
}

}  // namespace maroon
