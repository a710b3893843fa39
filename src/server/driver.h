// The real driver of the single-node engine: runs the gateway, node and
// sequencer cores on one Boost.Asio event loop, and the WAL on its own thread.
//
// Group commit: records the cores emit accumulate in a pending WalBatch while
// the WAL thread writes and fdatasyncs the previous one; when that completes,
// the next batch goes at once. Under load each fdatasync covers many txs.
// Messages the cores marked "after persist" are released only when every
// record emitted before them is durable, so no path can ack before fsync.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "app/kv/kv_app.h"
#include "maroon/app.h"
#include "common/tick_clock.h"
#include "host/node_host.h"
#include "net/transport.h"
#include "gateway/gateway.h"
#include "node/node.h"
#include "objstore/uploader.h"
#include "sequencer/vr_sequencer.h"
#include "server/cluster_frames.h"
#include "server/engine.h"
#include "server/group_follower.h"
#include "server/quorum_watch.h"
#include "server/waiting_clients.h"
#include "storage/dir_lock.h"
#include "storage/env.h"
#include "storage/data_dir.h"

namespace maroon::server {

struct ClusterOptions {
  uint64_t cluster_id = 0;
  NodeId self;
  std::vector<ClusterMember> members;  // this node included
  uint64_t lease_ms = 5000;
  uint32_t view_change_ticks = 0;  // 0: the VR default
  size_t send_queue_bytes_max = 64 * 1024 * 1024;
  size_t tx_retention_bytes_max = 256 * 1024 * 1024;
  // TLS on every peer link (the node's and its in-process gateway's), with
  // this node's certificate; null: plaintext (net/transport.h).
  std::shared_ptr<net::TlsContext> peer_tls;
  // A request with no result this long after it arrived is answered "outcome
  // unknown" (docs/cluster.md, "When the cluster has no quorum").
  uint64_t unavailable_after_ms = 5000;
};

struct DriverOptions {
  std::string data_dir = "./maroon-data";
  // Unset: `maroon dev`, one node with its gateway in process.
  std::optional<ClusterOptions> cluster;
  uint64_t tick_ms = 10;
  uint64_t wal_segment_bytes = 0;  // 0: limits::wal_segment_bytes
  // A cluster node whose data directory does not exist yet: true, it is a
  // member of a new cluster and bootstraps it with the others; false (the
  // safe default), it rejoins an existing cluster, its old directory having
  // been lost, and recovers from its peers before it votes
  // (DataDirOptions::fresh_log_lost; docs/cluster.md, "A lost data
  // directory"). Ignored once the directory exists.
  bool new_cluster = false;
  // A node added to a running group (maroon cluster add-node): its new data
  // directory starts empty, and its replica waits to be made a member by a
  // membership change (docs/membership.md) instead of bootstrapping the
  // configured group. Ignored once the directory holds data.
  bool join = false;
  // cluster.toml's membership_epoch: the config its node list describes.
  uint64_t membership_epoch = 0;
  // How long a graceful shutdown waits for in-flight txs.
  uint64_t drain_ms = 3000;
  // When snapshots are taken (docs/snapshots.md); dir empty: DATA-DIR/snapshots.
  host::SnapshotSettings snapshots;
  // Upload published snapshots to this object store (docs/backups.md).
  std::optional<objstore::StoreConfig> backup_store;
  objstore::UploaderOptions backup;  // node_id is filled in
  Env* env = nullptr;  // nullptr: the real file system
  // The apps this node runs (include/maroon/app.h).
  AppRegistry apps = builtin_apps();
};

class Driver final : public Engine {
 public:
  Driver(boost::asio::io_context& io, DriverOptions options);
  ~Driver() override;

  // Opens the WAL and replays it (blocking), then starts ticking and leasing.
  Status start();
  // Refuses new writes, waits (on the loop) for in-flight txs up to drain_ms,
  // stops the WAL thread and then calls done.
  void shutdown(std::function<void()> done);

