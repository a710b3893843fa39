#include "server/driver.h"

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <random>

#include "common/codec.h"
#include "common/limits.h"
#include "storage/superblock.h"

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

// The superblock names the data directory (format version, node id and a
// random id made when the directory was created) and holds the sequencer's
// durable VR state (docs/formats.md).
constexpr uint8_t kDataFormat = 2;

std::string encode_superblock(uint64_t node_id, uint64_t data_id, std::string_view vr_state) {
  std::string payload;
  ByteWriter w(payload);
  w.u8(kDataFormat);
  w.u64(node_id);
  w.u64(data_id);
  w.bytes(vr_state);
  return payload;
}

Status open_identity(Env& env, const std::string& data_dir, std::unique_ptr<Superblock>& out,
                     uint64_t& node_id, uint64_t& data_id, std::string& vr_state) {
  if (Status s = env.create_dirs(data_dir); !s) return s;
  auto superblock = Superblock::open(env, data_dir + "/superblock");
  if (!superblock) return superblock.status();
  out = std::move(superblock).value();
  if (!out->current()) {
    std::random_device rd;
    data_id = (uint64_t{rd()} << 32) ^ rd();
    node_id = 1;
    vr_state.clear();
    return out->write(encode_superblock(node_id, data_id, {}));
  }
  ByteReader r(*out->current());
  uint8_t format = 0;
  if (!r.u8(format) || format != kDataFormat) {
    return corruption(fmt::format(
        "{}: data format {} is not one this build reads ({}){}", data_dir, format, kDataFormat,
        format == 1 ? "; format 1 is from a build before VR: start with a fresh data directory"
                    : ""));
  }
  std::string_view state;
  if (!r.u64(node_id) || !r.u64(data_id) || !r.bytes(state, 64 * 1024) || !r.at_end()) {
    return corruption(data_dir + "/superblock: malformed identity");
  }
  vr_state = state;
  return Status::ok();
}

}  // namespace

Driver::Driver(boost::asio::io_context& io, DriverOptions options)
    : io_(io),
      options_(std::move(options)),
      node_(NodeConfig{.order_unsynced_txs = true, .gateways_in_process = true}, sequencer_),
      // In-process delivery never loses a message: retries would only copy.
      gateway_(GatewayConfig{.id = GatewayId(pick_gateway_id()), .retries = false}),
      tick_timer_(io),
      shutdown_timer_(io),
      pending_(std::make_unique<WalBatch>()),
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
      read_only_gauge_(registry_.gauge("maroon_read_only", "1 if a WAL error made the node refuse writes")) {
  if (options_.env == nullptr) {
    own_env_ = std::make_unique<PosixEnv>();
    env_ = own_env_.get();
  } else {
    env_ = options_.env;
  }
  node_.register_app(AppId::kKv, kv_);
}

Driver::~Driver() {
  {
    std::lock_guard lock(mu_);
    wal_thread_stop_ = true;
  }
  cv_.notify_all();
  if (wal_thread_.joinable()) wal_thread_.join();
}

Status Driver::start() {
  MAROON_ASSERT(!started_);
  auto t0 = std::chrono::steady_clock::now();
  std::string vr_state;
  if (Status s = open_identity(*env_, options_.data_dir, superblock_, node_id_, data_id_, vr_state);
      !s) {
    return s;
  }
  if (own_env_ != nullptr) {
    auto lock = DirLock::acquire(options_.data_dir);
    if (!lock) return lock.status();
    dir_lock_.emplace(std::move(lock).value());
  }
  WalOptions wal_options;
  if (options_.wal_segment_bytes != 0) wal_options.segment_bytes = options_.wal_segment_bytes;
  if (!vr_state.empty()) {
    if (Status s = node_.replay(RecordType::kVrState, vr_state); !s) {
      return Status(s.code(), options_.data_dir + "/superblock: " + s.message());
    }
  }
  auto last_progress = t0;
  Result<std::unique_ptr<Wal>> wal = Wal::open(
      *env_, options_.data_dir + "/wal", wal_options,
      [&](Lsn, uint8_t type, std::string_view payload) -> Status {
        replay_stats_.records++;
        if (type == static_cast<uint8_t>(RecordType::kVrLog)) replay_stats_.epochs++;
        if (type == static_cast<uint8_t>(RecordType::kTx)) replay_stats_.txs++;
        if ((replay_stats_.records & 0xffff) == 0) {
          auto now = std::chrono::steady_clock::now();
          if (now - last_progress > std::chrono::seconds(1)) {
            last_progress = now;
            spdlog::info("replaying WAL: {} records, {} txs so far", replay_stats_.records,
                         replay_stats_.txs);
          }
        }
        return node_.replay(static_cast<RecordType>(type), payload);
      });
  if (!wal) return wal.status();
  wal_ = std::move(wal).value();
  node_.finish_replay();
  replay_stats_.millis = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  started_ = true;
  wal_thread_ = std::thread([this] { wal_thread_main(); });
  node_.tick(wall_clock_ms());
  pump();
  schedule_flush();
  schedule_tick();
  return Status::ok();
}

