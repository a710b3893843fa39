// Resolving ops whose clients never learned the outcome: an op that ran gets
// the time and outputs of its first execution, one that never ran is left
// out, and completed ops are untouched.
#include "sim/kv_history.h"

#include <gtest/gtest.h>

namespace maroon::sim {
namespace {

check::KvOperation op(uint64_t client, check::KvOpKind kind, int64_t call, int64_t ret,
                      std::string value = {}) {
  check::KvOperation o;
  o.client = client;
  o.kind = kind;
  o.key = "k";
  o.call = call;
  o.ret = ret;
  o.value = std::move(value);
  return o;
}

TEST(ResolvePendingOps, RanOpsCompleteAtTheirFirstExecutionAndOthersAreLeftOut) {
  std::vector<check::KvOperation> h = {
      op(1, check::KvOpKind::kPut, 0, 10, "a"),
      op(2, check::KvOpKind::kIncr, 5, check::kPending),
      op(3, check::KvOpKind::kPut, 6, check::kPending, "never"),
  };
  const ResolvedOps r = resolve_pending_ops(h, [](size_t i) -> std::optional<KnownExecution> {
    if (i == 1) return KnownExecution{20, std::string("1"), true};
    return std::nullopt;
  });
  EXPECT_EQ(r.executed, 1u);
  EXPECT_EQ(r.never_ran, 1u);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].ret, 10);
  EXPECT_EQ(h[1].client, 2u);
  EXPECT_EQ(h[1].ret, 20);
  EXPECT_EQ(h[1].output, std::optional<std::string>("1"));
}

TEST(ResolvePendingOps, AWrongResultStillFailsTheCheck) {
  // The put of "a" completed; a pending get that the run says returned "b"
  // at its first execution is not linearizable: resolution does not hide a
  // replica's wrong answer.
  std::vector<check::KvOperation> h = {
      op(1, check::KvOpKind::kPut, 0, 10, "a"),
      op(2, check::KvOpKind::kGet, 20, check::kPending),
  };
  resolve_pending_ops(h, [](size_t i) -> std::optional<KnownExecution> {
    if (i == 1) return KnownExecution{30, std::string("b"), true};
    return std::nullopt;
  });
  World world(1, 0, false);
  check_kv_linearizable(world, h);
  EXPECT_TRUE(world.failed());
}

}  // namespace
}  // namespace maroon::sim
