#include "common/unknown_app.h"
#include "server/driver.h"

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "common/codec.h"
#include "maroon/limits.h"
#include "protocol/cluster_messages.h"
#include "vr/types.h"
#include "server/cluster_frames.h"
#include "storage/data_dir.h"

namespace maroon::server {

namespace {

uint64_t wall_clock_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// A gateway incarnation is named at random: a restarted gateway must never
// present an old name, or it would be handed its old range again.
uint64_t pick_gateway_id() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

// A data dir made before data files were private (or by hand) is closed to
// group and others; its files may be older than that rule.
void make_data_dir_private(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || (st.st_mode & 077) == 0) return;
  const unsigned old_mode = st.st_mode & 07777;
  if (::chmod(dir.c_str(), st.st_mode & 0700) == 0) {
    spdlog::warn("data dir {} was mode {:04o}, open to others; it is now {:04o}", dir, old_mode,
                 old_mode & 0700);
  } else {
    spdlog::warn("data dir {} is mode {:04o}, open to others, and chmod failed: {}", dir, old_mode,
                 std::strerror(errno));
  }
}

// A small text file written durably (created, synced, its name synced).
Status write_small_file(Env& env, const std::string& dir, const std::string& name,
                        std::string_view text) {
  const std::string path = join_path(dir, name);
  auto f = env.open(path, /*create=*/true);
  if (!f) return f.status();
  if (Status s = (*f)->truncate(0); !s) return s;
  if (Status s = (*f)->write_at(0, text); !s) return s;
  if (Status s = (*f)->sync(); !s) return s;
  return env.sync_dir(dir);
}

// Its first line (at most 1 KiB), or why it cannot be read.
std::string read_small_file(Env& env, const std::string& path) {
  auto f = env.open(path, /*create=*/false);
  if (!f) return f.status().to_string();
  std::string text;
  if (Status s = (*f)->read_at(0, 1024, text); !s) return s.to_string();
  return text.substr(0, text.find('\n'));
}

NodeConfig node_config(const DriverOptions& o) {
  NodeConfig c;
  if (!o.cluster) {
    c.order_unsynced_txs = true;
    c.gateways_in_process = true;
    return c;
  }
  c.id = o.cluster->self;
  for (const ClusterMember& m : o.cluster->members) c.members.push_back(m.id);
  c.lease_ms = o.cluster->lease_ms;
  c.tick_ms = o.tick_ms;
  c.tx_retention_bytes_max = o.cluster->tx_retention_bytes_max;
  return c;
}

VrSequencer make_sequencer(const DriverOptions& o) {
  if (!o.cluster) return VrSequencer();
  std::vector<vr::ReplicaId> members;
  for (const ClusterMember& m : o.cluster->members) members.emplace_back(m.id.value());
  vr::Options vo = VrSequencer::default_options();
  if (o.cluster->view_change_ticks != 0) vo.view_change_timeout_ticks = o.cluster->view_change_ticks;
  // A fresh seed on every start: the replica's recovery nonces come from it.
  std::random_device rd;
  const uint64_t seed = ((uint64_t{rd()} << 32) ^ rd()) | 1;
  return VrSequencer(vr::ReplicaId(o.cluster->self.value()), members, vo, o.tick_ms, seed);
}

GatewayConfig gateway_config(const DriverOptions& o) {
  GatewayConfig c{.id = GatewayId(pick_gateway_id())};
  c.apps.clear();
  for (const AppInfo& app : o.apps.apps()) c.apps.push_back(app.id);
  if (!o.cluster) {
    // In-process delivery never loses a message: retries would only copy.
    c.retries = false;
    return c;
  }
  c.acks_needed = o.cluster->members.size() / 2 + 1;
  for (const ClusterMember& m : o.cluster->members) c.members.push_back(m.id);
  c.members_config = o.membership_epoch;
  c.retries = true;
  c.retry_ticks = std::max<uint64_t>(1, 200 / o.tick_ms);
  c.result_retry_ticks = std::max<uint64_t>(1, 1000 / o.tick_ms);
  c.lease_retry_ticks = std::max<uint64_t>(1, 200 / o.tick_ms);
  c.renew_ticks = std::max<uint64_t>(1, o.cluster->lease_ms / 4 / o.tick_ms);
  c.deadline_ticks = std::max<uint64_t>(1, o.cluster->unavailable_after_ms / o.tick_ms);
  c.tick_ms = o.tick_ms;
  return c;
}


}  // namespace

