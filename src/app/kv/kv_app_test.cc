#include "app/kv/kv_app.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "app/kv/kv_test_gen.h"
#include "app/test_pieces.h"
#include "common/codec.h"
#include "common/hash.h"
#include "maroon/limits.h"
#include "maroon/prng.h"

namespace maroon::kv {
namespace {

using limits::key_bytes_max;
using limits::op_keys_max;
using limits::reply_bytes_max;
using limits::snapshot_piece_bytes_max;
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

uint64_t version_hash_by_formula(std::string_view key, uint64_t version) {
  return hash64(key, version);
}

uint64_t counters_hash_by_formula(uint64_t mutations, uint64_t deleted_version_max) {
  if (mutations == 0 && deleted_version_max == 0) return 0;
  std::string buf;
  ByteWriter(buf).u64(mutations);
  ByteWriter(buf).u64(deleted_version_max);
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
  // Empty, but the counters WATCH checks derive from have moved: 4
  // mutations, and b (version 2) was the newest entry removed.
  EXPECT_EQ(app.state_hash(), counters_hash(4, 2));
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
  // Eleven 1 MiB values fit a 12 MiB reply; thirteen do not.
  const std::string value(1024 * 1024, 'v');
  std::vector<std::string> keys;
  for (char c = 'a'; c <= 'm'; c++) keys.emplace_back(1, c);
  for (const std::string& k : keys) app.execute(set_op(k, value));
  Op eleven{.type = OpType::kMget};
  for (size_t i = 0; i < 11; i++) eleven.keys.push_back(keys[i]);
  const std::string ok_reply = app.read(encode_op(eleven));
  EXPECT_LE(ok_reply.size(), reply_bytes_max);
  EXPECT_EQ(decode_reply(ok_reply)->values.size(), 11u);

  Op all{.type = OpType::kMget};
  for (const std::string& k : keys) all.keys.push_back(k);
  expect_error(run(app, all), Code::kTooLarge, "the limit is 12582912; ask for fewer keys");
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
  EXPECT_EQ(all.pairs.back().first, "k016383");
  const Reply rest = run(app, scan_op("k", 0, all.pairs.back().first));
  EXPECT_EQ(rest.pairs.size(), 10u);
}

TEST(KvApp, ScanStopsBeforeTheReplyByteLimit) {
  KvApp app;
  const std::string value(1024 * 1024, 'v');
  for (char c = '0'; c <= '9'; c++) app.execute(set_op(std::string(1, c), value));
  for (char c = 'a'; c <= 'f'; c++) app.execute(set_op(std::string(1, c), value));
  // Twelve 1 MiB values plus framing exceed 12 MiB, so a page holds eleven.
  const std::string first = app.read(encode_op(scan_op("", 0)));
  EXPECT_LE(first.size(), reply_bytes_max);
  Result<Reply> page = decode_reply(first);
  ASSERT_TRUE(page.is_ok());
  ASSERT_EQ(page->pairs.size(), 11u);
  EXPECT_EQ(page->pairs.back().first, "a");
  const Reply second = run(app, scan_op("", 0, "a"));
  ASSERT_EQ(second.pairs.size(), 5u);
  EXPECT_EQ(second.pairs.front().first, "b");
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
               "value is 8388609 bytes; the limit is 8388608");
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
  EXPECT_EQ(app.state_hash(), entry_hash_by_formula("a", "1") + version_hash_by_formula("a", 1) +
                                  entry_hash_by_formula("b", "2") + version_hash_by_formula("b", 2) +
                                  counters_hash_by_formula(2, 0));
}

TEST(KvStateHash, KeyValueBoundaryMatters) {
  KvApp ab_c, a_bc;
  ab_c.execute(set_op("ab", "c"));
  a_bc.execute(set_op("a", "bc"));
  EXPECT_NE(ab_c.state_hash(), a_bc.state_hash());
}

// The hash covers what later replies depend on: entries, and the versions
// and counters WATCH stamps come from (docs/formats/kv.md, "State hash").
TEST(KvStateHash, CoversVersionsAndCounters) {
  KvApp once, twice;
  once.execute(set_op("a", "1"));
  twice.execute(set_op("a", "1"));
  EXPECT_EQ(once.state_hash(), twice.state_hash());
  twice.execute(set_op("a", "1"));  // same value, new version: a WATCH sees it
  EXPECT_NE(once.state_hash(), twice.state_hash());
  KvApp fresh;
  EXPECT_EQ(fresh.state_hash(), 0u);
  fresh.execute(set_op("x", "1"));
  fresh.execute(del_op({"x"}));
  EXPECT_EQ(fresh.size(), 0u);
  EXPECT_NE(fresh.state_hash(), 0u);
}

TEST(KvStateHash, SameHistorySameHash) {
  EXPECT_TRUE(rc::check(
      "replicas that apply the same ops agree", [](const std::map<std::string, std::string>& entries) {
        KvApp a, b;
        for (const auto& [k, v] : entries) a.execute(set_op(k, v));
        for (const auto& [k, v] : entries) b.execute(set_op(k, v));
        RC_ASSERT(a.state_hash() == b.state_hash());
        RC_ASSERT(a.size() == entries.size());
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


// ---- WATCH and MULTI (docs/formats/kv.md, "Watches and MULTI")

KeyStamp watch_one(KvApp& app, std::string_view key) {
  const std::string bytes = encode_op(Op{.type = OpType::kWatch, .keys = {key}});
  EXPECT_EQ(app.read(bytes), app.apply(TxContext{}, bytes));  // read or ordered: the same
  Result<std::vector<KeyStamp>> r = decode_stamps_reply(app.read(bytes));
  MAROON_ASSERT(r.is_ok() && r->size() == 1);
  return (*r)[0];
}

// Applies a MULTI as a replica does.
MultiReply run_multi(KvApp& app, const Op& op) {
  Result<MultiReply> r = decode_multi_reply(app.apply(TxContext{}, encode_op(op)));
  MAROON_ASSERT(r.is_ok());
  return std::move(r).value();
}
const MultiReply kAborted{.aborted = true};

// A MULTI of `subs` (kept encoded in `bytes`), watching `watched`.
Op multi_op(std::vector<std::string>& bytes, const std::vector<Op>& subs,
            const std::vector<std::pair<std::string_view, KeyStamp>>& watched = {}) {
  bytes.clear();
  for (const Op& sub : subs) bytes.push_back(encode_op(sub));
  Op op{.type = OpType::kMulti};
  for (const auto& [k, st] : watched) {
    op.keys.push_back(k);
    op.stamps.push_back(st);
  }
  for (const std::string& b : bytes) op.ops.push_back(b);
  return op;
}

std::vector<Reply> sub_replies(const MultiReply& r) {
  MAROON_ASSERT(!r.aborted);
  std::vector<Reply> out;
  for (const std::string& b : r.replies) out.push_back(decode_reply(b).value());
  return out;
}

TEST(KvMulti, RunsEverySubOpInOrderAndAnErrorStopsOnlyItself) {
  KvApp app;
  run(app, set_op("s", "text"));
  std::vector<std::string> bytes;
  const MultiReply r = run_multi(app, multi_op(bytes, {incr_op("c", 1), incr_op("s", 1), get_op("c"),
                                            set_op("k", "v"), Op{.type = OpType::kSize}}));
  const std::vector<Reply> subs = sub_replies(r);
  ASSERT_EQ(subs.size(), 5u);
  EXPECT_EQ(subs[0], Reply::of_int(1));
  expect_error(subs[1], Code::kWrongType, "not an integer");
  EXPECT_EQ(subs[2], Reply::of_value("1"));
  EXPECT_EQ(subs[3], Reply::ok());
  EXPECT_EQ(subs[4], Reply::of_int(3));
}

TEST(KvMulti, AnyWriteToAWatchedKeyAbortsTheWholeTx) {
  KvApp app;
  run(app, set_op("k", "v"));
  std::vector<std::string> bytes;
  const KeyStamp seen = watch_one(app, "k");
  EXPECT_TRUE(seen.present);
  run(app, set_op("k", "v"));  // the same value still counts, as in Redis
  EXPECT_EQ(run_multi(app, multi_op(bytes, {incr_op("c", 1)}, {{"k", seen}})), kAborted);
  EXPECT_EQ(run(app, get_op("c")), Reply::nil());
  // Unchanged since the WATCH: it runs.
  const KeyStamp again = watch_one(app, "k");
  run(app, set_op("other", "x"));
  EXPECT_EQ(sub_replies(run_multi(app, multi_op(bytes, {incr_op("c", 1)}, {{"k", again}}))).size(), 1u);
  EXPECT_EQ(run(app, get_op("c")), Reply::of_value("1"));
}

TEST(KvMulti, DeleteAndRecreateIsAChange) {
  KvApp app;
  run(app, set_op("k", "v"));
  std::vector<std::string> bytes;
  const KeyStamp present = watch_one(app, "k");
  run(app, del_op({"k"}));
  run(app, set_op("k", "v"));
  EXPECT_EQ(run_multi(app, multi_op(bytes, {get_op("k")}, {{"k", present}})), kAborted);
  // An absent key created and deleted again is a change too.
  const KeyStamp absent = watch_one(app, "gone");
  EXPECT_FALSE(absent.present);
  run(app, set_op("gone", "1"));
  run(app, del_op({"gone"}));
  EXPECT_EQ(run_multi(app, multi_op(bytes, {get_op("k")}, {{"gone", absent}})), kAborted);
  // Deleting another key written before the WATCH leaves an absent key's
  // watch alone; deleting one written after it aborts (conservative: it
  // might have been the watched key).
  const KeyStamp absent2 = watch_one(app, "gone");
  run(app, del_op({"k"}));
  EXPECT_EQ(sub_replies(run_multi(app, multi_op(bytes, {get_op("k")}, {{"gone", absent2}}))),
            std::vector<Reply>{Reply::nil()});
  const KeyStamp absent3 = watch_one(app, "gone");
  run(app, set_op("new", "1"));
  run(app, del_op({"new"}));
  EXPECT_EQ(run_multi(app, multi_op(bytes, {get_op("k")}, {{"gone", absent3}})), kAborted);
}

// Redis's "FLUSHALL is able to touch the watched keys" and "FLUSHALL does not
// touch non affected keys" (tests/unit/multi.tcl).
TEST(KvFlush, TouchesWatchedKeysThatExistedAndNoOthers) {
  KvApp app;
  std::vector<std::string> bytes;
  run(app, set_op("x", "30"));
  run(app, set_op("other", "1"));
  const KeyStamp present = watch_one(app, "x");
  const KeyStamp absent = watch_one(app, "never");
  EXPECT_EQ(run(app, Op{.type = OpType::kFlush}), Reply::ok());
  EXPECT_EQ(run_multi(app, multi_op(bytes, {get_op("x")}, {{"x", present}})), kAborted);
  EXPECT_EQ(sub_replies(run_multi(app, multi_op(bytes, {get_op("x")}, {{"never", absent}}))),
            std::vector<Reply>{Reply::nil()});
  // A key created after the WATCH and flushed away again is a change.
  const KeyStamp absent2 = watch_one(app, "x");
  run(app, set_op("x", "1"));
  run(app, Op{.type = OpType::kFlush});
  EXPECT_EQ(run_multi(app, multi_op(bytes, {get_op("x")}, {{"x", absent2}})), kAborted);
}

TEST(KvFlush, RemovesEveryKeyAndCountsEachAsADeletion) {
  KvApp app;
  run(app, set_op("a", "1"));
  run(app, set_op("b", "2"));
  run(app, set_op("a", "3"));  // a's version is 3, the newest
  EXPECT_EQ(run(app, Op{.type = OpType::kFlush}), Reply::ok());
  EXPECT_EQ(app.size(), 0u);
  EXPECT_EQ(run(app, get_op("a")), Reply::nil());
  EXPECT_EQ(run(app, scan_op("", 0)), pairs({}));
  EXPECT_EQ(app.state_hash(), counters_hash_by_formula(5, 3));
  // An empty keyspace: nothing changes, not even the counters.
  EXPECT_EQ(run(app, Op{.type = OpType::kFlush}), Reply::ok());
  EXPECT_EQ(app.state_hash(), counters_hash_by_formula(5, 3));
  // Not a read.
  expect_error(decode_reply(app.read(encode_op(Op{.type = OpType::kFlush}))).value(),
               Code::kInvalidArgument, "FLUSH is not a read-only op");
  // Inside a MULTI, with the ops around it.
  std::vector<std::string> bytes;
  const MultiReply r = run_multi(
      app, multi_op(bytes, {set_op("k", "v"), Op{.type = OpType::kFlush}, get_op("k"), size_op()}));
  EXPECT_EQ(sub_replies(r),
            (std::vector<Reply>{Reply::ok(), Reply::ok(), Reply::nil(), Reply::of_int(0)}));
}

TEST(KvMulti, TheReplyStaysWithinReplyBytesMax) {
  KvApp app;
  const std::string value(value_bytes_max, 'v');
  run(app, set_op("big", value));
  std::vector<std::string> bytes;
  const std::string encoded =
      app.apply(TxContext{}, encode_op(multi_op(bytes, {get_op("big"), get_op("big"), incr_op("n", 1)})));
  EXPECT_LE(encoded.size(), reply_bytes_max);
  const std::vector<Reply> subs = sub_replies(decode_multi_reply(encoded).value());
  ASSERT_EQ(subs.size(), 3u);
  EXPECT_EQ(subs[0], Reply::of_value(value));
  expect_error(subs[1], Code::kTooLarge, "too large for the EXEC reply");
  EXPECT_EQ(subs[2], Reply::of_int(1));  // the write after it still ran
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
        put(key, op.values[0]);
        return Reply::ok();
      }
      case OpType::kDel: {
        int64_t n = 0;
        for (auto k : op.keys) n += erase(std::string(k)) ? 1 : 0;
        return Reply::of_int(n);
      }
      case OpType::kCas: {
        const std::string key(op.keys[0]);
        auto it = map_.find(key);
        const bool holds =
            op.expected ? (it != map_.end() && it->second == *op.expected) : it == map_.end();
        if (!holds) return Reply::of_error(Code::kConflict, "");
        put(key, op.values[0]);
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
        put(key, std::to_string(static_cast<int64_t>(next)));
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
          put(std::string(op.keys[i]), op.values[i]);
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
      case OpType::kFlush:
        while (!map_.empty()) erase(map_.begin()->first);
        return Reply::ok();
      case OpType::kWatch:
      case OpType::kMulti:
        break;  // not generated (kv_test_gen.h)
    }
    return Reply::of_error(Code::kInvalidArgument, "");
  }

  uint64_t hash() const {
    uint64_t sum = counters_hash_by_formula(mutations_, deleted_version_max_);
    for (const auto& [k, v] : map_) {
      sum += entry_hash_by_formula(k, v) + version_hash_by_formula(k, versions_.at(k));
    }
    return sum;
  }
  const std::map<std::string, std::string>& entries() const { return map_; }

 private:
  void put(const std::string& key, std::string_view value) {
    map_[key] = std::string(value);
    versions_[key] = ++mutations_;
  }
  // By value: a caller may pass a key of map_ itself (a flush), which the
  // erase destroys.
  bool erase(std::string key) {
    if (map_.erase(key) == 0) return false;
    deleted_version_max_ = std::max(deleted_version_max_, versions_.at(key));
    versions_.erase(key);
    ++mutations_;
    return true;
  }

  std::map<std::string, std::string> map_;
  std::map<std::string, uint64_t> versions_;
  uint64_t mutations_ = 0;
  uint64_t deleted_version_max_ = 0;
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

// ---- Snapshots (docs/formats/kv.md, "Snapshot")


// Every piece of a snapshot of `app` taken now, asking for `hint` bytes each.
std::vector<std::string> take_snapshot(KvApp& app, size_t hint) {
  std::unique_ptr<AppSnapshotCursor> cursor = app.begin_snapshot();
  std::vector<std::string> pieces;
  std::string piece;
  while (cursor->next(piece, hint)) {
    MAROON_ASSERT(!piece.empty() && piece.size() <= snapshot_piece_bytes_max);
    pieces.push_back(std::move(piece));
    piece.clear();
  }
  MAROON_ASSERT(piece.empty());  // false appends nothing
  return pieces;
}

Status restore_from(KvApp& app, std::vector<std::string> pieces) {
  VectorPieces p(std::move(pieces));
  return app.restore(p);
}

// What later replies can depend on, read through the public interface:
// every entry (SCAN pages, GET, WATCH stamps), both counters and the hash.
struct Dump {
  std::vector<std::tuple<std::string, std::string, uint64_t>> entries;
  uint64_t mutations = 0;
  uint64_t deleted_version_max = 0;
  uint64_t hash = 0;
  bool operator==(const Dump&) const = default;
};

Dump dump(const KvApp& app) {
  Dump d;
  std::optional<std::string> after;
  for (;;) {
    const Reply page = app.execute_read(scan_op("", 0, after));
    MAROON_ASSERT(page.kind == Reply::Kind::kPairs);
    if (page.pairs.empty()) break;
    for (const auto& [k, v] : page.pairs) {
      const KeyStamp st = app.stamp(k);
      MAROON_ASSERT(st.present);
      MAROON_ASSERT(decode_reply(app.read(encode_op(get_op(k)))).value() == Reply::of_value(v));
      d.entries.emplace_back(k, v, st.version);
    }
    after = page.pairs.back().first;
  }
  // An absent key's stamp is the mutation count; the deleted version max is
  // the least count at which a WATCH of an absent key still holds.
  std::string absent = "\xff\xfe absent";
  while (app.stamp(absent).present) absent += "!";
  d.mutations = app.stamp(absent).version;
  uint64_t lo = 0, hi = d.mutations;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (app.unchanged_since(absent, KeyStamp{.present = false, .version = mid})) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  d.deleted_version_max = lo;
  d.hash = app.state_hash();
  return d;
}

void expect_same_state(const KvApp& got, const KvApp& want) {
  const Dump g = dump(got), w = dump(want);
  EXPECT_EQ(g.entries.size(), w.entries.size());
  EXPECT_TRUE(g.entries == w.entries);
  EXPECT_EQ(g.mutations, w.mutations);
  EXPECT_EQ(g.deleted_version_max, w.deleted_version_max);
  EXPECT_EQ(g.hash, w.hash);
}

// Applies a random write-heavy op, now and then a MULTI of several (some
// watching a key, some of those aborting), and logs its bytes.
void random_write(KvApp& app, KeySpace space, std::vector<std::string>& log) {
  if (*rc::gen::inRange(0, 12) == 0) {
    const int n = *rc::gen::inRange(1, 5);
    std::vector<std::string> subs;
    for (int i = 0; i < n; i++) {
      OwnedOp sub;
      testing::random_op(sub, space);
      subs.push_back(encode_op(sub.op));
    }
    Op multi{.type = OpType::kMulti};
    const std::string watched = testing::random_key(space);
    if (*rc::gen::arbitrary<bool>()) {
      KeyStamp st = app.stamp(watched);
      if (*rc::gen::inRange(0, 3) == 0) st.version++;  // stale: aborts
      multi.keys.push_back(watched);
      multi.stamps.push_back(st);
    }
    for (const std::string& b : subs) multi.ops.push_back(b);
    log.push_back(encode_op(multi));
  } else if (*rc::gen::inRange(0, 25) == 0) {
    log.push_back(encode_op(Op{.type = OpType::kFlush}));
  } else {
    OwnedOp owned;
    testing::random_op(owned, space);
    log.push_back(encode_op(owned.op));
  }
  app.apply(TxContext{}, log.back());
}

void replay(KvApp& app, const std::vector<std::string>& log) {
  for (const std::string& op : log) app.apply(TxContext{}, op);
}

size_t random_hint() {
  return *rc::gen::oneOf(rc::gen::inRange<size_t>(0, 48), rc::gen::inRange<size_t>(0, 400),
                         rc::gen::just<size_t>(1 << 20));
}

TEST(KvSnapshot, RoundTripGivesTheSameState) {
  EXPECT_TRUE(rc::check("random state -> snapshot -> restore into another app", [] {
    const KeySpace space = *rc::gen::element(KeySpace::kSmall, KeySpace::kArbitrary);
    KvApp app;
    std::vector<std::string> log;
    const int steps = *rc::gen::inRange(0, 150);
    for (int i = 0; i < steps; i++) random_write(app, space, log);
    const std::vector<std::string> pieces = take_snapshot(app, random_hint());
    RC_ASSERT(!app.snapshot_open());
    RC_ASSERT(app.snapshot_pre_images() == 0u);
    // The target's own state goes: restore replaces it whole.
    KvApp restored;
    std::vector<std::string> other_log;
    const int other_steps = *rc::gen::inRange(0, 20);
    for (int i = 0; i < other_steps; i++) random_write(restored, space, other_log);
    const Status s = restore_from(restored, pieces);
    RC_ASSERT(s.is_ok());
    RC_ASSERT(restored.state_hash() == app.state_hash());
    RC_ASSERT(restored.size() == app.size());
    RC_ASSERT(dump(restored) == dump(app));
    // And it goes on as the original does.
    std::vector<std::string> more;
    for (int i = 0; i < 20; i++) random_write(app, space, more);
    for (const std::string& op : more) restored.apply(TxContext{}, op);
    RC_ASSERT(dump(restored) == dump(app));
  }));
}

// The cursor produces the state as of begin_snapshot() while writes of every
// kind go on between its pieces.
TEST(KvSnapshot, CopyOnWriteKeepsTheStateAsOfTheBeginning) {
  EXPECT_TRUE(rc::check("interleaved writes and pieces -> the state at begin", [] {
    const KeySpace space =
        *rc::gen::element(KeySpace::kSmall, KeySpace::kSmall, KeySpace::kArbitrary);
    KvApp app;
    std::vector<std::string> log;
    const int steps = *rc::gen::inRange(0, 120);
    for (int i = 0; i < steps; i++) random_write(app, space, log);
    KvApp at_begin;  // the same op prefix: what the snapshot must hold
    replay(at_begin, log);

    std::unique_ptr<AppSnapshotCursor> cursor = app.begin_snapshot();
    RC_ASSERT(app.snapshot_open());
    std::vector<std::string> pieces;
    for (int calls = 0;; calls++) {
      RC_ASSERT(calls < 100000);
      const int writes = *rc::gen::inRange(0, 5);
      for (int i = 0; i < writes; i++) random_write(app, space, log);
      std::string piece;
      if (!cursor->next(piece, random_hint())) {
        RC_ASSERT(piece.empty());
        break;
      }
      RC_ASSERT(!piece.empty());
      pieces.push_back(std::move(piece));
    }
    // Done: later writes keep no pre-images.
    RC_ASSERT(app.snapshot_pre_images() == 0u);
    for (int i = 0; i < 10; i++) random_write(app, space, log);
    RC_ASSERT(app.snapshot_pre_images() == 0u);
    std::string nothing;
    RC_ASSERT(!cursor->next(nothing, 100));
    RC_ASSERT(nothing.empty());
    cursor.reset();
    RC_ASSERT(!app.snapshot_open());

    KvApp restored;
    const Status s = restore_from(restored, pieces);
    RC_ASSERT(s.is_ok());
    RC_ASSERT(dump(restored) == dump(at_begin));
    // The live state went on untouched by the copying.
    KvApp everything;
    replay(everything, log);
    RC_ASSERT(dump(app) == dump(everything));
  }));
}

std::string key_n(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "key:%05d", i);
  return buf;
}

// The cases the property test meets by chance, on purpose and at a size
// where pieces are many: a FLUSH midway, deletions, overwrites and inserts
// ahead of and behind the cursor; pre-images are returned as it passes them.
TEST(KvSnapshot, FlushAndWritesAheadOfTheCursor) {
  KvApp app;
  for (int i = 0; i < 2000; i += 2) app.execute(set_op(key_n(i), "v" + std::to_string(i)));
  app.execute(del_op({key_n(10)}));
  std::vector<std::string> log;
  KvApp at_begin;
  for (int i = 0; i < 2000; i += 2) at_begin.execute(set_op(key_n(i), "v" + std::to_string(i)));
  at_begin.execute(del_op({key_n(10)}));

  std::unique_ptr<AppSnapshotCursor> cursor = app.begin_snapshot();
  std::vector<std::string> pieces;
  auto piece = [&](size_t hint) {
    std::string p;
    const bool more = cursor->next(p, hint);
    if (more) pieces.push_back(std::move(p));
    return more;
  };
  ASSERT_TRUE(piece(100));  // the header
  ASSERT_TRUE(piece(100));  // a few entries
  EXPECT_EQ(app.snapshot_pre_images(), 0u);
  // Behind the cursor: no pre-image needed.
  app.execute(set_op(key_n(0), "changed"));
  app.execute(del_op({key_n(2)}));
  EXPECT_EQ(app.snapshot_pre_images(), 0u);
  // Ahead: an overwrite, a deletion, an insert, a second write to one key.
  app.execute(set_op(key_n(500), "changed"));
  app.execute(set_op(key_n(500), "changed again"));
  app.execute(del_op({key_n(502)}));
  app.execute(set_op(key_n(501), "new"));
  app.execute(incr_op(key_n(1001), 5));  // absent at begin
  EXPECT_EQ(app.snapshot_pre_images(), 4u);
  for (int i = 0; i < 20; i++) ASSERT_TRUE(piece(200));
  app.execute(Op{.type = OpType::kFlush});
  // Everything the cursor has not passed is now a pre-image.
  const size_t after_flush = app.snapshot_pre_images();
  EXPECT_GT(after_flush, 500u);
  EXPECT_EQ(app.size(), 0u);
  app.execute(set_op(key_n(1999), "after the flush"));
  app.execute(set_op(key_n(1), "after the flush"));
  size_t before = app.snapshot_pre_images() + 1;
  while (piece(300)) {
    // The pre-images shrink as the cursor passes them.
    EXPECT_LT(app.snapshot_pre_images(), before);
    before = app.snapshot_pre_images();
  }
  EXPECT_EQ(app.snapshot_pre_images(), 0u);
  cursor.reset();
  KvApp restored;
  ASSERT_TRUE(restore_from(restored, pieces).is_ok());
  expect_same_state(restored, at_begin);
  EXPECT_EQ(restored.size(), 999u);
  EXPECT_EQ(decode_reply(restored.read(encode_op(get_op(key_n(500))))).value(),
            Reply::of_value("v500"));
  EXPECT_EQ(app.size(), 2u);
}

TEST(KvSnapshot, DestroyingTheCursorEarlyEndsTheSnapshot) {
  KvApp app;
  for (int i = 0; i < 100; i++) app.execute(set_op(key_n(i), "v"));
  {
    std::unique_ptr<AppSnapshotCursor> cursor = app.begin_snapshot();
    std::string piece;
    ASSERT_TRUE(cursor->next(piece, 10));
    ASSERT_TRUE(cursor->next(piece, 10));
    app.execute(set_op(key_n(50), "w"));
    app.execute(del_op({key_n(60)}));
    EXPECT_EQ(app.snapshot_pre_images(), 2u);
  }
  EXPECT_FALSE(app.snapshot_open());
  EXPECT_EQ(app.snapshot_pre_images(), 0u);
  app.execute(set_op(key_n(70), "w"));
  app.execute(Op{.type = OpType::kFlush});
  EXPECT_EQ(app.snapshot_pre_images(), 0u);
  // A new snapshot begins at the state as it is now.
  app.execute(set_op("a", "1"));
  const std::vector<std::string> pieces = take_snapshot(app, 1);
  EXPECT_EQ(pieces.size(), 2u);  // the header and one entry
  KvApp restored;
  ASSERT_TRUE(restore_from(restored, pieces).is_ok());
  expect_same_state(restored, app);
}

TEST(KvSnapshot, OneSnapshotAtATimeAndNoCursorOutlivesItsApp) {
  EXPECT_DEATH(
      {
        KvApp app;
        auto first = app.begin_snapshot();
        auto second = app.begin_snapshot();
      },
      "a kv snapshot is already open");
  EXPECT_DEATH(
      {
        std::unique_ptr<AppSnapshotCursor> cursor;
        {
          KvApp app;
          cursor = app.begin_snapshot();
        }
      },
      "a kv snapshot cursor outlived its app");
}

TEST(KvSnapshot, EmptyAppIsTheHeaderAlone) {
  KvApp empty;
  const std::vector<std::string> pieces = take_snapshot(empty, 1 << 20);
  ASSERT_EQ(pieces.size(), 1u);
  KvApp restored;
  restored.execute(set_op("old", "state"));
  ASSERT_TRUE(restore_from(restored, pieces).is_ok());
  EXPECT_EQ(restored.size(), 0u);
  EXPECT_EQ(restored.state_hash(), 0u);
  // No keys, but counters that WATCH stamps depend on.
  KvApp emptied;
  emptied.execute(set_op("a", "1"));
  emptied.execute(set_op("b", "2"));
  emptied.execute(Op{.type = OpType::kFlush});
  const std::vector<std::string> counters_only = take_snapshot(emptied, 1 << 20);
  ASSERT_EQ(counters_only.size(), 1u);
  ASSERT_TRUE(restore_from(restored, counters_only).is_ok());
  expect_same_state(restored, emptied);
  EXPECT_EQ(restored.state_hash(), counters_hash(4, 2));
}

TEST(KvSnapshot, TheLargestEntriesFitAPieceEach) {
  KvApp app;
  const std::string big_key(key_bytes_max, 'k');
  const std::string big_value(value_bytes_max, 'v');
  ASSERT_EQ(app.execute(set_op(big_key, big_value)), Reply::ok());
  std::vector<std::string> pieces = take_snapshot(app, 1);
  ASSERT_EQ(pieces.size(), 2u);
  KvApp restored;
  ASSERT_TRUE(restore_from(restored, pieces).is_ok());
  expect_same_state(restored, app);

  // Two of them exceed one piece even when asked for more: two pieces.
  std::string other_key = big_key;
  other_key.back() = 'l';
  ASSERT_EQ(app.execute(set_op(other_key, big_value)), Reply::ok());
  pieces = take_snapshot(app, snapshot_piece_bytes_max * 4);
  ASSERT_EQ(pieces.size(), 3u);
  for (const std::string& p : pieces) EXPECT_LE(p.size(), snapshot_piece_bytes_max);
  ASSERT_TRUE(restore_from(restored, pieces).is_ok());
  expect_same_state(restored, app);
}

TEST(KvSnapshot, EncodingMatchesTheDocumentedLayout) {
  KvApp app;
  app.execute(set_op("a", "1"));
  app.execute(set_op("b", "2"));
  app.execute(del_op({"b"}));
  const std::vector<std::string> pieces = take_snapshot(app, 1);
  ASSERT_EQ(pieces.size(), 2u);
  std::string header("\x01\x01\x03\x02", 4);
  ByteWriter(header).u64(app.state_hash());
  EXPECT_EQ(pieces[0], header);
  EXPECT_EQ(pieces[1], (std::string{'\x01', 'a', '\x01', '1', '\x01'}));
  // Pieces of about the size asked for, each whole entries.
  KvApp many;
  for (int i = 0; i < 1000; i++) many.execute(set_op(key_n(i), "0123456789"));
  const std::vector<std::string> sized = take_snapshot(many, 1000);
  const size_t entry_bytes = 1 + 9 + 1 + 10 + 2;  // versions 128.. take two bytes
  ASSERT_GT(sized.size(), 2u);
  for (size_t i = 1; i + 1 < sized.size(); i++) {
    EXPECT_GE(sized[i].size(), 1000u);
    EXPECT_LT(sized[i].size(), 1000u + entry_bytes);
  }
}

// ---- Damaged snapshots: each is refused with kCorruption, and the app is left empty.

std::string snapshot_header(uint64_t entries, uint64_t mutations, uint64_t deleted_version_max,
                            uint64_t hash) {
  std::string h;
  ByteWriter w(h);
  w.u8(kSnapshotFormatVersion);
  w.varint(entries);
  w.varint(mutations);
  w.varint(deleted_version_max);
  w.u64(hash);
  return h;
}

std::string snapshot_entry(std::string_view key, std::string_view value, uint64_t version) {
  std::string e;
  ByteWriter w(e);
  w.bytes(key);
  w.bytes(value);
  w.varint(version);
  return e;
}

class KvSnapshotDamage : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 10; i++) source_.execute(set_op(key_n(i), "value-" + std::to_string(i)));
    pieces_ = take_snapshot(source_, 1);  // a header and one entry per piece
    MAROON_ASSERT(pieces_.size() == 11);
    MAROON_ASSERT(restore_from(target_, pieces_).is_ok());
  }

