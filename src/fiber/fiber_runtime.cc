#include "fiber/fiber_runtime.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <new>
#include <set>

#include "common/codec.h"
#include "common/hash.h"

namespace maroon {

namespace {

constexpr uint8_t kFormat = 1;
constexpr uint8_t kCommandSend = 1;
constexpr uint8_t kCommandResolve = 2;
constexpr uint8_t kCommandSpawn = 3;
constexpr uint8_t kCommandCancel = 4;

void write_source(ByteWriter& w, const Source& s) {
  w.u8(static_cast<uint8_t>(s.kind));
  w.bytes(s.name);
  w.u64(s.deadline_ms);
}

bool read_source(ByteReader& r, Source& s, size_t name_max) {
  uint8_t kind = 0;
  std::string_view name;
  if (!r.u8(kind) || kind < 1 || kind > 4 || !r.bytes(name, name_max) || !r.u64(s.deadline_ms)) {
    return false;
  }
  s.kind = static_cast<Source::Kind>(kind);
  s.name = std::string(name);
  return true;
}

// An error message kept in a fiber's state: at most 4 KiB.
std::string truncated(std::string why) {
  constexpr size_t kWhyBytesMax = 4096;
  if (why.size() > kWhyBytesMax) why.resize(kWhyBytesMax);
  return why;
}

uint64_t sources_check(const std::vector<Source>& sources) {
  std::string bytes;
  ByteWriter w(bytes);
  for (const Source& s : sources) write_source(w, s);
  return hash64(bytes, 0x6669626572617774);  // "fiberawt"
}

uint64_t command_check(uint8_t kind, std::string_view a, std::string_view b) {
  std::string bytes;
  ByteWriter w(bytes);
  w.u8(kind);
  w.bytes(a);
  w.bytes(b);
  return hash64(bytes, 0x6669626572636d64);  // "fibercmd"
}

// The index of the first source of `kind` named `name` (or with that deadline).
size_t source_index(const std::vector<Source>& sources, Source::Kind kind, std::string_view name,
                    uint64_t deadline_ms = 0) {
  for (size_t i = 0; i < sources.size(); i++) {
    if (sources[i].kind != kind) continue;
    if (kind == Source::Kind::kTimer ? sources[i].deadline_ms == deadline_ms
                                     : sources[i].name == name) {
      return i;
    }
  }
  MAROON_ASSERT_MSG(false, "a registered wait names a source the fiber does not wait on");
  return 0;
}

}  // namespace

void Fiber::promise_type::unhandled_exception() noexcept {
  failed = true;
  try {
    throw;
  } catch (const std::bad_alloc&) {
    // Out of memory is this replica's, not the fiber's: failing the fiber
    // here alone would make replicas disagree. Stop instead.
    MAROON_ASSERT_MSG(false, "out of memory in a fiber");
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "the fiber threw something that is not a std::exception";
  }
}

// ---- FiberTypes ----

bool FiberTypes::add(std::string name, uint32_t version, FiberFn fn) {
  MAROON_ASSERT(version >= 1 && fn);
  if (name.empty() || name.size() > FiberLimits{}.name_bytes_max) return false;
  return types_[std::move(name)].emplace(version, std::move(fn)).second;
}

const FiberFn* FiberTypes::find(std::string_view name, uint32_t version) const {
  auto t = types_.find(name);
  if (t == types_.end()) return nullptr;
  auto v = t->second.find(version);
  return v == t->second.end() ? nullptr : &v->second;
}

uint32_t FiberTypes::newest(std::string_view name) const {
  auto t = types_.find(name);
  return t == types_.end() || t->second.empty() ? 0 : t->second.rbegin()->first;
}

// ---- state ----

struct FiberRuntime::FiberState {
  std::string id;
  std::string type;
  uint32_t version = 0;
  std::string args;
  State state = State::kWaiting;
  bool cancelled = false;
  uint64_t started_ms = 0;
  uint64_t commands = 0;       // commands made so far: names what spawn makes
  uint64_t commands_base = 0;  // `commands` when this life began (continue_as_new)
  std::string doomed;          // set: the fiber ends, failed, at its next await
  std::vector<Event> history;
  std::string result;
  std::optional<std::string> continue_args;
  // The await it is suspended in (state kWaiting, not running).
  bool waiting = false;
  uint64_t wait_seq = 0;
  std::vector<Source> waiting_on;
  Woken* slot = nullptr;  // where the await's result goes
  // Replay: answers come from history[replay_at...] until it runs out.
  bool replaying = false;
  size_t replay_at = 0;
  size_t awaits_this_resume = 0;
  std::unique_ptr<Fx> fx;
  Fiber coro;
};

struct FiberRuntime::QueueState {
  std::deque<std::string> messages;
  std::deque<Waiter> waiters;
};

struct FiberRuntime::FutureState {
  std::optional<std::string> value;
  std::vector<Waiter> waiters;
};

FiberRuntime::FiberRuntime(const FiberTypes& types, FiberLimits limits)
    : types_(types), limits_(limits) {}

FiberRuntime::~FiberRuntime() { clear(); }

void FiberRuntime::clear() {
  MAROON_ASSERT(running_ == nullptr);
  fibers_.clear();  // destroys the coroutine frames
  done_order_.clear();
  queues_.clear();
  futures_.clear();
  joiners_.clear();
  timers_.clear();
  ready_.clear();
  now_ms_ = 0;
  diverged_.clear();
}

// ---- Fx ----

bool Fx::Wait::await_ready() { return fx_.runtime_.await_now(fx_, sources_, woken_); }

bool Fx::send(std::string_view queue, std::string_view message) {
  return runtime_.command(*this, kCommandSend, queue, message);
}
bool Fx::resolve(std::string_view future, std::string_view value) {
  return runtime_.command(*this, kCommandResolve, future, value);
}
std::string Fx::spawn(std::string_view type, std::string_view args) {
  std::string id;
  runtime_.command(*this, kCommandSpawn, type, args, &id);
  return id;
}
bool Fx::cancel(std::string_view fiber) {
  return runtime_.command(*this, kCommandCancel, fiber, {});
}
void Fx::continue_as_new(std::string args) {
  FiberRuntime::FiberState& f = runtime_.running(*this);
  if (args.size() > runtime_.limits_.message_bytes_max) {
    // Refused now, so that no state holds args a restore would refuse.
    if (f.doomed.empty()) {
      f.doomed = fmt::format("continue_as_new args of {} bytes; the limit is {}", args.size(),
                             runtime_.limits_.message_bytes_max);
    }
    return;
  }
  f.continue_args = std::move(args);
}
Prng Fx::prng() const {
  const auto& f = runtime_.running(*this);
  const uint64_t position = f.replaying ? f.replay_at : f.history.size();
  return Prng(hash64(id_) ^ (f.commands * 0x9e3779b97f4a7c15ULL) ^ position);
}

FiberRuntime::FiberState& FiberRuntime::running(const Fx& fx) const {
  MAROON_ASSERT_MSG(running_ != nullptr && running_->fx.get() == &fx,
                    "a fiber's Fx used while another fiber (or none) runs");
  return *running_;
}

// ---- awaits and commands ----

bool FiberRuntime::await_now(Fx& fx, const std::vector<Source>& sources, Woken& out) {
  FiberState& f = running(fx);
  // A doomed fiber suspends at its next await without waiting on anything;
  // resume() then ends it (failed) or restore() reports it.
  if (!f.doomed.empty()) return false;
  const uint64_t check = sources_check(sources);
  if (f.replaying) {
    if (f.replay_at < f.history.size()) {
      const Event& e = f.history[f.replay_at];
      if (e.kind != Event::Kind::kAwait || e.check != check) {
        return diverge(f, fmt::format("fiber {} asked something else at history event {} on "
                                      "replay",
                                      f.id, f.replay_at));
      }
      f.replay_at++;
      out = e.woken;
      fx.now_ms_ = e.now_ms;
      fx.cancelled_ = fx.cancelled_ || e.woken.cancelled;
      return true;
    }
    // The end of its history: it must wait where it waited.
    if (!f.waiting || f.waiting_on != sources) {
      return diverge(f, fmt::format("fiber {} replayed its {} history events to another await",
                                    f.id, f.history.size()));
    }
    f.replaying = false;
    f.slot = &out;
    return false;
  }
  MAROON_ASSERT(!restoring_);
  if (std::string why = wait_refused(f, sources); !why.empty()) {
    f.doomed = std::move(why);
    return false;
  }
  if (ready_now(f, sources, out)) {
    record(f, Event{.kind = Event::Kind::kAwait, .check = check, .now_ms = now_ms_, .woken = out});
    fx.cancelled_ = fx.cancelled_ || out.cancelled;
    return true;
  }
  register_wait(f, sources);
  f.slot = &out;
  return false;
}

bool FiberRuntime::diverge(FiberState& f, std::string why) {
  if (diverged_.empty()) diverged_ = why;
  f.doomed = std::move(why);
  return false;
}

std::string FiberRuntime::wait_refused(FiberState& f, const std::vector<Source>& sources) {
  if (sources.empty()) return "an await with nothing to wait on";
  if (sources.size() > kWaitSourcesMax) {
    return fmt::format("an await on {} sources; the limit is {}", sources.size(), kWaitSourcesMax);
  }
  if (++f.awaits_this_resume > limits_.awaits_per_resume_max) {
    return fmt::format("more than {} awaits ended at once in one step",
                       limits_.awaits_per_resume_max);
  }
  if (f.history.size() >= limits_.history_events_max) {
    return fmt::format("history of {} events is full: use continue_as_new",
                       limits_.history_events_max);
  }
  size_t new_queues = 0, new_futures = 0;
  for (size_t i = 0; i < sources.size(); i++) {
    const Source& s = sources[i];
    if (s.kind != Source::Kind::kTimer &&
        (s.name.empty() || s.name.size() > limits_.name_bytes_max)) {
      return fmt::format("a source name of {} bytes; names are 1 to {}", s.name.size(),
                         limits_.name_bytes_max);
    }
    for (size_t k = 0; k < i; k++) {
      if (sources[k] == s) return "an await names one source twice";
    }
    if (s.kind == Source::Kind::kQueue && !queues_.contains(s.name)) new_queues++;
    if (s.kind == Source::Kind::kFuture && !futures_.contains(s.name)) new_futures++;
  }
  if (queues_.size() + new_queues > limits_.queues_max) {
    return fmt::format("{} queues exist, the most there may be", limits_.queues_max);
  }
  if (futures_.size() + new_futures > limits_.futures_max) {
    return fmt::format("{} futures exist, the most there may be", limits_.futures_max);
  }
  return {};
}

bool FiberRuntime::command(Fx& fx, uint8_t kind, std::string_view a, std::string_view b,
                           std::string* spawned) {
  FiberState& f = running(fx);
  if (spawned != nullptr) spawned->clear();
  if (!f.doomed.empty()) return false;
  const uint64_t check = command_check(kind, a, b);
  const std::string child = f.id + "/" + std::to_string(f.commands);
  f.commands++;
  if (f.replaying) {
    if (f.replay_at >= f.history.size()) {
      return diverge(f, fmt::format("fiber {} replayed its {} history events to a command", f.id,
                                    f.history.size()));
    }
    const Event& e = f.history[f.replay_at];
    if (e.kind != Event::Kind::kCommand || e.check != check) {
      return diverge(f, fmt::format("fiber {} made another command at history event {} on replay",
                                    f.id, f.replay_at));
    }
    f.replay_at++;
    if (spawned != nullptr) *spawned = e.ok ? child : std::string();
    return e.ok;
  }
  MAROON_ASSERT(!restoring_);
  if (f.history.size() >= limits_.history_events_max) {
    f.doomed = fmt::format("history of {} events is full: use continue_as_new",
                           limits_.history_events_max);
    return false;
  }
  bool ok = false;
  switch (kind) {
    case kCommandSend:
      ok = do_send(a, b);
      break;
    case kCommandResolve:
      ok = do_resolve(a, b);
      break;
    case kCommandCancel:
      ok = do_cancel(a);
      break;
    case kCommandSpawn: {
      const uint32_t version = types_.newest(a);
      ok = version != 0 && create(a, version, child, std::string(b)).is_ok();
      break;
    }
    default:
      MAROON_ASSERT_MSG(false, "unknown fiber command");
  }
  record(f, Event{.kind = Event::Kind::kCommand, .check = check, .now_ms = now_ms_, .ok = ok});
  if (spawned != nullptr) *spawned = ok ? child : std::string();
  return ok;
}

void FiberRuntime::record(FiberState& f, Event event) {
  MAROON_ASSERT(!f.replaying);
  f.history.push_back(std::move(event));
}

bool FiberRuntime::ready_now(FiberState& f, const std::vector<Source>& sources, Woken& out) {
  if (f.cancelled) {
    out = Woken{.cancelled = true};
    return true;
  }
  for (size_t i = 0; i < sources.size(); i++) {
    const Source& s = sources[i];
    switch (s.kind) {
      case Source::Kind::kQueue: {
        auto q = queues_.find(s.name);
        if (q == queues_.end() || q->second.messages.empty()) break;
        out = Woken{.index = i, .value = std::move(q->second.messages.front())};
        q->second.messages.pop_front();
        if (q->second.messages.empty() && q->second.waiters.empty()) queues_.erase(q);
        return true;
      }
      case Source::Kind::kFuture: {
        auto fu = futures_.find(s.name);
        if (fu == futures_.end() || !fu->second.value) break;
        out = Woken{.index = i, .value = *fu->second.value};
        return true;
      }
      case Source::Kind::kTimer:
        if (s.deadline_ms > now_ms_) break;
        out = Woken{.index = i};
        return true;
      case Source::Kind::kJoin: {
        auto t = fibers_.find(s.name);
        if (t == fibers_.end()) {
          out = Woken{.index = i, .failed = true, .value = "no such fiber"};
          return true;
        }
        if (t->second->state == State::kWaiting) break;
        out = Woken{
            .index = i, .failed = t->second->state == State::kFailed, .value = t->second->result};
        return true;
      }
    }
  }
  return false;
}

void FiberRuntime::register_wait(FiberState& f, const std::vector<Source>& sources) {
  MAROON_ASSERT(!f.waiting);
  f.wait_seq++;
  f.waiting = true;
  f.waiting_on = sources;
  const Waiter me{f.id, f.wait_seq};
  for (const Source& s : sources) {
    switch (s.kind) {
      case Source::Kind::kQueue:
        queues_[s.name].waiters.push_back(me);
        break;
      case Source::Kind::kFuture:
        futures_[s.name].waiters.push_back(me);
        break;
      case Source::Kind::kTimer:
        timers_.emplace(s.deadline_ms, f.id, f.wait_seq);
        break;
      case Source::Kind::kJoin:
        joiners_[s.name].push_back(me);
        break;
    }
  }
}

void FiberRuntime::wake(FiberState& f, Woken woken) {
  // A running fiber may wake others (its commands), never itself: it is
  // not waiting while it runs.
  MAROON_ASSERT(f.waiting && f.slot != nullptr && &f != running_);
  // Forget every registration of this wait: no stale entries are kept.
  const Waiter me{f.id, f.wait_seq};
  for (const Source& s : f.waiting_on) {
    switch (s.kind) {
      case Source::Kind::kQueue: {
        auto q = queues_.find(s.name);
        MAROON_ASSERT(q != queues_.end());
        std::erase(q->second.waiters, me);
        if (q->second.messages.empty() && q->second.waiters.empty()) queues_.erase(q);
        break;
      }
      case Source::Kind::kFuture: {
        auto fu = futures_.find(s.name);
        MAROON_ASSERT(fu != futures_.end());
        std::erase(fu->second.waiters, me);
        if (!fu->second.value && fu->second.waiters.empty()) futures_.erase(fu);
        break;
      }
      case Source::Kind::kTimer:
        timers_.erase({s.deadline_ms, f.id, f.wait_seq});
        break;
      case Source::Kind::kJoin: {
        auto j = joiners_.find(s.name);
        MAROON_ASSERT(j != joiners_.end());
        std::erase(j->second, me);
        if (j->second.empty()) joiners_.erase(j);
        break;
      }
    }
  }
  record(f, Event{.kind = Event::Kind::kAwait,
                  .check = sources_check(f.waiting_on),
                  .now_ms = now_ms_,
                  .woken = woken});
  f.fx->now_ms_ = now_ms_;
  f.fx->cancelled_ = f.fx->cancelled_ || woken.cancelled;
  *f.slot = std::move(woken);
  f.slot = nullptr;
  f.waiting = false;
  f.waiting_on.clear();
  ready_.push_back(f.id);
}

// ---- inputs ----

bool FiberRuntime::do_send(std::string_view queue, std::string_view message) {
  if (queue.empty() || queue.size() > limits_.name_bytes_max ||
      message.size() > limits_.message_bytes_max) {
    return false;
  }
  auto q = queues_.find(queue);
  if (q != queues_.end() && !q->second.waiters.empty()) {
    FiberState& f = *fibers_.at(q->second.waiters.front().first);
    wake(f, Woken{.index = source_index(f.waiting_on, Source::Kind::kQueue, queue),
                  .value = std::string(message)});
    return true;
  }
  if (q == queues_.end()) {
    if (queues_.size() >= limits_.queues_max) return false;
    q = queues_.emplace(std::string(queue), QueueState{}).first;
  }
  if (q->second.messages.size() >= limits_.queue_messages_max) return false;
  q->second.messages.emplace_back(message);
  return true;
}

bool FiberRuntime::do_resolve(std::string_view future, std::string_view value) {
  if (future.empty() || future.size() > limits_.name_bytes_max ||
      value.size() > limits_.message_bytes_max) {
    return false;
  }
  auto fu = futures_.find(future);
  if (fu == futures_.end()) {
    if (futures_.size() >= limits_.futures_max) return false;
    fu = futures_.emplace(std::string(future), FutureState{}).first;
  }
  if (fu->second.value) return false;
  fu->second.value = std::string(value);
  // Every waiter, in the order they began to wait. wake() edits the list.
  const std::vector<Waiter> waiters = fu->second.waiters;
  for (const Waiter& w : waiters) {
    FiberState& f = *fibers_.at(w.first);
    wake(f, Woken{.index = source_index(f.waiting_on, Source::Kind::kFuture, future),
                  .value = std::string(value)});
  }
  return true;
}

bool FiberRuntime::do_cancel(std::string_view fiber) {
  auto it = fibers_.find(fiber);
  if (it == fibers_.end()) return false;
  FiberState& f = *it->second;
  if (f.state != State::kWaiting || f.cancelled) return false;
  f.cancelled = true;
  if (f.waiting) wake(f, Woken{.cancelled = true});
  return true;
}

bool FiberRuntime::send(std::string_view queue, std::string_view message) {
  MAROON_ASSERT(running_ == nullptr);
  const bool ok = do_send(queue, message);
  run_ready();
  return ok;
}

bool FiberRuntime::resolve(std::string_view future, std::string_view value) {
  MAROON_ASSERT(running_ == nullptr);
  const bool ok = do_resolve(future, value);
  run_ready();
  return ok;
}

bool FiberRuntime::cancel(std::string_view fiber) {
  MAROON_ASSERT(running_ == nullptr);
  const bool ok = do_cancel(fiber);
  run_ready();
  return ok;
}

void FiberRuntime::advance_time(uint64_t now_ms) {
  MAROON_ASSERT(running_ == nullptr);
  now_ms_ = std::max(now_ms_, now_ms);
  while (!timers_.empty() && std::get<0>(*timers_.begin()) <= now_ms_) {
    const auto [deadline, id, seq] = *timers_.begin();
    FiberState& f = *fibers_.at(id);
    MAROON_ASSERT(f.waiting && f.wait_seq == seq);
    wake(f, Woken{.index = source_index(f.waiting_on, Source::Kind::kTimer, {}, deadline)});
  }
  run_ready();
}

std::optional<uint64_t> FiberRuntime::next_timer_ms() const {
  if (timers_.empty()) return std::nullopt;
  return std::get<0>(*timers_.begin());
}

Status FiberRuntime::start(std::string_view type, std::string_view id, std::string_view args) {
  MAROON_ASSERT(running_ == nullptr);
  const uint32_t version = types_.newest(type);
  if (version == 0) {
    return Status(Code::kNotFound, fmt::format("no fiber type \"{}\"",
                                               type.substr(0, std::min<size_t>(type.size(), 64))));
  }
  if (id.find('/') != std::string_view::npos) {
    return invalid_argument("a fiber id started by a client has no '/' (spawned fibers' have)");
  }
  Status s = create(type, version, std::string(id), std::string(args));
  if (s) run_ready();
  return s;
}

Status FiberRuntime::create(std::string_view type, uint32_t version, std::string id,
                            std::string args) {
  if (id.empty() || id.size() > limits_.name_bytes_max) {
    return invalid_argument(fmt::format("a fiber id is 1 to {} bytes", limits_.name_bytes_max));
  }
  if (args.size() > limits_.message_bytes_max) {
    return too_large(fmt::format("fiber args of {} bytes; the limit is {}", args.size(),
                                 limits_.message_bytes_max));
  }
  if (fibers_.contains(id)) {
    return Status(Code::kConflict, fmt::format("fiber \"{}\" exists", id));
  }
  if (live_fibers() >= limits_.fibers_max) {
    return overloaded(fmt::format("{} fibers run, the most there may be", limits_.fibers_max));
  }
  auto f = std::make_unique<FiberState>();
  f->id = std::move(id);
  f->type = std::string(type);
  f->version = version;
  f->args = std::move(args);
  f->started_ms = now_ms_;
  FiberState& ref = *f;
  fibers_.emplace(ref.id, std::move(f));
  if (std::string why = start_coroutine(ref); !why.empty()) {
    end(ref, State::kFailed, std::move(why));  // it exists, failed at once
  } else {
    ready_.push_back(ref.id);
  }
  return Status::ok();
}

std::string FiberRuntime::start_coroutine(FiberState& f) {
  const FiberFn* fn = types_.find(f.type, f.version);
  MAROON_ASSERT(fn != nullptr);
  f.fx.reset(new Fx(*this, f.id));
  f.fx->now_ms_ = f.started_ms;
  try {
    f.coro = (*fn)(*f.fx, f.args);
  } catch (const std::bad_alloc&) {
    MAROON_ASSERT_MSG(false, "out of memory starting a fiber");  // as in unhandled_exception
  } catch (const std::exception& e) {
    return truncated(fmt::format("the fiber function threw before it began: {}", e.what()));
  } catch (...) {
    return "the fiber function threw before it began";
  }
  if (!f.coro.handle()) return "the fiber function returned no coroutine";
  return {};
}

// ---- running ----

void FiberRuntime::run_ready() {
  while (!ready_.empty()) {
    const std::string id = std::move(ready_.front());
    ready_.pop_front();
    auto it = fibers_.find(id);
    MAROON_ASSERT(it != fibers_.end() && it->second->state == State::kWaiting);
    resume(*it->second);
  }
}

void FiberRuntime::resume(FiberState& f) {
  MAROON_ASSERT(running_ == nullptr && !f.waiting && !restoring_);
  running_ = &f;
  f.awaits_this_resume = 0;
  f.coro.handle().resume();
  running_ = nullptr;
  if (!f.doomed.empty()) {
    MAROON_ASSERT(!f.waiting);
    end(f, State::kFailed, std::move(f.doomed));
  } else if (f.coro.handle().done()) {
    finish(f);
  } else {
    MAROON_ASSERT_MSG(f.waiting, "a fiber suspended in something other than an Fx await");
  }
}

void FiberRuntime::finish(FiberState& f) {
  Fiber::promise_type& p = f.coro.handle().promise();
  if (p.failed) return end(f, State::kFailed, truncated(std::move(p.failure)));
  if (f.continue_args && !f.cancelled) {
    if (f.continue_args->size() > limits_.message_bytes_max) {
      return end(f, State::kFailed,
                 fmt::format("continue_as_new args of {} bytes; the limit is {}",
                             f.continue_args->size(), limits_.message_bytes_max));
    }
    // continue_as_new: the same id, a fresh start. Its commands go on
    // counting, so what it spawns is never named as before.
    f.args = std::move(*f.continue_args);
    f.continue_args.reset();
    f.history.clear();
    f.commands_base = f.commands;
    f.started_ms = now_ms_;
    f.coro = Fiber();
    if (std::string why = start_coroutine(f); !why.empty()) {
      return end(f, State::kFailed, std::move(why));
    }
    ready_.push_back(f.id);
    return;
  }
  if (p.result.size() > limits_.message_bytes_max) {
    return end(f, State::kFailed,
               fmt::format("a result of {} bytes; the limit is {}", p.result.size(),
                           limits_.message_bytes_max));
  }
  end(f, State::kDone, std::move(p.result));
}

void FiberRuntime::end(FiberState& f, State state, std::string result) {
  MAROON_ASSERT(state != State::kWaiting && !f.waiting && &f != running_);
  f.state = state;
  f.result = std::move(result);
  f.coro = Fiber();  // frees the frame
  f.fx.reset();
  f.history.clear();
  f.history.shrink_to_fit();
  f.continue_args.reset();
  f.doomed.clear();
  if (auto j = joiners_.find(f.id); j != joiners_.end()) {
    const std::vector<Waiter> waiters = j->second;
    for (const Waiter& w : waiters) {
      FiberState& joiner = *fibers_.at(w.first);
      wake(joiner, Woken{.index = source_index(joiner.waiting_on, Source::Kind::kJoin, f.id),
                         .failed = f.state == State::kFailed,
                         .value = f.result});
    }
  }
  done_order_.push_back(f.id);
  drop_done_beyond_limit();
}

void FiberRuntime::drop_done_beyond_limit() {
  while (done_order_.size() > limits_.done_kept) {
    fibers_.erase(done_order_.front());
    done_order_.pop_front();
  }
}

// ---- queries ----

std::optional<FiberRuntime::Info> FiberRuntime::info(std::string_view fiber) const {
  auto it = fibers_.find(fiber);
  if (it == fibers_.end()) return std::nullopt;
  const FiberState& f = *it->second;
  return Info{.id = f.id,
              .type = f.type,
              .version = f.version,
              .state = f.state,
              .cancelled = f.cancelled,
              .waiting_on = f.waiting_on,
              .result = f.result,
              .history_events = f.history.size()};
}

size_t FiberRuntime::live_fibers() const { return fibers_.size() - done_order_.size(); }

size_t FiberRuntime::queued_messages(std::string_view queue) const {
  auto q = queues_.find(queue);
  return q == queues_.end() ? 0 : q->second.messages.size();
}

// ---- encoding ----

std::string FiberRuntime::encode() const {
  MAROON_ASSERT(running_ == nullptr && ready_.empty());
  std::string out;
  ByteWriter w(out);
  w.u8(kFormat);
  w.u64(now_ms_);
  w.varint(fibers_.size());
  for (const auto& [id, fp] : fibers_) {
    const FiberState& f = *fp;
    MAROON_ASSERT(f.state != State::kWaiting || f.waiting);
    w.bytes(f.id);
    w.bytes(f.type);
    w.u32(f.version);
    w.bytes(f.args);
    w.u8(static_cast<uint8_t>(f.state));
    w.u8(f.cancelled ? 1 : 0);
    w.u64(f.started_ms);
    w.u64(f.commands);
    w.u64(f.commands_base);
    w.bytes(f.result);
    w.u8(f.continue_args ? 1 : 0);
    if (f.continue_args) w.bytes(*f.continue_args);
    w.u64(f.wait_seq);
    w.varint(f.waiting_on.size());
    for (const Source& s : f.waiting_on) write_source(w, s);
    w.varint(f.history.size());
    for (const Event& e : f.history) {
      w.u8(static_cast<uint8_t>(e.kind));
      w.u64(e.check);
      w.u64(e.now_ms);
      if (e.kind == Event::Kind::kAwait) {
        w.varint(e.woken.index);
        w.u8((e.woken.cancelled ? 1 : 0) | (e.woken.failed ? 2 : 0));
        w.bytes(e.woken.value);
      } else {
        w.u8(e.ok ? 1 : 0);
      }
    }
  }
  w.varint(done_order_.size());
  for (const std::string& id : done_order_) w.bytes(id);
  auto write_waiters = [&w](const auto& waiters) {
    w.varint(waiters.size());
    for (const Waiter& x : waiters) {
      w.bytes(x.first);
      w.u64(x.second);
    }
  };
  w.varint(queues_.size());
  for (const auto& [name, q] : queues_) {
    w.bytes(name);
    w.varint(q.messages.size());
    for (const std::string& m : q.messages) w.bytes(m);
    write_waiters(q.waiters);
  }
  w.varint(futures_.size());
  for (const auto& [name, fu] : futures_) {
    w.bytes(name);
    w.u8(fu.value ? 1 : 0);
    if (fu.value) w.bytes(*fu.value);
    write_waiters(fu.waiters);
  }
  w.varint(joiners_.size());
  for (const auto& [name, js] : joiners_) {
    w.bytes(name);
    write_waiters(js);
  }
  return out;
}

uint64_t FiberRuntime::state_hash() const { return hash64(encode()); }

Status FiberRuntime::restore(std::string_view bytes) {
  MAROON_ASSERT(running_ == nullptr);
  clear();
  Status s = [&]() -> Status {
    auto bad = [](std::string what) { return corruption("fiber state: " + what); };
    ByteReader r(bytes);
    const size_t name_max = limits_.name_bytes_max;
    const size_t value_max = limits_.message_bytes_max;
    uint8_t format = 0;
    uint64_t n = 0;
    if (!r.u8(format) || format != kFormat) return bad("unknown format");
    if (!r.u64(now_ms_) || !r.varint(n)) return bad("short");
    for (uint64_t i = 0; i < n; i++) {
      auto f = std::make_unique<FiberState>();
      std::string_view id, type, args, result, cont;
      uint8_t state = 0, cancelled = 0, has_cont = 0;
      uint64_t sources = 0, events = 0;
      if (!r.bytes(id, name_max) || id.empty() || !r.bytes(type, name_max) || !r.u32(f->version) ||
          !r.bytes(args, value_max) || !r.u8(state) || state < 1 || state > 3 || !r.u8(cancelled) ||
          cancelled > 1 || !r.u64(f->started_ms) || !r.u64(f->commands) ||
          !r.u64(f->commands_base) || f->commands_base > f->commands ||
          !r.bytes(result, value_max) || !r.u8(has_cont) || has_cont > 1 ||
          (has_cont && !r.bytes(cont, value_max)) || !r.u64(f->wait_seq) || !r.varint(sources) ||
          sources > kWaitSourcesMax) {
        return bad("malformed fiber");
      }
      f->id = std::string(id);
      f->type = std::string(type);
      f->args = std::string(args);
      f->state = static_cast<State>(state);
      f->cancelled = cancelled == 1;
      f->result = std::string(result);
      if (has_cont) f->continue_args = std::string(cont);
      for (uint64_t k = 0; k < sources; k++) {
        Source src;
        if (!read_source(r, src, name_max)) return bad("malformed source");
        if ((src.kind == Source::Kind::kTimer) != src.name.empty() ||
            std::find(f->waiting_on.begin(), f->waiting_on.end(), src) != f->waiting_on.end()) {
          return bad("malformed source");
        }
        f->waiting_on.push_back(std::move(src));
      }
      if (!r.varint(events) || events > limits_.history_events_max) return bad("malformed history");
      for (uint64_t k = 0; k < events; k++) {
        Event e;
        uint8_t kind = 0;
        if (!r.u8(kind) || kind < 1 || kind > 2 || !r.u64(e.check) || !r.u64(e.now_ms)) {
          return bad("malformed event");
        }
        e.kind = static_cast<Event::Kind>(kind);
        if (e.kind == Event::Kind::kAwait) {
          uint64_t index = 0;
          uint8_t flags = 0;
          std::string_view value;
          if (!r.varint(index) || index >= kWaitSourcesMax || !r.u8(flags) || flags > 3 ||
              !r.bytes(value, value_max)) {
            return bad("malformed event");
          }
          e.woken = Woken{.index = index,
                          .cancelled = (flags & 1) != 0,
                          .failed = (flags & 2) != 0,
                          .value = std::string(value)};
        } else {
          uint8_t ok = 0;
          if (!r.u8(ok) || ok > 1) return bad("malformed event");
          e.ok = ok == 1;
        }
        f->history.push_back(std::move(e));
      }
      const bool live = f->state == State::kWaiting;
      // A live fiber waits (a cancelled one would have been woken); an
      // ended one keeps no history and waits on nothing.
      if (live == f->waiting_on.empty() || (live && f->cancelled) ||
          (!live && (!f->history.empty() || f->continue_args))) {
        return bad(fmt::format("fiber {}: state", f->id));
      }
      f->waiting = live;
      if (!fibers_.empty() && fibers_.rbegin()->first >= f->id) return bad("fibers out of order");
      std::string key = f->id;
      fibers_.emplace(std::move(key), std::move(f));
    }
    if (!r.varint(n) || n > fibers_.size() || n > limits_.done_kept) {
      return bad("malformed ended fibers");
    }
    std::set<std::string_view> ended;
    for (uint64_t i = 0; i < n; i++) {
      std::string_view id;
      if (!r.bytes(id, name_max)) return bad("malformed ended fibers");
      auto it = fibers_.find(id);
      if (it == fibers_.end() || it->second->state == State::kWaiting ||
          !ended.insert(it->first).second) {
        return bad("ended fibers");
      }
      done_order_.emplace_back(id);
    }
    if (done_order_.size() != fibers_.size() - static_cast<size_t>(std::count_if(
                                                   fibers_.begin(), fibers_.end(), [](auto& x) {
                                                     return x.second->state == State::kWaiting;
                                                   }))) {
      return bad("ended fibers");
    }
    // Registrations: exactly one per live fiber's non-timer source.
    std::set<std::tuple<Source::Kind, std::string, std::string>> registered;
    auto read_waiters = [&](auto& waiters, Source::Kind kind, std::string_view name) -> bool {
      uint64_t count = 0;
      if (!r.varint(count) || count > fibers_.size()) return false;
      for (uint64_t k = 0; k < count; k++) {
        std::string_view id;
        uint64_t seq = 0;
        if (!r.bytes(id, name_max) || !r.u64(seq)) return false;
        auto it = fibers_.find(id);
        if (it == fibers_.end() || !it->second->waiting || it->second->wait_seq != seq)
          return false;
        const auto& on = it->second->waiting_on;
        if (std::none_of(on.begin(), on.end(),
                         [&](const Source& s) { return s.kind == kind && s.name == name; })) {
          return false;
        }
        waiters.push_back(Waiter{std::string(id), seq});
        if (!registered.emplace(kind, std::string(name), std::string(id)).second) return false;
      }
      return true;
    };
    if (!r.varint(n) || n > bytes.size()) return bad("malformed queues");
    for (uint64_t i = 0; i < n; i++) {
      std::string_view name;
      uint64_t count = 0;
      if (!r.bytes(name, name_max) || !r.varint(count) || count > limits_.queue_messages_max) {
        return bad("malformed queue");
      }
      QueueState q;
      for (uint64_t k = 0; k < count; k++) {
        std::string_view m;
        if (!r.bytes(m, value_max)) return bad("malformed queue");
        q.messages.emplace_back(m);
      }
      if (!read_waiters(q.waiters, Source::Kind::kQueue, name)) return bad("queue waiters");
      // A live runtime keeps no empty queue, nor messages beside waiters.
      if (q.messages.empty() == q.waiters.empty()) return bad("queue state");
      if (!queues_.emplace(std::string(name), std::move(q)).second) return bad("queue twice");
    }
    if (!r.varint(n) || n > limits_.futures_max) return bad("malformed futures");
    for (uint64_t i = 0; i < n; i++) {
      std::string_view name, value;
      uint8_t has = 0;
      if (!r.bytes(name, name_max) || !r.u8(has) || has > 1 ||
          (has && !r.bytes(value, value_max))) {
        return bad("malformed future");
      }
      FutureState fu;
      if (has) fu.value = std::string(value);
      if (!read_waiters(fu.waiters, Source::Kind::kFuture, name)) return bad("future waiters");
      // A resolved future has woken its waiters; an unresolved one unwaited is dropped.
      if (fu.value.has_value() == !fu.waiters.empty()) return bad("future state");
      if (!futures_.emplace(std::string(name), std::move(fu)).second) return bad("future twice");
    }
    if (!r.varint(n) || n > fibers_.size()) return bad("malformed joins");
    for (uint64_t i = 0; i < n; i++) {
      std::string_view name;
      if (!r.bytes(name, name_max)) return bad("malformed joins");
      std::vector<Waiter> js;
      if (!read_waiters(js, Source::Kind::kJoin, name)) return bad("join waiters");
      auto joined = fibers_.find(name);
      if (js.empty() || joined == fibers_.end() || joined->second->state != State::kWaiting ||
          !joiners_.emplace(std::string(name), std::move(js)).second) {
        return bad("join state");
      }
    }
    if (!r.at_end()) return bad("trailing bytes");
    size_t expected = 0;
    for (auto& [id, f] : fibers_) {
      for (const Source& s : f->waiting_on) {
        if (s.kind == Source::Kind::kTimer) {
          if (s.deadline_ms <= now_ms_) return bad("a timer past due");  // it would have fired
          timers_.emplace(s.deadline_ms, f->id, f->wait_seq);
        } else {
          expected++;
        }
      }
    }
    if (registered.size() != expected) return bad("waits and registrations disagree");
    // Replay every live fiber to where it waits.
    restoring_ = true;
    for (auto& [id, fp] : fibers_) {
      FiberState& f = *fp;
      if (f.state != State::kWaiting) continue;
      if (types_.find(f.type, f.version) == nullptr) {
        restoring_ = false;
        return Status(Code::kUnavailable,
                      fmt::format("fiber {} runs version {} of type \"{}\", which this binary "
                                  "lacks",
                                  f.id, f.version, f.type));
      }
      if (std::string why = start_coroutine(f); !why.empty()) {
        restoring_ = false;
        return corruption(fmt::format("fiber {}: {}", f.id, why));
      }
      f.replaying = true;
      f.replay_at = 0;
      // Replay counts the commands of this life again.
      const uint64_t commands = std::exchange(f.commands, f.commands_base);
      // It stays `waiting` (its registrations are restored): the replay ends
      // at the await it waits in, which takes the slot and suspends.
      running_ = &f;
      f.coro.handle().resume();
      running_ = nullptr;
      if (!diverged_.empty() || !f.doomed.empty() || f.coro.handle().done() || f.replaying ||
          f.slot == nullptr || f.commands != commands) {
        restoring_ = false;
        return corruption(!diverged_.empty() ? diverged_
                          : !f.doomed.empty()
                              ? fmt::format("fiber {}: {}", f.id, f.doomed)
                              : fmt::format("fiber {} did not replay to its wait", f.id));
      }
    }
    restoring_ = false;
    MAROON_ASSERT(ready_.empty());
    return Status::ok();
  }();
  if (!s) clear();
  return s;
}

}  // namespace maroon