Driver::Driver(boost::asio::io_context& io, DriverOptions options)
    : io_(io),
      options_(std::move(options)),
      sequencer_(make_sequencer(options_)),
      node_(node_config(options_), sequencer_),
      gateway_(gateway_config(options_)),
      tick_timer_(io),
      shutdown_timer_(io),
      txs_submitted_(registry_.counter("maroon_txs_submitted_total", "Write txs accepted by the gateway")),
      txs_completed_(registry_.counter("maroon_txs_completed_total", "Write txs answered to clients")),
      txs_refused_(registry_.counter("maroon_txs_refused_total", "Write txs refused (overload, read-only, shutdown)")),
      txs_applied_(registry_.counter("maroon_txs_applied_total", "Txs executed by the node")),
      epochs_applied_(registry_.counter("maroon_epochs_applied_total", "Epochs applied by the node")),
      wal_batches_(registry_.counter("maroon_wal_batches_total", "WAL group-commit batches (one fdatasync each)")),
      wal_records_(registry_.counter("maroon_wal_records_total", "WAL records written")),
      wal_bytes_(registry_.counter("maroon_wal_bytes_total", "WAL bytes written")),
      wal_sync_latency_(registry_.histogram("maroon_wal_fsync_seconds", "WAL batch write + fdatasync latency")),
      commit_latency_(registry_.histogram("maroon_commit_latency_seconds", "Write tx latency from submit to result")),
      inflight_txs_(registry_.gauge("maroon_inflight_txs", "Write txs submitted and not yet answered")),
      held_txs_(registry_.gauge("maroon_held_txs", "Txs held by the node and not yet executed")),
      wal_pending_bytes_(registry_.gauge("maroon_wal_pending_bytes", "Bytes waiting for the next WAL batch")),
      applied_epoch_(registry_.gauge("maroon_applied_epoch", "Number of the last applied epoch")),
      kv_keys_(registry_.gauge("maroon_kv_keys", "Keys in the kv app")),
      read_only_gauge_(registry_.gauge("maroon_read_only", "1 if a WAL error made the node refuse writes")),
      txs_received_(registry_.counter("maroon_txs_received_total", "Txs received from gateways (first copies)")),
      txs_ordered_(registry_.counter("maroon_txs_ordered_total", "Txs in epochs this node proposed")),
      txs_pulled_(registry_.counter("maroon_txs_pulled_total", "Txs fetched from peers")),
      epochs_proposed_(registry_.counter("maroon_epochs_proposed_total", "Epochs this node proposed")),
      ranges_sealed_(registry_.counter("maroon_ranges_sealed_total",
                                       "Gateway ranges sealed (lease expired, or gateway gone)")),
      ranges_retired_(registry_.counter("maroon_ranges_retired_total",
                                        "Sealed ranges whose state was dropped after the grace")),
      ranges_kept_(registry_.gauge("maroon_ranges_kept", "Gateway ranges whose state is kept")),
      txs_conflicting_(registry_.counter(
          "maroon_txs_conflicting_total",
          "Copies of a tx id with other bytes than the one held or ordered (a faulty gateway)")),
      txs_replaced_(registry_.counter(
          "maroon_txs_replaced_total",
          "Held copies dropped because their id was ordered with other bytes, pulled again")),
      view_gauge_(registry_.gauge("maroon_view", "VR view number")),
      committed_epoch_(registry_.gauge("maroon_committed_epoch", "Number of the last committed epoch")),
      epochs_waiting_(registry_.gauge("maroon_epochs_waiting", "Committed epochs waiting for txs")),
      net_queued_bytes_(registry_.gauge("maroon_net_queued_bytes", "Bytes queued to peers and gateways")),
      peer_links_refused_(registry_.counter(
          "maroon_peer_links_refused_total",
          "Peer links refused: a failed TLS handshake, a certificate or hello naming another "
          "peer or cluster, too many links")),
      wal_tails_cut_(registry_.counter("maroon_wal_torn_tails_cut_total",
                                       "Torn WAL tails cut by recovery at start")),
      peer_reads_paused_(registry_.gauge(
          "maroon_peer_reads_paused",
          "1 while reads from peers and gateways wait for the WAL to catch up")),
      retained_bytes_(registry_.gauge("maroon_retained_bytes", "Executed txs kept for lagging peers")),
      snapshots_taken_(registry_.counter("maroon_snapshots_total", "Snapshots written and published")),
      snapshot_failures_(registry_.counter("maroon_snapshot_failures_total",
                                           "Snapshots begun and abandoned (an I/O error)")),
      snapshot_bytes_(registry_.gauge("maroon_snapshot_bytes", "Size of the newest snapshot")),
      snapshot_epoch_(registry_.gauge("maroon_snapshot_epoch", "Epoch of the newest snapshot")),
      snapshot_installs_(registry_.counter("maroon_snapshot_installs_total",
                                           "Peers' snapshots installed by this node (it lagged)")),
      transfer_received_(registry_.counter("maroon_snapshot_transfer_received_bytes_total",
                                           "Bytes of peers' snapshots received")),
      transfer_sent_(registry_.counter("maroon_snapshot_transfer_sent_bytes_total",
                                       "Bytes of this node's snapshots sent to peers")),
      snapshot_duration_(registry_.histogram("maroon_snapshot_seconds",
                                             "Time to take a snapshot, begin to publish")),
      backup_uploads_(registry_.gauge("maroon_backup_uploads",
                                      "Snapshots uploaded to the object store by this process")),
      backup_failures_(registry_.gauge("maroon_backup_failures",
                                       "Failed upload attempts to the object store")),
      backup_epoch_(registry_.gauge("maroon_backup_epoch",
                                    "Epoch of the newest snapshot uploaded by this process")),
      quorum_metrics_(registry_) {
  if (options_.env == nullptr) {
    own_env_ = std::make_unique<PosixEnv>();
    env_ = own_env_.get();
  } else {
    env_ = options_.env;
  }
  for (const AppInfo& app : options_.apps.apps()) {
    apps_.push_back(app.make());
    MAROON_ASSERT_MSG(apps_.back() != nullptr, "an app factory returned no app");
    node_.register_app(app.id, *apps_.back());
    if (app.id == AppId::kKv) kv_ = dynamic_cast<const kv::KvApp*>(apps_.back().get());
  }
  set_assert_context(&assert_context_);
}

void Driver::render_context(const void* arg, char* buf, size_t size) {
  // Plain reads of the cores' numbers, whichever thread stops: good enough
  // for the last line a stopping process writes.
  const auto* d = static_cast<const Driver*>(arg);
  const vr::Replica& r = d->sequencer_.replica();
  std::snprintf(buf, size, "node %llu, view %llu, op %llu, commit %llu, epoch %llu",
                static_cast<unsigned long long>(r.id().value()),
                static_cast<unsigned long long>(r.view().value()),
                static_cast<unsigned long long>(r.op().value()),
                static_cast<unsigned long long>(r.commit().value()),
                static_cast<unsigned long long>(d->node_.applied_epoch().value()));
}

Driver::~Driver() {
  const AssertContext* ours = &assert_context_;
  detail::assert_context.compare_exchange_strong(ours, nullptr);
  {
    std::lock_guard lock(mu_);
    wal_thread_stop_ = true;
  }
  cv_.notify_all();
  if (wal_thread_.joinable()) wal_thread_.join();
  join_snapshot_thread();
}

