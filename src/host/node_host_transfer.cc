// NodeHost's snapshot transfer (docs/snapshots.md, "Transfer"): a node that
// lags beyond what its peers keep fetches a peer's newest published
// snapshot, chunk by checksummed chunk, into a file of its own, verifies it
// whole, installs it into the running node (Node::begin_install), and then
// takes a snapshot of its own so that what it installed is durable.
//
// Receiver: ask a peer (SnapshotWanted) -> SnapshotOffer -> SnapshotPull x
// window -> SnapshotChunk ... -> verify -> install. Pulls unanswered are
// sent again; a peer silent for long, or one that no longer has the
// snapshot, is left for the next. The partial file is named after the peer,
// epoch and size, so a transfer broken by a lost link or a restart resumes
// where its file ends when the same peer offers the same snapshot again.
//
// Sender: answers with its newest published snapshot if it is new enough
// (else it takes one and answers "not yet"), and serves pulls from the
// file at send_mib_per_s at most, queued (bounded) until the rate allows.
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "common/hash.h"
#include "host/node_host.h"
#include "host/snapshot_fetch.h"
#include "host/snapshot_layout.h"
#include "protocol/cluster_messages.h"
#include "storage/snapshot_file.h"

namespace maroon::host {

using namespace snapshot_layout;

namespace {

constexpr std::string_view kIncomingPrefix = "incoming-";
constexpr std::string_view kIncomingSuffix = ".part";

std::string incoming_name(NodeId peer, EpochNumber epoch, uint64_t total) {
  return fmt::format("{}n{}-e{}-{}{}", kIncomingPrefix, peer.value(), epoch.value(), total,
                     kIncomingSuffix);
}

bool is_incoming(std::string_view name) {
  return name.starts_with(kIncomingPrefix) && name.ends_with(kIncomingSuffix);
}

}  // namespace

void NodeHost::on_peer(NodeId from, PeerMessage msg) {
  if (!is_snapshot_transfer(msg)) {
    node_.on_peer(from, std::move(msg));
    return;
  }
  if (!node_.is_peer(from)) return;
  if (!snapshots_enabled() || failed_) return;
  if (auto* w = std::get_if<SnapshotWanted>(&msg)) {
    on_snapshot_wanted(from, *w);
  } else if (auto* o = std::get_if<SnapshotOffer>(&msg)) {
    on_snapshot_offer(from, *o);
  } else if (auto* p = std::get_if<SnapshotPull>(&msg)) {
    on_snapshot_pull(from, *p);
  } else {
    on_snapshot_chunk(from, std::get<SnapshotChunk>(std::move(msg)));
  }
}

void NodeHost::tick(uint64_t now_ms) {
  node_.tick(now_ms);
  // The transfer's timers run on the node's steady clock (its ticks), never
  // on the wall clock, which may step by hours either way.
  now_ms_ = node_.steady_ms();
  if (!snapshots_enabled() || failed_) return;
  fetch_work();
  serve_pulls();
  close_idle_served_files();
}

TransferStatus NodeHost::transfer_status() const {
  TransferStatus s;
  s.installed = node_.snapshots_installed();
  s.bytes_received = transfer_received_;
  s.bytes_sent = transfer_sent_;
  s.last_error = transfer_error_;
  s.bootstrap_epoch = bootstrap_installed_epoch_;
  if (auto need = node_.snapshot_needed()) {
    s.fetching = true;
    s.why = node_.snapshot_needed_why();
    s.need_epoch = need->value();
  }
  if (fetch_ != nullptr && fetch_->pulling) {
    s.peer = fetch_->peer.value();
    s.epoch = fetch_->epoch.value();
    s.received = fetch_->have;
    s.total = fetch_->total;
  }
  return s;
}

// --- Receiving ---

void NodeHost::fetch_work() {
  if (!node_.snapshot_needed() || !node_.fault().is_ok()) {
    // Caught up (or stopped): a transfer under way is not needed any more,
    // nor its partial file.
    if (fetch_ != nullptr && !fetch_->path.empty()) {
      fetch_->file.reset();
      (void)snapshot_env_->remove(fetch_->path);
    }
    fetch_.reset();
    return;
  }
  // One install at a time: the last one's own snapshot is published first.
  if (install_base_pending_) return;
  if (!bootstrap_path_.empty() && !bootstrap_tried_) {
    // A snapshot fetched from an object store before the start: installed
    // first (its file goes once the node's own snapshot of it is
    // published), then the peers make up what it lacks.
    bootstrap_tried_ = true;
    const uint64_t installs = node_.snapshots_installed();
    // Never ahead of what this cluster committed: such a snapshot is of
    // another run of it (recreated with the same id and store).
    Status s = bootstrap_epoch_ <= node_.known_committed_epoch().value()
                   ? install(bootstrap_path_)
                   : invalid_argument(fmt::format(
                         "it is of epoch {}, ahead of every epoch this cluster committed ({}): "
                         "of another run of the cluster?",
                         bootstrap_epoch_, node_.known_committed_epoch().value()));
    if (s && node_.snapshots_installed() > installs) {
      bootstrap_installed_epoch_ = node_.installed_epoch().value();
      return;
    }
    // Refused, or it stopped the node (an install that failed half way):
    // never tried again, at this start or the next.
    transfer_error_ = fmt::format("the bootstrap snapshot {}: {}", bootstrap_path_,
                                  s ? node_.fault().to_string() : s.to_string());
    drop_bootstrap();
    return;
  }
  if (fetch_ == nullptr) fetch_ = std::make_unique<Fetch>();
  Fetch& f = *fetch_;
  const uint64_t retry = snapshot_settings_.transfer_retry_ms;
  if (!f.pulling) {
    if (!f.asked || now_ms_ >= f.asked_ms + retry) fetch_ask();
    return;
  }
  if (now_ms_ >= f.progress_ms + 4 * retry) {
    fetch_restart(fmt::format("node {} sent nothing of its snapshot for {} ms", f.peer.value(),
                              now_ms_ - f.progress_ms),
                  /*keep_file=*/true);
    return;
  }
  for (auto& [offset, sent] : f.in_flight) {
    if (now_ms_ >= sent.second + retry) {
      sent.second = now_ms_;
      sink_.to_peer(PeerEnvelope{f.peer, SnapshotPull{f.epoch, offset, sent.first}});
    }
  }
  fetch_fill();
}

void NodeHost::fetch_ask() {
  Fetch& f = *fetch_;
  const std::vector<NodeId>& peers = node_.peers();
  if (peers.empty()) return;
  // A peer that did not answer is left for the next; one that is taking a
  // snapshot for us is asked again.
  if (!f.not_yet) {
    f.peer = peers[fetch_rotation_++ % peers.size()];
    f.not_yets = 0;
  }
  f.not_yet = false;
  f.asked = true;
  f.asked_ms = now_ms_;
  sink_.to_peer(PeerEnvelope{f.peer, SnapshotWanted{*node_.snapshot_needed()}});
}

void NodeHost::on_snapshot_offer(NodeId from, const SnapshotOffer& m) {
  auto need = node_.snapshot_needed();
  if (fetch_ == nullptr || fetch_->pulling || !need || from != fetch_->peer) return;
  Fetch& f = *fetch_;
  if (m.epoch.value() == 0 || m.epoch < *need || m.epoch <= node_.applied_epoch()) {
    // Not yet: it takes one now (or cannot: it lags too). Asked again in a
    // quarter of the retry time, up to 8 times; then the next peer.
    const uint64_t retry = snapshot_settings_.transfer_retry_ms;
    if (++f.not_yets >= 8) {
      f.not_yets = 0;
      return;  // asked again after the retry time, of the next peer
    }
    f.not_yet = true;
    f.asked_ms = now_ms_ + retry / 4 >= retry ? now_ms_ + retry / 4 - retry : 0;
    return;
  }
  const std::string& dir = snapshot_settings_.dir;
  const std::string name = incoming_name(from, m.epoch, m.bytes);
  f.path = dir + "/" + name;
  // Partial files of other transfers go; this one's (an earlier try of
  // the same snapshot from the same peer) is resumed.
  if (auto names = snapshot_env_->list_dir(dir); names) {
    for (const std::string& n : *names) {
      if (is_incoming(n) && n != name) (void)snapshot_env_->remove(dir + "/" + n);
    }
  }
  if (Status s = snapshot_env_->create_dirs(dir); !s) {
    transfer_error_ = s.to_string();
    return;
  }
  auto file = snapshot_env_->open(f.path, /*create=*/true);
  if (!file) {
    transfer_error_ = file.status().to_string();
    return;
  }
  auto size = (*file)->size();
  if (!size || *size > m.bytes) {
    transfer_error_ = size ? fmt::format("{}: longer than the snapshot offered", f.path)
                                : size.status().to_string();
    (void)(*file)->truncate(0);
    size = uint64_t{0};
  }
  f.file = std::move(file).value();
  f.pulling = true;
  f.epoch = m.epoch;
  f.total = m.bytes;
  f.have = *size;
  f.next = *size;
  f.in_flight.clear();
  f.early.clear();
  f.progress_ms = now_ms_;
  if (f.have == f.total) {
    fetch_complete();
    return;
  }
  fetch_fill();
}

void NodeHost::fetch_fill() {
  Fetch& f = *fetch_;
  const uint32_t chunk =
      std::clamp<uint32_t>(snapshot_settings_.transfer_chunk_bytes, 1, protocol::snapshot_chunk_bytes_max);
  while (f.in_flight.size() + f.early.size() < std::max<size_t>(1, snapshot_settings_.transfer_window) &&
         f.next < f.total) {
    const uint32_t length = static_cast<uint32_t>(std::min<uint64_t>(chunk, f.total - f.next));
    f.in_flight.emplace(f.next, std::pair(length, now_ms_));
    sink_.to_peer(PeerEnvelope{f.peer, SnapshotPull{f.epoch, f.next, length}});
    f.next += length;
  }
}

void NodeHost::on_snapshot_chunk(NodeId from, SnapshotChunk m) {
  if (fetch_ == nullptr || !fetch_->pulling) return;
  Fetch& f = *fetch_;
  if (from != f.peer || m.epoch != f.epoch) return;
  if (m.total == 0) {
    fetch_restart(fmt::format("node {} no longer keeps its snapshot of epoch {}", from.value(),
                              m.epoch.value()),
                  /*keep_file=*/false);
    return;
  }
  if (m.total != f.total) {
    fetch_restart(fmt::format("node {}'s snapshot of epoch {} changed size", from.value(),
                              m.epoch.value()),
                  /*keep_file=*/false);
    return;
  }
  auto it = f.in_flight.find(m.offset);
  if (it == f.in_flight.end() || it->second.first != m.data.size()) return;  // not asked (any more)
  if (hash64(m.data) != m.checksum) {
    // Damaged on the way: asked again after the retry time.
    transfer_error_ = fmt::format("a chunk at {} of node {}'s snapshot failed its checksum",
                                       m.offset, from.value());
    return;
  }
  f.in_flight.erase(it);
  f.progress_ms = now_ms_;
  transfer_received_ += m.data.size();
  f.early.emplace(m.offset, std::move(m.data));
  // Written in order: the file is always the snapshot's first `have` bytes
  // (up to what a crash drops), so a later try resumes at its end.
  while (!f.early.empty() && f.early.begin()->first == f.have) {
    const std::string& data = f.early.begin()->second;
    if (Status s = f.file->write_at(f.have, data); !s) {
      fetch_restart("writing a peer's snapshot: " + s.to_string(), /*keep_file=*/false);
      return;
    }
    f.have += data.size();
    f.early.erase(f.early.begin());
  }
  if (f.have == f.total) {
    fetch_complete();
    return;
  }
  fetch_fill();
}

void NodeHost::fetch_restart(std::string why, bool keep_file) {
  transfer_error_ = std::move(why);
  if (fetch_ != nullptr && !keep_file && !fetch_->path.empty()) {
    fetch_->file.reset();
    (void)snapshot_env_->remove(fetch_->path);
  }
  // Asked again at once, of the next peer.
  fetch_ = std::make_unique<Fetch>();
}

void NodeHost::fetch_complete() {
  Fetch& f = *fetch_;
  const std::string path = f.path;
  Status s = f.file->sync();
  f.file.reset();
  if (s) s = install(path);
  if (!s) {
    // A damaged file (or a refused snapshot) is fetched again from the start.
    fetch_restart(fmt::format("{}: {}", path, s.to_string()), /*keep_file=*/false);
    return;
  }
  (void)snapshot_env_->remove(path);
  fetch_.reset();
}

Status NodeHost::install(const std::string& path) {
  auto opened = SnapshotFileReader::open(*snapshot_env_, path);
  if (!opened) return opened.status();
  SnapshotFileReader& reader = **opened;
  if (Status s = reader.verify(); !s) return s;
  auto h = decode_header(reader.header());
  if (!h) return h.status();
  if (h->of_another_cluster(snapshot_settings_.cluster_id)) {
    return invalid_argument(fmt::format("a snapshot of cluster {:016x}; this node is of cluster "
                                        "{:016x}",
                                        h->cluster_id, snapshot_settings_.cluster_id));
  }
  // The node state comes first; nothing changes until it is accepted.
  std::string state;
  std::optional<std::pair<uint8_t, std::string_view>> chunk;
  for (;;) {
    auto c = reader.next();
    if (!c) return c.status();
    chunk = *c;
    if (!chunk || chunk->first != kNodeState) break;
    state.append(chunk->second);
  }
  if (taking_ != nullptr) {
    // Its app cursors read the state the install replaces.
    fail_snapshot(unavailable("abandoned: a peer's snapshot is being installed"));
  }
  if (Status s = node_.begin_install(state); !s) return s;
  if (node_.applied_epoch().value() != h->epoch) {
    node_.abort_install(corruption(fmt::format("{}: the node state is at epoch {}, the header "
                                               "says {}",
                                               path, node_.applied_epoch().value(), h->epoch)));
    drain();
    return Status::ok();
  }
  // From here on a failure stops the node (its apps are being replaced).
  Status failed;
  while (chunk && failed.is_ok()) {
    const auto [kind, payload] = *chunk;
    if (kind == kAppBegin) {
      Result<AppId> app = decode_app_begin(payload, h->format);
      if (!app) {
        failed = app.status();
        break;
      }
      ChunkPieces pieces(reader);
      node_.install_app(*app, pieces);
      if (!node_.fault().is_ok()) break;
      if (!pieces.ended()) failed = corruption("an app's restore stopped before its end");
    } else if (kind != kSequencerRecord && kind != kSequencerState) {
      // The peer's sequencer records are its own: this node keeps its own.
      failed = corruption(fmt::format("unexpected chunk kind {}", kind));
    }
    if (!failed.is_ok()) break;
    auto c = reader.next();
    if (!c) {
      failed = c.status();
      break;
    }
    chunk = *c;
  }
  if (!failed.is_ok()) {
    node_.abort_install(Status(failed.code(), path + ": " + failed.message()));
  } else {
    node_.finish_install(h->state_hash);
  }
  drain();
  if (!node_.fault().is_ok()) return Status::ok();  // stopped: nothing to fetch again
  // What was installed is durable only in a snapshot of this node's own,
  // taken now. Until it is published nothing emitted from here on is
  // written: a crash meanwhile must find the log as it was before the
  // install (the older state, from which the node lags and fetches again),
  // never records that only fit the installed state (txs beyond the older
  // state's window, ranges it never leased) after that older state.
  order_.set_barrier();
  install_base_pending_ = true;
  if (Status s = begin_snapshot(); !s) {
    order_.release_barrier();
    snapshot_requested_ = true;
    transfer_error_ = "a snapshot of the installed state: " + s.to_string();
  }
  return Status::ok();
}

Status NodeHost::set_bootstrap(std::string path) {
  MAROON_ASSERT(snapshots_enabled());
  bootstrap_path_ = std::move(path);
  auto reader = SnapshotFileReader::open(*snapshot_env_, bootstrap_path_);
  Result<Header> h = reader ? decode_header((*reader)->header()) : Result<Header>(reader.status());
  if (!h) {
    const Status s = h.status();
    drop_bootstrap();
    return s;
  }
  bootstrap_epoch_ = h->epoch;
  return Status::ok();
}

void NodeHost::drop_bootstrap() {
  if (bootstrap_path_.empty()) return;
  (void)snapshot_env_->remove(bootstrap_path_);
  (void)snapshot_env_->sync_dir(snapshot_settings_.dir);
  bootstrap_path_.clear();
}

// --- Sending ---

void NodeHost::on_snapshot_wanted(NodeId from, const SnapshotWanted& m) {
  if (!published_.empty() && published_.back().epoch >= m.need.value()) {
    const SnapshotInfo& newest = published_.back();
    sink_.to_peer(PeerEnvelope{from, SnapshotOffer{EpochNumber(newest.epoch), newest.bytes}});
    return;
  }
  // None new enough: one is taken now if this node has applied that far
  // (and is not taking one: the next ask comes once it is done).
  if (taking_ == nullptr && node_.fault().is_ok() && !node_.snapshot_needed() &&
      node_.applied_epoch() >= m.need) {
    snapshot_requested_ = true;
  }
  sink_.to_peer(PeerEnvelope{from, SnapshotOffer{}});
}

void NodeHost::on_snapshot_pull(NodeId from, const SnapshotPull& m) {
  // Beyond the bound the pull is dropped: its puller asks again later.
  if (serving_.size() >= kServeQueueMax) return;
  serving_.push_back(Serving{from, m});
  serve_pulls();
}

void NodeHost::serve_pulls() {
  const uint64_t rate = snapshot_settings_.send_mib_per_s * 1024 * 1024;  // bytes per second
  const uint64_t burst = std::max<uint64_t>(protocol::snapshot_chunk_bytes_max, rate / 10);
  if (rate == 0) {
    serve_tokens_ = UINT64_MAX;
  } else if (now_ms_ > serve_tokens_ms_) {
    const uint64_t add = (now_ms_ - serve_tokens_ms_) * rate / 1000;
    serve_tokens_ = std::min(burst, serve_tokens_ + add);
    serve_tokens_ms_ = now_ms_;
  }
  while (!serving_.empty() && serve_tokens_ >= serving_.front().pull.length) {
    Serving s = std::move(serving_.front());
    serving_.pop_front();
    if (rate != 0) serve_tokens_ -= s.pull.length;
    SnapshotChunk chunk{.epoch = s.pull.epoch};
    Result<ServedFile*> found = served_file(s.pull.epoch.value());
    if (!found) {
      // Published, but it does not open: not "gone" (the puller would start
      // over); unanswered, it asks again.
      transfer_error_ = fmt::format("serving node {}: {}", s.to.value(), found.status().to_string());
      continue;
    }
    ServedFile* served = *found;
    if (served != nullptr && s.pull.offset < served->bytes) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(s.pull.length, served->bytes - s.pull.offset));
      if (!served->file->read_at(s.pull.offset, n, chunk.data) || chunk.data.size() != n) {
        transfer_error_ = fmt::format("reading {} for node {}: short or failed read",
                                      served->path, s.to.value());
        continue;
      }
      served->last_ms = now_ms_;
      chunk.offset = s.pull.offset;
      chunk.total = served->bytes;
      chunk.checksum = hash64(chunk.data);
      transfer_sent_ += n;
    }
    // Otherwise "gone": compacted away and closed, or never this node's.
    sink_.to_peer(PeerEnvelope{s.to, std::move(chunk)});
  }
}

