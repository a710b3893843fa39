// The VR replica. Section numbers refer to "Viewstamped Replication
// Revisited" (Liskov & Cowling, 2012). Rules that the paper leaves open and
// that this implementation fixes are marked "Rule:".
#include "vr/replica.h"

#include <algorithm>

#include "maroon/assert.h"
#include "common/codec.h"

// GCC 12 reports DurableState's (default-initialized) members as maybe
// uninitialized when a DurableRecord variant is moved; a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace maroon::vr {

namespace {

// Accounting size of an entry in the in-memory log (payload plus header).
size_t entry_bytes(const Entry& e) { return e.payload.size() + 48; }

bool contains(const std::vector<ReplicaId>& v, ReplicaId r) {
  return std::find(v.begin(), v.end(), r) != v.end();
}

bool valid_members(const std::vector<ReplicaId>& members) {
  if (members.empty() || members.size() > limits::replicas_max) return false;
  for (size_t i = 0; i < members.size(); i++) {
    if (members[i].value() == 0) return false;
    for (size_t j = 0; j < i; j++) {
      if (members[i] == members[j]) return false;
    }
  }
  return true;
}

struct ReconfigurationEntry {
  ConfigEpoch epoch;
  Reconfiguration change;
};

std::string encode_reconfiguration_entry(ConfigEpoch epoch, std::string_view request) {
  std::string out;
  ByteWriter w(out);
  w.u64(epoch.value());
  out += request;
  return out;
}

std::optional<ReconfigurationEntry> decode_reconfiguration_entry(std::string_view payload) {
  if (payload.size() < 8) return std::nullopt;
  ByteReader r(payload.substr(0, 8));
  uint64_t epoch = 0;
  if (!r.u64(epoch)) return std::nullopt;
  auto change = decode_reconfiguration(payload.substr(8));
  if (!change) return std::nullopt;
  return ReconfigurationEntry{ConfigEpoch(epoch), std::move(*change)};
}

}  // namespace

std::string encode_members(const std::vector<ReplicaId>& members) {
  std::string out;
  ByteWriter w(out);
  w.varint(members.size());
  for (ReplicaId r : members) w.u32(r.value());
  return out;
}

std::optional<std::vector<ReplicaId>> decode_members(std::string_view payload) {
  ByteReader r(payload);
  uint64_t n = 0;
  if (!r.varint(n) || n == 0 || n > limits::replicas_max) return std::nullopt;
  std::vector<ReplicaId> members;
  for (uint64_t i = 0; i < n; i++) {
    uint32_t id = 0;
    if (!r.u32(id)) return std::nullopt;
    members.push_back(ReplicaId(id));
  }
  if (!r.at_end() || !valid_members(members)) return std::nullopt;
  return members;
}

std::string encode_reconfiguration(const std::vector<ReplicaId>& members, std::string_view annex) {
  MAROON_ASSERT(annex.size() <= limits::annex_bytes_max);
  std::string out = encode_members(members);
  if (!annex.empty()) {
    ByteWriter w(out);
    w.bytes(annex);
  }
  return out;
}

std::optional<Reconfiguration> decode_reconfiguration(std::string_view payload) {
  ByteReader r(payload);
  uint64_t n = 0;
  if (!r.varint(n) || n == 0 || n > limits::replicas_max) return std::nullopt;
  Reconfiguration change;
  for (uint64_t i = 0; i < n; i++) {
    uint32_t id = 0;
    if (!r.u32(id)) return std::nullopt;
    change.members.push_back(ReplicaId(id));
  }
  if (!valid_members(change.members)) return std::nullopt;
  if (r.at_end()) return change;  // no annex (format 1 requests)
  std::string_view annex;
  if (!r.bytes(annex, limits::annex_bytes_max) || annex.empty() || !r.at_end()) {
    return std::nullopt;
  }
  change.annex = annex;
  return change;
}

const char* status_name(ReplicaStatus s) {
  switch (s) {
    case ReplicaStatus::kNormal: return "normal";
    case ReplicaStatus::kViewChange: return "view-change";
    case ReplicaStatus::kRecovering: return "recovering";
    case ReplicaStatus::kJoining: return "joining";
    case ReplicaStatus::kLeaving: return "leaving";
    case ReplicaStatus::kShutdown: return "shutdown";
  }
  return "?";
}

const Header& header_of(const ReplicaMessage& m) {
  return std::visit([](const auto& x) -> const Header& { return x.h; }, m);
}

const char* message_name(const ReplicaMessage& m) {
  static constexpr const char* kNames[] = {
      "Prepare",  "PrepareOk", "Commit",   "StartViewChange", "DoViewChange", "StartView",
      "Recovery", "RecoveryResponse", "GetState", "NewState", "StartEpoch", "EpochStarted"};
  static_assert(std::size(kNames) == std::variant_size_v<ReplicaMessage>);
  return kNames[m.index()];
}

Replica::Replica(ReplicaId self, Options options, Service& service, uint64_t seed)
    : self_(self), options_(options), service_(service), prng_(seed) {
  MAROON_ASSERT(self_.value() != 0);
  MAROON_ASSERT(options_.heartbeat_ticks >= 1);
  // A live primary renews its lease (and the backups' promises) several
  // times per lease, and the promise runs out before a backup gives up.
  MAROON_ASSERT(options_.heartbeat_ticks * 3 <= options_.lease_ticks);
  MAROON_ASSERT(options_.lease_ticks <= options_.view_change_timeout_ticks);
  MAROON_ASSERT(options_.retry_ticks >= 1);
  MAROON_ASSERT(options_.prepare_batch_ops_max >= 1 && options_.pipeline_ops_max >= 1);
  MAROON_ASSERT(options_.prepare_batch_bytes_max >= limits::entry_bytes_max);
  MAROON_ASSERT(options_.prepare_batch_bytes_max <= limits::log_bytes_max / 4);
  MAROON_ASSERT(options_.pipeline_ops_max <= limits::log_ops_max / 4);
  MAROON_ASSERT(options_.state_transfer_ops_max >= 1);
  // A byte interval above the log's capacity could never trim it in time.
  MAROON_ASSERT(options_.checkpoint_interval_bytes <= limits::log_bytes_max / 2);
  MAROON_ASSERT(options_.client_table_clients_max >= 1 &&
                options_.client_table_clients_max <= limits::client_table_clients_max);
}

// ---------------------------------------------------------------------------
// Starting

void Replica::bootstrap(std::vector<ReplicaId> members, Output& out) {
  MAROON_ASSERT(!started_);
  MAROON_ASSERT(!log_lost_);  // a fresh member has no log to lose
  MAROON_ASSERT(valid_members(members));
  MAROON_ASSERT(contains(members, self_));
  started_ = true;
  members_ = std::move(members);
  ever_member_ = true;
  promise_until_ = 0;
  // Rule: act in view 0 only once our membership is durable. A replica that
  // acted (say, prepared as primary) and then lost everything in a crash
  // would otherwise start view 0 again and reuse op numbers.
  status_ = ReplicaStatus::kJoining;
  persist_state(out);
  start_after_seq_ = next_seq_ - 1;
  check_invariants();
}

void Replica::join(Output&) {
  MAROON_ASSERT(!started_);
  started_ = true;
  status_ = ReplicaStatus::kJoining;
  check_invariants();
}

Status Replica::replay(const DurableRecord& record) {
  MAROON_ASSERT(!started_);
  replaying_ = true;
  Output discard;
  if (const auto* s = std::get_if<DurableState>(&record)) {
    if (!s->members.empty() && !valid_members(s->members)) {
      return corruption("vr: durable state names an invalid member list");
    }
    epoch_ = s->epoch;
    members_ = s->members;
    view_ = s->view;
    persisted_epoch_ = s->epoch;
    persisted_view_ = s->view;
    last_normal_view_ = s->last_normal_view;
    epoch_start_ = s->epoch_start;
    old_members_ = s->old_members;
    // A member of this epoch, or of the one before it (leaving it).
    ever_member_ = ever_member_ || is_member() || contains(old_members_, self_);
    if (last_normal_view_ > view_) return corruption("vr: durable state has last normal view > view");
    return Status::ok();
  }
  if (const auto* cp = std::get_if<Checkpoint>(&record)) {
    if (cp->op <= executed_) {
      // Already executed as replayed (a single replica executes its log as
      // it reads it): the state is past the checkpoint, but the checkpoint
      // is still the newest durable one, and the log before it can go.
      // Without this a long WAL would grow the log past log_ops_max.
      if (!checkpoint_ || checkpoint_->op < cp->op) {
        checkpoint_ = *cp;
        checkpoint_taken_ = std::max(checkpoint_taken_, cp->op);
      }
      if (cp->op > log_after_) drop_log_through(cp->op);
      return Status::ok();
    }
    if (Status st = restore_checkpoint_state(cp->state); !st) return st;
    checkpoint_ = *cp;
    checkpoint_taken_ = cp->op;
    executed_ = cp->op;
    commit_ = std::max(commit_, cp->op);
    if (cp->op >= op_) {
      log_.clear();
      log_bytes_ = 0;
      op_ = cp->op;
      log_after_ = cp->op;
    } else if (cp->op > log_after_) {
      drop_log_through(cp->op);
    }
    return Status::ok();
  }
  const auto& suffix = std::get<LogSuffix>(record);
  for (size_t i = 0; i < suffix.entries.size(); i++) {
    if (suffix.entries[i].op.value() != suffix.after.value() + i + 1) {
      return corruption("vr: log record with entries out of order");
    }
  }
  if (suffix.after > op_) {
    // Rule: a log that starts after our head is a gap; the entries before it
    // are committed and will come from a peer.
    log_.clear();
    log_bytes_ = 0;
    log_after_ = suffix.after;
    op_ = suffix.after;
  } else {
    OpNumber from = std::max(suffix.after, log_after_);
    while (!log_.empty() && log_.back().op > from) {
      log_bytes_ -= entry_bytes(log_.back());
      log_.pop_back();
    }
    op_ = from;
  }
  for (const Entry& e : suffix.entries) {
    if (e.op <= op_) continue;
    log_bytes_ += entry_bytes(e);
    log_.push_back(e);
    op_ = e.op;
  }
  if (members_.size() == 1 && members_[0] == self_ && epoch_ == ConfigEpoch(0)) {
    // A group that was always this single replica commits what it has made
    // durable: the replayed log is committed, and is executed as it is read;
    // the checkpoint records that follow trim it (above), so a long WAL never
    // has to sit in memory. (After reconfigurations the log may hold records
    // from a larger group, later truncated: those wait for finish_replay.)
    commit_ = op_;
    execute_committed(discard);
  }
  return Status::ok();
}

