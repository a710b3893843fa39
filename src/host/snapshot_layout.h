// The layout of a node snapshot inside its container file (the chunk kinds
// and the header; docs/formats/snapshot.md), shared by taking and restoring
// snapshots (node_host_snapshot.cc) and installing a peer's
// (node_host_transfer.cc). Internal to the host.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/state_machine.h"
#include "common/codec.h"
#include "maroon/status.h"
#include "storage/snapshot_file.h"
#include "storage/wal_format.h"

namespace maroon::host::snapshot_layout {

// 2: with the cluster id (and kSequencerState chunks possible; a build that
// reads only format 1 refuses such a snapshot before it installs anything).
// 3: app sections name a 32-bit AppId (was one byte), and the node state
// is of format 2.
inline constexpr uint8_t kHeaderFormat = 3;

// Chunk kinds, in the order they appear in a file.
enum ChunkKind : uint8_t {
  kNodeState = 1,        // pieces of Node::encode_state, concatenated
  kAppBegin = 2,         // u32 AppId (format 3 on; u8, 1 for kv, before)
  kAppPiece = 3,         // one piece of that app's cursor
  kAppEnd = 4,           // empty
  kSequencerRecord = 5,  // u8 record type, then its payload
  // The sequencer's small durable state (the superblock's, e.g. VR's view
  // and members) at the capture, before the records. Used only by a
  // directory whose superblock holds none: one made by `maroon restore`.
  kSequencerState = 6,
};

inline constexpr size_t kStateChunkBytes = 1024 * 1024;

struct Header {
  uint64_t node_id = 0;
  uint64_t epoch = 0;
  uint64_t logical_time_ms = 0;
  uint64_t state_hash = 0;
  uint64_t lsn = 0;  // the log is covered through this LSN
  // The cluster's id (cluster.toml's cluster_id); 0: a single node
  // (`maroon dev`), or a format-1 snapshot, which did not record it.
  uint64_t cluster_id = 0;
  uint8_t format = kHeaderFormat;  // as decoded

  // Whether it records its cluster (format 2 on), and that is not `id`.
  bool of_another_cluster(uint64_t id) const { return format >= 2 && cluster_id != id; }
};

inline std::string encode_header(const Header& h) {
  std::string out;
  ByteWriter w(out);
  w.u8(kHeaderFormat);
  w.u64(h.node_id);
  w.u64(h.epoch);
  w.u64(h.logical_time_ms);
  w.u64(h.state_hash);
  w.u64(h.lsn);
  w.u64(h.cluster_id);
  return out;
}

inline std::string encode_app_begin(AppId app) {
  std::string out;
  ByteWriter w(out);
  w.u32(app.value());
  return out;
}

// The app of a kAppBegin chunk in a snapshot of header format `format`: 4
// bytes, or 1 in formats 1 and 2.
inline Result<AppId> decode_app_begin(std::string_view payload, uint8_t format) {
  ByteReader r(payload);
  if (format < 3) {
    if (payload.size() != 1) return corruption("malformed app section");
    return app_id_of_format1(static_cast<uint8_t>(payload[0]));
  }
  uint32_t app = 0;
  if (!r.u32(app) || !r.at_end()) return corruption("malformed app section");
  return AppId(app);
}

inline Result<Header> decode_header(std::string_view bytes) {
  ByteReader r(bytes);
  Header h;
  uint8_t format = 0;
  if (!r.u8(format) || format < 1 || format > kHeaderFormat) {
    return corruption(fmt::format("snapshot header format {} is not one this build reads (1 to {})",
                                  format, kHeaderFormat));
  }
  if (!r.u64(h.node_id) || !r.u64(h.epoch) || !r.u64(h.logical_time_ms) || !r.u64(h.state_hash) ||
      !r.u64(h.lsn) || (format >= 2 && !r.u64(h.cluster_id)) || !r.at_end() ||
      h.lsn >= wal::kLsnMax) {
    return corruption("malformed snapshot header");
  }
  h.format = format;
  return h;
}

// An app's pieces, read from the chunks between its kAppBegin and kAppEnd.
class ChunkPieces final : public SnapshotPieces {
 public:
  explicit ChunkPieces(SnapshotFileReader& reader) : reader_(reader) {}
  Result<std::optional<std::string_view>> next() override {
    if (ended_) return std::optional<std::string_view>();
    auto chunk = reader_.next();
    if (!chunk) return chunk.status();
    if (!*chunk) return corruption("the file ends inside an app's state");
    const auto [kind, payload] = **chunk;
    if (kind == kAppEnd) {
      ended_ = true;
      return std::optional<std::string_view>();
    }
    if (kind != kAppPiece) {
      return corruption(fmt::format("chunk of kind {} inside an app's state", kind));
    }
    return std::optional<std::string_view>(payload);
  }
  bool ended() const { return ended_; }

 private:
  SnapshotFileReader& reader_;
  bool ended_ = false;
};

}  // namespace maroon::host::snapshot_layout
