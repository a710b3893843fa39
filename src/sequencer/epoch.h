// An epoch: one entry of the ordering log (docs/architecture.md, §3). It names every
// tx it orders by intervals of offsets per range, so it stays small however
// many txs it covers, plus the system ops the sequencer carries.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "maroon/status.h"
#include "common/types.h"

namespace maroon {

// Offsets [first, last] of one range, in order.
struct Interval {
  RangeId range;
  uint64_t first = 0;
  uint64_t last = 0;
  // Empty, or one tx_digest per offset first..last: the payload each id is
  // bound to (a cluster orders an id only once k nodes hold the same bytes;
  // a node holding other bytes for it replaces them from a peer). A single
  // node has one copy and binds nothing; epochs of format 1 had no digests.
  std::vector<uint64_t> digests;
  uint64_t txs() const { return last - first + 1; }
  bool operator==(const Interval&) const = default;
};

// Grants the next free range to a gateway incarnation.
struct LeaseRange {
  GatewayId gateway;
  RangeId after;  // see LeaseRequest::after
  bool operator==(const LeaseRange&) const = default;
};

// Extends the lease of a gateway's range (see NodeConfig::lease_ms).
struct RenewRange {
  GatewayId gateway;
  RangeId range;
  bool operator==(const RenewRange&) const = default;
};

// Ends a range whose lease expired: offsets beyond `last` never execute.
struct SealRange {
  RangeId range;
  uint64_t last = 0;
  bool operator==(const SealRange&) const = default;
};

using SystemOp = std::variant<LeaseRange, RenewRange, SealRange>;

struct Epoch {
  EpochNumber number;
  uint64_t logical_time_ms = 0;
  std::vector<Interval> intervals;  // ascending by range, non-overlapping
  std::vector<SystemOp> system_ops;

  uint64_t txs() const;
  bool operator==(const Epoch&) const = default;
};

void encode_epoch(const Epoch& epoch, std::string& out);
Result<Epoch> decode_epoch(std::string_view bytes);
// Structural checks: intervals ascending by range, first <= last, offsets in
// range, within limits::epoch_txs_max and limits::epoch_intervals_max.
Status validate_epoch(const Epoch& epoch);

}  // namespace maroon
