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

#include "maroon/status.h"
#include "storage/env.h"
#include "storage/superblock.h"
#include "storage/wal.h"

namespace maroon {

struct WriteStep {
  std::unique_ptr<WalBatch> batch = std::make_unique<WalBatch>();
  std::optional<std::string> state;  // written after the batch
  // Once this step is durable, a lost log (DataDir::log_lost) counts as
  // recovered: the sequencer has taken back from peers what it lost, in
  // this step or an earlier one.
  bool log_recovered = false;
  // After the batch and state: the log's records up to this LSN are covered
  // by a durable snapshot; the segments holding only such records are
  // deleted (the superblock first says where the log now starts). Then
  // these files (older snapshots) are removed. Failures to remove lose
  // nothing and fail nothing: the next open or compaction removes them.
  std::optional<uint64_t> compact_through_lsn;
  std::vector<std::string> remove_files;
  bool empty() const {
    return batch->empty() && !state && !log_recovered && !compact_through_lsn &&
           remove_files.empty();
  }
};

using RecordFnPtr = std::function<Status(uint8_t type, std::string_view payload)>;

// What the snapshots in a directory say about its log (DataDirOptions::
// before_log): the restored one covers it through `covered` (0: none
// restored), and some snapshot, restored or passed over, says it once
// reached `reached` (>= covered). A log ending before `reached` lost records
// it had made durable.
struct SnapshotCover {
  uint64_t covered = 0;
  uint64_t reached = 0;
  // Of a new directory only: it was prepared to start from a snapshot
  // (`maroon restore`). The identity is written first, then before_log is
  // called again (fresh_directory false) to restore it.
  bool restore_after_identity = false;
};

struct DataDirOptions {
  std::string path;
  uint64_t node_id = 0;        // the node this directory must belong to
  uint64_t fresh_data_id = 0;  // the id to give a new directory (random in the node process)
  // A cluster node: a log that lost records that were durable (its last
  // segments, or records a clean shutdown vouched for) is not refused; the
  // directory says so (log_lost) until a write step reports it recovered
  // from peers. A single node refuses it: nobody else holds the records.
  bool recover_lost_log = false;
  // A cluster node that rejoins with a new directory (its old one was lost
  // or wiped): a new directory counts as a lost log from the start, for
  // what this node acknowledged before is gone; its sequencer recovers from
  // peers before it votes. Says why (DataDir::log_lost). Unset: a new
  // directory is a new member of a new cluster.
  std::optional<std::string> fresh_log_lost;
  WalOptions wal;
  // Called after the superblock's state and before the log is replayed
  // (fresh_directory: no superblock was found, a new identity is being
  // made): restores the newest snapshot, if any, and says what it covers
  // (a new directory's may only say restore_after_identity).
  // Records up to `covered` are not replayed, and the log must reach back
  // to it: a log that starts later is refused, and one that ends before
  // `reached` lost records (refused, or in a cluster recovered from peers).
  std::function<Result<SnapshotCover>(bool fresh_directory)> before_log;
  // Records the snapshot covers (LSN up to the one before_log returned) go
  // here instead of on_record, if set.
  RecordFnPtr on_covered_record;
};

class DataDir {
 public:
  // The superblock's format byte. 1 was a build before VR, 2 one whose log
  // entries lacked their epoch and whose superblock did not say how far the
  // log reaches.
  // 3 lacks the trailing log-lost flag of 4 and is still read.
  static constexpr uint8_t kDataFormat = 4;

  using StateFn = std::function<Status(std::string_view state)>;
  using RecordFn = std::function<Status(uint8_t type, std::string_view payload)>;

  // Opens the directory, creating it if new; hands the durable state (if any
  // was ever written) to on_state, then every WAL record in order to
  // on_record. Refuses a directory of another node or data format with a
  // message that names the directory. Refuses a log shorter than the
  // superblock says it is (segments missing, or records missing after a
  // clean shutdown), damage after a clean shutdown, and a new identity over
  // an existing log (docs/formats.md, "Superblock payload").
  static Result<std::unique_ptr<DataDir>> open(Env& env, const DataDirOptions& options,
                                               const StateFn& on_state,
                                               const RecordFn& on_record);

  uint64_t node_id() const { return node_id_; }
  uint64_t data_id() const { return data_id_; }
  const Wal& wal() const { return *wal_; }
  const std::string& path() const { return path_; }
  // Set while the log lacks records it once held durably (found at this
  // start or at an earlier one, and not yet recovered): the sequencer must
  // recover from peers before it votes. Says what was lost.
  const std::optional<std::string>& log_lost() const { return log_lost_; }
  // This open made the directory (no superblock was found).
  bool created() const { return created_; }

  // After the last write of a clean stop: records the log's last LSN, so the
  // next start knows exactly where the log must end.
  [[nodiscard]] Status mark_clean_shutdown();

  // Writes the steps in order (see the header). Stops at the first error;
  // the WAL and superblock then refuse every later write (a failed fsync is
  // never retried). `steps_done`, if given, counts the steps fully durable.
  [[nodiscard]] Status write(std::vector<WriteStep>& steps, size_t* steps_done = nullptr);

 private:
  DataDir() = default;
  std::string encode_identity() const;
  Status write_identity();
  // With recover_lost, a missing log or missing last segments set
  // log_lost_ instead of refusing; missing first segments are refused.
  Status check_log_extent(Env& env, const std::string& wal_dir, bool recover_lost);

  Env* env_ = nullptr;
  std::string path_;
  uint64_t node_id_ = 0;
  uint64_t data_id_ = 0;
  // How far the log reaches, as the superblock records it: its first
  // segment, and the last segment ever created (0: none yet).
  uint64_t wal_first_segment_ = 1;
  uint64_t wal_last_segment_ = 0;
  uint64_t clean_last_lsn_ = 0;  // nonzero only between a clean stop and the next start
  std::optional<std::string> log_lost_;  // durable as a flag in the superblock
  bool created_ = false;
  std::string state_;            // the sequencer's durable state, as last written
  std::unique_ptr<Superblock> superblock_;
  std::unique_ptr<Wal> wal_;
};

}  // namespace maroon
