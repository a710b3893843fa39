#include "server/resp_server.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "app/kv/kv_op.h"
#include "maroon/assert.h"
#include "maroon/limits.h"
#include "protocol/resp.h"
#include "server/client_stream.h"

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
// After a protocol error, QUIT or CLIENT KILL of itself, a connection
// half-closes and reads and drops what the client still sends, until the
// client closes, this many bytes or this long have passed, whichever is
// first: closing with unread bytes would send a TCP reset, which can make
// the client lose the final reply still in its receive buffer.
constexpr size_t kLingerDiscardBytesMax = 64 * 1024;
constexpr std::chrono::milliseconds kLingerTime{500};
// A read's reply at least this large is refused with an error when the client
// buffer budget cannot take it; smaller ones (and every write's reply, whose
// effect has happened) are taken regardless.
constexpr size_t kRefusableReplyBytes = 1024;
// An idle write buffer larger than this is released rather than kept.
constexpr size_t kWriteBufferBytesKeep = 256 * 1024;
static_assert(kReadChunkBytesMin <= kReadBufferBytesInitial);
static_assert(kReadBufferBytesInitial <= limits::connection_read_bytes_max);
static_assert(resp::bulk_bytes_max + resp::header_bytes_max * 2 < limits::connection_read_bytes_max);

constexpr std::string_view kVersion = "7.0.0-maroon";

enum class Cmd : uint8_t {
  kPing, kEcho, kGet, kSet, kSetnx, kDel, kExists, kIncr, kIncrby, kDecr, kDecrby, kMget, kMset,
  kDbsize, kInfo, kCommand, kConfig, kSelect, kQuit, kClient, kHello,
  kMulti, kExec, kDiscard, kWatch, kUnwatch, kFlushall, kFlushdb, kFunction, kAuth,
};

// What a user needs to run a command: nothing (before logging in), to be
// logged in, or write access.
enum class Need : uint8_t { kNothing, kLogin, kWrite };

constexpr Need need_of(Cmd cmd) {
  switch (cmd) {
    case Cmd::kAuth:
    case Cmd::kHello:
    case Cmd::kQuit:
      return Need::kNothing;
    case Cmd::kSet:
    case Cmd::kSetnx:
    case Cmd::kDel:
    case Cmd::kIncr:
    case Cmd::kIncrby:
    case Cmd::kDecr:
    case Cmd::kDecrby:
    case Cmd::kMset:
    case Cmd::kFlushall:
    case Cmd::kFlushdb:
    case Cmd::kFunction:
      return Need::kWrite;
    default:
      return Need::kLogin;
  }
}

// Where a command may run while a MULTI is open.
enum class InMulti : uint8_t {
  kQueued,     // queued; runs inside the EXEC tx (kv commands, PING, ECHO, UNWATCH)
  kAtOnce,     // runs now, not queued (EXEC, DISCARD, MULTI, WATCH, QUIT: as Redis)
  kForbidden,  // refused, and the EXEC fails with EXECABORT
};

struct CommandSpec {
  std::string_view name;  // lower case, as Redis names commands in errors
  Cmd cmd;
  int arity;  // as in Redis: n = exactly n args (command included), -n = at least n
  InMulti in_multi;
};