std::vector<DurableRecord> Replica::durable_image() const {
  MAROON_ASSERT(started_);
  std::vector<DurableRecord> image;
  // The newest checkpoint emitted: pending ones are newer than checkpoint_.
  const Checkpoint* cp = checkpoint_ ? &*checkpoint_ : nullptr;
  for (const Pending& p : pending_) {
    if (p.checkpoint && (cp == nullptr || p.checkpoint->op > cp->op)) cp = &*p.checkpoint;
  }
  OpNumber after = log_after_;
  if (cp != nullptr) {
    // Replaying the checkpoint sets the log to start at it (or later, after
    // a gap, which the suffix's start then reproduces).
    MAROON_ASSERT(cp->op <= op_ && cp->op <= checkpoint_taken_);
    image.emplace_back(*cp);
    after = std::max(after, cp->op);
  }
  // As persist_log writes them; an empty log after the checkpoint needs no
  // record, unless it starts later (a gap), which the original record
  // marked the same way.
  const bool gap = after > (cp ? cp->op : OpNumber(0));
  if (after == op_ && !gap) return image;
  for (LogSuffix& rec : log_records(after)) image.emplace_back(std::move(rec));
  return image;
}

void Replica::note_log_lost() {
  MAROON_ASSERT(!started_);
  log_lost_ = true;
}

void Replica::finish_replay(Output& out) {
  MAROON_ASSERT(!started_);
  started_ = true;
  replaying_ = false;
  durable_op_ = op_;
  // A DoViewChange leaves only after its view is durable, so none went out
  // for a view beyond the durable one.
  dvc_sent_view_ = view_;
  // Known committed: everything executed before the crash that a checkpoint
  // covers, and the reconfiguration that began our epoch with all before it.
  // Also: everything before the log's start (a checkpoint, or a
  // gap left by adopting a log that started beyond what we held).
  commit_ = std::max({executed_, std::min(op_, epoch_start_), log_after_});
  execute_committed(out);
  if (members_.empty()) {
    status_ = ReplicaStatus::kJoining;
    check_invariants();
    return;
  }
  if (!is_member()) {
    // Removed by a reconfiguration: keep telling the new group about its
    // epoch until it has started (we do not know whether it has).
    // Not in the previous group either: we were catching up through history
    // towards a later epoch that includes us, and go on fetching.
    status_ = contains(old_members_, self_) ? ReplicaStatus::kLeaving : ReplicaStatus::kJoining;
    next_start_epoch_tick_ = now_;
    state_wanted_ = status_ == ReplicaStatus::kJoining;
    next_state_tick_ = now_;
    check_invariants();
    return;
  }
  // Promises made before the crash are forgotten; wait them out before voting.
  promise_until_ = now_ + options_.lease_ticks;
  if (op_ < epoch_start_) {
    // A replica joining this epoch that had not yet fetched the log up to
    // the reconfiguration: it goes on fetching.
    status_ = ReplicaStatus::kJoining;
    state_wanted_ = true;
    next_state_tick_ = now_;
  } else if (members_.size() == 1) {
    commit_ = op_;
    const ConfigEpoch before = epoch_;
    execute_committed(out);
    // Executing a reconfiguration that was durable (so committed) but not
    // yet executed before the crash moves us into the next epoch instead.
    if (epoch_ == before) enter_normal(view_, out);
  } else {
    // Rule: entries beyond the checkpoint are not known to be committed, and
    // entries after the last commit we knew may have been replaced by a view
    // change while we were down. Recovery decides.
    start_recovery(out);
  }
  check_invariants();
}

// ---------------------------------------------------------------------------
// Dispatch

void Replica::step(const ReplicaMessage& msg, Output& out) {
  MAROON_ASSERT(started_);
  const Header& h = header_of(msg);
  if (h.from == self_) return;
  if (status_ == ReplicaStatus::kShutdown) {
    // Removed: we still serve what we know is committed (a straggler may
    // need it), and point stragglers of an older epoch at the new group.
    if (const auto* g = std::get_if<GetState>(&msg)) {
      if (!g->start_view) serve_state(h.from, g->after, commit_, out);
      return;
    }
    if (h.epoch < epoch_ && !std::holds_alternative<StartEpoch>(msg) &&
        !std::holds_alternative<EpochStarted>(msg)) {
      send(h.from, StartEpoch{header(), epoch_start_, members_, old_members_}, out);
    }
    return;
  }

  if (const auto* m = std::get_if<StartEpoch>(&msg)) {
    on_start_epoch(*m, out);
  } else if (const auto* m = std::get_if<EpochStarted>(&msg)) {
    on_epoch_started(*m, out);
  } else if (const auto* m = std::get_if<GetState>(&msg)) {
    on_get_state(*m, out);
  } else if (const auto* m = std::get_if<NewState>(&msg)) {
    on_new_state(*m, out);
  } else if (h.epoch < epoch_) {
    // The sender missed a reconfiguration (one or several, maybe one that
    // removed it): tell it where the group went.
    send(h.from, StartEpoch{header(), epoch_start_, members_, old_members_}, out);
  } else if (h.epoch > epoch_) {
    // We missed one: fetch the committed log, whose reconfiguration entry
    // moves us into the sender's epoch.
    later_epoch_ = std::max(later_epoch_, h.epoch);
    if (!state_wanted_) request_state(h.from, out);
  } else if (status_ == ReplicaStatus::kJoining || status_ == ReplicaStatus::kLeaving) {
    // Not part of this epoch's protocol (yet, or any more).
  } else if (!contains(members_, h.from)) {
    // Not a member of our configuration: ignore.
  } else {
    std::visit(
        [&](const auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, Prepare>) on_prepare(m, out);
          else if constexpr (std::is_same_v<T, PrepareOk>) on_prepare_ok(m, out);
          else if constexpr (std::is_same_v<T, Commit>) on_commit(m, out);
          else if constexpr (std::is_same_v<T, StartViewChange>) on_start_view_change(m, out);
          else if constexpr (std::is_same_v<T, DoViewChange>) on_do_view_change(m, out);
          else if constexpr (std::is_same_v<T, StartView>) on_start_view(m, out);
          else if constexpr (std::is_same_v<T, Recovery>) on_recovery(m, out);
          else if constexpr (std::is_same_v<T, RecoveryResponse>) on_recovery_response(m, out);
        },
        msg);
  }
  check_invariants();
}

void Replica::tick(Output& out) {
  MAROON_ASSERT(started_);
  now_++;
  switch (status_) {
    case ReplicaStatus::kNormal:
      if (is_primary()) {
        if (now_ >= next_heartbeat_tick_) heartbeat(out);
        flush_requests(out);
      } else if (now_ >= view_change_deadline_ && may_vote()) {
        start_view_change(view_.next(), out);
      }
      break;
    case ReplicaStatus::kViewChange:
      if (now_ >= view_change_deadline_ && may_vote()) start_view_change(view_.next(), out);
      break;
    case ReplicaStatus::kRecovering:
      if (now_ >= recovery_deadline_ && now_ >= promise_until_ && log_lost_) {
        if (recovery_below_vote_) {
          // Rule: a lost log never rejoins by a view change, but the group
          // answered from a view below one we voted for, which we may not
          // follow. We ask for a view beyond ours (stuck: the primary
          // abdicates) without taking part in it: no DoViewChange from a
          // lost log. Its view made durable first, like any StartViewChange.
          recovery_below_vote_ = false;
          view_ = view_.next();
          persist_state(out);
          for (ReplicaId r : others()) send_after_persist(r, StartViewChange{header(), true}, out);
        }
        recovery_deadline_ = now_ + 2 * options_.view_change_timeout_ticks +
                             prng_.below(options_.view_change_timeout_ticks);
      } else if (now_ >= recovery_deadline_ && now_ >= promise_until_) {
        // No normal primary answered (the whole group may have restarted):
        // rejoin by a view change from our durable state. Rule: not with a
        // lost log, whose state lacks ops we acknowledged; we wait for a
        // primary, which the others (at least f + 1 of them, or the
        // cluster has lost more than f) form without us.
        status_ = ReplicaStatus::kViewChange;
        start_view_change(view_.next(), out);
      } else if (now_ >= next_retry_tick_) {
        next_retry_tick_ = now_ + options_.retry_ticks;
        broadcast(Recovery{header(), nonce_, executed_}, out);
      }
      break;
    case ReplicaStatus::kLeaving:
      if (now_ >= next_start_epoch_tick_) {
        next_start_epoch_tick_ = now_ + options_.retry_ticks;
        // All of them, those that answered too: some may be gone since
        // (removed by a later change), and a member of a later epoch
        // answers with that epoch, which shuts us down.
        for (ReplicaId r : members_) {
          if (r != self_) send(r, StartEpoch{header(), epoch_start_, members_, old_members_}, out);
        }
      }
      break;
    case ReplicaStatus::kJoining:
    case ReplicaStatus::kShutdown:
      break;
  }
  if (state_wanted_ && now_ >= next_state_tick_ && status_ != ReplicaStatus::kShutdown) {
    // The source may be down: ask someone else.
    std::vector<ReplicaId> candidates = others();
    for (ReplicaId r : old_members_) {
      if (r != self_ && !contains(candidates, r)) candidates.push_back(r);
    }
    // A replica that knows no group yet has only the one that answered.
    if (state_source_.value() != 0 && !contains(candidates, state_source_)) {
      candidates.push_back(state_source_);
    }
    if (!candidates.empty()) request_state(candidates[prng_.below(candidates.size())], out);
  }
  check_invariants();
}

