#include "node/node.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "common/codec.h"
#include "common/hash.h"
#include "maroon/limits.h"
#include "protocol/cluster_messages.h"

namespace maroon {

namespace {
// 2: the app is a 32-bit AppId. 1 (read, never written): one byte, 1 for kv.
constexpr uint8_t kTxRecordFormat = 2;
constexpr uint8_t kTxRecordFormat1 = 1;
// System ops per epoch; further requests wait for the next epoch.
constexpr size_t kEpochSystemOpsMax = 64;
// Renewals waiting for an epoch; more are dropped (gateways renew again).
constexpr size_t kRenewalsQueuedMax = 4096;
// Ranges named by one offsets advert.
constexpr size_t kAdvertRangesMax = 4096;
// Memory charged per retained tx besides its op bytes.
constexpr size_t kRetainedOverheadBytes = 64;
// The most logical time one epoch may add over the one before: a proposer
// stalled longer (its ticks are caught up only so far anyway) adds no more.
constexpr uint64_t kLogicalStepMaxMs = 10'000;
constexpr uint64_t kTxDigestSeed = 0x6d61726f6f6e7478;  // "maroontx"
}  // namespace

uint64_t tx_digest(AppId app, std::string_view op) {
  // An app of format 1 was one byte: kv's digests (seed + 1) stay what they
  // were; no other app's key can be 1.
  const uint64_t app_key = app == AppId::kKv ? 1 : (uint64_t{1} << 32) | app.value();
  return hash64(op, kTxDigestSeed + app_key);
}

void encode_tx_record(const TxMsg& tx, std::string& out) {
  ByteWriter w(out);
  w.u8(kTxRecordFormat);
  w.u64(tx.id.raw());
  w.u32(tx.app.value());
  w.bytes(tx.op);
}

Result<TxMsg> decode_tx_record(std::string_view payload) {
  ByteReader r(payload);
  uint8_t format = 0;
  uint64_t id = 0;
  AppId app;
  std::string_view op;
  bool ok = r.u8(format) && r.u64(id);
  if (ok && format == kTxRecordFormat) {
    uint32_t raw = 0;
    ok = r.u32(raw);
    app = AppId(raw);
  } else if (ok && format == kTxRecordFormat1) {
    uint8_t raw = 0;
    ok = r.u8(raw);
    app = app_id_of_format1(raw);
  } else {
    ok = false;
  }
  if (!ok || !r.bytes(op, limits::op_bytes_max) || !r.at_end()) {
    return corruption("tx record: malformed");
  }
  TxId tx_id(id);
  if (tx_id.offset() == 0) return corruption("tx record: offset 0");
  return TxMsg{tx_id, app, std::string(op)};
}

Node::Node(NodeConfig config, Sequencer& sequencer) : config_(config), sequencer_(sequencer) {
  if (config_.result_table_txs_per_range_max == 0) {
    config_.result_table_txs_per_range_max = limits::result_table_txs_per_range_max;
  }
  if (config_.result_table_bytes_per_range_max == 0) {
    config_.result_table_bytes_per_range_max = limits::result_table_bytes_per_range_max;
  }
  if (config_.held_txs_per_range_max == 0) {
    config_.held_txs_per_range_max = 2 * limits::gateway_inflight_txs_max;
  }
  members_ = config_.members.empty() ? std::vector<NodeId>{config_.id} : config_.members;
  std::sort(members_.begin(), members_.end());
  MAROON_ASSERT(std::adjacent_find(members_.begin(), members_.end()) == members_.end());
  MAROON_ASSERT(std::find(members_.begin(), members_.end(), config_.id) != members_.end());
  for (NodeId m : members_) {
    if (m != config_.id) peers_.push_back(m);
  }
  // k = f + 1 holders, f = (n - 1) / 2: a majority, like VR's quorum.
  k_ = members_.size() / 2 + 1;
  MAROON_ASSERT(!config_.order_unsynced_txs || members_.size() == 1);
  MAROON_ASSERT(config_.advert_ticks >= 1 && config_.pull_retry_ticks >= 1);
  // A push may overshoot push_bytes_max by one tx; it must still fit a frame.
  MAROON_ASSERT(config_.pull_txs_max >= 1 &&
                config_.push_bytes_max + 2 * limits::op_bytes_max <= limits::message_bytes_max);
  peer_claims_.resize(peers_.size());
  MAROON_ASSERT(peers_.size() < 64);
  member_peers_ = (uint64_t{1} << peers_.size()) - 1;
}

void Node::register_app(AppId app, StateMachine& machine) {
  MAROON_ASSERT(app != AppId::kSystem);
  MAROON_ASSERT(find_app(app) == nullptr);
  MAROON_ASSERT(apps_.size() < kAppsMax);
  auto at = std::lower_bound(apps_.begin(), apps_.end(), app,
                             [](const auto& entry, AppId id) { return entry.first < id; });
  apps_.insert(at, {app, &machine});
}

StateMachine* Node::find_app(AppId app) const {
  auto at = std::lower_bound(apps_.begin(), apps_.end(), app,
                             [](const auto& entry, AppId id) { return entry.first < id; });
  return at != apps_.end() && at->first == app ? at->second : nullptr;
}

size_t Node::peer_index(NodeId id) const {
  for (size_t i = 0; i < peers_.size(); i++) {
    if (peers_[i] == id) return i;
  }
  return SIZE_MAX;
}

Status Node::replay(RecordType type, std::string_view payload) {
  MAROON_ASSERT(replaying_);
  switch (type) {
    case RecordType::kTx: {
      Result<TxMsg> tx = decode_tx_record(payload);
      if (!tx) return tx.status();
      auto it = ranges_.find(tx->id.range());
      if (it == ranges_.end()) {
        if (!(tx->id.range() < next_range_)) {
          return corruption(fmt::format("tx record for range {} that was never leased",
                                        tx->id.range().value()));
        }
        // Retired: a tx beyond its seal, written while the seal was on its
        // way (dropped by it); one at or below the seal was executed before
        // the retirement, and its record came before it.
        auto retired = retired_.find(tx->id.range());
        if (retired != retired_.end() && tx->id.offset() <= retired->second.second) {
          return corruption(fmt::format("tx {} recorded after its range was retired",
                                        tx->id.raw()));
        }
        return Status::ok();
      }
      RangeState& range = it->second;
      const uint64_t offset = tx->id.offset();
      if (range.sealed && offset > range.seal_last) return Status::ok();
      const uint64_t digest = tx_digest(tx->app, tx->op);
      if (const uint64_t want = committed_digest(range, offset); want != 0) {
        // A copy with other bytes than its id was ordered with (a faulty
        // gateway's): the record that replaced it follows, or it is pulled.
        if (digest != want) return Status::ok();
        if (Held* h = range.held.find(offset); h != nullptr && h->digest != want) {
          range.held.erase(offset);  // this record is its replacement
          held_txs_--;
        }
      }
      if (offset <= range.applied || range.held.contains(offset)) {
        return corruption(fmt::format("tx {} recorded twice", tx->id.raw()));
      }
      if (range.held.beyond(offset)) {
        return corruption(fmt::format("tx {} is beyond the held window", tx->id.raw()));
      }
      hold(range, tx->id, tx->app, std::move(tx->op), digest, /*durable=*/true);
      advance_durable(it->first, range);
      apply_committed();
      break;
    }
    case RecordType::kEpoch: {
      Result<Epoch> epoch = decode_epoch(payload);
      if (!epoch) return epoch.status();
      on_committed(std::move(epoch).value());
      apply_committed();
      break;
    }
    case RecordType::kLegacyEpoch:
    case RecordType::kVrLog:
    case RecordType::kVrCheckpoint:
    case RecordType::kVrState: {
      if (Status s = sequencer_.replay(type, payload); !s) return s;
      take_committed();
      apply_committed();
      break;
    }
    default:
      return corruption(fmt::format("unknown record type {}", static_cast<int>(type)));
  }
  return fault_;
}

void Node::note_log_lost() {
  MAROON_ASSERT(replaying_ && !peers_.empty());
  sequencer_.note_log_lost();
}

void Node::finish_replay() {
  MAROON_ASSERT(replaying_);
  adopt_covered();
  replaying_ = false;
  proposed_time_ms_ = std::max(applied_time_ms_, committed_time_ms_);
  sequencer_.start(out_);
  // Replayed from the disk: durable.
  durable_applied_epoch_ = applied_epoch_;
  sync_membership();
  if (config_.gateways_in_process) {
    // Their gateways died with the last process: sealed (propose_epochs)
    // once their txs are ordered, then retired like any sealed range.
    for (auto& [id, range] : ranges_) {
      range.results.clear();
      range.orphaned = !range.sealed;
    }
  }
  apply_committed();
  advertise(/*full=*/true);
  // Txs durable before the crash but never ordered are ordered now; their
  // gateway may be gone, but no id is ever reused.
  propose_epochs();
}

void Node::hold(RangeState& range, TxId id, AppId app, std::string op, uint64_t digest,
                bool durable) {
  MAROON_ASSERT(id.offset() > range.applied);
  range.held.insert(id.offset(), app, std::move(op), digest, durable);
  held_txs_++;
  while (range.written < range.committed || range.held.contains(range.written + 1)) {
    range.written++;
  }
}

uint64_t Node::orderable(const RangeState& range, uint64_t budget,
                         std::vector<uint64_t>& digests, bool& conflict) const {
  MAROON_ASSERT(digests.empty());
  conflict = false;
  if (peers_.empty()) {
    // k = 1: what this node holds durably may be ordered, or with
    // order_unsynced_txs what it has written ahead of the epoch in the same
    // log. Its one copy needs no binding.
    const uint64_t limit = config_.order_unsynced_txs ? range.written : range.durable;
    return std::min(limit, range.ordered + std::min(budget, kOffsetMax));
  }
  // Offset by offset: the bytes k members hold durably, by this node's own
  // copy and its peers' advertised digests. At most one digest can have k
  // holders (each member holds one copy of an id, and 2k > n), so every
  // proposer that orders the id binds it to the same bytes.
  uint64_t last = range.ordered;
  while (last - range.ordered < budget) {
    const uint64_t offset = last + 1;
    std::array<std::pair<uint64_t, size_t>, 8> votes{};
    MAROON_ASSERT(members_.size() <= votes.size());
    size_t distinct = 0;
    uint64_t winner = 0;
    bool won = false;
    auto vote = [&](uint64_t digest) {
      size_t v = 0;
      while (v < distinct && votes[v].first != digest) v++;
      if (v == distinct) votes[distinct++] = {digest, 0};
      if (++votes[v].second == k_) {
        winner = digest;
        won = true;
      }
    };
    // Only members' copies count (a node the last membership change
    // removed is still a peer until it retires, but a copy there is not
    // one of the k the new group relies on).
    if (range.durable >= offset && !leaving_) {
      // Above the committed offset, durable means held durably here.
      const Held* h = range.held.find(offset);
      MAROON_ASSERT(h != nullptr && h->durable);
      vote(h->digest);
    }
    for (size_t p = 0; p < range.peer_copies.size(); p++) {
      const RangeState::PeerCopies& copies = range.peer_copies[p];
      if ((member_peers_ >> p & 1) != 0 && offset >= copies.lo && offset - copies.lo < copies.digests.size()) {
        vote(copies.digests[offset - copies.lo]);
      }
    }
    if (!won) {
      conflict = distinct > 1;
      break;
    }
    digests.push_back(winner);
    last = offset;
  }
  return last;
}

uint64_t Node::committed_digest(const RangeState& range, uint64_t offset) const {
  if (range.committed_digests.empty() || offset <= range.applied || offset > range.committed) {
    return 0;
  }
  return range.committed_digests[offset - range.applied - 1];
}

void Node::advance_durable(RangeId id, RangeState& range) {
  const uint64_t before = range.durable;
  while (true) {
    if (range.durable < range.committed) {
      range.durable = range.committed;
      continue;
    }
    Held* h = range.held.find(range.durable + 1);
    if (h == nullptr || !h->durable) break;
    range.durable++;
  }
  if (range.durable > before && range.durable > range.advertised && !peers_.empty() &&
      !range.advert_dirty) {
    range.advert_dirty = true;
    advert_dirty_.push_back(id);
  }
  check_invariants(range);
}

void Node::on_tx(GatewayId from, TxMsg msg) {
  MAROON_ASSERT(!replaying_);
  auto it = ranges_.find(msg.id.range());
  if (it == ranges_.end() && msg.id.range() < next_range_ && msg.id.offset() != 0 &&
      fault_.is_ok()) {
    on_retired_range_tx(from, msg);
    return;
  }
  // A tx for an app this node does not run is still held and ordered (it
  // executes as nothing, below): dropping it would leave a gap its gateway
  // resends into for ever, and every later tx of the range behind it.
  if (it == ranges_.end() || it->second.owner != from || msg.id.offset() == 0 ||
      msg.op.size() > limits::op_bytes_max ||
      it->second.held.beyond(msg.id.offset()) || !fault_.is_ok() || leaving_ || node_retired_) {
    // (A removed node acknowledges nothing: its copy is not one of the k.)
    counters_.txs_rejected++;
    return;
  }
  RangeState& range = it->second;
  const uint64_t offset = msg.id.offset();
  if (offset <= range.applied) {
    // Executed already: answer with the first result, never execute again.
    counters_.txs_duplicate++;
    std::optional<std::string_view> reply = range.results.find(offset);
    send(from, TxResult{msg.id, reply ? std::string(*reply) : std::string(), !reply},
         /*after_persist=*/false);
    return;
  }
  if (range.sealed && offset > range.seal_last) {
    counters_.txs_rejected++;
    send(from, RangeSealed{it->first, range.seal_last}, /*after_persist=*/false);
    return;
  }
  const uint64_t digest = tx_digest(msg.app, msg.op);
  if (Held* held = range.held.find(offset)) {
    // The first payload wins; a durable copy is acknowledged again. Other
    // bytes under the same id (a faulty gateway) are not acknowledged: this
    // node does not hold them.
    if (held->digest != digest) {
      counters_.txs_conflicting++;
      return;
    }
    counters_.txs_duplicate++;
    if (held->durable) send(from, TxAck{msg.id, config_.id}, /*after_persist=*/false);
    return;
  }
  if (const uint64_t want = committed_digest(range, offset); want != 0 && want != digest) {
    counters_.txs_conflicting++;  // its id was ordered with other bytes
    return;
  }
  counters_.txs_received++;
  std::string payload;
  payload.reserve(msg.op.size() + 16);
  encode_tx_record(msg, payload);
  uint64_t seq = out_.add_record(RecordType::kTx, std::move(payload));
  pending_durable_.emplace_back(seq, msg.id);
  hold(range, msg.id, msg.app, std::move(msg.op), digest, /*durable=*/false);
  send(from, TxAck{msg.id, config_.id}, /*after_persist=*/true);
}

void Node::on_retired_range_tx(GatewayId from, const TxMsg& msg) {
  // A retry into a range retired after its seal's grace: the first result
  // is gone, but whether the tx executed is still known while the seal is.
  auto it = retired_.find(msg.id.range());
  if (it == retired_.end() || it->second.first != from) {
    counters_.txs_rejected++;
    return;
  }
  counters_.txs_duplicate++;
  if (msg.id.offset() <= it->second.second) {
    send(from, TxResult{msg.id, std::string(), /*expired=*/true}, /*after_persist=*/false);
  } else {
    send(from, RangeSealed{msg.id.range(), it->second.second}, /*after_persist=*/false);
  }
}

void Node::on_lease_request(const LeaseRequest& request) {
  MAROON_ASSERT(!replaying_);
  if (lease_requests_.size() >= config_.lease_requests_queued_max) return;  // it retries
  for (const LeaseRequest& queued : lease_requests_) {
    if (queued.gateway == request.gateway && queued.after == request.after) return;
  }
  lease_requests_.push_back(request);
  propose_epochs();
}

void Node::on_renew_lease(const RenewLease& renew) {
  MAROON_ASSERT(!replaying_);
  auto it = ranges_.find(renew.range);
  if (it == ranges_.end() || it->second.owner != renew.gateway || it->second.sealed) return;
  if (renewals_.size() >= kRenewalsQueuedMax && !renewals_.contains(renew.range)) return;
  renewals_[renew.range] = renew.gateway;
}

void Node::on_peer(NodeId from, PeerMessage msg) {
  MAROON_ASSERT(!replaying_);
  if (!fault_.is_ok() || from == config_.id) return;
  // The snapshot transfer is the host's (NodeHost::on_peer); a harness that
  // hands it here has nothing to say to the node.
  if (is_snapshot_transfer(msg)) return;
  // VR and membership notes come from any node of the cluster: a group
  // this node does not know yet (it missed a change) reaches it with VR's
  // own messages, and a removed node asks for handoffs.
  const size_t peer = peer_index(from);
  if (peer != SIZE_MAX) sequencer_.on_peer_heard(from);
  if (auto* vr = std::get_if<VrPacket>(&msg)) {
    sequencer_.on_message(from, vr->bytes, out_);
  } else if (auto* note = std::get_if<MembershipNote>(&msg)) {
    on_membership_note(from, *note);
  } else if (peer == SIZE_MAX) {
    return;  // not a peer: drop
  } else if (auto* offsets = std::get_if<Offsets>(&msg)) {
    on_offsets(peer, *offsets);
  } else if (auto* pull = std::get_if<TxPull>(&msg)) {
    on_pull(from, *pull);
  } else if (auto* push = std::get_if<TxPush>(&msg)) {
    on_push(peer, *push);
  } else {
    on_evicted(peer, std::get<TxEvicted>(msg));
  }
  apply_committed();
  propose_epochs();
}

void Node::on_offsets(size_t peer, const Offsets& m) {
  const bool digests = m.digests.size() == m.durable.size();
  for (size_t k = 0; k < m.durable.size(); k++) {
    const auto& [id, offset] = m.durable[k];
    auto it = ranges_.find(id);
    if (it == ranges_.end()) continue;  // not leased here yet: the next full advert tells
    RangeState& range = it->second;
    uint64_t& known = range.peer_durable[peer];
    known = std::max(known, std::min(offset, kOffsetMax));
    if (digests) learn_copies(range, range.peer_copies[peer], offset, m.digests[k]);
  }
  compare_hash(peers_[peer], m.hash_epoch, m.state_hash);
}

void Node::learn_copies(RangeState& range, RangeState::PeerCopies& copies, uint64_t last,
                        const std::vector<uint64_t>& digests) {
  if (digests.empty() || digests.size() > last || range.sealed) return;
  const uint64_t first = last - digests.size() + 1;
  // Offsets committed here are decided; far beyond, they are not kept
  // (memory stays bounded; the peer's next full advert repeats them).
  const uint64_t lo = std::max(first, range.committed + 1);
  const uint64_t hi = std::min(last, range.committed + config_.held_txs_per_range_max);
  if (lo > hi) return;
  const uint64_t known_end = copies.lo + copies.digests.size();
  if (copies.digests.empty() || lo < copies.lo || lo > known_end) {
    // Not contiguous with what is known: start again from this advert.
    copies.digests.clear();
    copies.lo = lo;
  }
  for (uint64_t offset = lo; offset <= hi; offset++) {
    const uint64_t digest = digests[offset - first];
    const uint64_t index = offset - copies.lo;
    if (index < copies.digests.size()) {
      copies.digests[index] = digest;
    } else {
      copies.digests.push_back(digest);
    }
  }
}

void Node::compare_hash(NodeId peer, EpochNumber epoch, uint64_t hash) {
  if (epoch.value() == 0) return;
  const size_t index = peer_index(peer);
  if (epoch > applied_epoch_) {
    peer_claims_[index] = {epoch, hash};
    return;
  }
  std::optional<uint64_t> mine = state_hash_at(epoch);
  if (!mine) return;  // too old to compare
  counters_.hashes_compared++;
  if (*mine != hash) {
    set_fault(corruption(fmt::format(
        "state diverged: after epoch {} node {} has state hash {:016x}, node {} has {:016x}",
        epoch.value(), config_.id.value(), *mine, peer.value(), hash)));
  }
}

std::optional<uint64_t> Node::state_hash_at(EpochNumber epoch) const {
  if (hashes_.empty() || epoch < hashes_.front().first || epoch > hashes_.back().first) {
    return std::nullopt;
  }
  const auto& entry = hashes_[epoch.value() - hashes_.front().first.value()];
  MAROON_ASSERT(entry.first == epoch);
  return entry.second;
}

void Node::on_pull(NodeId from, const TxPull& m) {
  if (m.first == 0 || m.first > m.last) return;
  auto it = ranges_.find(m.range);
  if (it == ranges_.end()) {
    // Retired here: every tx of it executed and is gone. (A range not yet
    // leased here gets no answer: this node lags, and may learn it.)
    if (m.range < next_range_) send_peer(from, TxEvicted{m.range, m.first});
    return;
  }
  RangeState& range = it->second;
  TxPush push;
  size_t bytes = 0;
  const uint64_t last = std::min(m.last, m.first + config_.pull_txs_max - 1);
  for (uint64_t offset = m.first; offset <= last; offset++) {
    const Held* h = nullptr;
    if (offset <= range.applied) {
      if (offset < range.retained_base || offset - range.retained_base >= range.retained.size()) {
        // Executed and evicted: nobody can get it from here any more.
        if (push.txs.empty()) send_peer(from, TxEvicted{m.range, offset});
        break;
      }
      h = &range.retained[offset - range.retained_base];
    } else {
      h = range.held.find(offset);
      // Missing, or held with other bytes than its id was ordered with
      // (this node replaces them itself): the puller asks another peer.
      if (h == nullptr) break;
      if (const uint64_t want = committed_digest(range, offset); want != 0 && h->digest != want) {
        break;
      }
    }
    if (!push.txs.empty() && bytes + h->op.size() > config_.push_bytes_max) break;
    bytes += h->op.size() + 16;
    push.txs.push_back(TxMsg{TxId::make(m.range, offset), h->app, h->op});
  }
  if (push.txs.empty()) return;
  counters_.txs_served += push.txs.size();
  send_peer(from, std::move(push));
}

void Node::on_push(size_t peer, const TxPush& m) {
  bool conflicting = false;
  for (const TxMsg& tx : m.txs) {
    auto it = ranges_.find(tx.id.range());
    if (it == ranges_.end() || tx.id.offset() == 0) continue;
    RangeState& range = it->second;
    const uint64_t offset = tx.id.offset();
    // This peer holds the range's txs: the next pull goes to it first.
    range.pull_peer = peer;
    range.pull_served = !conflicting;
    if (offset <= range.applied || (range.sealed && offset > range.seal_last) ||
        range.held.beyond(offset) || range.held.contains(offset) ||
        tx.op.size() > limits::op_bytes_max) {
      continue;
    }
    const uint64_t digest = tx_digest(tx.app, tx.op);
    if (const uint64_t want = committed_digest(range, offset); want != 0 && want != digest) {
      // This peer holds other bytes than the id was ordered with: the
      // retry asks the next peer.
      counters_.txs_conflicting++;
      conflicting = true;
      range.pull_served = false;
      continue;
    }
    counters_.txs_pulled++;
    std::string payload;
    encode_tx_record(tx, payload);
    uint64_t seq = out_.add_record(RecordType::kTx, std::move(payload));
    pending_durable_.emplace_back(seq, tx.id);
    hold(range, tx.id, tx.app, tx.op, digest, /*durable=*/false);
  }
}

void Node::on_evicted(size_t peer, const TxEvicted& m) {
  auto it = ranges_.find(m.range);
  if (it == ranges_.end()) return;
  RangeState& range = it->second;
  // Only an answer about the tx this node waits for counts.
  if (m.offset != range.pull_offset || m.offset <= range.applied || m.offset > range.committed ||
      range.held.contains(m.offset)) {
    return;
  }
  if (range.evicted_offset != m.offset) {
    range.evicted_offset = m.offset;
    range.evicted_peers = 0;
    range.evicted_tick = ticks_;
  }
  range.evicted_peers |= uint64_t{1} << peer;
  // Every peer evicted it; or, with snapshot transfer (always a correct
  // way on, only a costlier one), some did and none has served it for 10
  // pull retries (the others may lag too, and hold nothing to answer with).
  // (Every member peer: a removed one may be gone for good.)
  const bool all = (range.evicted_peers & member_peers_) == member_peers_;
  const bool long_enough =
      snapshot_transfer_ && ticks_ - range.evicted_tick >= 10 * config_.pull_retry_ticks;
  if (!all && !long_enough) return;
  const std::string why = fmt::format("it waits for tx {}:{}, which every peer has executed and "
                                      "no longer keeps (settings.tx_retention_bytes_max)",
                                      m.range.value(), m.offset);
  if (snapshot_transfer_) {
    // Every epoch known committed: the tx waited for is in one of them, and
    // later ones may wait for evicted txs too. Set once: raised with every
    // epoch committed meanwhile, it would outrun every snapshot offered.
    if (!snapshot_need_) need_snapshot(committed_epoch_, why);
    return;
  }
  lags_too_far(why);
}

void Node::need_snapshot(EpochNumber need, std::string why) {
  MAROON_ASSERT(snapshot_transfer_ && need > applied_epoch_);
  if (snapshot_need_ && *snapshot_need_ >= need) return;
  snapshot_need_ = need;
  snapshot_need_why_ = std::move(why);
}

void Node::on_gap(Epoch epoch) {
  MAROON_ASSERT(snapshot_transfer_ && epoch.number > committed_epoch_.next());
  if (!gap_epochs_.empty() && epoch.number <= gap_epochs_.back().number) return;  // known
  if (!gap_epochs_.empty() && epoch.number != gap_epochs_.back().number.next()) {
    // A gap after the gap: what was kept cannot be fed after an install
    // that ends before this epoch.
    gap_epochs_.clear();
  }
  if (gap_epochs_.size() == kGapEpochsMax) {
    // Bounded: the snapshot must then reach the dropped epoch itself.
    gap_epochs_.pop_front();
  }
  if (gap_epochs_.empty()) {
    need_snapshot(EpochNumber(epoch.number.value() - 1),
                  fmt::format("it has committed epochs up to {} and is given epoch {} next (its "
                              "peers' sequencer checkpoints no longer reach back to it)",
                              committed_epoch_.value(), epoch.number.value()));
  } else if (gap_epochs_.front().number.value() - 1 > snapshot_need_->value()) {
    need_snapshot(EpochNumber(gap_epochs_.front().number.value() - 1), snapshot_need_why_);
  }
  epoch_gap_ = true;
  gap_epochs_.push_back(std::move(epoch));
}

void Node::lags_too_far(std::string_view why) {
  set_fault(unavailable(fmt::format(
      "node {} lags too far: {}. Catching up needs a peer's snapshot, and this node runs without "
      "snapshots. The node stops rather than serve a gap; the others go on while they keep a "
      "quorum",
      config_.id.value(), why)));
}

void Node::on_persisted(uint64_t durable_seq) {
  MAROON_ASSERT(!replaying_);
  MAROON_ASSERT(durable_seq >= durable_seq_);
  MAROON_ASSERT(durable_seq < out_.next_seq());
  durable_seq_ = durable_seq;
  advance_durable_applied();
  while (!pending_durable_.empty() && pending_durable_.front().first <= durable_seq) {
    TxId id = pending_durable_.front().second;
    pending_durable_.pop_front();
    auto it = ranges_.find(id.range());
    // Retired (executed, sealed and past the grace) before its record was durable.
    if (it == ranges_.end()) continue;
    RangeState& range = it->second;
    // Executed before its own record was durable (pulled for an epoch), or
    // dropped by a seal: nothing to mark.
    Held* held = range.held.find(id.offset());
    if (held == nullptr) continue;
    held->durable = true;
    if (id.offset() == range.durable + 1) advance_durable(it->first, range);
  }
  sequencer_.on_persisted(durable_seq, out_);
  advertise(/*full=*/false);
  apply_committed();
  propose_epochs();
}

void Node::on_flush() {
  MAROON_ASSERT(!replaying_);
  propose_epochs();
}

void Node::tick(uint64_t now_ms) {
  now_ms_ = std::max(now_ms_, now_ms);
  if (replaying_ || !fault_.is_ok()) return;
  ticks_++;
  sequencer_.tick(out_);
  // Leading with a gap, it proposes nothing: the cluster would order
  // nothing until its install is done. Another node leads meanwhile.
  if (epoch_gap_ && sequencer_.is_primary() &&
      (abdicated_tick_ == 0 || ticks_ >= abdicated_tick_ + 50)) {
    abdicated_tick_ = ticks_;
    sequencer_.abdicate(out_);
  }
  if (ticks_ % config_.advert_ticks == 0) advertise(/*full=*/true);
  apply_committed();
  propose_epochs();
  membership_tick();
}

void Node::advertise(bool full) {
  if (peers_.empty() || replaying_) return;
  Offsets m;
  m.full = full;
  size_t digests_left = protocol::offsets_digests_max;
  if (full) {
    // Only offsets above the committed ones matter to a proposer.
    for (auto& [id, range] : ranges_) {
      if (m.durable.size() == kAdvertRangesMax || digests_left == 0) break;
      if (range.durable > range.committed) {
        advertise_range(m, id, range, range.committed + 1, digests_left);
      }
    }
  } else {
    // Ascending, as the kOffsets frame requires (encode_offsets asserts it);
    // ranges become dirty in any order (cluster sim seed 3).
    std::sort(advert_dirty_.begin(), advert_dirty_.end());
    for (RangeId id : advert_dirty_) {
      if (m.durable.size() == kAdvertRangesMax) break;
      RangeState& range = ranges_.at(id);
      advertise_range(m, id, range, std::max(range.committed, range.advertised) + 1,
                      digests_left);
    }
  }
  // Listed or not (a full advert, or beyond the bound), every change is
  // covered by the periodic full advert.
  for (RangeId id : advert_dirty_) ranges_.at(id).advert_dirty = false;
  advert_dirty_.clear();
  if (!hashes_.empty()) {
    m.hash_epoch = hashes_.back().first;
    m.state_hash = hashes_.back().second;
  }
  if (!full && m.durable.empty()) return;
  for (NodeId peer : peers_) send_peer(peer, m);
}

void Node::advertise_range(Offsets& m, RangeId id, RangeState& range, uint64_t from,
                           size_t& digests_left) {
  // Above the committed offset every offset up to the durable one is held
  // durably here; its digest goes with it, or a proposer cannot count it.
  // Past the digest bound the advert says less (a lower durable offset),
  // which is always safe; the next full advert says the rest.
  from = std::max(from, range.committed + 1);
  uint64_t durable = range.durable;
  if (durable >= from && durable - from + 1 > digests_left) durable = from - 1 + digests_left;
  std::vector<uint64_t>& digests = m.digests.emplace_back();
  for (uint64_t offset = from; offset <= durable; offset++) {
    const Held* h = range.held.find(offset);
    MAROON_ASSERT(h != nullptr && h->durable);
    digests.push_back(h->digest);
  }
  digests_left -= digests.size();
  m.durable.emplace_back(id, durable);
  range.advertised = std::max(range.advertised, durable);
}

uint64_t Node::next_logical_time(EpochNumber number) const {
  // Logical time (leases, seals, the apps' clock) never goes backwards, and
  // advances by the proposer's steady time, not by the wall clock's steps:
  // a wall clock stepped an hour ahead would otherwise expire and seal
  // every live range at once, then hold logical time still, so no lease
  // expired, for an hour once it was stepped back. It follows the wall
  // clock only by slewing: at most an eighth faster or slower than steady
  // time (leases tolerate that; docs/cluster.md, "Logical time"). The
  // cluster's first epoch takes the wall clock as it is.
  if (number == EpochNumber(1)) return std::max(proposed_time_ms_, now_ms_);
  const uint64_t elapsed =
      std::min(steady_ms() - std::min(steady_ms(), proposal_steady_ms_), kLogicalStepMaxMs);
  const uint64_t base = proposed_time_ms_ + elapsed;
  const uint64_t slew = elapsed / 8;
  if (now_ms_ > base) return std::min(now_ms_, base + slew);
  if (now_ms_ < base) return std::max(now_ms_, base - slew);
  return base;
}

void Node::propose_epochs() {
  if (replaying_ || !fault_.is_ok()) return;
  take_committed();
  // Before any proposal: epochs after the switch count the new members'
  // copies only.
  sync_membership();
  // Its committed state is behind the sequencer's until a snapshot fills
  // the gap: an epoch proposed from it would order txs out of turn.
  if (epoch_gap_) return;
  while (sequencer_.can_propose()) {
    if (sequencer_.proposer_term() != proposer_term_) {
      // A new term: what this node proposed before either committed or was
      // lost, so proposals restart from the committed state.
      proposer_term_ = sequencer_.proposer_term();
      MAROON_ASSERT(sequencer_.last_proposed() == committed_epoch_);
      for (auto& [id, range] : ranges_) {
        range.ordered = range.committed;
        range.sealing = false;
        range.proposed_expiry_ms = 0;
      }
      // Time goes on from the last committed epoch (this node's own
      // proposals since were lost), counted from when this node saw it, on
      // its own steady clock: no more than the true time since.
      proposed_time_ms_ = committed_time_ms_;
      proposal_steady_ms_ = committed_seen_steady_ms_;
    }
    Epoch epoch;
    epoch.number = sequencer_.last_proposed().next();
    epoch.logical_time_ms = next_logical_time(epoch.number);
    MAROON_ASSERT(epoch.logical_time_ms >= proposed_time_ms_);
    uint64_t budget = limits::epoch_txs_max;
    // Ranges whose gateway sent one id with different bytes to different
    // nodes, none held by k: sealed before that id (below).
    std::vector<RangeId> conflicted;
    for (auto& [id, range] : ranges_) {
      if (budget == 0 || epoch.intervals.size() == limits::epoch_intervals_max) break;
      if (range.sealed || range.sealing) continue;
      std::vector<uint64_t> digests;
      bool conflict = false;
      const uint64_t last = orderable(range, budget, digests, conflict);
      if (conflict) conflicted.push_back(id);
      if (last <= range.ordered) continue;
      MAROON_ASSERT(last - range.ordered <= budget);
      MAROON_ASSERT(digests.empty() ? peers_.empty() : digests.size() == last - range.ordered);
      epoch.intervals.push_back(Interval{id, range.ordered + 1, last, std::move(digests)});
      budget -= last - range.ordered;
    }
    while (!lease_requests_.empty() && epoch.system_ops.size() < kEpochSystemOpsMax) {
      const LeaseRequest& r = lease_requests_.front();
      epoch.system_ops.push_back(LeaseRange{r.gateway, r.after});
      lease_requests_.pop_front();
    }
    while (!renewals_.empty() && epoch.system_ops.size() < kEpochSystemOpsMax) {
      auto it = renewals_.begin();
      epoch.system_ops.push_back(RenewRange{it->second, it->first});
      auto range = ranges_.find(it->first);
      if (range != ranges_.end() && range->second.owner == it->second) {
        range->second.proposed_expiry_ms = epoch.logical_time_ms + config_.lease_ms;
      }
      renewals_.erase(it);
    }
    for (auto& [id, range] : ranges_) {
      if (epoch.system_ops.size() >= kEpochSystemOpsMax) break;
      if (range.sealed || range.sealing) continue;
      // A renewal this node proposed (in this epoch or an earlier one not
      // yet committed) wins: the gateway is alive.
      const bool expired = config_.lease_ms != 0 &&
                           range.lease_expiry_ms < epoch.logical_time_ms &&
                           range.proposed_expiry_ms < epoch.logical_time_ms;
      // A faulty gateway's range: the id it sent with two payloads (both
      // durable somewhere, neither on k members) may never reach k, for
      // copies held are never replaced before the id is ordered. Sealing
      // the range before it is the deterministic way on: the id never
      // executes, its gateway is told so and leases a fresh range.
      const bool conflict = std::find(conflicted.begin(), conflicted.end(), id) != conflicted.end();
      if (!expired && !range.orphaned && !conflict) continue;
      // Everything ordered so far is in this epoch or an earlier one;
      // nothing later of this range will be.
      uint64_t last = range.ordered;
      for (const Interval& i : epoch.intervals) {
        if (i.range == id) last = i.last;
      }
      // An orphan (its gateway died with the last process) keeps every tx
      // it holds: it is sealed once they are all ordered.
      if (!expired && !conflict && last != range.written) continue;
      epoch.system_ops.push_back(SealRange{id, last});
      range.sealing = true;
    }
    if (epoch.intervals.empty() && epoch.system_ops.empty()) return;
    for (const Interval& i : epoch.intervals) ranges_.at(i.range).ordered = i.last;
    proposed_time_ms_ = epoch.logical_time_ms;
    proposal_steady_ms_ = steady_ms();
    counters_.epochs_proposed++;
    counters_.txs_ordered += epoch.txs();
    sequencer_.propose(std::move(epoch), out_);
  }
}

void Node::take_committed() {
  for (Epoch& epoch : sequencer_.take_committed()) on_committed(std::move(epoch));
}

void Node::on_committed(Epoch epoch) {
  if (!fault_.is_ok() || epoch.number <= committed_epoch_) return;  // known already
  if (epoch.number != committed_epoch_.next() && snapshot_transfer_) {
    on_gap(std::move(epoch));
    return;
  }
  if (epoch.number != committed_epoch_.next()) {
    lags_too_far(fmt::format(
        "it has committed epochs up to {} and the cluster's oldest retained one is {}",
        committed_epoch_.value(), epoch.number.value()));
    return;
  }
  if (epoch.logical_time_ms < committed_time_ms_) {
    set_fault(corruption(fmt::format("epoch {} goes back in logical time", epoch.number.value())));
    return;
  }
  for (const Interval& i : epoch.intervals) {
    auto it = ranges_.find(i.range);
    if (it == ranges_.end() || i.first != it->second.committed + 1 ||
        (it->second.sealed && i.last > it->second.seal_last)) {
      const std::string here =
          it == ranges_.end()
              ? std::string("a range it does not know")
              : fmt::format("committed here up to {}{}", it->second.committed,
                            it->second.sealed
                                ? fmt::format(", sealed at {}", it->second.seal_last)
                                : std::string());
      set_fault(corruption(fmt::format("epoch {} orders txs {}:{}..{} out of turn ({})",
                                       epoch.number.value(), i.range.value(), i.first, i.last,
                                       here)));
      return;
    }
    RangeState& range = it->second;
    if (peers_.empty() && replaying_ && i.last > range.written) {
      // One node: an epoch only names txs written before it.
      set_fault(corruption(fmt::format("epoch {} orders txs {}:{}..{} not held before it",
                                       epoch.number.value(), i.range.value(), i.first, i.last)));
      return;
    }
    if (!peers_.empty()) {
      if (i.digests.empty()) {
        range.committed_digests.insert(range.committed_digests.end(), i.txs(), 0);
      } else {
        range.committed_digests.insert(range.committed_digests.end(), i.digests.begin(),
                                       i.digests.end());
      }
      // What peers hold at offsets now committed no longer matters.
      for (RangeState::PeerCopies& copies : range.peer_copies) {
        while (!copies.digests.empty() && copies.lo <= i.last) {
          copies.digests.pop_front();
          copies.lo++;
        }
      }
    }
    range.committed = i.last;
    range.ordered = std::max(range.ordered, i.last);
    range.written = std::max(range.written, i.last);
    // Txs held beyond a gap the epoch just filled are written too, or
    // advance_durable would walk `durable` over them past `written`
    // (cluster sim: a node holding 3..4 learns that 1..2 committed).
    while (range.held.contains(range.written + 1)) range.written++;
    advance_durable(it->first, range);
  }
  const uint64_t time = epoch.logical_time_ms;
  for (const SystemOp& op : epoch.system_ops) {
    if (const auto* lease = std::get_if<LeaseRange>(&op)) {
      auto found = newest_range_.find(lease->gateway);
      RangeId newest = found == newest_range_.end() ? RangeId(0) : found->second;
      // A gateway is forgotten a grace after its newest range was sealed
      // (below); it may still ask after that range or an older one (a grant
      // that never reached it: cluster sim seed 698). Only committed epochs
      // decide this, never what a node has applied (ranges are retired at
      // apply, which differs between nodes: seed 1553 granted a range on
      // some nodes only).
      const bool after_retired = found == newest_range_.end() && lease->after.value() != 0 &&
                                 lease->after < next_range_;
      if (newest == lease->after || after_retired) {
        // Deterministic: every replica grants the same range to the same request.
        newest = next_range_;
        next_range_ = next_range_.next();
        newest_range_[lease->gateway] = newest;
        auto [it, inserted] = ranges_.try_emplace(newest, lease->gateway, config_, peers_.size());
        MAROON_ASSERT(inserted);
        it->second.lease_expiry_ms = time + config_.lease_ms;
      }
      std::erase_if(lease_requests_, [&](const LeaseRequest& r) {
        return r.gateway == lease->gateway && r.after == lease->after;
      });
      // Nothing to tell a gateway that asked after a range it never had.
      if (!replaying_ && newest.value() != 0) {
        send(lease->gateway, LeaseGranted{lease->gateway, newest}, false);
      }
    } else if (const auto* renew = std::get_if<RenewRange>(&op)) {
      auto it = ranges_.find(renew->range);
      if (it != ranges_.end() && it->second.owner == renew->gateway && !it->second.sealed) {
        it->second.lease_expiry_ms = std::max(it->second.lease_expiry_ms, time + config_.lease_ms);
      }
      // Committed: a later primary must not propose it again.
      auto queued = renewals_.find(renew->range);
      if (queued != renewals_.end() && queued->second == renew->gateway) renewals_.erase(queued);
    } else {
      const auto& seal = std::get<SealRange>(op);
      auto it = ranges_.find(seal.range);
      if (it == ranges_.end() || it->second.sealed) continue;
      RangeState& range = it->second;
      // A seal covers exactly what is committed, the txs of its own epoch
      // included: its proposer ordered nothing later in the range.
      if (seal.last != range.committed) {
        set_fault(corruption(fmt::format("epoch {} seals range {} at {}, not at its committed {}",
                                         epoch.number.value(), seal.range.value(), seal.last,
                                         range.committed)));
        return;
      }
      range.sealed = true;
      range.sealing = false;
      range.seal_last = seal.last;
      sealed_order_.emplace_back(time, seal.range);
      sealed_gateways_.push_back(SealedGateway{time, range.owner, seal.range});
      held_txs_ -= range.held.drop_after(seal.last);
      range.written = std::min(range.written, seal.last);
      range.durable = std::min(range.durable, seal.last);
      range.ordered = std::min(range.ordered, seal.last);
      renewals_.erase(seal.range);
      counters_.ranges_sealed++;
      if (!replaying_) send(range.owner, RangeSealed{seal.range, seal.last}, false);
    }
  }
  // Gateways whose newest range was sealed a grace ago are forgotten (each
  // incarnation of a gateway has its own id: they must not pile up).
  while (!sealed_gateways_.empty() &&
         sealed_gateways_.front().sealed_at_ms + config_.sealed_range_grace_ms <= time) {
    const SealedGateway& g = sealed_gateways_.front();
    if (auto n = newest_range_.find(g.owner); n != newest_range_.end() && n->second == g.range) {
      newest_range_.erase(n);
    }
    sealed_gateways_.pop_front();
  }
  committed_epoch_ = epoch.number;
  committed_time_ms_ = time;
  committed_seen_steady_ms_ = steady_ms();
  if (!replaying_ && !peers_.empty()) {
    std::string payload;
    encode_epoch(epoch, payload);
    out_.add_record(RecordType::kEpoch, std::move(payload));
  }
  // The digests live on in committed_digests.
  for (Interval& i : epoch.intervals) i.digests = {};
  committed_queue_.push_back(std::move(epoch));
}

void Node::apply_committed() {
  take_committed();
  while (!committed_queue_.empty() && fault_.is_ok()) {
    if (!ready_to_apply(committed_queue_.front())) return;
    apply_epoch(committed_queue_.front());
    committed_queue_.pop_front();
  }
  // Caught up otherwise (a peer served the evicted tx after all): no
  // snapshot is needed any more.
  if (snapshot_need_ && !epoch_gap_ && !installing_ && applied_epoch_ >= *snapshot_need_) {
    snapshot_need_.reset();
    snapshot_need_why_.clear();
  }
}

bool Node::ready_to_apply(const Epoch& epoch) {
  // Txs found present stay present until applied, so a waiting epoch's scan
  // resumes where it stopped.
  if (scan_epoch_ != epoch.number) {
    scan_epoch_ = epoch.number;
    scan_interval_ = 0;
    scan_offset_ = 0;
  }
  for (; scan_interval_ < epoch.intervals.size(); scan_interval_++, scan_offset_ = 0) {
    const Interval& i = epoch.intervals[scan_interval_];
    RangeState& range = ranges_.at(i.range);
    MAROON_ASSERT(i.first == range.applied + 1);
    for (uint64_t offset = std::max(i.first, scan_offset_); offset <= i.last; offset++) {
      if (const Held* h = range.held.find(offset)) {
        const uint64_t want = committed_digest(range, offset);
        if (want == 0 || h->digest == want) continue;
        // Held with other bytes than its id was ordered with (its gateway
        // sent two payloads): replaced by a peer's copy. After the commit
        // no other bytes are taken for it (on_tx, on_push).
        range.held.erase(offset);
        held_txs_--;
        counters_.txs_replaced++;
      }
      scan_offset_ = offset;
      MAROON_ASSERT_MSG(!peers_.empty(), "a committed tx is not held locally");
      if (replaying_) return false;  // the WAL may still hold it; pulled after replay
      if (range.pull_offset != offset || ticks_ - range.pull_tick >= config_.pull_retry_ticks) {
        pull(i.range, range, offset, i.last);
      }
      return false;
    }
  }
  return true;
}

void Node::pull(RangeId id, RangeState& range, uint64_t offset, uint64_t last) {
  // Ask a peer that advertised the tx (any peer if none did); each retry
  // asks the next peer, whatever it advertised. An advertised durable
  // offset covers txs the peer knows are committed without holding them,
  // and adverts go stale, so following them alone can ask the same peer
  // forever (cluster sim seed 195: two lagging nodes pulling from each other).
  // A peer that answered the last pull of this range is asked first.
  size_t pick;
  if (range.pull_offset == offset) {
    pick = (range.pull_peer + 1) % peers_.size();
    range.pull_served = false;
  } else if (range.pull_served) {
    pick = range.pull_peer;
  } else {
    const size_t start = pull_rotation_++;
    pick = start % peers_.size();
    for (size_t n = 0; n < peers_.size(); n++) {
      size_t p = (start + n) % peers_.size();
      if (range.peer_durable[p] >= offset) {
        pick = p;
        break;
      }
    }
  }
  range.pull_peer = pick;
  range.pull_offset = offset;
  range.pull_tick = ticks_;
  counters_.pulls_sent++;
  // Everything committed may be asked for, beyond this epoch's interval:
  // a node that lags by many small epochs would pay a round trip each.
  MAROON_ASSERT(last <= range.committed);
  send_peer(peers_[pick],
            TxPull{id, offset, std::min(range.committed, offset + config_.pull_txs_max - 1)});
}

void Node::apply_epoch(const Epoch& epoch) {
  // Committed epochs apply strictly in order, each exactly once.
  MAROON_ASSERT(epoch.number == applied_epoch_.next());
  MAROON_ASSERT(epoch.number <= committed_epoch_);
  MAROON_ASSERT(epoch.logical_time_ms >= applied_time_ms_);
  const bool send_results = !replaying_ && (peers_.empty() || sequencer_.is_primary());
  for (const auto& [app_id, machine] : apps_) machine->advance_time(epoch.logical_time_ms);
  for (const Interval& interval : epoch.intervals) {
    RangeState& range = ranges_.at(interval.range);
    MAROON_ASSERT(interval.first == range.applied + 1);
    MAROON_ASSERT(interval.last <= range.committed);
    for (uint64_t offset = interval.first; offset <= interval.last; offset++) {
      MAROON_ASSERT(range.held.base() == offset);
      MAROON_ASSERT_MSG(range.held.contains(offset), "a committed tx is not held locally");
      Held held = range.held.take_front();
      if (!range.committed_digests.empty()) {
        const uint64_t want = range.committed_digests.front();
        range.committed_digests.pop_front();
        MAROON_ASSERT_MSG(want == 0 || held.digest == want,
                          "a tx executes with other bytes than its id was ordered with");
      }
      TxId id = TxId::make(interval.range, offset);
      StateMachine* app = find_app(held.app);
      TxContext ctx{.tx_id = id.raw(),
                    .epoch = epoch.number.value(),
                    .logical_time_ms = epoch.logical_time_ms};
      // A tx for an app no node runs (a faulty gateway sent it) executes as
      // nothing, the same on every node, with an empty reply.
      std::string reply;
      if (app != nullptr) {
        reply = app->apply(ctx, held.op);
      } else {
        counters_.txs_unknown_app++;
      }
      held_txs_--;
      range.applied = offset;
      counters_.txs_applied++;
      // The primary answers; a backup's copy would only be dropped by the
      // gateway. If the primary's answer is lost (it crashed, or its link
      // to the gateway is down), the gateway resends the tx after
      // result_retry_ticks and any node answers from its result table.
      if (send_results) send(range.owner, TxResult{id, reply, false}, /*after_persist=*/false);
      range.results.push(offset, std::move(reply));
      retain(interval.range, range, std::move(held));
    }
    range.pull_offset = 0;
    check_invariants(range);
  }
  applied_epoch_ = epoch.number;
  note_applied(epoch.number);
  applied_time_ms_ = epoch.logical_time_ms;
  counters_.epochs_applied++;
  retire_sealed(epoch.logical_time_ms);
  if (peers_.empty()) return;
  const uint64_t hash = state_hash();
  hashes_.emplace_back(epoch.number, hash);
  if (hashes_.size() > kHashesKept) hashes_.pop_front();
  for (size_t p = 0; p < peers_.size(); p++) {
    if (peer_claims_[p].first == epoch.number) {
      auto [e, h] = std::exchange(peer_claims_[p], {EpochNumber(0), 0});
      compare_hash(peers_[p], e, h);
    }
  }
}

void Node::retire_sealed(uint64_t logical_time_ms) {
  // Deterministic: every node drops a sealed range's results at the same
  // epoch (the first applied at least the grace after the seal's), in
  // replay too. Its txs stay retained for lagging peers until evicted; the
  // range itself goes with the last of them.
  while (!sealed_order_.empty()) {
    const auto [sealed_at, id] = sealed_order_.front();
    if (logical_time_ms < sealed_at + config_.sealed_range_grace_ms) return;
    auto it = ranges_.find(id);
    MAROON_ASSERT(it != ranges_.end() && it->second.sealed && !it->second.expired);
    RangeState& range = it->second;
    if (range.applied < range.seal_last) return;  // its sealing epoch is not applied yet
    sealed_order_.pop_front();
    MAROON_ASSERT(range.applied == range.seal_last && range.committed == range.seal_last);
    MAROON_ASSERT(range.held.size() == 0);
    range.results.clear();
    range.expired = true;
    // While replaying after a snapshot, its executed txs come back only at
    // finish_replay (adopt_covered), which retires it if none do.
    if (range.retained.empty() && covered_.empty()) retire(it);
  }
}

void Node::retire(std::map<RangeId, RangeState>::iterator it) {
  const RangeId id = it->first;
  RangeState& range = it->second;
  MAROON_ASSERT(range.expired && range.retained.empty() && range.held.size() == 0);
  if (range.advert_dirty) std::erase(advert_dirty_, id);
  retired_.emplace(id, std::pair(range.owner, range.seal_last));
  if (retired_.size() > kRetiredRangesKept) retired_.erase(retired_.begin());
  ranges_.erase(it);
  counters_.ranges_retired++;
}

Status Node::replay_covered(RecordType type, std::string_view payload) {
  MAROON_ASSERT(replaying_);
  if (type != RecordType::kTx || peers_.empty() || config_.tx_retention_bytes_max == 0) {
    return Status::ok();
  }
  Result<TxMsg> tx = decode_tx_record(payload);
  if (!tx) return tx.status();
  auto it = ranges_.find(tx->id.range());
  // Held txs are in the snapshot; retired ranges keep nothing.
  if (it == ranges_.end() || tx->id.offset() > it->second.applied) return Status::ok();
  const uint64_t offset = tx->id.offset();
  Held h{tx->app, std::move(tx->op), 0, true, true};
  h.digest = tx_digest(h.app, h.op);
  std::map<uint64_t, Held>& txs = covered_[it->first];
  if (auto old = txs.find(offset); old != txs.end()) {
    // A later record of the id replaced a copy with other bytes.
    covered_bytes_ -= old->second.op.size() + kRetainedOverheadBytes;
    old->second = std::move(h);
    covered_bytes_ += old->second.op.size() + kRetainedOverheadBytes;
  } else {
    covered_bytes_ += h.op.size() + kRetainedOverheadBytes;
    txs.emplace(offset, std::move(h));
    covered_order_.emplace_back(it->first, offset);
  }
  while (covered_bytes_ > config_.tx_retention_bytes_max && !covered_order_.empty()) {
    auto [range, old] = covered_order_.front();
    covered_order_.pop_front();
    auto r = covered_.find(range);
    if (r == covered_.end()) continue;
    auto t = r->second.find(old);
    if (t == r->second.end()) continue;
    covered_bytes_ -= t->second.op.size() + kRetainedOverheadBytes;
    r->second.erase(t);
  }
  return Status::ok();
}

void Node::adopt_covered() {
  for (auto& [id, txs] : covered_) {
    auto it = ranges_.find(id);
    if (it == ranges_.end() || txs.empty()) continue;
    RangeState& range = it->second;
    // The run of offsets just below what is retained already.
    uint64_t top = range.retained.empty() ? range.applied : range.retained_base - 1;
    if (range.retained.empty()) range.retained_base = range.applied + 1;
    for (auto t = txs.find(top); t != txs.end() && t->first == top && top > 0; top--) {
      retained_bytes_ += t->second.op.size() + kRetainedOverheadBytes;
      range.retained.push_front(std::move(t->second));
      range.retained_base = top;
      retained_order_.push_front(id);
      t = t == txs.begin() ? txs.end() : std::prev(t);
    }
    MAROON_ASSERT(range.retained.empty() ||
                  range.retained_base + range.retained.size() - 1 == range.applied);
  }
  covered_.clear();
  covered_order_.clear();
  covered_bytes_ = 0;
  while (retained_bytes_ > config_.tx_retention_bytes_max && !retained_order_.empty()) {
    auto found = ranges_.find(retained_order_.front());
    retained_order_.pop_front();
    MAROON_ASSERT(found != ranges_.end());
    RangeState& oldest = found->second;
    MAROON_ASSERT(!oldest.retained.empty());
    retained_bytes_ -= oldest.retained.front().op.size() + kRetainedOverheadBytes;
    oldest.retained.pop_front();
    oldest.retained_base++;
  }
  // Expired ranges left with no executed txs go now, as they would have
  // once their last retained tx was evicted.
  for (auto it = ranges_.begin(); it != ranges_.end();) {
    auto next = std::next(it);
    if (it->second.expired && it->second.retained.empty()) retire(it);
    it = next;
  }
}

void Node::retain(RangeId id, RangeState& range, Held held) {
  if (peers_.empty() || config_.tx_retention_bytes_max == 0) return;
  if (range.retained.empty()) range.retained_base = range.applied;
  MAROON_ASSERT(range.retained_base + range.retained.size() == range.applied);
  retained_bytes_ += held.op.size() + kRetainedOverheadBytes;
  range.retained.push_back(std::move(held));
  retained_order_.push_back(id);
  while (retained_bytes_ > config_.tx_retention_bytes_max) {
    auto found = ranges_.find(retained_order_.front());
    MAROON_ASSERT(found != ranges_.end());
    retained_order_.pop_front();
    RangeState& oldest = found->second;
    MAROON_ASSERT(!oldest.retained.empty());
    retained_bytes_ -= oldest.retained.front().op.size() + kRetainedOverheadBytes;
    oldest.retained.pop_front();
    oldest.retained_base++;
    if (oldest.expired && oldest.retained.empty()) retire(found);
  }
}

void Node::send(GatewayId to, NodeToGateway msg, bool after_persist) {
  MAROON_ASSERT(!replaying_);
  (after_persist ? out_.send_after_persist : out_.send_now).push_back({to, std::move(msg)});
}

void Node::send_peer(NodeId to, PeerMessage msg) {
  MAROON_ASSERT(!replaying_);
  out_.peer_now.push_back({to, std::move(msg)});
}

void Node::set_fault(Status s) {
  MAROON_ASSERT(!s.is_ok());
  if (fault_.is_ok()) fault_ = std::move(s);
}

Output Node::take_output() {
  uint64_t next = out_.next_seq();
  Output taken = std::exchange(out_, Output{});
  out_.first_seq = next;
  // Sized like the last one: under load outputs are alike, and growing the
  // vectors one push at a time shows up in profiles.
  out_.persist.reserve(taken.persist.size());
  out_.send_now.reserve(taken.send_now.size());
  out_.send_after_persist.reserve(taken.send_after_persist.size());
  return taken;
}

uint64_t Node::state_hash() const {
  uint64_t h = 0;
  for (const auto& [id, machine] : apps_) {
    h = h * 0x100000001b3ULL ^ machine->state_hash();
  }
  return h;
}

RangeId Node::newest_range(GatewayId gateway) const {
  auto it = newest_range_.find(gateway);
  return it == newest_range_.end() ? RangeId(0) : it->second;
}

std::optional<std::pair<RangeId, uint64_t>> Node::oldest_sealed() const {
  if (sealed_order_.empty()) return std::nullopt;
  return std::pair(sealed_order_.front().second, sealed_order_.front().first);
}

std::optional<uint64_t> Node::committed_offset(RangeId range) const {
  auto it = ranges_.find(range);
  if (it == ranges_.end() || it->second.sealed) return std::nullopt;
  return it->second.committed;
}

bool Node::holds_durable(TxId id) const {
  auto it = ranges_.find(id.range());
  if (it == ranges_.end()) return false;
  const Held* h = it->second.held.find(id.offset());
  return h != nullptr && h->durable;
}

std::vector<std::pair<RangeId, uint64_t>> Node::durable_offsets() const {
  std::vector<std::pair<RangeId, uint64_t>> v;
  for (const auto& [id, range] : ranges_) v.emplace_back(id, range.durable);
  return v;
}

void Node::check_invariants(const RangeState& range) const {
  MAROON_ASSERT(range.applied <= range.committed);
  MAROON_ASSERT(range.committed <= range.ordered);
  MAROON_ASSERT(range.committed <= range.durable || range.sealed);
  MAROON_ASSERT(range.durable <= range.written);
  MAROON_ASSERT(!range.sealed || range.ordered <= range.seal_last);
  MAROON_ASSERT(range.results.size() == 0 || range.results.last_offset() <= range.applied);
  MAROON_ASSERT(range.committed_digests.size() ==
                (peers_.empty() ? 0 : range.committed - range.applied));
}

}  // namespace maroon
