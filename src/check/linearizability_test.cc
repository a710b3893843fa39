#include "check/linearizability.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <map>

#include "maroon/prng.h"

namespace maroon::check {
namespace {

using Value = std::optional<std::string>;

KvOperation get(uint64_t client, int64_t call, int64_t ret, std::string key, Value output) {
  return KvOperation{.client = client,
                     .call = call,
                     .ret = ret,
                     .kind = KvOpKind::kGet,
                     .key = std::move(key),
                     .output = std::move(output)};
}
KvOperation put(uint64_t client, int64_t call, int64_t ret, std::string key, std::string value) {
  return KvOperation{.client = client,
                     .call = call,
                     .ret = ret,
                     .kind = KvOpKind::kPut,
                     .key = std::move(key),
                     .value = std::move(value)};
}
KvOperation append(uint64_t client, int64_t call, int64_t ret, std::string key, std::string value) {
  return KvOperation{.client = client,
                     .call = call,
                     .ret = ret,
                     .kind = KvOpKind::kAppend,
                     .key = std::move(key),
                     .value = std::move(value)};
}
KvOperation cas(uint64_t client, int64_t call, int64_t ret, std::string key, Value expected,
                std::string value, bool ok) {
  return KvOperation{.client = client,
                     .call = call,
                     .ret = ret,
                     .kind = KvOpKind::kCas,
                     .key = std::move(key),
                     .value = std::move(value),
                     .expected = std::move(expected),
                     .ok = ok};
}
KvOperation incr(uint64_t client, int64_t call, int64_t ret, std::string key, Value output) {
  return KvOperation{.client = client,
                     .call = call,
                     .ret = ret,
                     .kind = KvOpKind::kIncr,
                     .key = std::move(key),
                     .output = std::move(output)};
}

Verdict verdict_of(const std::vector<KvOperation>& history) {
  return check_kv_history(history).verdict;
}

// Asserts the history is rejected, names `key`, and returns the explanation.
std::string expect_rejected(const std::vector<KvOperation>& history, const std::string& key) {
  const CheckResult r = check_kv_history(history);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable) << r.explanation;
  EXPECT_EQ(r.key, key);
  EXPECT_NE(r.explanation.find("key \"" + key + "\""), std::string::npos) << r.explanation;
  return r.explanation;
}

// --- The model ---------------------------------------------------------------

TEST(KvModel, IncrCountsFromAbsentAndFailsOnNonIntegers) {
  const KvOperation op = incr(1, 0, 1, "k", "1");
  KvOutcome o = kv_apply(std::nullopt, op);
  EXPECT_TRUE(o.changes_state);
  EXPECT_EQ(o.next, "1");
  EXPECT_EQ(o.output, "1");
  EXPECT_EQ(kv_apply(std::string("-5"), op).output, "-4");
  for (const char* bad : {"abc", "", "007", "+1", "-0", " 1", "9223372036854775807"}) {
    o = kv_apply(std::string(bad), op);
    EXPECT_FALSE(o.changes_state) << bad;
    EXPECT_EQ(o.output, std::nullopt) << bad;
  }
}

TEST(KvModel, CasComparesAbsenceAndValues) {
  EXPECT_TRUE(kv_apply(std::nullopt, cas(1, 0, 1, "k", std::nullopt, "n", true)).ok);
  EXPECT_FALSE(kv_apply(std::string(""), cas(1, 0, 1, "k", std::nullopt, "n", true)).ok);
  EXPECT_FALSE(kv_apply(std::nullopt, cas(1, 0, 1, "k", "", "n", true)).ok);
  const KvOutcome o = kv_apply(std::string("o"), cas(1, 0, 1, "k", "o", "n", true));
  EXPECT_TRUE(o.ok && o.changes_state);
  EXPECT_EQ(o.next, "n");
}

TEST(KvModel, AppendToAbsentStartsFromEmpty) {
  EXPECT_EQ(kv_apply(std::nullopt, append(1, 0, 1, "k", "x")).next, "x");
  EXPECT_EQ(kv_apply(std::string("a"), append(1, 0, 1, "k", "x")).next, "ax");
}

TEST(KvModel, PendingOpsMatchAnyOutcome) {
  KvOperation g = get(1, 0, kPending, "k", "garbage");
  EXPECT_TRUE(kv_outputs_match(g, kv_apply(std::string("x"), g)));
  g.ret = 5;
  EXPECT_FALSE(kv_outputs_match(g, kv_apply(std::string("x"), g)));
}

// --- Input validation ----------------------------------------------------------

TEST(ValidateHistory, RejectsReturnBeforeCallAndPendingCall) {
  EXPECT_TRUE(validate_history({put(1, 0, 0, "k", "v"), get(2, 3, kPending, "k", {})}).is_ok());
  EXPECT_EQ(validate_history({put(1, 5, 4, "k", "v")}).code(), Code::kInvalidArgument);
  EXPECT_EQ(validate_history({put(1, kPending, kPending, "k", "v")}).code(),
            Code::kInvalidArgument);
}

TEST(CheckKvHistoryDeathTest, MalformedHistoryIsAProgrammerError) {
  EXPECT_DEATH((void)check_kv_history({put(1, 5, 4, "k", "v")}), "returns at 4 before its call");
}

// --- Linearizable histories ----------------------------------------------------

TEST(Linearizable, EmptyHistory) {
  const CheckResult r = check_kv_history({});
  EXPECT_EQ(r.verdict, Verdict::kLinearizable);
  EXPECT_EQ(r.steps, 0u);
}

TEST(Linearizable, SequentialPutsAndGets) {
  EXPECT_EQ(
      verdict_of({get(1, 0, 10, "k", std::nullopt), put(1, 20, 30, "k", "a"),
                  get(2, 40, 50, "k", "a"), put(2, 60, 70, "k", "b"), get(1, 80, 90, "k", "b")}),
      Verdict::kLinearizable);
}

TEST(Linearizable, GetConcurrentWithPutSeesEitherValue) {
  for (const Value& seen : {Value("old"), Value("new")}) {
    EXPECT_EQ(verdict_of({put(1, 0, 10, "k", "old"), put(1, 20, 60, "k", "new"),
                          get(2, 30, 40, "k", seen)}),
              Verdict::kLinearizable)
        << *seen;
  }
}

TEST(Linearizable, ConcurrentPutsEitherMayWinButReadsAgree) {
  // The search has to back up: trying put a, put b first leaves "b".
  EXPECT_EQ(verdict_of({put(1, 0, 100, "k", "a"), put(2, 0, 100, "k", "b"),
                        get(3, 110, 120, "k", "a"), get(4, 130, 140, "k", "a")}),
            Verdict::kLinearizable);
}

TEST(Linearizable, OverlappingAppendsInEitherOrder) {
  for (const char* seen : {"ab", "ba"}) {
    EXPECT_EQ(verdict_of({append(1, 0, 30, "k", "a"), append(2, 10, 40, "k", "b"),
                          get(3, 50, 60, "k", seen)}),
              Verdict::kLinearizable)
        << seen;
  }
}

TEST(Linearizable, CasRaceOneWinnerReadByAll) {
  EXPECT_EQ(verdict_of({cas(1, 0, 50, "k", std::nullopt, "x", false),
                        cas(2, 10, 40, "k", std::nullopt, "y", true), get(3, 60, 70, "k", "y"),
                        cas(1, 80, 90, "k", "y", "z", true), get(2, 100, 110, "k", "z")}),
            Verdict::kLinearizable);
}

TEST(Linearizable, ConcurrentIncrsInEitherOrder) {
  EXPECT_EQ(verdict_of({incr(1, 0, 50, "n", "2"), incr(2, 10, 40, "n", "1"),
                        get(3, 60, 70, "n", "2"), incr(3, 80, 90, "n", "3")}),
            Verdict::kLinearizable);
}

TEST(Linearizable, IncrOnNonIntegerFailsWithoutEffect) {
  EXPECT_EQ(verdict_of({put(1, 0, 10, "n", "x"), incr(1, 20, 30, "n", std::nullopt),
                        get(1, 40, 50, "n", "x")}),
            Verdict::kLinearizable);
}

TEST(Linearizable, PendingOpThatTookEffectLate) {
  // The pending put is called at 10 and never answered; reads at 20..30 miss
  // it, a read at 40..50 sees it. Its recorded output is ignored.
  KvOperation pending = put(1, 10, kPending, "k", "x");
  pending.output = "garbage";
  EXPECT_EQ(verdict_of({pending, get(2, 20, 30, "k", std::nullopt), get(2, 40, 50, "k", "x")}),
            Verdict::kLinearizable);
}

TEST(Linearizable, PendingOpThatNeverTookEffect) {
  EXPECT_EQ(verdict_of({put(1, 0, 5, "k", "a"), cas(1, 10, kPending, "k", "a", "b", false),
                        incr(2, 10, kPending, "k", "999"), get(2, 20, 30, "k", "a"),
                        get(3, 40, 50, "k", "a")}),
            Verdict::kLinearizable);
}

TEST(Linearizable, PendingIncrCountsOnlyIfItTookEffect) {
  for (const char* seen : {"1", "2"}) {
    EXPECT_EQ(verdict_of({incr(1, 0, kPending, "n", std::nullopt), incr(2, 10, 20, "n", seen)}),
              Verdict::kLinearizable)
        << seen;
  }
}

TEST(Linearizable, ZeroLengthOpOverlapsOpsCalledAtTheSameInstant) {
  // A put with call == ret at 10 and a get called at 10: concurrent, so the
  // get may go first.
  EXPECT_EQ(verdict_of({put(1, 10, 10, "k", "a"), get(2, 10, 20, "k", std::nullopt)}),
            Verdict::kLinearizable);
}

TEST(Linearizable, KeysAreCheckedIndependently) {
  EXPECT_EQ(verdict_of({put(1, 0, 10, "a", "1"), put(2, 0, 10, "b", "2"), get(1, 20, 30, "a", "1"),
                        get(2, 20, 30, "b", "2")}),
            Verdict::kLinearizable);
}

// --- Histories that are not linearizable ----------------------------------------

TEST(NotLinearizable, StaleReadAfterCompletedWrite) {
  const std::string why = expect_rejected(
      {put(1, 0, 10, "x", "old"), put(1, 20, 30, "x", "new"), get(2, 40, 50, "x", "old")}, "x");
  // The explanation shows the order reached and why the read cannot go next.
  EXPECT_NE(why.find("op #2"), std::string::npos) << why;
  EXPECT_NE(why.find("[call 40, ret 50]"), std::string::npos) << why;
  EXPECT_NE(why.find("here it would return \"new\""), std::string::npos) << why;
}

TEST(NotLinearizable, ReturnAtTheInstantOfACallIsNotConcurrentWithIt) {
  expect_rejected({put(1, 0, 10, "x", "a"), get(2, 10, 20, "x", std::nullopt)}, "x");
}

TEST(NotLinearizable, ReadOfAValueNeverWritten) {
  expect_rejected({put(1, 0, 10, "x", "a"), get(2, 0, 20, "x", "zzz")}, "x");
}

TEST(NotLinearizable, TwoSequentialIncrsBothReturnOne) {
  expect_rejected({incr(1, 0, 10, "n", "1"), incr(2, 20, 30, "n", "1")}, "n");
}

TEST(NotLinearizable, CasSucceedsTwiceFromTheSameExpectedValue) {
  // Concurrent, so only the model rules it out: after the first swap the key
  // holds "b" or "c", never "a" again.
  expect_rejected({put(1, 0, 10, "k", "a"), cas(1, 20, 50, "k", "a", "b", true),
                   cas(2, 20, 50, "k", "a", "c", true)},
                  "k");
}

TEST(NotLinearizable, LostAppend) {
  expect_rejected(
      {append(1, 0, 10, "l", "a"), append(2, 20, 30, "l", "b"), get(3, 40, 50, "l", "b")}, "l");
}

TEST(NotLinearizable, PendingWriteCannotBeUndone) {
  expect_rejected(
      {put(1, 0, kPending, "k", "x"), get(2, 10, 20, "k", "x"), get(3, 30, 40, "k", std::nullopt)},
      "k");
}

TEST(NotLinearizable, PendingWriteCannotTakeEffectBeforeItsCall) {
  expect_rejected({get(2, 0, 50, "k", "x"), put(1, 100, kPending, "k", "x")}, "k");
}

TEST(NotLinearizable, StaleReadDespiteManyCrashedWriters) {
  // Forty writers crash mid-put; which of them took effect, and when, could
  // multiply the search by 2^40. Once the completed put of "z" is in, which
  // crashed puts went before it no longer matters, and the memo knows it.
  std::vector<KvOperation> h = {put(1, 0, 10, "k", "a")};
  for (int i = 0; i < 40; i++) {
    h.push_back(put(100 + i, 20 + i, kPending, "k", "p" + std::to_string(i)));
  }
  h.push_back(put(2, 1000, 1010, "k", "z"));
  h.push_back(get(3, 2000, 2010, "k", "a"));
  const CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_LT(r.steps, 100'000u);
}

TEST(NotLinearizable, CounterGoesDownDespiteManyCrashedIncrs) {
  // Forty identical crashed incrs: how many took effect matters, which ones
  // does not, so the search tries them in one order only.
  std::vector<KvOperation> h = {incr(1, 0, 10, "n", "1")};
  for (int i = 0; i < 40; i++) h.push_back(incr(100 + i, 20 + i, kPending, "n", std::nullopt));
  h.push_back(get(2, 1000, 1010, "n", "7"));
  EXPECT_EQ(verdict_of(h), Verdict::kLinearizable);
  h.push_back(get(3, 1100, 1110, "n", "0"));
  const CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_LT(r.steps, 100'000u);
}

TEST(NotLinearizable, NamesTheFirstFailingKeyInByteOrder) {
  expect_rejected({put(1, 0, 10, "a", "1"), get(1, 20, 30, "a", "1"), put(2, 0, 10, "b", "1"),
                   get(2, 20, 30, "b", "2"), get(3, 20, 30, "c", "9")},
                  "b");
}

// --- Budgets -------------------------------------------------------------------

TEST(Budgets, StepBudgetGivesUnknown) {
  const std::vector<KvOperation> h = {put(1, 0, 10, "k", "a"), put(1, 20, 30, "k", "b"),
                                      get(1, 40, 50, "k", "b")};
  const uint64_t needed = check_kv_history(h).steps;
  ASSERT_GT(needed, 1u);
  const CheckResult r = check_kv_history(h, CheckOptions{.steps_max = needed - 1});
  EXPECT_EQ(r.verdict, Verdict::kUnknown);
  EXPECT_EQ(r.key, "k");
  EXPECT_EQ(r.steps, needed - 1);
  EXPECT_NE(r.explanation.find("steps_max"), std::string::npos) << r.explanation;
  EXPECT_EQ(check_kv_history(h, CheckOptions{.steps_max = needed}).verdict, Verdict::kLinearizable);
}

TEST(Budgets, MemoBudgetGivesUnknown) {
  const std::vector<KvOperation> h = {put(1, 0, 10, "k", "a"), put(1, 20, 30, "k", "b"),
                                      get(1, 40, 50, "k", "b")};
  const CheckResult r = check_kv_history(h, CheckOptions{.memo_bytes_max = 1});
  EXPECT_EQ(r.verdict, Verdict::kUnknown);
  EXPECT_NE(r.explanation.find("memo_bytes_max"), std::string::npos) << r.explanation;
}

TEST(Budgets, AFailureOnAnotherKeyOutranksUnknown) {
  std::vector<KvOperation> h;
  for (int i = 0; i < 10; i++) h.push_back(put(1, 10 * i, 10 * i + 5, "a", "v"));
  h.push_back(get(2, 0, 1, "b", "never"));
  const CheckResult r = check_kv_history(h, CheckOptions{.steps_max = 5});
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(r.key, "b");
}

TEST(Budgets, TooManyOpsOnOneKeyGivesUnknown) {
  std::vector<KvOperation> h;
  for (size_t i = 0; i <= check_ops_per_key_max; i++) {
    h.push_back(put(1, int64_t(2 * i), int64_t(2 * i + 1), "big", "v"));
  }
  const CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, Verdict::kUnknown);
  EXPECT_EQ(r.key, "big");
}

// --- Random histories ------------------------------------------------------------

// A random sequential execution, spread over time: op i takes effect at time
// 100 * (i + 1), and each op's [call, ret] contains that point while a
// client's ops never overlap, so the execution is a linearization of the
// history. Some ops are pending (their client then "crashes" and a fresh
// client id takes its slot); some pending ops never took effect at all.
struct RandomHistory {
  std::vector<KvOperation> ops;
  std::vector<size_t> completed_gets;  // indices into ops
};

// Written values never contain '#', so "#..." is never a state.
constexpr const char* kNeverWritten = "#never-written";

RandomHistory random_history(Prng& prng, int slots, int keys, int count, double pending_chance) {
  static const char* const kValues[] = {"a", "b", "1", "2", "41"};
  struct Planned {
    KvOperation op;
    int slot;
  };
  std::vector<Planned> plan;
  std::map<std::string, KvState> state;
  for (int i = 0; i < count; i++) {
    KvOperation op;
    op.key = "k" + std::to_string(prng.below(uint64_t(keys)));
    op.kind = static_cast<KvOpKind>(prng.below(5));
    op.value = kValues[prng.below(std::size(kValues))];
    if (op.kind == KvOpKind::kAppend) op.value = prng.chance(0.5) ? "x" : "y";
    if (op.kind == KvOpKind::kCas) {
      // Half the time the current value, so swaps happen.
      op.expected = prng.chance(0.5)   ? state[op.key]
                    : prng.chance(0.3) ? std::nullopt
                                       : KvState(kValues[prng.below(std::size(kValues))]);
    }
    const KvOutcome outcome = kv_apply(state[op.key], op);
    op.output = outcome.output;
    op.ok = outcome.ok;
    if (outcome.changes_state) state[op.key] = outcome.next;
    plan.push_back(Planned{std::move(op), static_cast<int>(prng.below(uint64_t(slots)))});
  }

  RandomHistory h;
  std::vector<int64_t> slot_free(slots, 0);  // when the slot's client may call next
  std::vector<uint64_t> slot_client(slots);
  uint64_t next_client = 1;
  for (auto& c : slot_client) c = next_client++;
  for (int i = 0; i < count; i++) {
    const int64_t point = 100 * int64_t(i + 1);
    int64_t next_point = point + 500;  // the slot's next op's point, or a bit later
    for (int j = i + 1; j < count; j++) {
      if (plan[j].slot == plan[i].slot) {
        next_point = 100 * int64_t(j + 1);
        break;
      }
    }
    KvOperation op = std::move(plan[i].op);
    const int slot = plan[i].slot;
    op.client = slot_client[slot];
    op.call = slot_free[slot] + int64_t(prng.below(uint64_t(point - slot_free[slot] + 1)));
    if (prng.chance(pending_chance)) {
      op.ret = kPending;
      op.output = std::string("garbage");  // ignored for pending ops
      op.ok = !op.ok;
      slot_client[slot] = next_client++;
      slot_free[slot] = point;
    } else {
      op.ret = point + int64_t(prng.below(uint64_t(next_point - point + 1)));
      slot_free[slot] = op.ret;
      if (op.kind == KvOpKind::kGet) h.completed_gets.push_back(h.ops.size());
    }
    h.ops.push_back(std::move(op));
  }
  // Pending ops that never took effect, with nonsense outputs.
  const int ghosts = pending_chance > 0 ? int(prng.below(3)) : 0;
  for (int g = 0; g < ghosts; g++) {
    KvOperation op;
    op.client = next_client++;
    op.key = "k" + std::to_string(prng.below(uint64_t(keys)));
    op.kind = static_cast<KvOpKind>(prng.below(5));
    op.value = "ghost";
    op.expected = std::nullopt;
    op.call = int64_t(prng.below(uint64_t(100 * count + 1)));
    op.ret = kPending;
    op.output = std::string("ghost");
    h.ops.push_back(std::move(op));
  }
  return h;
}

TEST(RandomHistories, LinearizableUntilOneReadIsChangedToAValueNeverWritten) {
  EXPECT_TRUE(rc::check("random sequential executions spread over time", [] {
    Prng prng(*rc::gen::arbitrary<uint64_t>());
    const int slots = *rc::gen::inRange(1, 6);
    const int keys = *rc::gen::inRange(1, 4);
    const int count = *rc::gen::inRange(1, 60);
    const double pending_chance = *rc::gen::element(0.0, 0.05, 0.2);
    RandomHistory h = random_history(prng, slots, keys, count, pending_chance);

    const CheckResult ok = check_kv_history(h.ops);
    RC_LOG() << ok.explanation;
    RC_ASSERT(ok.verdict == Verdict::kLinearizable);

    if (h.completed_gets.empty()) return;
    const size_t victim = h.completed_gets[prng.below(h.completed_gets.size())];
    h.ops[victim].output = kNeverWritten;
    const CheckResult bad = check_kv_history(h.ops);
    RC_ASSERT(bad.verdict == Verdict::kNotLinearizable);
    RC_ASSERT(bad.key == h.ops[victim].key);
    RC_ASSERT(bad.explanation.find(kNeverWritten) != std::string::npos);
  }));
}

TEST(RandomHistories, TwoThousandOpsFiveClientsTenKeysNeedFewSteps) {
  Prng prng(20240601);
  RandomHistory h = random_history(prng, 5, 10, 2000, 0.005);
  const CheckResult r = check_kv_history(h.ops);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable) << r.explanation;
  // The default budget is 10M steps per key; a history like this needs a
  // few steps per op.
  EXPECT_LT(r.steps, 100'000u);

  ASSERT_FALSE(h.completed_gets.empty());
  h.ops[h.completed_gets[h.completed_gets.size() / 2]].output = kNeverWritten;
  const CheckResult bad = check_kv_history(h.ops);
  EXPECT_EQ(bad.verdict, Verdict::kNotLinearizable);
  EXPECT_LT(bad.steps, 1'000'000u);
}

// --- Agreement with brute force ---------------------------------------------------

// Whether a precedes b in real time, by the checker's rule: a return at t
// comes before a call at t, except the return of an op with call == ret.
bool precedes(const KvOperation& a, const KvOperation& b) {
  if (a.ret == kPending) return false;
  return a.ret < b.call || (a.ret == b.call && a.call < a.ret);
}

// Tries every order of the ops that respects real time, over all keys at
// once (so it also checks that splitting by key loses nothing). Pending ops
// may be placed anywhere or left out.
bool brute_force_linearizable(const std::vector<KvOperation>& ops,
                              std::map<std::string, KvState>& state, std::vector<bool>& done) {
  bool finished = true;
  for (size_t i = 0; i < ops.size(); i++) finished &= done[i] || ops[i].ret == kPending;
  if (finished) return true;
  for (size_t i = 0; i < ops.size(); i++) {
    if (done[i]) continue;
    bool minimal = true;
    for (size_t j = 0; j < ops.size(); j++) minimal &= done[j] || !precedes(ops[j], ops[i]);
    if (!minimal) continue;
    KvOutcome outcome = kv_apply(state[ops[i].key], ops[i]);
    if (!kv_outputs_match(ops[i], outcome)) continue;
    const KvState before = state[ops[i].key];
    if (outcome.changes_state) state[ops[i].key] = std::move(outcome.next);
    done[i] = true;
    if (brute_force_linearizable(ops, state, done)) return true;
    done[i] = false;
    state[ops[i].key] = before;
  }
  return false;
}

// Small histories with many equal times and zero-length ops. Outputs come
// from running the ops in a random order (often, but not always, a legal
// linearization), and some are then changed.
std::vector<KvOperation> small_random_history(Prng& prng) {
  static const char* const kValues[] = {"1", "2", "x"};
  const size_t count = 1 + prng.below(8);
  const double pending_chance = prng.chance(0.5) ? 0.1 : 0.4;
  std::vector<KvOperation> ops(count);
  for (size_t i = 0; i < count; i++) {
    KvOperation& op = ops[i];
    op.client = i;
    op.key = prng.chance(0.8) ? "a" : "b";
    op.kind = static_cast<KvOpKind>(prng.below(5));
    op.value = kValues[prng.below(3)];
    if (op.kind == KvOpKind::kCas && prng.chance(0.7)) op.expected = kValues[prng.below(3)];
    op.call = int64_t(prng.below(8));
    op.ret = prng.chance(pending_chance) ? kPending : op.call + int64_t(prng.below(4));
  }
  std::vector<size_t> order(count);
  for (size_t i = 0; i < count; i++) order[i] = i;
  for (size_t i = count; i > 1; i--) std::swap(order[i - 1], order[prng.below(i)]);
  std::map<std::string, KvState> state;
  for (size_t i : order) {
    const KvOutcome outcome = kv_apply(state[ops[i].key], ops[i]);
    ops[i].output = outcome.output;
    ops[i].ok = outcome.ok;
    if (outcome.changes_state) state[ops[i].key] = outcome.next;
  }
  if (prng.chance(0.3)) {
    KvOperation& op = ops[prng.below(count)];
    op.output = prng.chance(0.3) ? std::nullopt : KvState(kValues[prng.below(3)]);
    op.ok = !op.ok;
  }
  return ops;
}

TEST(BruteForce, SmallRandomHistoriesGetTheSameVerdict) {
  EXPECT_TRUE(rc::check("checker == trying every order", [] {
    Prng prng(*rc::gen::arbitrary<uint64_t>());
    const std::vector<KvOperation> ops = small_random_history(prng);
    std::map<std::string, KvState> state;
    std::vector<bool> done(ops.size(), false);
    const bool expected = brute_force_linearizable(ops, state, done);
    RC_CLASSIFY(expected, "linearizable");
    const CheckResult r = check_kv_history(ops);
    RC_LOG() << r.explanation;
    RC_ASSERT(r.verdict == (expected ? Verdict::kLinearizable : Verdict::kNotLinearizable));
  }));
}

}  // namespace
}  // namespace maroon::check
