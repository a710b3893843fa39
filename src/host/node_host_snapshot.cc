// NodeHost's snapshots (docs/snapshots.md): taking one while the node keeps
// serving, publishing it once the log is durable through its point,
// compacting the log behind it, and restoring the newest valid one at a
// restart. The file layout is storage/snapshot_file.h's; the chunk kinds
// and the header are snapshot_layout.h's.
#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <memory>

#include "common/codec.h"
#include "host/node_host.h"
#include "host/snapshot_fetch.h"
#include "host/snapshot_layout.h"
#include "storage/snapshot_file.h"
#include "storage/wal_format.h"

namespace maroon::host {

using namespace snapshot_layout;

namespace {

// A marker's content: a file name, so small.
Result<std::string> read_small_file(Env& env, const std::string& path) {
  auto f = env.open(path, /*create=*/false);
  if (!f) return f.status();
  auto size = (*f)->size();
  if (!size) return size.status();
  if (*size > 4096) return corruption(fmt::format("{}: {} bytes, not a marker", path, *size));
  std::string out;
  if (Status s = (*f)->read_at(0, static_cast<size_t>(*size), out); !s) return s;
  return out;
}

}  // namespace

struct NodeHost::Taking {
  uint64_t id = 0;
  NodeSnapshot snap;
  std::shared_ptr<SnapshotFileWriter> writer;  // used by jobs only, one at a time
  uint64_t cut_seq = 0;  // every record the capture reflects has seq <= this
  uint64_t lsn = 0;
  size_t app = 0;
  bool app_open = false;
  bool sequencer_written = false;
  bool syncing = false;
  // Of the state a peer's snapshot installed: once published, every older
  // snapshot and the log before it go (they lead to a state the records
  // after the install do not fit), and the WAL's barrier is released.
  bool base = false;
  std::string piece;
  std::string sequencer_state;  // at the capture (kSequencerState)
  // Chunks produced, not yet in a job; then the bytes of each job handed
  // out and not yet done, in order.
  std::vector<std::pair<uint8_t, std::string>> batch;
  size_t batch_bytes = 0;
  std::deque<size_t> in_flight;
  size_t in_flight_bytes = 0;