void Replica::on_persisted(uint64_t durable_seq, Output& out) {
  MAROON_ASSERT(started_);
  while (!pending_.empty() && pending_.front().seq <= durable_seq) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    if (p.checkpoint) {
      if (!checkpoint_ || p.checkpoint->op > checkpoint_->op) {
        if (p.checkpoint->op > log_after_ && p.checkpoint->op <= executed_) {
          drop_log_through(p.checkpoint->op);
        }
        durable_op_ = std::max(durable_op_, std::min(p.checkpoint->op, op_));
        checkpoint_ = std::move(p.checkpoint);
      }
    } else if (p.after <= durable_op_ || p.gap) {
      // A record starting the log after a gap: everything before it is
      // committed (held elsewhere), and from it on it is ours.
      durable_op_ = std::max(durable_op_, p.last);
    }
  }
  if (start_after_seq_ != 0 && durable_seq >= start_after_seq_) {
    start_after_seq_ = 0;
    // (Unless something moved us on meanwhile: another epoch, or a view.)
    // The wait was for the epoch whose reconfiguration we executed; if we
    // have since heard of (and moved to) a later one we have not reached,
    // there is nothing to start.
    if (status_ == ReplicaStatus::kJoining && view_ == ViewNumber(0) && is_member() &&
        executed_ >= epoch_start_) {
      if (later_epoch_ > epoch_) {
        // This epoch is already over elsewhere: its view 0 may be long
        // superseded. Keep catching up instead of acting in it.
        state_wanted_ = true;
        next_state_tick_ = now_;
      } else if (later_epoch_ == epoch_ && epoch_ > ConfigEpoch(0) && members_.size() > 1) {
        // Rule: we heard from this epoch before we executed the
        // reconfiguration that begins it, so it started without us and may
        // be past view 0; what we executed may even have come from a later
        // view of it. Acting in view 0 would put a later view's commit
        // number on view 0's log at its stragglers (simulator seed 69903).
        // We enter through recovery, as a replica told of the epoch does.
        promise_until_ = std::max(promise_until_, now_ + options_.lease_ticks);
        start_recovery(out);
      } else {
        enter_normal(view_, out);
      }
    }
  }
  if (is_primary()) advance_commit(out);
  check_invariants();
}

// ---------------------------------------------------------------------------
// Normal operation (§4.1, §4.5, §6.2, §6.3)

void Replica::on_client_request(const ClientRequest& req, Output& out) {
  MAROON_ASSERT(started_);
  if (status_ == ReplicaStatus::kLeaving || status_ == ReplicaStatus::kShutdown) {
    reply(req.client, req.request, ReplyCode::kNewConfig, {}, out);
    return;
  }
  if (!is_primary()) {
    reply(req.client, req.request, ReplyCode::kNotPrimary, {}, out);
    return;
  }
  if (req.client.value() == 0 || req.request.value() == 0 ||
      req.payload.size() > limits::entry_bytes_max) {
    reply(req.client, req.request, ReplyCode::kInvalid, "request malformed or too large", out);
    return;
  }
  if (req.kind == EntryKind::kReconfigure &&
      (req.read_only || !decode_reconfiguration(req.payload))) {
    reply(req.client, req.request, ReplyCode::kInvalid, "malformed member list", out);
    return;
  }
  if (req.kind == EntryKind::kRegister &&
      (req.read_only || !req.payload.empty() || req.session != 0)) {
    reply(req.client, req.request, ReplyCode::kInvalid, "malformed register", out);
    return;
  }
  if (req.session != 0 && req.kind != EntryKind::kRegister &&
      executed_.value() >= req.session) {
    // The register that opened the session has executed here, so the table
    // answers for it. (Otherwise execute() decides, the same everywhere.)
    if (!session_held(req.client, req.session)) {
      reply(req.client, req.request, ReplyCode::kEvicted, "session evicted; register again", out);
      return;
    }
  }
  if (auto it = clients_.find(req.client); it != clients_.end()) {
    if (req.request < it->second.request) return;  // §4.5: an old request; drop it
    if (req.request == it->second.request) {
      // §4.5: executed already; re-send the cached reply.
      reply(req.client, req.request, ReplyCode::kOk, it->second.reply, out);
      return;
    }
  }
  if (auto it = accepted_.find(req.client); it != accepted_.end() && req.request <= it->second) {
    return;  // in the log or the queue already
  }
  if (req.read_only && req.kind == EntryKind::kRequest && has_lease() &&
      executed_ >= view_start_op_) {
    // §6.3: the lease means no other primary can have committed anything we
    // have not, and every op committed before this view is executed here.
    lease_reads_++;
    reply(req.client, req.request, ReplyCode::kOk, service_.read(req.payload), out);
    return;
  }
  if (queue_.size() >= options_.request_queue_max) {
    reply(req.client, req.request, ReplyCode::kBusy, "primary queue full", out);
    return;
  }
  if (!log_has_room(req.payload.size())) {
    // Temporary: the next checkpoint (by ops or by bytes, once the entries
    // in the log commit and execute) trims the log.
    reply(req.client, req.request, ReplyCode::kBusy, "log full until the next checkpoint", out);
    return;
  }
  accepted_[req.client] = req.request;
  queue_.push_back(req);
  flush_requests(out);
  check_invariants();
}

bool Replica::reconfiguration_pending() const {
  if (pending_reconfig_.value() != 0) return true;
  return std::any_of(queue_.begin(), queue_.end(),
                     [](const ClientRequest& r) { return r.kind == EntryKind::kReconfigure; });
}

void Replica::flush_requests(Output& out) {
  if (!is_primary()) return;
  while (!queue_.empty() && pending_reconfig_.value() == 0 &&
         op_.value() - commit_.value() < options_.pipeline_ops_max) {
    std::vector<Entry> batch;
    size_t bytes = 0;
    while (!queue_.empty() && batch.size() < options_.prepare_batch_ops_max &&
           op_.value() - commit_.value() + batch.size() < options_.pipeline_ops_max) {
      const ClientRequest& req = queue_.front();
      std::string payload = req.payload;
      if (req.kind == EntryKind::kReconfigure) {
        if (!batch.empty()) break;  // a reconfiguration goes alone and last
        payload = encode_reconfiguration_entry(epoch_.next(), req.payload);
      }
      Entry e{OpNumber(op_.value() + batch.size() + 1), view_, req.kind, req.client, req.request,
              std::move(payload), req.session, epoch_};
      if (bytes + entry_bytes(e) > options_.prepare_batch_bytes_max && !batch.empty()) break;
      if (!log_has_room(bytes + e.payload.size()) ||
          log_.size() + batch.size() + 1 > limits::log_ops_max) {
        break;  // the log is full until the next checkpoint
      }
      bytes += entry_bytes(e);
      bool reconfig = e.kind == EntryKind::kReconfigure;
      batch.push_back(std::move(e));
      queue_.pop_front();
      if (reconfig) {
        pending_reconfig_ = batch.back().op;
        break;
      }
    }
    if (batch.empty()) break;
    OpNumber after = op_;
    append(std::move(batch), out);
    for (ReplicaId r : others()) send_prepare(r, after, out);
  }
}

void Replica::send_prepare(ReplicaId to, OpNumber after, Output& out) {
  MAROON_ASSERT(after >= log_after_ && after <= op_);
  LogSuffix log = log_suffix(after, options_.prepare_batch_ops_max);
  if (log.entries.empty()) return;
  send(to, Prepare{header(), commit_, std::move(log)}, out);
}

bool Replica::accept_from_primary(const Header& h, Output& out) {
  // A Prepare or Commit: from the primary of its view, to a backup normal in
  // that view. It also renews the backup's lease promise.
  if (status_ == ReplicaStatus::kRecovering) return false;
  if (h.from != primary_of(h.view)) return false;
  if (h.view < view_ && !maybe_rejoin_view(h.view, h.from, out)) return false;
  if (h.view > view_ || status_ != ReplicaStatus::kNormal) {
    // We missed the StartView of this view: ask its primary for it.
    jump_to_view(h.view, h.from, out);
    return false;
  }
  reset_view_change_timer();
  promise_until_ = std::max(promise_until_, now_ + options_.lease_ticks);
  return true;
}

void Replica::on_prepare(const Prepare& m, Output& out) {
  if (!accept_from_primary(m.h, out)) return;
  if (m.log.after > op_) {
    // §5.2: we missed prepares; fetch them.
    if (!state_wanted_) request_state(m.h.from, out);
  } else {
    std::vector<Entry> fresh;
    size_t bytes = 0;
    for (const Entry& e : m.log.entries) {
      if (e.op <= op_) continue;
      bytes += entry_bytes(e);
      fresh.push_back(e);
    }
    if (!fresh.empty()) {
      if (log_bytes_ + bytes > limits::log_bytes_max ||
          log_.size() + fresh.size() > limits::log_ops_max) {
        // Rule: a backup whose log is full (it cannot checkpoint, being
        // behind) stops appending and catches up by state transfer.
        if (!state_wanted_) request_state(m.h.from, out);
      } else {
        append(std::move(fresh), out);
      }
    }
  }
  set_commit(std::min(m.commit, op_), out);
  send_after_persist(m.h.from, PrepareOk{header(), op_, 0}, out);
}

void Replica::on_prepare_ok(const PrepareOk& m, Output& out) {
  if (!is_primary() || m.h.view != view_) return;
  OpNumber& acked = acked_[m.h.from];
  acked = std::max(acked, std::min(m.op, op_));
  if (m.lease_stamp != 0 && m.lease_stamp <= now_) {
    uint64_t& stamp = lease_acked_[m.h.from];
    stamp = std::max(stamp, m.lease_stamp);
    // The primary keeps the same promise as its backups for as long as its
    // lease may last: a view-change quorum may overlap the lease quorum in
    // the primary alone.
    promise_until_ = std::max(promise_until_, stamp + options_.lease_ticks);
  }
  advance_commit(out);
}

void Replica::on_commit(const Commit& m, Output& out) {
  if (!accept_from_primary(m.h, out)) return;
  if (m.commit > op_ && !state_wanted_) request_state(m.h.from, out);
  set_commit(std::min(m.commit, op_), out);
  send(m.h.from, PrepareOk{header(), durable_op_, m.lease_stamp}, out);
}

