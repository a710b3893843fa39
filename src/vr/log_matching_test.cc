// The log-matching checker finds two logs that agree at an op but not before
// it, and accepts logs that agree wherever they overlap.
#include "vr/log_matching.h"
#include "vr/null_service.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace maroon::vr {
namespace {

// A group of one that has executed one request per payload; every request
// comes from client 7 with request numbers 1, 2, ...
struct Solo {
  NullService service;
  Replica replica;

  Solo(uint32_t id, const std::vector<std::string>& payloads)
      : replica(ReplicaId(id), Options{}, service, id) {
    Output out;
    replica.bootstrap({ReplicaId(id)}, out);
    persist(out);
    for (size_t i = 0; i < payloads.size(); i++) {
      replica.on_client_request(
          ClientRequest{ClientId(7), RequestNumber(i + 1), EntryKind::kRequest, false, payloads[i]},
          out);
      persist(out);
    }
  }

  void persist(Output& out) {
    for (int round = 0; round < 8 && !out.empty(); round++) {
      const uint64_t durable = out.next_seq() - 1;
      out.clear();
      replica.on_persisted(durable, out);
    }
  }
};

TEST(LogMatching, LogsThatAgreeWhereTheyOverlapPass) {
  Solo a(1, {"x", "y", "z"});
  Solo b(2, {"x", "y"});
  ASSERT_EQ(a.replica.op(), OpNumber(3));
  EXPECT_EQ(check_log_matching({&a.replica, &b.replica}), std::nullopt);
}

TEST(LogMatching, LogsThatDivergeForGoodPass) {
  Solo a(1, {"x", "y"});
  Solo b(2, {"p", "q"});
  EXPECT_EQ(check_log_matching({&a.replica, &b.replica}), std::nullopt);
}

TEST(LogMatching, AnEqualEntryAfterADifferentOneIsAViolation) {
  Solo a(1, {"x", "y"});
  Solo b(2, {"p", "y"});
  ASSERT_NE(a.replica.entry(OpNumber(2)), nullptr);
  ASSERT_EQ(*a.replica.entry(OpNumber(2)), *b.replica.entry(OpNumber(2)));
  const auto v = check_log_matching({&a.replica, &b.replica});
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find("same entry at op 2 but differ at op 1"), std::string::npos) << *v;
}

// Views restart at 0 in each epoch. A replica of the old epoch's view 0 and
// one of the new epoch's view 0 may hold one retried request at the same op
// after different entries (simulator seed 5275: a cut-off view-0 primary
// and the primary of the epoch its peers moved to): the entries carry their
// epoch, so they are not the same entry and the logs do not "match" there.
TEST(LogMatching, EntriesOfDifferentEpochsAreNotTheSameEntry) {
  Solo a(1, {"x", "y"});
  // b moves to epoch 1 at op 1 (a reconfiguration to the same group), then
  // prepares client 7's request 2 "y" at op 2, in view 0 as a did.
  NullService service;
  Replica b(ReplicaId(1), Options{}, service, 2);
  Output out;
  b.bootstrap({ReplicaId(1)}, out);
  auto persist = [&] {
    for (int round = 0; round < 8 && !out.empty(); round++) {
      const uint64_t durable = out.next_seq() - 1;
      out.clear();
      b.on_persisted(durable, out);
    }
  };
  persist();
  b.on_client_request(ClientRequest{ClientId(9), RequestNumber(1), EntryKind::kReconfigure, false,
                                    encode_members({ReplicaId(1)})},
                      out);
  persist();
  ASSERT_EQ(b.epoch(), ConfigEpoch(1));
  b.on_client_request(
      ClientRequest{ClientId(7), RequestNumber(2), EntryKind::kRequest, false, "y"}, out);
  persist();
  ASSERT_EQ(b.op(), OpNumber(2));
  const Entry* ya = a.replica.entry(OpNumber(2));
  const Entry* yb = b.entry(OpNumber(2));
  ASSERT_NE(ya, nullptr);
  ASSERT_NE(yb, nullptr);
  EXPECT_EQ(ya->view, yb->view);
  EXPECT_EQ(ya->payload, yb->payload);
  EXPECT_NE(ya->epoch, yb->epoch);
  EXPECT_NE(*ya, *yb);
  EXPECT_EQ(check_log_matching({&a.replica, &b}), std::nullopt);
}

}  // namespace
}  // namespace maroon::vr
