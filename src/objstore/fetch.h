// Fetching a snapshot from an object store to a local file, verified whole
// (every chunk's checksum and the trailer) before it is used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "objstore/object_store.h"

namespace maroon::objstore {

struct SnapshotChoice {
  std::optional<uint64_t> node_id;  // unset: any node's
  std::optional<uint64_t> epoch;    // unset: the newest
};

// The snapshot `choice` names: of that epoch, or the newest (of that node,
// or of any). kNotFound saying what the store holds if none matches.
Result<StoredSnapshot> choose_snapshot(ObjectStore& store, const SnapshotChoice& choice);

// Downloads `s` to `path` and verifies it; a damaged download is deleted
// and refused, naming the object.
Status fetch_snapshot(ObjectStore& store, const StoredSnapshot& s, const std::string& path,
                      const ProgressFn& progress = {});

}  // namespace maroon::objstore