void Replica::heartbeat(Output& out) {
  MAROON_ASSERT(is_primary());
  next_heartbeat_tick_ = now_ + options_.heartbeat_ticks;
  for (ReplicaId r : others()) {
    send(r, Commit{header(), commit_, now_}, out);
    if (acked_[r] < epoch_start_) {
      // §7: a member that may not know of this epoch yet (a lost
      // StartEpoch, or it restarted) hears of it again.
      send(r, StartEpoch{header(), epoch_start_, members_, old_members_}, out);
    }
    // Rule: re-send prepares a backup has not acknowledged since the last
    // heartbeat (lost messages); under load acks move and nothing is resent.
    OpNumber acked = acked_[r];
    auto [it, fresh] = acked_at_heartbeat_.try_emplace(r, acked);
    if (!fresh && it->second == acked && acked < op_ && acked >= log_after_) {
      send_prepare(r, acked, out);
    }
    it->second = acked;
  }
}

bool Replica::has_lease() const {
  if (!is_primary()) return false;
  size_t needed = quorum_size(members_.size()) - 1;
  size_t holding = 0;
  const uint64_t primary_lease_ticks = options_.lease_ticks * 2 / 3;
  for (const auto& [r, stamp] : lease_acked_) {
    if (stamp + primary_lease_ticks > now_) holding++;
  }
  return holding >= needed;
}

void Replica::advance_commit(Output& out) {
  MAROON_ASSERT(is_primary());
  std::vector<OpNumber> held;
  held.reserve(members_.size());
  for (ReplicaId r : members_) {
    if (r == self_) {
      held.push_back(durable_op_);
    } else {
      auto it = acked_.find(r);
      held.push_back(it == acked_.end() ? OpNumber(0) : it->second);
    }
  }
  std::sort(held.begin(), held.end(), std::greater<>());
  OpNumber candidate = held[quorum_size(members_.size()) - 1];
  if (candidate > commit_) {
    if (pending_reconfig_ != OpNumber(0) && candidate >= pending_reconfig_) {
      // Executing the reconfiguration moves us into the new epoch. Tell the
      // group it committed first, in this epoch: a member that executes it
      // from its own log enters the new epoch's view 0 directly; one that
      // hears from the new epoch first enters it through recovery, which a
      // group of recovering replicas completes only by a view change (a
      // pause of about a second).
      for (ReplicaId r : others()) send(r, Commit{header(), candidate, now_}, out);
    }
    set_commit(candidate, out);
    flush_requests(out);
  }
}

void Replica::set_commit(OpNumber commit, Output& out) {
  MAROON_ASSERT(commit <= op_);
  commit_ = std::max(commit_, commit);
  // Also after a gap before the log was filled, with no new commit number.
  if (executed_ < commit_) execute_committed(out);
}

void Replica::execute_committed(Output& out) {
  while (executed_ < commit_) {
    const Entry* e = entry(executed_.next());
    if (e == nullptr) {
      // A gap before our log: the entries come by state transfer.
      MAROON_ASSERT(executed_ < log_after_);
      break;
    }
    Entry copy = *e;  // execute() may reconfigure and reshape the log
    execute(copy, out);
    MAROON_ASSERT(executed_ == copy.op);
  }
  maybe_checkpoint(out);
}

void Replica::execute(const Entry& e, Output& out) {
  MAROON_ASSERT(e.op == executed_.next());
  MAROON_ASSERT(e.op <= commit_);
  executed_ = e.op;
  executed_bytes_since_checkpoint_ += entry_bytes(e);
  if (pending_reconfig_ == e.op) pending_reconfig_ = OpNumber(0);
  bool duplicate = false, evicted = false;
  ClientState* cs = nullptr;
  if (e.client.value() != 0) {
    if (e.kind != EntryKind::kRegister && e.session != 0 && !session_held(e.client, e.session)) {
      // Rule: a request of a session the table no longer holds never runs.
      // Its client's table entry (and with it the record of which of its
      // requests ran) was evicted, so a retry could otherwise run twice.
      evicted = true;
    } else {
      cs = &clients_[e.client];
      duplicate = e.request <= cs->request;
    }
  }
  std::string result;
  if (evicted) {
    // Nothing runs and nothing changes.
  } else if (duplicate) {
    // At most once: a request that got into the log twice runs once.
    result = cs->request == e.request ? cs->reply : std::string();
  } else if (e.kind == EntryKind::kRegister) {
    result = std::to_string(e.op.value());
  } else if (e.kind == EntryKind::kRequest) {
    result = service_.execute(e);
    MAROON_ASSERT(result.size() <= limits::reply_bytes_max);
  } else {
    MAROON_ASSERT(e.kind == EntryKind::kReconfigure);
    result = "OK";
  }
  if (auto it = accepted_.find(e.client); it != accepted_.end() && it->second <= e.request) {
    // Executed: from now on the client table answers its retries, so the
    // primary's per-view record of it goes (it stays bounded by the queue
    // and the unexecuted log).
    accepted_.erase(it);
  }
  if (cs != nullptr && !duplicate) {
    if (cs->op.value() != 0) clients_by_op_.erase({cs->op, e.client});
    cs->request = e.request;
    cs->reply = result;
    cs->op = e.op;
    if (e.kind == EntryKind::kRegister) cs->session = e.op.value();
    clients_by_op_.insert({cs->op, e.client});
    if (clients_.size() > options_.client_table_clients_max) {
      // Evict the client whose last request is oldest: the same choice on
      // every replica, since it depends only on the log.
      auto oldest = clients_by_op_.begin();
      MAROON_ASSERT(oldest->second != e.client);
      clients_.erase(oldest->second);
      clients_by_op_.erase(oldest);
    }
    MAROON_ASSERT(clients_by_op_.size() == clients_.size());
  }
  const bool primary = is_primary();
  if (e.kind == EntryKind::kReconfigure && !duplicate && !evicted) {
    auto rc = decode_reconfiguration_entry(e.payload);
    MAROON_ASSERT(rc.has_value());  // the primary encoded it
    // The group it changes: ours, unless StartEpoch took us into its epoch
    // before we executed it.
    const std::vector<ReplicaId> old_group = rc->epoch > epoch_ ? members_ : old_members_;
    service_.on_reconfigure(rc->epoch, rc->change.members, old_group, rc->change.annex, e.op);
    begin_epoch(rc->epoch, std::move(rc->change.members), e.op, out);
  }
  // The reply to a reconfiguration names the new group.
  if (primary && evicted) {
    reply(e.client, e.request, ReplyCode::kEvicted, "session evicted; register again", out);
  } else if (primary && e.client.value() != 0 && !duplicate) {
    reply(e.client, e.request, ReplyCode::kOk, result, out);
  }
}

// ---------------------------------------------------------------------------
// View change (§4.2, §5.3)

bool Replica::may_vote() const {
  return is_member() && now_ >= promise_until_ && !log_lost_ &&
         (status_ == ReplicaStatus::kNormal || status_ == ReplicaStatus::kViewChange);
}

void Replica::reset_view_change_timer() {
  // Rule: each view change that fails to finish doubles the timeout (up to
  // 32x), so that slow links cannot keep view changes duelling forever.
  const uint64_t t = uint64_t{options_.view_change_timeout_ticks}
                     << std::min<uint32_t>(view_change_attempts_, 5);
  view_change_deadline_ = now_ + t + prng_.below(t);
}

void Replica::start_view_change(ViewNumber v, Output& out) {
  MAROON_ASSERT(v > view_ || (v == view_ && status_ != ReplicaStatus::kNormal));
  MAROON_ASSERT(may_vote());
  if (status_ == ReplicaStatus::kNormal) last_normal_view_ = view_;
  status_ = ReplicaStatus::kViewChange;
  view_ = v;
  view_change_attempts_++;
  svc_from_.clear();
  dvc_.clear();
  dvc_sent_ = false;
  state_wanted_ = false;
  for (const ClientRequest& req : queue_) {
    reply(req.client, req.request, ReplyCode::kNotPrimary, {}, out);
  }
  queue_.clear();
  accepted_.clear();
  reset_view_change_timer();
  persist_state(out);
  // Sent only once the new view number is durable: a restarted replica never
  // goes back to a view it has left.
  for (ReplicaId r : others()) send_after_persist(r, StartViewChange{header()}, out);
  maybe_send_do_view_change(out);
}

void Replica::abdicate(Output& out) {
  if (status_ != ReplicaStatus::kNormal || !is_primary()) return;
  // As for a stuck replica's request (below): no more lease reads, so the
  // promise is moot; the backups release theirs when they see our
  // StartViewChange, and the next view has another primary.
  promise_until_ = 0;
  if (!may_vote()) return;
  start_view_change(view_.next(), out);
}

void Replica::on_start_view_change(const StartViewChange& m, Output& out) {
  if (m.h.view > view_ && status_ == ReplicaStatus::kNormal) {
    if (is_primary() && m.stuck) {
      // Rule: a replica that cannot come back to our view keeps the group
      // from ever converging; we abdicate (serving no more lease reads, so
      // our own promise is moot) and the group moves to its view.
      promise_until_ = 0;
    } else if (m.h.from == primary_of(view_)) {
      // Our primary abdicated: the promise we made it is released.
      promise_until_ = 0;
    }
  }
  if (m.h.view > view_) {
    if (!may_vote()) return;
    start_view_change(m.h.view, out);
  }
  if (m.h.view != view_ || status_ != ReplicaStatus::kViewChange) return;
  if (!contains(svc_from_, m.h.from)) svc_from_.push_back(m.h.from);
  maybe_send_do_view_change(out);
}

void Replica::maybe_send_do_view_change(Output& out) {
  if (status_ != ReplicaStatus::kViewChange || dvc_sent_) return;
  if (svc_from_.size() + 1 < quorum_size(members_.size())) return;
  dvc_sent_ = true;
  dvc_sent_view_ = std::max(dvc_sent_view_, view_);
  DoViewChange dvc{header(), last_normal_view_, commit_, log_suffix(log_after_, SIZE_MAX)};
  ReplicaId primary = primary_of(view_);
  if (primary == self_) {
    dvc_[self_] = std::move(dvc);
    maybe_start_view(out);
  } else {
    send_after_persist(primary, std::move(dvc), out);
  }
}

void Replica::on_do_view_change(const DoViewChange& m, Output& out) {
  if (primary_of(m.h.view) != self_) return;
  if (m.h.view > view_) {
    if (!may_vote()) return;
    start_view_change(m.h.view, out);
  }
  if (m.h.view != view_ || status_ != ReplicaStatus::kViewChange) return;
  // A DoViewChange implies its sender's StartViewChange.
  if (!contains(svc_from_, m.h.from)) svc_from_.push_back(m.h.from);
  dvc_[m.h.from] = m;
  maybe_send_do_view_change(out);
  maybe_start_view(out);
}

