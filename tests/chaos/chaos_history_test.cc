#include "chaos_history.h"

#include <gtest/gtest.h>

#include "check/linearizability.h"

namespace maroon::chaos {
namespace {

ChaosOp set(uint32_t client, std::string value, int64_t call, int64_t ret,
            Outcome outcome = Outcome::kOk) {
  return ChaosOp{.client = client,
                 .kind = OpKind::kSet,
                 .key = "reg-0",
                 .value = std::move(value),
                 .call_us = call,
                 .ret_us = ret,
                 .outcome = outcome};
}

ChaosOp incr(int64_t call, int64_t ret, Outcome outcome, std::optional<std::string> out) {
  return ChaosOp{.kind = OpKind::kIncr,
                 .key = "ctr-3",
                 .call_us = call,
                 .ret_us = ret,
                 .outcome = outcome,
                 .output = std::move(out)};
}

WriteCheck check_reg(const std::vector<ChaosOp>& ops, std::optional<std::string> final_value) {
  return check_acknowledged_writes(ops, {{"reg-0", std::move(final_value)}}, {"ctr-3"});
}

TEST(ChaosHistory, LastAcknowledgedWriteIsNotLost) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 10), set(1, "b", 20, 30)};
  WriteCheck r = check_reg(ops, "b");
  EXPECT_EQ(r.lost, 0u);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.acknowledged_writes, 2u);
}

TEST(ChaosHistory, OverwrittenByAnEarlierWriteIsALostWrite) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 10), set(1, "b", 20, 30)};
  WriteCheck r = check_reg(ops, "a");
  EXPECT_EQ(r.lost, 1u);
  ASSERT_EQ(r.problems.size(), 1u);
}

TEST(ChaosHistory, ConcurrentWritesMayEndEitherWay) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 30), set(1, "b", 10, 20)};
  EXPECT_EQ(check_reg(ops, "a").lost, 0u);
  EXPECT_EQ(check_reg(ops, "b").lost, 0u);
}

TEST(ChaosHistory, AnUnknownWriteMayLandLast) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 10, Outcome::kUnknown), set(1, "b", 20, 30)};
  WriteCheck r = check_reg(ops, "a");
  EXPECT_EQ(r.lost, 0u);
  EXPECT_TRUE(r.problems.empty());
}

TEST(ChaosHistory, AFailedWriteMustNotLand) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 10, Outcome::kFailed)};
  EXPECT_EQ(check_reg(ops, "a").problems.size(), 1u);
  // And the checker never sees it, so a read of "a" has no writer.
  ChaosOp get{.client = 1,
              .kind = OpKind::kGet,
              .key = "reg-0",
              .call_us = 20,
              .ret_us = 30,
              .outcome = Outcome::kOk,
              .output = "a"};
  ops.push_back(get);
  EXPECT_EQ(check::check_kv_history(to_checker_history(ops)).verdict,
            check::Verdict::kNotLinearizable);
}

TEST(ChaosHistory, AbsentKeyWithAnAcknowledgedWriteIsLost) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 10), set(1, "b", 5, 15, Outcome::kUnknown)};
  WriteCheck r = check_reg(ops, std::nullopt);
  EXPECT_EQ(r.lost, 1u);
}

TEST(ChaosHistory, AValueNobodyWroteIsAProblem) {
  EXPECT_EQ(check_reg({set(0, "a", 0, 10)}, "zz").problems.size(), 1u);
}

TEST(ChaosHistory, CounterBounds) {
  std::vector<ChaosOp> ops = {incr(0, 10, Outcome::kOk, "1"), incr(20, 30, Outcome::kOk, "2"),
                              incr(40, 50, Outcome::kUnknown, std::nullopt),
                              incr(60, 70, Outcome::kFailed, std::nullopt)};
  auto check_ctr = [&](std::optional<std::string> v) {
    return check_acknowledged_writes(ops, {{"ctr-3", std::move(v)}}, {"ctr-3"});
  };
  EXPECT_TRUE(check_ctr("2").problems.empty());
  EXPECT_TRUE(check_ctr("3").problems.empty());
  EXPECT_EQ(check_ctr("1").lost, 1u);
  EXPECT_EQ(check_ctr(std::nullopt).lost, 2u);
  EXPECT_EQ(check_ctr("4").problems.size(), 1u);  // more than acknowledged + unknown
}

TEST(ChaosHistory, UnknownOpsArePendingAndFailedOnesAreLeftOut) {
  std::vector<ChaosOp> ops = {set(0, "a", 0, 10), set(1, "b", 5, 15, Outcome::kUnknown),
                              set(2, "c", 6, 16, Outcome::kFailed)};
  std::vector<check::KvOperation> h = to_checker_history(ops);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].ret, 10);
  EXPECT_EQ(h[1].ret, check::kPending);
}

}  // namespace
}  // namespace maroon::chaos