void Driver::submit(AppId app, std::string op, ReplyFn done) {
  MAROON_ASSERT(started_);
  if (app != AppId::kKv) {
    done(invalid_argument(fmt::format("unknown app {}", static_cast<int>(app))), {});
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
  if (pending_->bytes() + unrouted_bytes_ + op_bytes > limits::wal_batch_bytes_max &&
      unrouted_bytes_ + pending_->bytes() > 0) {
    txs_refused_.inc();
    done(overloaded("the WAL is behind; retry shortly"), {});
    return;
  }
  uint64_t token = add_waiting(std::move(done));
  Result<TxId> id = gateway_.submit(app, std::move(op), token);
  if (!id) {
    txs_refused_.inc();
    take_waiting(token).done(id.status(), {});
    return;
  }
  txs_submitted_.inc();
  unrouted_bytes_ += op_bytes;
  // The tx waits in the gateway's output; the posted flush (or the batch in
  // flight completing) carries everything submitted meanwhile to the node.
  schedule_flush();
}

Result<std::string> Driver::read(AppId app, std::string_view op) {
  if (app != AppId::kKv) return invalid_argument(fmt::format("unknown app {}", static_cast<int>(app)));
  if (!started_) return unavailable("the node is starting");
  return kv_.read(op);
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
  s.node_id = node_id_;
  s.data_id = data_id_;
  s.range = gateway_.range().value();
  s.applied_epoch = node_.applied_epoch().value();
  s.applied_txs = node_.counters().txs_applied;
  s.state_hash = node_.state_hash();
  s.inflight_txs = gateway_.inflight();
  return s;
}

// Carries messages between the cores until neither has anything to say.
void Driver::pump() {
  for (int rounds = 0;; rounds++) {
    MAROON_ASSERT(rounds < 1000);
    GatewayOutput g = gateway_.take_output();
    unrouted_bytes_ = 0;
    for (GatewayToNode& m : g.to_nodes) {
      if (auto* tx = std::get_if<TxMsg>(&m)) {
        node_.on_tx(gateway_.id(), std::move(*tx));
      } else {
        node_.on_lease_request(std::get<LeaseRequest>(m));
      }
    }
    const auto now = g.deliveries.empty() ? std::chrono::steady_clock::time_point{}
                                          : std::chrono::steady_clock::now();
    for (Delivery& d : g.deliveries) {
      Waiting w = take_waiting(d.token);
      auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now - w.submitted);
      commit_latency_.observe_us(static_cast<uint64_t>(micros.count()));
      txs_completed_.inc();
      if (d.expired) {
        w.done(unavailable("the tx was executed, but its result is no longer kept"), {});
      } else {
        w.done(Status::ok(), d.reply);
      }
    }
    Output out = node_.take_output();
    if (g.to_nodes.empty() && g.deliveries.empty() && out.empty()) return;
    route(std::move(out));
  }
}

void Driver::route(Output out) {
  for (PersistRecord& r : out.persist) {
    if (r.type == RecordType::kVrState) {
      pending_state_ = std::move(r.payload);  // only the newest matters
    } else {
      pending_->add(static_cast<uint8_t>(r.type), r.payload);
    }
  }
  if (!out.persist.empty()) pending_last_seq_ = out.next_seq() - 1;
  for (GatewayEnvelope& e : out.send_now) gateway_.on_message(std::move(e.msg));
  if (!out.send_after_persist.empty()) {
    // Waits for every record emitted so far, not only this output's.
    uint64_t needed = out.next_seq() - 1;
    for (GatewayEnvelope& e : out.send_after_persist) {
      if (needed <= durable_seq_) {
        gateway_.on_message(std::move(e.msg));
      } else {
        after_persist_.emplace_back(needed, std::move(e));
      }
    }
  }
}

uint64_t Driver::add_waiting(ReplyFn done) {
  MAROON_ASSERT(done);
  uint64_t token;
  if (free_slots_.empty()) {
    token = waiting_.size();
    waiting_.emplace_back();
  } else {
    token = free_slots_.back();
    free_slots_.pop_back();
  }
  waiting_[token] = Waiting{std::move(done), std::chrono::steady_clock::now()};
  waiting_count_++;
  return token;
}