  void submit(AppId app, std::string op, ReplyFn done) override;
  Result<std::string> read(AppId app, std::string_view op) override;
  const AppRegistry& apps() const override { return options_.apps; }
  EngineStatus status() const override;
  Status request_snapshot() override;
  Result<BackupTicket> request_backup() override;
  Registry& metrics() override { return registry_; }
  // In a cluster a node's applied state may lag the cluster's, so reads are
  // ordered like writes (linearizable); one node reads its own state.
  bool orders_reads() const override { return options_.cluster.has_value(); }
  Status request_membership(uint64_t expect_epoch,
                            std::vector<cluster::NodeAddress> members) override;
  void set_stop_handler(std::function<void(std::string)> stop) override {
    stop_handler_ = std::move(stop);
  }
  // The file a retired node leaves in its data directory; start() refuses a
  // directory that holds it.
  static constexpr const char* kRemovedMarker = "REMOVED";
  // A joiner's directory until its replica is a member (docs/membership.md).
  static constexpr const char* kJoiningMarker = "JOINING";

  struct ReplayStats {
    uint64_t records = 0;
    uint64_t epochs = 0;
    uint64_t txs = 0;
    uint64_t millis = 0;
  };
  const ReplayStats& replay_stats() const { return replay_stats_; }

 private:

  // The host's sink: messages of the node core, in the order it emitted them.
  struct Sink final : host::NodeSink {
    explicit Sink(Driver& d) : driver(d) {}
    void to_peer(PeerEnvelope e) override { driver.send_peer(std::move(e)); }
    void to_gateway(GatewayEnvelope e) override { driver.deliver(std::move(e)); }
    Driver& driver;
  };

  // The crash context (maroon/assert.h): which node, view, op, commit and
  // epoch a stop happened at.
  static void render_context(const void* arg, char* buf, size_t size);

  void pump();
  void deliver(GatewayEnvelope e);
  void send_peer(PeerEnvelope e);
  void on_node_frame(net::PeerKind kind, uint64_t peer, uint8_t type, std::string_view payload);
  void on_gateway_frame(uint64_t node, uint8_t type, std::string_view payload);
  size_t pending_bytes() const;
  void check_fault();
  void schedule_flush();
  // Pauses reads from peers and gateways while a WAL batch's worth of
  // records waits for the write in flight; resumes them once it does not.
  void apply_backpressure();
  void flush();
  void on_batch_written(const Status& status, uint64_t last_seq, uint64_t micros);
  void fail_writes(const Status& status);
  void wal_thread_main();
  void schedule_tick();
  void on_tick();
  void update_gauges();
  // Follows the group the sequencer committed (docs/membership.md): links
  // to the node's peers, the gateway's k and targets, GroupMembers to the
  // gateways, and a retired node's stop. After each pump.
  void follow_group();
  void send_group(uint64_t gateway);
  void on_retired();
  void poll_shutdown();
  // Snapshots: begins one when due, and works on it a step at a time,
  // posted between the loop's other work; the fsync and rename run on
  // snapshot_thread_.
  void maybe_snapshot();
  // Logs a snapshot transfer's progress: needed, failing, installed.
  void log_transfer();
  void snapshot_work();
  void join_snapshot_thread();
  void snapshot_thread_main();

  boost::asio::io_context& io_;
  DriverOptions options_;
  std::unique_ptr<Env> own_env_;
  std::optional<DirLock> dir_lock_;
  Env* env_ = nullptr;
  std::unique_ptr<DataDir> data_dir_;  // written by the WAL thread only, once started
  std::vector<std::unique_ptr<StateMachine>> apps_;  // one per options_.apps, before node_
  const kv::KvApp* kv_ = nullptr;                     // the "kv" app, for its metric
  VrSequencer sequencer_;
  Node node_;
  Sink sink_{*this};
  const AssertContext assert_context_{&Driver::render_context, this};
  host::NodeHost host_{node_, sink_};
  Gateway gateway_;
  boost::asio::steady_timer tick_timer_;
  // Ticks come from the monotonic clock, stalls included (common/tick_clock.h).
  std::optional<TickClock> tick_clock_;
  boost::asio::steady_timer shutdown_timer_;
  std::function<void()> shutdown_done_;
  std::chrono::steady_clock::time_point shutdown_deadline_;