void Replica::maybe_start_view(Output& out) {
  if (status_ != ReplicaStatus::kViewChange || !dvc_.contains(self_)) return;
  if (dvc_.size() < quorum_size(members_.size())) return;
  // §4.2: the log of the largest last-normal view, and within it the
  // largest op number; the largest commit number among the quorum.
  const DoViewChange* best = nullptr;
  OpNumber commit{0};
  for (const auto& [from, d] : dvc_) {
    commit = std::max(commit, d.commit);
    if (best == nullptr || d.last_normal_view > best->last_normal_view ||
        (d.last_normal_view == best->last_normal_view && d.log.last() > best->log.last())) {
      best = &d;
    }
  }
  // The heart of VR's safety: every committed op is in the chosen log.
  MAROON_ASSERT(best->log.last() >= commit);
  LogSuffix chosen = best->log;
  dvc_.clear();
  adopt_log(chosen, out);
  const ConfigEpoch epoch = epoch_;
  set_commit(std::max(commit_, std::min(commit, op_)), out);
  if (epoch_ != epoch) return;  // executing a reconfiguration moved us on
  enter_normal(view_, out);
  broadcast(StartView{header(), commit_, log_suffix(log_after_, SIZE_MAX)}, out);
  if (executed_ < log_after_ && !state_wanted_) {
    std::vector<ReplicaId> o = others();
    request_state(o[prng_.below(o.size())], out);
  }
}

void Replica::on_start_view(const StartView& m, Output& out) {
  if (status_ == ReplicaStatus::kRecovering) return;
  if (m.h.from != primary_of(m.h.view)) return;
  if (m.h.view == view_ && status_ == ReplicaStatus::kNormal) return;
  if (m.h.view < view_ && !may_rejoin(m.h.view)) return;
  // Rule: every view's log holds every committed op, so a StartView whose
  // log ends before an op we know is committed is a stale copy (one we
  // followed already, delivered late; VR simulator seed 17214: adopting it
  // stopped the replica on adopt_log's assertion).
  if (m.log.last() < commit_) return;
  if (m.h.view == last_normal_view_ && op_ >= m.log.last() && status_ != ReplicaStatus::kJoining &&
      !log_lost_) {
    // Rule: a late StartView of a view we were already normal in carries a
    // prefix of our log (ours may hold ops we acknowledged since): keep ours.
    enter_normal(m.h.view, out);
    send_after_persist(m.h.from, PrepareOk{header(), op_, 0}, out);
    return;
  }
  follow_primary(m.h.view, m.log, m.commit, m.h.from, out);
}

void Replica::follow_primary(ViewNumber v, const LogSuffix& log, OpNumber commit,
                             ReplicaId primary, Output& out) {
  // The primary's log is this view's: take it, commit what it says is
  // committed, and acknowledge the whole log once it is durable here.
  MAROON_ASSERT(v >= dvc_sent_view_);
  view_ = v;
  adopt_log(log, out);
  // The view's log holds every committed op: whatever a lost log lacked
  // is back (the host clears the durable mark once the adopted log is).
  log_lost_ = false;
  const ConfigEpoch epoch = epoch_;
  set_commit(std::min(commit, op_), out);
  if (epoch_ != epoch) return;  // executing a reconfiguration moved us on
  enter_normal(view_, out);
  send_after_persist(primary, PrepareOk{header(), op_, 0}, out);
  if (executed_ < log_after_ && !state_wanted_) request_state(primary, out);
}

void Replica::enter_normal(ViewNumber v, Output& out) {
  // Never act in a view below one we voted for.
  MAROON_ASSERT(v >= dvc_sent_view_);
  // Nor with a lost log not yet replaced by a primary's.
  MAROON_ASSERT_MSG(!log_lost_, "a replica with a lost log enters a view without its log");
  status_ = ReplicaStatus::kNormal;
  view_change_attempts_ = 0;
  view_ = v;
  last_normal_view_ = v;
  svc_from_.clear();
  dvc_.clear();
  dvc_sent_ = false;
  acked_.clear();
  acked_at_heartbeat_.clear();
  lease_acked_.clear();
  queue_.clear();
  persist_state(out);
  if (primary_of(v) == self_) {
    view_start_op_ = op_;
    next_heartbeat_tick_ = now_;
    rebuild_accepted();
  } else {
    accepted_.clear();
    pending_reconfig_ = OpNumber(0);
    reset_view_change_timer();
    // Rule: a backup whose log starts after a gap (ops it never executed)
    // asks for the state it lacks whenever it becomes normal, whichever
    // path brought it here: a view change clears a pending request, and
    // rejoining a view (maybe_rejoin_view, a late StartView) would otherwise
    // leave it acknowledging prepares forever without executing
    // (cluster sim seed 6599).
    if (executed_ < log_after_ && !state_wanted_) request_state(primary_of(v), out);
  }
}

void Replica::rebuild_accepted() {
  // Requests in the uncommitted part of the log or in the queue are in
  // progress: a retry of one must not be prepared a second time.
  accepted_.clear();
  pending_reconfig_ = OpNumber(0);
  for (const Entry& e : log_) {
    if (e.op <= commit_) continue;
    if (e.client.value() != 0) {
      RequestNumber& r = accepted_[e.client];
      r = std::max(r, e.request);
    }
    if (e.kind == EntryKind::kReconfigure) pending_reconfig_ = e.op;
  }
  for (const ClientRequest& req : queue_) {
    RequestNumber& r = accepted_[req.client];
    r = std::max(r, req.request);
  }
}

// ---------------------------------------------------------------------------
// Recovery (§4.3)

void Replica::start_recovery(Output& out) {
  status_ = ReplicaStatus::kRecovering;
  nonce_ = prng_.next() | 1;
  recovery_responses_.clear();
  next_retry_tick_ = now_ + options_.retry_ticks;
  recovery_deadline_ = now_ + 2 * options_.view_change_timeout_ticks + prng_.below(options_.view_change_timeout_ticks);
  broadcast(Recovery{header(), nonce_, executed_}, out);
}

void Replica::on_recovery(const Recovery& m, Output& out) {
  if (status_ != ReplicaStatus::kNormal) return;
  RecoveryResponse r{header(), m.nonce, is_primary(), commit_, std::nullopt, {}};
  if (is_primary()) {
    OpNumber after = std::min(m.after, op_);
    if (after < log_after_) {
      if (checkpoint_ && checkpoint_->op == log_after_) r.checkpoint = checkpoint_;
      after = log_after_;
    }
    r.log = log_suffix(after, SIZE_MAX);
  }
  send(m.h.from, std::move(r), out);
}

void Replica::on_recovery_response(const RecoveryResponse& m, Output& out) {
  if (status_ != ReplicaStatus::kRecovering || m.nonce != nonce_) return;
  recovery_responses_[m.h.from] = m;
  if (recovery_responses_.size() < quorum_size(members_.size())) return;
  ViewNumber latest{0};
  for (const auto& [from, r] : recovery_responses_) latest = std::max(latest, r.h.view);
  if (latest < dvc_sent_view_) {
    recovery_below_vote_ = true;
    // Rule: we may have voted (sent a DoViewChange) for view dvc_sent_view_
    // before the crash, and that vote may still form it from logs without
    // anything we would acknowledge in an older view. We never act in a view
    // below one we voted for; the recovery deadline makes us join a view
    // change beyond it instead, and the group follows (maybe_rejoin_view's
    // "stuck" StartViewChange).
    return;
  }
  auto it = recovery_responses_.find(primary_of(latest));
  if (it == recovery_responses_.end() || it->second.h.view != latest || !it->second.from_primary) {
    return;  // wait for the primary of the latest view
  }
  RecoveryResponse r = std::move(it->second);
  recovery_responses_.clear();
  if (r.checkpoint && r.checkpoint->op > executed_) install_checkpoint(*r.checkpoint, out);
  follow_primary(r.h.view, r.log, r.commit, r.h.from, out);
}

// ---------------------------------------------------------------------------
// State transfer and checkpoints (§5.1, §5.2)

void Replica::jump_to_view(ViewNumber v, ReplicaId from, Output& out) {
  // §5.2 has a replica that learns of a later view truncate its log to its
  // commit number and fetch the rest. Rule: we do not, because a log that is
  // only a prefix of the new view's log must not be reported under that view
  // in a later DoViewChange (ops committed before the view may lie beyond
  // our commit number). Instead we keep our log and last normal view, and
  // ask the view's primary for its StartView, which carries the whole log.
  MAROON_ASSERT(v >= view_);
  MAROON_ASSERT(primary_of(v) == from && from != self_);
  if (!is_member()) return;
  if (v > view_ || status_ == ReplicaStatus::kNormal) {
    if (status_ == ReplicaStatus::kNormal) last_normal_view_ = view_;
    status_ = ReplicaStatus::kViewChange;
    view_ = v;
    svc_from_.clear();
    dvc_.clear();
    dvc_sent_ = false;
    queue_.clear();
    accepted_.clear();
    reset_view_change_timer();
    persist_state(out);
  }
  request_start_view(from, out);
}

void Replica::request_start_view(ReplicaId primary, Output& out) {
  if (now_ < next_start_view_request_tick_) return;
  next_start_view_request_tick_ = now_ + options_.retry_ticks;
  GetState g{header(), commit_, true};
  send(primary, g, out);
}

bool Replica::maybe_rejoin_view(ViewNumber v, ReplicaId from, Output& out) {
  // Rule: a replica stuck in a view change that the rest of the group never
  // joined (it was cut off, and the others still hear a live primary) goes
  // back to that primary's view, provided it never sent a DoViewChange for a
  // later view: a StartViewChange alone hands no log to anyone, so no view
  // can have been formed from state this replica then contradicts. If it
  // was normal in that very view its log is still that view's, and it
  // resumes at once; otherwise it needs the view's StartView first.
  if (!may_rejoin(v)) {
    if (status_ == ReplicaStatus::kViewChange && dvc_sent_view_ > v &&
        now_ >= next_stuck_tick_) {
      next_stuck_tick_ = now_ + options_.retry_ticks;
      send(from, StartViewChange{header(), true}, out);
    }
    return false;
  }
  MAROON_ASSERT(v < view_);
  if (last_normal_view_ == v && !log_lost_) {
    enter_normal(v, out);
    return true;
  }
  request_start_view(from, out);
  return false;
}