Status Driver::start() {
  MAROON_ASSERT(!started_);
  auto t0 = std::chrono::steady_clock::now();
  const uint64_t want_id = options_.cluster ? options_.cluster->self.value() : 1;
  if (own_env_ != nullptr) {
    if (Status s = env_->create_dirs(options_.data_dir); !s) return s;
    make_data_dir_private(options_.data_dir);
    auto lock = DirLock::acquire(options_.data_dir);
    if (!lock) return lock.status();
    dir_lock_.emplace(std::move(lock).value());
  }
  if (const std::string marker = join_path(options_.data_dir, kRemovedMarker);
      options_.cluster && env_->exists(marker)) {
    return unavailable(fmt::format(
        "{}: {}. Its data directory is not used again; a node that comes back is added under a "
        "new id (maroon cluster add-node)",
        marker, read_small_file(*env_, marker)));
  }
  DataDirOptions dir_options;
  dir_options.path = options_.data_dir;
  dir_options.node_id = want_id;
  std::random_device rd;
  dir_options.fresh_data_id = (uint64_t{rd()} << 32) ^ rd();
  if (options_.wal_segment_bytes != 0) dir_options.wal.segment_bytes = options_.wal_segment_bytes;
  // A cluster node recovers what its log lost from its peers; a single
  // node has nobody to recover it from, and refuses to start.
  dir_options.recover_lost_log = options_.cluster.has_value() && options_.cluster->members.size() > 1;
  // A joiner's first start: its replica joins (VrSequencer::join) instead
  // of bootstrapping or recovering, so its new directory is no lost log.
  // The intent is kept in the directory until the replica holds state of
  // its own: a joiner restarted before that joins again rather than
  // bootstrapping the configured group.
  const std::string joining_marker = join_path(options_.data_dir, kJoiningMarker);
  const bool joining =
      options_.cluster && (env_->exists(joining_marker) ||
                           (options_.join && !env_->exists(join_path(options_.data_dir, "superblock"))));
  if (joining) {
    sequencer_.join();
    if (!env_->exists(joining_marker)) {
      if (Status s = write_small_file(*env_, options_.data_dir, kJoiningMarker,
                                      "this node joins its cluster by a membership change");
          !s) {
        return s;
      }
    }
  }
  if (dir_options.recover_lost_log && !options_.new_cluster && !joining) {
    dir_options.fresh_log_lost =
        "this node's data directory is new, so it rejoins its cluster: what it held before is "
        "recovered from its peers (the log, then the state from a peer's snapshot) before it "
        "votes. A new cluster's nodes are started with --new-cluster";
  }
  host::SnapshotSettings snapshots = options_.snapshots;
  if (snapshots.dir.empty()) snapshots.dir = options_.data_dir + "/snapshots";
  snapshots.cluster_id = options_.cluster ? options_.cluster->cluster_id : 0;
  host_.set_snapshots(*env_, snapshots);
  if (const std::string b = join_path(snapshots.dir, host::NodeHost::kBootstrapName);
      options_.cluster && env_->exists(b)) {
    if (Status s = host_.set_bootstrap(b); !s) {
      spdlog::warn("{} was fetched to start from, but is not used: {}", b, s.to_string());
    } else {
      spdlog::info("{} was fetched to start from: installed once this node needs a snapshot", b);
    }
  }
  if (options_.backup_store) {
    // A store that cannot be used as configured stops the start; one that
    // is unreachable only delays uploads (serving never waits for it).
    auto store = objstore::open_store(*options_.backup_store);
    if (!store) return Status(store.status().code(), "backup: " + store.status().message());
    objstore::UploaderOptions uo = options_.backup;
    uo.node_id = want_id;
    uo.one_timeline_check = !options_.cluster.has_value();
    uploader_ = std::make_unique<objstore::Uploader>(std::move(store).value(), uo);
  }
  host::ReplayCounts counts;
  auto last_progress = t0;
  auto dir = host_.open(*env_, dir_options, counts, [&] {
    if ((counts.records & 0xffff) != 0) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_progress > std::chrono::seconds(1)) {
      last_progress = now;
      spdlog::info("replaying WAL: {} records, {} txs so far", counts.records, counts.txs);
    }
  });
  for (const std::string& w : host_.warnings()) spdlog::warn("{}", w);
  if (!dir) return dir.status();
  data_dir_ = std::move(dir).value();
  if (const Membership& m = sequencer_.membership();
      joining && m.config > 0 &&
      std::find(m.members.begin(), m.members.end(), options_.cluster->self) != m.members.end()) {
    // The replayed state makes it a member: the join is done (a replica
    // that replayed anything never joins again anyway).
    if (Status s = env_->remove(joining_marker); !s) {
      spdlog::warn("could not remove {}: {}", joining_marker, s.to_string());
    }
  }
  wal_first_segment_.store(data_dir_->wal().first_segment(), std::memory_order_relaxed);
  if (!counts.snapshot.empty()) {
    spdlog::info("restored snapshot {} (epoch {}), then replayed {} log records after it",
                 counts.snapshot, counts.snapshot_epoch, counts.records);
  }
  if (data_dir_->created() && data_dir_->log_lost()) {
    spdlog::warn("{}", *data_dir_->log_lost());
  } else if (const auto& lost = data_dir_->log_lost()) {
    spdlog::critical("the log lost records it had made durable: {}. This node recovers them "
                     "from its peers before it votes again (it counts as one of the f nodes "
                     "the cluster may lose until then); the txs it lacks are pulled",
                     *lost);
  }
  if (const auto& cut = data_dir_->wal().cut()) {
    spdlog::warn("WAL recovery cut a torn tail: {} bytes at offset {} of {} ({}); the log ends "
                 "at lsn {}",
                 cut->bytes, cut->offset, cut->segment, cut->damage,
                 data_dir_->wal().last_lsn().value());
    wal_tails_cut_.inc();
  }
  replay_stats_.records = counts.records;
  replay_stats_.epochs = counts.epochs;
  replay_stats_.txs = counts.txs;
  if (options_.cluster) {
    const ClusterOptions& c = *options_.cluster;
    group_.emplace(c.members, options_.membership_epoch);
    net::TransportOptions to;
    to.cluster_id = c.cluster_id;
    to.self_kind = net::PeerKind::kNode;
    to.apps = app_ids(options_.apps);
    to.self_id = c.self.value();
    to.send_queue_bytes_max = c.send_queue_bytes_max;
    to.tls = c.peer_tls;
    node_net_ = std::make_unique<net::Transport>(
        io_, to,
        [this](net::PeerKind kind, uint64_t peer, uint8_t type, std::string_view payload) {
          on_node_frame(kind, peer, type, payload);
        },
        [this](net::PeerKind kind, uint64_t peer, bool up) {
          spdlog::info("{} {} {}", net::peer_kind_name(kind), peer, up ? "connected" : "disconnected");
          if (kind != net::PeerKind::kGateway) return;
          if (up) {
            gateways_up_.insert(peer);
            send_group(peer);
          } else {
            gateways_up_.erase(peer);
          }
        });
    net::TransportOptions go = to;
    go.self_kind = net::PeerKind::kGateway;
    go.self_id = gateway_.id().value();
    gateway_net_ = std::make_unique<net::Transport>(
        io_, go,
        [this](net::PeerKind, uint64_t peer, uint8_t type, std::string_view payload) {
          on_gateway_frame(peer, type, payload);
        },
        [](net::PeerKind, uint64_t, bool) {});
    outbox_.emplace(
        c.self,
        [this](protocol::FrameType type, std::string_view payload) {
          for (uint64_t n : tx_targets_) {
            gateway_net_->send(net::PeerKind::kNode, n, static_cast<uint8_t>(type), payload);
          }
        },
        [this](uint64_t gateway, protocol::FrameType type, std::string_view payload) {
          node_net_->send(net::PeerKind::kGateway, gateway, static_cast<uint8_t>(type), payload);
        });
    for (const ClusterMember& m : c.members) {
      if (m.id != c.self) continue;
      if (Status s = node_net_->listen(m.host, m.peer_port); !s) {
        return Status(s.code(), fmt::format("peer port {}:{}: {}", m.host, m.peer_port,
                                            s.message()));
      }
    }
    const Membership& m = sequencer_.membership();
    if (m.config != options_.membership_epoch && !joining) {
      // The durable group wins over the file: the file may be older (a
      // change while this node was down) or newer (a change this node has
      // not learned yet; its peers tell it).
      spdlog::warn("this node's durable group is membership config {}, the config file's is {}: "
                   "it follows config {} until it learns a newer one",
                   m.config, options_.membership_epoch, m.config);
    }
    follow_group();
  }
  replay_stats_.millis = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  started_ = true;
  if (uploader_ && !host_.snapshots().empty()) {
    // The newest may not have been uploaded before the last stop.
    const host::SnapshotInfo& newest = host_.snapshots().back();
    uploader_->offer(newest.epoch, newest.path, newest.bytes);
  }
  wal_thread_ = std::thread([this] { wal_thread_main(); });
  snapshot_thread_ = std::thread([this] { snapshot_thread_main(); });
  host_.tick(wall_clock_ms());
  tick_clock_.emplace(options_.tick_ms * 1000, kTickCatchUpMax, monotonic_us());
  pump();
  schedule_flush();
  schedule_tick();
  return Status::ok();
}

