#include "server/native_server.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string_view>
#include <utility>

#include "app/kv/kv_op.h"
#include "maroon/assert.h"
#include "protocol/client_messages.h"
#include "protocol/frame.h"
#include "server/client_stream.h"

namespace maroon::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct NativeServer::Metrics {
  explicit Metrics(Registry& r)
      : connections(r.gauge("maroon_native_connections", "Open native protocol connections.")),
        accepted(r.counter("maroon_native_connections_accepted_total",
                           "Native protocol connections accepted.")),
        rejected(
            r.counter("maroon_native_connections_rejected_total",
                      "Native protocol connections closed at accept: connections_max reached.")),
        requests(r.counter("maroon_native_requests_total", "Native protocol requests received.")),
        protocol_errors(r.counter("maroon_native_protocol_errors_total",
                                  "Native connections closed for a bad frame or message.")) {}
  Gauge& connections;
  Counter& accepted;
  Counter& rejected;
  Counter& requests;
  Counter& protocol_errors;
};

// One client connection. Owned by the listener's table while open; async
// operations hold a shared_ptr, engine callbacks only a weak_ptr, so a reply
// that arrives after the connection closed finds it gone (or closed) and is
// dropped.
class NativeServer::Connection : public Listener::Connection,
                                 public std::enable_shared_from_this<Connection> {
 public:
  Connection(NativeServer& server, tcp::socket socket)
      : engine_(server.engine_),
        metrics_(*server.metrics_),
        resources_(server.resources_),
        security_(server.security_),
        in_budget_(server.resources_, ClientPort::kNative),
        out_budget_(server.resources_, ClientPort::kNative),
        stream_(std::move(socket), server.security_.tls) {}

  void start() override {
    if (!stream_.is_tls()) return process();
    stream_.async_handshake(resources_.limits().header_timeout,
                            [self = shared_from_this()](error_code ec) { self->on_handshake(ec); });
  }

  // A frame begun must arrive within request_timeout; a write must finish
  // within stall_timeout.
  void tick(std::chrono::steady_clock::time_point now) override {
    if (closed_) return;
    const ClientLimits& l = resources_.limits();
    if (partial_since_ && now - *partial_since_ > l.request_timeout) {
      resources_.note_timeout(ClientPort::kNative, "a request frame not complete in time");
      return close();
    }
    if (write_active_ && now - write_started_ > l.stall_timeout) {
      resources_.note_timeout(ClientPort::kNative, "the client does not read its responses");
      return close();
    }
  }

  // Idempotent. After close nothing touches the server, socket or engine.
  void close() override {
    if (closed_) return;
    auto self = shared_from_this();  // leave() may drop the table's reference
    closed_ = true;
    stream_.shutdown_both();
    stream_.close();
    in_budget_.release_all();
    out_budget_.release_all();
    leave();
  }

 private:
  void on_handshake(error_code ec) {
    if (closed_) return;
    if (ec) {
      resources_.note_tls_handshake_failure(
          ClientPort::kNative, remote(),
          tls_handshake_failure_text(ec, resources_.limits().header_timeout));
      return close();
    }
    process();
  }

  // Input the budget covers: what a partial frame holds past one read's worth
  // (a pipelining client's ordinary reads take nothing from it).
  size_t input_bytes_held() const {
    const size_t n = decoder_.buffered();
    return n > native_read_chunk_bytes ? n - native_read_chunk_bytes : 0;
  }

  bool has_room() const {
    return inflight_ < limits::connection_inflight_requests_max &&
           out_.size() + writing_.size() < native_write_bytes_max;
  }

  // Handles buffered frames while the limits allow, then reads more if the
  // decoder needs bytes. Not reentrant: engine replies that arrive during it
  // (a synchronous submit) only queue their response.
  void process() {
    MAROON_ASSERT(!in_process_);
    in_process_ = true;
    bool need_more = false;
    while (!closed_ && !closing_ && has_room()) {
      protocol::Frame frame;
      const protocol::DecodeResult r = decoder_.next(frame);
      if (r == protocol::DecodeResult::kNeedMore) {
        need_more = true;
        break;
      }
      if (r == protocol::DecodeResult::kError) {
        protocol_error(decoder_.error());
        break;
      }
      handle(frame);
    }
    in_process_ = false;
    in_budget_.shrink_to(input_bytes_held());
    // Only a frame waiting for its rest counts; whole frames held back by
    // the limits wait for the client to read (stall_timeout).
    if (!need_more || decoder_.buffered() == 0) {
      partial_since_.reset();
    } else if (!partial_since_) {
      partial_since_ = std::chrono::steady_clock::now();
    }
    if (need_more && !reading_ && !peer_done_ && !closed_ && !closing_) read();
    schedule_flush();
    maybe_finish();
  }

  void read() {
    MAROON_ASSERT(!reading_);
    reading_ = true;
    std::span<char> space = decoder_.prepare(native_read_chunk_bytes);
    stream_.async_read_some(
        asio::buffer(space.data(), space.size()),
        [self = shared_from_this()](error_code ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(error_code ec, size_t n) {
    reading_ = false;
    if (closed_) return;
    if (ec) {
      if (ec == asio::error::eof) {
        // The client finished sending; answer what it sent, then close.
        peer_done_ = true;
        maybe_finish();
        return;
      }
      close();
      return;
    }
    decoder_.commit(n);
    if (security_.users != nullptr && user_ == nullptr &&
        decoder_.buffered() > native_unauthenticated_bytes_max) {
      // Nothing big is buffered for a client nobody knows: a Hello is small.
      protocol_error(Status(Code::kUnauthenticated,
                            "authentication required: send a Hello with a user and password"));
      schedule_flush();
      maybe_finish();
      return;
    }
    if (!in_budget_.cover(input_bytes_held(), "a request frame")) {
      // Nothing after this partial frame can be read; say why and close.
      protocol_error(unavailable("the server's client buffer budget is spent; retry later"));
      schedule_flush();
      maybe_finish();
      return;
    }
    process();
  }

  void handle(const protocol::Frame& frame) {
    switch (static_cast<protocol::FrameType>(frame.type)) {
      case protocol::FrameType::kRequest: {
        auto req = protocol::decode_request(frame.payload);
        if (!req.is_ok()) return protocol_error(req.status());
        metrics_.requests.inc();
        handle_request(*req);
        return;
      }
      case protocol::FrameType::kHello: {
        auto hello = protocol::decode_hello(frame.payload);
        if (!hello.is_ok()) return protocol_error(hello.status());
        const bool supported = hello->version == protocol::kProtocolVersion;
        // With users, a Hello must log in; without, anything goes.
        const bool accepted = log_in(*hello);
        protocol::encode_hello_reply(
            {.version = protocol::kProtocolVersion,
             .code = !supported ? Code::kInvalidArgument
                     : !accepted ? Code::kUnauthenticated
                                 : Code::kOk,
             .node_id = engine_.status().node_id},
            out_);
        if (!supported || !accepted) closing_ = true;
        return;
      }
      default:
        return protocol_error(
            invalid_argument("unexpected frame type " + std::to_string(frame.type)));
    }
  }

  // Credentials from a Hello. Without users, any are accepted (as RESP's
  // default user with nopass).
  bool log_in(const protocol::Hello& hello) {
    const UserTable* users = security_.users.get();
    if (users == nullptr) return true;
    if (hello.password.empty()) {
      user_ = nullptr;
      resources_.note_auth_failure(ClientPort::kNative, remote_text(), "");
      return false;
    }
    user_ = users->authenticate(hello.user, hello.password);
    if (user_ != nullptr) return true;
    resources_.note_auth_failure(ClientPort::kNative, remote_text(), hello.user);
    return false;
  }

  std::string remote_text() const { return remote().to_string(); }

  // Whether the logged-in user may run `req`: anyone without users; with
  // users, a read-only user only reads (read-only requests, or kv reads).
  Status permitted(const protocol::Request& req) const {
    if (security_.users == nullptr) return Status::ok();
    if (user_ == nullptr) {
      return Status(Code::kUnauthenticated,
                    "authentication required: send a Hello with a user and password");
    }
    if (user_->access == Access::kReadWrite || req.read_only()) return Status::ok();
    if (req.app == AppId::kKv) {
      if (auto op = kv::decode_op(req.op); op.is_ok() && kv::is_read_only(op->type)) {
        return Status::ok();
      }
    }
    return Status(Code::kPermissionDenied, "user \"" + user_->name + "\" is read-only");
  }

  void handle_request(const protocol::Request& req) {
    if (Status s = permitted(req); !s.is_ok()) return respond(req.request_id, s, {});
    if (req.op.size() > limits::op_bytes_max) {
      respond(req.request_id,
              too_large("op of " + std::to_string(req.op.size()) + " bytes exceeds the limit of " +
                        std::to_string(limits::op_bytes_max)),
              {});
      return;
    }
    if (req.read_only()) {
      Result<std::string> r = engine_.read(req.app, req.op);
      if (r.is_ok()) {
        respond(req.request_id, Status::ok(), *r);
      } else {
        respond(req.request_id, r.status(), {});
      }
      return;
    }
    inflight_++;
    engine_.submit(
        req.app, std::string(req.op),
        [weak = weak_from_this(), id = req.request_id](const Status& s, std::string_view reply) {
          if (auto self = weak.lock()) self->on_reply(id, s, reply);
        });
  }

  void on_reply(uint64_t request_id, const Status& s, std::string_view reply) {
    MAROON_ASSERT(inflight_ > 0);
    inflight_--;
    if (closed_ || closing_) return;
    respond(request_id, s, reply);
    if (in_process_) return;  // process() flushes and resumes when it returns
    if (!reading_) {
      process();  // was paused on a limit, or waiting to finish after EOF
    } else {
      schedule_flush();
    }
  }

  void respond(uint64_t request_id, const Status& s, std::string_view reply) {
    const size_t before = out_.size();
    protocol::encode_response({.request_id = request_id,
                               .code = s.code(),
                               .error = s.message(),
                               .reply = s.is_ok() ? reply : std::string_view()},
                              out_);
    if (out_budget_.cover(out_.size() + writing_.size(), "a response")) return;
    // Refused by the budget: the client gets a short error in its place.
    out_.resize(before);
    protocol::encode_response(
        {.request_id = request_id,
         .code = Code::kOverloaded,
         .error = "the server's client buffer budget is spent; the reply was dropped"},
        out_);
    (void)out_budget_.cover(out_.size() + writing_.size(), "an error response");
  }

  // Tells the client why, then closes: nothing after a bad frame can be trusted.
  void protocol_error(const Status& s) {
    metrics_.protocol_errors.inc();
    respond(0, s.is_ok() ? invalid_argument("protocol error") : s, {});
    closing_ = true;
  }

  // Writes are deferred to the end of the loop turn so that replies completed
  // together (one epoch) share a write.
  void schedule_flush() {
    if (flush_scheduled_ || write_active_ || out_.empty() || closed_) return;
    flush_scheduled_ = true;
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->flush_scheduled_ = false;
      self->flush();
    });
  }

  void flush() {
    if (closed_ || write_active_ || out_.empty()) return;
    std::swap(out_, writing_);
    out_.clear();
    write_active_ = true;
    write_started_ = std::chrono::steady_clock::now();
    asio::async_write(stream_, asio::buffer(writing_),
                      [self = shared_from_this()](error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    write_active_ = false;
    if (closed_) return;
    if (ec) {
      close();
      return;
    }
    // Do not keep a large buffer around after a burst of big replies.
    if (writing_.capacity() > 4 * native_read_chunk_bytes) {
      std::string().swap(writing_);
    } else {
      writing_.clear();
    }
    out_budget_.shrink_to(out_.size());
    flush();
    if (!reading_ && !in_process_) {
      process();
    } else {
      maybe_finish();
    }
  }

  // Closes once there is nothing more to say: after a protocol error, or after
  // the client's EOF once every request is answered.
  void maybe_finish() {
    if (closed_ || write_active_ || !out_.empty() || flush_scheduled_) return;
    // After EOF, process() has consumed every complete frame whenever it ran
    // with room; a partial frame left in the decoder will never complete.
    if (closing_ || (peer_done_ && inflight_ == 0 && !in_process_)) close();
  }

  Engine& engine_;
  Metrics& metrics_;
  ClientResources& resources_;
  const ClientSecurity& security_;
  const User* user_ = nullptr;  // logged in by a Hello (with users)
  BudgetHold in_budget_;   // the decoder's buffered bytes
  BudgetHold out_budget_;  // out_ and writing_
  ClientStream<tcp::socket> stream_;
  protocol::FrameDecoder decoder_;
  // Since when the decoder holds part of a frame; a write in flight since when.
  std::optional<std::chrono::steady_clock::time_point> partial_since_;
  std::chrono::steady_clock::time_point write_started_{};
  std::string out_;      // responses not yet handed to a write
  std::string writing_;  // the buffer the active async_write sends
  size_t inflight_ = 0;  // submitted to the engine, not yet replied
  bool in_process_ = false;
  bool reading_ = false;
  bool write_active_ = false;
  bool flush_scheduled_ = false;
  bool peer_done_ = false;  // the client closed its sending side
  bool closing_ = false;    // protocol error: flush, then close
  bool closed_ = false;
};

NativeServer::NativeServer(asio::io_context& io, Engine& engine, std::string host, uint16_t port,
                           ClientResources& resources, ClientSecurity security)
    : engine_(engine),
      metrics_(std::make_unique<Metrics>(engine.metrics())),
      resources_(resources),
      security_(std::move(security)),
      listener_(io, resources_,
                {.name = "native server",
                 .host = std::move(host),
                 .port = port,
                 .client_port = ClientPort::kNative,
                 .refusal = refusal_unless_tls(
                     security_,
                     [](std::string_view why) {
                       std::string frame;
                       protocol::encode_response(
                           {.request_id = 0, .code = Code::kUnavailable, .error = std::string(why)},
                           frame);
                       return frame;
                     })},
                {.open = metrics_->connections,
                 .refused = metrics_->rejected,
                 .accepted = &metrics_->accepted},
                [this](tcp::socket socket) {
                  return std::make_shared<Connection>(*this, std::move(socket));
                }) {}

NativeServer::~NativeServer() = default;

}  // namespace maroon::server
