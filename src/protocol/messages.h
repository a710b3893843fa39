// Messages between gateways and nodes, and between nodes (docs/architecture.md). In
// `maroon dev` the gateway ones cross function calls inside one process; in a
// cluster every one travels in frames (protocol/cluster_messages.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/types.h"

namespace maroon {

// gateway -> node: hold this tx durably. Retried with the same id and bytes.
struct TxMsg {
  TxId id;
  AppId app = AppId::kKv;
  std::string op;
  bool operator==(const TxMsg&) const = default;
};

// node -> gateway: the tx is durable on node `node`.
struct TxAck {
  TxId id;
  NodeId node;
  bool operator==(const TxAck&) const = default;
};

// node -> gateway: the tx was executed; `reply` is the app's encoded reply.
// `expired` means the tx was executed long ago and its result was evicted
// from the result table: it will never execute again, but its reply is lost.
struct TxResult {
  TxId id;
  std::string reply;
  bool expired = false;
  bool operator==(const TxResult&) const = default;
};

// gateway -> node: ask the sequencer for a fresh range. `gateway` names this
// gateway incarnation, so a restarted gateway never reuses a range.
struct LeaseRequest {
  GatewayId gateway;
  // The gateway's newest range (0 if none): a new range is granted only if
  // this is still the newest, so a retried request never leases twice.
  RangeId after;
  bool operator==(const LeaseRequest&) const = default;
};

// gateway -> node: the gateway is alive and still uses `range`; extends the
// range's lease (docs/architecture.md "Gaps").
struct RenewLease {
  GatewayId gateway;
  RangeId range;
  bool operator==(const RenewLease&) const = default;
};

// node -> gateway: the range leased to the gateway through the sequencer.
struct LeaseGranted {
  GatewayId gateway;
  RangeId range;
  bool operator==(const LeaseGranted&) const = default;
};

// node -> gateway: the range's lease expired and it was sealed at `last`:
// offsets beyond `last` will never execute.
struct RangeSealed {
  RangeId range;
  uint64_t last = 0;
  bool operator==(const RangeSealed&) const = default;
};

using GatewayToNode = std::variant<TxMsg, LeaseRequest, RenewLease>;
using NodeToGateway = std::variant<TxAck, TxResult, LeaseGranted, RangeSealed>;

// node -> gateway, outside NodeToGateway (the drivers act on it, not the
// gateway core alone): the group of `config` (docs/membership.md) and where
// its members listen (an encoded cluster::address book, opaque here). Sent
// when a gateway's link comes up and when the group changes; a gateway keeps
// the newest config it was told.
struct GroupMembers {
  uint64_t config = 0;
  std::vector<NodeId> members;
  std::string address_book;
  bool operator==(const GroupMembers&) const = default;
};

// --- node -> node ---

// A VR message, encoded by vr/codec.h (the node layer does not look inside).
struct VrPacket {
  std::string bytes;
  bool operator==(const VrPacket&) const = default;
};

// The sender's durable offsets (every offset <= it is durable on the sender
// or already ordered) for the ranges that changed since its last advert, or
// for all of them (`full`); and the state hash it had after `hash_epoch`.
struct Offsets {
  bool full = false;
  std::vector<std::pair<RangeId, uint64_t>> durable;
  EpochNumber hash_epoch;  // 0: no hash yet
  uint64_t state_hash = 0;
  // Empty, or one list per `durable` entry: the tx_digest of each tx held
  // at the offsets just below and at its durable offset (the last list item
  // is the digest of the tx at that offset). Only offsets with a digest
  // count toward k at a proposer, and only if the digest is the one k
  // members hold.
  std::vector<std::vector<uint64_t>> digests;
  bool operator==(const Offsets&) const = default;
};

// Send me the txs [first, last] of `range` that you hold.
struct TxPull {
  RangeId range;
  uint64_t first = 0;
  uint64_t last = 0;
  bool operator==(const TxPull&) const = default;
};

// Txs answering a pull (possibly fewer than asked, in offset order).
struct TxPush {
  std::vector<TxMsg> txs;
  bool operator==(const TxPush&) const = default;
};

// The answer to a pull for `offset`, which this node executed and no longer
// keeps (its retention evicted it, or its whole range was retired). A node
// that hears it from every peer cannot catch up by pulling.
struct TxEvicted {
  RangeId range;
  uint64_t offset = 0;
  bool operator==(const TxEvicted&) const = default;
};

// --- Snapshot transfer, between the nodes' hosts (docs/snapshots.md,
// "Transfer"); the node core never sees these. ---

// A node that lags beyond what its peers keep asks a peer for a snapshot
// whose applied epoch is at least `need`.
struct SnapshotWanted {
  EpochNumber need;
  bool operator==(const SnapshotWanted&) const = default;
};

// The answer: the sender's newest snapshot (its applied epoch and file
// size), or epoch 0 when it has none that new yet (it takes one; ask again).
struct SnapshotOffer {
  EpochNumber epoch;
  uint64_t bytes = 0;
  bool operator==(const SnapshotOffer&) const = default;
};

// Send me `length` bytes at `offset` of your snapshot of `epoch`.
struct SnapshotPull {
  EpochNumber epoch;
  uint64_t offset = 0;
  uint32_t length = 0;
  bool operator==(const SnapshotPull&) const = default;
};

// A piece of a snapshot file, with hash64 (xxh3) of `data`. `total` 0 and no
// data: the sender keeps no snapshot of that epoch any more (ask again).
struct SnapshotChunk {
  EpochNumber epoch;
  uint64_t offset = 0;
  uint64_t total = 0;
  uint64_t checksum = 0;
  std::string data;
  bool operator==(const SnapshotChunk&) const = default;
};

// Membership changes (docs/membership.md). A node removed by the change to
// `config` asks the group's members whether they applied every epoch up to
// `epoch` (the change's switch epoch) durably (kHandoffWanted); a node that
// has answers so (kHandedOff, same fields). Once removed and handed over,
// it tells the members it stopped (kRetired, epoch 0).
struct MembershipNote {
  enum Kind : uint8_t { kHandedOff = 1, kRetired = 2, kHandoffWanted = 3 };
  uint64_t config = 0;  // >= 1
  Kind kind = kHandedOff;
  EpochNumber epoch;
  bool operator==(const MembershipNote&) const = default;
};

using PeerMessage = std::variant<VrPacket, Offsets, TxPull, TxPush, TxEvicted, SnapshotWanted,
                                 SnapshotOffer, SnapshotPull, SnapshotChunk, MembershipNote>;

// Whether m belongs to the snapshot transfer (the host's) rather than the node.
inline bool is_snapshot_transfer(const PeerMessage& m) {
  return std::holds_alternative<SnapshotWanted>(m) || std::holds_alternative<SnapshotOffer>(m) ||
         std::holds_alternative<SnapshotPull>(m) || std::holds_alternative<SnapshotChunk>(m);
}

}  // namespace maroon
