#include "protocol/resp.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "maroon/assert.h"

namespace maroon::protocol::resp {
namespace {

enum class Header : uint8_t { kOk, kNeedMore, kBad };

// More digits than this cannot be a length we accept, and 18 digits cannot
// overflow int64_t.
constexpr size_t kHeaderDigitsMax = 18;
static_assert(1 + 1 + kHeaderDigitsMax + 2 <= header_bytes_max);

// Reads "<type char><canonical decimal>\r\n" at the front of `in`. On kOk sets
// `value` and `length` (the whole line including CRLF). Fails as soon as a
// byte cannot belong to a valid header, so garbage is refused without
// waiting for more of it.
Header read_header(std::string_view in, int64_t& value, size_t& length) {
  MAROON_ASSERT(!in.empty());
  size_t i = 1;
  bool negative = false;
  if (i < in.size() && in[i] == '-') {
    negative = true;
    i++;
  }
  const size_t digits_begin = i;
  uint64_t v = 0;
  for (; i < in.size() && in[i] != '\r'; i++) {
    const char c = in[i];
    if (c < '0' || c > '9') return Header::kBad;
    if (i - digits_begin >= kHeaderDigitsMax) return Header::kBad;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (i + 1 >= in.size()) return Header::kNeedMore;
  const size_t digits = i - digits_begin;
  if (in[i + 1] != '\n' || digits == 0) return Header::kBad;
  if (in[digits_begin] == '0' && (digits > 1 || negative)) return Header::kBad;
  value = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  length = i + 2;
  return Header::kOk;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends `s` with CR and LF replaced by spaces: simple strings and errors
// are one line.
void append_line(std::string& out, char type, std::string_view s) {
  out.push_back(type);
  const size_t begin = out.size();
  out.append(s);
  for (size_t i = begin; i < out.size(); i++) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append("\r\n", 2);
}

void append_number_line(std::string& out, char type, int64_t v) {
  char buf[24];
  buf[0] = type;
  auto [end, ec] = std::to_chars(buf + 1, buf + sizeof(buf) - 2, v);
  MAROON_ASSERT(ec == std::errc());
  end[0] = '\r';
  end[1] = '\n';
  out.append(buf, static_cast<size_t>(end + 2 - buf));
}

}  // namespace

RequestParser::RequestParser() {
  args_.reserve(16);
  spans_.reserve(16);
}

void RequestParser::reset() {
  skipping_ = false;
  skip_args_left_ = 0;
  skip_in_data_ = false;
  skip_data_left_ = 0;
  argc_ = 0;
  pos_ = 0;
  spans_.clear();
  args_.clear();
  consumed_ = 0;
}

ParseStatus RequestParser::fail(std::string message) {
  error_ = std::move(message);
  reset();
  return ParseStatus::kError;
}

void RequestParser::start_skip(std::string message, size_t args_left, bool in_data,
                               uint64_t data_left) {
  MAROON_ASSERT(!skipping_ && args_left > 0);
  skipping_ = true;
  skip_error_ = std::move(message);
  skip_args_left_ = args_left;
  skip_in_data_ = in_data;
  skip_data_left_ = data_left;
  argc_ = 0;
  pos_ = 0;
  spans_.clear();
}

ParseStatus RequestParser::skip(std::string_view rest) {
  size_t pos = 0;
  for (;;) {
    if (skip_in_data_) {
      const uint64_t take = std::min<uint64_t>(skip_data_left_, rest.size() - pos);
      pos += static_cast<size_t>(take);
      skip_data_left_ -= take;
      if (skip_data_left_ > 0 || rest.size() - pos < 2) break;
      if (rest[pos] != '\r' || rest[pos + 1] != '\n') {
        return fail("ERR Protocol error: expected CRLF after bulk string");
      }
      pos += 2;
      skip_in_data_ = false;
      skip_args_left_--;
    }
    if (skip_args_left_ == 0) {
      consumed_ += pos;
      skipping_ = false;
      error_ = std::move(skip_error_);
      return ParseStatus::kRejected;
    }
    if (pos == rest.size()) break;
    if (rest[pos] != '$') {
      return fail(std::string("ERR Protocol error: expected '$', got '") + rest[pos] + "'");
    }
    int64_t len = 0;
    size_t header = 0;
    const Header h = read_header(rest.substr(pos), len, header);
    if (h == Header::kNeedMore) break;
    if (h == Header::kBad || len < 0 || len > proto_bulk_bytes_max) {
      return fail("ERR Protocol error: invalid bulk length");
    }
    pos += header;
    skip_in_data_ = true;
    skip_data_left_ = static_cast<uint64_t>(len);
  }
  consumed_ += pos;
  return ParseStatus::kNeedMore;
}

ParseStatus RequestParser::parse(std::string_view input) {
  consumed_ = 0;
  args_.clear();
  for (;;) {
    const std::string_view rest = input.substr(consumed_);
    if (skipping_) return skip(rest);
    if (argc_ == 0) {
      if (rest.empty()) return ParseStatus::kNeedMore;
      if (rest[0] != '*') {
        const ParseStatus s = parse_inline(rest);
        if (s == ParseStatus::kCommand && args_.empty()) continue;  // empty line
        return s;
      }
      int64_t count = 0;
      size_t header = 0;
      switch (read_header(rest, count, header)) {
        case Header::kNeedMore:
          return ParseStatus::kNeedMore;
        case Header::kBad:
          return fail("ERR Protocol error: invalid multibulk length");
        case Header::kOk:
          break;
      }
      if (count > multibulk_count_max) return fail("ERR Protocol error: invalid multibulk length");
      if (count <= 0) {  // an empty request: nothing to run (Redis skips it too)
        consumed_ += header;
        continue;
      }
      if (static_cast<uint64_t>(count) > command_args_max) {
        consumed_ += header;
        start_skip(fmt::format("ERR request has {} arguments; the limit is {}", count,
                               command_args_max),
                   static_cast<size_t>(count), false, 0);
        return skip(input.substr(consumed_));
      }
      argc_ = static_cast<size_t>(count);
      spans_.clear();
      pos_ = header;
    }

    while (spans_.size() < argc_) {
      if (pos_ >= rest.size()) return ParseStatus::kNeedMore;
      if (rest[pos_] != '$') {
        return fail(std::string("ERR Protocol error: expected '$', got '") + rest[pos_] + "'");
      }
      int64_t len = 0;
      size_t header = 0;
      switch (read_header(rest.substr(pos_), len, header)) {
        case Header::kNeedMore:
          return ParseStatus::kNeedMore;
        case Header::kBad:
          return fail("ERR Protocol error: invalid bulk length");
        case Header::kOk:
          break;
      }
      if (len < 0 || len > proto_bulk_bytes_max) {
        return fail("ERR Protocol error: invalid bulk length");
      }
      if (static_cast<uint64_t>(len) > bulk_bytes_max) {
        consumed_ += pos_ + header;
        start_skip(fmt::format("ERR argument is {} bytes; the limit is {}", len, bulk_bytes_max),
                   argc_ - spans_.size(), true, static_cast<uint64_t>(len));
        return skip(input.substr(consumed_));
      }
      const size_t n = static_cast<size_t>(len);
      const size_t data = pos_ + header;
      if (rest.size() - data < n + 2) return ParseStatus::kNeedMore;
      if (rest[data + n] != '\r' || rest[data + n + 1] != '\n') {
        return fail("ERR Protocol error: expected CRLF after bulk string");
      }
      spans_.emplace_back(data, n);
      pos_ = data + n + 2;
    }

    for (const auto& [offset, len] : spans_) args_.push_back(rest.substr(offset, len));
    consumed_ += pos_;
    argc_ = 0;
    pos_ = 0;
    spans_.clear();
    MAROON_ASSERT(!args_.empty() && args_.size() <= command_args_max);
    return ParseStatus::kCommand;
  }
}

// With `rest` at the start of an inline request: kCommand with empty args_ is
// an empty line (consumed, nothing to run). pos_ remembers how far a partial
// line has been searched for its newline.
ParseStatus RequestParser::parse_inline(std::string_view rest) {
  const size_t limit = std::min(rest.size(), inline_bytes_max);
  const void* nl =
      pos_ < limit ? std::memchr(rest.data() + pos_, '\n', limit - pos_) : nullptr;
  if (nl == nullptr) {
    if (rest.size() >= inline_bytes_max) return fail("ERR Protocol error: too big inline request");
    pos_ = rest.size();
    return ParseStatus::kNeedMore;
  }
  const size_t end = static_cast<size_t>(static_cast<const char*>(nl) - rest.data());
  pos_ = 0;
  std::string_view line = rest.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

  if (line.find_first_of("\"'") != std::string_view::npos) {
    const ParseStatus s = split_quoted(line);
    if (s != ParseStatus::kCommand) return s;
  } else {
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i])) i++;
      if (i == line.size()) break;
      const size_t begin = i;
      while (i < line.size() && !is_space(line[i])) i++;
      if (args_.size() == command_args_max) {
        return fail("ERR Protocol error: too many arguments in inline request");
      }
      args_.push_back(line.substr(begin, i - begin));
    }
  }
  consumed_ += end + 1;
  return ParseStatus::kCommand;
}

