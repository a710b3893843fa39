#include "sequencer/epoch.h"

#include <fmt/format.h>

#include "maroon/assert.h"
#include "common/codec.h"
#include "maroon/limits.h"

namespace maroon {

namespace {
// 1: intervals without digests (still read); 2: each interval has a
// digest count (0 or its tx count) and the digests.
constexpr uint8_t kEpochFormatV1 = 1;
constexpr uint8_t kEpochFormat = 2;
constexpr uint8_t kOpLeaseRange = 1;
constexpr uint8_t kOpRenewRange = 2;
constexpr uint8_t kOpSealRange = 3;
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
    MAROON_ASSERT(i.digests.empty() || i.digests.size() == i.txs());
    w.varint(i.digests.size());
    for (uint64_t d : i.digests) w.u64(d);
  }
  w.varint(epoch.system_ops.size());
  for (const auto& op : epoch.system_ops) {
    if (const auto* lease = std::get_if<LeaseRange>(&op)) {
      w.u8(kOpLeaseRange);
      w.u64(lease->gateway.value());
      w.varint(lease->after.value());
    } else if (const auto* renew = std::get_if<RenewRange>(&op)) {
      w.u8(kOpRenewRange);
      w.u64(renew->gateway.value());
      w.varint(renew->range.value());
    } else {
      const auto& seal = std::get<SealRange>(op);
      w.u8(kOpSealRange);
      w.varint(seal.range.value());
      w.varint(seal.last);
    }
  }
}

Result<Epoch> decode_epoch(std::string_view bytes) {
  ByteReader r(bytes);
  Epoch e;
  uint8_t format = 0;
  uint64_t number = 0, n = 0;
  if (!r.u8(format) || (format != kEpochFormat && format != kEpochFormatV1)) {
    return corruption("epoch: unknown format");
  }
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
    if (format == kEpochFormatV1) continue;
    uint64_t digests = 0;
    if (!r.varint(digests)) return corruption("epoch: short interval");
    if (digests != 0 && (i.first < 1 || i.first > i.last || digests != i.txs())) {
      return corruption("epoch: digests do not match the interval");
    }
    // 8 bytes each: a count the input cannot hold is refused before allocating.
    if (digests > r.remaining() / 8) return corruption("epoch: short digests");
    i.digests.resize(digests);
    for (uint64_t& d : i.digests) r.u64(d);
  }
  if (!r.varint(n) || n > kSystemOpsMax) return corruption("epoch: bad system op count");
  for (uint64_t k = 0; k < n; k++) {
    uint8_t kind = 0;
    uint64_t a = 0, b = 0;
    if (!r.u8(kind)) return corruption("epoch: bad system op");
    if (kind == kOpLeaseRange && r.u64(a) && r.varint(b)) {
      e.system_ops.push_back(LeaseRange{GatewayId(a), RangeId(b)});
    } else if (kind == kOpRenewRange && r.u64(a) && r.varint(b)) {
      e.system_ops.push_back(RenewRange{GatewayId(a), RangeId(b)});
    } else if (kind == kOpSealRange && r.varint(a) && r.varint(b)) {
      e.system_ops.push_back(SealRange{RangeId(a), b});
    } else {
      return corruption("epoch: bad system op");
    }
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
    if (!i.digests.empty() && i.digests.size() != i.txs()) {
      return invalid_argument("epoch: digests do not match the interval");
    }
    txs += i.txs();
  }
  if (txs > limits::epoch_txs_max) return invalid_argument("epoch: too many txs");
  if (epoch.system_ops.size() > kSystemOpsMax) return invalid_argument("epoch: too many system ops");
  for (const SystemOp& op : epoch.system_ops) {
    if (const auto* seal = std::get_if<SealRange>(&op)) {
      if (seal->range.value() == 0 || seal->last > kOffsetMax) {
        return invalid_argument("epoch: bad seal");
      }
    }
    if (const auto* renew = std::get_if<RenewRange>(&op)) {
      if (renew->range.value() == 0) return invalid_argument("epoch: bad renewal");
    }
  }
  return Status::ok();
}

}  // namespace maroon
