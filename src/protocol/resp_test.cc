#include "protocol/resp.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace maroon::protocol::resp {
namespace {

using namespace std::string_view_literals;
using Args = std::vector<std::string>;

struct Outcome {
  std::vector<Args> commands;
  bool error = false;
  std::string error_message;
  size_t leftover = 0;  // bytes still buffered at the end (a partial request)
};

// Feeds `input` in pieces of `chunk` bytes through a buffer managed as the
// server does: append, parse until kNeedMore, drop consumed() each time.
Outcome feed(std::string_view input, size_t chunk) {
  RequestParser parser;
  Outcome out;
  std::string buf;
  size_t fed = 0;
  while (fed < input.size() || !buf.empty()) {
    const size_t n = std::min(chunk, input.size() - fed);
    buf.append(input.substr(fed, n));
    fed += n;
    for (;;) {
      const ParseStatus s = parser.parse(buf);
      if (s == ParseStatus::kError) {
        out.error = true;
        out.error_message = parser.error();
        return out;
      }
      const size_t consumed = parser.consumed();
      if (s == ParseStatus::kCommand) {
        out.commands.emplace_back(parser.args().begin(), parser.args().end());
      }
      if (s == ParseStatus::kRejected) out.commands.push_back(Args{"<rejected>", parser.error()});
      buf.erase(0, consumed);
      if (s == ParseStatus::kNeedMore) break;
    }
    if (fed == input.size()) break;
  }
  out.leftover = buf.size();
  return out;
}

// Checks that `input` parses to `expected` whole, byte by byte, and in every
// two-piece split.
void expect_parses(std::string_view input, const std::vector<Args>& expected) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(std::string(input)));
  for (size_t chunk : {input.size() + 1, size_t{1}, size_t{2}, size_t{3}, size_t{7}}) {
    const Outcome o = feed(input, chunk);
    EXPECT_FALSE(o.error) << o.error_message << " chunk " << chunk;
    EXPECT_EQ(o.commands, expected) << "chunk " << chunk;
    EXPECT_EQ(o.leftover, 0u) << "chunk " << chunk;
  }
  // Every split point, with the second half arriving later.
  for (size_t cut = 0; cut <= input.size(); cut++) {
    RequestParser parser;
    std::string buf(input.substr(0, cut));
    std::vector<Args> got;
    bool second_fed = false;
    for (;;) {
      const ParseStatus s = parser.parse(buf);
      ASSERT_NE(s, ParseStatus::kError) << parser.error() << " cut " << cut;
      if (s == ParseStatus::kCommand) got.emplace_back(parser.args().begin(), parser.args().end());
      buf.erase(0, parser.consumed());
      if (s == ParseStatus::kNeedMore) {
        if (second_fed) break;
        buf.append(input.substr(cut));
        second_fed = true;
      }
    }
    EXPECT_EQ(got, expected) << "cut " << cut;
  }
}

void expect_error(std::string_view input, std::string_view message) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(std::string(input)));
  for (size_t chunk : {input.size() + 1, size_t{1}}) {
    const Outcome o = feed(input, chunk);
    EXPECT_TRUE(o.error) << "chunk " << chunk;
    EXPECT_EQ(o.error_message, message) << "chunk " << chunk;
  }
}

TEST(RespParser, MultibulkCommand) {
  expect_parses("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", {{"SET", "k", "hello"}});
}

TEST(RespParser, EmptyAndBinaryBulkStrings) {
  expect_parses("*3\r\n$0\r\n\r\n$4\r\na\r\nb\r\n$3\r\n\0\n\r\r\n"sv,
                {{"", "a\r\nb", std::string("\0\n\r", 3)}});
}

TEST(RespParser, EmptyArraysAreSkipped) {
  expect_parses("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n*0\r\n", {{"PING"}});
}

TEST(RespParser, InlineCommands) {
  expect_parses("PING\r\n", {{"PING"}});
  expect_parses("set  k\tv \n", {{"set", "k", "v"}});
  expect_parses("\r\n\n   \r\nGET k\r\n", {{"GET", "k"}});
}

