// Durable fibers: long-running deterministic functions (C++20 coroutines)
// that every node runs in the same order, driven by ordered txs and by the
// epochs' logical time (docs/design/durable-fibers.md).
//
//   maroon::Fiber greeter(maroon::Fx& fx, std::string args) {
//     for (;;) {
//       maroon::Woken w = co_await fx.wait(maroon::Source::queue("names"),
//                                          maroon::Source::timer(fx.now_ms() + 60'000));
//       if (w.cancelled || w.index == 1) co_return "bye";
//       fx.send("greetings", "hello, " + w.value);
//     }
//   }
//
// A fiber's state survives restarts and snapshots by replay: the runtime
// records what each await and command returned, and a restored fiber is run
// again from its start with those answers. So a fiber must be deterministic
// (the rules of state_machine.h), reach every await through the runtime
// (no awaits of anything else), and not loop without awaiting.
#pragma once

#include <coroutine>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maroon/prng.h"

namespace maroon {

class FiberRuntime;

// Something a fiber can wait on.
struct Source {
  enum class Kind : uint8_t {
    kQueue = 1,   // the next message of a named queue (FIFO; one waiter gets each)
    kFuture = 2,  // a one-shot future's value (every waiter gets it)
    kTimer = 3,   // logical time reaching a deadline
    kJoin = 4,    // another fiber's result
  };
  Kind kind = Kind::kQueue;
  std::string name;          // the queue, future or fiber; empty for a timer
  uint64_t deadline_ms = 0;  // kTimer

  static Source queue(std::string name) { return {Kind::kQueue, std::move(name), 0}; }
  static Source future(std::string id) { return {Kind::kFuture, std::move(id), 0}; }
  static Source timer(uint64_t deadline_ms) { return {Kind::kTimer, {}, deadline_ms}; }
  static Source join(std::string fiber) { return {Kind::kJoin, std::move(fiber), 0}; }
  bool operator==(const Source&) const = default;
};

// How an await ended.
struct Woken {
  size_t index = 0;        // the source that won (the first ready one, in argument order)
  bool cancelled = false;  // the fiber was cancelled: no source won
  bool failed = false;     // kJoin: the joined fiber failed; value is why
  std::string value;       // the message, the future's value, the fiber's result; "" for a timer
  bool operator==(const Woken&) const = default;
};

// The coroutine type of a fiber. Its result is bytes, as an app's replies.
class Fiber {
 public:
  struct promise_type {
    std::string result;
    std::string failure;  // an exception escaped the fiber: its what()
    bool failed = false;

    Fiber get_return_object() {
      return Fiber(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(std::string value) { result = std::move(value); }
    void unhandled_exception() noexcept;
  };

  Fiber() = default;
  explicit Fiber(std::coroutine_handle<promise_type> handle) : handle_(handle) {}
  Fiber(Fiber&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Fiber& operator=(Fiber&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  ~Fiber() {
    if (handle_) handle_.destroy();
  }

  std::coroutine_handle<promise_type> handle() const { return handle_; }

 private:
  std::coroutine_handle<promise_type> handle_;
};

// A fiber's handle to the runtime: what it may wait on and do.
class Fx {
 public:
  // `co_await fx.wait(a, b, ...)`: the first source ready, in argument
  // order, wins; the others are forgotten (a queue keeps its message).
  class Wait {
   public:
    bool await_ready();
    void await_suspend(std::coroutine_handle<>) {}
    Woken await_resume() { return std::move(woken_); }

   private:
    friend class Fx;
    Wait(Fx& fx, std::vector<Source> sources) : fx_(fx), sources_(std::move(sources)) {}
    Fx& fx_;
    std::vector<Source> sources_;
    Woken woken_;
  };

  template <typename... S>
  Wait wait(S... sources) {
    return Wait(*this, std::vector<Source>{std::move(sources)...});
  }
  Wait wait_any(std::vector<Source> sources) { return Wait(*this, std::move(sources)); }
  Wait sleep_for(uint64_t ms) { return wait(Source::timer(now_ms() + ms)); }

  // Commands. Each returns at once; true if it took effect.
  // Appends a message to a queue (false: the queue is full).
  bool send(std::string_view queue, std::string_view message);
  // Resolves a future (false: it was resolved before; the value stays).
  bool resolve(std::string_view future, std::string_view value);
  // Starts a fiber of a registered type; its id is this fiber's id, '/',
  // and this fiber's command count. Empty if refused (no such type, or too
  // many fibers).
  std::string spawn(std::string_view type, std::string_view args);
  // Cancels a fiber: its current and every later await ends `cancelled`.
  bool cancel(std::string_view fiber);
  // Once this fiber returns, it starts again with these args and an empty
  // history (the remedy for a fiber that would live for ever).
  void continue_as_new(std::string args);

  const std::string& id() const { return id_; }
  // The logical time when the fiber last resumed (ms since the Unix epoch).
  uint64_t now_ms() const { return now_ms_; }
  bool cancelled() const { return cancelled_; }
  // Deterministic randomness: seeded from the fiber's id and history length.
  Prng prng() const;

 private:
  friend class FiberRuntime;
  Fx(FiberRuntime& runtime, std::string id) : runtime_(runtime), id_(std::move(id)) {}
  FiberRuntime& runtime_;
  std::string id_;
  uint64_t now_ms_ = 0;
  bool cancelled_ = false;
};

// A fiber type's code: called once per start (and once per replay).
using FiberFn = std::function<Fiber(Fx& fx, std::string args)>;

// The fiber types an app has, by name, each in one or more code versions.
class FiberTypes {
 public:
  // Adds version `version` (>= 1) of type `name`; false if it exists, or if
  // the name is empty or longer than 256 bytes (FiberLimits::name_bytes_max).
  bool add(std::string name, uint32_t version, FiberFn fn);
  const FiberFn* find(std::string_view name, uint32_t version) const;
  // The newest version of a type, 0 if there is none.
  uint32_t newest(std::string_view name) const;

 private:
  std::map<std::string, std::map<uint32_t, FiberFn>, std::less<>> types_;
};

struct FiberLimits {
  size_t fibers_max = 100'000;          // live fibers
  size_t done_kept = 10'000;            // ended fibers kept for queries, oldest dropped
  size_t history_events_max = 10'000;   // per fiber: beyond it the fiber fails
  size_t queue_messages_max = 100'000;  // per queue
  size_t futures_max = 100'000;
  size_t queues_max = 100'000;
  size_t name_bytes_max = 256;            // fiber ids, queue and future names, types
  size_t message_bytes_max = 1 << 20;     // messages, values, args, results
  size_t awaits_per_resume_max = 10'000;  // awaits that complete at once, in one resume
};

}  // namespace maroon