  // Restores `pieces` into an app that had a state, expecting a refusal
  // whose message contains `message_part`; the app is then empty.
  void expect_refused(std::vector<std::string> pieces, std::string_view message_part) {
    KvApp app;
    app.execute(set_op("previous", "state"));
    const Status s = restore_from(app, std::move(pieces));
    EXPECT_EQ(s.code(), Code::kCorruption) << s.to_string();
    EXPECT_NE(s.message().find(message_part), std::string::npos)
        << "message: " << s.message() << "\nexpected to contain: " << message_part;
    EXPECT_EQ(app.size(), 0u);
    EXPECT_EQ(app.state_hash(), 0u);
    // And the app still works.
    app.execute(set_op("k", "v"));
    EXPECT_EQ(app.size(), 1u);
  }

  KvApp source_;
  KvApp target_;
  std::vector<std::string> pieces_;
};

TEST_F(KvSnapshotDamage, TruncatedPieces) {
  // Every cut of every piece: a header or an entry is left short.
  for (size_t i = 0; i < pieces_.size(); i++) {
    for (size_t n = 0; n < pieces_[i].size(); n++) {
      SCOPED_TRACE("piece " + std::to_string(i) + " cut to " + std::to_string(n));
      std::vector<std::string> cut = pieces_;
      cut[i].resize(n);
      expect_refused(cut, n == 0 ? (i == 0 ? "header is empty" : "is empty")
                                 : (i == 0 ? "header is truncated" : "truncated"));
    }
  }
  // Missing pieces: at the end, in the middle, all of them.
  std::vector<std::string> short_end(pieces_.begin(), pieces_.end() - 1);
  expect_refused(short_end, "has 9 entries; its header counts 10");
  std::vector<std::string> gap = pieces_;
  gap.erase(gap.begin() + 5);
  expect_refused(gap, "has 9 entries; its header counts 10");
  expect_refused({}, "has no pieces");
}

