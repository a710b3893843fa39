#include "check/linearizability.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <map>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "maroon/assert.h"
#include "common/hash.h"

namespace maroon::check {

const char* verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kUnknown:
      return "unknown";
  }
  MAROON_UNREACHABLE();
}

namespace {

constexpr int32_t kNone = -1;
constexpr int32_t kHead = 0;  // of the list of completed ops' events
constexpr uint32_t kNoOp = UINT32_MAX;
// Node indices are int32: two events per op plus two list heads.
static_assert(2 * check_ops_per_key_max + 2 < size_t{INT32_MAX});
// Visited configurations are numbered in uint32; past this the search gives
// up, whatever memo_bytes_max allows.
constexpr size_t kVisitedMax = size_t{1} << 31;
// How many ops an explanation lists on either side of the point it explains.
constexpr size_t kExplainedOpsMax = 20;

bool is_pending(const KvOperation& op) { return op.ret == kPending; }

size_t words_for(size_t bits) { return (bits + 63) / 64; }
bool test_bit(const std::vector<uint64_t>& bits, uint32_t i) {
  return (bits[i / 64] >> (i % 64)) & 1;
}
void set_bit(std::vector<uint64_t>& bits, uint32_t i) { bits[i / 64] |= uint64_t{1} << (i % 64); }
void clear_bit(std::vector<uint64_t>& bits, uint32_t i) {
  bits[i / 64] &= ~(uint64_t{1} << (i % 64));
}

// Each distinct model state gets a small number, so the memo and the undo
// stack hold 4 bytes instead of a string. 0 is "absent".
class StateTable {
 public:
  StateTable() { states_.emplace_back(std::nullopt); }

  uint32_t intern(std::string value) {
    auto [it, inserted] = ids_.try_emplace(std::move(value), static_cast<uint32_t>(states_.size()));
    if (inserted) {
      MAROON_ASSERT(states_.size() < UINT32_MAX);
      states_.emplace_back(it->first);
      // Stored twice (map key and vector), plus rough per-node overhead.
      bytes_ += 2 * it->first.size() + 96;
    }
    return it->second;
  }
  const KvState& get(uint32_t id) const {
    MAROON_ASSERT(id < states_.size());
    return states_[id];
  }
  uint64_t bytes() const { return bytes_; }

 private:
  std::vector<KvState> states_;
  std::unordered_map<std::string, uint32_t> ids_;
  uint64_t bytes_ = 0;
};

// The memo of configurations the search has entered. A configuration is the
// state, the set of completed ops linearized, the set of pending ops
// linearized, and whether the last op linearized was pending (which limits
// what may follow, see KeySearch). A finished configuration (fully explored,
// no linearization from it) also rules out every configuration with the same
// state and completed ops and more pending ops: pending ops left over never
// constrain anything, so whatever works from the bigger set works from the
// smaller one.
//
// The completed set is stored as the first completed op (in call order) not
// in it, plus the bitset words from there to the last completed op in it:
// every completed op before the first unlinearized one F is in the set, and
// the ones after F that are in it were called before F returned, so the
// window is a few words where a full bitset would be ops/64. The pending set
// is a full bitset over the key's pending ops; those are few.
//
// Open addressing over uint32 slots; (state, completed set) entries, their
// chains of pending sets, and the bitset words live in flat arrays.
class VisitedSet {
 public:
  explicit VisitedSet(size_t pending_words) : pending_words_(pending_words) {}

