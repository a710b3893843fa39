#include "app/kv/kv_app.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "app/kv/kv_test_gen.h"
#include "common/codec.h"
#include "common/hash.h"
#include "common/limits.h"
#include "common/prng.h"

namespace maroon::kv {
namespace {

using limits::op_keys_max;
using limits::reply_bytes_max;
using limits::value_bytes_max;
using testing::KeySpace;
using testing::OwnedOp;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

Op get_op(std::string_view k) { return Op{.type = OpType::kGet, .keys = {k}}; }
Op set_op(std::string_view k, std::string_view v, SetCond cond = SetCond::kAlways) {
  return Op{.type = OpType::kSet, .cond = cond, .keys = {k}, .values = {v}};
}
Op del_op(std::vector<std::string_view> keys) {
  return Op{.type = OpType::kDel, .keys = Views(keys.begin(), keys.end())};
}
Op cas_op(std::string_view k, std::optional<std::string_view> expected, std::string_view v) {
  return Op{.type = OpType::kCas, .keys = {k}, .values = {v}, .expected = expected};
}
Op incr_op(std::string_view k, int64_t delta) {
  return Op{.type = OpType::kIncrBy, .delta = delta, .keys = {k}};
}
Op scan_op(std::string_view prefix, uint32_t limit,
           std::optional<std::string_view> start_after = std::nullopt) {
  Op op{.type = OpType::kScan, .limit = limit, .keys = {prefix}};
  if (start_after) op.keys.push_back(*start_after);
  return op;
}
Op size_op() { return Op{.type = OpType::kSize}; }

Reply values(std::vector<std::optional<std::string>> v) {
  return Reply{.kind = Reply::Kind::kValues, .values = std::move(v)};
}
Reply pairs(std::vector<std::pair<std::string, std::string>> p) {
  return Reply{.kind = Reply::Kind::kPairs, .pairs = std::move(p)};
}

std::string reply_text(const Reply& r) {
  std::string s = "kind " + std::to_string(static_cast<int>(r.kind)) + " int " +
                  std::to_string(r.integer) + " value '" + r.value + "'";
  if (r.kind == Reply::Kind::kError) s += " error " + std::string(code_name(r.error));
  s += " values " + std::to_string(r.values.size()) + " pairs " + std::to_string(r.pairs.size());
  return s;
}

// Runs an op the way a replica does: encoded op in, encoded reply out.
Reply run(KvApp& app, const Op& op) {
  const std::string reply = app.apply(TxContext{}, encode_op(op));
  Result<Reply> decoded = decode_reply(reply);
  MAROON_ASSERT(decoded.is_ok());
  return std::move(decoded).value();
}

void expect_error(const Reply& r, Code code, std::string_view message_part) {
  EXPECT_EQ(r.kind, Reply::Kind::kError) << reply_text(r);
  EXPECT_EQ(r.error, code) << reply_text(r);
  EXPECT_NE(r.value.find(message_part), std::string::npos)
      << "message: " << r.value << "\nexpected to contain: " << message_part;
}

// The documented formula, computed the slow way.
uint64_t entry_hash_by_formula(std::string_view key, std::string_view value) {
  std::string buf;
  ByteWriter(buf).varint(key.size());
  buf.append(key);
  buf.append(value);
  return hash64(buf);
}

TEST(KvApp, GetOfAMissingKeyIsNil) {
  KvApp app;
  EXPECT_EQ(run(app, get_op("k")), Reply::nil());
  EXPECT_EQ(run(app, set_op("k", "v")), Reply::ok());
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("v"));
  EXPECT_EQ(run(app, set_op("k", "w")), Reply::ok());
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("w"));
  EXPECT_EQ(run(app, set_op("", "empty key")), Reply::ok());
  EXPECT_EQ(run(app, get_op("")), Reply::of_value("empty key"));
  EXPECT_EQ(app.size(), 2u);
}

