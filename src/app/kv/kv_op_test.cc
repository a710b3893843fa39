#include "app/kv/kv_op.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <string>
#include <vector>

#include "app/kv/kv_test_gen.h"
#include "common/codec.h"
#include "maroon/limits.h"

namespace maroon::kv {
namespace {

using limits::key_bytes_max;
using limits::op_bytes_max;
using limits::op_keys_max;
using limits::value_bytes_max;
using testing::KeySpace;
using testing::OwnedOp;

Op get_op(std::string_view k) { return Op{.type = OpType::kGet, .keys = {k}}; }
Op set_op(std::string_view k, std::string_view v, SetCond cond = SetCond::kAlways) {
  return Op{.type = OpType::kSet, .cond = cond, .keys = {k}, .values = {v}};
}

std::string bytes_of(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

void expect_status(const Status& s, Code code, std::string_view message_part) {
  EXPECT_EQ(s.code(), code) << s.to_string();
  EXPECT_NE(s.message().find(message_part), std::string::npos)
      << "message: " << s.message() << "\nexpected to contain: " << message_part;
}

TEST(KvOp, NamesAndReadOnlyness) {
  struct Row {
    OpType type;
    const char* name;
    bool read_only;
  };
  const Row rows[] = {
      {OpType::kGet, "GET", true},        {OpType::kSet, "SET", false},
      {OpType::kDel, "DEL", false},       {OpType::kCas, "CAS", false},
      {OpType::kIncrBy, "INCRBY", false}, {OpType::kMget, "MGET", true},
      {OpType::kMset, "MSET", false},     {OpType::kExists, "EXISTS", true},
      {OpType::kScan, "SCAN", true},      {OpType::kSize, "SIZE", true},
      {OpType::kFlush, "FLUSH", false},
  };
  for (const Row& row : rows) {
    EXPECT_STREQ(op_name(row.type), row.name);
    EXPECT_EQ(is_read_only(row.type), row.read_only) << row.name;
  }
  EXPECT_STREQ(op_name(static_cast<OpType>(0)), "UNKNOWN");
  EXPECT_FALSE(is_read_only(static_cast<OpType>(99)));
}

TEST(KvOp, ValidateAcceptsEveryOpShape) {
  const std::vector<Op> ops = {
      get_op("k"),
      get_op(""),  // the empty key is a key
      set_op("k", "v"),
      set_op("k", "", SetCond::kIfAbsent),
      set_op("k", "v", SetCond::kIfPresent),
      Op{.type = OpType::kDel, .keys = {"a", "b", "a"}},
      Op{.type = OpType::kCas, .keys = {"k"}, .values = {"new"}, .expected = "old"},
      Op{.type = OpType::kCas, .keys = {"k"}, .values = {"new"}},
      Op{.type = OpType::kIncrBy, .delta = -5, .keys = {"n"}},
      Op{.type = OpType::kMget, .keys = {"a", "b"}},
      Op{.type = OpType::kMset, .keys = {"a", "b"}, .values = {"1", "2"}},
      Op{.type = OpType::kExists, .keys = {"a"}},
      Op{.type = OpType::kScan, .keys = {"p"}},
      Op{.type = OpType::kScan, .limit = op_keys_max, .keys = {"p", "p1"}},
      Op{.type = OpType::kSize},
      Op{.type = OpType::kFlush},
  };
  for (const Op& op : ops) {
    EXPECT_TRUE(validate(op).is_ok()) << op_name(op.type) << ": " << validate(op).to_string();
    const std::string bytes = encode_op(op);
    Result<Op> back = decode_op(bytes);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(back.value(), op) << op_name(op.type);
  }
}

TEST(KvOp, ValidateRejectsBadShapes) {
  struct Row {
    Op op;
    Code code;
    const char* message;
  };
  const std::vector<std::string_view> too_many(op_keys_max + 1, "k");
  const std::vector<std::string_view> most(op_keys_max, "k");
  const Row rows[] = {
      {Op{.type = static_cast<OpType>(0)}, Code::kInvalidArgument, "unknown kv op type 0"},
      {Op{.type = static_cast<OpType>(14)}, Code::kInvalidArgument, "unknown kv op type 14"},
      {Op{.type = OpType::kGet}, Code::kInvalidArgument, "GET takes exactly 1 key, got 0"},
      {Op{.type = OpType::kGet, .keys = {"a", "b"}}, Code::kInvalidArgument,
       "GET takes exactly 1 key, got 2"},
      {Op{.type = OpType::kGet, .keys = {"a"}, .values = {"v"}}, Code::kInvalidArgument,
       "GET takes 0 value(s), got 1"},
      {Op{.type = OpType::kSet, .keys = {"a"}}, Code::kInvalidArgument,
       "SET takes 1 value(s), got 0"},
      {Op{.type = OpType::kSet, .cond = static_cast<SetCond>(3), .keys = {"a"}, .values = {"v"}},
       Code::kInvalidArgument, "unknown SET condition 3"},
      {Op{.type = OpType::kGet, .cond = SetCond::kIfAbsent, .keys = {"a"}}, Code::kInvalidArgument,
       "a set condition is only for SET, not GET"},
      {Op{.type = OpType::kSet, .delta = 1, .keys = {"a"}, .values = {"v"}}, Code::kInvalidArgument,
       "a delta is only for INCRBY, not SET"},
      {Op{.type = OpType::kGet, .limit = 1, .keys = {"a"}}, Code::kInvalidArgument,
       "a limit is only for SCAN, not GET"},
      {Op{.type = OpType::kSet, .keys = {"a"}, .values = {"v"}, .expected = "x"},
       Code::kInvalidArgument, "an expected value is only for CAS, not SET"},
      {Op{.type = OpType::kDel}, Code::kInvalidArgument, "DEL needs at least 1 key"},
      {Op{.type = OpType::kMget}, Code::kInvalidArgument, "MGET needs at least 1 key"},
      {Op{.type = OpType::kExists}, Code::kInvalidArgument, "EXISTS needs at least 1 key"},
      {Op{.type = OpType::kMset}, Code::kInvalidArgument, "MSET needs at least 1 key"},
      {Op{.type = OpType::kDel, .keys = Views(too_many.begin(), too_many.end())}, Code::kTooLarge,
       "DEL has 16385 keys; the limit is 16384"},
      {Op{.type = OpType::kMget, .keys = Views(too_many.begin(), too_many.end())}, Code::kTooLarge, "MGET has 16385 keys"},
      {Op{.type = OpType::kMset, .keys = {"a", "b"}, .values = {"1"}}, Code::kInvalidArgument,
       "MSET has 2 keys but 1 values"},
      {Op{.type = OpType::kCas, .keys = {"a"}}, Code::kInvalidArgument,
       "CAS takes 1 value(s), got 0"},
      {Op{.type = OpType::kCas, .keys = {"a", "b"}, .values = {"v"}}, Code::kInvalidArgument,
       "CAS takes exactly 1 key, got 2"},
      {Op{.type = OpType::kIncrBy}, Code::kInvalidArgument, "INCRBY takes exactly 1 key"},
      {Op{.type = OpType::kIncrBy, .keys = {"a"}, .values = {"1"}}, Code::kInvalidArgument,
       "INCRBY takes 0 value(s), got 1"},
      {Op{.type = OpType::kScan}, Code::kInvalidArgument,
       "SCAN takes a prefix and an optional start-after key, got 0 keys"},
      {Op{.type = OpType::kScan, .keys = {"a", "b", "c"}}, Code::kInvalidArgument, "got 3 keys"},
      {Op{.type = OpType::kScan, .limit = op_keys_max + 1, .keys = {"a"}}, Code::kTooLarge,
       "SCAN limit is 16385; the limit is 16384"},
      {Op{.type = OpType::kSize, .keys = {"a"}}, Code::kInvalidArgument,
       "SIZE takes no keys, got 1"},
      {Op{.type = OpType::kFlush, .keys = {"a"}}, Code::kInvalidArgument,
       "FLUSH takes no keys, got 1"},
      {Op{.type = OpType::kFlush, .values = {"v"}}, Code::kInvalidArgument,
       "FLUSH takes 0 value(s), got 1"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.message);
    expect_status(validate(row.op), row.code, row.message);
  }
  EXPECT_TRUE(validate(Op{.type = OpType::kDel, .keys = Views(most.begin(), most.end())}).is_ok());
}

TEST(KvOp, KeyLimitIs16KiB) {
  const std::string ok_key(key_bytes_max, 'k');
  const std::string big_key(key_bytes_max + 1, 'k');
  EXPECT_TRUE(validate(get_op(ok_key)).is_ok());
  EXPECT_TRUE(decode_op(encode_op(set_op(ok_key, "v"))).is_ok());
  EXPECT_EQ(validate(get_op(big_key)).code(), Code::kTooLarge);
  EXPECT_EQ(validate(get_op(big_key)).message(), "key is 16385 bytes; the limit is 16384");
  EXPECT_EQ(validate(get_op(std::string(20000, 'k'))).message(),
            "key is 20000 bytes; the limit is 16384");
  // Every key of a multi-key op and both SCAN keys are checked.
  expect_status(validate(Op{.type = OpType::kMget, .keys = {"a", big_key}}), Code::kTooLarge,
                "key is 16385 bytes");
  expect_status(validate(Op{.type = OpType::kScan, .keys = {"a", big_key}}), Code::kTooLarge,
                "key is 16385 bytes");

  // The same limit holds for bytes off the wire.
  std::string wire = bytes_of({kOpFormatVersion, static_cast<int>(OpType::kGet)});
  ByteWriter(wire).bytes(big_key);
  Result<Op> decoded = decode_op(wire);
  ASSERT_FALSE(decoded.is_ok());
  EXPECT_EQ(decoded.status().message(), "key is 16385 bytes; the limit is 16384");
}

TEST(KvOp, ValueLimitIs8MiB) {
  const std::string ok_value(value_bytes_max, 'v');
  const std::string big_value(value_bytes_max + 1, 'v');
  EXPECT_TRUE(validate(set_op("k", ok_value)).is_ok());
  // The largest SET (largest key and value) fits an op.
  const std::string max_key(key_bytes_max, 'k');
  const std::string max_set_bytes = encode_op(set_op(max_key, ok_value));
  Result<Op> max_set = decode_op(max_set_bytes);
  ASSERT_TRUE(max_set.is_ok()) << max_set.status().to_string();
  EXPECT_EQ(max_set->values[0].size(), value_bytes_max);

  EXPECT_EQ(validate(set_op("k", big_value)).code(), Code::kTooLarge);
  EXPECT_EQ(validate(set_op("k", big_value)).message(),
            "value is 8388609 bytes; the limit is 8388608");
  expect_status(
      validate(Op{.type = OpType::kCas, .keys = {"k"}, .values = {"v"}, .expected = big_value}),
      Code::kTooLarge, "expected value is 8388609 bytes");
  expect_status(validate(Op{.type = OpType::kMset, .keys = {"a", "b"}, .values = {"v", big_value}}),
                Code::kTooLarge, "value is 8388609 bytes");

  std::string wire = bytes_of({kOpFormatVersion, static_cast<int>(OpType::kSet), 0});
  ByteWriter w(wire);
  w.bytes("k");
  w.bytes(big_value);
  expect_status(decode_op(wire).status(), Code::kTooLarge, "value is 8388609 bytes");
}

TEST(KvOp, EncodedSizeIsCappedAtOpBytesMax) {
  // Three 4 MiB values are each fine, but together exceed op_bytes_max (12 MiB).
  const std::string value(4 * 1024 * 1024, 'v');
  const Op two{.type = OpType::kMset, .keys = {"a", "b"}, .values = {value, value}};
  EXPECT_TRUE(validate(two).is_ok());
  const Op three{.type = OpType::kMset, .keys = {"a", "b", "c"}, .values = {value, value, value}};
  expect_status(validate(three), Code::kTooLarge, "MSET op is 1258");
  expect_status(validate(three), Code::kTooLarge, "the limit is 12582912");

  // Input longer than op_bytes_max is refused before it is parsed.
  expect_status(decode_op(std::string(op_bytes_max + 1, '\x01')).status(), Code::kTooLarge,
                "op is 12582913 bytes; the limit is 12582912");
}

TEST(KvOp, MultiAndWatchRoundTripAndRefuseNesting) {
  const std::string set_k = encode_op(set_op("k", "v"));
  const std::string get_k = encode_op(get_op("k"));
  Op multi{.type = OpType::kMulti,
           .keys = {"w"},
           .stamps = {KeyStamp{.present = true, .version = 300}},
           .ops = {set_k, get_k}};
  const std::string bytes = encode_op(multi);
  // version, type, 1 watch ("w", present, varint 300), 2 ops.
  std::string want = bytes_of({1, 12, 1, 1, 'w', 1, 0xac, 0x02, 2});
  want += static_cast<char>(set_k.size());
  want += set_k;
  want += static_cast<char>(get_k.size());
  want += get_k;
  EXPECT_EQ(bytes, want);
  Result<Op> back = decode_op(bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, multi);
  EXPECT_FALSE(is_read_only(OpType::kMulti));
  EXPECT_TRUE(is_read_only(OpType::kWatch));
  EXPECT_EQ(encode_op(Op{.type = OpType::kWatch, .keys = {"a"}}), bytes_of({1, 11, 1, 1, 'a'}));

  const std::string nested = bytes;
  expect_status(validate(Op{.type = OpType::kMulti, .ops = {nested}}), Code::kInvalidArgument,
                "MULTI cannot run inside MULTI");
  expect_status(validate(Op{.type = OpType::kMulti, .ops = {"junk"}}), Code::kInvalidArgument,
                "MULTI sub-op: ");
  // A deeply nested MULTI is refused at the first level, without recursing.
  std::string deep = get_k;
  for (int i = 0; i < 5000; i++) {
    std::string outer = bytes_of({1, 12, 0, 1});
    ByteWriter(outer).bytes(deep);
    deep = std::move(outer);
  }
  expect_status(decode_op(deep).status(), Code::kInvalidArgument, "MULTI cannot run inside MULTI");
  expect_status(validate(Op{.type = OpType::kMulti, .keys = {"a"}}), Code::kInvalidArgument,
                "MULTI has 1 watched keys but 0 stamps");
  expect_status(validate(Op{.type = OpType::kGet, .keys = {"a"}, .ops = {get_k}}),
                Code::kInvalidArgument, "only for MULTI");
  EXPECT_TRUE(validate(Op{.type = OpType::kMulti}).is_ok());  // an empty EXEC
}

TEST(KvOp, StampsAndRepliesRoundTrip) {
  const std::vector<KeyStamp> stamps = {KeyStamp{.present = false, .version = 7},
                                         KeyStamp{true, 1}};
  std::string bytes;
  encode_stamps_reply(stamps, bytes);
  EXPECT_EQ(bytes, bytes_of({1, 7, 2, 0, 7, 1, 1}));
  EXPECT_EQ(decode_stamps_reply(bytes).value(), stamps);
  expect_status(decode_reply(bytes).status(), Code::kInvalidArgument, "unknown kv reply kind 7");
  const MultiReply multi{.replies = {encode_reply(Reply::ok())}};
  bytes.clear();
  encode_multi_reply(multi, bytes);
  EXPECT_EQ(bytes, bytes_of({1, 8, 1, 2, 1, 0}));
  EXPECT_EQ(decode_multi_reply(bytes).value(), multi);
  bytes.clear();
  encode_multi_reply(MultiReply{.aborted = true}, bytes);
  EXPECT_EQ(bytes, bytes_of({1, 1}));
  EXPECT_TRUE(decode_multi_reply(bytes)->aborted);
  // A refused op's Error reply is its Status.
  expect_status(decode_multi_reply(encode_reply(Reply::of_error(Code::kTooLarge, "big"))).status(),
                Code::kTooLarge, "big");
}

// The byte layouts written down in docs/formats/kv.md.
TEST(KvOp, EncodingMatchesTheDocumentedLayout) {
  EXPECT_EQ(encode_op(get_op("k")), bytes_of({1, 1, 1, 'k'}));
  EXPECT_EQ(encode_op(set_op("k", "vv", SetCond::kIfAbsent)),
            bytes_of({1, 2, 1, 1, 'k', 2, 'v', 'v'}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kDel, .keys = {"a", "bc"}}),
            bytes_of({1, 3, 2, 1, 'a', 2, 'b', 'c'}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kCas, .keys = {"k"}, .values = {"n"}, .expected = "o"}),
            bytes_of({1, 4, 1, 'k', 1, 1, 'o', 1, 'n'}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kCas, .keys = {"k"}, .values = {"n"}}),
            bytes_of({1, 4, 1, 'k', 0, 1, 'n'}));
  // delta -2 zigzags to 3.
  EXPECT_EQ(encode_op(Op{.type = OpType::kIncrBy, .delta = -2, .keys = {"k"}}),
            bytes_of({1, 5, 1, 'k', 3}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kMset, .keys = {"a"}, .values = {"1"}}),
            bytes_of({1, 7, 1, 1, 'a', 1, '1'}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kScan, .limit = 200, .keys = {"p", "q"}}),
            bytes_of({1, 9, 1, 'p', 0xc8, 0x01, 1, 1, 'q'}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kScan, .keys = {""}}), bytes_of({1, 9, 0, 0, 0}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kSize}), bytes_of({1, 10}));
  EXPECT_EQ(encode_op(Op{.type = OpType::kFlush}), bytes_of({1, 13}));

  EXPECT_EQ(encode_reply(Reply::ok()), bytes_of({1, 0}));
  EXPECT_EQ(encode_reply(Reply::nil()), bytes_of({1, 1}));
  EXPECT_EQ(encode_reply(Reply::of_int(-1)), bytes_of({1, 2, 1}));
  EXPECT_EQ(encode_reply(Reply::of_value("v")), bytes_of({1, 3, 1, 'v'}));
  EXPECT_EQ(encode_reply(Reply{.kind = Reply::Kind::kValues, .values = {"v", std::nullopt}}),
            bytes_of({1, 4, 2, 1, 1, 'v', 0}));
  EXPECT_EQ(encode_reply(Reply{.kind = Reply::Kind::kPairs, .pairs = {{"k", "v"}}}),
            bytes_of({1, 5, 1, 1, 'k', 1, 'v'}));
  EXPECT_EQ(encode_reply(Reply::of_error(Code::kConflict, "no")),
            bytes_of({1, 6, static_cast<int>(Code::kConflict), 2, 'n', 'o'}));
}