void Driver::submit(AppId app, std::string op, ReplyFn done) {
  MAROON_ASSERT(started_);
  if (node_.find_app(app) == nullptr) {
    done(unknown_app(app), {});
    return;
  }
  if (read_only_) {
    txs_refused_.inc();
    done(unavailable(read_only_reason_), {});
    return;
  }
  if (shutting_down_) {
    txs_refused_.inc();
    done(unavailable("the node is shutting down"), {});
    return;
  }
  // Bounds the next WAL batch: everything submitted now joins it.
  const size_t op_bytes = op.size();
  if (pending_bytes() + unrouted_bytes_ + op_bytes > limits::wal_batch_bytes_max &&
      unrouted_bytes_ + pending_bytes() > 0) {
    txs_refused_.inc();
    done(overloaded("the WAL is behind; retry shortly"), {});
    return;
  }
  uint64_t token = waiting_.add(std::move(done));
  Result<TxId> id = gateway_.submit(app, std::move(op), token);
  if (!id) {
    txs_refused_.inc();
    waiting_.refuse(token, id.status());
    return;
  }
  txs_submitted_.inc();
  unrouted_bytes_ += op_bytes;
  // The tx waits in the gateway's output; the posted flush (or the batch in
  // flight completing) carries everything submitted meanwhile to the node.
  schedule_flush();
}

Result<std::string> Driver::read(AppId app, std::string_view op) {
  const StateMachine* machine = node_.find_app(app);
  if (machine == nullptr) return unknown_app(app);
  if (!started_) return unavailable("the node is starting");
  return machine->read(op);
}

EngineStatus Driver::status() const {
  EngineStatus s;
  s.serving = started_ && gateway_.ready() && !read_only_ && !shutting_down_;
  s.read_only = read_only_;
  if (read_only_) {
    s.detail = read_only_reason_;
  } else if (!started_) {
    s.detail = "replaying the WAL";
  } else if (!gateway_.ready()) {
    s.detail = "leasing a range of tx ids";
  } else if (shutting_down_) {
    s.detail = "shutting down";
  }
  s.node_id = data_dir_ ? data_dir_->node_id() : 0;
  s.data_id = data_dir_ ? data_dir_->data_id() : 0;
  s.range = gateway_.range().value();
  s.applied_epoch = node_.applied_epoch().value();
  s.applied_txs = node_.counters().txs_applied;
  s.state_hash = node_.state_hash();
  s.inflight_txs = gateway_.inflight();
  const SequencerStatus q = sequencer_.status();
  s.role = q.role;
  s.view = q.view;
  s.primary = q.primary.value();
  s.commit_epoch = node_.committed_epoch().value();
  s.quorum = q.quorum;
  s.unavailable_reason = q.no_quorum_reason;
  s.held_txs = node_.held_txs();
  s.epochs_waiting = node_.epochs_waiting();
  // The newest ranges only: a long-lived cluster accumulates sealed ones.
  constexpr size_t kStatusRangesMax = 32;
  auto offsets = node_.durable_offsets();
  const size_t skip = offsets.size() > kStatusRangesMax ? offsets.size() - kStatusRangesMax : 0;
  for (size_t i = skip; i < offsets.size(); i++) {
    s.offsets.emplace_back(offsets[i].first.value(), offsets[i].second);
  }
  if (!node_.fault().is_ok()) {
    s.serving = false;
    s.detail = node_.fault().message();
  }
  if (!host_.snapshots().empty()) {
    s.snapshot_epoch = host_.snapshots().back().epoch;
    s.snapshot_bytes = host_.snapshots().back().bytes;
  }
  s.snapshots_taken = host_.snapshots_taken();
  s.snapshot_in_progress = host_.snapshot_in_progress();
  s.transfer = host_.transfer_status();
  if (uploader_) s.backup = uploader_->status();
  if (!host_.snapshot_error().is_ok()) s.snapshot_error = host_.snapshot_error().to_string();
  const Membership& m = sequencer_.membership();
  s.membership_epoch = m.config;
  for (NodeId id : node_.members()) s.members.push_back(id.value());
  s.switch_epoch = m.switch_epoch.value();
  for (uint64_t id = 1; id < 64; id++) {
    if ((m.removed_ids >> id) & 1) s.removed.push_back(id);
  }
  s.leaving = node_.leaving();
  s.retired = node_.retired();
  // The WAL thread may be compacting: its first segment moves, read atomically.
  s.wal_first_segment = wal_first_segment_.load(std::memory_order_relaxed);
  return s;
}