TEST(KvApp, GetFastPathMatchesTheGeneralReply) {
  KvApp app;
  run(app, set_op("k", std::string(1000, 'x')));
  for (std::string_view key : {"k", "missing"}) {
    const std::string fast = app.apply(TxContext{}, encode_op(get_op(key)));
    EXPECT_EQ(fast, encode_reply(app.execute(get_op(key))));
    EXPECT_EQ(app.read(encode_op(get_op(key))), fast);
  }
}

TEST(KvApp, SetIfAbsentFirstWriterWins) {
  KvApp app;
  EXPECT_EQ(run(app, set_op("k", "first", SetCond::kIfAbsent)), Reply::ok());
  EXPECT_EQ(run(app, set_op("k", "second", SetCond::kIfAbsent)), Reply::nil());
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("first"));
}

TEST(KvApp, SetIfPresentOnlyOverwrites) {
  KvApp app;
  EXPECT_EQ(run(app, set_op("k", "v", SetCond::kIfPresent)), Reply::nil());
  EXPECT_EQ(run(app, get_op("k")), Reply::nil());
  EXPECT_EQ(app.state_hash(), 0u);
  run(app, set_op("k", "v"));
  EXPECT_EQ(run(app, set_op("k", "w", SetCond::kIfPresent)), Reply::ok());
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("w"));
}

TEST(KvApp, DelCountsKeysItRemoved) {
  KvApp app;
  run(app, set_op("a", "1"));
  run(app, set_op("b", "2"));
  // "a" twice counts once: the second time it is already gone (as Redis DEL).
  EXPECT_EQ(run(app, del_op({"a", "missing", "a"})), Reply::of_int(1));
  EXPECT_EQ(run(app, get_op("a")), Reply::nil());
  EXPECT_EQ(run(app, get_op("b")), Reply::of_value("2"));
  EXPECT_EQ(run(app, del_op({"a"})), Reply::of_int(0));
  EXPECT_EQ(run(app, del_op({"b"})), Reply::of_int(1));
  EXPECT_EQ(app.size(), 0u);
  EXPECT_EQ(app.state_hash(), 0u);
}

TEST(KvApp, CasSwapsOnlyWhenTheExpectationHolds) {
  KvApp app;
  // nullopt expects the key to be absent.
  EXPECT_EQ(run(app, cas_op("k", std::nullopt, "v1")), Reply::ok());
  EXPECT_EQ(run(app, cas_op("k", "v1", "v2")), Reply::ok());
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("v2"));
  // An empty expected value is a value, not absence.
  EXPECT_EQ(run(app, set_op("e", "")), Reply::ok());
  EXPECT_EQ(run(app, cas_op("e", "", "x")), Reply::ok());
}

TEST(KvApp, CasConflictsChangeNothing) {
  KvApp app;
  run(app, set_op("k", "v"));
  const uint64_t hash = app.state_hash();
  expect_error(run(app, cas_op("k", "other", "x")), Code::kConflict,
               "CAS expected a different value than the key holds");
  expect_error(run(app, cas_op("k", std::nullopt, "x")), Code::kConflict,
               "CAS expected the key to be absent, but it exists");
  expect_error(run(app, cas_op("missing", "v", "x")), Code::kConflict,
               "CAS expected a value, but the key is absent");
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("v"));
  EXPECT_EQ(run(app, get_op("missing")), Reply::nil());
  EXPECT_EQ(app.state_hash(), hash);
  EXPECT_EQ(app.size(), 1u);
}

