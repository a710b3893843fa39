// Node snapshots: what a node captures of itself, and how a restart rebuilds
// it (docs/snapshots.md, "Node state"). The state written is exactly what
// replaying the log up to the snapshot's point would rebuild: ranges with
// their offsets, result tables and held txs, committed epochs not yet
// applied, leases and seals. What a node learns only from live messages
// (peers' adverts, pulls in flight, its own uncommitted proposals, retained
// txs for lagging peers) is not in it, as it is not in the log.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/codec.h"
#include "node/node.h"

namespace maroon {

namespace {

// 2: a held tx's app is a 32-bit AppId. 1 (read, never written): one byte.
constexpr uint8_t kStateFormat = 2;
constexpr uint8_t kStateFormat1 = 1;
constexpr uint8_t kRangeSealed = 1;
constexpr uint8_t kRangeOrphaned = 2;
// Sealed, applied and past its grace: kept only for its executed txs, which
// a restart puts back from the log the snapshot covers (replay_covered).
constexpr uint8_t kRangeExpired = 4;

Status bad_state(std::string_view what) {
  return corruption(fmt::format("node snapshot: {}", what));
}

}  // namespace

std::string Node::encode_state() const {
  std::string out;
  ByteWriter w(out);
  w.u8(kStateFormat);
  w.u64(applied_epoch_.value());
  w.u64(applied_time_ms_);
  w.u64(committed_epoch_.value());
  w.u64(committed_time_ms_);
  w.u64(next_range_.value());
  std::vector<std::pair<uint64_t, uint64_t>> newest;
  for (const auto& [gateway, range] : newest_range_) newest.emplace_back(gateway.value(), range.value());
  std::sort(newest.begin(), newest.end());  // the map's order must not leak into the bytes
  w.varint(newest.size());
  for (const auto& [gateway, range] : newest) {
    w.u64(gateway);
    w.u64(range);
  }
  w.varint(sealed_order_.size());
  for (const auto& [time, range] : sealed_order_) {
    w.u64(time);
    w.u64(range.value());
  }
  w.varint(sealed_gateways_.size());
  for (const SealedGateway& g : sealed_gateways_) {
    w.u64(g.sealed_at_ms);
    w.u64(g.owner.value());
    w.u64(g.range.value());
  }
  w.varint(retired_.size());
  for (const auto& [id, r] : retired_) {
    w.u64(id.value());
    w.u64(r.first.value());
    w.u64(r.second);
  }
  w.varint(hashes_.size());
  for (const auto& [epoch, hash] : hashes_) {
    w.u64(epoch.value());
    w.u64(hash);
  }
  w.varint(committed_queue_.size());
  std::string encoded;
  for (const Epoch& e : committed_queue_) {
    encoded.clear();
    encode_epoch(e, encoded);
    w.bytes(encoded);
  }
  w.varint(ranges_.size());
  for (const auto& [id, range] : ranges_) {
    w.u64(id.value());
    w.u64(range.owner.value());
    w.u64(range.committed);
    w.u64(range.applied);
    w.u8((range.sealed ? kRangeSealed : 0) | (range.orphaned ? kRangeOrphaned : 0) |
         (range.expired ? kRangeExpired : 0));
    w.u64(range.seal_last);
    w.u64(range.lease_expiry_ms);
    if (config_.gateways_in_process) {
      // Their gateways die with the process: a restart drops the results
      // (finish_replay), so they are not written (nor copied here, which
      // for a full table is most of this encoding's time).
      w.u64(range.applied + 1);
      w.varint(0);
    } else {
      w.u64(range.results.first_offset());
      w.varint(range.results.size());
      range.results.for_each([&](const std::string& reply) { w.bytes(reply); });
    }
    w.varint(range.committed_digests.size());
    for (uint64_t d : range.committed_digests) w.u64(d);
    w.varint(range.held.size());
    range.held.for_each([&](uint64_t offset, const Held& h) {
      w.u64(offset);
      w.u32(h.app.value());
      w.bytes(h.op);
    });
  }
  return out;
}

NodeSnapshot Node::begin_snapshot() {
  MAROON_ASSERT(!replaying_);
  NodeSnapshot snap;
  snap.epoch = applied_epoch_;
  snap.logical_time_ms = applied_time_ms_;
  snap.state_hash = state_hash();
  snap.state = encode_state();
  for (const auto& [id, machine] : apps_) snap.apps.emplace_back(id, machine->begin_snapshot());
  snap.sequencer = sequencer_.snapshot_records();
  return snap;
}

Status Node::restore_state(std::string_view state) {
  MAROON_ASSERT(replaying_);
  if (!ranges_.empty() || applied_epoch_ != EpochNumber(0) || next_range_ != RangeId(1)) {
    return bad_state("restored into a node that already replayed records");
  }
  ByteReader r(state);
  uint8_t format = 0;
  uint64_t applied = 0, applied_time = 0, committed = 0, committed_time = 0, next_range = 0;
  if (!r.u8(format) || (format != kStateFormat && format != kStateFormat1)) {
    return bad_state(fmt::format("format {} is not one this build reads ({})", format,
                                 kStateFormat));
  }
  if (!r.u64(applied) || !r.u64(applied_time) || !r.u64(committed) || !r.u64(committed_time) ||
      !r.u64(next_range) || committed < applied || committed_time < applied_time ||
      next_range == 0) {
    return bad_state("malformed header");
  }
  applied_epoch_ = EpochNumber(applied);
  applied_time_ms_ = applied_time;
  committed_epoch_ = EpochNumber(committed);
  committed_time_ms_ = committed_time;
  next_range_ = RangeId(next_range);
  auto below_next = [&](uint64_t range) { return range != 0 && range < next_range; };

  uint64_t n = 0;
  if (!r.varint(n) || n > state.size()) return bad_state("malformed gateway list");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t gateway = 0, range = 0;
    if (!r.u64(gateway) || !r.u64(range) || !below_next(range) ||
        !newest_range_.emplace(GatewayId(gateway), RangeId(range)).second) {
      return bad_state("malformed gateway list");
    }
  }
  if (!r.varint(n) || n > state.size()) return bad_state("malformed seal list");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t time = 0, range = 0;
    if (!r.u64(time) || !r.u64(range) || !below_next(range)) return bad_state("malformed seal list");
    sealed_order_.emplace_back(time, RangeId(range));
  }
  if (!r.varint(n) || n > state.size()) return bad_state("malformed sealed gateway list");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t time = 0, owner = 0, range = 0;
    if (!r.u64(time) || !r.u64(owner) || !r.u64(range) || !below_next(range)) {
      return bad_state("malformed sealed gateway list");
    }
    sealed_gateways_.push_back(SealedGateway{time, GatewayId(owner), RangeId(range)});
  }
  if (!r.varint(n) || n > kRetiredRangesKept) return bad_state("malformed retired range list");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t range = 0, owner = 0, last = 0;
    if (!r.u64(range) || !r.u64(owner) || !r.u64(last) || !below_next(range) ||
        !retired_.emplace(RangeId(range), std::pair(GatewayId(owner), last)).second) {
      return bad_state("malformed retired range list");
    }
  }
  if (!r.varint(n) || n > kHashesKept) return bad_state("malformed hash list");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t epoch = 0, hash = 0;
    if (!r.u64(epoch) || !r.u64(hash) || epoch > applied ||
        (!hashes_.empty() && epoch != hashes_.back().first.value() + 1)) {
      return bad_state("malformed hash list");
    }
    hashes_.emplace_back(EpochNumber(epoch), hash);
  }
  if (!r.varint(n) || n != committed - applied) {
    return bad_state(fmt::format("{} committed epochs after the applied one, not {}", n,
                                 committed - applied));
  }
  for (uint64_t i = 0; i < n; i++) {
    std::string_view bytes;
    if (!r.bytes(bytes, state.size())) return bad_state("malformed committed epoch");
    Result<Epoch> epoch = decode_epoch(bytes);
    if (!epoch) return bad_state(epoch.status().message());
    if (epoch->number.value() != applied + 1 + i) return bad_state("committed epochs out of order");
    committed_queue_.push_back(std::move(epoch).value());
  }
  if (!r.varint(n) || n >= next_range) return bad_state("malformed range list");
  RangeId previous(0);
  for (uint64_t i = 0; i < n; i++) {
    uint64_t id = 0, owner = 0, range_committed = 0, range_applied = 0, seal_last = 0, expiry = 0;
    uint64_t first_result = 0, results = 0;
    uint8_t flags = 0;
    if (!r.u64(id) || !r.u64(owner) || !r.u64(range_committed) || !r.u64(range_applied) ||
        !r.u8(flags) || !r.u64(seal_last) || !r.u64(expiry) || !r.u64(first_result) ||
        !r.varint(results) || !below_next(id) || RangeId(id) <= previous ||
        range_applied > range_committed || range_committed > kOffsetMax ||
        (flags & ~(kRangeSealed | kRangeOrphaned | kRangeExpired)) != 0 ||
        ((flags & kRangeSealed) != 0 && range_committed > seal_last) ||
        ((flags & kRangeExpired) != 0 &&
         ((flags & kRangeSealed) == 0 || range_applied != seal_last || results != 0)) ||
        first_result == 0 ||
        results > range_applied || first_result + results - 1 != range_applied ||
        retired_.contains(RangeId(id))) {
      return bad_state(fmt::format("malformed range {}", id));
    }
    previous = RangeId(id);
    auto [it, inserted] = ranges_.try_emplace(RangeId(id), GatewayId(owner), config_, peers_.size());
    MAROON_ASSERT(inserted);
    RangeState& range = it->second;
    range.sealed = (flags & kRangeSealed) != 0;
    range.orphaned = (flags & kRangeOrphaned) != 0;
    range.expired = (flags & kRangeExpired) != 0;
    range.seal_last = seal_last;
    range.lease_expiry_ms = expiry;
    range.applied = range_applied;
    range.committed = range_committed;
    range.ordered = range_committed;
    range.durable = range_committed;
    range.written = range_committed;
    range.held.start_at(range_applied + 1);
    range.results.start_at(first_result);
    for (uint64_t k = 0; k < results; k++) {
      std::string_view reply;
      if (!r.bytes(reply, limits::reply_bytes_max)) {
        return bad_state(fmt::format("range {}: malformed result", id));
      }
      range.results.push(first_result + k, std::string(reply));
    }
    uint64_t digests = 0;
    if (!r.varint(digests) ||
        digests != (peers_.empty() ? 0 : range_committed - range_applied)) {
      return bad_state(fmt::format("range {}: {} committed digests for {} committed txs", id,
                                   digests, range_committed - range_applied));
    }
    for (uint64_t k = 0; k < digests; k++) {
      uint64_t d = 0;
      if (!r.u64(d)) return bad_state(fmt::format("range {}: malformed digest", id));
      range.committed_digests.push_back(d);
    }
    uint64_t held = 0;
    if (!r.varint(held) || held > state.size() || (range.expired && held != 0)) {
      return bad_state(fmt::format("range {}: malformed held txs", id));
    }
    uint64_t last_offset = range_applied;
    for (uint64_t k = 0; k < held; k++) {
      uint64_t offset = 0;
      AppId app_id;
      std::string_view op;
      bool ok = r.u64(offset);
      if (ok && format == kStateFormat1) {
        uint8_t raw = 0;
        ok = r.u8(raw);
        app_id = app_id_of_format1(raw);
      } else if (ok) {
        uint32_t raw = 0;
        ok = r.u32(raw);
        app_id = AppId(raw);
      }
      if (!ok || !r.bytes(op, limits::op_bytes_max) ||
          offset <= last_offset || range.held.beyond(offset) ||
          (range.sealed && offset > seal_last)) {
        return bad_state(fmt::format("range {}: malformed held tx", id));
      }
      last_offset = offset;
      hold(range, TxId::make(RangeId(id), offset), app_id, std::string(op), tx_digest(app_id, op),
           /*durable=*/true);
    }
    advance_durable(it->first, range);
  }
  if (!r.at_end()) return bad_state("trailing bytes");
  // The epochs still to apply must continue each range from its applied
  // offset up to its committed one, as apply_epoch asserts.
  std::map<RangeId, uint64_t> next_offset;
  for (const Epoch& e : committed_queue_) {
    for (const Interval& i : e.intervals) {
      auto it = ranges_.find(i.range);
      if (it == ranges_.end()) {
        return bad_state(fmt::format("committed epoch {} names range {}, which it lacks",
                                     e.number.value(), i.range.value()));
      }
      auto [n, fresh] = next_offset.try_emplace(i.range, it->second.applied + 1);
      if (i.first != n->second || i.last < i.first || i.last > it->second.committed) {
        return bad_state(fmt::format("committed epoch {} orders {}:{}..{} out of turn",
                                     e.number.value(), i.range.value(), i.first, i.last));
      }
      n->second = i.last + 1;
    }
  }
  for (const auto& [id, range] : ranges_) {
    auto n = next_offset.find(id);
    const uint64_t ordered_to = n == next_offset.end() ? range.applied : n->second - 1;
    if (ordered_to != range.committed) {
      return bad_state(fmt::format("range {} is committed to {}, but its epochs reach {}",
                                   id.value(), range.committed, ordered_to));
    }
  }
  std::set<RangeId> sealed_seen;
  uint64_t seal_time = 0;
  for (const auto& [time, range] : sealed_order_) {
    auto it = ranges_.find(range);
    if (it == ranges_.end() || !it->second.sealed || it->second.expired ||
        !sealed_seen.insert(range).second || time < seal_time) {
      return bad_state(fmt::format("sealed range {} is missing, not sealed, expired, listed "
                                   "twice or out of order",
                                   range.value()));
    }
    seal_time = time;
  }
  if (!hashes_.empty() && hashes_.back().first != applied_epoch_) {
    return bad_state("the recent state hashes do not end at the applied epoch");
  }
  uint64_t time = applied_time_ms_;
  for (const Epoch& e : committed_queue_) {
    if (e.logical_time_ms < time || e.logical_time_ms > committed_time_ms_) {
      return bad_state(fmt::format("committed epoch {} goes back in logical time",
                                   e.number.value()));
    }
    time = e.logical_time_ms;
  }
  if (peers_.empty()) {
    // One node: an epoch orders only txs it holds.
    for (const auto& [id, range] : ranges_) {
      for (uint64_t x = range.applied + 1; x <= range.committed; x++) {
        if (!range.held.contains(x)) {
          return bad_state(fmt::format("range {} is committed to {} without holding tx {}",
                                       id.value(), range.committed, x));
        }
      }
    }
  }
  return Status::ok();
}

