#include "maroon/fiber_app.h"

#include <gtest/gtest.h>

#include "app/test_pieces.h"
#include "maroon/limits.h"
#include "maroon/prng.h"

namespace maroon {
namespace {

// Collects queue `args` messages until "stop"; returns them joined.
Fiber collector(Fx& fx, std::string args) {
  std::string seen;
  for (;;) {
    Woken w = co_await fx.wait(Source::queue(args), Source::timer(fx.now_ms() + 1000));
    if (w.cancelled) co_return "cancelled:" + seen;
    if (w.index == 1) co_return "timeout:" + seen;
    if (w.value == "stop") co_return seen;
    seen += w.value;
  }
}

FiberTypes types() {
  FiberTypes t;
  EXPECT_TRUE(t.add("collector", 1, collector));
  return t;
}

FiberReply call(StateMachine& app, const std::string& op, uint64_t now_ms = 0) {
  Result<FiberReply> r = decode_fiber_reply(static_cast<uint8_t>(op[0]),
                                            app.apply(TxContext{.logical_time_ms = now_ms}, op));
  EXPECT_TRUE(r.is_ok());
  return r.is_ok() ? *r : FiberReply{};
}

TEST(FiberApp, OpsStartFeedAndQueryFibers) {
  FiberTypes t = types();
  std::unique_ptr<StateMachine> app = make_fiber_app(t);
  EXPECT_TRUE(call(*app, fiber_op::start("collector", "c", "in"), 100).ok);
  EXPECT_TRUE(call(*app, fiber_op::send("in", "a"), 200).ok);
  EXPECT_TRUE(call(*app, fiber_op::send("in", "b"), 300).ok);
  FiberReply got = call(*app, fiber_op::get("c"), 300);
  EXPECT_EQ(got.state, 1);  // waiting
  EXPECT_EQ(got.type, "collector");
  EXPECT_EQ(got.version, 1u);
  EXPECT_EQ(got.history_events, 2u);
  EXPECT_TRUE(call(*app, fiber_op::send("in", "stop"), 400).ok);
  Result<FiberReply> read = decode_fiber_reply(5, app->read(fiber_op::get("c")));
  ASSERT_TRUE(read.is_ok());
  EXPECT_EQ(read->state, 2);
  EXPECT_EQ(read->result, "ab");
  // Errors are replies.
  FiberReply dup = call(*app, fiber_op::start("collector", "c", "in"));
  EXPECT_EQ(dup.code, Code::kConflict);
  EXPECT_EQ(call(*app, fiber_op::start("nope", "d", "")).code, Code::kNotFound);
  EXPECT_EQ(call(*app, fiber_op::get("nobody")).code, Code::kNotFound);
  EXPECT_FALSE(call(*app, fiber_op::cancel("nobody")).ok);
  Result<FiberReply> bad = decode_fiber_reply(1, app->apply(TxContext{}, "\x09garbage"));
  ASSERT_TRUE(bad.is_ok());
  EXPECT_EQ(bad->code, Code::kInvalidArgument);
  Result<FiberReply> write_read = decode_fiber_reply(1, app->read(fiber_op::send("in", "x")));
  ASSERT_TRUE(write_read.is_ok());
  EXPECT_EQ(write_read->code, Code::kInvalidArgument);
}

// Before: a name of ~12 MiB was echoed in the error reply, which then went
// past limits::reply_bytes_max and stopped the node that sent it.
TEST(FiberApp, RepliesNeverGrowWithTheOp) {
  FiberTypes t = types();
  std::unique_ptr<StateMachine> app = make_fiber_app(t);
  const std::string huge(limits::op_bytes_max - 32, 'n');
  for (const std::string& op :
       {fiber_op::get(huge), fiber_op::start(huge, "c", ""), fiber_op::start("collector", huge, ""),
        fiber_op::cancel(huge), fiber_op::send(huge, "m"), fiber_op::resolve("f", huge)}) {
    const std::string reply = app->apply(TxContext{}, op);
    EXPECT_LT(reply.size(), 256u);
    Result<FiberReply> r = decode_fiber_reply(static_cast<uint8_t>(op[0]), reply);
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r->code, Code::kTooLarge) << r->error;
  }
  const std::string long_name(300, 'x');
  EXPECT_FALSE(t.add(long_name, 1, collector));  // no type a restore would refuse
  EXPECT_EQ(call(*app, fiber_op::get(std::string(200, 'y'))).error.size(), 78u);
}

TEST(FiberApp, TheTxsLogicalTimeFiresTimers) {
  FiberTypes t = types();
  std::unique_ptr<StateMachine> app = make_fiber_app(t);
  EXPECT_TRUE(call(*app, fiber_op::start("collector", "c", "in"), 1000).ok);
  EXPECT_TRUE(call(*app, fiber_op::send("in", "x"), 1500).ok);  // the timer is 1 s after 1500
  EXPECT_EQ(call(*app, fiber_op::get("c"), 2499).state, 1);
  FiberReply done = call(*app, fiber_op::get("c"), 2500);
  EXPECT_EQ(done.state, 2);
  EXPECT_EQ(done.result, "timeout:x");
  // Epochs move time too, with no op of this app.
  EXPECT_TRUE(call(*app, fiber_op::start("collector", "d", "in"), 3000).ok);
  app->advance_time(3999);
  EXPECT_EQ(decode_fiber_reply(5, app->read(fiber_op::get("d")))->state, 1);
  app->advance_time(4000);
  EXPECT_EQ(decode_fiber_reply(5, app->read(fiber_op::get("d")))->result, "timeout:");
}

// A snapshot restored into a fresh app: the same hash, and the same replies
// and hashes for the same ops afterwards; garbage ops never crash either.
TEST(FiberApp, SnapshotsRestoreAndGoOnAlike) {
  FiberTypes t = types();
  std::unique_ptr<StateMachine> a = make_fiber_app(t);
  Prng prng(5);
  uint64_t now = 0;
  auto random_op = [&] {
    const std::string q = "q" + std::to_string(prng.below(3));
    switch (prng.below(5)) {
      case 0:
        return fiber_op::start("collector", "c" + std::to_string(prng.below(20)), q);
      case 1:
        return fiber_op::send(q, prng.chance(0.2) ? "stop" : "m");
      case 2:
        return fiber_op::cancel("c" + std::to_string(prng.below(20)));
      case 3:
        return fiber_op::get("c" + std::to_string(prng.below(20)));
      default: {
        std::string junk(prng.below(12), '\0');
        for (char& ch : junk) ch = static_cast<char>(prng.below(256));
        return junk;
      }
    }
  };
  for (int i = 0; i < 300; i++) {
    now += prng.below(200);
    a->apply(TxContext{.logical_time_ms = now}, random_op());
  }
  std::unique_ptr<AppSnapshotCursor> cursor = a->begin_snapshot();
  VectorPieces pieces(all_pieces(*cursor, 1000));
  std::unique_ptr<StateMachine> b = make_fiber_app(t);
  ASSERT_TRUE(b->restore(pieces).is_ok());
  ASSERT_EQ(a->state_hash(), b->state_hash());
  for (int i = 0; i < 300; i++) {
    now += prng.below(200);
    const std::string op = random_op();
    const TxContext ctx{.tx_id = 1, .epoch = 1, .logical_time_ms = now};
    ASSERT_EQ(a->apply(ctx, op), b->apply(ctx, op)) << i;
    ASSERT_EQ(a->state_hash(), b->state_hash()) << i;
  }
  // A damaged snapshot is an error.
  std::unique_ptr<AppSnapshotCursor> again = a->begin_snapshot();
  std::vector<std::string> bad = all_pieces(*again, 1000);
  ASSERT_FALSE(bad.empty());
  bad.back().pop_back();
  VectorPieces bad_pieces(bad);
  std::unique_ptr<StateMachine> c = make_fiber_app(t);
  EXPECT_FALSE(c->restore(bad_pieces).is_ok());
}

}  // namespace
}  // namespace maroon