TEST(RespParser, InlineQuotes) {
  expect_parses("SET \"a b\" 'c d'\r\n", {{"SET", "a b", "c d"}});
  expect_parses("SET k \"\\x41\\n\\\"\\\\\"\r\n", {{"SET", "k", "A\n\"\\"}});
  expect_parses("SET k 'it\\'s'\r\n", {{"SET", "k", "it's"}});
  expect_parses("ECHO \"\"\r\n", {{"ECHO", ""}});
  expect_error("SET \"abc\r\n", "ERR Protocol error: unbalanced quotes in request");
  expect_error("SET \"abc\"x\r\n", "ERR Protocol error: unbalanced quotes in request");
  expect_error("SET 'abc\r\n", "ERR Protocol error: unbalanced quotes in request");
}

TEST(RespParser, PipelinedMixedShapes) {
  std::string input;
  std::vector<Args> expected;
  for (int i = 0; i < 50; i++) {
    const std::string key = "key:" + std::to_string(i);
    input += encode_command({"SET", key, std::string(i, 'x')});
    expected.push_back({"SET", key, std::string(i, 'x')});
    if (i % 7 == 0) {
      input += "GET " + key + "\r\n";
      expected.push_back({"GET", key});
    }
  }
  expect_parses(input, expected);
}

TEST(RespParser, PartialRequestStaysBuffered) {
  const Outcome o = feed("*2\r\n$3\r\nGET\r\n$1\r\n", 100);
  EXPECT_FALSE(o.error);
  EXPECT_TRUE(o.commands.empty());
  EXPECT_EQ(o.leftover, 17u);
}

TEST(RespParser, ConsumedCountsSkippedEmptyRequestsOnNeedMore) {
  RequestParser parser;
  EXPECT_EQ(parser.parse("*0\r\n\r\n*1\r\n$4\r\nPI"), ParseStatus::kNeedMore);
  EXPECT_EQ(parser.consumed(), 6u);
  // The caller dropped those 6 bytes; the partial request continues.
  EXPECT_EQ(parser.parse("*1\r\n$4\r\nPING\r\n"), ParseStatus::kCommand);
  EXPECT_EQ(parser.consumed(), 14u);
  ASSERT_EQ(parser.args().size(), 1u);
  EXPECT_EQ(parser.args()[0], "PING");
}

TEST(RespParser, Errors) {
  expect_error("*x\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*1x\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*01\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*-0\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*+1\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*1\r\r", "ERR Protocol error: invalid multibulk length");
  expect_error("*99999999999999999999999\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*1\r\n:1\r\n", "ERR Protocol error: expected '$', got ':'");
  expect_error("*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length");
  expect_error("*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length");
  expect_error("*1\r\n$\r\n", "ERR Protocol error: invalid bulk length");
  expect_error("*1\r\n$1\n", "ERR Protocol error: invalid bulk length");
  expect_error("*1\r\n$99999999999999999999\r\n", "ERR Protocol error: invalid bulk length");
  expect_error("*1\r\n$3\r\nabcde", "ERR Protocol error: expected CRLF after bulk string");
  expect_error(std::string(inline_bytes_max, 'a'), "ERR Protocol error: too big inline request");
  // Past Redis's own bounds (INT_MAX arguments, 512 MiB per argument) a
  // header is a protocol error, as in Redis's unit/protocol tests, not a
  // request to skip.
  expect_error("*2147483648\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*3000000000\r\n", "ERR Protocol error: invalid multibulk length");
  expect_error("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
               "ERR Protocol error: invalid bulk length");
  expect_error("*1\r\n$536870913\r\n", "ERR Protocol error: invalid bulk length");
  const std::string over = "*" + std::to_string(command_args_max + 1) + "\r\n";
  expect_error(over + "$536870913\r\n", "ERR Protocol error: invalid bulk length");
}