TEST(KvOp, DecodeRejectsMalformedInput) {
  struct Row {
    std::string bytes;
    Code code;
    const char* message;
  };
  const Row rows[] = {
      {"", Code::kInvalidArgument, "empty kv op"},
      {bytes_of({2, 1, 1, 'k'}), Code::kInvalidArgument,
       "unsupported kv op format version 2 (expected 1)"},
      {bytes_of({1}), Code::kInvalidArgument, "malformed kv op"},
      {bytes_of({1, 0}), Code::kInvalidArgument, "unknown kv op type 0"},
      {bytes_of({1, 14}), Code::kInvalidArgument, "unknown kv op type 14"},
      {bytes_of({1, 13, 0}), Code::kInvalidArgument, "1 trailing bytes after kv FLUSH op"},
      {bytes_of({1, 1, 1, 'k', 0}), Code::kInvalidArgument, "1 trailing bytes after kv GET op"},
      {bytes_of({1, 10, 0, 0}), Code::kInvalidArgument, "2 trailing bytes after kv SIZE op"},
      {bytes_of({1, 1, 2, 'k'}), Code::kInvalidArgument, "malformed kv op"},
      {bytes_of({1, 2, 3, 1, 'k', 1, 'v'}), Code::kInvalidArgument, "unknown SET condition 3"},
      {bytes_of({1, 4, 1, 'k', 2, 1, 'n'}), Code::kInvalidArgument, "malformed kv op"},
      {bytes_of({1, 9, 0, 0, 2}), Code::kInvalidArgument, "malformed kv op"},
      {bytes_of({1, 9, 0, 0x81, 0x80, 0x01, 0}), Code::kTooLarge, "SCAN limit is 16385"},
      {bytes_of({1, 3, 0}), Code::kInvalidArgument, "DEL needs at least 1 key"},
      {bytes_of({1, 6, 0x81, 0x80, 0x01}), Code::kTooLarge, "MGET has 16385 entries; the limit is 16384"},
      // A count of 2^63 keys: refused before anything is reserved.
      {bytes_of({1, 3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}),
       Code::kTooLarge, "DEL has 9223372036854775808 entries"},
      // 1000 keys claimed, 2 bytes present.
      {bytes_of({1, 3, 0xe8, 0x07, 1, 'k'}), Code::kInvalidArgument, "malformed kv DEL"},
      {bytes_of({1, 7, 2, 1, 'a', 1, '1', 1, 'b'}), Code::kInvalidArgument, "malformed kv op"},
      // An 11-byte varint overflows 64 bits.
      {bytes_of({1, 5, 1, 'k', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),
       Code::kInvalidArgument, "malformed kv op"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.message);
    Result<Op> op = decode_op(row.bytes);
    ASSERT_FALSE(op.is_ok());
    expect_status(op.status(), row.code, row.message);
  }
}

TEST(KvOp, EveryTruncationOfAValidOpFails) {
  EXPECT_TRUE(rc::check("a strict prefix of an encoded op never decodes", [] {
    OwnedOp owned;
    testing::random_op(owned, KeySpace::kArbitrary);
    const std::string bytes = encode_op(owned.op);
    for (size_t n = 0; n < bytes.size(); n++)
      RC_ASSERT(!decode_op(std::string_view(bytes).substr(0, n)).is_ok());
  }));
}

TEST(KvOp, RandomOpsRoundTrip) {
  EXPECT_TRUE(rc::check("decode_op(encode_op(op)) == op", [] {
    OwnedOp owned;
    testing::random_op(owned, *rc::gen::element(KeySpace::kSmall, KeySpace::kArbitrary));
    RC_ASSERT(validate(owned.op).is_ok());
    const std::string bytes = encode_op(owned.op);
    Result<Op> back = decode_op(bytes);
    RC_ASSERT(back.is_ok());
    RC_ASSERT(back.value() == owned.op);
    // Appending encodes after what is already there.
    std::string appended = "xy";
    encode_op(owned.op, appended);
    RC_ASSERT(appended == "xy" + bytes);
  }));
}

// Whatever decode_op accepts is a valid op that re-encodes to an equal op.
void check_decoded_is_sound(std::string_view bytes) {
  Result<Op> op = decode_op(bytes);
  if (!op.is_ok()) {
    RC_ASSERT(!op.status().message().empty());
    return;
  }
  RC_ASSERT(validate(op.value()).is_ok());
  const std::string reencoded = encode_op(op.value());  // the views below point into it
  Result<Op> again = decode_op(reencoded);
  RC_ASSERT(again.is_ok());
  RC_ASSERT(again.value() == op.value());
}

TEST(KvOp, RandomBytesNeverCrashDecode) {
  EXPECT_TRUE(rc::check("decode_op on arbitrary bytes", [](const std::string& bytes) {
    check_decoded_is_sound(bytes);
    // With a valid header, so the field parsers get exercised too.
    const std::string with_header =
        bytes_of({kOpFormatVersion, *rc::gen::inRange<int>(0, 12)}) + bytes;
    check_decoded_is_sound(with_header);
  }));
}

TEST(KvOp, MutatedOpsNeverCrashDecode) {
  EXPECT_TRUE(rc::check("decode_op on a valid op with a byte changed, added or removed", [] {
    OwnedOp owned;
    testing::random_op(owned, KeySpace::kSmall);
    std::string bytes = encode_op(owned.op);
    const size_t at = *rc::gen::inRange<size_t>(0, bytes.size());
    const auto byte = static_cast<char>(*rc::gen::arbitrary<uint8_t>());
    switch (*rc::gen::inRange(0, 3)) {
      case 0:
        bytes[at] = byte;
        break;
      case 1:
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), byte);
        break;
      default:
        bytes.erase(at, 1);
        break;
    }
    check_decoded_is_sound(bytes);
  }));
}