Status Node::begin_install(std::string_view state) {
  MAROON_ASSERT(!replaying_ && !installing_ && snapshot_transfer_);
  if (!fault_.is_ok()) return fault_;
  if (!snapshot_need_) return invalid_argument("this node needs no snapshot");
  // Parsed and checked into a node of its own first: a refused snapshot
  // changes nothing here.
  Node in(config_, sequencer_);
  if (Status s = in.restore_state(state); !s) return s;
  // Any snapshot ahead of this node is progress, even if the need rose
  // meanwhile (more epochs after a gap than it keeps): it needs another then.
  if (in.applied_epoch_ <= applied_epoch_) {
    return invalid_argument(fmt::format(
        "the snapshot is at epoch {}; this node has applied {} and needs {}",
        in.applied_epoch_.value(), applied_epoch_.value(), snapshot_need_->value()));
  }
  installing_ = true;
  install_apps_.clear();
  // The committed epochs this node knows beyond the snapshot's, in order
  // (the queue's come before the gap's); fed again by finish_install.
  install_later_.clear();
  for (Epoch& e : committed_queue_) {
    if (e.number <= in.committed_epoch_) continue;
    // Queued epochs keep their digests in the ranges (on_committed): put
    // them back, or on_committed would take the offsets as bound to no
    // bytes, and a copy held with other bytes would execute.
    for (Interval& i : e.intervals) {
      const RangeState& range = ranges_.at(i.range);
      MAROON_ASSERT(i.digests.empty() && i.first > range.applied &&
                    i.last - range.applied <= range.committed_digests.size());
      i.digests.assign(range.committed_digests.begin() + (i.first - range.applied - 1),
                       range.committed_digests.begin() + (i.last - range.applied));
    }
    install_later_.push_back(std::move(e));
  }
  for (Epoch& e : gap_epochs_) {
    if (e.number > in.committed_epoch_) install_later_.push_back(std::move(e));
  }
  gap_epochs_.clear();
  epoch_gap_ = false;
  // This node's own held txs: its durability claims are its own, so it
  // keeps them (and never takes the peer's, which are not in its log).
  struct Own {
    RangeId range;
    uint64_t offset;
    Held held;
  };
  std::vector<Own> own;
  // What it proposed and is not committed yet, if it is still the proposer
  // of that term (a later term restarts from the committed state anyway).
  struct Proposed {
    uint64_t ordered;
    bool sealing;
    uint64_t expiry_ms;
  };
  std::map<RangeId, Proposed> proposing;
  const bool proposer = sequencer_.is_primary() && sequencer_.proposer_term() == proposer_term_;
  for (auto& [id, range] : ranges_) {
    const RangeId rid = id;  // (a structured binding; clang does not capture those)
    range.held.for_each([&](uint64_t offset, const Held& h) { own.push_back({rid, offset, h}); });
    if (proposer) {
      proposing.emplace(id, Proposed{range.ordered, range.sealing, range.proposed_expiry_ms});
    }
  }

  ranges_ = std::move(in.ranges_);
  // Built with the configured group: this node's peers now may differ.
  for (auto& [id, range] : ranges_) {
    range.peer_durable.assign(peers_.size(), 0);
    range.peer_copies.assign(peers_.size(), RangeState::PeerCopies{});
    range.evicted_peers = 0;
    range.pull_peer = 0;
    range.pull_served = false;
  }
  next_range_ = in.next_range_;
  newest_range_ = std::move(in.newest_range_);
  sealed_order_ = std::move(in.sealed_order_);
  sealed_gateways_ = std::move(in.sealed_gateways_);
  retired_ = std::move(in.retired_);
  hashes_ = std::move(in.hashes_);
  committed_queue_ = std::move(in.committed_queue_);
  committed_epoch_ = in.committed_epoch_;
  committed_time_ms_ = in.committed_time_ms_;
  applied_epoch_ = in.applied_epoch_;
  applied_time_ms_ = in.applied_time_ms_;
  advert_dirty_.clear();
  retained_order_.clear();
  retained_bytes_ = 0;
  scan_epoch_ = EpochNumber(0);
  scan_interval_ = 0;
  scan_offset_ = 0;
  for (auto& claim : peer_claims_) claim = {};
  held_txs_ = 0;
  for (auto& [id, range] : ranges_) {
    // The peer's held txs go, and what they made durable or written here.
    range.held.drop_after(range.applied);
    range.written = range.committed;
    range.durable = range.committed;
    range.ordered = range.committed;
    // Listed in no advert_dirty_ of this node's.
    range.advert_dirty = false;
    range.advertised = 0;
    // What this node proposed and is not committed yet stays proposed: a
    // new epoch must not order those offsets again.
    if (auto p = proposing.find(id); p != proposing.end()) {
      range.ordered = std::max(range.ordered, p->second.ordered);
      if (range.sealed) range.ordered = std::min(range.ordered, range.seal_last);
      range.sealing = p->second.sealing && !range.sealed;
      range.proposed_expiry_ms = p->second.expiry_ms;
    }
  }
  for (Own& o : own) {
    auto it = ranges_.find(o.range);
    if (it == ranges_.end()) continue;
    RangeState& range = it->second;
    if (o.offset <= range.applied || range.held.beyond(o.offset) ||
        (range.sealed && o.offset > range.seal_last)) {
      continue;
    }
    if (const uint64_t want = committed_digest(range, o.offset);
        want != 0 && want != o.held.digest) {
      continue;  // not the bytes it was ordered with: pulled from a peer
    }
    hold(range, TxId::make(o.range, o.offset), o.held.app, std::move(o.held.op), o.held.digest,
         o.held.durable);
  }
  for (auto& [id, range] : ranges_) advance_durable(id, range);
  return Status::ok();
}

