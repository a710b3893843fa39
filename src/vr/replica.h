// A Viewstamped Replication replica (Liskov & Cowling, "Viewstamped
// Replication Revisited", MIT-CSAIL-TR-2012-021), as a pure state machine:
// no sockets, files, threads or clocks. Input is messages, client requests,
// ticks and "records up to seq are durable"; output is an Output batch. The
// same code runs under the real driver and under the simulator (src/sim).
//
// What is implemented, by section of the paper:
//   4.1 normal operation; 4.2 view change; 4.3 recovery (a restarted replica
//   does not vote until f + 1 replicas, including the primary, answered its
//   nonce); 4.5 client table, at-most-once, cached reply re-sent; 5.1
//   checkpoints and log truncation; 5.2 state transfer; 5.3 view change with
//   log suffixes (the log after the last checkpoint); 6.2 batching and
//   pipelining; 6.3 primary leases for local reads; 7 reconfiguration.
//
// Durability: PrepareOk, and anything else claiming "I hold op n", is sent
// only after the records holding op n are durable (Output::send_after_persist),
// and the primary counts itself towards a quorum only for ops it has made
// durable. StartViewChange and DoViewChange likewise leave only once the new
// view number is durable. Persistent state (log records, checkpoints,
// DurableState) is replayed with replay() on restart; a replica in a group of
// more than one then runs the recovery protocol (§4.3), since its disk may
// have lost an unsynced tail and its memory the lease promises it made.
// Rule (beyond the paper, whose replicas have no disk): if recovery cannot
// complete, as when the whole group restarted at once, the replica rejoins
// through a view change from its durable state. That is safe because
// everything it ever acknowledged or voted for was durable first.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "maroon/prng.h"
#include "maroon/status.h"
#include "vr/messages.h"

namespace maroon::vr {

// The replicated service (the paper's "service code"). Deterministic: the
// same entries executed in the same order give the same results and the same
// snapshot bytes on every replica.
class Service {
 public:
  virtual ~Service() = default;
  // Executes a committed kRequest entry and returns the reply for the client.
  virtual std::string execute(const Entry& entry) = 0;
  // A read served under a primary lease: must not change state.
  virtual std::string read(std::string_view payload) = 0;
  // The state after every entry executed so far, and its inverse.
  virtual std::string snapshot() = 0;
  [[nodiscard]] virtual Status restore(std::string_view snapshot) = 0;
  // A committed reconfiguration from `old_members` to `members` executed
  // at `op`, between the entries
  // before and after it, on every replica that executes it (not on one
  // whose checkpoint covers it: the service's snapshot must carry what it
  // keeps of it). `annex` is the request's opaque annex (the node's
  // address book), possibly empty.
  virtual void on_reconfigure(ConfigEpoch /*epoch*/, const std::vector<ReplicaId>& /*members*/,
                              const std::vector<ReplicaId>& /*old_members*/,
                              std::string_view /*annex*/, OpNumber /*op*/) {}
};

// Small persistent state, kept in the superblock.
struct DurableState {
  ConfigEpoch epoch;
  std::vector<ReplicaId> members;
  ViewNumber view;
  ViewNumber last_normal_view;
  OpNumber epoch_start;  // op of the reconfiguration that began this epoch
  std::vector<ReplicaId> old_members;  // the group before it, which holds the state
  bool operator==(const DurableState&) const = default;
};

// A record to persist. A LogSuffix replaces the durable log after `after`
// (truncating anything beyond it) and appends its entries.
using DurableRecord = std::variant<LogSuffix, Checkpoint, DurableState>;

// Payloads of reconfiguration requests (the new member list, then an
// optional annex for the service) and entries (the new epoch, then the
// request's bytes). docs/formats/vr.md.
std::string encode_members(const std::vector<ReplicaId>& members);
std::optional<std::vector<ReplicaId>> decode_members(std::string_view payload);
struct Reconfiguration {
  std::vector<ReplicaId> members;
  std::string annex;  // at most limits::annex_bytes_max
};
std::string encode_reconfiguration(const std::vector<ReplicaId>& members, std::string_view annex);
std::optional<Reconfiguration> decode_reconfiguration(std::string_view payload);

struct Envelope {
  ReplicaId to;
  ReplicaMessage msg;
};

struct Output {
  uint64_t first_seq = 1;  // seq of persist[0]; records are numbered from 1
  std::vector<DurableRecord> persist;
  std::vector<Envelope> send_now;
  // Released once every record emitted before them is durable.
  std::vector<Envelope> send_after_persist;
  std::vector<ClientReply> replies;

