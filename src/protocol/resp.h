// RESP (the Redis serialization protocol): an incremental request parser and
// reply writers for RESP2 and RESP3 (docs/resp.md). Requests are the same in
// both versions; some reply types differ.
//
// Requests come in two shapes:
//   multibulk  "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n"
//              (what redis-cli and redis-benchmark send; n <= 0 is an empty
//              command and is skipped, as Redis does)
//   inline     one line of words ending in "\n" (an optional "\r" before it is
//              dropped), split on whitespace; double quotes (with \n \r \t \b
//              \a \\ \" \xHH escapes) and single quotes (with \') group words,
//              as in Redis's sdssplitargs. Empty lines are skipped.
// Numbers in headers are canonical decimals (no '+', no leading zeros), as
// Redis's string2ll accepts them.
//
// A multibulk request whose headers parse but exceed a limit (too many args,
// an arg too long) is skipped as it streams in: its bytes are consumed as
// they arrive, never buffered, and the request is answered with an error
// (kRejected). Bytes that are not RESP (a bad header, a missing CRLF, a
// negative bulk length) desynchronize the stream: kError, and the caller
// closes the connection.
//
// Replies are written as simple strings "+..", errors "-..", integers ":..",
// bulk strings "$<len>\r\n..\r\n" (null bulk "$-1") and arrays "*<n>\r\n"
// followed by n replies (null array "*-1"); after HELLO 3, RESP3's null "_",
// maps "%<n>", sets "~<n>", booleans "#t"/"#f" and doubles ",<v>" where a
// reply has that type (the Proto overloads below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "maroon/limits.h"

namespace maroon::protocol::resp {

// One argument (bulk string) of a request: larger ones are refused as soon as
// their header arrives, before their bytes are buffered.
inline constexpr size_t bulk_bytes_max = limits::op_bytes_max;
// Arguments of one request: MSET of op_keys_max pairs plus command and options.
inline constexpr size_t command_args_max = 2 * limits::op_keys_max + 8;
// One inline request line including its "\n".
inline constexpr size_t inline_bytes_max = 64 * 1024;
// "*<n>\r\n" / "$<n>\r\n" header lines: '-' and 19 digits fit with room to spare.
inline constexpr size_t header_bytes_max = 32;

// Redis's own bounds: a multibulk count over INT_MAX or a bulk length over
// proto-max-bulk-len (512 MiB by default) is a protocol error that closes the
// connection, as Redis answers it, not a request over maroon's limits to skip.
inline constexpr int64_t multibulk_count_max = INT32_MAX;
inline constexpr int64_t proto_bulk_bytes_max = int64_t{512} * 1024 * 1024;
static_assert(command_args_max < static_cast<uint64_t>(multibulk_count_max));
static_assert(bulk_bytes_max < static_cast<uint64_t>(proto_bulk_bytes_max));

static_assert(limits::key_bytes_max <= bulk_bytes_max);
static_assert(limits::value_bytes_max <= bulk_bytes_max);
static_assert(inline_bytes_max <= limits::connection_read_bytes_max);
static_assert(bulk_bytes_max + header_bytes_max < limits::connection_read_bytes_max);

enum class ParseStatus : uint8_t {
  kCommand,   // args() holds one complete request
  kNeedMore,  // the input ends inside a request: call again with more bytes
  // A well-formed request over a limit (more than command_args_max args, or
  // an arg over bulk_bytes_max) was skipped whole, without buffering it:
  // reply error() and go on with the next request.
  kRejected,
  kError,  // the input is not RESP: reply error(), then close the connection
};

// Parses requests one at a time from the front of a caller-owned buffer.
//
// Contract: after every call the caller drops consumed() bytes from the front
// of its buffer; the next call gets the remaining bytes plus whatever arrived
// since. The parser keeps its progress inside a partial request as offsets,
// so the buffer may be moved or compacted between calls, and a long request
// arriving in small pieces is scanned once, not once per piece.
//
// No heap allocation per request once the argument vectors have grown to the
// largest request seen (inline requests with quotes use a reused scratch).
class RequestParser {
 public:
  RequestParser();

