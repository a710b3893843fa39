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

}  // namespace
}  // namespace maroon::vr