TEST(KvApp, IncrByTreatsAnAbsentKeyAsZero) {
  KvApp app;
  EXPECT_EQ(run(app, incr_op("n", 5)), Reply::of_int(5));
  EXPECT_EQ(run(app, incr_op("n", -7)), Reply::of_int(-2));
  EXPECT_EQ(run(app, get_op("n")), Reply::of_value("-2"));
  EXPECT_EQ(run(app, incr_op("z", 0)), Reply::of_int(0));
  EXPECT_EQ(run(app, get_op("z")), Reply::of_value("0"));
  run(app, set_op("big", "9223372036854775806"));
  EXPECT_EQ(run(app, incr_op("big", 1)), Reply::of_int(kInt64Max));
  run(app, set_op("small", "-9223372036854775807"));
  EXPECT_EQ(run(app, incr_op("small", -1)), Reply::of_int(kInt64Min));
  EXPECT_EQ(run(app, get_op("small")), Reply::of_value("-9223372036854775808"));
}

TEST(KvApp, IncrByRefusesNonCanonicalIntegers) {
  for (std::string_view bad :
       {"", "abc", "+1", "01", "-01", "00", "-0", " 1", "1 ", "1.0", "1e3", "-", "0x10",
        "9223372036854775808", "-9223372036854775809", "99999999999999999999999"}) {
    SCOPED_TRACE(std::string(bad));
    KvApp app;
    run(app, set_op("n", bad));
    const uint64_t hash = app.state_hash();
    expect_error(run(app, incr_op("n", 1)), Code::kWrongType,
                 "value is not an integer or out of range");
    EXPECT_EQ(run(app, get_op("n")), Reply::of_value(std::string(bad)));
    EXPECT_EQ(app.state_hash(), hash);
  }
}

TEST(KvApp, IncrByOverflowIsAnErrorAndChangesNothing) {
  KvApp app;
  run(app, set_op("max", "9223372036854775807"));
  run(app, set_op("min", "-9223372036854775808"));
  const uint64_t hash = app.state_hash();
  expect_error(run(app, incr_op("max", 1)), Code::kInvalidArgument,
               "increment or decrement would overflow");
  expect_error(run(app, incr_op("min", -1)), Code::kInvalidArgument, "would overflow");
  expect_error(run(app, incr_op("min", kInt64Min)), Code::kInvalidArgument, "would overflow");
  EXPECT_EQ(run(app, get_op("max")), Reply::of_value("9223372036854775807"));
  EXPECT_EQ(app.state_hash(), hash);
  // An absent key starts at 0, so the extremes themselves fit.
  EXPECT_EQ(run(app, incr_op("a", kInt64Min)), Reply::of_int(kInt64Min));
  EXPECT_EQ(run(app, incr_op("b", kInt64Max)), Reply::of_int(kInt64Max));
}

TEST(KvApp, MgetReturnsValuesInKeyOrderOfTheRequest) {
  KvApp app;
  run(app, set_op("a", "1"));
  run(app, set_op("c", "3"));
  EXPECT_EQ(run(app, Op{.type = OpType::kMget, .keys = {"c", "b", "a", "c"}}),
            values({"3", std::nullopt, "1", "3"}));
}

TEST(KvApp, MgetRefusesAReplyOverTheLimit) {
  KvApp app;
  const std::string value(value_bytes_max, 'v');
  const std::vector<std::string> keys = {"0", "1", "2", "3", "4", "5", "6", "7", "8"};
  for (const std::string& k : keys) app.execute(set_op(k, value));
  Op seven{.type = OpType::kMget};
  for (size_t i = 0; i < 7; i++) seven.keys.push_back(keys[i]);
  const std::string ok_reply = app.read(encode_op(seven));
  EXPECT_LE(ok_reply.size(), reply_bytes_max);
  EXPECT_EQ(decode_reply(ok_reply)->values.size(), 7u);

  Op nine{.type = OpType::kMget};
  for (const std::string& k : keys) nine.keys.push_back(k);
  expect_error(run(app, nine), Code::kTooLarge, "the limit is 8388608; ask for fewer keys");
}

