// A node's data directory: the superblock, which names the directory (data
// format, node id, a random id made with it) and holds the sequencer's small
// durable state, and the WAL. Formats: docs/formats.md ("Data directory"),
// docs/formats/wal.md.
//
// Writes come as steps in emission order: a WAL batch, then the state emitted
// after it (if any). write() does them in that order, each durable before the
// next starts, so what survives a crash is always a prefix of what was
// emitted: a state never vouches for records not yet on disk, and a record
// emitted after a state is never durable without it.
//
// The same code runs on the real file system (the node process) and on
// FaultEnv (the simulators), which is the point of it living here and not in
// a driver.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/env.h"
#include "storage/superblock.h"
#include "storage/wal.h"

namespace maroon {

struct WriteStep {
  std::unique_ptr<WalBatch> batch = std::make_unique<WalBatch>();
  std::optional<std::string> state;  // written after the batch
  bool empty() const { return batch->empty() && !state; }
};

struct DataDirOptions {
  std::string path;
  uint64_t node_id = 0;        // the node this directory must belong to
  uint64_t fresh_data_id = 0;  // the id to give a new directory (random in the node process)
  WalOptions wal;
};

class DataDir {
 public:
  // The superblock's format byte. 1 was a build before VR.
  static constexpr uint8_t kDataFormat = 3;

  using StateFn = std::function<Status(std::string_view state)>;
  using RecordFn = std::function<Status(uint8_t type, std::string_view payload)>;

  // Opens the directory, creating it if new; hands the durable state (if any
  // was ever written) to on_state, then every WAL record in order to
  // on_record. Refuses a directory of another node or data format with a
  // message that names the directory.
  static Result<std::unique_ptr<DataDir>> open(Env& env, const DataDirOptions& options,
                                               const StateFn& on_state,
                                               const RecordFn& on_record);

  uint64_t node_id() const { return node_id_; }
  uint64_t data_id() const { return data_id_; }
  const Wal& wal() const { return *wal_; }

  // Writes the steps in order (see the header). Stops at the first error;
  // the WAL and superblock then refuse every later write (a failed fsync is
  // never retried). `steps_done`, if given, counts the steps fully durable.
  [[nodiscard]] Status write(std::vector<WriteStep>& steps, size_t* steps_done = nullptr);

 private:
  DataDir() = default;

  uint64_t node_id_ = 0;
  uint64_t data_id_ = 0;
  std::unique_ptr<Superblock> superblock_;
  std::unique_ptr<Wal> wal_;
};

}  // namespace maroon
