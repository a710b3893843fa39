// Steps and checks shared by the VR scenario tests (scenario_test.cc,
// review_scenario_test.cc): short verbs over test_cluster.h.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "vr/test_cluster.h"

namespace maroon::vr::test {


// Sends one request per payload to `at` and delivers everything after each.
inline void commit_each(Cluster& c, uint32_t at, uint64_t client, uint64_t first_request,
                 const std::vector<std::string>& payloads) {
  for (size_t i = 0; i < payloads.size(); i++) {
    c.request(at, client, first_request + i, payloads[i]);
    c.deliver_all();
  }
}

// One tick for every live replica, then deliver everything.
inline void step_time(Cluster& c, size_t ticks = 1) {
  for (size_t i = 0; i < ticks; i++) {
    c.tick_all();
    c.deliver_all();
  }
}

// There is a primary, and every live replica of its member list is normal
// in the same epoch and view. (Replicas outside the newest group are left to
// the tests that care about them.)
inline bool settled(Cluster& c) {
  auto p = c.primary();
  if (!p) return false;
  const Replica& primary = c.r(*p);
  for (ReplicaId member : primary.members()) {
    const uint32_t id = member.value();
    if (!c.up(id)) continue;
    const Replica& r = c.r(id);
    if (r.status() != ReplicaStatus::kNormal || r.view() != primary.view() ||
        r.epoch() != primary.epoch()) {
      return false;
    }
  }
  return true;
}

// settled(), in epoch `epoch`.
inline bool settled_in_epoch(Cluster& c, uint64_t epoch) {
  return settled(c) && c.r(*c.primary()).epoch() == ConfigEpoch(epoch);
}

// Sets `led` once replica `id` is the normal primary of view 0 of epoch
// `epoch`: a replica that joins an epoch it was told of (StartEpoch) enters
// it through recovery, and so never leads its view 0 (it may have led it
// before, and lost that with its disk).
inline void watch_for_view_0_primary(Cluster& c, uint32_t id, uint64_t epoch, bool& led) {
  c.add_check([id, epoch, &led](Cluster& cl) {
    if (cl.up(id) && cl.r(id).is_primary() && cl.r(id).epoch() == ConfigEpoch(epoch) &&
        cl.r(id).view() == ViewNumber(0)) {
      led = true;
    }
  });
}

// Sets `acted` once replica `id` is the normal primary in epoch `epoch`
// while its disk does not yet hold that epoch: a crash would then bring it
// back with no trace of what it did as that epoch's primary.
inline void watch_for_primary_before_its_epoch_is_durable(Cluster& c, uint32_t id, uint64_t epoch,
                                                   bool& acted) {
  c.add_check([id, epoch, &acted](Cluster& cl) {
    if (cl.up(id) && cl.r(id).is_primary() && cl.r(id).epoch() == ConfigEpoch(epoch) &&
        (!cl.superblock(id) || cl.superblock(id)->epoch < ConfigEpoch(epoch))) {
      acted = true;
    }
  });
}

// The last write a client was told is committed, "payload@op" ("(none)"
// before any).
inline std::string last_acked(const Cluster& c) {
  const std::vector<std::string> acked = c.acked();
  return acked.empty() ? "(none)" : acked.back();
}

// The op at which a reply "payload@op" says its request was executed.
inline uint64_t op_of(const std::string& result) {
  return std::stoull(result.substr(result.rfind('@') + 1));
}

// Every write a client was told is committed is at the op it was told, in
// the log of replica `id` or covered by its checkpoint and executed there.
inline void expect_nothing_acked_lost(Cluster& c, uint32_t id) {
  Replica& r = c.r(id);
  for (const std::string& acked : c.acked()) {
    const uint64_t op = op_of(acked);
    const std::string payload = acked.substr(0, acked.rfind('@'));
    if (op > r.log_after().value()) {
      const Entry* e = r.entry(OpNumber(op));
      ASSERT_NE(e, nullptr) << "r" << id << " lost acked \"" << acked << "\"";
      EXPECT_EQ(e->payload, payload) << "r" << id << " op " << op;
    }
    if (op <= r.executed().value()) {
      bool found = false;
      for (const auto& x : c.service(id).executed()) {
        if (x.op.value() == op) {
          EXPECT_EQ(x.payload, payload);
          found = true;
        }
      }
      EXPECT_TRUE(found) << "r" << id << " did not execute acked \"" << acked << "\"";
    }
  }
}

inline size_t max_prepare_ops(const Cluster& c) {
  size_t n = 0;
  for (const Message& m : c.sent()) {
    if (const auto* p = std::get_if<Prepare>(&m.msg)) n = std::max(n, p->log.entries.size());
  }
  return n;
}

}  // namespace maroon::vr::test
