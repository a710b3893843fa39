#include "sequencer/vr_sequencer.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/codec.h"
#include "maroon/limits.h"
#include "vr/codec.h"

namespace maroon {

namespace {

// The annex of a membership request as the sequencer sends it: the
// caller's annex (the address book) wrapped with the group the change
// replaces and every id removed so far, this change's included
// (docs/formats.md, "Sequencer checkpoint state").
// Not 1, an address book's version byte: a book from a build before the
// wrapper is never read as a wrapper.
constexpr uint8_t kAnnexWrapperVersion = 0x81;

struct WrappedAnnex {
  std::vector<NodeId> previous;
  uint64_t removed_ids = 0;
  std::string book;
};

std::string wrap_annex(const std::vector<NodeId>& previous, uint64_t removed_ids,
                       std::string_view book) {
  std::string out;
  ByteWriter w(out);
  w.u8(kAnnexWrapperVersion);
  w.u64(removed_ids);
  w.varint(previous.size());
  for (NodeId id : previous) w.varint(id.value());
  w.raw(book);
  return out;
}

std::optional<WrappedAnnex> unwrap_annex(std::string_view annex) {
  ByteReader r(annex);
  uint8_t version = 0;
  uint64_t count = 0;
  WrappedAnnex a;
  if (!r.u8(version) || version != kAnnexWrapperVersion || !r.u64(a.removed_ids) ||
      !r.varint(count) || count == 0 || count > vr::limits::replicas_max) {
    return std::nullopt;
  }
  for (uint64_t i = 0; i < count; i++) {
    uint64_t id = 0;
    if (!r.varint(id) || id == 0 || id >= 64) return std::nullopt;
    if (std::find(a.previous.begin(), a.previous.end(), NodeId(static_cast<uint32_t>(id))) !=
        a.previous.end()) {
      return std::nullopt;
    }
    a.previous.push_back(NodeId(static_cast<uint32_t>(id)));
  }
  std::string_view rest;
  if (!r.raw(rest, r.remaining())) return std::nullopt;
  a.book = std::string(rest);
  return a;
}

}  // namespace


vr::Options VrSequencer::default_options() {
  vr::Options o;
  // Epochs are small and frequent; a checkpoint trims the in-memory log and
  // carries the recent epochs (see the header).
  o.checkpoint_interval_ops = 4096;
  o.pipeline_ops_max = kPipelineEpochsMax;
  return o;
}

VrSequencer::VrSequencer(vr::ReplicaId self, std::vector<vr::ReplicaId> members,
                         vr::Options options, uint64_t tick_ms, uint64_t seed)
    : self_(self),
      members_(std::move(members)),
      pipeline_epochs_max_(members_.size() > 1 ? kClusterPipelineEpochsMax : kPipelineEpochsMax),
      replica_(self, options, service_, seed != 0 ? seed : self.value()),
      tick_ms_(tick_ms),
      lease_ticks_(options.lease_ticks),
      peer_window_ticks_(options.view_change_timeout_ticks),
      quorum_grace_ticks_(uint64_t{3} * options.view_change_timeout_ticks) {
  MAROON_ASSERT(!members_.empty() && members_.size() <= vr::limits::replicas_max);
  for (vr::ReplicaId r : members_) service_.membership.members.push_back(NodeId(r.value()));
  MAROON_ASSERT_MSG(members_.size() == 1 || seed != 0, "a group needs a fresh seed per start");
  // A group of one only ever appends (no view change rewrites its log), so
  // its largest record is one Prepare batch; it must fit a WAL record.
  MAROON_ASSERT(members_.size() > 1 ||
                options.prepare_batch_bytes_max + 64 * 1024 <= limits::wal_record_bytes_max);
  // Epochs are so small that a log between checkpoints fits a WAL record
  // however it is rewritten by a view change.
  MAROON_ASSERT(options.checkpoint_interval_ops > 0 &&
                options.checkpoint_interval_ops <= kSnapshotEpochsMax);
}

std::string VrSequencer::EpochService::execute(const vr::Entry& entry) {
  Result<Epoch> epoch = decode_epoch(entry.payload);
  if (!epoch) {
    // Only nodes propose, with encoded epochs: this is corruption of the
    // log, reported by the node as a replay or apply failure.
    error = corruption(fmt::format("vr op {}: {}", entry.op.value(), epoch.status().to_string()));
    return {};
  }
  // After a restart `last` starts from what the replayed log and checkpoint
  // held; the node drops epochs it already has and reports gaps.
  const bool fresh = epoch->number > last;
  last = std::max(last, epoch->number);
  if (fresh) remember(entry.payload);
  committed.push_back(std::move(epoch).value());
  return {};
}

void VrSequencer::EpochService::remember(std::string encoded) {
  recent_bytes_ += encoded.size();
  recent_.push_back(std::move(encoded));
  while (recent_.size() > kSnapshotEpochsMax || recent_bytes_ > kSnapshotBytesMax) {
    recent_bytes_ -= recent_.front().size();
    recent_.pop_front();
  }
}

void VrSequencer::EpochService::on_reconfigure(vr::ConfigEpoch epoch,
                                               const std::vector<vr::ReplicaId>& members,
                                               const std::vector<vr::ReplicaId>& old_members,
                                               std::string_view annex, vr::OpNumber) {
  // A replica executes each reconfiguration once per state it rebuilds
  // (replay re-executes the log after its checkpoint), in config order.
  if (epoch.value() <= membership.config) return;
  MAROON_ASSERT(epoch.value() == membership.config + 1);
  Membership next;
  next.config = epoch.value();
  for (vr::ReplicaId r : members) next.members.push_back(NodeId(r.value()));
  next.switch_epoch = last;
  // The request's annex wraps the group it changes and the removed ids as
  // the primary knew them (request_membership): the same bytes on every
  // replica, a joiner's too, whose own record of the old group may be
  // another (it may have entered the epoch before it executed this).
  if (auto wrapped = unwrap_annex(annex)) {
    next.previous = std::move(wrapped->previous);
    next.removed_ids = wrapped->removed_ids;
    next.annex = wrapped->book;
  } else {
    // A request from a build before the wrapper: VR's own record.
    for (vr::ReplicaId r : old_members) next.previous.push_back(NodeId(r.value()));
    next.annex = annex;
    next.removed_ids = membership.removed_ids;
    for (NodeId id : next.previous) {
      if (std::find(next.members.begin(), next.members.end(), id) == next.members.end() &&
          id.value() < 64) {
        next.removed_ids |= uint64_t{1} << id.value();
      }
    }
  }
  // A member is never a removed node (whatever a request said).
  for (NodeId id : next.members) {
    if (id.value() < 64) next.removed_ids &= ~(uint64_t{1} << id.value());
  }
  membership = std::move(next);
}

namespace {

bool is_in(const std::vector<vr::ReplicaId>& v, vr::ReplicaId r) {
  return std::find(v.begin(), v.end(), r) != v.end();
}

void write_node_ids(ByteWriter& w, const std::vector<NodeId>& ids) {
  w.varint(ids.size());
  for (NodeId id : ids) w.u32(static_cast<uint32_t>(id.value()));
}

bool read_node_ids(ByteReader& r, std::vector<NodeId>& ids, bool may_be_empty) {
  uint64_t n = 0;
  if (!r.varint(n) || n > vr::limits::replicas_max || (n == 0 && !may_be_empty)) return false;
  ids.clear();
  for (uint64_t i = 0; i < n; i++) {
    uint32_t id = 0;
    if (!r.u32(id) || id == 0) return false;
    // A peer's checkpoint may carry this: distinct ids only.
    if (std::find(ids.begin(), ids.end(), NodeId(id)) != ids.end()) return false;
    ids.push_back(NodeId(id));
  }
  return true;
}

}  // namespace

// Format 2 adds the membership after `last` (docs/formats.md, "Sequencer
// checkpoint state"); format 1 is still read, as config 0.
std::string VrSequencer::EpochService::snapshot() {
  std::string out;
  ByteWriter w(out);
  w.u8(3);
  w.u64(last.value());
  w.varint(membership.config);
  write_node_ids(w, membership.members);
  write_node_ids(w, membership.previous);
  w.varint(membership.switch_epoch.value());
  w.bytes(membership.annex);
  w.u64(membership.removed_ids);
  w.varint(recent_.size());
  for (const std::string& e : recent_) w.bytes(e);
  return out;
}

Status VrSequencer::EpochService::restore(std::string_view snapshot) {
  ByteReader r(snapshot);
  uint8_t format = 0;
  uint64_t snap_last = 0, count = 0;
  if (!r.u8(format) || format < 1 || format > 3 || !r.u64(snap_last)) {
    return corruption("vr checkpoint: malformed epoch snapshot");
  }
  std::optional<Membership> snap_membership;
  if (format >= 2) {
    Membership m;
    uint64_t switch_epoch = 0;
    std::string_view annex;
    if (!r.varint(m.config) || !read_node_ids(r, m.members, false) ||
        !read_node_ids(r, m.previous, m.config == 0) || !r.varint(switch_epoch) ||
        !r.bytes(annex, vr::limits::annex_bytes_max) || switch_epoch > snap_last ||
        (format == 3 && !r.u64(m.removed_ids))) {
      return corruption("vr checkpoint: malformed membership");
    }
    if (format == 2) {
      // Before removed ids were recorded: those of the last change.
      for (NodeId id : m.previous) {
        if (id.value() < 64) m.removed_ids |= uint64_t{1} << id.value();
      }
    }
    // A member is never a removed node, as on_reconfigure records it.
    for (NodeId id : m.members) {
      if (id.value() < 64) m.removed_ids &= ~(uint64_t{1} << id.value());
    }
    m.switch_epoch = EpochNumber(switch_epoch);
    m.annex = annex;
    snap_membership = std::move(m);
  }
  if (!r.varint(count) || count > kSnapshotEpochsMax) {
    return corruption("vr checkpoint: malformed epoch snapshot");
  }
  std::vector<std::string> encoded;
  for (uint64_t i = 0; i < count; i++) {
    std::string_view e;
    if (!r.bytes(e, kSnapshotBytesMax)) return corruption("vr checkpoint: malformed epoch");
    encoded.emplace_back(e);
  }
  if (!r.at_end()) return corruption("vr checkpoint: trailing bytes");
  // The snapshot's epochs end at snap_last; hand out those we lack. If they
  // do not reach back to ours, the node sees the gap and reports it.
  for (std::string& e : encoded) {
    Result<Epoch> epoch = decode_epoch(e);
    if (!epoch) return corruption("vr checkpoint: " + epoch.status().to_string());
    if (epoch->number <= last) continue;
    last = epoch->number;
    remember(std::move(e));
    committed.push_back(std::move(epoch).value());
  }
  if (EpochNumber(snap_last) > last) last = EpochNumber(snap_last);
  // Equal configs too: the constructor's guess at config 0 gives way.
  if (snap_membership && snap_membership->config >= membership.config) {
    membership = std::move(*snap_membership);
  }
  return Status::ok();
}

std::pair<uint64_t, std::vector<NodeId>> VrSequencer::successor_group() const {
  std::vector<NodeId> members;
  for (vr::ReplicaId r : replica_.members()) members.push_back(NodeId(r.value()));
  return {replica_.epoch().value(), std::move(members)};
}

Status VrSequencer::check_group_can_work(const std::vector<NodeId>& members) const {
  // A quorum of the new group must be current members that answered within
  // a view-change timeout: new nodes still have to be told and fetch a
  // snapshot before they count.
  size_t live = 0;
  const uint64_t now = replica_.now();
  for (NodeId id : members) {
    const vr::ReplicaId r(static_cast<uint32_t>(id.value()));
    if (r == self_) {
      live++;
    } else if (is_in(replica_.members(), r)) {
      auto it = heard_.find(r);
      if (it != heard_.end() && now - it->second <= peer_window_ticks_) live++;
    }
  }
  if (live < vr::quorum_size(members.size())) {
    return unavailable(fmt::format(
        "only {} of the {} new members are current members heard from within {}; the new group "
        "needs {} of them to work: start or repair the missing nodes first",
        live, members.size(), ticks_text(peer_window_ticks_), vr::quorum_size(members.size())));
  }
  return Status::ok();
}

Status VrSequencer::request_membership(uint64_t expect_config, std::vector<NodeId> members,
                                       std::string annex, Output& out) {
  if (!is_primary()) {
    return unavailable(fmt::format("node {} is not the primary (node {} is, as far as it knows)",
                                   self_.value(), replica_.primary().value()));
  }
  if (members_.size() == 1) {
    return invalid_argument("a single node (maroon dev) cannot change its group");
  }
  if (membership().config != expect_config) {
    return invalid_argument(fmt::format("the group is in config {}, not {}: look again",
                                        membership().config, expect_config));
  }
  if (replica_.reconfiguration_pending()) {
    return unavailable("a membership change is in flight; wait for it");
  }
  if (annex.size() > vr::limits::annex_bytes_max) {
    return too_large(fmt::format("address book of {} bytes, over {}", annex.size(),
                                 vr::limits::annex_bytes_max));
  }
  if (members.size() < 2) {
    return invalid_argument("a group of at least 2 nodes (one node alone is `maroon dev`)");
  }
  std::vector<vr::ReplicaId> ids;
  for (NodeId id : members) {
    // Gateways count acks of ids up to 63 (cluster.toml's range too).
    if (id.value() == 0 || id.value() > 63) {
      return invalid_argument(fmt::format("node id {} out of range (1 to 63)", id.value()));
    }
    ids.push_back(vr::ReplicaId(static_cast<uint32_t>(id.value())));
  }
  uint64_t removed = membership().removed_ids;
  for (NodeId id : membership().members) {
    if (id.value() < 64 && std::find(members.begin(), members.end(), id) == members.end()) {
      removed |= uint64_t{1} << id.value();
    }
  }
  std::string wrapped = wrap_annex(membership().members, removed, annex);
  if (wrapped.size() > vr::limits::annex_bytes_max) {
    return too_large(fmt::format("address book of {} bytes, over {}", annex.size(),
                                 vr::limits::annex_bytes_max - (wrapped.size() - annex.size())));
  }
  std::string payload = vr::encode_reconfiguration(ids, wrapped);
  if (!vr::decode_reconfiguration(payload)) {
    return invalid_argument(fmt::format("{} members, or a node listed twice: 1 to {} distinct ids",
                                        members.size(), vr::limits::replicas_max));
  }
  // A removed node may not come back under its id: its old replica may
  // still run and answer as a former member.
  for (NodeId id : members) {
    if (((membership().removed_ids >> id.value()) & 1) != 0) {
      return invalid_argument(fmt::format(
          "node {} was removed from the group before; a new node takes a new id", id.value()));
    }
  }
  replica_.on_client_request(
      vr::ClientRequest{vr::ClientId(kMembershipClient), vr::RequestNumber(expect_config + 1),
                        vr::EntryKind::kReconfigure, false, std::move(payload)},
      vout_);
  drain(out);
  return Status::ok();
}

void VrSequencer::note_view() {
  bool primary = replica_.is_primary() && replica_.status() == vr::ReplicaStatus::kNormal;
  if (!primary) {
    proposing_ = false;
    return;
  }
  // Views restart at 0 in each configuration, so a term is both: the old
  // primary may be the new group's first primary, in view 0 again, and
  // what it proposed before the reconfiguration is dropped either way.
  MAROON_ASSERT(replica_.view().value() < (uint64_t{1} << 32));
  MAROON_ASSERT(replica_.epoch().value() < (uint64_t{1} << 32));
  const uint64_t term = (replica_.epoch().value() << 32) | replica_.view().value();
  if (proposing_ && proposer_term_ == term) return;
  proposing_ = true;
  proposer_term_ = term;
  view_start_op_ = replica_.op();
  proposals_in_view_ = 0;
}

bool VrSequencer::can_propose() const {
  if (!proposing_ || !replica_.is_primary() || replica_.status() != vr::ReplicaStatus::kNormal) {
    return false;
  }
  // Ops inherited from earlier views commit first: their epochs decide the
  // next epoch number and where each range's next interval starts.
  if (replica_.commit() < view_start_op_ || replica_.executed() < view_start_op_) return false;
  // Epochs after a reconfiguration are the new group's to order.
  if (replica_.reconfiguration_pending()) return false;
  return replica_.op().value() - replica_.commit().value() < pipeline_epochs_max_;
}

void VrSequencer::propose(Epoch epoch, Output& out) {
  MAROON_ASSERT(can_propose());
  // In a new view, whatever this replica proposed earlier either committed
  // (and is in service_.last) or is lost: last_proposed() starts from there.
  MAROON_ASSERT(epoch.number == last_proposed().next());
  MAROON_ASSERT(validate_epoch(epoch).is_ok());
  std::string payload;
  encode_epoch(epoch, payload);
  last_proposed_ = epoch.number;
  proposals_in_view_++;
  // The epoch number is the request number. It increases across views and
  // restarts: a proposal lost in a view change never executed, and one that
  // survived committed before this replica proposes again, so the client
  // table (one client per node) keeps each proposal at most once.
  vr::RequestNumber number(epoch.number.value());
  replica_.on_client_request(vr::ClientRequest{vr::ClientId(self_.value()), number,
                                               vr::EntryKind::kRequest, false, std::move(payload)},
                             vout_);
  drain(out);
}

void VrSequencer::on_persisted(uint64_t durable_seq, Output& out) {
  uint64_t vr_durable = 0;
  while (!seq_map_.empty() && seq_map_.front().first <= durable_seq) {
    vr_durable = seq_map_.front().second;
    seq_map_.pop_front();
  }
  if (vr_durable != 0) replica_.on_persisted(vr_durable, vout_);
  drain(out);
}

void VrSequencer::on_message(NodeId from, std::string_view bytes, Output& out) {
  Result<vr::ReplicaMessage> msg = vr::decode_message(bytes);
  if (!msg || vr::header_of(*msg).from.value() != from.value()) {
    messages_dropped_++;
    return;
  }
  const uint64_t view = vr::header_of(*msg).view.value();
  replica_.step(*msg, vout_);
  const uint64_t now = replica_.now();
  on_peer_heard(from);
  if (replica_.status() == vr::ReplicaStatus::kNormal && view == replica_.view().value() &&
      from.value() == replica_.primary().value()) {
    primary_heard_tick_ = now;
    primary_heard_view_ = view;
  }
  note_quorum();
  drain(out);
}

void VrSequencer::on_peer_heard(NodeId from) {
  // Kept for the members of the current group only (bounded by the group's
  // size): a removed node's messages say nothing of this group's quorum.
  const vr::ReplicaId id(from.value());
  if (id == self_ || !is_in(replica_.members(), id)) return;
  heard_[id] = replica_.now();
  if (heard_.size() > replica_.members().size()) {
    std::erase_if(heard_, [&](const auto& h) { return !is_in(replica_.members(), h.first); });
  }
  MAROON_ASSERT(heard_.size() <= vr::limits::replicas_max);
}

size_t VrSequencer::peers_heard_within(uint64_t window) const {
  const uint64_t now = replica_.now();
  size_t n = 0;
  for (vr::ReplicaId r : replica_.members()) {
    if (r == self_) continue;
    auto it = heard_.find(r);
    if (it != heard_.end() && now - it->second <= window) n++;
  }
  return n;
}

bool VrSequencer::quorum_evidence() const {
  if (replica_.status() != vr::ReplicaStatus::kNormal) return false;
  if (replica_.members().size() == 1) return true;
  if (replica_.is_primary()) return replica_.has_lease();
  // A backup that hears its primary works with it; with more than 3 nodes
  // the two of them are a quorum only if enough others are alive too.
  return primary_heard_tick_ && primary_heard_view_ == replica_.view().value() &&
         replica_.now() - *primary_heard_tick_ <= lease_ticks_ &&
         peers_heard_within(peer_window_ticks_) + 1 >= vr::quorum_size(replica_.members().size());
}

void VrSequencer::note_quorum() {
  if (!quorum_evidence()) return;
  quorum_seen_ = true;
  quorum_seen_tick_ = replica_.now();
}

bool VrSequencer::has_quorum() const {
  if (quorum_evidence()) return true;
  return quorum_seen_ && replica_.now() - quorum_seen_tick_ < quorum_grace_ticks_;
}

std::string VrSequencer::ticks_text(uint64_t ticks) const {
  if (tick_ms_ == 0) return fmt::format("{} ticks", ticks);
  return fmt::format("{} ms", ticks * tick_ms_);
}

std::string VrSequencer::no_quorum_reason() const {
  if (has_quorum()) return {};
  const uint64_t now = replica_.now();
  const std::vector<vr::ReplicaId>& members = replica_.members();
  const size_t quorum = vr::quorum_size(members.size());
  std::string state;
  switch (replica_.status()) {
    case vr::ReplicaStatus::kNormal:
      if (replica_.is_primary()) {
        // The primary's lease counts heartbeats answered within 2/3 of the
        // VR lease (vr::Replica::has_lease); "heard" counts any message.
        const uint64_t window = lease_ticks_ * 2 / 3;
        size_t heard = 0;
        for (vr::ReplicaId r : members) {
          auto it = heard_.find(r);
          if (r != self_ && it != heard_.end() && now - it->second < window) heard++;
        }
        state = fmt::format(
            "node {} is the primary of view {} but a quorum of backups ({} of the other {} nodes) "
            "has not answered its heartbeats in the last {} (it heard from {} of them)",
            self_.value(), replica_.view().value(), quorum - 1, members.size() - 1,
            ticks_text(window), heard);
      } else {
        const bool hears_primary = primary_heard_tick_ &&
                                   primary_heard_view_ == replica_.view().value() &&
                                   now - *primary_heard_tick_ <= lease_ticks_;
        if (hears_primary) {
          state = fmt::format(
              "node {} is a backup in view {} and heard from {} of the other {} nodes in the last "
              "{}; a quorum needs {}",
              self_.value(), replica_.view().value(), peers_heard_within(peer_window_ticks_),
              members.size() - 1, ticks_text(peer_window_ticks_), quorum - 1);
        } else {
          state =
              fmt::format("node {} is a backup in view {} and has not heard from primary node {}",
                          self_.value(), replica_.view().value(), replica_.primary().value());
          if (primary_heard_tick_) {
            state += fmt::format(" for {}", ticks_text(now - *primary_heard_tick_));
          }
        }
      }
      break;
    case vr::ReplicaStatus::kViewChange:
      state = fmt::format(
          "node {} is in a view change (view {}) that has not gathered a quorum ({} of {} nodes)",
          self_.value(), replica_.view().value(), quorum, members.size());
      break;
    case vr::ReplicaStatus::kRecovering:
      state = fmt::format("node {} is recovering and waits for a quorum ({} of {} nodes) to answer",
                          self_.value(), quorum, members.size());
      break;
    default:
      state = fmt::format("node {} is {}", self_.value(), vr::status_name(replica_.status()));
      break;
  }
  if (quorum_seen_)
    state += fmt::format("; no working quorum for {}", ticks_text(now - quorum_seen_tick_));
  return state;
}

std::vector<Epoch> VrSequencer::take_committed() { return std::exchange(service_.committed, {}); }

Status VrSequencer::replay(RecordType type, std::string_view payload) {
  if (type == RecordType::kLegacyEpoch) {
    return corruption(
        "the WAL holds epoch records of a build before VR (record type 2); this build cannot "
        "read that data directory: start with a fresh one");
  }
  if (type != RecordType::kVrLog && type != RecordType::kVrCheckpoint &&
      type != RecordType::kVrState) {
    return corruption(fmt::format("sequencer: unexpected record type {}", static_cast<int>(type)));
  }
  Result<vr::DurableRecord> record = vr::decode_record(payload);
  if (!record) return record.status();
  if (const auto* state = std::get_if<vr::DurableState>(&*record);
      state != nullptr && members_.size() == 1 && state->members != members_) {
    // A single node never changes its group: this is a cluster node's data
    // (a snapshot restored into `maroon dev`), which it cannot serve alone.
    return invalid_argument(fmt::format(
        "the data is of a group of {} replicas; this node runs alone and cannot use it",
        state->members.size()));
  }
  replayed_anything_ = true;
  if (Status s = replica_.replay(*record); !s) return s;
  if (!service_.error.is_ok()) return service_.error;
  last_proposed_ = service_.last;
  return Status::ok();
}

std::vector<PersistRecord> VrSequencer::snapshot_records() const {
  std::vector<PersistRecord> records;
  for (const vr::DurableRecord& r : replica_.durable_image()) {
    MAROON_ASSERT(!std::holds_alternative<vr::DurableState>(r));
    PersistRecord p{std::holds_alternative<vr::LogSuffix>(r) ? RecordType::kVrLog
                                                             : RecordType::kVrCheckpoint,
                    {}};
    vr::encode_record(r, p.payload);
    records.push_back(std::move(p));
  }
  return records;
}

void VrSequencer::start(Output& out) {
  if (replayed_anything_) {
    if (log_lost_noted_) replica_.note_log_lost();
    replica_.finish_replay(vout_);
  } else if (log_lost_noted_ && members_.size() > 1) {
    // Nothing durable, yet marked lost: a node that rejoins with a new data
    // directory (its old one was wiped). It must not bootstrap a group of
    // its own in view 0 with an empty log (what it acknowledged before would
    // be forgotten); it starts from the configured group's first state and
    // recovers the log from a quorum before it votes.
    const Status s =
        replica_.replay(vr::DurableState{.epoch = vr::ConfigEpoch(0), .members = members_});
    MAROON_ASSERT(s.is_ok());
    replica_.note_log_lost();
    replica_.finish_replay(vout_);
  } else if (join_) {
    replica_.join(vout_);
  } else {
    replica_.bootstrap(members_, vout_);
  }
  drain(out);
}

void VrSequencer::abdicate(Output& out) {
  replica_.abdicate(vout_);
  note_view();
  drain(out);
}

void VrSequencer::tick(Output& out) {
  replica_.tick(vout_);
  note_quorum();
  drain(out);
}

SequencerStatus VrSequencer::status() const {
  SequencerStatus s;
  const bool normal = replica_.status() == vr::ReplicaStatus::kNormal;
  if (normal) {
    s.role = members_.size() == 1 ? "single" : replica_.is_primary() ? "primary" : "backup";
  } else if (replica_.status() == vr::ReplicaStatus::kViewChange) {
    s.role = "view-change";
  } else {
    s.role = vr::status_name(replica_.status());
  }
  s.view = replica_.view().value();
  s.primary = NodeId(replica_.primary().value());
  s.committed = service_.last;
  s.quorum = has_quorum();
  if (!s.quorum) s.no_quorum_reason = no_quorum_reason();
  return s;
}

void VrSequencer::drain(Output& out) {
  for (size_t i = 0; i < vout_.persist.size(); i++) {
    const vr::DurableRecord& r = vout_.persist[i];
    std::string payload;
    vr::encode_record(r, payload);
    MAROON_ASSERT_MSG(payload.size() <= limits::wal_record_bytes_max,
                      "a VR record is larger than a WAL record");
    RecordType type = std::holds_alternative<vr::LogSuffix>(r)    ? RecordType::kVrLog
                      : std::holds_alternative<vr::Checkpoint>(r) ? RecordType::kVrCheckpoint
                                                                  : RecordType::kVrState;
    uint64_t node_seq = out.add_record(type, std::move(payload));
    seq_map_.emplace_back(node_seq, vout_.first_seq + i);
  }
  MAROON_ASSERT(members_.size() > 1 || (vout_.send_now.empty() && vout_.send_after_persist.empty()));
  for (vr::Envelope& e : vout_.send_now) {
    std::string bytes;
    vr::encode_message(e.msg, bytes);
    out.peer_now.push_back(PeerEnvelope{NodeId(e.to.value()), VrPacket{std::move(bytes)}});
  }
  for (vr::Envelope& e : vout_.send_after_persist) {
    std::string bytes;
    vr::encode_message(e.msg, bytes);
    out.peer_after_persist.push_back(
        PeerEnvelope{NodeId(e.to.value()), VrPacket{std::move(bytes)}});
  }
  // Replies to the node's own proposals carry nothing it needs: a committed
  // epoch reaches it through the service.
  vout_.clear();
  note_view();
  MAROON_ASSERT(service_.error.is_ok());
}

}  // namespace maroon