void NodeHost::close_idle_served_files(uint64_t keep) {
  const uint64_t idle_ms = kServedIdleRetries * snapshot_settings_.transfer_retry_ms;
  std::erase_if(served_files_, [&](const ServedFile& f) {
    return f.epoch != keep && now_ms_ > f.last_ms + idle_ms;
  });
}

Result<NodeHost::ServedFile*> NodeHost::served_file(uint64_t epoch) {
  close_idle_served_files(epoch);
  for (ServedFile& f : served_files_) {
    if (f.epoch == epoch) return &f;
  }
  const SnapshotInfo* info = nullptr;
  for (auto it = published_.rbegin(); it != published_.rend(); ++it) {
    if (it->epoch == epoch) {
      info = &*it;
      break;
    }
  }
  if (info == nullptr) return static_cast<ServedFile*>(nullptr);
  auto file = snapshot_env_->open(info->path, /*create=*/false);
  if (!file) return file.status();  // opened again at the next pull
  // The file under that name may already be a newer snapshot of the same
  // epoch whose publication this host has not heard of yet.
  auto size = (*file)->size();
  if (!size) return size.status();
  if (*size != info->bytes) {
    return unavailable(fmt::format("{} is {} bytes, not the {} published: being replaced",
                                   info->path, *size, info->bytes));
  }
  if (served_files_.size() >= kServedFilesMax) {
    // The least recently served goes (its puller is answered "gone" later).
    auto lru = std::min_element(served_files_.begin(), served_files_.end(),
                                [](const ServedFile& a, const ServedFile& b) {
                                  return a.last_ms < b.last_ms;
                                });
    served_files_.erase(lru);
  }
  served_files_.push_back(
      ServedFile{info->epoch, info->bytes, info->path, std::move(file).value(), now_ms_});
  MAROON_ASSERT(served_files_.size() <= kServedFilesMax);
  return &served_files_.back();
}

}  // namespace maroon::host