Driver::Waiting Driver::take_waiting(uint64_t token) {
  MAROON_ASSERT(token < waiting_.size() && waiting_[token].done);
  Waiting w = std::move(waiting_[token]);
  waiting_[token].done = nullptr;
  free_slots_.push_back(token);
  waiting_count_--;
  return w;
}

void Driver::schedule_flush() {
  // While a batch is being written its completion pumps and flushes.
  if (flush_scheduled_ || writing_) return;
  flush_scheduled_ = true;
  // Posted, not called: requests read in this loop iteration join the batch.
  boost::asio::post(io_, [this] {
    flush_scheduled_ = false;
    pump();
    flush();
  });
}

void Driver::flush() {
  if (writing_ || read_only_) return;
  // The node may add an epoch ordering the txs of this very batch.
  node_.on_flush();
  pump();
  if (pending_->empty() && !pending_state_) return;
  writing_ = true;
  wal_pending_bytes_.set(0);
  wal_records_.inc(pending_->records());
  wal_bytes_.inc(pending_->bytes());
  {
    std::lock_guard lock(mu_);
    MAROON_ASSERT(to_write_ == nullptr);
    to_write_ = std::move(pending_);
    to_write_last_seq_ = pending_last_seq_;
    to_write_state_ = std::exchange(pending_state_, std::nullopt);
  }
  cv_.notify_one();
  pending_ = std::make_unique<WalBatch>();
}

void Driver::wal_thread_main() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return wal_thread_stop_ || to_write_ != nullptr; });
    if (to_write_ == nullptr) return;  // stopping, nothing left to write
    std::unique_ptr<WalBatch> batch = std::move(to_write_);
    uint64_t last_seq = to_write_last_seq_;
    std::optional<std::string> state = std::exchange(to_write_state_, std::nullopt);
    lock.unlock();
    auto t0 = std::chrono::steady_clock::now();
    Status s;
    if (state) s = superblock_->write(encode_superblock(node_id_, data_id_, *state));
    if (s.is_ok()) s = wal_->write(*batch);
    auto micros = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - t0)
                                            .count());
    boost::asio::post(io_, [this, s = std::move(s), last_seq, micros] {
      on_batch_written(s, last_seq, micros);
    });
    lock.lock();
  }
}

void Driver::on_batch_written(const Status& status, uint64_t last_seq, uint64_t micros) {
  MAROON_ASSERT(writing_);
  writing_ = false;
  wal_batches_.inc();
  wal_sync_latency_.observe_us(micros);
  if (!status.is_ok()) {
    fail_writes(status);
    return;
  }
  MAROON_ASSERT(last_seq >= durable_seq_);
  durable_seq_ = last_seq;
  while (!after_persist_.empty() && after_persist_.front().first <= durable_seq_) {
    gateway_.on_message(std::move(after_persist_.front().second.msg));
    after_persist_.pop_front();
  }
  // Start the next batch first (what arrived during this sync, plus the
  // epoch ordering it): executing this batch's txs and answering their
  // clients then overlaps the next fdatasync instead of delaying it.
  pump();
  flush();
  node_.on_persisted(durable_seq_);
  pump();
  schedule_flush();
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
  for (uint64_t token = 0; token < waiting_.size(); token++) {
    if (!waiting_[token].done) continue;
    take_waiting(token).done(unavailable(unknown), {});
  }
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
    node_.tick(wall_clock_ms());
    gateway_.tick();
    pump();
    schedule_flush();
  }
  update_gauges();
}

void Driver::update_gauges() {
  inflight_txs_.set(static_cast<int64_t>(waiting_count_));
  held_txs_.set(static_cast<int64_t>(node_.held_txs()));
  wal_pending_bytes_.set(static_cast<int64_t>(pending_->bytes()));
  applied_epoch_.set(static_cast<int64_t>(node_.applied_epoch().value()));
  kv_keys_.set(static_cast<int64_t>(kv_.size()));
  // Counters mirrored from the node's own.
  const NodeCounters& c = node_.counters();
  if (c.txs_applied > txs_applied_.value()) txs_applied_.inc(c.txs_applied - txs_applied_.value());
  if (c.epochs_applied > epochs_applied_.value()) {
    epochs_applied_.inc(c.epochs_applied - epochs_applied_.value());
  }
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
  bool drained = waiting_count_ == 0 && !writing_;
  if (drained || read_only_ || std::chrono::steady_clock::now() >= shutdown_deadline_) {
    if (!drained) spdlog::warn("shutting down with {} txs unanswered", waiting_count_);
    tick_timer_.cancel();
    {
      std::lock_guard lock(mu_);
      wal_thread_stop_ = true;
    }
    cv_.notify_all();
    if (wal_thread_.joinable()) wal_thread_.join();
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