TEST(KvApp, MsetWritesAllAndTheLastOfARepeatedKeyWins) {
  KvApp app;
  EXPECT_EQ(run(app, Op{.type = OpType::kMset, .keys = {"a", "b", "a"}, .values = {"1", "2", "3"}}),
            Reply::ok());
  EXPECT_EQ(run(app, get_op("a")), Reply::of_value("3"));
  EXPECT_EQ(run(app, get_op("b")), Reply::of_value("2"));
  EXPECT_EQ(app.size(), 2u);
}

TEST(KvApp, ExistsCountsRepeatedKeysEachTime) {
  KvApp app;
  run(app, set_op("a", "1"));
  EXPECT_EQ(run(app, Op{.type = OpType::kExists, .keys = {"a", "a", "b"}}), Reply::of_int(2));
  EXPECT_EQ(run(app, Op{.type = OpType::kExists, .keys = {"b"}}), Reply::of_int(0));
}

TEST(KvApp, SizeCountsKeys) {
  KvApp app;
  EXPECT_EQ(run(app, size_op()), Reply::of_int(0));
  run(app, set_op("a", "1"));
  run(app, set_op("b", "1"));
  run(app, set_op("a", "2"));
  EXPECT_EQ(run(app, size_op()), Reply::of_int(2));
}

TEST(KvApp, ScanReturnsPrefixedKeysInOrder) {
  KvApp app;
  for (std::string_view k : {"user:3", "user:1", "user:2", "usex", "use", "zzz", "a"})
    run(app, set_op(k, std::string("v-") + std::string(k)));
  EXPECT_EQ(run(app, scan_op("user:", 10)),
            pairs({{"user:1", "v-user:1"}, {"user:2", "v-user:2"}, {"user:3", "v-user:3"}}));
  EXPECT_EQ(run(app, scan_op("user:", 2)), pairs({{"user:1", "v-user:1"}, {"user:2", "v-user:2"}}));
  // start_after continues a page; it need not be a key that exists.
  EXPECT_EQ(run(app, scan_op("user:", 10, "user:1")),
            pairs({{"user:2", "v-user:2"}, {"user:3", "v-user:3"}}));
  EXPECT_EQ(run(app, scan_op("user:", 10, "user:25")), pairs({{"user:3", "v-user:3"}}));
  EXPECT_EQ(run(app, scan_op("user:", 10, "user:3")), pairs({}));
  // A start_after before the prefix range starts at the prefix.
  EXPECT_EQ(run(app, scan_op("user:", 1, "a")), pairs({{"user:1", "v-user:1"}}));
  EXPECT_EQ(run(app, scan_op("nope", 10)), pairs({}));
  // The empty prefix covers every key.
  EXPECT_EQ(run(app, scan_op("", 3)),
            pairs({{"a", "v-a"}, {"use", "v-use"}, {"user:1", "v-user:1"}}));
}

TEST(KvApp, ScanLimitZeroMeansOpKeysMax) {
  KvApp app;
  for (size_t i = 0; i < op_keys_max + 10; i++) {
    char key[16];
    std::snprintf(key, sizeof key, "k%06zu", i);
    app.execute(set_op(key, "v"));
  }
  const Reply all = run(app, scan_op("k", 0));
  ASSERT_EQ(all.pairs.size(), op_keys_max);
  EXPECT_EQ(all.pairs.front().first, "k000000");
  EXPECT_EQ(all.pairs.back().first, "k001023");
  const Reply rest = run(app, scan_op("k", 0, all.pairs.back().first));
  EXPECT_EQ(rest.pairs.size(), 10u);
}

TEST(KvApp, ScanStopsBeforeTheReplyByteLimit) {
  KvApp app;
  const std::string value(value_bytes_max, 'v');
  for (char c = '0'; c <= '9'; c++) app.execute(set_op(std::string(1, c), value));
  // Eight 1 MiB values plus framing exceed 8 MiB, so a page holds seven.
  const std::string first = app.read(encode_op(scan_op("", 0)));
  EXPECT_LE(first.size(), reply_bytes_max);
  Result<Reply> page = decode_reply(first);
  ASSERT_TRUE(page.is_ok());
  ASSERT_EQ(page->pairs.size(), 7u);
  EXPECT_EQ(page->pairs.back().first, "6");
  const Reply second = run(app, scan_op("", 0, "6"));
  ASSERT_EQ(second.pairs.size(), 3u);
  EXPECT_EQ(second.pairs.front().first, "7");
}

