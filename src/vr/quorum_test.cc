// Quorum arithmetic of types.h. VR's safety rests on any two quorums of a
// group sharing a replica (paper §4.2: the new primary hears of every
// committed op); its liveness on a quorum surviving f failures.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "vr/types.h"

namespace maroon::vr {
namespace {

// n in 1..7 (limits::replicas_max) most of the time, and up to 100 so the
// arithmetic is not only right for the sizes in use.
rc::Gen<size_t> sizes_from_one_to(size_t max) {
  std::vector<size_t> sizes(max);
  std::iota(sizes.begin(), sizes.end(), 1);
  return rc::gen::elementOf(sizes);
}
rc::Gen<size_t> gen_group_size() {
  return rc::gen::oneOf(sizes_from_one_to(limits::replicas_max), sizes_from_one_to(100));
}

// A uniformly random subset of {0..n-1} of the given size, sorted (a
// Fisher-Yates shuffle cut short; elementOf, unlike inRange, does not scale
// with rapidcheck's size).
std::vector<size_t> pick_subset(size_t n, size_t size) {
  RC_ASSERT(size <= n);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = 0; i < size; i++) {
    std::vector<size_t> rest(n - i);
    std::iota(rest.begin(), rest.end(), i);
    std::swap(order[i], order[*rc::gen::elementOf(rest)]);
  }
  order.resize(size);
  std::sort(order.begin(), order.end());
  return order;
}

RC_GTEST_PROP(Quorum, AnyTwoQuorumsIntersect, ()) {
  const size_t n = *gen_group_size();
  const size_t q = quorum_size(n);
  RC_ASSERT(q >= 1 && q <= n);
  const std::vector<size_t> a = pick_subset(n, q);
  const std::vector<size_t> b = pick_subset(n, q);
  std::vector<size_t> both;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  RC_ASSERT(!both.empty());
}

// The same for every pair of quorums rather than a sample, where that is
// cheap: all subsets of groups up to replicas_max.
TEST(Quorum, EveryPairOfQuorumsIntersectsUpToReplicasMax) {
  for (size_t n = 1; n <= limits::replicas_max; n++) {
    const size_t q = quorum_size(n);
    std::vector<unsigned> quorums;
    for (unsigned set = 0; set < (1u << n); set++) {
      if (static_cast<size_t>(__builtin_popcount(set)) == q) quorums.push_back(set);
    }
    for (unsigned a : quorums) {
      for (unsigned b : quorums) EXPECT_NE(a & b, 0u) << "n=" << n;
    }
  }
}

RC_GTEST_PROP(Quorum, QuorumAndFailuresPartitionTheGroup, ()) {
  const size_t n = *gen_group_size();
  RC_ASSERT(quorum_size(n) + failures_tolerated(n) == n);
}

RC_GTEST_PROP(Quorum, AQuorumSurvivesTheToleratedFailures, ()) {
  const size_t n = *gen_group_size();
  RC_ASSERT(n - failures_tolerated(n) >= quorum_size(n));
  // And f is the most that can be tolerated: one more failure leaves too few.
  RC_ASSERT(n - (failures_tolerated(n) + 1) < quorum_size(n));
}

RC_GTEST_PROP(Quorum, QuorumIsTheSmallestIntersectingSize, ()) {
  const size_t n = *gen_group_size();
  // Two disjoint sets one smaller than a quorum fit in the group, so no
  // smaller size would guarantee intersection.
  RC_ASSERT(2 * (quorum_size(n) - 1) <= n);
  RC_ASSERT(2 * quorum_size(n) > n);
}

RC_GTEST_PROP(Quorum, OddGroupsArePaperSized, ()) {
  // n = 2f + 1 (paper §3): the quorum is f + 1 and f failures are tolerated.
  const size_t f = *sizes_from_one_to(50) - 1;
  const size_t n = 2 * f + 1;
  RC_ASSERT(quorum_size(n) == f + 1);
  RC_ASSERT(failures_tolerated(n) == f);
}

}  // namespace
}  // namespace maroon::vr
