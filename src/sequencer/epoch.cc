#include "sequencer/epoch.h"

#include <fmt/format.h>

#include "common/codec.h"
#include "common/limits.h"

namespace maroon {

namespace {
constexpr uint8_t kEpochFormat = 1;
constexpr uint8_t kOpLeaseRange = 1;
constexpr size_t kSystemOpsMax = 1024;
}  // namespace

uint64_t Epoch::txs() const {
  uint64_t n = 0;
  for (const auto& i : intervals) n += i.txs();
  return n;
}

void encode_epoch(const Epoch& epoch, std::string& out) {
  ByteWriter w(out);
  w.u8(kEpochFormat);
  w.varint(epoch.number.value());
  w.varint(epoch.logical_time_ms);
  w.varint(epoch.intervals.size());
  for (const auto& i : epoch.intervals) {
    w.varint(i.range.value());
    w.varint(i.first);
    w.varint(i.last);
  }
  w.varint(epoch.system_ops.size());
  for (const auto& op : epoch.system_ops) {
    const auto& lease = std::get<LeaseRange>(op);
    w.u8(kOpLeaseRange);
    w.u64(lease.gateway.value());
    w.varint(lease.after.value());
  }
}

Result<Epoch> decode_epoch(std::string_view bytes) {
  ByteReader r(bytes);
  Epoch e;
  uint8_t format = 0;
  uint64_t number = 0, n = 0;
  if (!r.u8(format) || format != kEpochFormat) return corruption("epoch: unknown format");
  if (!r.varint(number) || !r.varint(e.logical_time_ms) || !r.varint(n)) {
    return corruption("epoch: short header");
  }
  e.number = EpochNumber(number);
  if (n > limits::epoch_intervals_max) return corruption("epoch: too many intervals");
  e.intervals.resize(n);
  for (auto& i : e.intervals) {
    uint64_t range = 0;
    if (!r.varint(range) || !r.varint(i.first) || !r.varint(i.last)) {
      return corruption("epoch: short interval");
    }
    i.range = RangeId(range);
  }
  if (!r.varint(n) || n > kSystemOpsMax) return corruption("epoch: bad system op count");
  for (uint64_t k = 0; k < n; k++) {
    uint8_t kind = 0;
    uint64_t gateway = 0, after = 0;
    if (!r.u8(kind) || kind != kOpLeaseRange || !r.u64(gateway) || !r.varint(after)) {
      return corruption("epoch: bad system op");
    }
    e.system_ops.push_back(LeaseRange{GatewayId(gateway), RangeId(after)});
  }
  if (!r.at_end()) return corruption("epoch: trailing bytes");
  if (Status s = validate_epoch(e); !s) return s;
  return e;
}

Status validate_epoch(const Epoch& epoch) {
  if (epoch.intervals.size() > limits::epoch_intervals_max) {
    return invalid_argument("epoch: too many intervals");
  }
  uint64_t txs = 0;
  for (size_t k = 0; k < epoch.intervals.size(); k++) {
    const Interval& i = epoch.intervals[k];
    if (i.first < 1 || i.first > i.last || i.last > kOffsetMax) {
      return invalid_argument(fmt::format("epoch: bad interval {}..{}", i.first, i.last));
    }
    if (k > 0 && !(epoch.intervals[k - 1].range < i.range)) {
      return invalid_argument("epoch: intervals not ascending by range");
    }
    txs += i.txs();
  }
  if (txs > limits::epoch_txs_max) return invalid_argument("epoch: too many txs");
  return Status::ok();
}

}  // namespace maroon