TEST(KvApp, ReadServesReadOnlyOpsAndRefusesWrites) {
  KvApp app;
  run(app, set_op("k", "v"));
  const uint64_t hash = app.state_hash();
  EXPECT_EQ(decode_reply(app.read(encode_op(get_op("k")))).value(), Reply::of_value("v"));
  EXPECT_EQ(decode_reply(app.read(encode_op(size_op()))).value(), Reply::of_int(1));
  for (const Op& write : {set_op("k", "w"), del_op({"k"}), cas_op("k", "v", "w"), incr_op("n", 1),
                          Op{.type = OpType::kMset, .keys = {"k"}, .values = {"w"}}}) {
    SCOPED_TRACE(op_name(write.type));
    const Reply reply = decode_reply(app.read(encode_op(write))).value();
    expect_error(reply, Code::kInvalidArgument, "is not a read-only op");
    expect_error(app.execute_read(write), Code::kInvalidArgument, "is not a read-only op");
  }
  EXPECT_EQ(run(app, get_op("k")), Reply::of_value("v"));
  EXPECT_EQ(app.state_hash(), hash);
  EXPECT_EQ(app.execute_read(get_op("k")), Reply::of_value("v"));
  expect_error(decode_reply(app.read("garbage")).value(), Code::kInvalidArgument,
               "unsupported kv op format version");
}

TEST(KvApp, ExecuteRefusesAnInvalidOp) {
  KvApp app;
  expect_error(app.execute(Op{.type = OpType::kGet}), Code::kInvalidArgument,
               "GET takes exactly 1 key, got 0");
  expect_error(app.execute(set_op("k", std::string(value_bytes_max + 1, 'v'))), Code::kTooLarge,
               "value is 1048577 bytes; the limit is 1048576");
  expect_error(app.execute_read(Op{.type = static_cast<OpType>(42)}), Code::kInvalidArgument,
               "unknown kv op type 42");
  EXPECT_EQ(app.size(), 0u);
}

TEST(KvApp, ApplyOnGarbageReturnsAnErrorAndChangesNothing) {
  EXPECT_TRUE(rc::check("garbage op bytes leave state and hash alone", [](const std::string& junk) {
    KvApp app;
    app.execute(set_op("a", "1"));
    app.execute(set_op("b", "2"));
    const uint64_t hash = app.state_hash();
    for (const std::string& bytes :
         {junk, std::string(1, static_cast<char>(kOpFormatVersion)) + junk}) {
      if (decode_op(bytes).is_ok()) continue;  // a valid op by chance
      Result<Reply> reply = decode_reply(app.apply(TxContext{}, bytes));
      RC_ASSERT(reply.is_ok());
      RC_ASSERT(reply->kind == Reply::Kind::kError);
      RC_ASSERT(reply->error == Code::kInvalidArgument || reply->error == Code::kTooLarge);
      RC_ASSERT(!reply->value.empty());
      RC_ASSERT(app.state_hash() == hash);
      RC_ASSERT(app.size() == 2u);
    }
  }));
  KvApp app;
  expect_error(decode_reply(app.apply(TxContext{}, "")).value(), Code::kInvalidArgument,
               "empty kv op");
  EXPECT_EQ(app.state_hash(), 0u);
}

