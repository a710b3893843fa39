// NodeHost: the one place where a node core meets storage and the network
// (docs/architecture.md, "One host"). The real driver (server/driver.cc),
// the cluster simulator (sim/cluster_sim.cc), the node cluster tests and the
// benches all run their nodes through it, so what the simulator proves is a
// property of the code the node process runs.
//
// It owns, for one node:
//   - replay on restart, through DataDir: the superblock's state first, then
//     every WAL record in order, then finish_replay;
//   - routing the node's output: records into the durability order,
//     messages to the sink at once or once their records are durable;
//   - group commit: take_write() gives the caller everything emitted since
//     the previous write (the node first gets its on_flush() chance to add
//     an epoch ordering the txs of this very write); written() reports it
//     durable, releases the messages it held, lets the caller start the next
//     write, and only then tells the node (so executing this write's txs
//     overlaps the next fdatasync).
//
// It does no I/O itself: the caller writes the steps with DataDir::write (on
// a thread in the node process, inline on FaultEnv in the simulator).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>
#include <string>
#include <variant>

#include "host/durability_order.h"
#include "host/transfer_status.h"
#include "node/node.h"
#include "storage/data_dir.h"

namespace maroon::host {

// Where a node's messages go. The host calls it in the order the node
// emitted them (after-persist ones when their records are durable).
class NodeSink {
 public:
  virtual ~NodeSink() = default;
  virtual void to_peer(PeerEnvelope e) = 0;
  virtual void to_gateway(GatewayEnvelope e) = 0;
};

struct ReplayCounts {
  uint64_t records = 0;
  uint64_t epochs = 0;  // VR log records
  uint64_t txs = 0;
  // The snapshot restored before the log, if any: its file and the epoch
  // it was taken at.
  std::string snapshot;
  uint64_t snapshot_epoch = 0;
  uint64_t snapshot_hash = 0;  // the apps' state hash at that epoch
};

// When and where a node takes snapshots (docs/snapshots.md).
struct SnapshotSettings {
  // The directory (DATA-DIR/snapshots); empty: no snapshots, the log is
  // never compacted.
  std::string dir;
  // A snapshot is due once this many bytes of log records were written
  // since the point of the last one, and at least as many as that snapshot
  // holds (so a large state is not rewritten for a little log). 0: never
  // by size.
  uint64_t log_bytes = 32 * 1024 * 1024;
  // ... or once this many epochs were applied since the last one. 0: never.
  uint64_t epochs = 0;
  // The newest `kept` snapshots are kept, and the log back to the point of
  // the oldest of them: a damaged newest snapshot falls back to the one
  // before. At least 1.
  size_t kept = 2;
  // App state written per snapshot_step() call: a step's share of the
  // loop's time.
  size_t step_bytes = 64 * 1024;
  // The rate the file is written at, at most (MiB/s; 0: unbounded): a
  // snapshot shares the disk with the WAL, whose fdatasyncs every commit
  // waits for.
  uint64_t write_mib_per_s = 64;

  // Transfer (cluster nodes): a node that lags beyond what its peers keep
  // fetches a peer's newest snapshot in chunks of `transfer_chunk_bytes`,
  // `transfer_window` of them in flight; a pull unanswered for
  // `transfer_retry_ms` is sent again, and a peer that gives nothing for
  // four times that is left for the next. A node serves its snapshots to
  // peers at `send_mib_per_s` at most, so it stays responsive meanwhile.
  uint64_t send_mib_per_s = 64;
  uint32_t transfer_chunk_bytes = 256 * 1024;
  size_t transfer_window = 4;
  uint64_t transfer_retry_ms = 1000;
  // Recorded in every snapshot's header; a bootstrap snapshot of another
  // cluster is refused. 0: a single node.
  uint64_t cluster_id = 0;
};

// A published snapshot this host knows of.
struct SnapshotInfo {
  uint64_t epoch = 0;
  uint64_t lsn = 0;  // the log is covered through this LSN
  uint64_t bytes = 0;
  std::string path;
};

class NodeHost {
 public:
  NodeHost(Node& node, NodeSink& sink, size_t batch_bytes_max = limits::wal_batch_bytes_max);
  ~NodeHost();
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // Opens the data directory and replays it into the node, then finishes
  // the replay; drain() then routes what finishing said. `after_record`, if set, runs after each replayed record
  // (progress output, checkers).
  Result<std::unique_ptr<DataDir>> open(Env& env, const DataDirOptions& options,
                                        ReplayCounts& counts,
                                        const std::function<void()>& after_record = {});

  // Routes everything the node has to say; returns whether there was
  // anything. Call after every input to the node.
  bool drain();