  // Records the configuration as entered and not finished, and returns its
  // number; or nullopt if a finished configuration rules it out. Adds the
  // pending sets it compared to `compared`: a long chain costs time, and the
  // caller counts that against its step budget.
  std::optional<uint32_t> visit(uint32_t state, uint32_t first_unlinearized,
                                std::span<const uint64_t> completed_window,
                                std::span<const uint64_t> pending, bool after_pending,
                                uint64_t& compared) {
    MAROON_ASSERT(pending.size() == pending_words_);
    const uint64_t seed = (uint64_t{state} << 32) | first_unlinearized;
    const uint64_t hash =
        hash64(std::string_view(reinterpret_cast<const char*>(completed_window.data()),
                                completed_window.size_bytes()),
               seed);
    if ((entries_.size() + 1) * 2 > slots_.size()) grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      if (slots_[i] == 0) {
        entries_.push_back(Entry{hash, state, first_unlinearized, arena_.size(),
                                 static_cast<uint32_t>(completed_window.size()), kNoConfig});
        arena_.insert(arena_.end(), completed_window.begin(), completed_window.end());
        slots_[i] = static_cast<uint32_t>(entries_.size());
        return add_config(entries_.back(), pending, after_pending);
      }
      Entry& e = entries_[slots_[i] - 1];
      if (e.hash == hash && e.state == state && e.first_unlinearized == first_unlinearized &&
          e.words == completed_window.size() &&
          std::equal(completed_window.begin(), completed_window.end(),
                     arena_.begin() + static_cast<ptrdiff_t>(e.offset))) {
        for (uint32_t c = e.configs; c != kNoConfig; c = configs_[c].next) {
          compared++;
          const Config& config = configs_[c];
          // after_pending restricts what may follow (see KeySearch::run), so
          // a restricted configuration rules out only restricted ones.
          if (config.finished && (!config.after_pending || after_pending) &&
              is_subset(config.offset, pending)) {
            return std::nullopt;
          }
        }
        return add_config(e, pending, after_pending);
      }
    }
  }

  // No linearization exists from configuration `config`.
  void finish(uint32_t config) {
    MAROON_ASSERT(config < configs_.size() && !configs_[config].finished);
    configs_[config].finished = true;
  }

  size_t size() const { return configs_.size(); }
  uint64_t bytes() const {
    return entries_.capacity() * sizeof(Entry) + configs_.capacity() * sizeof(Config) +
           arena_.capacity() * sizeof(uint64_t) + slots_.capacity() * sizeof(uint32_t);
  }

 private:
  static constexpr uint32_t kNoConfig = UINT32_MAX;

  struct Entry {
    uint64_t hash;
    uint32_t state;
    uint32_t first_unlinearized;
    uint64_t offset;  // of the completed window in arena_
    uint32_t words;
    uint32_t configs;  // the chain of pending sets seen with this entry
  };
  struct Config {
    uint64_t offset;  // of the pending set in arena_
    uint32_t next;
    bool after_pending;  // the last op linearized was pending
    bool finished;
  };

  uint32_t add_config(Entry& e, std::span<const uint64_t> pending, bool after_pending) {
    MAROON_ASSERT(configs_.size() < kVisitedMax);
    configs_.push_back(Config{arena_.size(), e.configs, after_pending, false});
    arena_.insert(arena_.end(), pending.begin(), pending.end());
    e.configs = static_cast<uint32_t>(configs_.size() - 1);
    return e.configs;
  }

  bool is_subset(uint64_t offset, std::span<const uint64_t> of) const {
    for (size_t w = 0; w < of.size(); w++) {
      if ((arena_[offset + w] & ~of[w]) != 0) return false;
    }
    return true;
  }

  void grow() {
    const size_t size = std::max<size_t>(1024, slots_.size() * 2);
    MAROON_ASSERT(std::has_single_bit(size));
    slots_.assign(size, 0);
    const size_t mask = size - 1;
    for (size_t n = 0; n < entries_.size(); n++) {
      size_t i = entries_[n].hash & mask;
      while (slots_[i] != 0) i = (i + 1) & mask;
      slots_[i] = static_cast<uint32_t>(n + 1);
    }
  }

  const size_t pending_words_;
  std::vector<Entry> entries_;
  std::vector<Config> configs_;
  std::vector<uint64_t> arena_;
  std::vector<uint32_t> slots_;  // 1 + index into entries_; 0 = empty
};

// One event of a key's entry lists: an op's call or its return.
struct Node {
  int32_t prev = kNone;
  int32_t next = kNone;
  uint32_t op = 0;        // index into KeySearch::ops_ (ops are numbered in call order)
  int32_t match = kNone;  // a call's return node
  bool is_call = false;
};