  uint64_t add_record(DurableRecord r) {
    persist.push_back(std::move(r));
    return first_seq + persist.size() - 1;
  }
  uint64_t next_seq() const { return first_seq + persist.size(); }
  bool empty() const {
    return persist.empty() && send_now.empty() && send_after_persist.empty() && replies.empty();
  }
  // Continues the numbering in a fresh batch.
  void clear() {
    first_seq = next_seq();
    persist.clear();
    send_now.clear();
    send_after_persist.clear();
    replies.clear();
  }
};

struct Options {
  // Time is in ticks; the driver decides how long one is (10 ms by default).
  uint32_t heartbeat_ticks = 2;
  // A backup that hears nothing from the primary for this long (randomized
  // in [t, 2t) per attempt) starts a view change.
  uint32_t view_change_timeout_ticks = 20;
  // A backup that heard from the primary promises not to take part in a view
  // change for this long. The primary relies on two thirds of it, which
  // tolerates tick rates differing by up to a factor 1.5.
  uint32_t lease_ticks = 12;
  // Resend period for Recovery, GetState and StartEpoch.
  uint32_t retry_ticks = 4;
  size_t prepare_batch_ops_max = 128;
  size_t prepare_batch_bytes_max = 1024 * 1024;
  // Ops prepared but not yet committed (the pipeline depth).
  size_t pipeline_ops_max = 1024;
  // Client requests waiting at the primary for room in the pipeline.
  size_t request_queue_max = 8192;
  // A checkpoint is taken every this many executed ops (0: never), or once
  // this many bytes of entries were executed since the last one (0: never),
  // whichever comes first. The log is trimmed only by checkpoints, so with
  // large entries the byte interval is what keeps the log from filling up.
  size_t checkpoint_interval_ops = 4096;
  size_t checkpoint_interval_bytes = limits::log_bytes_max / 4;
  // Entries per NewState message.
  size_t state_transfer_ops_max = 1024;
  size_t client_table_clients_max = limits::client_table_clients_max;
};

enum class ReplicaStatus : uint8_t {
  kNormal,
  kViewChange,
  kRecovering,
  kJoining,    // §7: waiting for the state of an epoch it belongs to
  kLeaving,    // §7: removed by a reconfiguration; serves state until the new group starts
  kShutdown,   // §7: removed, and the new group has started
};
const char* status_name(ReplicaStatus s);

class Replica {
 public:
  Replica(ReplicaId self, Options options, Service& service, uint64_t seed);
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // --- Starting. Exactly one of these, once. ---
  // A fresh member of the initial group (epoch 0, view 0).
  void bootstrap(std::vector<ReplicaId> members, Output& out);
  // A fresh replica to be added by a reconfiguration: waits for StartEpoch.
  void join(Output& out);
  // After a restart: feed every durable record in the order it was written
  // (the superblock's DurableState first), then finish_replay().
  [[nodiscard]] Status replay(const DurableRecord& record);
  // Before finish_replay: the durable log lost records that were durable
  // (segments missing, damage after a clean stop), so ops this replica
  // acknowledged may be gone. Until it has taken a primary's log (through
  // recovery) it must not vote, and never rejoins by a view change
  // from its own state, even if no primary answers. The host keeps the mark
  // durable (the data directory's log-lost flag, cleared once what
  // log_lost() turning false emitted is durable) and notes it again at
  // every start until then. Groups of more than one only: a single
  // replica's lost log is unrecoverable.
  void note_log_lost();
  void finish_replay(Output& out);
  // Records that, replayed after the DurableState (before finish_replay),
  // rebuild this replica as replaying every log and checkpoint record it
  // emitted so far would: the newest checkpoint it emitted, then its log
  // after it. A node snapshot carries them, so the log records before the
  // snapshot can be deleted (docs/snapshots.md). Emitted, not durable: the
  // caller uses the image only once its records are durable.
  std::vector<DurableRecord> durable_image() const;