TEST_F(KvSnapshotDamage, KeysOutOfOrder) {
  std::vector<std::string> swapped = pieces_;
  std::swap(swapped[3], swapped[4]);
  expect_refused(swapped, "entry 3: keys are not in ascending order");
  std::vector<std::string> repeated = pieces_;
  repeated[4] = repeated[3];
  expect_refused(repeated, "entry 3: keys are not in ascending order");
  // Within one piece too.
  std::vector<std::string> joined = {pieces_[0], pieces_[2] + pieces_[1]};
  for (size_t i = 3; i < pieces_.size(); i++) joined.push_back(pieces_[i]);
  expect_refused(joined, "entry 1: keys are not in ascending order");
}

TEST_F(KvSnapshotDamage, AChangedValueFailsTheHashCheck) {
  std::vector<std::string> flipped = pieces_;
  const size_t at = flipped[6].find("value-5");
  ASSERT_NE(at, std::string::npos);
  flipped[6][at + 6] ^= 0x01;
  expect_refused(flipped, "state hash is");
  // A changed version, still within range, too.
  std::vector<std::string> version = pieces_;
  version[6].back() = static_cast<char>(version[6].back() + 1);
  expect_refused(version, "the snapshot recorded");
  // And a header whose hash is wrong.
  std::vector<std::string> header = pieces_;
  header[0].back() ^= 0x40;
  expect_refused(header, "state hash is");
}