// Carries messages between the cores until neither has anything to say.
void Driver::pump() {
  for (int rounds = 0;; rounds++) {
    MAROON_ASSERT(rounds < 1000);
    GatewayOutput g = gateway_.take_output();
    unrouted_bytes_ = 0;
    for (GatewayToNode& m : g.to_nodes) {
      // A copy for the other nodes, then the message to this one.
      if (outbox_) outbox_->to_nodes(m);
      if (auto* tx = std::get_if<TxMsg>(&m)) {
        node_.on_tx(gateway_.id(), std::move(*tx));
      } else if (auto* lease = std::get_if<LeaseRequest>(&m)) {
        node_.on_lease_request(*lease);
      } else {
        node_.on_renew_lease(std::get<RenewLease>(m));
      }
    }
    const auto now = g.deliveries.empty() ? std::chrono::steady_clock::time_point{}
                                          : std::chrono::steady_clock::now();
    for (Delivery& d : g.deliveries) {
      txs_completed_.inc();
      waiting_.deliver(d, now, commit_latency_);
    }
    const bool node_spoke = host_.drain();
    if (g.to_nodes.empty() && g.deliveries.empty() && !node_spoke) break;
  }
  if (options_.cluster) {
    if (started_) follow_group();
    outbox_->flush();
    check_fault();
  }
}

void Driver::follow_group() {
  MAROON_ASSERT(group_ && node_net_ && gateway_net_);
  const Membership& m = sequencer_.membership();
  if (m.config > followed_config_) {
    followed_config_ = m.config;
    auto adopted = group_->adopt(m.config, m.members, m.annex);
    if (!adopted) {
      spdlog::error("membership config {}: its address book does not decode ({}); links follow "
                    "the addresses known before",
                    m.config, adopted.status().to_string());
      (void)group_->adopt(m.config, m.members, {});
    }
    std::string ids;
    for (NodeId id : m.members) ids += fmt::format(" {}", id.value());
    spdlog::info("the group is membership config {} from epoch {}:{}{}", m.config,
                 m.switch_epoch.value() + 1, ids,
                 node_.leaving() ? "; this node was removed and hands over before it retires" : "");
    gateway_.set_members(m.config, m.members);
    for (uint64_t g : gateways_up_) send_group(g);
  }
  if (node_.peers() != followed_peers_ || group_->config() != targets_config_) {
    followed_peers_ = node_.peers();
    targets_config_ = group_->config();
    const std::vector<NodeId> unknown = group_->relink(*node_net_, node_links_, followed_peers_);
    for (NodeId id : unknown) {
      spdlog::warn("node {} is a peer (a member, or a removed node that has not retired), but its "
                   "address is in neither the config file nor an address book: no link to it",
                   id.value());
    }
    std::vector<NodeId> targets;
    tx_targets_.clear();
    for (NodeId id : group_->members()) {
      if (id == options_.cluster->self) continue;
      targets.push_back(id);
      tx_targets_.push_back(id.value());
    }
    (void)group_->relink(*gateway_net_, gateway_links_, targets);
  }
  if (node_.retired() && !retired_) on_retired();
}

void Driver::send_group(uint64_t gateway) {
  const Membership& m = sequencer_.membership();
  if (m.config == 0 || m.members.empty()) return;  // cluster.toml's group: the gateway has it
  std::string frame;
  protocol::encode_group_members(GroupMembers{m.config, m.members, m.annex}, frame);
  node_net_->send(net::PeerKind::kGateway, gateway,
                  static_cast<uint8_t>(protocol::FrameType::kGroupMembers), payload_of(frame));
}

void Driver::on_retired() {
  retired_ = true;
  const Membership& m = sequencer_.membership();
  const std::string why = fmt::format(
      "node {} was removed from cluster {} by membership config {} and handed over to the "
      "group that went on",
      options_.cluster->self.value(), options_.cluster->cluster_id, m.config);
  // Marked first: a restart of this directory must never rejoin as a member.
  if (Status s = write_small_file(*env_, options_.data_dir, kRemovedMarker, why); !s) {
    spdlog::error("could not mark the data directory retired: {}", s.to_string());
  }
  spdlog::warn("{}: it retires and stops", why);
  if (stop_handler_) {
    boost::asio::post(io_, [this, why] { stop_handler_(why); });
  }
}

static_assert(protocol::kGroupBookBytesMax == vr::limits::annex_bytes_max);

