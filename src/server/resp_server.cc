#include "server/resp_server.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "app/kv/kv_op.h"
#include "common/assert.h"
#include "common/limits.h"
#include "protocol/resp.h"

namespace maroon::server {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace resp = protocol::resp;
using Args = std::span<const std::string_view>;

namespace {

// First read buffer of a connection; it doubles up to
// connection_read_bytes_max while a large request arrives, and goes back to
// this size once empty.
constexpr size_t kReadBufferBytesInitial = 16 * 1024;
// Read only when at least this much room is free (compacting or growing first).
constexpr size_t kReadChunkBytesMin = 4 * 1024;
// Replies not yet taken by the client before we stop reading its requests.
constexpr size_t kOutputBytesPause = limits::reply_bytes_max;
// After a protocol error or QUIT, unread request bytes are read and dropped
// (up to this many) until the client closes, so the final reply is not lost
// to a TCP reset.
constexpr size_t kLingerDiscardBytesMax = limits::connection_read_bytes_max;
// An idle write buffer larger than this is released rather than kept.
constexpr size_t kWriteBufferBytesKeep = 256 * 1024;
static_assert(kReadChunkBytesMin <= kReadBufferBytesInitial);
static_assert(kReadBufferBytesInitial <= limits::connection_read_bytes_max);
static_assert(resp::bulk_bytes_max + resp::header_bytes_max * 2 < limits::connection_read_bytes_max);

constexpr std::string_view kVersion = "7.0.0-maroon";

enum class Cmd : uint8_t {
  kPing, kEcho, kGet, kSet, kSetnx, kDel, kExists, kIncr, kIncrby, kDecr, kDecrby, kMget, kMset,
  kDbsize, kInfo, kCommand, kConfig, kSelect, kQuit, kClient, kHello,
};

struct CommandSpec {
  std::string_view name;  // lower case, as Redis names commands in errors
  Cmd cmd;
  int arity;  // as in Redis: n = exactly n args (command included), -n = at least n
};

constexpr CommandSpec kCommands[] = {
    {"get", Cmd::kGet, 2},         {"set", Cmd::kSet, -3},        {"incr", Cmd::kIncr, 2},
    {"mget", Cmd::kMget, -2},      {"mset", Cmd::kMset, -3},      {"ping", Cmd::kPing, -1},
    {"del", Cmd::kDel, -2},        {"exists", Cmd::kExists, -2},  {"setnx", Cmd::kSetnx, 3},
    {"incrby", Cmd::kIncrby, 3},   {"decr", Cmd::kDecr, 2},       {"decrby", Cmd::kDecrby, 3},
    {"echo", Cmd::kEcho, 2},       {"dbsize", Cmd::kDbsize, 1},   {"info", Cmd::kInfo, -1},
    {"command", Cmd::kCommand, -1}, {"config", Cmd::kConfig, -2}, {"select", Cmd::kSelect, 2},
    {"quit", Cmd::kQuit, -1},      {"client", Cmd::kClient, -2},  {"hello", Cmd::kHello, -1},
};
constexpr size_t kCommandNameBytesMax = 8;

bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

const CommandSpec* find_command(std::string_view name) {
  if (name.size() > kCommandNameBytesMax) return nullptr;
  for (const CommandSpec& spec : kCommands) {
    if (iequals(name, spec.name)) return &spec;
  }
  return nullptr;
}

bool arity_ok(int arity, size_t argc) {
  return arity >= 0 ? argc == static_cast<size_t>(arity) : argc >= static_cast<size_t>(-arity);
}

// Redis's string2ll: an optional '-', then digits without leading zeros.
bool parse_int64(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  const size_t first_digit = s[0] == '-' ? 1 : 0;
  if (s.size() == first_digit) return false;
  if (s[first_digit] == '0' && (s.size() > first_digit + 1 || first_digit == 1)) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string arity_error(std::string_view name) {
  return fmt::format("ERR wrong number of arguments for '{}' command", name);
}

std::string unknown_command_error(Args args) {
  // As Redis 7: the name cut at 50 bytes, then quoted args up to ~128 bytes.
  std::string quoted;
  for (size_t i = 1; i < args.size() && quoted.size() < 128; i++) {
    quoted += '\'';
    quoted.append(args[i].substr(0, 128 - quoted.size() + 1));
    quoted += "' ";
  }
  return fmt::format("ERR unknown command '{}', with args beginning with: {}",
                     args[0].substr(0, 50), quoted);
}

}  // namespace

// ---------------------------------------------------------------------------
// A connection answers its requests strictly in order through a ring of
// reply slots, one per request whose reply is not yet in the output buffer:
//
//   kDone          the RESP reply is in `bytes`, waiting for earlier slots
//   kWritePending  submitted to the engine; the done callback fills it
//   kReadQueued    a read behind an unanswered write; `bytes` is the kv op
//   kWriteQueued   a write behind a queued read; `bytes` is the kv op
//
// Everything before the first queued slot (the frontier) has been dispatched.
// A queued read runs once no write before it is pending; a queued write is
// submitted once every read before it has run. A request whose reply is known
// at once while no slot is open goes straight to the output buffer.
class RespServer::Connection : public Listener::Connection,
                               public std::enable_shared_from_this<Connection> {
 public:
  Connection(RespServer& server, tcp::socket socket, uint64_t id)
      : engine_(server.engine_),
        metrics_(server.metrics_),
        socket_(std::move(socket)),
        id_(id),
        in_(kReadBufferBytesInitial, '\0') {}

  void start() override { progress(); }

  void close() override {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    // The caller holds a strong reference (a handler's `self`, a locked
    // weak_ptr, or the listener's stop()), so leaving the listener's table
    // does not destroy `this`.
    leave();
  }

 private:
  enum class SlotState : uint8_t { kDone, kWritePending, kReadQueued, kWriteQueued };
  // How a kv reply becomes RESP: SETNX answers 1/0 where SET answers OK/nil.
  enum class Shape : uint8_t { kPlain, kSetnx };
  struct Slot {
    SlotState state = SlotState::kDone;
    Shape shape = Shape::kPlain;
    std::string bytes;
  };

  // ---- reply slots (a ring that grows to the in-flight limit, then is reused)
  uint64_t next_seq() const { return head_seq_ + count_; }
  Slot& push(SlotState state, Shape shape) {
    if (count_ == ring_.size()) {
      std::vector<Slot> bigger(std::max<size_t>(8, ring_.size() * 2));
      for (size_t i = 0; i < count_; i++) bigger[i] = std::move(ring_[(ring_head_ + i) % ring_.size()]);
      ring_ = std::move(bigger);
      ring_head_ = 0;
    }
    Slot& s = ring_[(ring_head_ + count_) % ring_.size()];
    count_++;
    s.state = state;
    s.shape = shape;
    s.bytes.clear();
    return s;
  }
  Slot& at(uint64_t seq) {
    MAROON_ASSERT(seq >= head_seq_ && seq - head_seq_ < count_);
    return ring_[(ring_head_ + (seq - head_seq_)) % ring_.size()];
  }
  void pop_front() {
    MAROON_ASSERT(count_ > 0);
    ring_head_ = (ring_head_ + 1) % ring_.size();
    count_--;
    head_seq_++;
  }
  static bool is_queued(SlotState s) {
    return s == SlotState::kReadQueued || s == SlotState::kWriteQueued;
  }

  // Where a reply known right now goes: the output if nothing is owed before
  // it, else a done slot.
  std::string& reply_target() {
    if (count_ == 0) return out_;
    return push(SlotState::kDone, Shape::kPlain).bytes;
  }
  void error(std::string& dst, std::string_view message) {
    metrics_.errors.inc();
    resp::append_error(dst, message);
  }

  size_t output_bytes() const { return out_.size() + (writing_ ? wbuf_.size() : 0); }
  bool paused() const {
    return count_ >= limits::connection_inflight_requests_max || output_bytes() >= kOutputBytesPause;
  }

  // ---- the loop: parse what is buffered, dispatch, flush, read more
  void progress() {
    if (busy_ || closed_) return;
    busy_ = true;  // engine callbacks that run inside submit() only mark their slot
    for (;;) {
      pump();
      if (!parse_some()) break;
    }
    busy_ = false;
    maybe_read();
    flush();
    finish_if_drained();
  }

  // Moves finished replies to the output and dispatches queued requests
  // whose turn has come.
  void pump() {
    for (;;) {
      while (count_ > 0 && at(head_seq_).state == SlotState::kDone) {
        out_ += at(head_seq_).bytes;
        pop_front();
      }
      if (queued_ == 0) return;
      frontier_ = std::max(frontier_, head_seq_);
      while (!is_queued(at(frontier_).state)) frontier_++;
      Slot& s = at(frontier_);
      if (s.state == SlotState::kReadQueued) {
        if (pending_writes_ > 0) return;
        std::swap(op_buf_, s.bytes);
        s.bytes.clear();
        run_read(op_buf_, s.shape, s.bytes);
        s.state = SlotState::kDone;
        queued_--;
      } else {
        std::string op = std::move(s.bytes);
        s.bytes.clear();
        s.state = SlotState::kWritePending;
        pending_writes_++;
        queued_--;
        submit(frontier_, std::move(op));
      }
      frontier_++;
    }
  }

  // Parses and executes buffered requests until the input runs out, a limit
  // pauses us, or the connection is closing. Returns whether it did anything.
  bool parse_some() {
    bool any = false;
    while (!closing_ && !paused()) {
      const std::string_view input(in_.data() + in_pos_, in_len_ - in_pos_);
      const resp::ParseStatus status = parser_.parse(input);
      in_pos_ += parser_.consumed();
      if (status == resp::ParseStatus::kNeedMore) break;
      any = true;
      if (status == resp::ParseStatus::kError) {
        error(reply_target(), parser_.error());
        closing_ = true;
        break;
      }
      metrics_.commands.inc();
      execute(parser_.args());
    }
    if (in_pos_ == in_len_) in_pos_ = in_len_ = 0;
    return any;
  }

  void maybe_read() {
    if (reading_ || closing_ || closed_ || paused()) return;
    if (in_len_ == 0 && in_.size() > kReadBufferBytesInitial) {
      in_.assign(kReadBufferBytesInitial, '\0');
      in_.shrink_to_fit();
    }
    if (in_.size() - in_len_ < kReadChunkBytesMin && in_pos_ > 0) {
      std::memmove(in_.data(), in_.data() + in_pos_, in_len_ - in_pos_);
      in_len_ -= in_pos_;
      in_pos_ = 0;
    }
    if (in_.size() - in_len_ < kReadChunkBytesMin && in_.size() < limits::connection_read_bytes_max) {
      in_.resize(std::min(in_.size() * 2, limits::connection_read_bytes_max));
    }
    if (in_len_ == in_.size()) {
      // A partial request fills the whole buffer: it can never be completed.
      error(reply_target(), "ERR Protocol error: request too large");
      closing_ = true;
      return;
    }
    reading_ = true;
    socket_.async_read_some(asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        size_t n) { self->on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, size_t n) {
    reading_ = false;
    if (closed_) return;
    if (lingering_) {
      discarded_bytes_ += n;
      if (ec || discarded_bytes_ > kLingerDiscardBytesMax) {
        close();
      } else {
        linger_read();
      }
      return;
    }
    if (ec == asio::error::eof) {
      closing_ = true;  // answer what was asked, then close
    } else if (ec) {
      close();
      return;
    } else if (!closing_) {
      in_len_ += n;
      MAROON_ASSERT(in_len_ <= in_.size());
    }
    progress();
  }

  void flush() {
    if (writing_ || closed_ || out_.empty()) return;
    std::swap(out_, wbuf_);
    out_.clear();
    writing_ = true;
    asio::async_write(socket_, asio::buffer(wbuf_),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(const boost::system::error_code& ec) {
    writing_ = false;
    if (closed_) return;
    if (ec) {
      close();
      return;
    }
    wbuf_.clear();
    if (wbuf_.capacity() > kWriteBufferBytesKeep) std::string().swap(wbuf_);
    progress();
  }

  // Closing and everything owed has been written: half-close, then read and
  // drop until the client closes too.
  void finish_if_drained() {
    if (!closing_ || closed_ || lingering_ || count_ > 0 || writing_ || !out_.empty()) return;
    lingering_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    if (!reading_) linger_read();  // else the read in flight continues the lingering
  }

  void linger_read() {
    reading_ = true;
    socket_.async_read_some(asio::buffer(in_.data(), in_.size()),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        size_t n) { self->on_read(ec, n); });
  }

  // ---- requests
  void execute(Args args) {
    const CommandSpec* spec = find_command(args[0]);
    if (spec == nullptr) {
      error(reply_target(), unknown_command_error(args));
      return;
    }
    if (!arity_ok(spec->arity, args.size())) {
      error(reply_target(), arity_error(spec->name));
      return;
    }
    op_.keys.clear();
    op_.values.clear();
    op_.cond = kv::SetCond::kAlways;
    op_.delta = 0;
    op_.limit = 0;
    op_.expected.reset();
    switch (spec->cmd) {
      case Cmd::kGet:
        op_.type = kv::OpType::kGet;
        op_.keys.push_back(args[1]);
        return read_op(Shape::kPlain);
      case Cmd::kSet:
        return set(args);
      case Cmd::kSetnx:
        op_.type = kv::OpType::kSet;
        op_.cond = kv::SetCond::kIfAbsent;
        op_.keys.push_back(args[1]);
        op_.values.push_back(args[2]);
        return write_op(Shape::kSetnx);
      case Cmd::kDel:
      case Cmd::kExists:
      case Cmd::kMget:
        op_.type = spec->cmd == Cmd::kDel      ? kv::OpType::kDel
                   : spec->cmd == Cmd::kExists ? kv::OpType::kExists
                                               : kv::OpType::kMget;
        op_.keys.assign(args.begin() + 1, args.end());
        return spec->cmd == Cmd::kDel ? write_op(Shape::kPlain) : read_op(Shape::kPlain);
      case Cmd::kIncr:
      case Cmd::kDecr:
        return incr_by(args[1], spec->cmd == Cmd::kIncr ? 1 : -1);
      case Cmd::kIncrby:
      case Cmd::kDecrby: {
        int64_t delta = 0;
        if (!parse_int64(args[2], delta)) {
          return error(reply_target(), "ERR value is not an integer or out of range");
        }
        if (spec->cmd == Cmd::kDecrby) {
          if (delta == INT64_MIN) return error(reply_target(), "ERR decrement would overflow");
          delta = -delta;
        }
        return incr_by(args[1], delta);
      }
      case Cmd::kMset:
        if (args.size() % 2 != 1) return error(reply_target(), arity_error(spec->name));
        op_.type = kv::OpType::kMset;
        for (size_t i = 1; i < args.size(); i += 2) {
          op_.keys.push_back(args[i]);
          op_.values.push_back(args[i + 1]);
        }
        return write_op(Shape::kPlain);
      case Cmd::kDbsize:
        op_.type = kv::OpType::kSize;
        return read_op(Shape::kPlain);
      case Cmd::kPing:
        if (args.size() > 2) return error(reply_target(), arity_error(spec->name));
        if (args.size() == 2) return resp::append_bulk(reply_target(), args[1]);
        return resp::append_simple(reply_target(), "PONG");
      case Cmd::kEcho:
        return resp::append_bulk(reply_target(), args[1]);
      case Cmd::kInfo:
        return resp::append_bulk(reply_target(), info());
      case Cmd::kCommand:
        return command(args);
      case Cmd::kConfig:
        return config(args);
      case Cmd::kSelect: {
        int64_t db = 0;
        if (!parse_int64(args[1], db)) {
          return error(reply_target(), "ERR value is not an integer or out of range");
        }
        if (db != 0) return error(reply_target(), "ERR DB index is out of range");
        return resp::append_simple(reply_target(), "OK");
      }
      case Cmd::kQuit:
        resp::append_simple(reply_target(), "OK");
        closing_ = true;
        return;
      case Cmd::kClient:
        return client(args);
      case Cmd::kHello:
        return hello(args);
    }
    MAROON_UNREACHABLE();
  }

  // SET key value [NX|XX]; expiry options are refused, GET is not supported.
  void set(Args args) {
    op_.type = kv::OpType::kSet;
    op_.keys.push_back(args[1]);
    op_.values.push_back(args[2]);
    bool nx = false, xx = false;
    for (size_t i = 3; i < args.size(); i++) {
      const std::string_view a = args[i];
      if (iequals(a, "nx")) {
        nx = true;
      } else if (iequals(a, "xx")) {
        xx = true;
      } else if (iequals(a, "ex") || iequals(a, "px") || iequals(a, "exat") ||
                 iequals(a, "pxat") || iequals(a, "keepttl")) {
        return error(reply_target(), "ERR expiry is not supported");
      } else if (iequals(a, "get")) {
        return error(reply_target(), "ERR SET with GET is not supported");
      } else {
        return error(reply_target(), "ERR syntax error");
      }
    }
    if (nx && xx) return error(reply_target(), "ERR syntax error");
    op_.cond = nx ? kv::SetCond::kIfAbsent : xx ? kv::SetCond::kIfPresent : kv::SetCond::kAlways;
    write_op(Shape::kPlain);
  }

  void incr_by(std::string_view key, int64_t delta) {
    op_.type = kv::OpType::kIncrBy;
    op_.keys.push_back(key);
    op_.delta = delta;
    write_op(Shape::kPlain);
  }

  void read_op(Shape shape) {
    MAROON_ASSERT(kv::is_read_only(op_.type));
    if (engine_.orders_reads()) return ordered_op(shape);
    if (Status v = kv::validate(op_); !v) return error(reply_target(), "ERR " + v.message());
    if (pending_writes_ == 0 && queued_ == 0) {
      op_buf_.clear();
      kv::encode_op(op_, op_buf_);
      run_read(op_buf_, shape, reply_target());
      return;
    }
    const uint64_t seq = next_seq();
    kv::encode_op(op_, push(SlotState::kReadQueued, shape).bytes);
    if (queued_++ == 0) frontier_ = seq;
  }

  void write_op(Shape shape) {
    MAROON_ASSERT(!kv::is_read_only(op_.type));
    ordered_op(shape);
  }

  // Through the engine's order: every write, and reads where the engine
  // orders them.
  void ordered_op(Shape shape) {
    if (Status v = kv::validate(op_); !v) return error(reply_target(), "ERR " + v.message());
    const uint64_t seq = next_seq();
    if (queued_ == 0) {
      push(SlotState::kWritePending, shape);
      pending_writes_++;
      submit(seq, kv::encode_op(op_));
      return;
    }
    kv::encode_op(op_, push(SlotState::kWriteQueued, shape).bytes);
    queued_++;
  }

  // Quorum loss and its timeouts get their own error prefix (docs/cluster.md):
  // "-UNAVAILABLE no quorum; not executed: ..." and "-UNAVAILABLE outcome
  // unknown (no quorum): ...". Every other engine error is "-ERR ...".
  static std::string_view error_prefix(Code code) {
    return code == Code::kNoQuorum || code == Code::kOutcomeUnknown ? "UNAVAILABLE " : "ERR ";
  }

  void run_read(std::string_view op, Shape shape, std::string& dst) {
    Result<std::string> r = engine_.read(AppId::kKv, op);
    if (!r) return error(dst, std::string(error_prefix(r.status().code())) + r.status().message());
    format_reply(*r, shape, dst);
  }

  void submit(uint64_t seq, std::string op) {
    engine_.submit(AppId::kKv, std::move(op),
                   [weak = weak_from_this(), seq](const Status& status, std::string_view reply) {
                     if (auto self = weak.lock()) self->on_write_done(seq, status, reply);
                   });
  }

  void on_write_done(uint64_t seq, const Status& status, std::string_view reply) {
    if (closed_) return;
    Slot& s = at(seq);
    MAROON_ASSERT(s.state == SlotState::kWritePending);
    MAROON_ASSERT(pending_writes_ > 0);
    s.bytes.clear();
    if (!status) {
      error(s.bytes, std::string(error_prefix(status.code())) + status.message());
    } else {
      format_reply(reply, s.shape, s.bytes);
    }
    s.state = SlotState::kDone;
    pending_writes_--;
    // Many writes complete in one engine step; answering them in one socket
    // write (and one wakeup of the client) instead of one each matters.
    schedule_progress();
  }

  void schedule_progress() {
    if (progress_posted_) return;
    progress_posted_ = true;
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->progress_posted_ = false;
      self->progress();
    });
  }

  void format_reply(std::string_view encoded, Shape shape, std::string& dst) {
    Result<kv::Reply> decoded = kv::decode_reply(encoded);
    if (!decoded) return error(dst, "ERR internal error: " + decoded.status().message());
    const kv::Reply& r = *decoded;
    switch (r.kind) {
      case kv::Reply::Kind::kOk:
        return shape == Shape::kSetnx ? resp::append_integer(dst, 1) : resp::append_simple(dst, "OK");
      case kv::Reply::Kind::kNil:
        return shape == Shape::kSetnx ? resp::append_integer(dst, 0) : resp::append_null_bulk(dst);
      case kv::Reply::Kind::kInt:
        return resp::append_integer(dst, r.integer);
      case kv::Reply::Kind::kValue:
        return resp::append_bulk(dst, r.value);
      case kv::Reply::Kind::kValues:
        resp::append_array_header(dst, r.values.size());
        for (const auto& v : r.values) {
          if (v) {
            resp::append_bulk(dst, *v);
          } else {
            resp::append_null_bulk(dst);
          }
        }
        return;
      case kv::Reply::Kind::kPairs:
        resp::append_array_header(dst, r.pairs.size() * 2);
        for (const auto& [k, v] : r.pairs) {
          resp::append_bulk(dst, k);
          resp::append_bulk(dst, v);
        }
        return;
      case kv::Reply::Kind::kError:
        if (r.error == Code::kWrongType) {
          return error(dst, "ERR value is not an integer or out of range");
        }
        return error(dst, "ERR " + r.value);
    }
    MAROON_UNREACHABLE();
  }

  // ---- admin commands, answered at once
  std::string info() {
    const EngineStatus st = engine_.status();
    std::string s = fmt::format(
        "# Server\r\nredis_version:{}\r\nredis_mode:standalone\r\nmaroon_node_id:{}\r\n"
        "\r\n# Clients\r\nconnected_clients:{}\r\n"
        "\r\n# Maroon\r\nmaroon_serving:{}\r\nmaroon_read_only:{}\r\nmaroon_range:{}\r\n"
        "maroon_applied_epoch:{}\r\nmaroon_applied_txs:{}\r\nmaroon_inflight_txs:{}\r\n"
        "maroon_quorum:{}\r\n",
        kVersion, st.node_id, listener() ? listener()->connection_count() : 0, st.serving ? 1 : 0,
        st.read_only ? 1 : 0, st.range, st.applied_epoch, st.applied_txs, st.inflight_txs,
        st.quorum ? 1 : 0);
    kv::Op size_op;
    size_op.type = kv::OpType::kSize;
    Result<std::string> r = engine_.read(AppId::kKv, kv::encode_op(size_op));
    if (r) {
      if (Result<kv::Reply> reply = kv::decode_reply(*r);
          reply && reply->kind == kv::Reply::Kind::kInt) {
        s += fmt::format("\r\n# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n", reply->integer);
      }
    }
    return s;
  }

  // redis-cli asks for COMMAND DOCS at start and redis-benchmark may ask for
  // COMMAND; an empty table is a valid answer to both.
  void command(Args args) {
    std::string& dst = reply_target();
    if (args.size() >= 2 && iequals(args[1], "count")) {
      return resp::append_integer(dst, static_cast<int64_t>(std::size(kCommands)));
    }
    resp::append_array_header(dst, 0);
  }

  // CONFIG GET answers the two parameters redis-benchmark asks for.
  void config(Args args) {
    std::string& dst = reply_target();
    if (iequals(args[1], "get")) {
      if (args.size() < 3) return error(dst, arity_error("config|get"));
      static constexpr std::pair<std::string_view, std::string_view> kParams[] = {
          {"save", ""}, {"appendonly", "yes"}};
      std::pair<std::string_view, std::string_view> found[std::size(kParams)];
      size_t n = 0;
      for (const auto& p : kParams) {
        for (size_t i = 2; i < args.size(); i++) {
          if (args[i] == "*" || iequals(args[i], p.first)) {
            found[n++] = p;
            break;
          }
        }
      }
      resp::append_array_header(dst, n * 2);
      for (size_t i = 0; i < n; i++) {
        resp::append_bulk(dst, found[i].first);
        resp::append_bulk(dst, found[i].second);
      }
      return;
    }
    if (iequals(args[1], "resetstat")) return resp::append_simple(dst, "OK");
    if (iequals(args[1], "set")) return error(dst, "ERR CONFIG SET is not supported");
    error(dst, fmt::format("ERR unknown subcommand '{}'. Try CONFIG HELP.", args[1].substr(0, 128)));
  }

  void client(Args args) {
    std::string& dst = reply_target();
    if (iequals(args[1], "id")) return resp::append_integer(dst, static_cast<int64_t>(id_));
    if (iequals(args[1], "getname")) return resp::append_null_bulk(dst);
    if (iequals(args[1], "info") || iequals(args[1], "list")) {
      return resp::append_bulk(dst, fmt::format("id={} db=0\n", id_));
    }
    resp::append_simple(dst, "OK");  // SETNAME, SETINFO, NO-EVICT, ...: accepted, no effect
  }

  // HELLO [2 [options...]]: RESP2 only.
  void hello(Args args) {
    std::string& dst = reply_target();
    if (args.size() >= 2) {
      int64_t version = 0;
      if (!parse_int64(args[1], version)) {
        return error(dst, "ERR Protocol version is not an integer or out of range");
      }
      if (version != 2) return error(dst, "NOPROTO sorry, this protocol version is not supported");
    }
    resp::append_array_header(dst, 14);
    resp::append_bulk(dst, "server");
    resp::append_bulk(dst, "redis");
    resp::append_bulk(dst, "version");
    resp::append_bulk(dst, kVersion);
    resp::append_bulk(dst, "proto");
    resp::append_integer(dst, 2);
    resp::append_bulk(dst, "id");
    resp::append_integer(dst, static_cast<int64_t>(id_));
    resp::append_bulk(dst, "mode");
    resp::append_bulk(dst, "standalone");
    resp::append_bulk(dst, "role");
    resp::append_bulk(dst, "master");
    resp::append_bulk(dst, "modules");
    resp::append_array_header(dst, 0);
  }

  Engine& engine_;
  Metrics& metrics_;
  tcp::socket socket_;
  const uint64_t id_;

  // Input: bytes [in_pos_, in_len_) of in_ are received and not yet parsed.
  std::string in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  resp::RequestParser parser_;
  kv::Op op_;           // reused for every request
  std::string op_buf_;  // reused encoding of reads run at once

  std::vector<Slot> ring_;
  size_t ring_head_ = 0;
  size_t count_ = 0;
  uint64_t head_seq_ = 0;
  uint64_t frontier_ = 0;      // no queued slot before it
  size_t pending_writes_ = 0;  // slots in kWritePending
  size_t queued_ = 0;          // slots in kReadQueued or kWriteQueued

  std::string out_;   // replies not yet handed to the socket
  std::string wbuf_;  // the write in flight
  uint64_t discarded_bytes_ = 0;
  bool busy_ = false;
  bool progress_posted_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;  // no more requests: answer those taken, then close
  bool lingering_ = false;
  bool closed_ = false;
};

// ---------------------------------------------------------------------------

RespServer::RespServer(asio::io_context& io, Engine& engine, std::string host, uint16_t port,
                       ClientResources* resources)
    : engine_(engine),
      own_resources_(resources != nullptr ? nullptr : std::make_unique<ClientResources>()),
      resources_(resources != nullptr ? *resources : *own_resources_),
      metrics_{
          .commands = engine.metrics().counter("maroon_resp_commands_total",
                                               "RESP requests parsed and executed"),
          .errors = engine.metrics().counter("maroon_resp_errors_total",
                                             "RESP requests answered with an error"),
          .connections_accepted = engine.metrics().counter("maroon_resp_connections_total",
                                                           "RESP connections accepted"),
          .connections_refused = engine.metrics().counter(
              "maroon_resp_connections_refused_total",
              "RESP connections refused because connections_max were open"),
          .connections_open = engine.metrics().gauge("maroon_resp_connections",
                                                     "RESP connections open"),
      },
      listener_(io, resources_,
                {.name = "resp",
                 .host = std::move(host),
                 .port = port,
                 .client_port = ClientPort::kResp,
                 .refusal = [](std::string_view why) { return fmt::format("-ERR {}\r\n", why); }},
                {.open = metrics_.connections_open,
                 .refused = metrics_.connections_refused,
                 .accepted = &metrics_.connections_accepted},
                [this](tcp::socket socket) {
                  return std::make_shared<Connection>(*this, std::move(socket),
                                                      next_connection_id_++);
                }) {}

RespServer::~RespServer() = default;

}  // namespace maroon::server
