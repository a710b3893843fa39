#include "sequencer/epoch.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include "common/limits.h"
#include "sequencer/local_sequencer.h"

namespace maroon {
namespace {

TEST(Epoch, RoundTrips) {
  EXPECT_TRUE(rc::check("valid epochs round-trip", [](uint64_t number, uint64_t time,
                                                      std::vector<uint16_t> lens, uint64_t gw) {
    Epoch e;
    e.number = EpochNumber(number);
    e.logical_time_ms = time;
    uint64_t range = 1;
    for (uint16_t len : lens) {
      if (e.txs() + len + 1 > limits::epoch_txs_max) break;
      e.intervals.push_back(Interval{RangeId(range), 5, 5 + uint64_t{len}});
      range += 1 + len % 3;
    }
    e.system_ops.push_back(LeaseRange{GatewayId(gw), RangeId(range)});
    std::string buf;
    encode_epoch(e, buf);
    Result<Epoch> d = decode_epoch(buf);
    RC_ASSERT(d.is_ok());
    RC_ASSERT(*d == e);
  }));
}

TEST(Epoch, RejectsMalformed) {
  EXPECT_FALSE(validate_epoch(Epoch{EpochNumber(1), 0, {Interval{RangeId(1), 0, 3}}, {}}).is_ok());
  EXPECT_FALSE(validate_epoch(Epoch{EpochNumber(1), 0, {Interval{RangeId(1), 4, 3}}, {}}).is_ok());
  EXPECT_FALSE(validate_epoch(Epoch{
      EpochNumber(1), 0, {Interval{RangeId(2), 1, 1}, Interval{RangeId(1), 1, 1}}, {}}).is_ok());
  EXPECT_FALSE(validate_epoch(
      Epoch{EpochNumber(1), 0, {Interval{RangeId(1), 1, limits::epoch_txs_max + 1}}, {}}).is_ok());
  EXPECT_TRUE(rc::check("garbage never decodes into an invalid epoch", [](std::string bytes) {
    Result<Epoch> d = decode_epoch(bytes);
    if (d.is_ok()) RC_ASSERT(validate_epoch(*d).is_ok());
  }));
}

TEST(LocalSequencer, CommitsOnlyDurableEpochsInOrder) {
  LocalSequencer s;
  Output out;
  s.propose(Epoch{EpochNumber(1), 0, {}, {LeaseRange{GatewayId(1), RangeId(0)}}}, out);
  s.propose(Epoch{EpochNumber(2), 0, {}, {LeaseRange{GatewayId(2), RangeId(0)}}}, out);
  EXPECT_TRUE(s.take_committed().empty());
  s.on_persisted(1, out);
  auto c = s.take_committed();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].number, EpochNumber(1));
  s.on_persisted(2, out);
  EXPECT_EQ(s.take_committed().size(), 1u);
}

TEST(LocalSequencer, ReplayRejectsOutOfOrderEpochs) {
  LocalSequencer s;
  std::string p;
  encode_epoch(Epoch{EpochNumber(2), 0, {}, {}}, p);
  EXPECT_EQ(s.replay(RecordType::kEpoch, p).code(), Code::kCorruption);
}

}  // namespace
}  // namespace maroon