TEST(RespParser, LimitsAreAccepted) {
  std::vector<std::string> words(command_args_max, "k");
  std::vector<std::string_view> views(words.begin(), words.end());
  std::string input;
  append_command(input, views);
  const Outcome o = feed(input, input.size());
  EXPECT_FALSE(o.error);
  ASSERT_EQ(o.commands.size(), 1u);
  EXPECT_EQ(o.commands[0].size(), command_args_max);

  std::string line(inline_bytes_max - 2, 'a');
  line += "\r\n";
  const Outcome o2 = feed(line, 4096);
  EXPECT_FALSE(o2.error);
  EXPECT_EQ(o2.commands.size(), 1u);
}

// An over-limit request is consumed as it arrives (never buffered) and
// answered with one error; the stream goes on with the next request.
TEST(RespParser, OversizeBulkIsSkippedWithoutBufferingIt) {
  RequestParser parser;
  const size_t len = bulk_bytes_max + 1;
  const std::string header = "*3\r\n$3\r\nSET\r\n$" + std::to_string(len) + "\r\n";
  EXPECT_EQ(parser.parse(header), ParseStatus::kNeedMore);
  EXPECT_EQ(parser.consumed(), header.size());
  const std::string chunk(64 * 1024, 'v');
  size_t sent = 0;
  while (sent + chunk.size() <= len) {
    ASSERT_EQ(parser.parse(chunk), ParseStatus::kNeedMore);
    ASSERT_EQ(parser.consumed(), chunk.size());
    sent += chunk.size();
  }
  const std::string tail = std::string(len - sent, 'v') + "\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
  ASSERT_EQ(parser.parse(tail), ParseStatus::kRejected);
  EXPECT_EQ(parser.error(), "ERR argument is " + std::to_string(len) + " bytes; the limit is " +
                                std::to_string(bulk_bytes_max));
  const std::string_view rest = std::string_view(tail).substr(parser.consumed());
  ASSERT_EQ(parser.parse(rest), ParseStatus::kCommand);
  EXPECT_EQ(parser.args()[0], "PING");

  RequestParser ok;
  const std::string max_header = "*1\r\n$" + std::to_string(bulk_bytes_max) + "\r\n";
  EXPECT_EQ(ok.parse(max_header), ParseStatus::kNeedMore);
}

TEST(RespParser, TooManyArgumentsAreSkippedInAnySplit) {
  std::vector<std::string> words(command_args_max + 1, "ab");
  std::vector<std::string_view> views(words.begin(), words.end());
  std::string input;
  append_command(input, views);
  input += encode_command({"GET", "k"});
  for (size_t chunk : {input.size() + 1, size_t{1}, size_t{5}, size_t{4096}}) {
    const Outcome o = feed(input, chunk);
    EXPECT_FALSE(o.error) << o.error_message;
    EXPECT_EQ(o.leftover, 0u);
    ASSERT_EQ(o.commands.size(), 2u) << chunk;
    EXPECT_EQ(o.commands[0], (Args{"<rejected>", "ERR request has " +
                                                     std::to_string(command_args_max + 1) +
                                                     " arguments; the limit is " +
                                                     std::to_string(command_args_max)}));
    EXPECT_EQ(o.commands[1], (Args{"GET", "k"}));
  }
}

// Garbage inside a request being skipped still desynchronizes the stream.
TEST(RespParser, GarbageWhileSkippingIsAnError) {
  const std::string over = "*" + std::to_string(command_args_max + 1) + "\r\n";
  expect_error(over + "$1\r\nab\r\n", "ERR Protocol error: expected CRLF after bulk string");
  expect_error(over + ":1\r\n", "ERR Protocol error: expected '$', got ':'");
  expect_error(over + "$-1\r\n", "ERR Protocol error: invalid bulk length");
  expect_error(over + "$x\r\n", "ERR Protocol error: invalid bulk length");
}

TEST(RespParser, ParserIsReusableAfterReset) {
  RequestParser parser;
  EXPECT_EQ(parser.parse("*2\r\n$3\r\nGET"), ParseStatus::kNeedMore);
  parser.reset();
  EXPECT_EQ(parser.parse("PING\r\n"), ParseStatus::kCommand);
  EXPECT_EQ(parser.args()[0], "PING");
}