TEST_F(KvSnapshotDamage, WrongEntryCount) {
  const uint64_t hash = source_.state_hash();
  std::vector<std::string> more = pieces_;
  more[0] = snapshot_header(11, 10, 0, hash);
  expect_refused(more, "has 10 entries; its header counts 11");
  std::vector<std::string> fewer = pieces_;
  fewer[0] = snapshot_header(9, 10, 0, hash);
  expect_refused(fewer, "more entries than the 9 its header counts");
  // The header alone, counting entries.
  expect_refused({pieces_[0]}, "has 0 entries; its header counts 10");
  expect_refused({snapshot_header(1, 0, 0, 0)}, "has 0 entries; its header counts 1");
}

TEST_F(KvSnapshotDamage, TrailingBytes) {
  std::vector<std::string> header = pieces_;
  header[0] += '\0';
  expect_refused(header, "1 trailing bytes after the kv snapshot header");
  std::vector<std::string> entry = pieces_;
  entry.back() += '\0';  // reads as the start of an 11th entry
  expect_refused(entry, "more entries than the 10 its header counts");
  std::vector<std::string> extra = pieces_;
  extra.push_back(snapshot_entry("zzz", "v", 1));
  expect_refused(extra, "more entries than the 10 its header counts");
}

TEST_F(KvSnapshotDamage, FieldsOutOfRange) {
  const uint64_t hash = source_.state_hash();
  std::vector<std::string> format = pieces_;
  format[0][0] = 2;
  expect_refused(format, "unsupported kv snapshot format 2 (expected 1)");
  expect_refused({snapshot_header(0, 3, 4, 0)},
                 "deleted version max 4 is above the mutation count 3");
  std::vector<std::string> empty = pieces_;
  empty.insert(empty.begin() + 3, "");
  expect_refused(empty, "piece 3 is empty");
  // Versions must be 1..mutations.
  expect_refused({snapshot_header(1, 5, 0, hash), snapshot_entry("a", "v", 0)},
                 "entry 0: version 0 is outside 1..5");
  expect_refused({snapshot_header(1, 5, 0, hash), snapshot_entry("a", "v", 6)},
                 "entry 0: version 6 is outside 1..5");
  // Sizes over the limits, refused before anything is read.
  std::string long_key;
  ByteWriter(long_key).varint(key_bytes_max + 1);
  expect_refused({snapshot_header(1, 5, 0, hash), long_key},
                 "entry 0: key is 16385 bytes; the limit is 16384");
  std::string long_value;
  ByteWriter(long_value).bytes("k");
  ByteWriter(long_value).varint(value_bytes_max + 1);
  expect_refused({snapshot_header(1, 5, 0, hash), long_value},
                 "entry 0: value is 8388609 bytes; the limit is 8388608");
  std::string bad_varint(11, '\xff');
  expect_refused({snapshot_header(1, 5, 0, hash), bad_varint}, "entry 0: truncated key length");
  expect_refused({snapshot_header(1, 5, 0, hash), std::string(snapshot_piece_bytes_max + 1, 'x')},
                 "piece 1 is 16777217 bytes; the limit is 16777216");
}

TEST_F(KvSnapshotDamage, AnErrorReadingAPieceIsReturnedAsItIs) {
  class FailingPieces final : public SnapshotPieces {
   public:
    explicit FailingPieces(std::string header) : header_(std::move(header)) {}
    Result<std::optional<std::string_view>> next() override {
      if (calls_++ == 0) return std::optional<std::string_view>(header_);
      return io_error("disk on fire");
    }

   private:
    std::string header_;
    int calls_ = 0;
  };
  FailingPieces pieces(pieces_[0]);
  KvApp app;
  const Status s = app.restore(pieces);
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_EQ(s.message(), "disk on fire");
  EXPECT_EQ(app.size(), 0u);
}

TEST_F(KvSnapshotDamage, TheUndamagedSnapshotRestores) {
  // The fixture's pieces themselves are fine: the refusals above are the damage's.
  expect_same_state(target_, source_);
}

}  // namespace
}  // namespace maroon::kv