  // --- Running. ---
  void step(const ReplicaMessage& msg, Output& out);
  void on_client_request(const ClientRequest& req, Output& out);
  // A normal primary that cannot lead (its service lacks state it needs)
  // starts a view change to the next view, whose primary is another
  // replica. Nothing otherwise. Always safe: any replica may start one.
  void abdicate(Output& out);
  void tick(Output& out);
  // Every record with seq <= durable_seq is durable.
  void on_persisted(uint64_t durable_seq, Output& out);

  // --- Observing (tests, checkers, status pages). ---
  ReplicaId id() const { return self_; }
  ReplicaStatus status() const { return status_; }
  ViewNumber view() const { return view_; }
  ViewNumber last_normal_view() const { return last_normal_view_; }
  OpNumber op() const { return op_; }
  OpNumber commit() const { return commit_; }
  OpNumber executed() const { return executed_; }
  OpNumber durable_op() const { return durable_op_; }
  OpNumber checkpoint_op() const { return checkpoint_ ? checkpoint_->op : OpNumber(0); }
  ConfigEpoch epoch() const { return epoch_; }
  // Marked by note_log_lost (or a durable state that says so), not yet
  // cleared by taking a primary's log.
  bool log_lost() const { return log_lost_; }
  // The op of the reconfiguration that began our epoch (0 in the first).
  OpNumber epoch_start() const { return epoch_start_; }
  const std::vector<ReplicaId>& members() const { return members_; }
  // A reconfiguration is in the log, not yet executed, or queued here.
  bool reconfiguration_pending() const;
  bool is_member() const;
  bool is_primary() const;
  ReplicaId primary() const;
  bool has_lease() const;
  // Reads answered under the lease, without a round trip (§6.3).
  uint64_t lease_reads() const { return lease_reads_; }
  uint64_t now() const { return now_; }
  // The entry at op, if it is still in the in-memory log.
  const Entry* entry(OpNumber op) const;
  OpNumber log_after() const { return log_after_; }
  // Stops the process on a broken invariant (STYLE.md). Called after every
  // input; cheap enough to keep on.
  void check_invariants() const;

 private:
  struct ClientState {
    RequestNumber request;  // last executed
    std::string reply;
    OpNumber op;  // where it was executed; the oldest is evicted first
    uint64_t session = 0;  // the op its register executed at; 0 without a session
  };

  // Whether the client table still holds this session of the client.
  bool session_held(ClientId client, uint64_t session) const;