// The Wing & Gong / Lowe search over one key's ops, as Porcupine's
// checkSingle: walk the list of events; at a call, try to linearize that op
// now (apply it to the model; if its outputs match and the memo does not rule
// out where that leads, take it out of the list and start again from the
// head); at a return, the op returning there was not linearized in time, so
// undo the most recent choice and try the next call after it.
//
// Unlike Porcupine it looks only for linearizations in a canonical form: one
// exists whenever any does (take a linearization using the fewest pending
// ops and apply the swaps below), and it lets the search skip most choices
// on read-heavy and crash-heavy histories. The brute-force test checks that
// no verdict changes.
// - A completed op that changes nothing wherever it is legal (a get, a cas
//   that did not swap, an incr that failed), may go next and is legal now,
//   goes next: moving it to the front keeps every later state as it was. So
//   it is the only choice tried (Phase::kReads).
// - A pending op never goes where it would change nothing, nor right before
//   a pending put that would hide what it did: without it the linearization
//   still works and uses fewer pending ops.
// - Of identical pending ops (same kind and inputs; outputs are ignored), the
//   earliest called is used first: swapping them changes nothing.
// - Completed ops are tried before pending ones; this is only an order, but it
//   lets the memo's subset rule (VisitedSet) cut the most.
// What these rules allow next depends only on the memo key (the state, the
// ops linearized, whether the last was pending), so the memo stays exact.
class KeySearch {
 public:
  KeySearch(const std::vector<KvOperation>& history, const std::vector<size_t>& indices,
            const CheckOptions& options)
      : options_(options), visited_(words_for(pending_count(history, indices))) {
    MAROON_ASSERT(!indices.empty() && indices.size() <= check_ops_per_key_max);
    build_entry_list(history, indices);
    completed_bits_.assign(words_for(completed_) + 1, 0);
    pending_bits_.assign(words_for(ops_.size() - completed_), 0);
  }

  Verdict run() {
    uint32_t state = 0;
    int32_t entry = kNone;
    int32_t frontier = kNone;  // the first return in the list, once the walk has reached it
    Phase phase = Phase::kReads;
    bool entered = true;  // at a configuration the search just entered
    for (;;) {
      // Ops left out at this point are all pending: each can go last, with
      // whatever effect and output the model gives it.
      if (completed_linearized_ == completed_) return Verdict::kLinearizable;
      if (steps_ >= options_.steps_max) {
        gave_up_ = fmt::format("gave up after steps_max = {} steps", options_.steps_max);
        return Verdict::kUnknown;
      }
      if (visited_.bytes() + states_.bytes() > options_.memo_bytes_max ||
          visited_.size() + 1 >= kVisitedMax) {
        gave_up_ = fmt::format("gave up after {} steps: the memo reached memo_bytes_max = {}",
                               steps_, options_.memo_bytes_max);
        return Verdict::kUnknown;
      }
      if (entered) {
        entered = false;
        phase = Phase::kReads;
        entry = nodes_[kHead].next;
      }
      steps_++;

      if (phase == Phase::kPending) {
        // Pending ops called before the frontier may go next.
        if (entry == kNone || entry > frontier) {
          note_stuck(frontier, state);
          if (!backtrack(state, entry, frontier, phase)) return Verdict::kNotLinearizable;
          continue;
        }
        const KvOperation& op = *ops_[nodes_[entry].op];
        const KvState& current = states_.get(state);
        KvOutcome outcome = kv_apply(current, op);
        // Pending ops that a shortest linearization never uses here (see the
        // class comment): one that would change nothing; a put right after
        // another pending op, which then changed nothing anyone saw; one
        // with an identical twin called earlier and not yet used.
        const bool overwrites_pending = op.kind == KvOpKind::kPut && !frames_.empty() &&
                                        frames_.back().phase == Phase::kPending;
        const uint32_t twin = twin_before_[nodes_[entry].op];
        const bool twin_unused = twin != kNoOp && !test_bit(pending_bits_, slots_[twin]);
        if (outcome.changes_state && outcome.next != current && !overwrites_pending &&
            !twin_unused) {
          const uint32_t next_state = states_.intern(std::move(*outcome.next));
          if (try_linearize(entry, next_state, state, frontier, phase)) {
            state = next_state;
            lift(entry);
            entered = true;
            continue;
          }
        }
        entry = nodes_[entry].next;
        continue;
      }

      // The list ends with completed returns, and one completed op is left.
      MAROON_ASSERT(entry != kNone);
      const Node& node = nodes_[entry];
      if (!node.is_call) {
        // The first return: every completed op that may go next has been seen.
        if (phase == Phase::kReads) {
          phase = Phase::kCompleted;
          entry = nodes_[kHead].next;
        } else {
          phase = Phase::kPending;
          frontier = entry;
          entry = nodes_[pending_head_].next;
        }
        continue;
      }
      const KvOperation& op = *ops_[node.op];
      MAROON_ASSERT(!is_pending(op));
      if (phase == Phase::kReads) {
        if (!is_legal_read(op, state)) {
          entry = node.next;
          continue;
        }
        if (try_linearize(entry, state, state, frontier, phase)) {
          lift(entry);
          entered = true;
          continue;
        }
        // A finished configuration rules the read out; so everything from here.
        if (!backtrack(state, entry, frontier, phase)) return Verdict::kNotLinearizable;
        continue;
      }
      KvOutcome outcome = kv_apply(states_.get(state), op);
      if (kv_outputs_match(op, outcome)) {
        uint32_t next_state = state;
        if (outcome.changes_state) {
          MAROON_ASSERT(outcome.next.has_value());
          next_state = states_.intern(std::move(*outcome.next));
        }
        if (try_linearize(entry, next_state, state, frontier, phase)) {
          state = next_state;
          lift(entry);
          entered = true;
          continue;
        }
      }
      entry = node.next;
    }
  }