bool Replica::may_rejoin(ViewNumber v) const {
  return status_ == ReplicaStatus::kViewChange && v >= last_normal_view_ && dvc_sent_view_ <= v;
}

void Replica::request_state(ReplicaId from, Output& out) {
  MAROON_ASSERT(from != self_);
  state_wanted_ = true;
  state_source_ = from;
  next_state_tick_ = now_ + options_.retry_ticks;
  // Catching up from outside the view, we ask from our known-committed
  // prefix, so our entries after it get compared (on_new_state).
  const bool catching_up = status_ == ReplicaStatus::kJoining || later_epoch_ > epoch_;
  OpNumber after = executed_ < log_after_ ? executed_
                   : catching_up          ? std::max(commit_, log_after_)
                                          : op_;
  send(from, GetState{header(), after}, out);
}

void Replica::on_get_state(const GetState& m, Output& out) {
  if (m.start_view) {
    // A backup that missed our StartView.
    if (is_primary() && m.h.epoch == epoch_ && contains(members_, m.h.from)) {
      send(m.h.from, StartView{header(), commit_, log_suffix(log_after_, SIZE_MAX)}, out);
    }
    return;
  }
  // Anyone may serve what it knows to be committed; only a normal replica in
  // the requester's view may serve its uncommitted log as that view's.
  const bool authoritative =
      status_ == ReplicaStatus::kNormal && m.h.epoch == epoch_ && m.h.view == view_;
  serve_state(m.h.from, m.after, authoritative ? op_ : commit_, out);
}

void Replica::serve_state(ReplicaId to, OpNumber after, OpNumber head, Output& out) {
  MAROON_ASSERT(head <= op_ && head >= commit_);
  NewState ns{header(), commit_, head, std::nullopt, {}};
  after = std::min(after, head);
  if (after < log_after_) {
    if (!checkpoint_ || checkpoint_->op != log_after_) return;  // we have a gap too
    ns.checkpoint = checkpoint_;
    after = log_after_;
  }
  if (after > head) return;
  ns.log = log_suffix(after, std::min<size_t>(options_.state_transfer_ops_max,
                                              head.value() - after.value()));
  send(to, std::move(ns), out);
}

void Replica::on_new_state(const NewState& m, Output& out) {
  // Rule: a replica recovering a lost log never rejoins by a view change,
  // so it cannot wait for one to take it past its epoch: it takes the
  // committed entries of a later epoch's replica while still recovering
  // (committed entries are facts; it still votes nowhere), and executing
  // the reconfiguration brings it into that epoch through recovery.
  const bool lost_catching_up =
      status_ == ReplicaStatus::kRecovering && log_lost_ && m.h.epoch > epoch_;
  if ((status_ == ReplicaStatus::kRecovering && !lost_catching_up) ||
      status_ == ReplicaStatus::kLeaving) {
    return;
  }
  // Entries up to the sender's commit number are committed: anyone may use
  // them. Entries beyond it are this view's log only for a replica in the
  // sender's epoch and view.
  // Rule: only a member of our epoch speaks for our view. A replica removed
  // by the reconfiguration that began the epoch (leaving, shut down) carries
  // the epoch's view 0 in its header without ever having been in it, and its
  // log and commit number may come from a later view (simulator seed 69903,
  // with stale messages: such a NewState made a backup of a cut-off view-0
  // primary commit that primary's uncommitted ops).
  const bool same_view = m.h.epoch == epoch_ && m.h.view == view_ &&
                         status_ == ReplicaStatus::kNormal && contains(members_, m.h.from);
  if (m.h.epoch == epoch_ && !same_view && status_ != ReplicaStatus::kJoining) return;
  if (m.h.epoch < epoch_) return;
  if (!same_view && m.h.epoch > epoch_ && status_ == ReplicaStatus::kNormal) {
    // A later epoch exists, and committed entries we take below may reshape
    // our log, which then is no longer our view's: we stop acting in the
    // view (a view change in our epoch may still be needed to commit the
    // reconfiguration again, if nobody alive knows it committed).
    status_ = ReplicaStatus::kViewChange;
    queue_.clear();
    accepted_.clear();
    reset_view_change_timer();
  }
  if (m.h.epoch > epoch_) later_epoch_ = std::max(later_epoch_, m.h.epoch);
  const OpNumber op_before = op_, executed_before = executed_;
  const OpNumber usable = same_view ? m.head : m.commit;
  if (m.checkpoint && m.checkpoint->op > executed_ && m.checkpoint->op <= m.commit) {
    if (!install_checkpoint(*m.checkpoint, out)) return;
  }
  // Rule: from outside our view only committed entries come, and ours beyond
  // our commit number may be stale (from a view that lost them). Ours are
  // compared with them and cut where they differ; we count as committed
  // only what is verified against a message that starts within the prefix
  // we already know is committed. Nothing is dropped unverified: we may be
  // one of the few replicas that hold a committed op.
  const bool chained = !same_view && m.log.after <= std::max(commit_, log_after_);
  OpNumber verified{0};
  std::vector<Entry> fresh;
  size_t bytes = 0;
  for (const Entry& e : m.log.entries) {
    if (e.op > usable) break;
    if (e.op == executed_.next() && e.op <= log_after_) {
      // Filling a gap before our log: committed, executed, not stored.
      MAROON_ASSERT(e.op <= commit_);
      execute(e, out);
      continue;
    }
    if (!same_view && fresh.empty() && e.op <= op_) {
      const Entry* mine = entry(e.op);
      if (mine == nullptr) continue;  // before our log: checkpointed
      if (*mine == e) {
        if (chained) verified = e.op;
        continue;
      }
      MAROON_ASSERT(e.op > commit_);  // committed entries agree everywhere
      truncate_to(OpNumber(e.op.value() - 1), out);
    }
    if (e.op.value() != op_.value() + fresh.size() + 1) continue;
    // From outside our view, entries join our log only after a prefix they
    // were compared with: appended after unverified entries of ours, they
    // would make a log that breaks log matching (adopt_log relies on it).
    if (!same_view && !chained) break;
    if (log_bytes_ + bytes + entry_bytes(e) > limits::log_bytes_max ||
        log_.size() + fresh.size() + 1 > limits::log_ops_max) {
      break;
    }
    bytes += entry_bytes(e);
    fresh.push_back(e);
    if (chained) verified = e.op;
  }
  if (!fresh.empty()) append(std::move(fresh), out);
  if (same_view) {
    set_commit(std::max(commit_, std::min(m.commit, op_)), out);
  } else {
    set_commit(std::max(commit_, std::min({usable, verified, op_})), out);
  }
  if (status_ == ReplicaStatus::kJoining && m.h.epoch == epoch_ && executed_ >= epoch_start_ &&
      is_member() && start_after_seq_ == 0) {
    joined_epoch(out);
  }
  const bool behind = executed_ < log_after_ || (same_view && op_ < m.head) ||
                      (status_ == ReplicaStatus::kJoining) ||
                      (m.h.epoch > epoch_ && commit_ < m.commit);
  const bool progress = op_ > op_before || executed_ > executed_before || verified > executed_before;
  if (behind) {
    // Ask again at once only while the answers bring something; otherwise
    // the retry timer asks (duplicated messages must not multiply requests).
    if (status_ != ReplicaStatus::kShutdown && progress) request_state(m.h.from, out);
    state_wanted_ = status_ != ReplicaStatus::kShutdown;
  } else {
    state_wanted_ = false;
  }
  if (status_ == ReplicaStatus::kNormal && !is_primary()) {
    send_after_persist(primary(), PrepareOk{header(), op_, 0}, out);
  }
  maybe_checkpoint(out);
}

bool Replica::install_checkpoint(const Checkpoint& cp, Output& out) {
  MAROON_ASSERT(cp.op > executed_);
  const ConfigEpoch epoch_before = epoch_;
  ever_member_ = ever_member_ || is_member();
  if (!restore_checkpoint_state(cp.state)) return false;  // a peer's bad bytes; ignore
  executed_ = cp.op;
  executed_bytes_since_checkpoint_ = 0;
  commit_ = std::max(commit_, cp.op);
  if (cp.op >= op_) {
    log_.clear();
    log_bytes_ = 0;
    op_ = cp.op;
    log_after_ = cp.op;
    for (Pending& p : pending_) p.last = std::min(p.last, cp.op);
  } else if (cp.op > log_after_) {
    drop_log_through(cp.op);
  }
  checkpoint_taken_ = std::max(checkpoint_taken_, cp.op);
  // Entries the checkpoint covers never pass through execute(), which is
  // where their requests leave accepted_: a primary that catches up this way
  // would drop every retry of them as "in progress" for good (simulator seed
  // 212: an evicted client's register retry, never answered).
  if (is_primary() && status_ == ReplicaStatus::kNormal) rebuild_accepted();
  uint64_t seq = out.add_record(cp);
  MAROON_ASSERT(seq == next_seq_);
  next_seq_++;
  pending_.push_back(Pending{seq, cp.op, cp.op, cp});
  if (epoch_ != epoch_before) {
    // The checkpoint covers reconfigurations we never executed: we are in
    // its epoch now, joining it, or removed from the group. Rule: the new
    // epoch's DurableState goes after the checkpoint record that justifies
    // it, so no crash can leave it durable without the checkpoint (it says
    // the log up to the epoch's start is committed, which our stale log is
    // not).
    // Removed (by the last change the checkpoint covers, or an earlier
    // one: ids are never reused, so a former member never returns), or
    // joining.
    status_ = !is_member() && (contains(old_members_, self_) || ever_member_)
                  ? ReplicaStatus::kShutdown
                  : ReplicaStatus::kJoining;
    ever_member_ = ever_member_ || is_member();
    queue_.clear();
    accepted_.clear();
    persist_state(out);
  }
  return true;
}