  // Group commit. Gives the node its on_flush() chance, then returns
  // everything emitted since the last write, or nothing if there is nothing
  // or a write is in flight.
  std::optional<PendingWrite> take_write();
  // The write taken last is durable. start_next runs after the held messages
  // are released and before the node hears of it (see the header).
  void written(uint64_t last_seq, const std::function<void()>& start_next = {});
  // The write taken last failed: nothing more is ever written.
  void write_failed();

  // --- Snapshots (docs/snapshots.md; node_host_snapshot.cc) ---
  // Before open(): restart from the newest valid snapshot in settings.dir,
  // and take snapshots as the settings say.
  void set_snapshots(Env& env, SnapshotSettings settings);
  bool snapshots_enabled() const { return snapshot_env_ != nullptr; }
  // A snapshot should begin now: the settings say so, or one was asked for.
  bool snapshot_due() const;
  void request_snapshot() { snapshot_requested_ = true; }
  bool snapshot_in_progress() const { return taking_ != nullptr; }
  // Captures the node as the records routed so far leave it, and starts
  // the file. Between inputs, not while one is in progress.
  [[nodiscard]] Status begin_snapshot();
  // The file is written by jobs that run off the loop thread (file writes
  // may block on the page cache's writeback; the loop must not), one at a
  // time, in the order handed out. Each is reported with
  // snapshot_job_done(job.snapshot, job.publishes, result).
  struct SnapshotJob {
    std::function<Status()> run;
    uint64_t snapshot = 0;   // which snapshot (a counter) it belongs to
    bool publishes = false;  // the last one: trailer, fsync, rename, directory fsync
    size_t bytes = 0;        // it writes (for a rate bound)
  };
  // Works on the snapshot in progress: produces up to step_bytes of app
  // state per call, while no more than snapshot_bytes_in_flight_max of it
  // waits to be written (`more`: call again soon; otherwise call again when
  // a job is done, or after a write). The publishing job comes once
  // everything is written and the log is durable through the snapshot's
  // point.
  struct SnapshotStep {
    bool more = false;
    std::vector<SnapshotJob> jobs;
  };
  static constexpr size_t kSnapshotBytesInFlightMax = 8 * 1024 * 1024;
  SnapshotStep snapshot_step();
  // A job finished. After the publishing one succeeded the snapshot exists,
  // and the log before the oldest snapshot kept is compacted in the next
  // write. A failed job abandons the snapshot (its temp file is removed by
  // a job handed out next).
  void snapshot_job_done(uint64_t snapshot, bool publishes, const Status& status);
  const std::vector<SnapshotInfo>& snapshots() const { return published_; }
  uint64_t snapshots_taken() const { return snapshots_taken_; }
  const Status& snapshot_error() const { return snapshot_error_; }
  // `after_record` is also called once right after a snapshot is restored
  // (ReplayCounts says which). Things the last open() found and passed
  // over (damaged snapshots):
  const std::vector<std::string>& warnings() const { return warnings_; }

  // --- Starting from a stored snapshot (docs/backups.md) ---
  // A new data directory whose snapshots directory holds exactly the
  // snapshot of `epoch` and a marker naming it (written here, last) starts
  // from it: open() writes the new identity, then restores it as its own.
  // For `maroon restore`: the snapshot must be of this node (its id).
  static Status mark_for_restore(Env& env, const std::string& snapshots_dir, uint64_t epoch);
  static constexpr std::string_view kRestoreMarker = "RESTORE";
  // A cluster node: a peer's (or its own older) snapshot fetched from an
  // object store before the start, at snapshots_dir/kBootstrapName. When
  // the node needs a snapshot it installs this one first, as if a peer had
  // sent it, before asking peers; the file is deleted once installed,
  // refused, or superseded by a snapshot of the node's own.
  static constexpr std::string_view kBootstrapName = "bootstrap.msnap";
  // An error if the file is no snapshot this build reads (it is then not
  // used, and deleted).
  Status set_bootstrap(std::string path);
  const std::string& bootstrap() const { return bootstrap_path_; }

  // --- Snapshot transfer (docs/snapshots.md, "Transfer";
  // node_host_transfer.cc). With snapshots on, every message from a peer
  // comes here: the transfer's are the host's, the others go to the node.
  void on_peer(NodeId from, PeerMessage msg);
  // Ticks the node, then the transfer (asks, pulls again, serves queued
  // pulls as the rate bound allows).
  void tick(uint64_t now_ms);
  TransferStatus transfer_status() const;

  // The data directory's log had lost records (DataDir::log_lost) and the
  // sequencer has not yet recovered them from peers.
  bool log_lost() const { return log_lost_; }
  bool writing() const { return order_.writing(); }
  uint64_t durable_seq() const { return order_.durable_seq(); }
  size_t pending_bytes() const { return order_.pending_bytes(); }
  size_t held_messages() const { return order_.held(); }

