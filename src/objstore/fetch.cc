#include "objstore/fetch.h"

#include <fmt/format.h>

#include "storage/env.h"
#include "storage/snapshot_file.h"

namespace maroon::objstore {

Result<StoredSnapshot> choose_snapshot(ObjectStore& store, const SnapshotChoice& choice) {
  auto all = list_snapshots(store, choice.node_id);
  if (!all) return all.status();
  const std::string whose =
      choice.node_id ? fmt::format("of node {}", *choice.node_id) : std::string("of any node");
  for (auto it = all->rbegin(); it != all->rend(); ++it) {
    if (!choice.epoch || it->epoch == *choice.epoch) return *it;
  }
  if (all->empty()) {
    return Status(Code::kNotFound,
                  fmt::format("{} holds no snapshot {}", store.describe(), whose));
  }
  return Status(Code::kNotFound,
                fmt::format("{} holds no snapshot {} at epoch {} (newest: epoch {})",
                            store.describe(), whose, *choice.epoch, all->back().epoch));
}

Status fetch_snapshot(ObjectStore& store, const StoredSnapshot& s, const std::string& path,
                      const ProgressFn& progress) {
  if (Status st = store.get_file(s.key, path, s.bytes, progress); !st) return st;
  PosixEnv env;
  auto reader = SnapshotFileReader::open(env, path);
  Status ok = reader ? (*reader)->verify() : reader.status();
  if (ok && (*reader)->number() != s.epoch) {
    ok = corruption(fmt::format("the file is of epoch {}", (*reader)->number()));
  }
  if (!ok) {
    (void)env.remove(path);
    return corruption(fmt::format("{} in {} is damaged: {}", s.key, store.describe(),
                                  ok.message()));
  }
  return Status::ok();
}

}  // namespace maroon::objstore