  // Normal operation (§4.1, §6.2).
  bool accept_from_primary(const Header& h, Output& out);
  void on_prepare(const Prepare& m, Output& out);
  void on_prepare_ok(const PrepareOk& m, Output& out);
  void on_commit(const Commit& m, Output& out);
  void flush_requests(Output& out);
  void send_prepare(ReplicaId to, OpNumber after, Output& out);
  void advance_commit(Output& out);
  void set_commit(OpNumber commit, Output& out);
  void execute_committed(Output& out);
  void execute(const Entry& e, Output& out);
  void heartbeat(Output& out);
  // View change (§4.2, §5.3).
  void start_view_change(ViewNumber v, Output& out);
  void on_start_view_change(const StartViewChange& m, Output& out);
  void on_do_view_change(const DoViewChange& m, Output& out);
  void on_start_view(const StartView& m, Output& out);
  void maybe_send_do_view_change(Output& out);
  void maybe_start_view(Output& out);
  void enter_normal(ViewNumber v, Output& out);
  // Backup side of StartView and of a recovery answer from the primary.
  void follow_primary(ViewNumber v, const LogSuffix& log, OpNumber commit, ReplicaId primary,
                      Output& out);
  bool may_vote() const;
  // Recovery (§4.3).
  void start_recovery(Output& out);
  void on_recovery(const Recovery& m, Output& out);
  void on_recovery_response(const RecoveryResponse& m, Output& out);
  // State transfer (§5.1, §5.2).
  void jump_to_view(ViewNumber v, ReplicaId from, Output& out);
  bool maybe_rejoin_view(ViewNumber v, ReplicaId from, Output& out);
  bool may_rejoin(ViewNumber v) const;
  void request_start_view(ReplicaId primary, Output& out);
  void request_state(ReplicaId from, Output& out);
  void on_get_state(const GetState& m, Output& out);
  void on_new_state(const NewState& m, Output& out);
  void maybe_checkpoint(Output& out);
  bool install_checkpoint(const Checkpoint& cp, Output& out);
  // Reconfiguration (§7).
  void begin_epoch(ConfigEpoch epoch, std::vector<ReplicaId> members, OpNumber start,
                   Output& out);
  void on_start_epoch(const StartEpoch& m, Output& out);
  void on_epoch_started(const EpochStarted& m, Output& out);
  void joined_epoch(Output& out);
  void serve_state(ReplicaId to, OpNumber after, OpNumber head, Output& out);

  // Log.
  void append(std::vector<Entry> entries, Output& out);
  // Makes `suffix` (authoritative for the current view) the log after
  // suffix.after, keeping committed entries already held before it.
  void adopt_log(const LogSuffix& suffix, Output& out);
  // Drops the log after keep (never a committed op), on disk too.
  void truncate_to(OpNumber keep, Output& out);
  void persist_log(OpNumber after, Output& out);
  // The log after `after` as persist_log writes it: records of at most
  // log_record_bytes_max of entries each (one, maybe empty, at least).
  std::vector<LogSuffix> log_records(OpNumber after) const;
  void persist_state(Output& out);
  LogSuffix log_suffix(OpNumber after, size_t ops_max) const;
  // Whether an entry of `bytes` payload would fit in the log now.
  bool log_has_room(size_t bytes) const;
  void drop_log_through(OpNumber op);

  Header header() const { return Header{epoch_, view_, self_}; }
  void send(ReplicaId to, ReplicaMessage msg, Output& out);
  void send_after_persist(ReplicaId to, ReplicaMessage msg, Output& out);
  void broadcast(const ReplicaMessage& msg, Output& out);
  ReplicaId primary_of(ViewNumber v) const;
  std::vector<ReplicaId> others() const;
  void reply(ClientId client, RequestNumber request, ReplyCode code, std::string result,
             Output& out);
  std::string encode_checkpoint_state();
  [[nodiscard]] Status restore_checkpoint_state(std::string_view state);
  void reset_view_change_timer();
  void rebuild_accepted();

  const ReplicaId self_;
  const Options options_;
  Service& service_;
  Prng prng_;
  uint64_t now_ = 0;
  uint64_t lease_reads_ = 0;
  bool started_ = false;

  // Configuration (§7).
  ConfigEpoch epoch_{0};
  ConfigEpoch later_epoch_{0};  // a later epoch we heard of but have not reached
  std::vector<ReplicaId> members_;
  OpNumber epoch_start_{0};
  std::vector<ReplicaId> old_members_;          // previous group, while it shuts down
  std::vector<ReplicaId> epoch_started_from_;   // new members that announced the epoch
  uint64_t next_start_epoch_tick_ = 0;