  void add(uint8_t kind, std::string payload) {
    batch_bytes += payload.size();
    batch.emplace_back(kind, std::move(payload));
  }
};

// Here, where Taking is complete.
NodeHost::NodeHost(Node& node, NodeSink& sink, size_t batch_bytes_max)
    : node_(node), sink_(sink), order_(batch_bytes_max) {}

NodeHost::~NodeHost() = default;

void NodeHost::set_snapshots(Env& env, SnapshotSettings settings) {
  MAROON_ASSERT(!settings.dir.empty() && settings.kept >= 1 && settings.step_bytes > 0);
  snapshot_env_ = &env;
  snapshot_settings_ = std::move(settings);
  // A cluster node that lags too far fetches a peer's snapshot instead of
  // stopping (node_host_transfer.cc).
  if (node_.members().size() > 1) node_.enable_snapshot_transfer();
}

bool NodeHost::snapshot_due() const {
  // Not of a node that stopped on a fault (diverged from its peers): the
  // snapshots and log it has are what a fixed build could rebuild from.
  if (!snapshots_enabled() || taking_ != nullptr || failed_ || !node_.fault().is_ok()) return false;
  if (snapshot_requested_) return true;
  const SnapshotSettings& s = snapshot_settings_;
  if (s.log_bytes != 0) {
    const uint64_t since = order_.record_bytes_added() - record_bytes_at_snapshot_;
    const uint64_t last_size = published_.empty() ? 0 : published_.back().bytes;
    if (since >= std::max(s.log_bytes, last_size)) return true;
  }
  return s.epochs != 0 && node_.applied_epoch().value() >= epoch_at_snapshot_ + s.epochs;
}

Status NodeHost::begin_snapshot() {
  MAROON_ASSERT(snapshots_enabled() && taking_ == nullptr);
  if (!node_.fault().is_ok()) {
    return unavailable("no snapshot of a node that stopped on a fault: " + node_.fault().message());
  }
  drain();
  auto t = std::make_unique<Taking>();
  t->cut_seq = order_.emitted_seq();
  t->lsn = wal_lsn_at_open_ + order_.records_added();
  t->snap = node_.begin_snapshot();
  t->sequencer_state = sequencer_state_;
  t->base = install_base_pending_;
  Header h{.node_id = node_.id().value(),
           .epoch = t->snap.epoch.value(),
           .logical_time_ms = t->snap.logical_time_ms,
           .state_hash = t->snap.state_hash,
           .lsn = t->lsn,
           .cluster_id = snapshot_settings_.cluster_id};
  snapshot_requested_ = false;
  record_bytes_at_snapshot_ = order_.record_bytes_added();
  epoch_at_snapshot_ = h.epoch;
  auto writer = SnapshotFileWriter::create(*snapshot_env_, snapshot_settings_.dir, h.epoch,
                                           encode_header(h));
  if (!writer) {
    snapshot_error_ = writer.status();
    return writer.status();
  }
  t->writer = std::move(writer).value();
  t->id = ++snapshot_counter_;
  const std::string& state = t->snap.state;
  for (size_t at = 0; at < state.size(); at += kStateChunkBytes) {
    t->add(kNodeState, state.substr(at, kStateChunkBytes));
  }
  t->snap.state = {};
  taking_ = std::move(t);
  return Status::ok();
}

void NodeHost::fail_snapshot(Status s) {
  MAROON_ASSERT(taking_ != nullptr && !s.is_ok());
  // After the jobs already handed out, which fail or are ignored.
  if (taking_->base) {
    // Taken again at once; meanwhile the log goes on (a crash before the
    // retry is published restarts from the older state, where records
    // written after the install may not fit: the node then stops, saying so).
    snapshot_requested_ = true;
    if (order_.barrier()) order_.release_barrier();
  }
  std::shared_ptr<SnapshotFileWriter> writer = taking_->writer;
  jobs_out_.push_back(SnapshotJob{[writer] {
                                    writer->abandon();
                                    return Status::ok();
                                  },
                                  taking_->id, false});
  taking_.reset();  // the app cursors end here
  snapshot_error_ = std::move(s);
}

NodeHost::SnapshotStep NodeHost::snapshot_step() {
  SnapshotStep out;
  if (taking_ != nullptr && !taking_->syncing) {
    Taking& t = *taking_;
    size_t budget = snapshot_settings_.step_bytes;
    auto room = [&] { return t.in_flight_bytes + t.batch_bytes < kSnapshotBytesInFlightMax; };
    bool stopped = false;  // by the budget or the bound, with more to produce
    while (t.app < t.snap.apps.size() && !stopped) {
      auto& [app, cursor] = t.snap.apps[t.app];
      if (!t.app_open) {
        t.add(kAppBegin, encode_app_begin(app));
        t.app_open = true;
        continue;
      }
      if (!room()) {
        stopped = true;
        break;
      }
      t.piece.clear();
      if (cursor->next(t.piece, budget)) {
        MAROON_ASSERT(t.piece.size() <= limits::snapshot_piece_bytes_max);
        const size_t n = t.piece.size();
        t.add(kAppPiece, std::move(t.piece));
        t.piece = std::string();
        // Once the budget is spent the loop goes back to serving.
        if (n >= budget) {
          stopped = true;
        } else {
          budget -= n;
        }
      } else {
        t.add(kAppEnd, {});
        cursor.reset();  // the app stops keeping pre-images now
        t.app_open = false;
        t.app++;
      }
    }
    if (!stopped && !t.sequencer_written) {
      if (!t.sequencer_state.empty()) t.add(kSequencerState, std::move(t.sequencer_state));
      for (PersistRecord& r : t.snap.sequencer) {
        std::string chunk(1, static_cast<char>(r.type));
        chunk.append(r.payload);
        t.add(kSequencerRecord, std::move(chunk));
      }
      t.snap.sequencer.clear();
      t.sequencer_written = true;
    }
    if (!t.batch.empty()) {
      std::shared_ptr<SnapshotFileWriter> writer = t.writer;
      out.jobs.push_back(SnapshotJob{[writer, chunks = std::move(t.batch)] {
                                       for (const auto& [kind, payload] : chunks) {
                                         if (Status s = writer->add(kind, payload); !s) return s;
                                       }
                                       return Status::ok();
                                     },
                                     t.id, false, t.batch_bytes});
      t.in_flight.push_back(t.batch_bytes);
      t.in_flight_bytes += t.batch_bytes;
      t.batch.clear();
      t.batch_bytes = 0;
    }
    out.more = stopped && room();
    // Published only once every chunk is written and the log holds
    // everything the snapshot reflects: a snapshot is never ahead of its log.
    if (t.sequencer_written && t.in_flight.empty() && out.jobs.empty() &&
        order_.durable_seq() >= t.cut_seq) {
      MAROON_ASSERT(order_.durable_seq() >= t.cut_seq);
      t.syncing = true;
      std::shared_ptr<SnapshotFileWriter> writer = t.writer;
      out.jobs.push_back(SnapshotJob{[writer] {
                                       if (Status s = writer->finish(); !s) return s;
                                       return writer->publish();
                                     },
                                     t.id, true});
    }
  }
  // Jobs queued earlier (an abandoned snapshot's clean-up) go first.
  if (!jobs_out_.empty()) {
    for (SnapshotJob& j : out.jobs) jobs_out_.push_back(std::move(j));
    out.jobs = std::move(jobs_out_);
    jobs_out_.clear();
  }
  return out;
}

void NodeHost::snapshot_job_done(uint64_t snapshot, bool publishes, const Status& status) {
  if (taking_ == nullptr || taking_->id != snapshot) return;  // abandoned meanwhile
  if (!publishes) {
    MAROON_ASSERT(!taking_->in_flight.empty());
    taking_->in_flight_bytes -= taking_->in_flight.front();
    taking_->in_flight.pop_front();
    if (!status) fail_snapshot(status);
    return;
  }
  MAROON_ASSERT(taking_->syncing);
  if (!status) {
    fail_snapshot(status);
    return;
  }
  SnapshotInfo info{.epoch = taking_->snap.epoch.value(),
                    .lsn = taking_->lsn,
                    .bytes = taking_->writer->bytes_written(),
                    .path = taking_->writer->path()};
  const bool base = taking_->base;
  taking_.reset();
  // A durable state of the node's own as new as the bootstrap file's: the
  // file is of no more use (installed, or never needed).
  if (info.epoch >= bootstrap_epoch_) drop_bootstrap();
  // A served file of this epoch is of the snapshot this one replaced.
  std::erase_if(served_files_, [&](const ServedFile& f) { return f.epoch == info.epoch; });
  if (base) {
    // The installed state is durable: what came before it goes.
    install_base_pending_ = false;
    node_.on_install_durable();
    if (order_.barrier()) order_.release_barrier();
    std::vector<std::string> old;
    for (SnapshotInfo& p : published_) {
      if (p.epoch != info.epoch) old.push_back(p.path);
    }
    published_.clear();
    published_.push_back(info);
    snapshots_taken_++;
    snapshot_error_ = Status::ok();
    order_.add_compaction(info.lsn, std::move(old));
    return;
  }
  snapshots_taken_++;
  snapshot_error_ = Status::ok();
  // A snapshot of the same epoch replaced its file.
  std::erase_if(published_, [&](const SnapshotInfo& p) { return p.epoch == info.epoch; });
  published_.push_back(std::move(info));
  std::sort(published_.begin(), published_.end(),
            [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.epoch < b.epoch; });
  // Keep the newest `kept`, and the log back to the oldest of them.
  const size_t kept = snapshot_settings_.kept;
  std::vector<std::string> old;
  while (published_.size() > kept) {
    old.push_back(published_.front().path);
    published_.erase(published_.begin());
  }
  // With fewer than `kept`, the log stays whole: it is what a damaged
  // snapshot falls back to.
  if (published_.size() == kept) order_.add_compaction(published_.front().lsn, std::move(old));
}

Result<SnapshotCover> NodeHost::load_snapshot(bool fresh_directory, ReplayCounts& counts,
                                              const std::function<void()>& after_restore) {
  MAROON_ASSERT(snapshots_enabled());
  Env& env = *snapshot_env_;
  const std::string& dir = snapshot_settings_.dir;
  auto numbers = list_snapshots(env, dir);
  if (!numbers) return numbers.status();
  const std::string marker = join_path(dir, kRestoreMarker);
  if (fresh_directory && !numbers->empty()) {
    // Prepared by `maroon restore` (mark_for_restore): restored once the
    // new identity is written.
    if (env.exists(marker)) {
      auto named = read_small_file(env, marker);
      if (!named) return named.status();
      if (numbers->size() != 1 || *named != snapshot_file_name(numbers->front())) {
        return corruption(fmt::format("{} names {}, but {} holds other snapshots too; prepare "
                                      "the directory again",
                                      marker, *named, dir));
      }
      SnapshotCover prepared;
      prepared.restore_after_identity = true;
      return prepared;
    }
    // The rule for a new identity: never over existing data.
    return corruption(fmt::format(
        "the superblock is missing or empty but {} holds snapshots; refusing to make a new "
        "identity over existing data (restore the superblock, or move the directory away to "
        "start fresh)",
        dir));
  }
  SnapshotCover cover;
  // A directory prepared by `maroon restore` starts from exactly the
  // snapshot its marker names, or not at all: passing it over would start
  // an empty node in its place.
  const bool prepared = env.exists(marker);
  // Every snapshot whose header reads says how far the log once reached,
  // the damaged ones too; the newest that verifies and restores is used.
  std::vector<SnapshotInfo> valid;
  auto pass_over = [&](const std::string& path, const std::string& why) {
    if (prepared) {
      warnings_.push_back(fmt::format("{} names {}, which cannot be restored: {}; nothing was "
                                      "changed (fetch it again: remove the directory and run "
                                      "`maroon restore` again)",
                                      marker, path, why));
      return;
    }
    warnings_.push_back(fmt::format("snapshot {} passed over: {}", path, why));
    // Kept for an operator to look at, out of the way of later starts.
    (void)env.rename(path, path + ".damaged");
  };
  for (uint64_t number : *numbers) {
    const std::string path = join_path(dir, snapshot_file_name(number));
    auto reader = SnapshotFileReader::open(env, path);
    if (!reader) {
      pass_over(path, reader.status().to_string());
      continue;
    }
    auto h = decode_header((*reader)->header());
    if (!h) {
      pass_over(path, h.status().to_string());
      continue;
    }
    if (h->node_id != node_.id().value()) {
      return corruption(fmt::format("{} is a snapshot of node {}, not of node {}: snapshots are "
                                    "not copied between nodes",
                                    path, h->node_id, node_.id().value()));
    }
    cover.reached = std::max(cover.reached, h->lsn);
    valid.push_back(SnapshotInfo{h->epoch, h->lsn, (*reader)->size(), path});
  }
  while (!valid.empty()) {
    const SnapshotInfo& newest = valid.back();
    auto reader = SnapshotFileReader::open(env, newest.path);
    const Status ok = reader ? (*reader)->verify() : reader.status();
    if (ok) break;
    pass_over(newest.path, ok.to_string());
    valid.pop_back();
  }
  if (prepared && node_.members().size() > 1) {
    return invalid_argument(fmt::format(
        "{}: a directory prepared by `maroon restore` starts a single node (maroon dev), not a "
        "node of a cluster of {}",
        marker, node_.members().size()));
  }
  if (prepared && (valid.size() != 1 || numbers->size() != 1)) {
    return corruption(fmt::format("{}: the snapshot it names cannot be restored{}", marker,
                                  warnings_.empty() ? "" : " (" + warnings_.back() + ")"));
  }
  if (!valid.empty()) (void)env.sync_dir(dir);  // the renames of passed-over ones
  published_ = valid;
  if (valid.empty()) return cover;
  uint64_t lsn = 0;
  if (Status s = restore_from(valid.back().path, lsn, counts, after_restore); !s) {
    // Verified whole, yet its content is wrong, and the node is half
    // restored: nothing to fall back to in this process.
    return Status(s.code(), fmt::format("{}: {}", valid.back().path, s.message()));
  }
  restored_ = valid.back();
  epoch_at_snapshot_ = restored_->epoch;
  cover.covered = lsn;
  if (env.exists(marker)) {
    if (!superblock_state_seen_ && sequencer_state_.empty()) {
      return invalid_argument(fmt::format(
          "{} holds no sequencer state (it was written by an older build): it cannot start a "
          "new data directory; restore a newer snapshot",
          restored_->path));
    }
    // The identity exists now: the directory starts like any other from here.
    if (Status s = env.remove(marker); !s) return s;
    if (Status s = env.sync_dir(dir); !s) return s;
  }
  return cover;
}

Status NodeHost::mark_for_restore(Env& env, const std::string& snapshots_dir, uint64_t epoch) {
  const std::string name = snapshot_file_name(epoch);
  if (!env.exists(join_path(snapshots_dir, name))) {
    return Status(Code::kNotFound, fmt::format("{} holds no {}", snapshots_dir, name));
  }
  const std::string marker = join_path(snapshots_dir, kRestoreMarker);
  const std::string temp = marker + ".tmp";
  auto f = env.open(temp, /*create=*/true);
  if (!f) return f.status();
  if (Status s = (*f)->truncate(0); !s) return s;
  if (Status s = (*f)->write_at(0, name); !s) return s;
  if (Status s = (*f)->sync(); !s) return s;
  f->reset();
  if (Status s = env.rename(temp, marker); !s) return s;
  return env.sync_dir(snapshots_dir);
}

Status NodeHost::restore_from(const std::string& path, uint64_t& lsn, ReplayCounts& counts,
                              const std::function<void()>& after_restore) {
  auto opened = SnapshotFileReader::open(*snapshot_env_, path);
  if (!opened) return opened.status();
  SnapshotFileReader& reader = **opened;
  auto h = decode_header(reader.header());
  if (!h) return h.status();
  std::string state;
  bool state_restored = false;
  auto restore_state = [&]() -> Status {
    if (state_restored) return Status::ok();
    state_restored = true;
    if (Status s = node_.restore_state(state); !s) return s;
    if (node_.applied_epoch().value() != h->epoch) {
      return corruption(fmt::format("the node state is at epoch {}, the header says {}",
                                    node_.applied_epoch().value(), h->epoch));
    }
    return Status::ok();
  };
  // Once the apps are restored: their state must be the snapshot's.
  auto check_apps = [&]() -> Status {
    if (node_.state_hash() != h->state_hash) {
      return corruption(fmt::format("the restored state hashes to {:016x}, the snapshot says "
                                    "{:016x}",
                                    node_.state_hash(), h->state_hash));
    }
    counts.snapshot = path;
    counts.snapshot_epoch = h->epoch;
    counts.snapshot_hash = h->state_hash;
    if (after_restore) after_restore();
    return Status::ok();
  };
  bool apps_checked = false;
  for (;;) {
    auto chunk = reader.next();
    if (!chunk) return chunk.status();
    if (!*chunk) break;
    const auto [kind, payload] = **chunk;
    if (kind == kNodeState) {
      if (state_restored) return corruption("node state after the apps");
      state.append(payload);
      continue;
    }
    if (Status s = restore_state(); !s) return s;
    if (kind == kAppBegin) {
      Result<AppId> app = decode_app_begin(payload, h->format);
      if (!app || apps_checked) return corruption("malformed app section");
      ChunkPieces pieces(reader);
      if (Status s = node_.restore_app(*app, pieces); !s) return s;
      if (!pieces.ended()) return corruption("an app's restore stopped before its end");
    } else if (kind == kSequencerRecord || kind == kSequencerState) {
      if (!apps_checked) {
        // Before the sequencer replays epochs into the apps.
        apps_checked = true;
        if (Status s = check_apps(); !s) return s;
      }
      if (kind == kSequencerState) {
        // The superblock's state is newer, if it has one; a directory made
        // by `maroon restore` has none, and takes the snapshot's.
        if (superblock_state_seen_) continue;
        if (Status s = node_.replay(RecordType::kVrState, payload); !s) return s;
        sequencer_state_ = std::string(payload);
        continue;
      }
      if (payload.empty()) return corruption("empty sequencer record");
      if (Status s = node_.replay(static_cast<RecordType>(payload[0]), payload.substr(1)); !s) {
        return s;
      }
    } else {
      return corruption(fmt::format("unknown chunk kind {}", kind));
    }
  }
  if (Status s = restore_state(); !s) return s;
  if (!apps_checked) {
    if (Status s = check_apps(); !s) return s;
  }
  lsn = h->lsn;
  return Status::ok();
}

}  // namespace maroon::host