TEST(KvReply, RandomRepliesRoundTrip) {
  EXPECT_TRUE(rc::check("decode_reply(encode_reply(r)) == r", [] {
    const Reply reply = testing::random_reply();
    Result<Reply> back = decode_reply(encode_reply(reply));
    RC_ASSERT(back.is_ok());
    RC_ASSERT(back.value() == reply);
  }));
}

TEST(KvReply, DecodeRejectsMalformedInput) {
  struct Row {
    std::string bytes;
    Code code;
    const char* message;
  };
  const Row rows[] = {
      {"", Code::kInvalidArgument, "empty kv reply"},
      {bytes_of({0, 0}), Code::kInvalidArgument, "unsupported kv reply format version 0"},
      {bytes_of({1}), Code::kInvalidArgument, "malformed kv reply"},
      {bytes_of({1, 7}), Code::kInvalidArgument, "unknown kv reply kind 7"},
      {bytes_of({1, 0, 0}), Code::kInvalidArgument, "1 trailing bytes after kv reply"},
      {bytes_of({1, 2}), Code::kInvalidArgument, "malformed kv reply"},
      {bytes_of({1, 3, 5, 'a'}), Code::kInvalidArgument, "malformed kv reply"},
      {bytes_of({1, 4, 1, 2}), Code::kInvalidArgument, "malformed kv reply"},
      {bytes_of({1, 4, 0x81, 0x80, 0x01}), Code::kTooLarge, "reply has 16385 entries"},
      {bytes_of({1, 5, 3, 0, 0}), Code::kInvalidArgument, "malformed kv reply"},
      {bytes_of({1, 6, 0, 0}), Code::kInvalidArgument, "bad error code 0 in kv reply"},
      {bytes_of({1, 6, 10, 0}), Code::kInvalidArgument, "bad error code 10 in kv reply"},
      {bytes_of({1, 6, 1}), Code::kInvalidArgument, "malformed kv reply"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.message);
    Result<Reply> reply = decode_reply(row.bytes);
    ASSERT_FALSE(reply.is_ok());
    expect_status(reply.status(), row.code, row.message);
  }
  expect_status(decode_reply(std::string(limits::reply_bytes_max + 1, '\x01')).status(),
                Code::kTooLarge, "reply is 12582913 bytes; the limit is 12582912");
}

TEST(KvReply, RandomBytesNeverCrashDecode) {
  EXPECT_TRUE(rc::check("decode_reply on arbitrary bytes", [](const std::string& bytes) {
    for (const std::string& input :
         {bytes, bytes_of({kReplyFormatVersion, *rc::gen::inRange<int>(0, 8)}) + bytes}) {
      Result<Reply> reply = decode_reply(input);
      if (!reply.is_ok()) continue;
      // What decodes re-encodes to an equal reply.
      Result<Reply> again = decode_reply(encode_reply(reply.value()));
      RC_ASSERT(again.is_ok());
      RC_ASSERT(again.value() == reply.value());
    }
  }));
}

TEST(KvReply, EveryTruncationOfAValidReplyFails) {
  EXPECT_TRUE(rc::check("a strict prefix of an encoded reply never decodes", [] {
    const std::string bytes = encode_reply(testing::random_reply());
    for (size_t n = 0; n < bytes.size(); n++)
      RC_ASSERT(!decode_reply(std::string_view(bytes).substr(0, n)).is_ok());
  }));
}

}  // namespace
}  // namespace maroon::kv
