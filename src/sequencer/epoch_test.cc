#include "sequencer/epoch.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include "maroon/limits.h"
#include "sequencer/vr_sequencer.h"

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
      if (len % 2 == 0 && len < 1000) {
        for (uint64_t k = 0; k <= len; k++) e.intervals.back().digests.push_back(number * k + gw);
      }
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
  EXPECT_FALSE(
      validate_epoch(Epoch{EpochNumber(1), 0, {Interval{RangeId(1), 1, 3, {7, 8}}}, {}}).is_ok())
      << "two digests for three txs";
  EXPECT_TRUE(rc::check("garbage never decodes into an invalid epoch", [](std::string bytes) {
    Result<Epoch> d = decode_epoch(bytes);
    if (d.is_ok()) RC_ASSERT(validate_epoch(*d).is_ok());
  }));
}

TEST(Epoch, ReadsFormatOneWithoutDigests) {
  // Format 1: number 4, time 9, one interval (range 2, 1..3), no system ops.
  const std::string v1 = {1, 4, 9, 1, 2, 1, 3, 0};
  Result<Epoch> e = decode_epoch(v1);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_EQ(*e, (Epoch{EpochNumber(4), 9, {Interval{RangeId(2), 1, 3}}, {}}));
  std::string v2;
  encode_epoch(*e, v2);
  EXPECT_EQ(v2[0], 2) << "written as format 2";
  EXPECT_EQ(*decode_epoch(v2), *e);
  // Format 2 with a digest count that is not the interval's tx count.
  const std::string bad = {2, 4, 9, 1, 2, 1, 3, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0};
  EXPECT_FALSE(decode_epoch(bad).is_ok());
}

// Runs a sequencer's records through a perfect disk.
struct Disk {
  std::vector<PersistRecord> records;
  void sync(VrSequencer& s, Output& out) {
    for (auto& r : out.persist) records.push_back(r);
    uint64_t last = out.next_seq() - 1;
    out.persist.clear();
    out.first_seq = last + 1;
    s.on_persisted(last, out);
  }
};

TEST(VrSequencer, SingleReplicaCommitsOnlyDurableEpochsInOrder) {
  VrSequencer s;
  Output out;
  s.start(out);  // bootstrap: the replica's state record
  ASSERT_EQ(out.persist.size(), 1u);
  EXPECT_EQ(out.persist[0].type, RecordType::kVrState);
  EXPECT_FALSE(s.can_propose()) << "not before its membership is durable";
  Disk disk;
  disk.sync(s, out);
  ASSERT_TRUE(s.can_propose());
  s.propose(Epoch{EpochNumber(1), 0, {}, {LeaseRange{GatewayId(1), RangeId(0)}}}, out);
  s.propose(Epoch{EpochNumber(2), 0, {}, {LeaseRange{GatewayId(2), RangeId(0)}}}, out);
  EXPECT_TRUE(s.take_committed().empty()) << "nothing is committed before it is durable";
  // Entering normal status (once the bootstrap state was durable) wrote the
  // state again; then one log record per epoch.
  ASSERT_EQ(out.persist.size(), 3u);
  EXPECT_EQ(out.persist[0].type, RecordType::kVrState);
  EXPECT_EQ(out.persist[1].type, RecordType::kVrLog);
  EXPECT_EQ(out.persist[2].type, RecordType::kVrLog);
  disk.sync(s, out);
  auto c = s.take_committed();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].number, EpochNumber(1));
  EXPECT_EQ(c[1].number, EpochNumber(2));
}

TEST(VrSequencer, PipelineIsBounded) {
  VrSequencer s;
  Output out;
  s.start(out);
  Disk().sync(s, out);
  for (uint64_t n = 1; n <= VrSequencer::kPipelineEpochsMax; n++) {
    ASSERT_TRUE(s.can_propose());
    s.propose(Epoch{EpochNumber(n), 0, {}, {LeaseRange{GatewayId(n), RangeId(0)}}}, out);
  }
  EXPECT_FALSE(s.can_propose());
}

TEST(VrSequencer, ReplayRecommitsTheDurableLog) {
  Disk disk;
  {
    VrSequencer s;
    Output out;
    s.start(out);
    disk.sync(s, out);
    for (uint64_t n = 1; n <= 5; n++) {
      s.propose(Epoch{EpochNumber(n), n, {}, {LeaseRange{GatewayId(n), RangeId(0)}}}, out);
      disk.sync(s, out);
    }
    EXPECT_EQ(s.take_committed().size(), 5u);
  }
  VrSequencer r;
  std::vector<Epoch> replayed;
  for (const auto& rec : disk.records) {
    ASSERT_TRUE(r.replay(rec.type, rec.payload).is_ok());
    for (Epoch& e : r.take_committed()) replayed.push_back(std::move(e));
  }
  ASSERT_EQ(replayed.size(), 5u);
  for (uint64_t n = 1; n <= 5; n++) EXPECT_EQ(replayed[n - 1].number, EpochNumber(n));
  Output out;
  r.start(out);
  EXPECT_EQ(r.last_proposed(), EpochNumber(5));
  EXPECT_TRUE(r.can_propose()) << "a single replica is primary again at once";
}

TEST(VrSequencer, ReplayRefusesRecordsItCannotRead) {
  VrSequencer s;
  std::string p;
  encode_epoch(Epoch{EpochNumber(1), 0, {}, {}}, p);
  Status legacy = s.replay(RecordType::kLegacyEpoch, p);
  EXPECT_EQ(legacy.code(), Code::kCorruption);
  EXPECT_NE(legacy.message().find("fresh"), std::string::npos);
  EXPECT_EQ(s.replay(RecordType::kVrLog, "garbage").code(), Code::kCorruption);
  EXPECT_EQ(s.replay(RecordType::kTx, p).code(), Code::kCorruption);
}

}  // namespace
}  // namespace maroon