  uint64_t steps() const { return steps_; }

  // Call after run() returned kNotLinearizable or kUnknown.
  std::string explain(std::string_view key, Verdict verdict) const {
    std::string out =
        fmt::format("key {}: {} ({} ops, {} search steps", describe_value(std::string(key)),
                    verdict_name(verdict), ops_.size(), steps_);
    if (!gave_up_.empty()) out += "; " + gave_up_;
    out += ").\n";
    if (stuck_entry_ == 0) {
      out += "It gave up before it ever had to back up.\n";
      return out;
    }

    std::vector<bool> linearized(ops_.size(), false);
    for (uint32_t op : stuck_ops_) linearized[op] = true;
    const KvState& state = states_.get(stuck_state_);
    out += fmt::format("The search got furthest with {} of the {} ops linearized",
                       stuck_ops_.size(), ops_.size());
    if (stuck_ops_.empty()) {
      out += ",\n";
    } else {
      out += ", in this order:\n";
      size_t from = 0;
      if (stuck_ops_.size() > kExplainedOpsMax) {
        from = stuck_ops_.size() - kExplainedOpsMax;
        out += fmt::format("  ... {} earlier ops\n", from);
      }
      for (size_t i = from; i < stuck_ops_.size(); i++) {
        out += fmt::format("  {}\n", describe(stuck_ops_[i]));
      }
    }
    out += fmt::format("leaving the key {}.\n", describe_value(state));

    // The ops that may go next are those called before the first return of
    // an op not yet linearized; that op is the one that must go by then.
    std::vector<uint32_t> candidates;
    std::optional<uint32_t> blocking;
    for (int32_t n = 1; n < pending_head_ && !blocking; n++) {
      const Node& node = nodes_[n];
      if (linearized[node.op]) continue;
      if (node.is_call) {
        candidates.push_back(node.op);
      } else {
        blocking = node.op;
      }
    }
    MAROON_ASSERT(blocking && *blocking == nodes_[stuck_entry_].op);
    const KvOperation& must = *ops_[*blocking];
    out += fmt::format(
        "Then op #{} ({}) must take effect before it returns at {}, and these ops may go next:\n",
        indices_[*blocking], describe_op(must), must.ret);
    // The blocking op first, as the one most likely at fault; pending ops
    // last, as the ones least likely to be.
    std::stable_partition(candidates.begin(), candidates.end(),
                          [&](uint32_t op) { return !is_pending(*ops_[op]); });
    std::stable_partition(candidates.begin(), candidates.end(),
                          [&](uint32_t op) { return op == *blocking; });
    for (size_t i = 0; i < candidates.size() && i < kExplainedOpsMax; i++) {
      const KvOperation& op = *ops_[candidates[i]];
      out += fmt::format("  {}: {}\n", describe(candidates[i]), why(op, state, verdict));
    }
    if (candidates.size() > kExplainedOpsMax) {
      out += fmt::format("  ... {} more\n", candidates.size() - kExplainedOpsMax);
    }
    return out;
  }