Status Driver::request_membership(uint64_t expect_epoch,
                                  std::vector<cluster::NodeAddress> members) {
  if (!options_.cluster) {
    return invalid_argument("maroon dev is a single node: it has no group to change");
  }
  if (!started_ || shutting_down_ || read_only_) {
    return unavailable("this node is not serving (starting, shutting down or read-only)");
  }
  if (Status s = cluster::validate_address_book(members); !s) return s;
  std::vector<NodeId> ids;
  for (const cluster::NodeAddress& a : members) {
    // Where a member listens is not what a membership change changes: the
    // book must agree with the addresses the members use now.
    const ClusterMember* known = group_->address(NodeId(a.id));
    if (group_->is_member(NodeId(a.id)) && known != nullptr &&
        (known->host != a.host || known->peer_port != a.peer_port)) {
      return invalid_argument(fmt::format(
          "node {} is a member at {}:{}, not {}:{}: a change keeps the members' addresses", a.id,
          known->host, known->peer_port, a.host, a.peer_port));
    }
    ids.push_back(NodeId(a.id));
  }
  if (Status s = sequencer_.check_group_can_work(ids); !s) return s;
  // The book also gives the addresses of the members the change removes:
  // they serve their peers until they retire, and a member that restarts
  // meanwhile finds them there.
  std::vector<cluster::NodeAddress> book_entries = members;
  for (NodeId id : group_->members()) {
    if (std::find(ids.begin(), ids.end(), id) != ids.end()) continue;
    const ClusterMember* a = group_->address(id);
    if (a == nullptr) continue;
    // A new member on a removed node's address (a node replaced in place)
    // takes it: the removed node is reached no more.
    const bool taken = std::any_of(members.begin(), members.end(), [&](const auto& m) {
      return m.host == a->host && m.peer_port == a->peer_port;
    });
    if (!taken) {
      book_entries.push_back(cluster::NodeAddress{.id = static_cast<uint32_t>(id.value()),
                                                  .host = a->host,
                                                  .peer_port = a->peer_port});
    }
  }
  if (Status s = cluster::validate_address_book(book_entries); !s) return s;
  std::string book = cluster::encode_address_book(book_entries);
  if (book.size() > vr::limits::annex_bytes_max) {
    return too_large(fmt::format("an address book of {} bytes, over {}", book.size(),
                                 vr::limits::annex_bytes_max));
  }
  Status s = node_.request_membership(expect_epoch, std::move(ids), std::move(book));
  if (s.is_ok()) {
    std::string text;
    for (const cluster::NodeAddress& a : members) {
      text += fmt::format(" {}@{}:{}", a.id, a.host, a.peer_port);
    }
    spdlog::info("membership change from config {} proposed:{}", expect_epoch, text);
  }
  pump();
  schedule_flush();
  return s;
}

void Driver::check_fault() {
  if (node_.fault().is_ok()) return;
  // Divergent state or a gap this node cannot fill: it must not serve or
  // vote any more. Loudly, and for good: a restart would only repeat it.
  char context[256];
  spdlog::critical("node {} stops: {} ({})", data_dir_->node_id(), node_.fault().to_string(),
                   render_assert_context(context, sizeof context));
  spdlog::shutdown();
  std::_Exit(70);
}

size_t Driver::pending_bytes() const { return host_.pending_bytes(); }

void Driver::deliver(GatewayEnvelope e) {
  if (!options_.cluster || e.to == gateway_.id()) {
    gateway_.on_message(std::move(e.msg));
    return;
  }
  MAROON_ASSERT(outbox_);
  outbox_->to_gateway(e.to.value(), std::move(e.msg));
}

void Driver::send_peer(PeerEnvelope e) {
  MAROON_ASSERT(options_.cluster);
  const uint64_t to = e.to.value();
  send_peer_message(e.msg, [&](protocol::FrameType type, std::string_view payload) {
    node_net_->send(net::PeerKind::kNode, to, static_cast<uint8_t>(type), payload);
  });
}

void Driver::on_node_frame(net::PeerKind kind, uint64_t peer, uint8_t type,
                           std::string_view payload) {
  if (!started_ || read_only_) return;
  Status bad;
  if (kind == net::PeerKind::kNode) {
    auto m = decode_peer_frame(type, payload);
    if (m) {
      host_.on_peer(NodeId(static_cast<uint32_t>(peer)), std::move(m).value());
    } else {
      bad = m.status();
    }
  } else {
    const GatewayId from(peer);
    auto msgs = decode_gateway_frame(from, type, payload);
    if (msgs) {
      for (GatewayToNode& m : *msgs) {
        if (auto* tx = std::get_if<TxMsg>(&m)) {
          node_.on_tx(from, std::move(*tx));
        } else if (auto* lease = std::get_if<LeaseRequest>(&m)) {
          node_.on_lease_request(*lease);
        } else {
          node_.on_renew_lease(std::get<RenewLease>(m));
        }
      }
    } else {
      bad = msgs.status();
    }
  }
  if (!bad.is_ok()) {
    spdlog::warn("dropped a frame from {} {}: {}", net::peer_kind_name(kind), peer,
                 bad.to_string());
  }
  // What the frame made the node write joins the next WAL write now, so the
  // backpressure below sees it.
  host_.drain();
  apply_backpressure();
  schedule_flush();
}

void Driver::apply_backpressure() {
  // Records keep arriving from peers and gateways while a write is in
  // flight; they wait for the next one. Once a batch's worth waits, reads
  // from peers and gateways stop until the write completes and takes it
  // (TCP then slows the senders), so one write stays bounded (a batch's
  // worth plus what one read brought) however slow the disk.
  if (!node_net_) return;
  const bool over = host_.pending_bytes() >= limits::wal_batch_bytes_max;
  if (over == node_net_->reads_paused()) return;
  node_net_->set_reads_paused(over);
  peer_reads_paused_.set(over ? 1 : 0);
}

void Driver::on_gateway_frame(uint64_t node, uint8_t type, std::string_view payload) {
  if (!started_) return;
  // Peers tell every linked gateway the group; ours follows its own node's.
  if (type == static_cast<uint8_t>(protocol::FrameType::kGroupMembers)) return;
  if (Status s = deliver_to_gateway(gateway_, node, type, payload); !s) {
    spdlog::warn("gateway dropped a frame from node {}: {}", node, s.to_string());
  }
  schedule_flush();
}

void Driver::schedule_flush() {
  // While a batch is being written its completion pumps and flushes.
  if (flush_scheduled_ || host_.writing()) return;
  flush_scheduled_ = true;
  // Posted, not called: requests read in this loop iteration join the batch.
  boost::asio::post(io_, [this] {
    flush_scheduled_ = false;
    pump();
    flush();
  });
}

void Driver::flush() {
  if (read_only_) return;
  pump();
  // The host gives the node its chance to add an epoch ordering the txs of
  // this very write.
  std::optional<host::PendingWrite> write = host_.take_write();
  pump();
  if (!write) return;
  wal_pending_bytes_.set(0);
  for (const WriteStep& step : write->steps) {
    wal_records_.inc(step.batch->records());
    wal_bytes_.inc(step.batch->bytes());
  }
  {
    std::lock_guard lock(mu_);
    MAROON_ASSERT(!to_write_);
    to_write_ = std::move(write);
  }
  cv_.notify_one();
}