  bool log_lost_ = false;  // see note_log_lost
  // A member of some epoch so far (from what we replayed or did): removed
  // once, never a member again (ids are not reused).
  bool ever_member_ = false;
  bool recovery_below_vote_ = false;  // a recovery answer came from a view below our vote
  ReplicaStatus status_ = ReplicaStatus::kRecovering;
  ViewNumber view_{0};
  ViewNumber last_normal_view_{0};

  // Log: entries (log_after_, op_]. Entries up to executed_ may be dropped
  // once a checkpoint covers them; a replica that adopted a log whose start is
  // after its executed op (a gap) executes the missing entries from state
  // transfer without storing them.
  std::deque<Entry> log_;
  OpNumber log_after_{0};
  size_t log_bytes_ = 0;
  OpNumber op_{0};
  OpNumber commit_{0};
  OpNumber executed_{0};
  std::optional<Checkpoint> checkpoint_;  // latest durable one
  OpNumber checkpoint_taken_{0};          // latest one emitted
  size_t executed_bytes_since_checkpoint_ = 0;
  bool replaying_ = false;

  // Durability tracking.
  uint64_t next_seq_ = 1;
  OpNumber durable_op_{0};
  // Records not yet durable, in seq order: a log suffix (after, last], with
  // last lowered if the log is truncated meanwhile, or a checkpoint.
  struct Pending {
    uint64_t seq;
    OpNumber after;
    OpNumber last;
    std::optional<Checkpoint> checkpoint;
    bool gap = false;  // the log starts at `after`, past what we held
  };
  bool gap_record_ = false;  // the next log record starts after a gap
  std::deque<Pending> pending_;

  // Client table (§4.5), part of every checkpoint.
  std::map<ClientId, ClientState> clients_;
  std::set<std::pair<OpNumber, ClientId>> clients_by_op_;  // eviction order
  // Primary only: the highest request per client accepted in this view.
  std::unordered_map<ClientId, RequestNumber> accepted_;
  std::deque<ClientRequest> queue_;

  // Primary only: highest op each member holds durably, in this view.
  std::unordered_map<ReplicaId, OpNumber> acked_;
  std::unordered_map<ReplicaId, OpNumber> acked_at_heartbeat_;
  std::unordered_map<ReplicaId, uint64_t> lease_acked_;  // newest echoed stamp
  OpNumber view_start_op_{0};
  OpNumber pending_reconfig_{0};  // an uncommitted reconfiguration in the log
  uint64_t next_heartbeat_tick_ = 0;

  // Backups: when the primary was last heard from, and the lease promise.
  uint64_t view_change_deadline_ = 0;
  uint32_t view_change_attempts_ = 0;  // since last normal
  uint64_t promise_until_ = 0;

  // View change.
  std::vector<ReplicaId> svc_from_;
  std::map<ReplicaId, DoViewChange> dvc_;
  bool dvc_sent_ = false;
  ViewNumber dvc_sent_view_{0};  // highest view we sent (or may have sent) a DoViewChange for
  // The newest DurableState emitted (or replayed): the durable view only grows.
  ConfigEpoch persisted_epoch_{0};
  ViewNumber persisted_view_{0};

  // Recovery.
  uint64_t nonce_ = 0;
  std::map<ReplicaId, RecoveryResponse> recovery_responses_;
  uint64_t next_retry_tick_ = 0;
  uint64_t recovery_deadline_ = 0;

  // State transfer: GetState outstanding, and to whom.
  bool state_wanted_ = false;
  ReplicaId state_source_{0};
  uint64_t next_state_tick_ = 0;
  uint64_t next_start_view_request_tick_ = 0;
  uint64_t next_stuck_tick_ = 0;
  // Bootstrap: normal in view 0 once the record with this seq is durable.
  uint64_t start_after_seq_ = 0;
};

}  // namespace maroon::vr