void Replica::maybe_checkpoint(Output& out) {
  if (replaying_ || executed_ <= checkpoint_taken_) return;
  const bool by_ops =
      options_.checkpoint_interval_ops != 0 &&
      executed_.value() >= checkpoint_taken_.value() + options_.checkpoint_interval_ops;
  const bool by_bytes = options_.checkpoint_interval_bytes != 0 &&
                        executed_bytes_since_checkpoint_ >= options_.checkpoint_interval_bytes;
  if (!by_ops && !by_bytes) return;
  if (executed_ < log_after_) return;  // a gap: nothing consistent to snapshot
  Checkpoint cp{executed_, encode_checkpoint_state()};
  MAROON_ASSERT(cp.state.size() <= limits::checkpoint_bytes_max);
  checkpoint_taken_ = executed_;
  executed_bytes_since_checkpoint_ = 0;
  uint64_t seq = out.add_record(cp);
  MAROON_ASSERT(seq == next_seq_);
  next_seq_++;
  pending_.push_back(Pending{seq, cp.op, cp.op, std::move(cp)});
}

std::string Replica::encode_checkpoint_state() {
  std::string out;
  ByteWriter w(out);
  w.u8(2);  // format (2: client sessions)
  w.u64(epoch_.value());
  w.u64(epoch_start_.value());
  w.bytes(encode_members(members_));
  w.varint(clients_.size());
  for (const auto& [client, cs] : clients_) {
    w.u64(client.value());
    w.u64(cs.request.value());
    w.u64(cs.op.value());
    w.u64(cs.session);
    w.bytes(cs.reply);
  }
  w.bytes(service_.snapshot());
  return out;
}