void Driver::wal_thread_main() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return wal_thread_stop_ || to_write_.has_value(); });
    if (!to_write_) return;  // stopping, nothing left to write
    host::PendingWrite write = std::move(*to_write_);
    to_write_.reset();
    lock.unlock();
    auto t0 = std::chrono::steady_clock::now();
    Status s = data_dir_->write(write.steps);
    wal_first_segment_.store(data_dir_->wal().first_segment(), std::memory_order_relaxed);
    auto micros = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - t0)
                                            .count());
    boost::asio::post(io_, [this, s = std::move(s), last_seq = write.last_seq, micros] {
      on_batch_written(s, last_seq, micros);
    });
    lock.lock();
  }
}

void Driver::on_batch_written(const Status& status, uint64_t last_seq, uint64_t micros) {
  wal_batches_.inc();
  wal_sync_latency_.observe_us(micros);
  if (!status.is_ok()) {
    host_.write_failed();
    fail_writes(status);
    return;
  }
  // Start the next write as soon as the held messages are out (what arrived
  // during this sync, plus the epoch ordering it): executing this write's
  // txs and answering their clients then overlaps the next fdatasync.
  host_.written(last_seq, [this] {
    pump();
    flush();
  });
  pump();
  apply_backpressure();
  schedule_flush();
  // The log grows by writes: the moment to see whether a snapshot is due,
  // and to publish one waiting for this write to be durable.
  maybe_snapshot();
}

void Driver::fail_writes(const Status& status) {
  read_only_ = true;
  read_only_gauge_.set(1);
  read_only_reason_ = fmt::format(
      "the WAL failed ({}); this node refuses writes until restarted. Nothing acknowledged is lost",
      status.to_string());
  spdlog::error("{}", read_only_reason_);
  // None of these was acknowledged, but a failed fdatasync may still have
  // left their records on disk, so a restart may execute them: the client
  // must learn that the outcome is unknown, not that the write failed.
  const std::string unknown = fmt::format(
      "outcome unknown: the WAL failed while this write was in flight ({}); it may or may not "
      "take effect. The node refuses writes until restarted",
      status.to_string());
  waiting_.fail_all(outcome_unknown(unknown));
}

void Driver::schedule_tick() {
  tick_timer_.expires_after(std::chrono::milliseconds(options_.tick_ms));
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    on_tick();
    schedule_tick();
  });
}

void Driver::on_tick() {
  if (!read_only_) {
    // Every tick the monotonic clock says is due, missed ones included: a
    // stalled loop must not stretch leases, promises and deadlines in real
    // time.
    const uint64_t due = tick_clock_->due(monotonic_us());
    for (uint64_t i = 0; i < due; i++) {
      host_.tick(wall_clock_ms());
      // In a cluster the gateway refuses requests at once while the node
      // knows there is no quorum, and answers those in flight past the
      // deadline.
      if (options_.cluster) {
        gateway_.set_quorum(sequencer_.has_quorum(), sequencer_.no_quorum_reason());
      }
      gateway_.tick();
    }
    log_transfer();
    pump();
    schedule_flush();
    maybe_snapshot();
  }
  update_gauges();
}

void Driver::log_transfer() {
  const std::optional<EpochNumber> need = node_.snapshot_needed();
  if (need && !logged_need_) {
    spdlog::warn("this node lags beyond what its peers keep ({}): fetching a peer's snapshot of "
                 "epoch {} or later",
                 node_.snapshot_needed_why(), need->value());
  }
  logged_need_ = need.has_value();
  const host::TransferStatus t = host_.transfer_status();
  if (t.last_error != logged_transfer_error_ && !t.last_error.empty()) {
    spdlog::warn("snapshot transfer: {}", t.last_error);
  }
  logged_transfer_error_ = t.last_error;
  if (t.installed != logged_installs_) {
    spdlog::info("installed a snapshot of epoch {} (from a peer, or the bootstrap file; {} bytes "
                 "received from peers in all); taking a snapshot of this node's own",
                 node_.installed_epoch().value(), t.bytes_received);
    logged_installs_ = t.installed;
  }
}

Status Driver::request_snapshot() {
  if (!started_ || read_only_ || shutting_down_) {
    return unavailable("not serving: " + status().detail);
  }
  host_.request_snapshot();
  boost::asio::post(io_, [this] { maybe_snapshot(); });
  return Status::ok();
}

Result<Engine::BackupTicket> Driver::request_backup() {
  if (!uploader_) {
    return invalid_argument("no backup store is configured: start the node with --backup-to "
                            "(maroon dev) or a [backup] section in the cluster config");
  }
  if (Status s = request_snapshot(); !s) return s;
  // The snapshot asked for is of the applied state now, or later.
  BackupTicket t;
  t.min_epoch = node_.applied_epoch().value();
  t.uploads = uploader_->force_next(t.min_epoch);
  return t;
}

void Driver::maybe_snapshot() {
  if (read_only_ || shutting_down_) return;
  if (host_.snapshot_due()) {
    snapshot_began_ = std::chrono::steady_clock::now();
    if (Status s = host_.begin_snapshot(); !s) {
      // Retried once the settings say so again (another interval of log).
      spdlog::warn("could not begin a snapshot: {}", s.to_string());
      snapshot_failures_.inc();
      return;
    }
    const auto captured_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::steady_clock::now() - snapshot_began_)
                                 .count();
    spdlog::info("snapshot of epoch {} begun (captured in {} us)", node_.applied_epoch().value(),
                 captured_us);
  }
  snapshot_work();
}

void Driver::snapshot_work() {
  if (snapshot_work_posted_) return;
  const bool was_taking = host_.snapshot_in_progress();
  host::NodeHost::SnapshotStep step = host_.snapshot_step();
  if (was_taking && !host_.snapshot_in_progress() && !host_.snapshot_error().is_ok()) {
    spdlog::warn("snapshot abandoned: {}", host_.snapshot_error().to_string());
    snapshot_failures_.inc();
  }
  if (!step.jobs.empty()) {
    {
      std::lock_guard lock(snap_mu_);
      for (host::NodeHost::SnapshotJob& j : step.jobs) snapshot_jobs_.push_back(std::move(j));
    }
    snap_cv_.notify_one();
  }
  if (step.more) {
    snapshot_work_posted_ = true;
    boost::asio::post(io_, [this] {
      snapshot_work_posted_ = false;
      snapshot_work();
    });
  }
}