 private:
  using HeldMessage = std::variant<PeerEnvelope, GatewayEnvelope>;
  void route(Output out);
  void send(HeldMessage m);
  // Restores the newest valid snapshot into the node; the LSN it covers.
  // `after_restore` runs once the node state and apps are restored, at the
  // snapshot's epoch, before the sequencer's records replay further epochs.
  Result<SnapshotCover> load_snapshot(bool fresh_directory, ReplayCounts& counts,
                                      const std::function<void()>& after_restore);
  Status restore_from(const std::string& path, uint64_t& lsn, ReplayCounts& counts,
                      const std::function<void()>& after_restore);
  void fail_snapshot(Status s);

  struct Taking;
  struct Fetch;
  void fetch_work();
  void fetch_ask();
  void fetch_fill();
  void fetch_restart(std::string why, bool keep_file);
  void fetch_complete();
  Status install(const std::string& path);
  // Deletes the bootstrap file: installed and made durable, refused, or not
  // needed (the node published a snapshot of its own as new).
  void drop_bootstrap();
  // Closes served files no pull asked for lately (a deleted one's space is
  // freed then); keeps `keep`.
  void close_idle_served_files(uint64_t keep = UINT64_MAX);
  void on_snapshot_wanted(NodeId from, const SnapshotWanted& m);
  void on_snapshot_offer(NodeId from, const SnapshotOffer& m);
  void on_snapshot_pull(NodeId from, const SnapshotPull& m);
  void on_snapshot_chunk(NodeId from, SnapshotChunk m);
  void serve_pulls();

  Node& node_;
  NodeSink& sink_;
  DurabilityOrder<HeldMessage> order_;
  bool failed_ = false;
  bool log_lost_ = false;

  // Snapshots.
  Env* snapshot_env_ = nullptr;
  SnapshotSettings snapshot_settings_;
  uint64_t wal_lsn_at_open_ = 0;  // the log's last LSN when it was opened
  std::unique_ptr<Taking> taking_;
  uint64_t snapshot_counter_ = 0;
  std::vector<SnapshotJob> jobs_out_;  // handed out by the next snapshot_step
  bool snapshot_requested_ = false;
  std::vector<SnapshotInfo> published_;  // oldest first
  std::optional<SnapshotInfo> restored_;  // by the last open()
  uint64_t record_bytes_at_snapshot_ = 0;  // order_.record_bytes_added() at the last cut
  uint64_t epoch_at_snapshot_ = 0;
  uint64_t snapshots_taken_ = 0;
  // A peer's snapshot was installed and the node's own snapshot of it is not
  // published yet (the WAL holds a barrier meanwhile: node_host_transfer.cc).
  bool install_base_pending_ = false;
  // The newest sequencer state routed or replayed (the superblock's), for
  // snapshots (kSequencerState); whether open() found one in the superblock.
  std::string sequencer_state_;
  bool superblock_state_seen_ = false;
  std::string bootstrap_path_;  // empty: none (set_bootstrap)
  bool bootstrap_tried_ = false;
  uint64_t bootstrap_epoch_ = 0;  // of the bootstrap file
  uint64_t bootstrap_installed_epoch_ = 0;
  Status snapshot_error_;
  std::vector<std::string> warnings_;

  // Transfer.
  uint64_t now_ms_ = 0;
  std::unique_ptr<Fetch> fetch_;
  size_t fetch_rotation_ = 0;
  struct Serving {
    NodeId to;
    SnapshotPull pull;
  };
  static constexpr size_t kServeQueueMax = 16;
  std::deque<Serving> serving_;
  // The snapshot files being served, kept open: a newer snapshot's
  // compaction may delete one mid-transfer, and the open file goes on
  // serving it (its space is freed once it is closed). At most
  // kServedFilesMax, each closed once no pull asked for it for
  // kServedIdleRetries pull retry intervals.
  struct ServedFile {
    uint64_t epoch = 0;
    uint64_t bytes = 0;
    std::string path;
    std::unique_ptr<File> file;
    uint64_t last_ms = 0;
  };
  static constexpr size_t kServedFilesMax = 2;
  static constexpr uint64_t kServedIdleRetries = 10;
  std::vector<ServedFile> served_files_;
  // The open file of snapshot `epoch` (opened and kept now if it is
  // published), or null: gone. An error if it is published but does not
  // open.
  Result<ServedFile*> served_file(uint64_t epoch);
  uint64_t serve_tokens_ = 0;
  uint64_t serve_tokens_ms_ = 0;
  // Over every transfer, and the last problem (transfer_status()).
  uint64_t transfer_received_ = 0;
  uint64_t transfer_sent_ = 0;
  std::string transfer_error_;
};

}  // namespace maroon::host