Status Replica::restore_checkpoint_state(std::string_view state) {
  ByteReader r(state);
  uint8_t format = 0;
  uint64_t epoch = 0, epoch_start = 0, clients = 0;
  std::string_view members_bytes, snapshot;
  if (!r.u8(format) || format != 2 || !r.u64(epoch) || !r.u64(epoch_start) ||
      !r.bytes(members_bytes, 1024) || !r.varint(clients) ||
      clients > options_.client_table_clients_max) {
    return corruption("vr: malformed checkpoint");
  }
  auto members = decode_members(members_bytes);
  if (!members) return corruption("vr: malformed checkpoint members");
  std::map<ClientId, ClientState> table;
  for (uint64_t i = 0; i < clients; i++) {
    uint64_t client = 0, request = 0, op = 0, session = 0;
    std::string_view reply;
    if (!r.u64(client) || !r.u64(request) || !r.u64(op) || !r.u64(session) ||
        !r.bytes(reply, limits::reply_bytes_max)) {
      return corruption("vr: malformed checkpoint client table");
    }
    table[ClientId(client)] =
        ClientState{RequestNumber(request), std::string(reply), OpNumber(op), session};
  }
  if (!r.bytes(snapshot, limits::checkpoint_bytes_max) || !r.at_end()) {
    return corruption("vr: malformed checkpoint snapshot");
  }
  if (Status s = service_.restore(snapshot); !s) return s;
  clients_ = std::move(table);
  clients_by_op_.clear();
  for (const auto& [client, cs] : clients_) clients_by_op_.insert({cs.op, client});
  if (ConfigEpoch(epoch) > epoch_) {
    // The checkpoint covers a reconfiguration we never executed.
    old_members_ = members_;
    epoch_ = ConfigEpoch(epoch);
    members_ = std::move(*members);
    epoch_start_ = OpNumber(epoch_start);
    view_ = ViewNumber(0);
    last_normal_view_ = ViewNumber(0);
    dvc_sent_view_ = ViewNumber(0);
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------
// Reconfiguration (§7)

void Replica::begin_epoch(ConfigEpoch epoch, std::vector<ReplicaId> members, OpNumber start,
                          Output& out) {
  if (epoch <= epoch_) return;  // learned it from StartEpoch or a checkpoint already
  MAROON_ASSERT(epoch == epoch_.next());
  MAROON_ASSERT(valid_members(members));
  ever_member_ = ever_member_ || is_member();
  for (const ClientRequest& req : queue_) {
    reply(req.client, req.request, ReplyCode::kNewConfig, {}, out);
  }
  queue_.clear();
  old_members_ = members_;
  members_ = std::move(members);
  epoch_ = epoch;
  epoch_start_ = start;
  epoch_started_from_.clear();
  view_ = ViewNumber(0);
  last_normal_view_ = ViewNumber(0);
  dvc_sent_view_ = ViewNumber(0);
  state_wanted_ = false;
  if (is_member()) {
    // As at bootstrap: view 0 of the new epoch starts once the epoch is
    // durable here, so a crash cannot bring us back to an earlier epoch after
    // we acted in this one (and into view 0 of this one a second time).
    status_ = ReplicaStatus::kJoining;
    acked_.clear();
    accepted_.clear();
    persist_state(out);
    start_after_seq_ = next_seq_ - 1;
    for (ReplicaId r : old_members_) {
      if (!contains(members_, r)) send_after_persist(r, EpochStarted{header()}, out);
    }
    for (ReplicaId r : members_) {
      if (r != self_ && !contains(old_members_, r)) {
        send(r, StartEpoch{header(), epoch_start_, members_, old_members_}, out);
      }
    }
  } else if (contains(old_members_, self_)) {
    status_ = ReplicaStatus::kLeaving;
    persist_state(out);
    next_start_epoch_tick_ = now_;
  } else if (ever_member_) {
    // Removed by an earlier change we learn of only now (we were behind):
    // the group went on without us, and ids are never reused.
    status_ = ReplicaStatus::kShutdown;
    persist_state(out);
  } else {
    // Catching up through history towards a later epoch that includes us.
    status_ = ReplicaStatus::kJoining;
    persist_state(out);
  }
}

void Replica::on_start_epoch(const StartEpoch& m, Output& out) {
  if (m.h.epoch == epoch_ && status_ == ReplicaStatus::kNormal && !contains(members_, m.h.from)) {
    // A leaving replica that does not know we started (our answer was lost,
    // or it restarted).
    send(m.h.from, EpochStarted{header()}, out);
    return;
  }
  if (m.h.epoch < epoch_ && status_ == ReplicaStatus::kNormal) {
    // A leaving replica of an earlier change waits for its new group to
    // start; ours went further since: it learns where the group is now
    // (and, removed, shuts down).
    send(m.h.from, StartEpoch{header(), epoch_start_, members_, old_members_}, out);
    return;
  }
  if (m.h.epoch <= epoch_ || !valid_members(m.members)) return;
  if (is_member() && (status_ == ReplicaStatus::kNormal || status_ == ReplicaStatus::kViewChange ||
                      status_ == ReplicaStatus::kRecovering)) {
    // Rule: a member of our epoch moves on only by executing the
    // reconfiguration. If nobody alive knows it committed, our epoch must
    // still be able to commit it again (a view change), so we stay in it and
    // fetch what is committed; executing it takes us to the new epoch.
    later_epoch_ = std::max(later_epoch_, m.h.epoch);
    if (!state_wanted_) request_state(m.h.from, out);
    return;
  }
  if (!contains(m.members, self_)) {
    // Removed while we were behind; the new group has the state. Record it
    // (in memory: the disk learns an epoch only with the log up to its
    // start), so clients and stragglers asking us are sent there.
    const bool removed = is_member() || ever_member_;
    old_members_ = members_;
    epoch_ = m.h.epoch;
    members_ = m.members;
    epoch_start_ = m.op;
    view_ = ViewNumber(0);
    last_normal_view_ = ViewNumber(0);
    dvc_sent_view_ = ViewNumber(0);
    if (removed) {
      status_ = ReplicaStatus::kShutdown;
    } else {
      // Not a member before either: catching up through history towards a
      // later epoch that includes us.
      status_ = ReplicaStatus::kJoining;
      request_state(m.h.from, out);
    }
    return;
  }
  // Rule: the new epoch is recorded on disk only once we hold the log up to
  // its start (joined_epoch): a restart then knows that log is committed.
  epoch_ = m.h.epoch;
  members_ = m.members;
  old_members_ = m.old_members;
  epoch_start_ = m.op;
  view_ = ViewNumber(0);
  last_normal_view_ = ViewNumber(0);
  dvc_sent_view_ = ViewNumber(0);
  status_ = ReplicaStatus::kJoining;
  queue_.clear();
  accepted_.clear();
  if (executed_ >= epoch_start_) {
    joined_epoch(out);
  } else {
    request_state(m.h.from, out);
  }
}

void Replica::joined_epoch(Output& out) {
  // §7: caught up to the start of our epoch. Rule: we did not execute the
  // reconfiguration ourselves, so we may have been in this epoch before and
  // lost it in a crash (even as its first primary, having prepared ops in
  // view 0). We enter it through recovery, never straight into view 0.
  MAROON_ASSERT(is_member() && executed_ >= epoch_start_);
  ever_member_ = true;
  state_wanted_ = false;
  persist_state(out);
  for (ReplicaId r : old_members_) {
    if (!contains(members_, r)) send_after_persist(r, EpochStarted{header()}, out);
  }
  commit_ = std::max(commit_, std::min(op_, epoch_start_));
  if (members_.size() == 1) {
    // Alone, we commit nothing we have not made durable ourselves: there is
    // nothing a lost disk could have let others commit.
    enter_normal(view_, out);
    return;
  }
  promise_until_ = std::max(promise_until_, now_ + options_.lease_ticks);
  start_recovery(out);
}

void Replica::on_epoch_started(const EpochStarted& m, Output&) {
  if (status_ != ReplicaStatus::kLeaving || m.h.epoch != epoch_) return;
  if (!contains(members_, m.h.from) || contains(epoch_started_from_, m.h.from)) return;
  epoch_started_from_.push_back(m.h.from);
  if (epoch_started_from_.size() >= quorum_size(members_.size())) {
    status_ = ReplicaStatus::kShutdown;
  }
}

// ---------------------------------------------------------------------------
// Log

void Replica::append(std::vector<Entry> entries, Output& out) {
  MAROON_ASSERT(!entries.empty());
  const OpNumber after = op_;
  for (Entry& e : entries) {
    MAROON_ASSERT(e.op == op_.next());
    MAROON_ASSERT(e.payload.size() <= limits::entry_bytes_max);
    log_bytes_ += entry_bytes(e);
    op_ = e.op;
    log_.push_back(std::move(e));
  }
  MAROON_ASSERT(log_bytes_ <= limits::log_bytes_max && log_.size() <= limits::log_ops_max);
  persist_log(after, out);
}

void Replica::adopt_log(const LogSuffix& suffix, Output& out) {
  // Every op we know to be committed is in an authoritative log.
  MAROON_ASSERT(suffix.last() >= commit_);
  for (size_t i = 0; i < suffix.entries.size(); i++) {
    MAROON_ASSERT(suffix.entries[i].op.value() == suffix.after.value() + i + 1);
  }
  // Rule (log matching): two logs that hold the same entry at an op (same
  // view it was first prepared in, same request) hold the same entries before
  // it. Every log in a view is the prefix of a log some primary built by
  // appending, logs are only ever taken whole from another, cut at the tail,
  // or extended by entries verified against a committed prefix (on_new_state).
  // So if our entry right after the suffix's start equals the suffix's first,
  // our entries up to the start are the committed ones: we keep them, and we
  // may be the last replica holding them (cluster sim seed 3340: dropping
  // them lost op 151 for good once the only other copy's node was lost).
  const Entry* first_mine = suffix.entries.empty() ? nullptr : entry(suffix.entries.front().op);
  const bool matches = suffix.after > commit_ && suffix.after >= epoch_start_ &&
                       first_mine != nullptr && *first_mine == suffix.entries.front();
  OpNumber from;
  if (suffix.after <= commit_ || matches) {
    // Our entries up to commit_ (or, matching, up to the suffix's start) are
    // committed and agree with the suffix.
    from = std::max(suffix.after, log_after_);
    MAROON_ASSERT(!matches || from == suffix.after);
    while (!log_.empty() && log_.back().op > from) {
      log_bytes_ -= entry_bytes(log_.back());
      log_.pop_back();
    }
    op_ = from;
    durable_op_ = std::min(durable_op_, from);
  } else {
    // Rule: the suffix starts beyond what we know is committed; what we hold
    // there may be stale. Take the suffix alone; the committed ops before it
    // come by state transfer. The disk forgets the stale entries first: a
    // record of the suffix alone replaces only the log after its start, so
    // after a restart our entries up to it would come back as the log before
    // it, and a later suffix that matches at its start would have us execute
    // them (cluster sim seed 18475: a stale epoch from view 0 executed).
    truncate_to(commit_, out);
    from = suffix.after;
    log_.clear();
    log_bytes_ = 0;
    log_after_ = from;
    // Until the record starting the log at `from` is durable we can claim
    // only what we held durably and knew committed.
    durable_op_ = std::min(durable_op_, commit_);
    op_ = from;
    commit_ = from;
    gap_record_ = true;
  }
  for (Pending& p : pending_) p.last = std::min(p.last, from);
  for (const Entry& e : suffix.entries) {
    if (e.op <= op_) continue;
    log_bytes_ += entry_bytes(e);
    log_.push_back(e);
    op_ = e.op;
  }
  MAROON_ASSERT(log_bytes_ <= limits::log_bytes_max + limits::entry_bytes_max);
  persist_log(from, out);
}

void Replica::truncate_to(OpNumber keep, Output& out) {
  MAROON_ASSERT(keep >= commit_ && keep >= log_after_);
  if (op_ <= keep) return;
  while (!log_.empty() && log_.back().op > keep) {
    log_bytes_ -= entry_bytes(log_.back());
    log_.pop_back();
  }
  op_ = keep;
  durable_op_ = std::min(durable_op_, keep);
  for (Pending& p : pending_) p.last = std::min(p.last, keep);
  if (pending_reconfig_ > op_) pending_reconfig_ = OpNumber(0);
  // The disk follows: after a restart, the entries dropped here must not
  // come back from the WAL as if they were still ours.
  persist_log(keep, out);
}

std::vector<LogSuffix> Replica::log_records(OpNumber after) const {
  MAROON_ASSERT(after >= log_after_ && after <= op_);
  // The first record replaces the log after `after`; the others append. Each
  // holds entries of at most log_record_bytes_max (plus the one crossing it).
  std::vector<LogSuffix> records;
  size_t i = after.value() - log_after_.value();
  do {
    LogSuffix rec{OpNumber(log_after_.value() + i), {}};
    size_t bytes = 0;
    while (i < log_.size() && (rec.entries.empty() || bytes + log_[i].payload.size() <=
                                                          limits::log_record_bytes_max)) {
      bytes += log_[i].payload.size();
      rec.entries.push_back(log_[i]);
      i++;
    }
    records.push_back(std::move(rec));
  } while (i < log_.size());
  return records;
}

void Replica::persist_log(OpNumber after, Output& out) {
  for (LogSuffix& rec : log_records(after)) {
    const OpNumber rec_after = rec.after, rec_last = rec.last();
    uint64_t seq = out.add_record(std::move(rec));
    MAROON_ASSERT(seq == next_seq_);
    next_seq_++;
    pending_.push_back(
        Pending{seq, rec_after, rec_last, std::nullopt, std::exchange(gap_record_, false)});
  }
}

bool Replica::log_has_room(size_t bytes) const {
  return log_bytes_ + bytes + entry_bytes(Entry{}) <= limits::log_bytes_max &&
         log_.size() < limits::log_ops_max;
}

void Replica::persist_state(Output& out) {
  if (replaying_) return;
  // The durable view never goes backwards within an epoch. In memory the view
  // may: a replica that only sent a StartViewChange may rejoin the live
  // primary's older view (maybe_rejoin_view). Its disk keeps the higher
  // view, so after a crash it counts as having voted there (finish_replay)
  // and never acts below it.
  MAROON_ASSERT(epoch_ >= persisted_epoch_);
  if (epoch_ > persisted_epoch_) persisted_view_ = ViewNumber(0);
  persisted_epoch_ = epoch_;
  persisted_view_ = std::max(persisted_view_, view_);
  MAROON_ASSERT(last_normal_view_ <= persisted_view_);
  uint64_t seq = out.add_record(DurableState{epoch_, members_, persisted_view_, last_normal_view_,
                                             epoch_start_, old_members_});
  MAROON_ASSERT(seq == next_seq_);
  next_seq_++;
}

LogSuffix Replica::log_suffix(OpNumber after, size_t ops_max) const {
  MAROON_ASSERT(after >= log_after_ && after <= op_);
  LogSuffix s{after, {}};
  size_t start = after.value() - log_after_.value();
  size_t n = std::min(ops_max, log_.size() - start);
  s.entries.assign(log_.begin() + start, log_.begin() + start + n);
  return s;
}

void Replica::drop_log_through(OpNumber op) {
  MAROON_ASSERT(op >= log_after_ && op <= op_);
  while (!log_.empty() && log_.front().op <= op) {
    log_bytes_ -= entry_bytes(log_.front());
    log_.pop_front();
  }
  log_after_ = op;
}

const Entry* Replica::entry(OpNumber op) const {
  if (op <= log_after_ || op > op_) return nullptr;
  const Entry& e = log_[op.value() - log_after_.value() - 1];
  MAROON_ASSERT(e.op == op);
  return &e;
}

// ---------------------------------------------------------------------------
// Helpers

bool Replica::is_member() const { return contains(members_, self_); }

bool Replica::session_held(ClientId client, uint64_t session) const {
  auto it = clients_.find(client);
  return it != clients_.end() && it->second.session == session;
}

ReplicaId Replica::primary_of(ViewNumber v) const {
  MAROON_ASSERT(!members_.empty());
  return members_[v.value() % members_.size()];
}

ReplicaId Replica::primary() const {
  return members_.empty() ? ReplicaId(0) : primary_of(view_);
}

bool Replica::is_primary() const {
  return status_ == ReplicaStatus::kNormal && !members_.empty() && primary_of(view_) == self_;
}

std::vector<ReplicaId> Replica::others() const {
  std::vector<ReplicaId> o;
  for (ReplicaId r : members_) {
    if (r != self_) o.push_back(r);
  }
  return o;
}

void Replica::send(ReplicaId to, ReplicaMessage msg, Output& out) {
  MAROON_ASSERT(to != self_);
  out.send_now.push_back(Envelope{to, std::move(msg)});
}

void Replica::send_after_persist(ReplicaId to, ReplicaMessage msg, Output& out) {
  MAROON_ASSERT(to != self_);
  out.send_after_persist.push_back(Envelope{to, std::move(msg)});
}

void Replica::broadcast(const ReplicaMessage& msg, Output& out) {
  for (ReplicaId r : others()) send(r, msg, out);
}

void Replica::reply(ClientId client, RequestNumber request, ReplyCode code, std::string result,
                    Output& out) {
  out.replies.push_back(ClientReply{client, request, code, epoch_, view_, primary(), members_,
                                    std::move(result)});
}

void Replica::check_invariants() const {
  MAROON_ASSERT(executed_ <= commit_);
  MAROON_ASSERT(commit_ <= op_);
  MAROON_ASSERT(log_after_ <= op_);
  MAROON_ASSERT(log_after_.value() + log_.size() == op_.value());
  MAROON_ASSERT(durable_op_ <= op_);
  MAROON_ASSERT(last_normal_view_ <= view_);
  MAROON_ASSERT(!log_lost_ || status_ != ReplicaStatus::kNormal);
  MAROON_ASSERT(dvc_sent_view_ <= view_ || status_ == ReplicaStatus::kShutdown);
  MAROON_ASSERT(persisted_epoch_ <= epoch_);
  if (status_ == ReplicaStatus::kNormal) MAROON_ASSERT(view_ >= dvc_sent_view_);
  MAROON_ASSERT(!checkpoint_ || checkpoint_->op <= executed_);
  MAROON_ASSERT(log_.size() <= limits::log_ops_max);
  MAROON_ASSERT(queue_.size() <= options_.request_queue_max);
  MAROON_ASSERT(clients_.size() <= options_.client_table_clients_max);
  MAROON_ASSERT(accepted_.size() <= options_.request_queue_max + limits::log_ops_max);
  if (status_ == ReplicaStatus::kNormal || status_ == ReplicaStatus::kViewChange) {
    MAROON_ASSERT(is_member());
    // A gap before the log only ever holds committed ops.
    MAROON_ASSERT(commit_ >= log_after_);
  }
  if (is_primary()) {
    MAROON_ASSERT(op_.value() - commit_.value() <= options_.pipeline_ops_max ||
                  op_ <= view_start_op_);
  }
  if (!log_.empty()) {
    MAROON_ASSERT(log_.front().op == log_after_.next());
    MAROON_ASSERT(log_.back().op == op_);
  }
}

}  // namespace maroon::vr