TEST(KvStateHash, MatchesTheDocumentedFormula) {
  for (size_t n : {0, 1, 100, 509, 510, 511, 512, 513, 5000}) {
    const std::string key(n / 3, 'k');
    const std::string value(n - n / 3, 'v');
    EXPECT_EQ(entry_hash(key, value), entry_hash_by_formula(key, value)) << n;
  }
  EXPECT_EQ(entry_hash(std::string(200, 'k'), std::string(200000, 'v')),
            entry_hash_by_formula(std::string(200, 'k'), std::string(200000, 'v')));
  KvApp app;
  app.execute(set_op("a", "1"));
  app.execute(set_op("b", "2"));
  EXPECT_EQ(app.state_hash(), entry_hash_by_formula("a", "1") + entry_hash_by_formula("b", "2"));
}

TEST(KvStateHash, KeyValueBoundaryMatters) {
  KvApp ab_c, a_bc;
  ab_c.execute(set_op("ab", "c"));
  a_bc.execute(set_op("a", "bc"));
  EXPECT_NE(ab_c.state_hash(), a_bc.state_hash());
}

TEST(KvStateHash, DependsOnlyOnTheFinalState) {
  KvApp direct, winding;
  direct.execute(set_op("a", "2"));
  direct.execute(set_op("n", "3"));
  winding.execute(set_op("n", "1"));
  winding.execute(set_op("gone", "x"));
  winding.execute(set_op("a", "1"));
  winding.execute(incr_op("n", 2));
  winding.execute(del_op({"gone"}));
  winding.execute(cas_op("a", "1", "2"));
  EXPECT_EQ(direct.state_hash(), winding.state_hash());
  winding.execute(del_op({"a", "n"}));
  EXPECT_EQ(winding.state_hash(), 0u);
  EXPECT_EQ(winding.state_hash(), KvApp().state_hash());
}

TEST(KvStateHash, SameEntriesInAnyOrderHashTheSame) {
  EXPECT_TRUE(rc::check(
      "insertion order does not matter", [](const std::map<std::string, std::string>& entries) {
        std::vector<std::pair<std::string, std::string>> shuffled(entries.begin(), entries.end());
        Prng prng(*rc::gen::arbitrary<uint64_t>());
        for (size_t i = shuffled.size(); i > 1; i--)
          std::swap(shuffled[i - 1], shuffled[prng.below(i)]);
        KvApp in_order, out_of_order;
        for (const auto& [k, v] : entries) in_order.execute(set_op(k, v));
        for (const auto& [k, v] : shuffled) out_of_order.execute(set_op(k, v));
        RC_ASSERT(in_order.state_hash() == out_of_order.state_hash());
        RC_ASSERT(in_order.size() == entries.size());
      }));
}

TEST(KvStateHash, DifferentStatesHashDifferently) {
  EXPECT_TRUE(rc::check(
      "one changed value or one extra key changes the hash",
      [](const std::map<std::string, std::string>& entries, std::string key, std::string value) {
        KvApp base;
        for (const auto& [k, v] : entries) base.execute(set_op(k, v));
        const uint64_t hash = base.state_hash();
        auto it = entries.find(key);
        if (it != entries.end() && it->second == value) value += "!";
        base.execute(set_op(key, value));
        RC_ASSERT(base.state_hash() != hash);
      }));
}

