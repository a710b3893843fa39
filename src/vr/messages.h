// VR messages (paper §4–§7), named and fielded as in the paper. Replicas
// exchange ReplicaMessage; clients send ClientRequest and get ClientReply.
// Every message between replicas carries the sender's configuration epoch,
// its id and its view; a message from another epoch is handled by the epoch
// rules in replica.cc, never mixed into this epoch's protocol.
// The wire encoding is in codec.h and docs/formats/vr.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "vr/types.h"

namespace maroon::vr {

enum class EntryKind : uint8_t {
  kRequest = 1,      // a client op, executed by the service
  kReconfigure = 2,  // §7: payload is the new member list
  // Opens a client session (no payload; the service does not see it). The
  // session is the op the register executes at, sent back as the reply's
  // result in decimal; the client's later requests carry it.
  kRegister = 3,
};

struct Entry {
  OpNumber op;
  ViewNumber view;  // view in which the primary first prepared it
  EntryKind kind = EntryKind::kRequest;
  ClientId client;
  RequestNumber request;
  std::string payload;
  // The client's session (the op its register executed at); 0 for a client
  // without one. Requests of a session the client table no longer holds are
  // answered kEvicted, never executed.
  uint64_t session = 0;
  // The epoch of the view that first prepared it. Views restart at 0 in each
  // epoch, so (epoch, view) names the primary whose log the entry is from:
  // without it, a cut-off primary of an old epoch's view 0 and the new
  // epoch's view-0 primary can prepare the same retried request at the same
  // op, and the two entries compare equal although the logs before them
  // differ (simulator seed 5275), which log matching must never see.
  ConfigEpoch epoch{0};

  bool operator==(const Entry&) const = default;
};

// A snapshot of the service and client table after executing ops 1..op
// (§5.1). Replicas take them independently (when checkpoint_interval_ops
// more ops have executed, checked after each batch), so their ops differ;
// two checkpoints at the same op have the same bytes.
struct Checkpoint {
  OpNumber op;
  std::string state;

  bool operator==(const Checkpoint&) const = default;
};

// A contiguous piece of a log: entries (after, after + entries.size()].
struct LogSuffix {
  OpNumber after;
  std::vector<Entry> entries;

  OpNumber last() const { return OpNumber(after.value() + entries.size()); }
  bool operator==(const LogSuffix&) const = default;
};

struct Header {
  ConfigEpoch epoch;
  ViewNumber view;
  ReplicaId from;

  bool operator==(const Header&) const = default;
};

// §4.1 normal operation. A Prepare carries a batch of consecutive entries (§6.2).
struct Prepare {
  Header h;
  OpNumber commit;
  LogSuffix log;
  bool operator==(const Prepare&) const = default;
};
// The sender holds every entry up to op durably. Also the answer to a Commit
// heartbeat, echoing its lease stamp (§6.3).
struct PrepareOk {
  Header h;
  OpNumber op;
  uint64_t lease_stamp = 0;
  bool operator==(const PrepareOk&) const = default;
};
struct Commit {
  Header h;
  OpNumber commit;
  uint64_t lease_stamp = 0;  // primary's tick when sent
  bool operator==(const Commit&) const = default;
};

// §4.2 view change; §5.3: DoViewChange and StartView carry the log after the
// sender's last checkpoint, not the whole history.
struct StartViewChange {
  Header h;
  // The sender sent a DoViewChange for a view that never formed and so may
  // not return to the primary's view: it asks that primary to abdicate.
  bool stuck = false;
  bool operator==(const StartViewChange&) const = default;
};
struct DoViewChange {
  Header h;
  ViewNumber last_normal_view;
  OpNumber commit;
  LogSuffix log;
  bool operator==(const DoViewChange&) const = default;
};
struct StartView {
  Header h;
  OpNumber commit;
  LogSuffix log;
  bool operator==(const StartView&) const = default;
};

// §4.3 recovery. The primary's response carries its log after `after`.
struct Recovery {
  Header h;
  uint64_t nonce = 0;
  OpNumber after;  // the recovering replica's checkpoint
  bool operator==(const Recovery&) const = default;
};
struct RecoveryResponse {
  Header h;
  uint64_t nonce = 0;
  bool from_primary = false;
  OpNumber commit;
  std::optional<Checkpoint> checkpoint;  // primary only, when after < its checkpoint
  LogSuffix log;                         // primary only
  bool operator==(const RecoveryResponse&) const = default;
};

// §5.2 state transfer.
struct GetState {
  Header h;
  OpNumber after;  // the requester holds the log up to here
  // Instead: the requester missed the StartView of the primary's view and
  // asks for it again (it carries the whole log, §5.3).
  bool start_view = false;
  bool operator==(const GetState&) const = default;
};
struct NewState {
  Header h;
  OpNumber commit;
  OpNumber head;                         // the sender's op number
  std::optional<Checkpoint> checkpoint;  // when `after` is before the sender's checkpoint
  LogSuffix log;                         // bounded; the requester asks again for more
  bool operator==(const NewState&) const = default;
};

// §7 reconfiguration.
struct StartEpoch {
  Header h;  // h.epoch is the new epoch
  OpNumber op;  // the reconfiguration op that began it
  std::vector<ReplicaId> members;
  std::vector<ReplicaId> old_members;
  bool operator==(const StartEpoch&) const = default;
};
struct EpochStarted {
  Header h;
  bool operator==(const EpochStarted&) const = default;
};

using ReplicaMessage = std::variant<Prepare, PrepareOk, Commit, StartViewChange, DoViewChange,
                                    StartView, Recovery, RecoveryResponse, GetState, NewState,
                                    StartEpoch, EpochStarted>;

const Header& header_of(const ReplicaMessage& m);
const char* message_name(const ReplicaMessage& m);

// Client side (§4.5). A read is served by a primary holding a lease (§6.3)
// without going through the log.
struct ClientRequest {
  ClientId client;
  RequestNumber request;
  EntryKind kind = EntryKind::kRequest;
  bool read_only = false;
  std::string payload;
  uint64_t session = 0;  // 0: a client without a session (see Entry::session)
  bool operator==(const ClientRequest&) const = default;
};

enum class ReplyCode : uint8_t {
  kOk = 0,
  kNotPrimary = 1,  // retry at `primary` (a hint) or anywhere
  kNewConfig = 2,   // the group changed: members lists the new one
  kInvalid = 3,     // the request is malformed or too large; retrying will not help
  kBusy = 4,        // the primary's queue is full; retry later
  // The client's session is no longer in the client table (evicted for newer
  // clients): the request was not executed now, and whether an earlier copy
  // of it was is unknown. The client registers again before going on.
  kEvicted = 5,
};

struct ClientReply {
  ClientId client;
  RequestNumber request;
  ReplyCode code = ReplyCode::kOk;
  ConfigEpoch epoch;
  ViewNumber view;
  ReplicaId primary;
  std::vector<ReplicaId> members;
  std::string result;
  bool operator==(const ClientReply&) const = default;
};

}  // namespace maroon::vr
