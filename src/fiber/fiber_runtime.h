// The fiber runtime: a pure, deterministic scheduler of durable fibers
// (include/maroon/fiber.h, docs/design/durable-fibers.md).
//
// Inputs are calls made while an app applies a tx (start, send, resolve,
// cancel) and the epochs' logical time (advance_time); each input runs
// every fiber it made ready, in the order they became ready, until each
// suspends or ends, before the call returns. Nothing else runs fibers, so
// replicas that make the same calls reach the same state.
//
// Durability by replay: every await and command a fiber makes appends one
// history event holding what it returned (and a check of what was asked).
// encode() writes the explicit state: fibers with their histories and what
// each waits on, queues, futures, timers. restore() rebuilds it and runs
// each live fiber again from its start, answering its awaits and commands
// from its history; a fiber that asks something else than it did, or that
// does not end up waiting where it waited, is a determinism bug and fails
// the restore naming it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "maroon/fiber.h"
#include "maroon/status.h"

namespace maroon {

class FiberRuntime {
 public:
  enum class State : uint8_t { kWaiting = 1, kDone = 2, kFailed = 3 };
  // Sources one await may name.
  static constexpr size_t kWaitSourcesMax = 64;

  struct Event {
    enum class Kind : uint8_t { kAwait = 1, kCommand = 2 };
    Kind kind = Kind::kAwait;
    uint64_t check = 0;   // a hash of what was asked: replay must ask the same
    uint64_t now_ms = 0;  // the logical time it returned at
    Woken woken;          // kAwait
    bool ok = false;      // kCommand
    bool operator==(const Event&) const = default;
  };

  // A fiber as queries see it.
  struct Info {
    std::string id;
    std::string type;
    uint32_t version = 0;
    State state = State::kWaiting;
    bool cancelled = false;
    std::vector<Source> waiting_on;  // kWaiting
    std::string result;              // kDone: the result; kFailed: why
    size_t history_events = 0;
  };

  FiberRuntime(const FiberTypes& types, FiberLimits limits = {});
  ~FiberRuntime();
  FiberRuntime(const FiberRuntime&) = delete;
  FiberRuntime& operator=(const FiberRuntime&) = delete;

  // Moves logical time forward (never back) and fires the timers due, in
  // (deadline, fiber id) order.
  void advance_time(uint64_t now_ms);
  uint64_t now_ms() const { return now_ms_; }
  // The earliest deadline a fiber waits for, if any.
  std::optional<uint64_t> next_timer_ms() const;

  // Starts a fiber of the newest version of `type`. Errors: bad or taken
  // id, unknown type, oversize args, too many fibers.
  [[nodiscard]] Status start(std::string_view type, std::string_view id, std::string_view args);
  // The inputs fibers wait on; false as Fx's commands say.
  bool send(std::string_view queue, std::string_view message);
  bool resolve(std::string_view future, std::string_view value);
  bool cancel(std::string_view fiber);

  std::optional<Info> info(std::string_view fiber) const;
  size_t live_fibers() const;
  size_t queued_messages(std::string_view queue) const;

  // The whole state, and a hash of it equal on every replica.
  std::string encode() const;
  uint64_t state_hash() const;
  // Replaces the state by an encoded one and replays its live fibers.
  // On an error the runtime is empty.
  [[nodiscard]] Status restore(std::string_view bytes);

 private:
  friend class Fx;
  struct FiberState;
  struct QueueState;
  struct FutureState;
  using Waiter = std::pair<std::string, uint64_t>;  // fiber id, wait number

  // From Fx (the fiber `fx` is the one running).
  bool await_now(Fx& fx, const std::vector<Source>& sources, Woken& out);
  bool command(Fx& fx, uint8_t kind, std::string_view a, std::string_view b,
               std::string* spawned = nullptr);

  FiberState& running(const Fx& fx) const;
  // Why an await may not wait on these sources ("" if it may).
  std::string wait_refused(FiberState& f, const std::vector<Source>& sources);
  // A replay asked otherwise than the history says: the fiber is doomed and
  // the restore fails. Returns false (what the await or command returns).
  bool diverge(FiberState& f, std::string why);
  void end(FiberState& f, State state, std::string result);
  void run_ready();
  void resume(FiberState& f);
  void finish(FiberState& f);
  void wake(FiberState& f, Woken woken);
  void record(FiberState& f, Event event);
  bool ready_now(FiberState& f, const std::vector<Source>& sources, Woken& out);
  void register_wait(FiberState& f, const std::vector<Source>& sources);
  bool do_send(std::string_view queue, std::string_view message);
  bool do_resolve(std::string_view future, std::string_view value);
  bool do_cancel(std::string_view fiber);
  Status create(std::string_view type, uint32_t version, std::string id, std::string args);
  // Creates the coroutine (suspended at its start); why not, if it could not.
  std::string start_coroutine(FiberState& f);
  void drop_done_beyond_limit();
  void clear();

  const FiberTypes& types_;
  const FiberLimits limits_;
  uint64_t now_ms_ = 0;
  std::map<std::string, std::unique_ptr<FiberState>, std::less<>> fibers_;
  std::deque<std::string> done_order_;  // ended fibers, oldest first
  std::map<std::string, QueueState, std::less<>> queues_;
  std::map<std::string, FutureState, std::less<>> futures_;
  std::map<std::string, std::vector<Waiter>, std::less<>> joiners_;  // by the fiber joined
  std::set<std::tuple<uint64_t, std::string, uint64_t>> timers_;     // deadline, fiber, wait
  std::deque<std::string> ready_;
  FiberState* running_ = nullptr;
  bool restoring_ = false;
  std::string diverged_;  // set by a replay that went astray
};

}  // namespace maroon