constexpr InMulti Q = InMulti::kQueued;
constexpr InMulti N = InMulti::kAtOnce;
constexpr InMulti F = InMulti::kForbidden;
constexpr CommandSpec kCommands[] = {
    {"get", Cmd::kGet, 2, Q},          {"set", Cmd::kSet, -3, Q},
    {"incr", Cmd::kIncr, 2, Q},        {"mget", Cmd::kMget, -2, Q},
    {"mset", Cmd::kMset, -3, Q},       {"ping", Cmd::kPing, -1, Q},
    {"del", Cmd::kDel, -2, Q},         {"exists", Cmd::kExists, -2, Q},
    {"setnx", Cmd::kSetnx, 3, Q},      {"incrby", Cmd::kIncrby, 3, Q},
    {"decr", Cmd::kDecr, 2, Q},        {"decrby", Cmd::kDecrby, 3, Q},
    {"echo", Cmd::kEcho, 2, Q},        {"dbsize", Cmd::kDbsize, 1, Q},
    {"info", Cmd::kInfo, -1, F},       {"command", Cmd::kCommand, -1, F},
    {"config", Cmd::kConfig, -2, F},   {"select", Cmd::kSelect, 2, F},
    {"quit", Cmd::kQuit, -1, N},       {"client", Cmd::kClient, -2, F},
    {"hello", Cmd::kHello, -1, F},     {"multi", Cmd::kMulti, 1, N},
    {"exec", Cmd::kExec, 1, N},        {"discard", Cmd::kDiscard, 1, N},
    {"watch", Cmd::kWatch, -2, N},     {"unwatch", Cmd::kUnwatch, 1, Q},
    {"flushall", Cmd::kFlushall, -1, Q},
    {"flushdb", Cmd::kFlushdb, -1, Q},
    {"function", Cmd::kFunction, -2, Q},
    {"auth", Cmd::kAuth, -2, F},
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

// "ip:port", "[ipv6]:port", as Redis shows addresses.
std::string endpoint_text(const tcp::endpoint& e) {
  if (e.address().is_v6()) return fmt::format("[{}]:{}", e.address().to_string(), e.port());
  return fmt::format("{}:{}", e.address().to_string(), e.port());
}

// Redis names subcommands "client|setname" in arity errors.
std::string lower(std::string_view s) {
  std::string out(s.substr(0, 64));
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// How an engine reply becomes RESP: as is, SETNX's 1/0 for OK/nil, a WATCH's
// stamps kept by the connection (+OK), an EXEC's array.
enum class Shape : uint8_t { kPlain, kSetnx, kWatch, kExec };

// A MULTI's commands as queued: kv ops to run in the EXEC tx, or replies
// known when queued (PING, ECHO, a command refused by its own syntax), which
// take their place in the EXEC array.
struct Queued {
  bool local = false;  // bytes is a RESP reply, else an encoded kv op
  Shape shape = Shape::kPlain;
  std::string bytes;
};
// What a queued command or watched key costs beyond its bytes (the string
// and vector bookkeeping), as charged to the client buffer budget.
constexpr size_t kTxEntryOverheadBytes = 64;

// The queue and the watched keys hold budget for as long as they live: in
// the open MULTI, then in the EXEC's slot until it is answered.
struct TxPlan {
  explicit TxPlan(ClientResources& resources) : hold(resources, ClientPort::kResp, 0) {}
  std::vector<Queued> cmds;
  size_t bytes = 0;    // sum of cmds' bytes, at most op_bytes_max
  bool dirty = false;  // a refused command: EXEC answers EXECABORT
  BudgetHold hold;     // bytes + overhead per command
};

// The keys a connection watches, and the stamps the engine answered for
// them. Shared by the WATCH requests still in flight and, once EXEC is
// parsed, by the EXEC waiting for them; UNWATCH, DISCARD and EXEC start a
// new set, so late answers for an old one change nothing.
struct WatchSet {
  explicit WatchSet(ClientResources& resources) : hold(resources, ClientPort::kResp, 0) {}
  BudgetHold hold;  // key_bytes + overhead per key
  std::vector<std::string> keys;
  std::vector<kv::KeyStamp> stamps;  // stamps[i] for keys[i], once answered
  size_t key_bytes = 0;              // sum of the keys' sizes, at most op_bytes_max
  size_t answered = 0;
  bool failed = false;  // a WATCH was refused: EXEC aborts (null reply)
};

}  // namespace

// ---------------------------------------------------------------------------
// A connection answers its requests strictly in order through a ring of
// reply slots, one per request whose reply is not yet in the output buffer:
//
//   kDone          the RESP reply is in `bytes`, waiting for earlier slots
//   kWritePending  submitted to the engine; the done callback fills it
//   kReadQueued    a read behind an unanswered write; `bytes` is the kv op
//   kWriteQueued   a write behind a queued read; `bytes` is the kv op
//   kExecQueued    an EXEC; it is built and submitted once every earlier
//                  request is answered, so the stamps of the WATCHes before
//                  it are known
//
// Everything before the first queued slot (the frontier) has been dispatched.
// A queued read runs once no write before it is pending; a queued write is
// submitted once every read before it has run. A request whose reply is known
// at once while no slot is open goes straight to the output buffer.
//
// A slot remembers how its reply is written (RESP2 or RESP3, SETNX's 1/0, a
// WATCH's stamps, an EXEC's array) and whether it is sent at all (CLIENT
// REPLY OFF/SKIP).
class RespServer::Connection : public Listener::Connection,
                               public RespClientRegistry::Member,
                               public std::enable_shared_from_this<Connection> {
 public:
  Connection(RespServer& server, tcp::socket socket, uint64_t id)
      : engine_(server.engine_),
        resources_(server.resources_),
        security_(server.security_),
        metrics_(server.metrics_),
        clients_(server.clients_),
        stream_(std::move(socket), server.security_.tls),
        linger_timer_(stream_.get_executor()),
        in_(kReadBufferBytesInitial, '\0') {
    info_.id = id;
    if (security_.users != nullptr) info_.user.clear();  // nobody, until a login
    boost::system::error_code ec;
    if (auto e = stream_.socket().remote_endpoint(ec); !ec) info_.addr = endpoint_text(e);
    if (auto e = stream_.socket().local_endpoint(ec); !ec) info_.laddr = endpoint_text(e);
    info_.created = info_.last_command_at = RespClock::now();
  }

  void start() override {
    if (!stream_.is_tls()) return serve();
    stream_.async_handshake(resources_.limits().header_timeout,
                            [self = shared_from_this()](const boost::system::error_code& ec) {
                              self->on_handshake(ec);
                            });
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    if (registered_) clients_.remove(*this);
    registered_ = false;
    linger_timer_.cancel();
    stream_.close();
    resources_.release(std::exchange(charged_, 0) + std::exchange(in_charged_, 0));
    // Queues and watch sets hold budget until they go; they go now, not when
    // the last handler lets go of this connection (maybe after the process's
    // ClientResources, at shutdown).
    multi_.reset();
    watch_.reset();
    style_.watch.reset();
    for (Slot& s : ring_) {
      s.tx.reset();
      s.watch.reset();
      s.style.watch.reset();
    }
    // The caller holds a strong reference (a handler's `self`, a locked
    // weak_ptr, or the listener's stop()), so leaving the listener's table
    // does not destroy `this`.
    leave();
  }

  const RespClientInfo& client_info() const override { return info_; }

  // A request begun must be complete within request_timeout; a write must
  // finish within stall_timeout.
  void tick(std::chrono::steady_clock::time_point now) override {
    if (closed_ || lingering_) return;
    const ClientLimits& l = resources_.limits();
    if (partial_since_ && now - *partial_since_ > l.request_timeout) {
      resources_.note_timeout(ClientPort::kResp, "a request not complete in time");
      return close();
    }
    if (writing_ && now - write_started_ > l.stall_timeout) {
      resources_.note_timeout(ClientPort::kResp, "the client does not read its replies");
      return close();
    }
  }

  void kill() override {
    auto self = shared_from_this();  // close() may drop the listener's reference
    close();
  }

 private:
  enum class SlotState : uint8_t { kDone, kWritePending, kReadQueued, kWriteQueued, kExecQueued };
  struct ReplyStyle {
    Shape shape = Shape::kPlain;
    resp::Proto proto = resp::Proto::kResp2;
    bool read = false;                // a read: its reply may be refused by the budget
    bool silent = false;              // CLIENT REPLY OFF/SKIP: never written, never charged
    std::shared_ptr<WatchSet> watch;  // kWatch: where the stamps go
    size_t watch_offset = 0;          // kWatch: index of the first key in `watch`
  };
  struct Slot {
    SlotState state = SlotState::kDone;
    bool silent = false;  // CLIENT REPLY OFF/SKIP: computed, not sent
    ReplyStyle style;
    std::string bytes;
    std::unique_ptr<TxPlan> tx;        // kExecQueued and its pending EXEC
    std::shared_ptr<WatchSet> watch;   // the EXEC's conditions
  };

  void on_handshake(const boost::system::error_code& ec) {
    if (closed_) return;
    if (ec) {
      resources_.note_tls_handshake_failure(
          ClientPort::kResp, remote(),
          tls_handshake_failure_text(ec, resources_.limits().header_timeout));
      return close();
    }
    serve();
  }

  void serve() {
    clients_.add(*this);
    registered_ = true;
    progress();
  }

  // ---- reply slots (a ring that grows to the in-flight limit, then is reused)
  uint64_t next_seq() const { return head_seq_ + count_; }
  Slot& push(SlotState state) {
    if (count_ == ring_.size()) {
      std::vector<Slot> bigger(std::max<size_t>(8, ring_.size() * 2));
      for (size_t i = 0; i < count_; i++) bigger[i] = std::move(ring_[(ring_head_ + i) % ring_.size()]);
      ring_ = std::move(bigger);
      ring_head_ = 0;
    }
    Slot& s = ring_[(ring_head_ + count_) % ring_.size()];
    count_++;
    s.state = state;
    s.silent = silent_;
    s.style = style_;
    s.bytes.clear();
    s.tx.reset();
    s.watch.reset();
    return s;
  }
  Slot& at(uint64_t seq) {
    MAROON_ASSERT(seq >= head_seq_ && seq - head_seq_ < count_);
    return ring_[(ring_head_ + (seq - head_seq_)) % ring_.size()];
  }
  void pop_front() {
    MAROON_ASSERT(count_ > 0);
    Slot& s = ring_[ring_head_];
    s.style.watch.reset();
    s.watch.reset();
    s.tx.reset();
    ring_head_ = (ring_head_ + 1) % ring_.size();
    count_--;
    head_seq_++;
  }
  static bool is_queued(SlotState s) {
    return s == SlotState::kReadQueued || s == SlotState::kWriteQueued ||
           s == SlotState::kExecQueued;
  }

  // Where the reply of the command being executed goes when it is known now:
  // the output if nothing is owed before it, else a done slot; while a MULTI
  // queues it, the queued command; with replies off, nowhere.
  std::string& reply_target() {
    if (queuing_) return queued_reply_;
    if (count_ == 0) {
      if (!silent_) return out_;
      discard_.clear();
      return discard_;
    }
    return push(SlotState::kDone).bytes;
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
    if (!awaiting_rest_) {
      partial_since_.reset();
    } else if (!partial_since_) {
      partial_since_ = std::chrono::steady_clock::now();
    }
    maybe_read();
    flush();
    finish_if_drained();
  }

  // Moves finished replies to the output and dispatches queued requests
  // whose turn has come.
  void pump() {
    for (;;) {
      while (count_ > 0 && at(head_seq_).state == SlotState::kDone) {
        if (!at(head_seq_).silent) out_ += at(head_seq_).bytes;
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
        run_read(op_buf_, s.style, s.bytes);
        s.state = SlotState::kDone;
        queued_--;
      } else if (s.state == SlotState::kExecQueued) {
        if (pending_writes_ > 0 || frontier_ != head_seq_) return;
        queued_--;
        dispatch_exec(frontier_, s);
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
    awaiting_rest_ = false;
    while (!closing_ && !paused()) {
      const std::string_view input(in_.data() + in_pos_, in_len_ - in_pos_);
      const resp::ParseStatus status = parser_.parse(input);
      in_pos_ += parser_.consumed();
      if (status == resp::ParseStatus::kNeedMore) {
        // A request begun, not complete (or being skipped).
        awaiting_rest_ = in_pos_ < in_len_ || parser_.skipping();
        break;
      }
      any = true;
      if (status == resp::ParseStatus::kError) {
        silent_ = false;  // a desync is always answered
        error(reply_target(), parser_.error());
        closing_ = true;
        break;
      }
      metrics_.commands.inc();
      if (status == resp::ParseStatus::kRejected) {
        begin_command();
        if (multi_) multi_->dirty = true;  // as Redis flags a refused command
        error(reply_target(), parser_.error());
        continue;
      }
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
      resources_.release(std::exchange(in_charged_, 0));
    }
    if (in_.size() - in_len_ < kReadChunkBytesMin && in_pos_ > 0) {
      std::memmove(in_.data(), in_.data() + in_pos_, in_len_ - in_pos_);
      in_len_ -= in_pos_;
      in_pos_ = 0;
    }
    // Before a login the buffer keeps its first size: enough for AUTH or
    // HELLO, and nothing from the budget for a client nobody knows.
    if (in_.size() - in_len_ < kReadChunkBytesMin && in_.size() < limits::connection_read_bytes_max &&
        logged_in()) {
      const size_t bigger = std::min(in_.size() * 2, limits::connection_read_bytes_max);
      if (!resources_.reserve(bigger - in_.size(), ClientPort::kResp, "a request")) {
        // The request cannot be read whole; nothing after it can be parsed.
        silent_ = false;
        error(reply_target(), "ERR the server's client buffer budget is spent; retry later");
        closing_ = true;
        return;
      }
      in_charged_ += bigger - in_.size();
      in_.resize(bigger);
    }
    if (in_len_ == in_.size()) {
      // A partial request fills the whole buffer: it can never be completed.
      silent_ = false;
      error(reply_target(), logged_in() ? "ERR Protocol error: request too large"
                                        : "ERR Protocol error: request too large before AUTH");
      closing_ = true;
      return;
    }
    reading_ = true;
    stream_.async_read_some(asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
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
    write_started_ = std::chrono::steady_clock::now();
    asio::async_write(stream_, asio::buffer(wbuf_),
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
    // Reply bytes written give back what they took (approximately: a small
    // reply written may give back a bigger one's share, never more than held).
    const size_t given = std::min(charged_, wbuf_.size());
    charged_ -= given;
    resources_.release(given);
    wbuf_.clear();
    if (wbuf_.capacity() > kWriteBufferBytesKeep) std::string().swap(wbuf_);
    progress();
  }

  // Closing and everything owed has been written: half-close, then read and
  // drop, within kLingerDiscardBytesMax and kLingerTime, until the client
  // closes too.
  void finish_if_drained() {
    if (!closing_ || closed_ || lingering_ || count_ > 0 || writing_ || !out_.empty()) return;
    lingering_ = true;
    stream_.shutdown_send();
    linger_timer_.expires_after(kLingerTime);
    linger_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->close();
    });
    if (!reading_) linger_read();  // else the read in flight continues the lingering
  }

  void linger_read() {
    reading_ = true;
    stream_.async_read_some(asio::buffer(in_.data(), in_.size()),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        size_t n) { self->on_read(ec, n); });
  }

  // ---- requests
  // Per-request state: the reply style and whether the reply is sent.
  void begin_command() {
    silent_ = reply_off_ || skip_next_;
    skip_next_ = false;
    style_ = ReplyStyle{.proto = proto_, .silent = silent_};
    info_.last_command_at = RespClock::now();
  }

  void execute(Args args) {
    begin_command();
    const CommandSpec* spec = find_command(args[0]);
    info_.last_command = spec ? std::string(spec->name) : "NULL";
    if (spec == nullptr) {
      if (!logged_in()) return refuse_command(kNoAuth);
      return refuse_command(unknown_command_error(args));
    }
    if (const Need need = need_of(spec->cmd); need != Need::kNothing) {
      if (!logged_in()) return refuse_command(kNoAuth);
      if (need == Need::kWrite && !may_write()) return refuse_command(no_permission(spec->name));
    }
    if (!arity_ok(spec->arity, args.size())) return refuse_command(arity_error(spec->name));
    if (multi_ && spec->in_multi == InMulti::kForbidden) {
      return refuse_command("ERR Command not allowed inside a transaction");
    }
    if (multi_ && spec->in_multi == InMulti::kQueued) return queue_command(*spec, args);
    run_command(*spec, args);
  }

  // ---- credentials
  static constexpr std::string_view kNoAuth = "NOAUTH Authentication required.";
  static constexpr std::string_view kWrongPass =
      "WRONGPASS invalid username-password pair or user is disabled.";

  bool logged_in() const { return security_.users == nullptr || user_ != nullptr; }
  bool may_write() const { return security_.users == nullptr || (user_ != nullptr && user_->access == Access::kReadWrite); }
  static std::string no_permission(std::string_view command) {
    return fmt::format("NOPERM this user has no permissions to run the '{}' command", command);
  }

  // Logs in as `user` with `password` (`user` empty: AUTH <password>). False,
  // counted and logged, when refused; the connection stays as it was.
  bool log_in(std::string_view user, std::string_view password) {
    const UserTable* users = security_.users.get();
    if (users == nullptr) {
      // Redis's default user with nopass: any password, no other user.
      if (user.empty() || user == "default") return true;
    } else {
      // AUTH <password>: the "default" user if there is one, as Redis does,
      // else whoever this password (token) belongs to.
      const User* who = nullptr;
      if (!user.empty()) {
        who = users->login(user, password);
      } else {
        who = users->login("default", password);
        if (who == nullptr) who = users->by_secret(password);
      }
      if (who != nullptr) {
        user_ = who;
        info_.user = who->name;
        return true;
      }
    }
    resources_.note_auth_failure(ClientPort::kResp, info_.addr, user);
    return false;
  }

  // AUTH [user] password
  void auth(Args args) {
    if (args.size() > 3) return error(reply_target(), "ERR syntax error");
    const std::string_view user = args.size() == 3 ? args[1] : std::string_view();
    if (security_.users == nullptr && args.size() == 2) {
      return error(reply_target(),
                   "ERR AUTH <password> called without any password configured for the default "
                   "user. Are you sure your configuration is correct?");
    }
    if (!log_in(user, args.back())) return error(reply_target(), kWrongPass);
    resp::append_simple(reply_target(), "OK");
  }

  // A command refused before it ran; inside MULTI this fails the EXEC.
  void refuse_command(std::string_view message) {
    if (multi_) multi_->dirty = true;
    error(reply_target(), message);
  }

  void reset_op() {
    op_.keys.clear();
    op_.values.clear();
    op_.cond = kv::SetCond::kAlways;
    op_.delta = 0;
    op_.limit = 0;
    op_.expected.reset();
    op_.stamps.clear();
    op_.ops.clear();
  }

  void run_command(const CommandSpec& spec, Args args) {
    reset_op();
    switch (spec.cmd) {
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
        op_.type = spec.cmd == Cmd::kDel      ? kv::OpType::kDel
                   : spec.cmd == Cmd::kExists ? kv::OpType::kExists
                                              : kv::OpType::kMget;
        op_.keys.assign(args.begin() + 1, args.end());
        return spec.cmd == Cmd::kDel ? write_op(Shape::kPlain) : read_op(Shape::kPlain);
      case Cmd::kIncr:
      case Cmd::kDecr:
        return incr_by(args[1], spec.cmd == Cmd::kIncr ? 1 : -1);
      case Cmd::kIncrby:
      case Cmd::kDecrby: {
        int64_t delta = 0;
        if (!parse_int64(args[2], delta)) {
          return error(reply_target(), "ERR value is not an integer or out of range");
        }
        if (spec.cmd == Cmd::kDecrby) {
          if (delta == INT64_MIN) return error(reply_target(), "ERR decrement would overflow");
          delta = -delta;
        }
        return incr_by(args[1], delta);
      }
      case Cmd::kMset:
        if (args.size() % 2 != 1) return error(reply_target(), arity_error(spec.name));
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
        if (args.size() > 2) return error(reply_target(), arity_error(spec.name));
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
      case Cmd::kMulti:
        return multi();
      case Cmd::kExec:
        return exec();
      case Cmd::kDiscard:
        return discard();
      case Cmd::kWatch:
        return watch(args);
      case Cmd::kUnwatch:
        // Queued in a MULTI it changes nothing: EXEC checks the watches first.
        if (!queuing_) unwatch();
        return resp::append_simple(reply_target(), "OK");
      case Cmd::kFlushall:
      case Cmd::kFlushdb:
        // One database, so both empty it; ASYNC and SYNC both flush in the op.
        if (!flush_mode_ok(args.subspan(1))) return error(reply_target(), "ERR syntax error");
        op_.type = kv::OpType::kFlush;
        return write_op(Shape::kPlain);
      case Cmd::kFunction:
        return function(args);
      case Cmd::kAuth:
        return auth(args);
    }
    MAROON_UNREACHABLE();
  }

  // The options of FLUSHALL, FLUSHDB and FUNCTION FLUSH: ASYNC or SYNC, or none.
  static bool flush_mode_ok(Args options) {
    if (options.empty()) return true;
    return options.size() == 1 && (iequals(options[0], "async") || iequals(options[0], "sync"));
  }

  // There are no functions (nor scripts), so FUNCTION FLUSH has nothing to
  // do; Redis's test runner sends it before its tests.
  void function(Args args) {
    if (iequals(args[1], "flush")) {
      if (!flush_mode_ok(args.subspan(2))) return error(reply_target(), "ERR syntax error");
      return resp::append_simple(reply_target(), "OK");
    }
    error(reply_target(),
          fmt::format("ERR FUNCTION {} is not supported: there are no functions", lower(args[1])));
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

  // An op that fails validation is answered with the error (a WATCH that
  // fails makes the EXEC after it abort).
  bool valid_op(Shape shape) {
    Status v = kv::validate(op_);
    if (v) return true;
    if (shape == Shape::kWatch && style_.watch) style_.watch->failed = true;
    error(reply_target(), "ERR " + v.message());
    return false;
  }

  void read_op(Shape shape) {
    MAROON_ASSERT(kv::is_read_only(op_.type));
    style_.shape = shape;
    style_.read = true;
    if (queuing_) return queue_op(shape);
    if (engine_.orders_reads()) return ordered_op(shape);
    if (!valid_op(shape)) return;
    if (pending_writes_ == 0 && queued_ == 0) {
      op_buf_.clear();
      kv::encode_op(op_, op_buf_);
      run_read(op_buf_, style_, reply_target());
      return;
    }
    const uint64_t seq = next_seq();
    kv::encode_op(op_, push(SlotState::kReadQueued).bytes);
    if (queued_++ == 0) frontier_ = seq;
  }

  void write_op(Shape shape) {
    MAROON_ASSERT(!kv::is_read_only(op_.type));
    style_.shape = shape;
    if (queuing_) return queue_op(shape);
    ordered_op(shape);
  }

  // Through the engine's order: every write, and reads where the engine
  // orders them.
  void ordered_op(Shape shape) {
    if (!valid_op(shape)) return;
    const uint64_t seq = next_seq();
    if (queued_ == 0) {
      push(SlotState::kWritePending);
      pending_writes_++;
      submit(seq, kv::encode_op(op_));
      return;
    }
    kv::encode_op(op_, push(SlotState::kWriteQueued).bytes);
    queued_++;
  }

  // Quorum loss and its timeouts get their own error prefix (docs/cluster.md):
  // "-UNAVAILABLE no quorum; not executed: ..." and "-UNAVAILABLE outcome
  // unknown (no quorum): ...". Every other engine error is "-ERR ...".
  static std::string_view error_prefix(Code code) {
    return code == Code::kNoQuorum || code == Code::kOutcomeUnknown ? "UNAVAILABLE " : "ERR ";
  }

  void run_read(std::string_view op, const ReplyStyle& style, std::string& dst) {
    Result<std::string> r = engine_.read(AppId::kKv, op);
    finish_reply(r ? Status::ok() : r.status(), r ? std::string_view(*r) : std::string_view(),
                 style, nullptr, dst);
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
    finish_reply(status, reply, s.style, s.tx.get(), s.bytes);
    s.state = SlotState::kDone;
    pending_writes_--;
    // Many writes complete in one engine step; answering them in one socket
    // write (and one wakeup of the client) instead of one each matters.
    schedule_progress();
  }

  void schedule_progress() {
    if (progress_posted_) return;
    progress_posted_ = true;
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->progress_posted_ = false;
      self->progress();
    });
  }

  // Turns the engine's answer to one request into its RESP reply.
  void finish_reply(const Status& status, std::string_view encoded, const ReplyStyle& style,
                    const TxPlan* tx, std::string& dst) {
    if (!status) {
      if (style.shape == Shape::kWatch) style.watch->failed = true;
      return error(dst, std::string(error_prefix(status.code())) + status.message());
    }
    // Until the client takes it, the reply's bytes come from the budget.
    // What the reply adds to `dst` is charged once it is formatted; a large
    // read reply is refused up front if the budget cannot take it.
    size_t reserved = 0;
    if (!style.silent && style.read && encoded.size() >= kRefusableReplyBytes) {
      if (!resources_.reserve(encoded.size(), ClientPort::kResp, "a reply")) {
        if (style.shape == Shape::kWatch) style.watch->failed = true;
        return error(dst, "ERR the server's client buffer budget is spent; retry later");
      }
      reserved = encoded.size();
    }
    const size_t before = dst.size();
    format_engine_reply(encoded, style, tx, dst);
    if (style.silent) return;  // computed and dropped: holds nothing
    const size_t added = dst.size() - before;
    if (added > reserved) {
      resources_.take(added - reserved);
    } else {
      resources_.release(reserved - added);
    }
    charged_ += added;
  }

  void format_engine_reply(std::string_view encoded, const ReplyStyle& style, const TxPlan* tx,
                           std::string& dst) {
    switch (style.shape) {
      case Shape::kWatch:
        return record_stamps(kv::decode_stamps_reply(encoded), style, dst);
      case Shape::kExec:
        MAROON_ASSERT(tx != nullptr);
        return format_exec(kv::decode_multi_reply(encoded), *tx, style.proto, dst);
      case Shape::kPlain:
      case Shape::kSetnx:
        break;
    }
    Result<kv::Reply> decoded = kv::decode_reply(encoded);
    if (!decoded) return error(dst, "ERR internal error: " + decoded.status().message());
    format_reply(*decoded, style.shape, style.proto, dst);
  }

  void format_reply(const kv::Reply& r, Shape shape, resp::Proto proto, std::string& dst) {
    switch (r.kind) {
      case kv::Reply::Kind::kOk:
        return shape == Shape::kSetnx ? resp::append_integer(dst, 1) : resp::append_simple(dst, "OK");
      case kv::Reply::Kind::kNil:
        return shape == Shape::kSetnx ? resp::append_integer(dst, 0) : resp::append_nil(dst, proto);
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
            resp::append_nil(dst, proto);
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

  // ---- MULTI / EXEC / DISCARD / WATCH (docs/resp.md)
  void multi() {
    if (multi_) return error(reply_target(), "ERR MULTI calls can not be nested");
    multi_ = std::make_unique<TxPlan>(resources_);
    info_.multi = 0;
    resp::append_simple(reply_target(), "OK");
  }

  void discard() {
    if (!multi_) return error(reply_target(), "ERR DISCARD without MULTI");
    multi_.reset();
    info_.multi = -1;
    unwatch();
    resp::append_simple(reply_target(), "OK");
  }

  void unwatch() {
    watch_.reset();
    info_.watched = 0;
  }

  // Runs the command as usual, except that its op, or its reply if known
  // now, is kept for the EXEC; the client gets +QUEUED.
  void queue_command(const CommandSpec& spec, Args args) {
    MAROON_ASSERT(multi_ && !queuing_);
    queuing_ = true;
    queued_reply_.clear();
    queued_cmd_.local = true;
    queued_cmd_.shape = Shape::kPlain;
    queued_cmd_.bytes.clear();
    run_command(spec, args);
    queuing_ = false;
    if (queued_cmd_.local) queued_cmd_.bytes = std::move(queued_reply_);
    TxPlan& plan = *multi_;
    if (plan.cmds.size() == limits::tx_ops_max ||
        plan.bytes + queued_cmd_.bytes.size() > limits::op_bytes_max) {
      return refuse_command(fmt::format(
          "ERR transaction too large: at most {} commands and {} bytes of ops",
          limits::tx_ops_max, limits::op_bytes_max));
    }
    if (!plan.hold.cover(plan.bytes + queued_cmd_.bytes.size() +
                             (plan.cmds.size() + 1) * kTxEntryOverheadBytes,
                         "a MULTI queue")) {
      return refuse_command("ERR the server's client buffer budget is spent; retry later");
    }
    plan.bytes += queued_cmd_.bytes.size();
    plan.cmds.push_back(std::move(queued_cmd_));
    queued_cmd_ = Queued{};
    info_.multi = static_cast<int64_t>(plan.cmds.size());
    resp::append_simple(reply_target(), "QUEUED");
  }

  void queue_op(Shape shape) {
    if (!valid_op(shape)) return;
    queued_cmd_.local = false;
    queued_cmd_.shape = shape;
    kv::encode_op(op_, queued_cmd_.bytes);
  }

  void exec() {
    if (!multi_) return error(reply_target(), "ERR EXEC without MULTI");
    std::unique_ptr<TxPlan> plan = std::move(multi_);
    std::shared_ptr<WatchSet> watch = std::move(watch_);
    info_.multi = -1;
    unwatch();
    if (plan->dirty) {
      return error(reply_target(), "EXECABORT Transaction discarded because of previous errors.");
    }
    style_.shape = Shape::kExec;
    const uint64_t seq = next_seq();
    Slot& s = push(SlotState::kExecQueued);
    s.tx = std::move(plan);
    s.watch = std::move(watch);
    if (queued_++ == 0) frontier_ = seq;
  }

  // Every request before the EXEC is answered, so the stamps of its
  // WATCHes are known: build the kv MULTI op and submit it.
  void dispatch_exec(uint64_t seq, Slot& s) {
    MAROON_ASSERT(s.state == SlotState::kExecQueued && s.tx);
    const WatchSet* watch = s.watch.get();
    if (watch != nullptr && watch->failed) {
      resp::append_nil_array(s.bytes, s.style.proto);  // as if a watched key changed
      s.state = SlotState::kDone;
      return;
    }
    reset_op();
    op_.type = kv::OpType::kMulti;
    if (watch != nullptr) {
      MAROON_ASSERT(watch->answered == watch->keys.size());
      op_.keys.assign(watch->keys.begin(), watch->keys.end());
      op_.stamps = watch->stamps;
    }
    for (const Queued& q : s.tx->cmds) {
      if (!q.local) op_.ops.push_back(q.bytes);
    }
    if (Status v = kv::validate(op_); !v) {
      error(s.bytes, "ERR " + v.message());
      s.state = SlotState::kDone;
      return;
    }
    s.state = SlotState::kWritePending;
    pending_writes_++;
    submit(seq, kv::encode_op(op_));
  }

  void format_exec(const Result<kv::MultiReply>& r, const TxPlan& tx, resp::Proto proto,
                   std::string& dst) {
    if (!r) return error(dst, "ERR " + r.status().message());  // the tx was refused whole
    if (r->aborted) return resp::append_nil_array(dst, proto);
    size_t ops = 0;
    for (const Queued& q : tx.cmds) ops += q.local ? 0 : 1;
    if (r->replies.size() != ops) {
      return error(dst, "ERR internal error: EXEC reply does not match the transaction");
    }
    resp::append_array_header(dst, tx.cmds.size());
    size_t next = 0;
    for (const Queued& q : tx.cmds) {
      if (q.local) {
        dst += q.bytes;
        continue;
      }
      Result<kv::Reply> sub = kv::decode_reply(r->replies[next++]);
      if (!sub) {
        error(dst, "ERR internal error: " + sub.status().message());
      } else {
        format_reply(*sub, q.shape, proto, dst);
      }
    }
  }

  void watch(Args args) {
    if (multi_) return error(reply_target(), "ERR WATCH inside MULTI is not allowed");
    if (!watch_) watch_ = std::make_shared<WatchSet>(resources_);
    const size_t nkeys = args.size() - 1;
    size_t key_bytes = 0;
    for (size_t i = 1; i < args.size(); i++) key_bytes += args[i].size();
    // Watched keys travel in the EXEC's op, so they share its bounds.
    if (watch_->keys.size() + nkeys > limits::op_keys_max ||
        watch_->key_bytes + key_bytes > limits::op_bytes_max) {
      return error(reply_target(), fmt::format("ERR at most {} keys and {} bytes of keys can be "
                                               "watched",
                                               limits::op_keys_max, limits::op_bytes_max));
    }
    if (!watch_->hold.cover(watch_->key_bytes + key_bytes +
                                (watch_->keys.size() + nkeys) * kTxEntryOverheadBytes,
                            "watched keys")) {
      return error(reply_target(), "ERR the server's client buffer budget is spent; retry later");
    }
    watch_->key_bytes += key_bytes;
    style_.watch = watch_;
    style_.watch_offset = watch_->keys.size();
    for (size_t i = 1; i < args.size(); i++) watch_->keys.emplace_back(args[i]);
    watch_->stamps.resize(watch_->keys.size());
    info_.watched = watch_->keys.size();
    op_.type = kv::OpType::kWatch;
    op_.keys.assign(args.begin() + 1, args.end());
    read_op(Shape::kWatch);
  }

  void record_stamps(const Result<std::vector<kv::KeyStamp>>& r, const ReplyStyle& style,
                     std::string& dst) {
    WatchSet& w = *style.watch;
    if (!r) {
      w.failed = true;
      return error(dst, "ERR " + r.status().message());
    }
    if (style.watch_offset + r->size() > w.stamps.size()) {
      w.failed = true;
      return error(dst, "ERR internal error: unexpected WATCH reply");
    }
    std::copy(r->begin(), r->end(),
              w.stamps.begin() + static_cast<ptrdiff_t>(style.watch_offset));
    w.answered += r->size();
    resp::append_simple(dst, "OK");
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
        kVersion, st.node_id, clients_.size(), st.serving ? 1 : 0, st.read_only ? 1 : 0, st.range,
        st.applied_epoch, st.applied_txs, st.inflight_txs, st.quorum ? 1 : 0);
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
    if (args.size() >= 2 && iequals(args[1], "docs")) return resp::append_map_header(dst, 0, proto_);
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
      resp::append_map_header(dst, n, proto_);
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

  // CLIENT subcommands as Redis 7 answers them (docs/resp.md).
  void client(Args args) {
    const std::string_view sub = args[1];
    const size_t argc = args.size();
    // Only a short, printable subcommand is kept (CLIENT LIST shows it).
    info_.last_command =
        "client|" + (sub.size() <= 32 && valid_client_name(sub) ? lower(sub) : std::string("?"));
    const auto wrong_arity = [&] { error(reply_target(), arity_error("client|" + lower(sub))); };
    if (iequals(sub, "id")) {
      if (argc != 2) return wrong_arity();
      return resp::append_integer(reply_target(), static_cast<int64_t>(info_.id));
    }
    if (iequals(sub, "getname")) {
      if (argc != 2) return wrong_arity();
      if (info_.name.empty()) return resp::append_nil(reply_target(), proto_);
      return resp::append_bulk(reply_target(), info_.name);
    }
    if (iequals(sub, "setname")) {
      if (argc != 3) return wrong_arity();
      if (!valid_client_name(args[2])) {
        return error(reply_target(),
                     "ERR Client names cannot contain spaces, newlines or special characters.");
      }
      info_.name = args[2];
      return resp::append_simple(reply_target(), "OK");
    }
    if (iequals(sub, "info")) {
      if (argc != 2) return wrong_arity();
      return resp::append_bulk(reply_target(), format_client_info(info_, RespClock::now()) + "\n");
    }
    if (iequals(sub, "list")) return client_list(args);
    if (iequals(sub, "kill")) {
      // Closing others' connections is more than reading.
      if (!may_write()) return error(reply_target(), no_permission("client|kill"));
      if (argc < 3) return wrong_arity();
      return argc == 3 ? client_kill_addr(args[2]) : client_kill_filters(args);
    }
    if (iequals(sub, "reply")) {
      if (argc != 3) return wrong_arity();
      return client_reply(args[2]);
    }
    if (iequals(sub, "setinfo")) {
      if (argc != 4) return wrong_arity();
      return client_setinfo(args[2], args[3]);
    }
    if (iequals(sub, "no-evict") || iequals(sub, "no-touch")) {
      if (argc != 3) return wrong_arity();
      if (!iequals(args[2], "on") && !iequals(args[2], "off")) {
        return error(reply_target(), "ERR syntax error");
      }
      return resp::append_simple(reply_target(), "OK");  // nothing is evicted or touched here
    }
    if (iequals(sub, "help")) return client_help();
    error(reply_target(),
          fmt::format("ERR unknown subcommand '{}'. Try CLIENT HELP.", sub.substr(0, 128)));
  }

  // CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]
  void client_list(Args args) {
    std::vector<RespClientRegistry::Member*> members = clients_.members();
    size_t i = 2;
    if (i + 1 < args.size() && iequals(args[i], "type")) {
      const std::string_view type = args[i + 1];
      if (!iequals(type, "normal") && !iequals(type, "master") && !iequals(type, "replica") &&
          !iequals(type, "pubsub")) {
        return error(reply_target(), fmt::format("ERR Unknown client type '{}'", type.substr(0, 64)));
      }
      if (!iequals(type, "normal")) members.clear();  // every client here is a normal one
      i += 2;
    } else if (i + 1 < args.size() && iequals(args[i], "id")) {
      std::vector<RespClientRegistry::Member*> picked;
      for (i++; i < args.size(); i++) {
        int64_t id = 0;
        if (!parse_int64(args[i], id) || id <= 0) {
          return error(reply_target(), "ERR Invalid client ID");
        }
        if (auto* m = clients_.find(static_cast<uint64_t>(id))) picked.push_back(m);
      }
      members = std::move(picked);
    }
    if (i != args.size()) return error(reply_target(), "ERR syntax error");
    const RespClock::time_point now = RespClock::now();
    std::string text;
    for (const auto* m : members) {
      text += format_client_info(m->client_info(), now);
      text += '\n';
    }
    resp::append_bulk(reply_target(), text);
  }

  // The old form, CLIENT KILL addr:port: +OK, or an error when none matches.
  void client_kill_addr(std::string_view addr) {
    for (auto* m : clients_.members()) {
      if (m->client_info().addr != addr) continue;
      resp::append_simple(reply_target(), "OK");
      return kill_member(*m);
    }
    error(reply_target(), "ERR No such client");
  }

  // CLIENT KILL [ID id] [ADDR ip:port] [LADDR ip:port] [USER name] [SKIPME
  // yes|no] ...: the number of clients killed. Every filter must match.
  void client_kill_filters(Args args) {
    if (args.size() % 2 != 0) return error(reply_target(), "ERR syntax error");
    std::optional<uint64_t> id;
    std::optional<std::string_view> addr, laddr, user;
    bool skipme = true;
    for (size_t i = 2; i < args.size(); i += 2) {
      const std::string_view key = args[i], value = args[i + 1];
      if (iequals(key, "id")) {
        int64_t v = 0;
        if (!parse_int64(value, v) || v <= 0) {
          return error(reply_target(), "ERR client-id should be greater than 0");
        }
        id = static_cast<uint64_t>(v);
      } else if (iequals(key, "addr")) {
        addr = value;
      } else if (iequals(key, "laddr")) {
        laddr = value;
      } else if (iequals(key, "user")) {
        user = value;
      } else if (iequals(key, "skipme")) {
        if (iequals(value, "yes")) {
          skipme = true;
        } else if (iequals(value, "no")) {
          skipme = false;
        } else {
          return error(reply_target(), "ERR syntax error");
        }
      } else {
        return error(reply_target(), "ERR syntax error");
      }
    }
    std::vector<RespClientRegistry::Member*> victims;
    for (auto* m : clients_.members()) {
      const RespClientInfo& c = m->client_info();
      if (id && c.id != *id) continue;
      if (addr && c.addr != *addr) continue;
      if (laddr && c.laddr != *laddr) continue;
      if (user && *user != c.user) continue;
      if (skipme && m == this) continue;
      victims.push_back(m);
    }
    resp::append_integer(reply_target(), static_cast<int64_t>(victims.size()));
    for (auto* m : victims) kill_member(*m);
  }

  // Another connection closes at once; this one after its reply.
  void kill_member(RespClientRegistry::Member& m) {
    if (&m == this) {
      closing_ = true;
      return;
    }
    m.kill();
  }

  void client_reply(std::string_view mode) {
    if (iequals(mode, "on")) {
      reply_off_ = false;
      silent_ = false;
      return resp::append_simple(reply_target(), "OK");
    }
    if (iequals(mode, "off")) {
      reply_off_ = true;
      silent_ = true;
      return;
    }
    if (iequals(mode, "skip")) {
      skip_next_ = !reply_off_;
      silent_ = true;
      return;
    }
    error(reply_target(), "ERR syntax error");
  }

  void client_setinfo(std::string_view attr, std::string_view value) {
    std::string* field = iequals(attr, "lib-name")  ? &info_.lib_name
                         : iequals(attr, "lib-ver") ? &info_.lib_ver
                                                    : nullptr;
    if (field == nullptr) {
      return error(reply_target(), fmt::format("ERR Unrecognized option '{}'", attr.substr(0, 64)));
    }
    if (!valid_client_name(value)) {
      return error(reply_target(), fmt::format("ERR {} cannot contain spaces, newlines or special "
                                               "characters.",
                                               lower(attr)));
    }
    *field = value;
    resp::append_simple(reply_target(), "OK");
  }

  void client_help() {
    static constexpr std::string_view kLines[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME", "    Return the name of the current connection.",
        "ID", "    Return the ID of the current connection.",
        "INFO", "    Return information about the current client connection.",
        "KILL <ip:port>", "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>,",
        "    USER <username>, SKIPME (YES|NO).",
        "LIST [options ...]", "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "    * ID <client-id> [<client-id> ...]",
        "NO-EVICT (ON|OFF)", "    Accepted; maroon evicts nothing.",
        "NO-TOUCH (ON|OFF)", "    Accepted; maroon keeps no access times.",
        "REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
        "SETNAME <name>", "    Assign the name <name> to the current connection.",
        "SETINFO <option> <value>", "    Set LIB-NAME or LIB-VER of the current connection.",
        "HELP", "    Print this help.",
    };
    std::string& dst = reply_target();
    resp::append_array_header(dst, std::size(kLines));
    for (std::string_view line : kLines) resp::append_simple(dst, line);
  }

  // HELLO [protover [AUTH user password] [SETNAME name]]: switches to RESP2
  // or RESP3 and answers, in the new protocol, a map about the server.
  void hello(Args args) {
    resp::Proto proto = proto_;
    if (args.size() >= 2) {
      int64_t version = 0;
      if (!parse_int64(args[1], version)) {
        return error(reply_target(), "ERR Protocol version is not an integer or out of range");
      }
      if (version != 2 && version != 3) {
        return error(reply_target(), "NOPROTO sorry, this protocol version is not supported");
      }
      proto = version == 3 ? resp::Proto::kResp3 : resp::Proto::kResp2;
    }
    std::optional<std::string_view> name;
    std::optional<std::pair<std::string_view, std::string_view>> credentials;
    for (size_t i = 2; i < args.size(); i++) {
      const size_t left = args.size() - i - 1;
      if (iequals(args[i], "auth") && left >= 2) {
        credentials.emplace(args[i + 1], args[i + 2]);
        i += 2;
      } else if (iequals(args[i], "setname") && left >= 1) {
        name = args[++i];
        if (!valid_client_name(*name)) {
          return error(reply_target(),
                       "ERR Client names cannot contain spaces, newlines or special characters.");
        }
      } else {
        return error(reply_target(),
                     fmt::format("ERR Syntax error in HELLO option '{}'", args[i].substr(0, 64)));
      }
    }
    if (credentials && !log_in(credentials->first, credentials->second)) {
      return error(reply_target(), kWrongPass);
    }
    if (!logged_in()) {
      return error(reply_target(),
                   "NOAUTH HELLO must be called with the client already authenticated, otherwise "
                   "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
                   "client and select the RESP protocol version at the same time");
    }
    proto_ = proto;
    style_.proto = proto;
    info_.resp = static_cast<int>(proto);
    if (name) info_.name = *name;
    std::string& dst = reply_target();
    resp::append_map_header(dst, 7, proto);
    resp::append_bulk(dst, "server");
    resp::append_bulk(dst, "redis");
    resp::append_bulk(dst, "version");
    resp::append_bulk(dst, kVersion);
    resp::append_bulk(dst, "proto");
    resp::append_integer(dst, static_cast<int64_t>(proto));
    resp::append_bulk(dst, "id");
    resp::append_integer(dst, static_cast<int64_t>(info_.id));
    resp::append_bulk(dst, "mode");
    resp::append_bulk(dst, "standalone");
    resp::append_bulk(dst, "role");
    resp::append_bulk(dst, "master");
    resp::append_bulk(dst, "modules");
    resp::append_array_header(dst, 0);
  }

  Engine& engine_;
  ClientResources& resources_;
  size_t charged_ = 0;     // reply bytes taken from the budget and not yet written
  size_t in_charged_ = 0;  // the read buffer's growth past kReadBufferBytesInitial
  // Since when a partial request is buffered; since when a write is in flight.
  std::optional<std::chrono::steady_clock::time_point> partial_since_;
  std::chrono::steady_clock::time_point write_started_{};
  bool awaiting_rest_ = false;  // the last parse stopped inside a request
  const ClientSecurity& security_;
  // Who this connection logged in as; null before (always null without users).
  const User* user_ = nullptr;
  Metrics& metrics_;
  RespClientRegistry& clients_;  // touched only while open (registered_)
  ClientStream<tcp::socket> stream_;
  asio::steady_timer linger_timer_;
  RespClientInfo info_;
  bool registered_ = false;

  // Input: bytes [in_pos_, in_len_) of in_ are received and not yet parsed.
  std::string in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  resp::RequestParser parser_;
  kv::Op op_;           // reused for every request
  std::string op_buf_;  // reused encoding of reads run at once

  // The request being executed: how its reply is written and whether it is sent.
  ReplyStyle style_;
  bool silent_ = false;
  resp::Proto proto_ = resp::Proto::kResp2;  // HELLO 2|3
  bool reply_off_ = false;                    // CLIENT REPLY OFF
  bool skip_next_ = false;                    // CLIENT REPLY SKIP
  std::string discard_;                       // where silent replies go

  // MULTI: the open transaction, and the command being queued into it.
  std::unique_ptr<TxPlan> multi_;
  bool queuing_ = false;
  Queued queued_cmd_;
  std::string queued_reply_;
  // WATCH: the keys watched since the last EXEC, DISCARD or UNWATCH.
  std::shared_ptr<WatchSet> watch_;

  std::vector<Slot> ring_;
  size_t ring_head_ = 0;
  size_t count_ = 0;
  uint64_t head_seq_ = 0;
  uint64_t frontier_ = 0;      // no queued slot before it
  size_t pending_writes_ = 0;  // slots in kWritePending
  size_t queued_ = 0;          // slots in kReadQueued, kWriteQueued or kExecQueued

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
                       ClientResources& resources, ClientSecurity security)
    : engine_(engine),
      resources_(resources),
      security_(std::move(security)),
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
                 .refusal = refusal_unless_tls(
                     security_,
                     [](std::string_view why) { return fmt::format("-ERR {}\r\n", why); })},
                {.open = metrics_.connections_open,
                 .refused = metrics_.connections_refused,
                 .accepted = &metrics_.connections_accepted},
                [this](tcp::socket socket) {
                  return std::make_shared<Connection>(*this, std::move(socket),
                                                      next_connection_id_++);
                }) {}

RespServer::~RespServer() = default;

}  // namespace maroon::server
