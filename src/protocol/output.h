// The output batch every pure core returns (STYLE.md "durability order is
// data"): records to persist, messages to send now, and messages that may be
// sent only once every record emitted before them is durable. The driver
// persists, then sends, then reports durability back with on_persisted().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "maroon/assert.h"
#include "protocol/messages.h"

namespace maroon {

// WAL record types. Each owner decodes its own payloads.
enum class RecordType : uint8_t {
  kTx = 1,     // node: a tx held durably (TxMsg)
  // 2 was the interim single-replica sequencer's epoch record; a WAL holding
  // one was written by a build before VR and is refused with a clear error.
  kLegacyEpoch = 2,
  kVrLog = 3,         // sequencer (VR): a log suffix whose entries are epochs
  kVrCheckpoint = 4,  // sequencer (VR): a checkpoint
  // sequencer (VR): the replica's small durable state. The driver keeps the
  // newest one in the superblock, not in the WAL, written only after every
  // record emitted before it is durable (and before any record after it).
  kVrState = 5,
  // node (cluster): a committed epoch as the node learned it. The node
  // rebuilds its state from these and its kTx records; the VR log alone is
  // not enough, since a checkpoint truncates it.
  kEpoch = 6,
};

struct PersistRecord {
  RecordType type;
  std::string payload;
};

struct GatewayEnvelope {
  GatewayId to;
  NodeToGateway msg;
};

struct PeerEnvelope {
  NodeId to;
  PeerMessage msg;
};

// Records are numbered by the core that emits them, starting at 1, in emission
// order; the driver reports progress as "every record up to seq is durable".
struct Output {
  uint64_t first_seq = 1;  // seq of persist[0]
  std::vector<PersistRecord> persist;
  std::vector<GatewayEnvelope> send_now;
  // Released only after persist (and every earlier record) is durable.
  std::vector<GatewayEnvelope> send_after_persist;
  std::vector<PeerEnvelope> peer_now;
  std::vector<PeerEnvelope> peer_after_persist;

  uint64_t add_record(RecordType type, std::string payload) {
    persist.push_back(PersistRecord{type, std::move(payload)});
    return first_seq + persist.size() - 1;
  }
  uint64_t next_seq() const { return first_seq + persist.size(); }
  bool empty() const {
    return persist.empty() && send_now.empty() && send_after_persist.empty() &&
           peer_now.empty() && peer_after_persist.empty();
  }
};

}  // namespace maroon