void Node::install_app(AppId app, SnapshotPieces& pieces) {
  MAROON_ASSERT(installing_);
  if (!fault_.is_ok()) return;
  StateMachine* machine = find_app(app);
  if (machine == nullptr) {
    set_fault(bad_state(fmt::format("a peer's snapshot holds the state of app {:#010x}, which "
                                    "this node does not run",
                                    app.value())));
    return;
  }
  if (std::find(install_apps_.begin(), install_apps_.end(), app) != install_apps_.end()) {
    set_fault(bad_state(fmt::format("a peer's snapshot holds app {:#010x} twice", app.value())));
    return;
  }
  install_apps_.push_back(app);
  if (Status s = machine->restore(pieces); !s) {
    set_fault(Status(s.code(), fmt::format("installing a peer's snapshot: app {:#010x}: {}",
                                           app.value(), s.message())));
  }
}

void Node::abort_install(Status why) {
  MAROON_ASSERT(installing_ && !why.is_ok());
  installing_ = false;
  install_later_.clear();
  set_fault(std::move(why));
}

void Node::finish_install(uint64_t state_hash) {
  MAROON_ASSERT(installing_);
  installing_ = false;
  if (!fault_.is_ok()) return;
  for (const auto& [id, machine] : apps_) {
    if (std::find(install_apps_.begin(), install_apps_.end(), id) == install_apps_.end()) {
      set_fault(bad_state(fmt::format("a peer's snapshot lacks app {:#010x}", id.value())));
      return;
    }
  }
  if (this->state_hash() != state_hash) {
    set_fault(corruption(fmt::format("a peer's snapshot at epoch {} restores to state hash "
                                     "{:016x}, its header says {:016x}",
                                     applied_epoch_.value(), this->state_hash(), state_hash)));
    return;
  }
  snapshot_need_.reset();
  snapshot_need_why_.clear();
  snapshots_installed_++;
  installed_epoch_ = applied_epoch_;
  // Held in memory only until the host's own snapshot of it is published.
  install_durable_pending_ = true;
  // Sealed ranges kept only for executed txs have none here.
  for (auto it = ranges_.begin(); it != ranges_.end();) {
    auto next = std::next(it);
    if (it->second.expired && it->second.retained.empty()) retire(it);
    it = next;
  }
  std::vector<Epoch> later = std::move(install_later_);
  install_later_.clear();
  for (Epoch& e : later) on_committed(std::move(e));
  apply_committed();
  advertise(/*full=*/true);
  propose_epochs();
}

Status Node::restore_app(AppId app, SnapshotPieces& pieces) {
  MAROON_ASSERT(replaying_);
  StateMachine* machine = find_app(app);
  if (machine == nullptr) {
    return bad_state(fmt::format("holds the state of app {:#010x}, which this node does not run",
                                 app.value()));
  }
  if (Status s = machine->restore(pieces); !s) {
    return Status(s.code(), fmt::format("app {:#010x}: {}", app.value(), s.message()));
  }
  return Status::ok();
}

}  // namespace maroon