  ParseStatus parse(std::string_view input);

  // After kCommand: the arguments, viewing the input passed to parse() (or the
  // parser's scratch for quoted inline requests). Valid until the next call
  // to parse() and while the caller's buffer bytes stay where they are.
  std::span<const std::string_view> args() const { return args_; }
  // Bytes of the input to drop: empty requests skipped and, after kCommand,
  // the request itself.
  size_t consumed() const { return consumed_; }
  // After kError: a Redis-style message without the leading '-', e.g.
  // "ERR Protocol error: invalid bulk length".
  const std::string& error() const { return error_; }
  // Forgets any partial request (for reusing the parser on a new stream).
  void reset();
  // Inside an over-limit request being skipped: its bytes are consumed as
  // they come, but the request is not over.
  bool skipping() const { return skipping_; }

 private:
  ParseStatus parse_inline(std::string_view rest);
  ParseStatus split_quoted(std::string_view line);
  ParseStatus fail(std::string message);
  // Starts skipping the rest of an over-limit request: `args_left` bulk
  // strings, the first of which has `data_left` data bytes still to come
  // when `in_data`.
  void start_skip(std::string message, size_t args_left, bool in_data, uint64_t data_left);
  // Consumes skipped bytes from `rest`; kRejected once the request is over.
  ParseStatus skip(std::string_view rest);

  // Inside a multibulk request: how many args it has (0 = not inside one),
  // the args complete so far as (offset, length) from the request's start,
  // and the offset of the next arg's "$" header.
  size_t argc_ = 0;
  std::vector<std::pair<size_t, size_t>> spans_;
  size_t pos_ = 0;

  // Skipping an over-limit request (kRejected at its end).
  bool skipping_ = false;
  uint64_t skip_args_left_ = 0;
  bool skip_in_data_ = false;
  uint64_t skip_data_left_ = 0;  // then CRLF
  std::string skip_error_;

  std::vector<std::string_view> args_;
  std::string scratch_;
  size_t consumed_ = 0;
  std::string error_;
};

// Reply writers: each appends one complete reply to `out`. Simple strings and
// errors may not contain CR or LF; any are replaced by spaces, as Redis does.
void append_simple(std::string& out, std::string_view s);
// `message` starts with the error code word: "ERR ...", "NOPROTO ...".
void append_error(std::string& out, std::string_view message);
void append_integer(std::string& out, int64_t v);
void append_bulk(std::string& out, std::string_view s);
void append_null_bulk(std::string& out);
// Followed by `n` replies appended by the caller.
void append_array_header(std::string& out, size_t n);
void append_null_array(std::string& out);

// RESP3 (a client switches with HELLO 3): the reply types that differ from
// RESP2 take the protocol, so a server writes one code path for both.
enum class Proto : uint8_t { kResp2 = 2, kResp3 = 3 };
// RESP2 "$-1" (null bulk) / RESP3 "_" (null).
void append_nil(std::string& out, Proto proto);
// RESP2 "*-1" (null array) / RESP3 "_".
void append_nil_array(std::string& out, Proto proto);
// Followed by n key-value pairs: RESP2 "*<2n>" (a flat array) / RESP3 "%<n>".
void append_map_header(std::string& out, size_t n, Proto proto);
// Followed by n members: RESP2 "*<n>" / RESP3 "~<n>".
void append_set_header(std::string& out, size_t n, Proto proto);
// RESP2 ":1"/":0" / RESP3 "#t"/"#f".
void append_boolean(std::string& out, bool v, Proto proto);
// RESP2 a bulk string of the shortest text that reads back as v / RESP3
// ",<same text>"; "inf", "-inf" and "nan" as Redis writes them.
void append_double(std::string& out, double v, Proto proto);

// Encodes a request as a multibulk array of bulk strings (what redis-cli
// sends); for tests, fuzzing and clients.
void append_command(std::string& out, std::span<const std::string_view> args);
std::string encode_command(std::initializer_list<std::string_view> args);

}  // namespace maroon::protocol::resp