// The reference: a std::map and the semantics written out plainly.
class Model {
 public:
  Reply apply(const Op& op) {
    switch (op.type) {
      case OpType::kGet: {
        auto it = map_.find(std::string(op.keys[0]));
        return it == map_.end() ? Reply::nil() : Reply::of_value(it->second);
      }
      case OpType::kSet: {
        const std::string key(op.keys[0]);
        const bool present = map_.count(key) > 0;
        if (op.cond == SetCond::kIfAbsent && present) return Reply::nil();
        if (op.cond == SetCond::kIfPresent && !present) return Reply::nil();
        map_[key] = std::string(op.values[0]);
        return Reply::ok();
      }
      case OpType::kDel: {
        int64_t n = 0;
        for (auto k : op.keys) n += static_cast<int64_t>(map_.erase(std::string(k)));
        return Reply::of_int(n);
      }
      case OpType::kCas: {
        const std::string key(op.keys[0]);
        auto it = map_.find(key);
        const bool holds =
            op.expected ? (it != map_.end() && it->second == *op.expected) : it == map_.end();
        if (!holds) return Reply::of_error(Code::kConflict, "");
        map_[key] = std::string(op.values[0]);
        return Reply::ok();
      }
      case OpType::kIncrBy: {
        const std::string key(op.keys[0]);
        int64_t current = 0;
        if (auto it = map_.find(key); it != map_.end()) {
          const std::string& s = it->second;
          auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), current);
          // Canonical means printing the number gives back the same text.
          if (ec != std::errc() || p != s.data() + s.size() || std::to_string(current) != s)
            return Reply::of_error(Code::kWrongType, "");
        }
        const __int128 next = static_cast<__int128>(current) + op.delta;
        if (next > kInt64Max || next < kInt64Min)
          return Reply::of_error(Code::kInvalidArgument, "");
        map_[key] = std::to_string(static_cast<int64_t>(next));
        return Reply::of_int(static_cast<int64_t>(next));
      }
      case OpType::kMget: {
        Reply r{.kind = Reply::Kind::kValues};
        for (auto k : op.keys) {
          auto it = map_.find(std::string(k));
          r.values.push_back(it == map_.end() ? std::nullopt
                                              : std::optional<std::string>(it->second));
        }
        return r;
      }
      case OpType::kMset:
        for (size_t i = 0; i < op.keys.size(); i++)
          map_[std::string(op.keys[i])] = std::string(op.values[i]);
        return Reply::ok();
      case OpType::kExists: {
        int64_t n = 0;
        for (auto k : op.keys) n += static_cast<int64_t>(map_.count(std::string(k)));
        return Reply::of_int(n);
      }
      case OpType::kScan: {
        Reply r{.kind = Reply::Kind::kPairs};
        const size_t limit = op.limit == 0 ? op_keys_max : op.limit;
        for (const auto& [k, v] : map_) {
          if (r.pairs.size() == limit) break;
          if (!k.starts_with(op.keys[0])) continue;
          if (op.keys.size() == 2 && !(std::string_view(k) > op.keys[1])) continue;
          r.pairs.emplace_back(k, v);
        }
        return r;
      }
      case OpType::kSize:
        return Reply::of_int(static_cast<int64_t>(map_.size()));
    }
    return Reply::of_error(Code::kInvalidArgument, "");
  }

  uint64_t hash() const {
    uint64_t sum = 0;
    for (const auto& [k, v] : map_) sum += entry_hash_by_formula(k, v);
    return sum;
  }
  const std::map<std::string, std::string>& entries() const { return map_; }

 private:
  std::map<std::string, std::string> map_;
};

TEST(KvApp, BehavesLikeTheModel) {
  EXPECT_TRUE(rc::check("random op sequences: KvApp == std::map model", [] {
    KvApp app;
    Model model;
    const int steps = *rc::gen::inRange(1, 120);
    for (int i = 0; i < steps; i++) {
      OwnedOp owned;
      testing::random_op(owned, KeySpace::kSmall);
      const Reply want = model.apply(owned.op);
      Reply got = run(app, owned.op);
      // The model does not reproduce error messages; the code is what counts.
      if (got.kind == Reply::Kind::kError) got.value.clear();
      RC_ASSERT(got == want);
      RC_ASSERT(app.size() == model.entries().size());
      RC_ASSERT(app.state_hash() == model.hash());
    }
    const Reply all = run(app, scan_op("", 0));
    const std::vector<std::pair<std::string, std::string>> want(model.entries().begin(),
                                                                model.entries().end());
    RC_ASSERT(all.pairs == want);
  }));
}

}  // namespace
}  // namespace maroon::kv