 private:
  // What the walk over the ops that may go next is looking for.
  enum class Phase : uint8_t {
    kReads,      // a legal read, which is then the only choice (see is_legal_read)
    kCompleted,  // any completed op
    kPending,    // any pending op
  };

  struct Frame {
    int32_t entry;   // the call node that was linearized
    uint32_t state;  // the state before it
    uint32_t first_unlinearized;
    uint32_t end_linearized;
    uint32_t config;   // the configuration it led to, in visited_
    int32_t frontier;  // the first return in the list before it (kPending walks only)
    Phase phase;       // the walk that chose it
  };

  static size_t pending_count(const std::vector<KvOperation>& history,
                              const std::vector<size_t>& indices) {
    return static_cast<size_t>(std::count_if(indices.begin(), indices.end(),
                                             [&](size_t i) { return is_pending(history[i]); }));
  }

  void build_entry_list(const std::vector<KvOperation>& history,
                        const std::vector<size_t>& indices) {
    // Sorted by time. At equal times a return goes before a call, so an op
    // that returns at t precedes one called at t: a client that gets its
    // answer and sends its next op in the same microsecond is sequential. An
    // op with call == ret is the exception: its return goes after the calls
    // at that time (else it would precede itself), so it overlaps ops called
    // at the same instant.
    struct Event {
      int64_t time;
      int phase;  // 0: a return of an op with ret > call; 1: a call; 2: a return with ret == call
      size_t index;
      bool is_call;
    };
    std::vector<Event> events;
    events.reserve(2 * indices.size());
    for (size_t index : indices) {
      const KvOperation& op = history[index];
      events.push_back(Event{op.call, 1, index, true});
      events.push_back(Event{op.ret, op.ret == op.call ? 2 : 0, index, false});
    }
    std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      return std::tie(a.time, a.phase, a.index) < std::tie(b.time, b.phase, b.index);
    });

    // Node 0 heads the list of completed ops' calls and returns; the last
    // node heads the list of pending ops' calls. Pending returns (all at
    // +infinity) are in no list: nothing can be stuck on them.
    nodes_.resize(events.size() + 2);
    pending_head_ = static_cast<int32_t>(events.size() + 1);
    int32_t completed_tail = kHead, pending_tail = pending_head_;
    auto append = [&](int32_t& tail, int32_t n) {
      nodes_[tail].next = n;
      nodes_[n].prev = tail;
      tail = n;
    };
    std::unordered_map<size_t, int32_t> call_node;  // history index -> its call node
    size_t pending = 0;
    for (size_t i = 0; i < events.size(); i++) {
      const int32_t n = static_cast<int32_t>(i + 1);
      Node& node = nodes_[n];
      node.is_call = events[i].is_call;
      const bool op_pending = is_pending(history[events[i].index]);
      if (node.is_call) {
        node.op = static_cast<uint32_t>(ops_.size());
        ops_.push_back(&history[events[i].index]);
        indices_.push_back(events[i].index);
        slots_.push_back(static_cast<uint32_t>(op_pending ? pending++ : completed_++));
        call_node.emplace(events[i].index, n);
        append(op_pending ? pending_tail : completed_tail, n);
      } else {
        auto it = call_node.find(events[i].index);
        MAROON_ASSERT(it != call_node.end());  // every call sorts before its return
        node.op = nodes_[it->second].op;
        nodes_[it->second].match = n;
        if (!op_pending) append(completed_tail, n);
      }
    }
    MAROON_ASSERT(ops_.size() == indices.size() && completed_ + pending == ops_.size());

    // Pending ops are twins when they would do the same thing: same kind and
    // the inputs that kind uses (their outputs are ignored).
    std::map<std::tuple<KvOpKind, std::string_view, std::optional<std::string_view>>, uint32_t>
        last_twin;
    twin_before_.assign(ops_.size(), kNoOp);
    for (uint32_t i = 0; i < ops_.size(); i++) {
      const KvOperation& op = *ops_[i];
      if (!is_pending(op)) continue;
      const std::string_view value = op.kind == KvOpKind::kIncr ? "" : std::string_view(op.value);
      std::optional<std::string_view> expected;
      if (op.kind == KvOpKind::kCas && op.expected) expected = *op.expected;
      auto [it, inserted] = last_twin.try_emplace({op.kind, value, expected}, i);
      if (!inserted) {
        twin_before_[i] = it->second;
        it->second = i;
      }
    }
  }

  // Whether `op` is completed, legal in `state`, and changes nothing wherever
  // it is legal (a get, a cas that did not swap, an incr that failed). If
  // such an op may go next and some linearization from here exists, one puts
  // it first: moving it to the front keeps every later state as it was, and
  // no op left may have to precede it. Pending ops are left out: they are
  // never needed where they change nothing.
  bool is_legal_read(const KvOperation& op, uint32_t state) const {
    if (is_pending(op)) return false;
    const KvState& current = states_.get(state);
    switch (op.kind) {
      case KvOpKind::kGet:
        return op.output == current;
      case KvOpKind::kCas:
        return !op.ok && current != op.expected;
      case KvOpKind::kIncr:
        return !op.output && !kv_apply(current, op).changes_state;
      // A put of the current value also changes nothing here, but not
      // wherever else it may go, so it cannot be moved first.
      case KvOpKind::kPut:
      case KvOpKind::kAppend:
        return false;
    }
    MAROON_UNREACHABLE();
  }

  // Tries to enter the configuration of linearizing the op of `call` now,
  // leading to `next_state`. If the memo does not rule it out, the op is
  // linearized (bitsets, bounds, undo frame) and this returns true; else
  // nothing changes.
  bool try_linearize(int32_t call, uint32_t next_state, uint32_t state, int32_t frontier,
                     Phase phase) {
    MAROON_ASSERT(call > 0 && nodes_[call].is_call);
    const uint32_t op = nodes_[call].op;
    const uint32_t slot = slots_[op];
    const bool pending = is_pending(*ops_[op]);
    std::vector<uint64_t>& bits = pending ? pending_bits_ : completed_bits_;
    MAROON_ASSERT(!test_bit(bits, slot));
    set_bit(bits, slot);
    uint32_t first = first_unlinearized_, end = end_linearized_;
    if (!pending) {
      if (slot == first) first = next_clear(slot + 1);
      end = std::max(end, slot + 1);
    }
    std::span<const uint64_t> window;
    if (end > first) {
      const size_t lo = first / 64, hi = (end - 1) / 64;
      window = std::span<const uint64_t>(completed_bits_).subspan(lo, hi - lo + 1);
    }
    const std::optional<uint32_t> config =
        visited_.visit(next_state, first, window, pending_bits_, pending, steps_);
    if (!config) {
      clear_bit(bits, slot);
      return false;
    }
    frames_.push_back(
        Frame{call, state, first_unlinearized_, end_linearized_, *config, frontier, phase});
    first_unlinearized_ = first;
    end_linearized_ = end;
    if (!pending) completed_linearized_++;
    return true;
  }

  // Undoes choices back to the latest that was not the only one tried, marks
  // each configuration undone as finished, and leaves `entry` and `phase` at
  // the next choice to try. False if there is none left: no linearization
  // exists.
  bool backtrack(uint32_t& state, int32_t& entry, int32_t& frontier, Phase& phase) {
    for (;;) {
      if (frames_.empty()) return false;
      const Frame frame = frames_.back();
      frames_.pop_back();
      low_water_ = std::min(low_water_, frames_.size());
      visited_.finish(frame.config);
      const uint32_t op = nodes_[frame.entry].op;
      const bool pending = is_pending(*ops_[op]);
      clear_bit(pending ? pending_bits_ : completed_bits_, slots_[op]);
      first_unlinearized_ = frame.first_unlinearized;
      end_linearized_ = frame.end_linearized;
      if (!pending) completed_linearized_--;
      state = frame.state;
      unlift(frame.entry);
      if (frame.phase != Phase::kReads) {
        entry = nodes_[frame.entry].next;
        frontier = frame.frontier;
        phase = frame.phase;
        return true;
      }
    }
  }

  // The search is at `entry`, the first return left in the list, and every
  // op that may go next has been tried. Keeps a copy of the linearized ops if
  // this gets further into the history than any earlier such point (a later
  // return; at the same return, more completed ops linearized, then fewer
  // pending ones, which make a shorter story): that is where an explanation
  // starts, as the search explained the history up to that return and no
  // further.
  void note_stuck(int32_t entry, uint32_t state) {
    MAROON_ASSERT(entry > 0 && !nodes_[entry].is_call);
    const size_t pending_linearized = frames_.size() - completed_linearized_;
    if (entry < stuck_entry_) return;
    if (entry == stuck_entry_ && std::make_pair(completed_linearized_, stuck_pending_) <=
                                     std::make_pair(stuck_completed_, pending_linearized)) {
      return;
    }
    // Frames below low_water_ have not changed since the last copy.
    MAROON_ASSERT(low_water_ <= stuck_ops_.size() && low_water_ <= frames_.size());
    stuck_ops_.resize(low_water_);
    for (size_t i = low_water_; i < frames_.size(); i++) {
      stuck_ops_.push_back(nodes_[frames_[i].entry].op);
    }
    stuck_state_ = state;
    stuck_entry_ = entry;
    stuck_completed_ = completed_linearized_;
    stuck_pending_ = pending_linearized;
    low_water_ = frames_.size();
  }

  // The first completed op at or after slot `from` not linearized, or the
  // number of completed ops.
  uint32_t next_clear(uint32_t from) const {
    size_t w = from / 64;
    if (w >= completed_bits_.size()) return static_cast<uint32_t>(completed_);
    uint64_t word = completed_bits_[w] | ((uint64_t{1} << (from % 64)) - 1);
    while (word == ~uint64_t{0}) {
      if (++w == completed_bits_.size()) return static_cast<uint32_t>(completed_);
      word = completed_bits_[w];
    }
    const size_t bit = w * 64 + static_cast<size_t>(std::countr_one(word));
    return static_cast<uint32_t>(std::min(bit, completed_));
  }

  // Takes a call and its return out of their list (dancing links: the nodes
  // keep their own pointers, so unlift puts them back in LIFO order).
  void lift(int32_t call) {
    MAROON_ASSERT(nodes_[call].is_call && nodes_[call].match != kNone);
    unlink(call);
    if (!is_pending(*ops_[nodes_[call].op])) unlink(nodes_[call].match);
  }
  void unlift(int32_t call) {
    if (!is_pending(*ops_[nodes_[call].op])) relink(nodes_[call].match);
    relink(call);
  }
  void unlink(int32_t n) {
    const Node& node = nodes_[n];
    nodes_[node.prev].next = node.next;
    if (node.next != kNone) nodes_[node.next].prev = node.prev;
  }
  void relink(int32_t n) {
    const Node& node = nodes_[n];
    nodes_[node.prev].next = n;
    if (node.next != kNone) nodes_[node.next].prev = n;
  }

  std::string describe(uint32_t op) const {
    return fmt::format("op #{}: {}", indices_[op], describe_op(*ops_[op]));
  }

  // Why `op` cannot go next in `state`, for explanations.
  static std::string why(const KvOperation& op, const KvState& state, Verdict verdict) {
    const KvOutcome outcome = kv_apply(state, op);
    if (kv_outputs_match(op, outcome)) {
      return verdict == Verdict::kUnknown
                 ? "allowed here; not fully explored when the search gave up"
                 : "allowed here, but no order after it works";
    }
    switch (op.kind) {
      case KvOpKind::kGet:
      case KvOpKind::kIncr:
        return outcome.output
                   ? fmt::format("here it would return {}", describe_value(outcome.output))
                   : "here it would fail";
      case KvOpKind::kCas:
        return outcome.ok ? "here it would swap" : "here it would not swap";
      case KvOpKind::kPut:
      case KvOpKind::kAppend:
        break;
    }
    MAROON_UNREACHABLE();  // put and append match any state
  }

  const CheckOptions options_;
  std::vector<const KvOperation*> ops_;  // in call order
  std::vector<size_t> indices_;          // ops_[i] is history[indices_[i]]
  // ops_[i] is completed op number slots_[i] or pending op number slots_[i],
  // each numbered in call order.
  std::vector<uint32_t> slots_;
  std::vector<uint32_t>
      twin_before_;          // per pending op: the last identical one called before, or kNoOp
  std::vector<Node> nodes_;  // kHead, then the events in order, then pending_head_
  int32_t pending_head_ = kNone;
  size_t completed_ = 0;  // ops that are not pending

  std::vector<uint64_t> completed_bits_;  // the linearized completed ops, by slot
  std::vector<uint64_t> pending_bits_;    // the linearized pending ops, by slot
  uint32_t first_unlinearized_ = 0;       // the first completed slot not linearized
  uint32_t end_linearized_ = 0;           // 1 + the last completed slot linearized, 0 if none
  size_t completed_linearized_ = 0;
  std::vector<Frame> frames_;  // the undo stack, one frame per linearized op
  StateTable states_;
  VisitedSet visited_;
  uint64_t steps_ = 0;
  std::string gave_up_;

  // The furthest point where the search was stuck (see note_stuck).
  int32_t stuck_entry_ = 0;
  std::vector<uint32_t> stuck_ops_;  // linearized there, in order
  uint32_t stuck_state_ = 0;
  size_t stuck_completed_ = 0;  // completed ops in stuck_ops_
  size_t stuck_pending_ = 0;    // pending ops in stuck_ops_
  size_t low_water_ = 0;        // the lowest frames_.size() since stuck_ops_ was copied
};

}  // namespace