void Driver::snapshot_thread_main() {
  std::unique_lock lock(snap_mu_);
  while (true) {
    snap_cv_.wait(lock, [this] { return snapshot_thread_stop_ || !snapshot_jobs_.empty(); });
    if (snapshot_thread_stop_) return;  // a snapshot in progress is abandoned with the process
    host::NodeHost::SnapshotJob job = std::move(snapshot_jobs_.front());
    snapshot_jobs_.pop_front();
    lock.unlock();
    Status s = job.run();
    // The rate bound: a job of n bytes takes at least n / rate.
    if (const uint64_t rate = options_.snapshots.write_mib_per_s; rate != 0 && job.bytes > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(job.bytes / rate));
    }
    boost::asio::post(io_, [this, id = job.snapshot, publishes = job.publishes,
                            s = std::move(s)] {
      const bool was_taking = host_.snapshot_in_progress();
      host_.snapshot_job_done(id, publishes, s);
      if (!s && was_taking && !host_.snapshot_in_progress()) {
        spdlog::warn("snapshot abandoned: {}", s.to_string());
        snapshot_failures_.inc();
      } else if (publishes && s && !host_.snapshots().empty()) {
        const host::SnapshotInfo& info = host_.snapshots().back();
        const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - snapshot_began_)
                                .count();
        spdlog::info("snapshot of epoch {} written: {} ({} bytes) in {} ms", info.epoch,
                     info.path, info.bytes, millis);
        snapshots_taken_.inc();
        snapshot_bytes_.set(static_cast<int64_t>(info.bytes));
        snapshot_epoch_.set(static_cast<int64_t>(info.epoch));
        snapshot_duration_.observe_us(static_cast<uint64_t>(millis) * 1000);
        if (uploader_) uploader_->offer(info.epoch, info.path, info.bytes);
        schedule_flush();  // the compaction goes with the next write
      }
      snapshot_work();
    });
    lock.lock();
  }
}

void Driver::join_snapshot_thread() {
  {
    std::lock_guard lock(snap_mu_);
    snapshot_thread_stop_ = true;
  }
  snap_cv_.notify_all();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
}

void Driver::update_gauges() {
  if (uploader_) {
    const objstore::UploaderStatus b = uploader_->status();
    backup_uploads_.set(static_cast<int64_t>(b.uploads));
    backup_failures_.set(static_cast<int64_t>(b.failures));
    backup_epoch_.set(static_cast<int64_t>(b.last_epoch));
  }
  inflight_txs_.set(static_cast<int64_t>(waiting_.size()));
  held_txs_.set(static_cast<int64_t>(node_.held_txs()));
  wal_pending_bytes_.set(static_cast<int64_t>(pending_bytes()));
  const SequencerStatus q = sequencer_.status();
  view_gauge_.set(static_cast<int64_t>(q.view));
  committed_epoch_.set(static_cast<int64_t>(node_.committed_epoch().value()));
  epochs_waiting_.set(static_cast<int64_t>(node_.epochs_waiting()));
  retained_bytes_.set(static_cast<int64_t>(node_.retained_bytes()));
  const bool quorum = sequencer_.has_quorum();
  quorum_metrics_.update(quorum, quorum ? std::string() : sequencer_.no_quorum_reason(), waiting_);
  if (node_net_) {
    net_queued_bytes_.set(
        static_cast<int64_t>(node_net_->queued_bytes_total() + gateway_net_->queued_bytes_total()));
  }
  applied_epoch_.set(static_cast<int64_t>(node_.applied_epoch().value()));
  if (kv_ != nullptr) kv_keys_.set(static_cast<int64_t>(kv_->size()));
  // Counters mirrored from the node's own.
  const NodeCounters& c = node_.counters();
  if (c.txs_applied > txs_applied_.value()) txs_applied_.inc(c.txs_applied - txs_applied_.value());
  if (c.epochs_applied > epochs_applied_.value()) {
    epochs_applied_.inc(c.epochs_applied - epochs_applied_.value());
  }
  auto mirror = [](Counter& to, uint64_t from) {
    if (from > to.value()) to.inc(from - to.value());
  };
  mirror(txs_received_, c.txs_received);
  mirror(txs_ordered_, c.txs_ordered);
  mirror(txs_pulled_, c.txs_pulled);
  mirror(epochs_proposed_, c.epochs_proposed);
  mirror(ranges_sealed_, c.ranges_sealed);
  mirror(ranges_retired_, c.ranges_retired);
  mirror(txs_conflicting_, c.txs_conflicting);
  mirror(txs_replaced_, c.txs_replaced);
  if (node_net_) {
    mirror(peer_links_refused_,
           node_net_->counters().links_refused + gateway_net_->counters().links_refused);
  }
  ranges_kept_.set(static_cast<int64_t>(node_.ranges_kept()));
  const host::TransferStatus t = host_.transfer_status();
  mirror(snapshot_installs_, t.installed);
  mirror(transfer_received_, t.bytes_received);
  mirror(transfer_sent_, t.bytes_sent);
}

void Driver::shutdown(std::function<void()> done) {
  MAROON_ASSERT(!shutting_down_);
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  shutdown_deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.drain_ms);
  poll_shutdown();
}

void Driver::poll_shutdown() {
  bool drained = waiting_.size() == 0 && !host_.writing();
  if (drained || read_only_ || std::chrono::steady_clock::now() >= shutdown_deadline_) {
    if (!drained) spdlog::warn("shutting down with {} txs unanswered", waiting_.size());
    tick_timer_.cancel();
    if (node_net_) node_net_->close();
    if (gateway_net_) gateway_net_->close();
    {
      std::lock_guard lock(mu_);
      wal_thread_stop_ = true;
    }
    cv_.notify_all();
    if (wal_thread_.joinable()) wal_thread_.join();
    join_snapshot_thread();
    uploader_.reset();  // an upload in progress is abandoned (docs/backups.md)
    // Every write has ended: record where the log ends, so the next start
    // can tell a short or damaged log from a torn write.
    if (!read_only_ && data_dir_ && !data_dir_->wal().failed()) {
      if (Status s = data_dir_->mark_clean_shutdown(); !s) {
        spdlog::warn("could not record the clean shutdown: {}", s.to_string());
      }
    }
    auto done = std::move(shutdown_done_);
    done();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(5));
  shutdown_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) poll_shutdown();
  });
}

}  // namespace maroon::server