// Redis's sdssplitargs: quoted words are unescaped into scratch_, reserved to
// the line's size first so the views into it stay valid while it fills.
ParseStatus RequestParser::split_quoted(std::string_view line) {
  scratch_.clear();
  scratch_.reserve(line.size());
  const char* const base = scratch_.data();
  const auto unbalanced = [this] { return fail("ERR Protocol error: unbalanced quotes in request"); };
  size_t i = 0;
  for (;;) {
    while (i < line.size() && is_space(line[i])) i++;
    if (i == line.size()) break;
    const size_t begin = scratch_.size();
    bool in_double = false, in_single = false, done = false;
    while (!done) {
      const bool at_end = i == line.size();
      const char c = at_end ? '\0' : line[i];
      if (in_double) {
        if (at_end) return unbalanced();
        if (c == '\\' && i + 3 < line.size() && line[i + 1] == 'x' && hex_digit(line[i + 2]) >= 0 &&
            hex_digit(line[i + 3]) >= 0) {
          scratch_.push_back(static_cast<char>(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3])));
          i += 3;
        } else if (c == '\\' && i + 1 < line.size()) {
          i++;
          switch (line[i]) {
            case 'n': scratch_.push_back('\n'); break;
            case 'r': scratch_.push_back('\r'); break;
            case 't': scratch_.push_back('\t'); break;
            case 'b': scratch_.push_back('\b'); break;
            case 'a': scratch_.push_back('\a'); break;
            default: scratch_.push_back(line[i]); break;
          }
        } else if (c == '"') {
          // A closing quote must be followed by a space or the end.
          if (i + 1 < line.size() && !is_space(line[i + 1])) return unbalanced();
          done = true;
        } else {
          scratch_.push_back(c);
        }
      } else if (in_single) {
        if (at_end) return unbalanced();
        if (c == '\\' && i + 1 < line.size() && line[i + 1] == '\'') {
          i++;
          scratch_.push_back('\'');
        } else if (c == '\'') {
          if (i + 1 < line.size() && !is_space(line[i + 1])) return unbalanced();
          done = true;
        } else {
          scratch_.push_back(c);
        }
      } else if (at_end || is_space(c)) {
        done = true;
      } else if (c == '"') {
        in_double = true;
      } else if (c == '\'') {
        in_single = true;
      } else {
        scratch_.push_back(c);
      }
      if (!at_end) i++;
    }
    if (args_.size() == command_args_max) {
      return fail("ERR Protocol error: too many arguments in inline request");
    }
    args_.emplace_back(base + begin, scratch_.size() - begin);
  }
  MAROON_ASSERT(scratch_.data() == base);  // never reallocated: the views are valid
  return ParseStatus::kCommand;
}