CheckResult check_kv_history(const std::vector<KvOperation>& history, const CheckOptions& options) {
  const Status valid = validate_history(history);
  MAROON_ASSERT_MSG(valid.is_ok(), valid.message().c_str());

  // A pending get changes nothing and may return anything, so it can always
  // go last: dropping it changes no verdict and saves the search from placing
  // it everywhere.
  std::map<std::string_view, std::vector<size_t>> by_key;
  for (size_t i = 0; i < history.size(); i++) {
    const KvOperation& op = history[i];
    if (op.kind == KvOpKind::kGet && is_pending(op)) continue;
    by_key[op.key].push_back(i);
  }

  CheckResult result;
  std::optional<CheckResult> unknown;
  for (const auto& [key, indices] : by_key) {
    if (indices.size() > check_ops_per_key_max) {
      if (!unknown) {
        unknown = CheckResult{
            Verdict::kUnknown, std::string(key),
            fmt::format("key {}: unknown: it has {} ops; check_ops_per_key_max is {}\n",
                        describe_value(std::string(key)), indices.size(), check_ops_per_key_max),
            0};
      }
      continue;
    }
    KeySearch search(history, indices, options);
    const Verdict verdict = search.run();
    result.steps += search.steps();
    if (verdict == Verdict::kLinearizable) continue;
    if (verdict == Verdict::kNotLinearizable) {
      result.verdict = verdict;
      result.key = std::string(key);
      result.explanation = search.explain(key, verdict);
      return result;
    }
    if (!unknown) {
      unknown = CheckResult{verdict, std::string(key), search.explain(key, verdict), 0};
    }
  }
  if (unknown) {
    unknown->steps = result.steps;
    return *unknown;
  }
  return result;
}

}  // namespace maroon::check
