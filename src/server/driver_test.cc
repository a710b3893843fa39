// The single-node driver end to end on a fault-injecting file system: acks
// only after durability, survives crashes that drop unsynced bytes, refuses
// writes after a WAL error without losing anything acknowledged.
#include "server/driver.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>

#include "app/kv/kv_op.h"
#include "storage/fault_env.h"

namespace maroon::server {
namespace {

bool run_until(boost::asio::io_context& io, const std::function<bool()>& cond,
               std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.run_one_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string incr_op(const std::string& key) {
  kv::Op op;
  op.type = kv::OpType::kIncrBy;
  op.keys = {key};
  op.delta = 1;
  return kv::encode_op(op);
}

std::string get_op(const std::string& key) {
  kv::Op op;
  op.type = kv::OpType::kGet;
  op.keys = {key};
  return kv::encode_op(op);
}

struct Instance {
  explicit Instance(FaultEnv& env)
      : owned(std::make_unique<Driver>(
            io, DriverOptions{.data_dir = "/data", .wal_segment_bytes = 1 << 20, .env = &env})),
        driver(*owned) {}
  Status start() {
    Status s = driver.start();
    if (!s) return s;
    if (!run_until(io, [&] { return driver.status().serving; })) return unavailable("never served");
    return Status::ok();
  }
  // Stops the process abruptly: the WAL thread is joined, nothing drained.
  void kill() { owned.reset(); }
  std::optional<std::string> get(const std::string& key) {
    auto r = driver.read(AppId::kKv, get_op(key));
    EXPECT_TRUE(r.is_ok());
    auto reply = kv::decode_reply(*r);
    EXPECT_TRUE(reply.is_ok());
    if (reply->kind == kv::Reply::Kind::kNil) return std::nullopt;
    return reply->value;
  }
  boost::asio::io_context io;
  std::unique_ptr<Driver> owned;
  Driver& driver;
};

TEST(Driver, AcknowledgedIncrementsSurviveCrashesExactlyOnce) {
  FaultEnv env;
  Prng prng(7);
  uint64_t acked = 0;
  for (uint64_t round = 1; round <= 5; round++) {
    Instance node(env);
    ASSERT_TRUE(node.start().is_ok());
    auto before = node.get("counter");
    EXPECT_EQ(before.value_or("0"), std::to_string(acked)) << "round " << round;
    uint64_t answered = 0;
    const uint64_t n = 300;
    for (uint64_t i = 0; i < n; i++) {
      node.driver.submit(AppId::kKv, incr_op("counter"), [&](const Status& s, std::string_view r) {
        ASSERT_TRUE(s.is_ok()) << s.to_string();
        auto reply = kv::decode_reply(r);
        ASSERT_TRUE(reply.is_ok());
        EXPECT_EQ(reply->kind, kv::Reply::Kind::kInt);
        answered++;
      });
    }
    ASSERT_TRUE(run_until(node.io, [&] { return answered == n; }));
    acked += n;
    // Some unacknowledged work in flight when the crash comes.
    for (int i = 0; i < 10; i++) node.driver.submit(AppId::kKv, incr_op("other"), [](auto&, auto) {});
    node.io.poll();
    node.kill();
    env.crash(prng, /*tear=*/true);
  }
  Instance last(env);
  ASSERT_TRUE(last.start().is_ok());
  EXPECT_EQ(last.get("counter"), std::to_string(acked));
}

TEST(Driver, RestartLeasesAFreshRange) {
  FaultEnv env;
  uint64_t first_range = 0;
  {
    Instance a(env);
    ASSERT_TRUE(a.start().is_ok());
    first_range = a.driver.status().range;
    EXPECT_NE(first_range, 0u);
  }
  Instance b(env);
  ASSERT_TRUE(b.start().is_ok());
  EXPECT_NE(b.driver.status().range, 0u);
  EXPECT_NE(b.driver.status().range, first_range);
}

TEST(Driver, WalErrorMakesNodeReadOnlyAndLosesNothingAcknowledged) {
  FaultEnv env;
  Instance node(env);
  ASSERT_TRUE(node.start().is_ok());
  bool ok = false;
  node.driver.submit(AppId::kKv, incr_op("k"), [&](const Status& s, std::string_view) { ok = s.is_ok(); });
  ASSERT_TRUE(run_until(node.io, [&] { return ok; }));

  env.inject_sync_errors(1);
  std::optional<Status> failed;
  node.driver.submit(AppId::kKv, incr_op("k"), [&](const Status& s, std::string_view) { failed = s; });
  ASSERT_TRUE(run_until(node.io, [&] { return failed.has_value(); }));
  // Not "unavailable" (which says "not executed"): a restart may execute it.
  EXPECT_EQ(failed->code(), Code::kOutcomeUnknown);
  EXPECT_NE(failed->message().find("outcome unknown"), std::string::npos) << failed->message();
  EXPECT_TRUE(node.driver.status().read_only);

  std::optional<Status> refused;
  node.driver.submit(AppId::kKv, incr_op("k"), [&](const Status& s, std::string_view) { refused = s; });
  ASSERT_TRUE(refused.has_value()) << "a read-only node refuses at once";
  EXPECT_EQ(refused->code(), Code::kUnavailable);
  EXPECT_EQ(node.get("k"), "1") << "reads keep working";
}

TEST(Driver, SingleNodeAlwaysHasItsQuorumAndNoDeadline) {
  FaultEnv env;
  Instance node(env);
  ASSERT_TRUE(node.start().is_ok());
  EngineStatus s = node.driver.status();
  EXPECT_TRUE(s.quorum);
  EXPECT_EQ(s.unavailable_reason, "");
  bool ok = false;
  node.driver.submit(AppId::kKv, incr_op("k"),
                     [&](const Status& st, std::string_view) { ok = st.is_ok(); });
  ASSERT_TRUE(run_until(node.io, [&] { return ok; }));
  ASSERT_TRUE(run_until(node.io, [&] {
    return node.driver.metrics().render().find("maroon_quorum 1") != std::string::npos;
  }));
  EXPECT_NE(node.driver.metrics().render().find("maroon_requests_unavailable_total 0"),
            std::string::npos);
}

TEST(DriverDeathTest, AnInvariantStopNamesTheNodeViewOpCommitAndEpoch) {
  // The driver runs a WAL thread: the child re-runs the test alone.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FaultEnv env;
  Instance node(env);
  ASSERT_TRUE(node.start().is_ok());
  EXPECT_DEATH(MAROON_ASSERT_MSG(node.io.stopped(), "a broken invariant"),
               "a broken invariant \\(node 1, view [0-9]+, op [0-9]+, commit [0-9]+, "
               "epoch [0-9]+\\)");
}

TEST(Driver, UnknownAppIsRefused) {
  FaultEnv env;
  Instance node(env);
  ASSERT_TRUE(node.start().is_ok());
  std::optional<Status> st;
  node.driver.submit(static_cast<AppId>(77), "x", [&](const Status& s, std::string_view) { st = s; });
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->code(), Code::kInvalidArgument);
}

TEST(Driver, GroupCommitCoversManyTxsPerSync) {
  FaultEnv env;
  Instance node(env);
  ASSERT_TRUE(node.start().is_ok());
  uint64_t syncs_before = env.file_syncs();
  uint64_t answered = 0;
  const uint64_t n = 2000;
  for (uint64_t i = 0; i < n; i++) {
    node.driver.submit(AppId::kKv, incr_op("k" + std::to_string(i % 10)),
                       [&](const Status& s, std::string_view) { answered += s.is_ok(); });
  }
  ASSERT_TRUE(run_until(node.io, [&] { return answered == n; }));
  uint64_t syncs = env.file_syncs() - syncs_before;
  EXPECT_LT(syncs, n / 20) << "expected group commit, got " << syncs << " syncs for " << n << " txs";
}

}  // namespace
}  // namespace maroon::server
