#include "fiber/fiber_runtime.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "maroon/prng.h"

namespace maroon {
namespace {

using State = FiberRuntime::State;

// Echoes each message of queue `args` to queue "out" until "stop"; returns
// how many it echoed.
Fiber echo(Fx& fx, std::string args) {
  int echoed = 0;
  for (;;) {
    Woken w = co_await fx.wait(Source::queue(args));
    if (w.cancelled) co_return "cancelled after " + std::to_string(echoed);
    if (w.value == "stop") co_return std::to_string(echoed);
    fx.send("out", args + ":" + w.value);
    echoed++;
  }
}

Fiber sleeper(Fx& fx, std::string args) {
  Woken w = co_await fx.sleep_for(std::stoull(args));
  if (w.cancelled) co_return "cancelled";
  co_return "woke at " + std::to_string(fx.now_ms());
}

// Waits on a queue, a future and a timer at once.
Fiber chooser(Fx& fx, std::string) {
  Woken w =
      co_await fx.wait(Source::queue("a"), Source::future("f"), Source::timer(fx.now_ms() + 100));
  co_return std::to_string(w.index) + ":" + w.value;
}

Fiber parent(Fx& fx, std::string args) {
  std::string child = fx.spawn(args, "50");
  if (child.empty()) co_return "spawn refused";
  Woken w = co_await fx.wait(Source::join(child));
  co_return (w.failed ? "child failed: " : "child said: ") + w.value;
}

Fiber thrower(Fx& fx, std::string) {
  co_await fx.sleep_for(10);
  throw std::runtime_error("boom");
}

// Counts messages of queue "tick" for ever, starting anew every 3.
Fiber counter(Fx& fx, std::string args) {
  int n = std::stoi(args);
  for (int i = 0; i < 3; i++) {
    Woken w = co_await fx.wait(Source::queue("tick"));
    if (w.cancelled) co_return "stopped at " + std::to_string(n);
    n++;
    fx.resolve("count/" + std::to_string(n), std::to_string(n));
  }
  fx.continue_as_new(std::to_string(n));
  co_return "";
}

// Awaits a future many times (it is resolved): each await is one event.
Fiber spinner(Fx& fx, std::string args) {
  const int times = std::stoi(args);
  for (int i = 0; i < times; i++) co_await fx.wait(Source::future("done"));
  co_return "spun";
}

// Wakes other fibers from inside a fiber: sends to queue "a", resolves "f",
// cancels fiber `args`.
Fiber poker(Fx& fx, std::string args) {
  bool sent = fx.send("a", "poke");
  bool resolved = fx.resolve("f", "poked");
  bool cancelled = fx.cancel(args);
  co_return std::to_string(sent) + std::to_string(resolved) + std::to_string(cancelled);
}

Fiber twice(Fx& fx, std::string) {
  co_await fx.wait(Source::queue("a"), Source::queue("a"));
  co_return "never";
}

// Spawns a sleeper in each life; lives three times.
Fiber spawner(Fx& fx, std::string args) {
  std::string child = fx.spawn("sleeper", "1");
  co_await fx.wait(Source::join(child));
  const int life = std::stoi(args);
  if (life < 3) fx.continue_as_new(std::to_string(life + 1));
  co_return child;
}

FiberTypes test_types() {
  FiberTypes t;
  EXPECT_TRUE(t.add("echo", 1, echo));
  EXPECT_TRUE(t.add("sleeper", 1, sleeper));
  EXPECT_TRUE(t.add("chooser", 1, chooser));
  EXPECT_TRUE(t.add("parent", 1, parent));
  EXPECT_TRUE(t.add("thrower", 1, thrower));
  EXPECT_TRUE(t.add("counter", 1, counter));
  EXPECT_TRUE(t.add("spinner", 1, spinner));
  EXPECT_TRUE(t.add("poker", 1, poker));
  EXPECT_TRUE(t.add("twice", 1, twice));
  EXPECT_TRUE(t.add("spawner", 1, spawner));
  EXPECT_TRUE(t.add("broken", 1, [](Fx&, std::string args) -> Fiber {
    if (args == "throw") throw std::invalid_argument("bad args");
    return Fiber();
  }));
  return t;
}

TEST(FiberRuntime, AFiberReceivesItsQueueInOrderAndReturns) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("echo", "e1", "in").is_ok());
  EXPECT_EQ(rt.info("e1")->state, State::kWaiting);
  EXPECT_EQ(rt.info("e1")->waiting_on, std::vector<Source>{Source::queue("in")});
  EXPECT_TRUE(rt.send("in", "a"));
  EXPECT_TRUE(rt.send("in", "b"));
  EXPECT_EQ(rt.queued_messages("out"), 2u);
  EXPECT_TRUE(rt.send("in", "stop"));
  EXPECT_EQ(rt.info("e1")->state, State::kDone);
  EXPECT_EQ(rt.info("e1")->result, "2");
  EXPECT_EQ(rt.live_fibers(), 0u);
  // Messages sent before anyone waits are kept, in order.
  EXPECT_TRUE(rt.send("in2", "x"));
  EXPECT_TRUE(rt.send("in2", "stop"));
  ASSERT_TRUE(rt.start("echo", "e2", "in2").is_ok());
  EXPECT_EQ(rt.info("e2")->result, "1");
  EXPECT_EQ(rt.start("echo", "e2", "in2").code(), Code::kConflict);
  EXPECT_EQ(rt.start("nope", "e3", "").code(), Code::kNotFound);
  EXPECT_EQ(rt.start("echo", "", "").code(), Code::kInvalidArgument);
}