  // Loop thread only.
  bool started_ = false;
  bool read_only_ = false;
  bool shutting_down_ = false;
  std::string read_only_reason_;
  bool flush_scheduled_ = false;
  // Op bytes submitted to the gateway and not yet routed into the host.
  size_t unrouted_bytes_ = 0;
  WaitingClients waiting_;
  // Cluster mode: frames for remote peers, batched until the end of each pump.
  std::optional<ClusterOutbox> outbox_;
  std::unique_ptr<net::Transport> node_net_;     // links to peer nodes and from gateways
  std::unique_ptr<net::Transport> gateway_net_;  // our gateway's links to peer nodes
  // Membership (follow_group): the addresses and the group known, the ids
  // each transport was connect()ed to, the peers those links follow, the
  // nodes our gateway sends txs to and the gateways linked to us.
  std::optional<GroupFollower> group_;
  std::set<uint64_t> node_links_;
  std::set<uint64_t> gateway_links_;
  std::vector<NodeId> followed_peers_;
  uint64_t followed_config_ = 0;
  uint64_t targets_config_ = UINT64_MAX;
  std::vector<uint64_t> tx_targets_;
  std::set<uint64_t> gateways_up_;
  bool retired_ = false;
  std::function<void(std::string)> stop_handler_;

  // Handed between the loop and the WAL thread under mu_.
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<host::PendingWrite> to_write_;
  bool wal_thread_stop_ = false;
  std::thread wal_thread_;

  // Snapshots: the loop produces them, snapshot_thread_ runs the host's
  // jobs (file writes, fsync, rename) in order, handed over under snap_mu_.
  std::thread snapshot_thread_;
  std::mutex snap_mu_;
  std::condition_variable snap_cv_;
  std::deque<host::NodeHost::SnapshotJob> snapshot_jobs_;
  bool snapshot_thread_stop_ = false;
  std::atomic<uint64_t> wal_first_segment_{0};
  bool snapshot_work_posted_ = false;
  std::chrono::steady_clock::time_point snapshot_began_;

  ReplayStats replay_stats_;
  Registry registry_;
  Counter& txs_submitted_;
  Counter& txs_completed_;
  Counter& txs_refused_;
  Counter& txs_applied_;
  Counter& epochs_applied_;
  Counter& wal_batches_;
  Counter& wal_records_;
  Counter& wal_bytes_;
  Histogram& wal_sync_latency_;
  Histogram& commit_latency_;
  Gauge& inflight_txs_;
  Gauge& held_txs_;
  Gauge& wal_pending_bytes_;
  Gauge& applied_epoch_;
  Gauge& kv_keys_;
  Gauge& read_only_gauge_;
  Counter& txs_received_;
  Counter& txs_ordered_;
  Counter& txs_pulled_;
  Counter& epochs_proposed_;
  Counter& ranges_sealed_;
  Counter& ranges_retired_;
  Gauge& ranges_kept_;
  Counter& txs_conflicting_;
  Counter& txs_replaced_;
  Gauge& view_gauge_;
  Gauge& committed_epoch_;
  Gauge& epochs_waiting_;
  Gauge& net_queued_bytes_;
  Counter& peer_links_refused_;
  Counter& wal_tails_cut_;
  Gauge& peer_reads_paused_;
  Gauge& retained_bytes_;
  Counter& snapshots_taken_;
  Counter& snapshot_failures_;
  Gauge& snapshot_bytes_;
  Gauge& snapshot_epoch_;
  Counter& snapshot_installs_;
  Counter& transfer_received_;
  Counter& transfer_sent_;
  Histogram& snapshot_duration_;
  Gauge& backup_uploads_;
  Gauge& backup_failures_;
  Gauge& backup_epoch_;
  QuorumMetrics quorum_metrics_;
  std::unique_ptr<objstore::Uploader> uploader_;
  // What log_transfer() said last.
  bool logged_need_ = false;
  uint64_t logged_installs_ = 0;
  std::string logged_transfer_error_;
};

}  // namespace maroon::server
