// Preparing a new data directory from an object store (docs/backups.md),
// for `maroon restore`, `maroon dev --bootstrap-from` and `maroon node
// --bootstrap-from`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "maroon/status.h"
#include "objstore/object_store.h"

namespace maroon::cli {

// Whether data_dir holds a node's data (a superblock or a log).
bool holds_data(const std::string& data_dir);

// Makes data_dir (holding no node data) start from the snapshot of node
// `node_id` (1: a single node's) at `epoch` (unset: its newest) in the
// store, restored as the node's own; checked first (a single node's, with
// the state a restore needs). A directory prepared already is left as it
// is. Prints progress to stderr.
Status restore_data_dir(const objstore::StoreConfig& store, const std::string& data_dir,
                        uint64_t node_id, std::optional<uint64_t> epoch);

// Fetches the newest snapshot of any node in the store into data_dir's
// snapshots directory, for a cluster node that joins (installed when it
// needs a snapshot). data_dir must hold no data; a snapshot of another
// cluster is refused.
Status fetch_bootstrap(const objstore::StoreConfig& store, const std::string& data_dir,
                       uint64_t cluster_id);

}  // namespace maroon::cli