TEST(RespWriter, EveryReplyShape) {
  std::string out;
  append_simple(out, "OK");
  append_error(out, "ERR bad\r\nthing");
  append_integer(out, -42);
  append_integer(out, INT64_MIN);
  append_bulk(out, "hi");
  append_bulk(out, "");
  append_null_bulk(out);
  append_array_header(out, 2);
  append_null_array(out);
  EXPECT_EQ(out,
            "+OK\r\n-ERR bad  thing\r\n:-42\r\n:-9223372036854775808\r\n$2\r\nhi\r\n$0\r\n\r\n"
            "$-1\r\n*2\r\n*-1\r\n");
}

TEST(RespWriter, Resp3ShapesAndTheirResp2Forms) {
  std::string r3, r2;
  for (auto [out, proto] : {std::pair{&r3, Proto::kResp3}, std::pair{&r2, Proto::kResp2}}) {
    append_nil(*out, proto);
    append_nil_array(*out, proto);
    append_map_header(*out, 2, proto);
    append_set_header(*out, 3, proto);
    append_boolean(*out, true, proto);
    append_boolean(*out, false, proto);
    append_double(*out, 1.5, proto);
    append_double(*out, -std::numeric_limits<double>::infinity(), proto);
  }
  EXPECT_EQ(r3, "_\r\n_\r\n%2\r\n~3\r\n#t\r\n#f\r\n,1.5\r\n,-inf\r\n");
  EXPECT_EQ(r2, "$-1\r\n*-1\r\n*4\r\n*3\r\n:1\r\n:0\r\n$3\r\n1.5\r\n$4\r\n-inf\r\n");
}

TEST(RespProperty, RandomCommandsRoundTrip) {
  EXPECT_TRUE(rc::check("encoded commands parse back equal, however they are split",
                        [](const std::vector<std::vector<std::string>>& raw, uint8_t chunk) {
                          std::string input;
                          std::vector<Args> expected;
                          for (const auto& cmd : raw) {
                            if (cmd.empty() || cmd.size() > 64) continue;
                            std::vector<std::string_view> views(cmd.begin(), cmd.end());
                            append_command(input, views);
                            expected.push_back(cmd);
                          }
                          const Outcome o = feed(input, size_t{chunk} + 1);
                          RC_ASSERT(!o.error);
                          RC_ASSERT(o.leftover == 0u);
                          RC_ASSERT(o.commands == expected);
                        }));
}

TEST(RespProperty, InlineWordsRoundTrip) {
  EXPECT_TRUE(rc::check("inline words without quotes split as written", [] {
    const auto words = *rc::gen::nonEmpty(rc::gen::container<std::vector<std::string>>(
        rc::gen::nonEmpty(rc::gen::container<std::string>(rc::gen::elementOf(
            std::string("abcXYZ019:_-*$+."))))));
    RC_PRE(words[0][0] != '*');
    std::string line;
    for (const auto& w : words) line += w + " ";
    line += "\r\n";
    const Outcome o = feed(line, 3);
    RC_ASSERT(!o.error);
    RC_ASSERT(o.commands.size() == 1u);
    RC_ASSERT(o.commands[0] == words);
  }));
}

TEST(RespProperty, ArbitraryBytesNeverCrash) {
  EXPECT_TRUE(rc::check("any bytes parse to commands, need-more or an error", [](uint8_t chunk) {
    // Bias towards RESP-looking bytes so the parser gets deep.
    const auto bytes = *rc::gen::container<std::string>(rc::gen::weightedOneOf<char>(
        {{4, rc::gen::elementOf(std::string("*$\r\n0123456789-"))}, {1, rc::gen::arbitrary<char>()}}));
    const Outcome whole = feed(bytes, bytes.size() + 1);
    const Outcome pieces = feed(bytes, size_t{chunk} + 1);
    // Splitting never changes the outcome.
    RC_ASSERT(whole.error == pieces.error);
    RC_ASSERT(whole.commands == pieces.commands);
    for (const auto& c : whole.commands) {
      RC_ASSERT(!c.empty());
      RC_ASSERT(c.size() <= command_args_max);
    }
  }));
}

}  // namespace
}  // namespace maroon::protocol::resp