TEST(FiberRuntime, OneQueueMessageGoesToOneWaiterInTheOrderTheyWaited) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("echo", "b", "shared").is_ok());
  ASSERT_TRUE(rt.start("echo", "a", "shared").is_ok());  // waits second, though "a" < "b"
  EXPECT_TRUE(rt.send("shared", "stop"));
  EXPECT_EQ(rt.info("b")->state, State::kDone);
  EXPECT_EQ(rt.info("a")->state, State::kWaiting);
}

TEST(FiberRuntime, SelectsFirstReadySourceInArgumentOrder) {
  FiberTypes types = test_types();
  {
    FiberRuntime rt(types);
    EXPECT_TRUE(rt.send("a", "msg"));
    EXPECT_TRUE(rt.resolve("f", "val"));
    ASSERT_TRUE(rt.start("chooser", "c", "").is_ok());
    EXPECT_EQ(rt.info("c")->result, "0:msg");  // both ready: the first wins
    EXPECT_EQ(rt.queued_messages("a"), 0u);
  }
  {
    FiberRuntime rt(types);
    ASSERT_TRUE(rt.start("chooser", "c", "").is_ok());
    EXPECT_TRUE(rt.resolve("f", "val"));
    EXPECT_EQ(rt.info("c")->result, "1:val");
    EXPECT_TRUE(rt.send("a", "late"));  // the lost source keeps its message
    EXPECT_EQ(rt.queued_messages("a"), 1u);
  }
  {
    FiberRuntime rt(types);
    rt.advance_time(1000);
    ASSERT_TRUE(rt.start("chooser", "c", "").is_ok());
    EXPECT_EQ(rt.next_timer_ms(), 1100u);
    rt.advance_time(1099);
    EXPECT_EQ(rt.info("c")->state, State::kWaiting);
    rt.advance_time(1100);
    EXPECT_EQ(rt.info("c")->result, "2:");
    EXPECT_EQ(rt.next_timer_ms(), std::nullopt);
  }
}

TEST(FiberRuntime, AFutureWakesEveryWaiterOnce) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("chooser", "c1", "").is_ok());
  ASSERT_TRUE(rt.start("chooser", "c2", "").is_ok());
  EXPECT_TRUE(rt.resolve("f", "v"));
  EXPECT_FALSE(rt.resolve("f", "w"));  // one-shot
  EXPECT_EQ(rt.info("c1")->result, "1:v");
  EXPECT_EQ(rt.info("c2")->result, "1:v");
}

TEST(FiberRuntime, TimersFireInDeadlineOrderWithLogicalTime) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  rt.advance_time(500);
  ASSERT_TRUE(rt.start("sleeper", "late", "300").is_ok());
  ASSERT_TRUE(rt.start("sleeper", "early", "100").is_ok());
  EXPECT_EQ(rt.next_timer_ms(), 600u);
  rt.advance_time(10'000);  // both due: each wakes at the time advanced to
  EXPECT_EQ(rt.info("early")->result, "woke at 10000");
  EXPECT_EQ(rt.info("late")->result, "woke at 10000");
  rt.advance_time(5);  // never backwards
  EXPECT_EQ(rt.now_ms(), 10'000u);
}

TEST(FiberRuntime, AFiberSpawnsAndJoinsAnother) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("parent", "p", "sleeper").is_ok());
  EXPECT_EQ(rt.live_fibers(), 2u);
  ASSERT_TRUE(rt.info("p/0").has_value());  // named by its parent's command count
  rt.advance_time(50);
  EXPECT_EQ(rt.info("p")->result, "child said: woke at 50");
  ASSERT_TRUE(rt.start("parent", "q", "thrower").is_ok());
  rt.advance_time(100);
  EXPECT_EQ(rt.info("q/0")->state, State::kFailed);
  EXPECT_EQ(rt.info("q/0")->result, "boom");
  EXPECT_EQ(rt.info("q")->result, "child failed: boom");
  ASSERT_TRUE(rt.start("parent", "r", "nosuchtype").is_ok());
  EXPECT_EQ(rt.info("r")->result, "spawn refused");
}