void append_simple(std::string& out, std::string_view s) { append_line(out, '+', s); }

void append_error(std::string& out, std::string_view message) { append_line(out, '-', message); }

void append_integer(std::string& out, int64_t v) { append_number_line(out, ':', v); }

void append_bulk(std::string& out, std::string_view s) {
  append_number_line(out, '$', static_cast<int64_t>(s.size()));
  out.append(s);
  out.append("\r\n", 2);
}

void append_null_bulk(std::string& out) { out.append("$-1\r\n", 5); }

void append_array_header(std::string& out, size_t n) {
  append_number_line(out, '*', static_cast<int64_t>(n));
}

void append_null_array(std::string& out) { out.append("*-1\r\n", 5); }

void append_nil(std::string& out, Proto proto) {
  if (proto == Proto::kResp3) {
    out.append("_\r\n", 3);
  } else {
    append_null_bulk(out);
  }
}

void append_nil_array(std::string& out, Proto proto) {
  if (proto == Proto::kResp3) {
    out.append("_\r\n", 3);
  } else {
    append_null_array(out);
  }
}

void append_map_header(std::string& out, size_t n, Proto proto) {
  if (proto == Proto::kResp3) {
    append_number_line(out, '%', static_cast<int64_t>(n));
  } else {
    append_array_header(out, 2 * n);
  }
}

void append_set_header(std::string& out, size_t n, Proto proto) {
  append_number_line(out, proto == Proto::kResp3 ? '~' : '*', static_cast<int64_t>(n));
}

void append_boolean(std::string& out, bool v, Proto proto) {
  if (proto == Proto::kResp3) {
    out.append(v ? "#t\r\n" : "#f\r\n", 4);
  } else {
    append_integer(out, v ? 1 : 0);
  }
}

void append_double(std::string& out, double v, Proto proto) {
  char buf[32];
  std::string_view text;
  if (std::isnan(v)) {
    text = "nan";
  } else if (std::isinf(v)) {
    text = v > 0 ? "inf" : "-inf";
  } else {
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    MAROON_ASSERT(ec == std::errc());
    text = std::string_view(buf, static_cast<size_t>(end - buf));
  }
  if (proto == Proto::kResp3) {
    append_line(out, ',', text);
  } else {
    append_bulk(out, text);
  }
}

void append_command(std::string& out, std::span<const std::string_view> args) {
  append_array_header(out, args.size());
  for (std::string_view a : args) append_bulk(out, a);
}

std::string encode_command(std::initializer_list<std::string_view> args) {
  std::string out;
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
  return out;
}

}  // namespace maroon::protocol::resp