TEST(FiberRuntime, CancellationEndsTheCurrentAwait) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("echo", "e", "in").is_ok());
  EXPECT_TRUE(rt.send("in", "one"));
  EXPECT_TRUE(rt.cancel("e"));
  EXPECT_EQ(rt.info("e")->result, "cancelled after 1");
  EXPECT_TRUE(rt.info("e")->cancelled);
  EXPECT_FALSE(rt.cancel("e"));  // ended
  EXPECT_FALSE(rt.cancel("nobody"));
  ASSERT_TRUE(rt.start("sleeper", "s", "1000").is_ok());
  EXPECT_TRUE(rt.cancel("s"));
  EXPECT_EQ(rt.info("s")->result, "cancelled");
  EXPECT_EQ(rt.next_timer_ms(), std::nullopt);  // its timer is forgotten
}

TEST(FiberRuntime, ContinueAsNewKeepsTheHistoryShort) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("counter", "c", "0").is_ok());
  for (int i = 0; i < 10; i++) EXPECT_TRUE(rt.send("tick", ""));
  EXPECT_EQ(rt.info("c")->state, State::kWaiting);
  EXPECT_LE(rt.info("c")->history_events, 6u);  // 10 % 3 ticks into its fourth life
  EXPECT_TRUE(rt.cancel("c"));
  EXPECT_EQ(rt.info("c")->result, "stopped at 10");
}

TEST(FiberRuntime, AFullHistoryFailsTheFiber) {
  FiberTypes types = test_types();
  FiberRuntime rt(types, FiberLimits{.history_events_max = 50});
  EXPECT_TRUE(rt.resolve("done", ""));
  ASSERT_TRUE(rt.start("spinner", "s", "40").is_ok());
  EXPECT_EQ(rt.info("s")->result, "spun");
  ASSERT_TRUE(rt.start("spinner", "t", "60").is_ok());
  EXPECT_EQ(rt.info("t")->state, State::kFailed);
  EXPECT_NE(rt.info("t")->result.find("continue_as_new"), std::string::npos);
}

TEST(FiberRuntime, EndedFibersAreKeptUpToALimit) {
  FiberTypes types = test_types();
  FiberRuntime rt(types, FiberLimits{.done_kept = 2});
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(rt.start("sleeper", id, "0").is_ok());
  }
  EXPECT_FALSE(rt.info("a").has_value());
  EXPECT_TRUE(rt.info("b").has_value());
  EXPECT_TRUE(rt.info("c").has_value());
}

TEST(FiberRuntime, AFiberWakesOthersWithItsCommands) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  // Both wait on queue a and future f; c1 began to wait first.
  ASSERT_TRUE(rt.start("chooser", "c1", "").is_ok());
  ASSERT_TRUE(rt.start("chooser", "c2", "").is_ok());
  ASSERT_TRUE(rt.start("echo", "e", "in").is_ok());
  ASSERT_TRUE(rt.start("poker", "p", "e").is_ok());
  EXPECT_EQ(rt.info("p")->result, "111");
  EXPECT_EQ(rt.info("c1")->result, "0:poke");   // the first waiter on a
  EXPECT_EQ(rt.info("c2")->result, "1:poked");  // then the future
  EXPECT_EQ(rt.info("e")->result, "cancelled after 0");
}

TEST(FiberRuntime, FibersThatBreakTheRulesFailAndNothingElseDoes) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("twice", "t", "").is_ok());
  EXPECT_EQ(rt.info("t")->state, State::kFailed);
  EXPECT_EQ(rt.info("t")->result, "an await names one source twice");
  ASSERT_TRUE(rt.start("broken", "b", "throw").is_ok());
  EXPECT_EQ(rt.info("b")->state, State::kFailed);
  EXPECT_NE(rt.info("b")->result.find("bad args"), std::string::npos);
  ASSERT_TRUE(rt.start("broken", "n", "").is_ok());
  EXPECT_EQ(rt.info("n")->result, "the fiber function returned no coroutine");
  EXPECT_EQ(rt.start("echo", "x/1", "in").code(), Code::kInvalidArgument);  // spawned names
  // The runtime goes on, and its state restores.
  ASSERT_TRUE(rt.start("echo", "e", "in").is_ok());
  FiberRuntime copy(types);
  ASSERT_TRUE(copy.restore(rt.encode()).is_ok());
  EXPECT_EQ(copy.encode(), rt.encode());
}

TEST(FiberRuntime, EachLifeSpawnsUnderNewNames) {
  FiberTypes types = test_types();
  FiberRuntime rt(types);
  ASSERT_TRUE(rt.start("spawner", "s", "1").is_ok());
  for (uint64_t t = 1; t <= 3; t++) rt.advance_time(t * 10);
  EXPECT_EQ(rt.info("s")->state, State::kDone);
  EXPECT_EQ(rt.info("s")->result, "s/2");  // s/0, s/1, s/2: one per life
  EXPECT_EQ(rt.info("s/1")->state, State::kDone);
}

// ---- replay ----

// A workload of random inputs, the same for any runtime given one seed.
struct Workload {
  explicit Workload(uint64_t seed) : prng(seed) {}
  void step(FiberRuntime& rt) {
    static const char* kTypes[] = {"echo", "sleeper", "chooser", "parent", "counter"};
    const std::string q = "q" + std::to_string(prng.below(3));
    switch (prng.below(7)) {
      case 0: {
        const std::string type = kTypes[prng.below(5)];
        std::string args = type == "echo"      ? q
                           : type == "sleeper" ? std::to_string(prng.below(200))
                           : type == "parent"  ? (prng.chance(0.5) ? "sleeper" : "echo")
                           : type == "counter" ? "0"
                                               : "";
        (void)rt.start(type, "f" + std::to_string(started++), args);
        break;
      }
      case 1:
      case 2:
        rt.send(prng.chance(0.1) ? "tick" : q, prng.chance(0.1) ? "stop" : "m");
        break;
      case 3:
        rt.resolve(prng.chance(0.5) ? "f" : "g" + std::to_string(prng.below(5)), "v");
        break;
      case 4:
        rt.cancel("f" + std::to_string(prng.below(started + 1)));
        break;
      default:
        rt.advance_time(rt.now_ms() + prng.below(80));
        break;
    }
  }
  Prng prng;
  uint64_t started = 0;
};

TEST(FiberRuntime, ARestoredRuntimeIsTheSameAndGoesOnTheSame) {
  FiberTypes types = test_types();
  for (uint64_t seed = 1; seed <= 40; seed++) {
    FiberRuntime a(types);
    Workload wa(seed);
    for (int i = 0; i < 150; i++) wa.step(a);
    const std::string encoded = a.encode();
    FiberRuntime b(types);
    Status s = b.restore(encoded);
    ASSERT_TRUE(s.is_ok()) << "seed " << seed << ": " << s.to_string();
    ASSERT_EQ(b.encode(), encoded) << "seed " << seed;
    // Both go on with the same inputs to the same states.
    Workload wb = wa;
    for (int i = 0; i < 150; i++) {
      wa.step(a);
      wb.step(b);
      ASSERT_EQ(a.state_hash(), b.state_hash()) << "seed " << seed << " step " << i;
    }
    ASSERT_EQ(a.encode(), b.encode());
  }
}

TEST(FiberRuntime, AFiberThatReplaysDifferentlyFailsTheRestore) {
  FiberTypes types = test_types();
  FiberRuntime a(types);
  ASSERT_TRUE(a.start("echo", "e", "in").is_ok());
  EXPECT_TRUE(a.send("in", "x"));
  // The same type and version, other code: it waits on another queue.
  FiberTypes changed;
  ASSERT_TRUE(changed.add("echo", 1, [](Fx& fx, std::string) -> Fiber {
    co_await fx.wait(Source::queue("elsewhere"));
    co_return "";
  }));
  FiberRuntime b(changed);
  Status s = b.restore(a.encode());
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("fiber e"), std::string::npos) << s.message();
  EXPECT_EQ(b.live_fibers(), 0u);  // emptied
  // A binary without the type's version cannot restore it, and says so.
  FiberTypes none;
  FiberRuntime c(none);
  s = c.restore(a.encode());
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("version 1 of type \"echo\""), std::string::npos) << s.message();
}

TEST(FiberRuntime, DamagedStateIsAnErrorNeverACrash) {
  FiberTypes types = test_types();
  FiberRuntime a(types);
  Workload w(7);
  for (int i = 0; i < 200; i++) w.step(a);
  const std::string good = a.encode();
  Prng prng(99);
  for (int i = 0; i < 2000; i++) {
    std::string bad = good;
    switch (prng.below(3)) {
      case 0:
        bad[prng.below(bad.size())] ^= static_cast<char>(1 + prng.below(255));
        break;
      case 1:
        bad.resize(prng.below(bad.size()));
        break;
      default:
        bad.insert(prng.below(bad.size()), 1, static_cast<char>(prng.below(256)));
        break;
    }
    FiberRuntime b(types);
    Status s = b.restore(bad);
    if (s) {
      // Whatever restores is self-consistent: it encodes and restores again.
      FiberRuntime c(types);
      EXPECT_TRUE(c.restore(b.encode()).is_ok());
    }
  }
}

}  // namespace
}  // namespace maroon
