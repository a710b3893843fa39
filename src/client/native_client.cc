#include "client/native_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "maroon/assert.h"
#include "protocol/client_messages.h"

namespace maroon::client {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunkBytes = 64 * 1024;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

int remaining_ms(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1'000'000 ? 1'000'000 : static_cast<int>(left);
}

// Connects a non-blocking socket to one address within the deadline.
int connect_one(const addrinfo* ai, Clock::time_point deadline, std::string& error) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    error = errno_text("socket");
    return -1;
  }
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      error = errno_text("connect");
      ::close(fd);
      return -1;
    }
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    int n;
    do {
      n = ::poll(&p, 1, remaining_ms(deadline));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      error = n == 0 ? "connect: timed out" : errno_text("poll");
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0) {
      error = std::string("connect: ") + std::strerror(so_error != 0 ? so_error : errno);
      ::close(fd);
      return -1;
    }
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// The error OpenSSL queued last (clearing the queue), or `fallback`.
std::string ssl_error_text(const char* fallback) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return fallback;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

Result<std::shared_ptr<const ClientTls>> ClientTls::load(const std::string& ca_file,
                                                         const std::string& cert_file,
                                                         const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return invalid_argument("TLS: " + ssl_error_text("SSL_CTX_new"));
  std::shared_ptr<const ClientTls> tls(new ClientTls(ctx));
  const auto fail = [](const std::string& what) {
    return invalid_argument(what + ": " + ssl_error_text("cannot load"));
  };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return fail("TLS 1.2");
  // poll() writes what the socket takes of a growing buffer: partial writes,
  // retried from a buffer that may have moved.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The server ends a connection with TCP FIN, no close_notify; frames
  // delimit themselves, so that is the end of the stream.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) return fail(ca_file);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (cert_file.empty() != key_file.empty()) {
    return invalid_argument("TLS: a client certificate needs its key, and a key its certificate");
  }
  if (!cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) return fail(cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return fail(key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      return invalid_argument(key_file + ": the key does not belong to " + cert_file);
    }
  }
  return tls;
}

ClientTls::~ClientTls() { SSL_CTX_free(ctx_); }

Result<NativeConnection> NativeConnection::connect(const std::string& host, uint16_t port,
                                                   const Options& options) {
  const auto deadline = Clock::now() + options.connect_timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
    return unavailable("cannot resolve " + host + ": " + ::gai_strerror(rc));
  }
  std::string error = "no addresses";
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next)
    fd = connect_one(ai, deadline, error);
  ::freeaddrinfo(res);
  if (fd < 0) return unavailable("cannot connect to " + host + ":" + port_text + ": " + error);

  NativeConnection conn(fd);
  if (options.tls) {
    if (Status s = conn.handshake(*options.tls, host, deadline); !s.is_ok()) {
      return unavailable("TLS to " + host + ":" + port_text + ": " + s.message());
    }
  }
  if (Status s = conn.hello(options); !s.is_ok()) return s;
  return conn;
}

Status NativeConnection::handshake(const ClientTls& tls, const std::string& host,
                                   Clock::time_point deadline) {
  MAROON_ASSERT(ssl_ == nullptr && fd_ >= 0);
  ssl_ = SSL_new(tls.context());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
    return unavailable(ssl_error_text("SSL_new"));
  }
  // The certificate must name the host dialled (an address: its IP entries).
  if (SSL_set1_host(ssl_, host.c_str()) != 1 ||
      (!is_ip_literal(host) && SSL_set_tlsext_host_name(ssl_, host.c_str()) != 1)) {
    return unavailable(ssl_error_text("the host name"));
  }
  for (;;) {
    const int rc = SSL_connect(ssl_);
    if (rc == 1) return Status::ok();
    const int err = SSL_get_error(ssl_, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        ERR_clear_error();
        return unavailable(std::string("the server's certificate: ") +
                           X509_verify_cert_error_string(verify));
      }
      return unavailable(ssl_error_text(
          err == SSL_ERROR_SYSCALL ? "the server closed the connection" : "handshake failed"));
    }
    pollfd p{.fd = fd_,
             .events = static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT),
             .revents = 0};
    int n;
    do {
      n = ::poll(&p, 1, remaining_ms(deadline));
    } while (n < 0 && errno == EINTR);
    if (n == 0) return unavailable("handshake: timed out");
    if (n < 0) return unavailable(errno_text("poll"));
  }
}

NativeConnection::NativeConnection(NativeConnection&& other) noexcept { *this = std::move(other); }

NativeConnection& NativeConnection::operator=(NativeConnection&& other) noexcept {
  if (this == &other) return *this;
  close_socket();
  fd_ = std::exchange(other.fd_, -1);
  ssl_ = std::exchange(other.ssl_, nullptr);
  next_request_id_ = other.next_request_id_;
  in_flight_ = std::exchange(other.in_flight_, 0);
  out_ = std::move(other.out_);
  out_pos_ = std::exchange(other.out_pos_, 0);
  decoder_ = std::move(other.decoder_);
  broken_ = std::exchange(other.broken_, unavailable("connection moved away"));
  node_id_ = other.node_id_;
  hello_done_ = other.hello_done_;
  return *this;
}

NativeConnection::~NativeConnection() { close_socket(); }

void NativeConnection::close_socket() {
  // No close_notify: the server reads the end of the stream as EOF either way.
  if (ssl_ != nullptr) SSL_free(std::exchange(ssl_, nullptr));
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

Status NativeConnection::hello(const Options& options) {
  std::string name = options.client_name.substr(0, protocol::client_name_bytes_max);
  if (options.user.size() > protocol::hello_user_bytes_max ||
      options.password.size() > protocol::hello_password_bytes_max ||
      (!options.user.empty() && options.password.empty())) {
    return invalid_argument("a user needs a password; a user name is at most 64 bytes and a "
                            "password at most 1024");
  }
  protocol::encode_hello({.version = protocol::kProtocolVersion,
                          .client_name = name,
                          .user = options.user,
                          .password = options.password},
                         out_);
  const auto deadline = Clock::now() + options.connect_timeout;
  while (!hello_done_) {
    pump(true, deadline);
    std::vector<Response> unexpected;
    decode_frames(unexpected);
    if (is_broken()) return broken_;
    if (!unexpected.empty()) {
      fail(invalid_argument("server sent a response before the hello reply"));
      return broken_;
    }
    if (!hello_done_ && Clock::now() >= deadline) {
      fail(unavailable("timed out waiting for the server's hello reply"));
      return broken_;
    }
  }
  return Status::ok();
}

uint64_t NativeConnection::send(AppId app, std::string_view op, bool read_only) {
  const uint64_t id = next_request_id_++;
  if (op.size() > protocol::kFramePayloadBytesMax - 64) {
    // Cannot be framed at all; the server would reject it as too large anyway.
    fail(too_large("op of " + std::to_string(op.size()) + " bytes cannot be framed"));
    return id;
  }
  // Reclaim the written prefix before it grows the buffer.
  if (out_pos_ > 0 && out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
  protocol::encode_request(
      {.request_id = id,
       .app = app,
       .flags = static_cast<uint8_t>(read_only ? protocol::kRequestReadOnly : 0),
       .op = op},
      out_);
  in_flight_++;
  return id;
}

uint64_t NativeConnection::send(const kv::Op& op) {
  std::string bytes;
  kv::encode_op(op, bytes);
  return send(AppId::kKv, bytes, kv::is_read_only(op.type));
}

void NativeConnection::fail(Status s, bool from_server) {
  MAROON_ASSERT(!s.is_ok());
  // The server's own explanation beats "connection closed", which often
  // arrives first because the server closes right after explaining.
  if (is_broken() && !from_server) return;
  broken_ = std::move(s);
  close_socket();
}

bool NativeConnection::write_some() {
  while (ssl_ != nullptr && out_pos_ < out_.size()) {
    const int n = SSL_write(ssl_, out_.data() + out_pos_,
                            static_cast<int>(std::min<size_t>(out_.size() - out_pos_, INT_MAX)));
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return true;
    fail(unavailable("TLS write: " + ssl_error_text("the connection broke")));
    return false;
  }
  while (out_pos_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    fail(unavailable(errno_text("send")));
    return false;
  }
  out_.clear();
  out_pos_ = 0;
  return true;
}

bool NativeConnection::read_some(bool& got_bytes) {
  got_bytes = false;
  while (ssl_ != nullptr) {
    // Until OpenSSL wants the socket: a record decrypted but not yet taken
    // would not wake poll().
    std::span<char> space = decoder_.prepare(kReadChunkBytes);
    const int n =
        SSL_read(ssl_, space.data(), static_cast<int>(std::min<size_t>(space.size(), INT_MAX)));
    if (n > 0) {
      decoder_.commit(static_cast<size_t>(n));
      got_bytes = true;
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
      ERR_clear_error();
      fail(unavailable("server closed the connection"));
    } else {
      fail(unavailable("TLS read: " + ssl_error_text("the connection broke")));
    }
    return false;
  }
  for (;;) {
    std::span<char> space = decoder_.prepare(kReadChunkBytes);
    ssize_t n = ::recv(fd_, space.data(), space.size(), 0);
    if (n > 0) {
      decoder_.commit(static_cast<size_t>(n));
      got_bytes = true;
      if (static_cast<size_t>(n) < space.size()) return true;  // drained for now
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // EOF: responses already buffered are still delivered by decode_frames.
    if (n == 0) {
      fail(unavailable("server closed the connection"));
    } else {
      fail(unavailable(errno_text("recv")));
    }
    return false;
  }
}

bool NativeConnection::pump(bool wait, Clock::time_point deadline) {
  if (is_broken()) return false;
  if (!write_some()) return false;
  bool got = false;
  if (!read_some(got)) return false;
  if (got || !wait) return true;
  // Nothing arrived yet: sleep in poll until readable (or writable while we
  // still have bytes to send) or the deadline.
  pollfd p{.fd = fd_,
           .events = static_cast<short>(POLLIN | (unsent_bytes() > 0 ? POLLOUT : 0)),
           .revents = 0};
  int n = ::poll(&p, 1, remaining_ms(deadline));
  if (n < 0 && errno != EINTR) {
    fail(unavailable(errno_text("poll")));
    return false;
  }
  if (n > 0) {
    if (!write_some()) return false;
    if (!read_some(got)) return false;
  }
  return true;
}

void NativeConnection::decode_frames(std::vector<Response>& out) {
  protocol::Frame frame;
  for (;;) {
    protocol::DecodeResult r = decoder_.next(frame);
    if (r == protocol::DecodeResult::kNeedMore) return;
    if (r == protocol::DecodeResult::kError) {
      fail(Status(Code::kCorruption, "bad frame from server: " + decoder_.error().message()));
      return;
    }
    switch (static_cast<protocol::FrameType>(frame.type)) {
      case protocol::FrameType::kResponse: {
        auto m = protocol::decode_response(frame.payload);
        if (!m.is_ok()) {
          fail(m.status());
          return;
        }
        if (m->request_id == 0) {
          // A connection-level error; the server closes after sending it.
          fail(Status(m->code == Code::kOk ? Code::kInvalidArgument : m->code,
                      "server closed the connection: " + std::string(m->error)),
               true);
          return;
        }
        if (in_flight_ == 0) {
          fail(invalid_argument("response to a request that was not sent"));
          return;
        }
        in_flight_--;
        out.push_back(Response{.request_id = m->request_id,
                               .code = m->code,
                               .error = std::string(m->error),
                               .tx_id = m->tx_id,
                               .reply = std::string(m->reply)});
        break;
      }
      case protocol::FrameType::kHelloReply: {
        auto m = protocol::decode_hello_reply(frame.payload);
        if (!m.is_ok()) {
          fail(m.status());
          return;
        }
        if (m->code == Code::kUnauthenticated) {
          fail(Status(m->code, "the server refused the credentials (or needs some: give a user "
                               "and password)"),
               true);
          return;
        }
        if (m->code != Code::kOk) {
          fail(Status(m->code, "server refused protocol version " +
                                   std::to_string(protocol::kProtocolVersion) + " (speaks " +
                                   std::to_string(m->version) + ")"),
               true);
          return;
        }
        node_id_ = m->node_id;
        hello_done_ = true;
        break;
      }
      default:
        fail(invalid_argument("unexpected frame type " + std::to_string(frame.type) +
                              " from server"));
        return;
    }
  }
}

Result<size_t> NativeConnection::poll(std::vector<Response>& out,
                                      std::chrono::milliseconds timeout) {
  const size_t before = out.size();
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    pump(timeout.count() > 0, deadline);
    // Deliver what arrived even if the connection broke right after.
    decode_frames(out);
    if (out.size() > before) return out.size() - before;
    if (is_broken()) return broken_;
    if (Clock::now() >= deadline) return size_t{0};
  }
}

Result<Client> Client::connect(const std::string& host, uint16_t port, const Options& options) {
  auto conn = NativeConnection::connect(host, port, options);
  if (!conn.is_ok()) return conn.status();
  return Client(std::move(conn).value(), options);
}

Result<Response> Client::call_raw(AppId app, std::string_view op, bool read_only) {
  const uint64_t id = conn_.send(app, op, read_only);
  const auto deadline = Clock::now() + options_.call_timeout;
  std::vector<Response> got;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return unavailable("no response within " + std::to_string(options_.call_timeout.count()) +
                         " ms");
    }
    auto n = conn_.poll(got, left);
    if (!n.is_ok()) return n.status();
    for (Response& r : got) {
      if (r.request_id == id) return std::move(r);
    }
    got.clear();  // responses to requests sent through connection() directly
  }
}

Result<kv::Reply> Client::call(const kv::Op& op) {
  if (Status s = kv::validate(op); !s.is_ok()) return s;
  std::string bytes;
  kv::encode_op(op, bytes);
  auto r = call_raw(AppId::kKv, bytes, kv::is_read_only(op.type));
  if (!r.is_ok()) return r.status();
  if (r->code != Code::kOk) return r->status();
  return kv::decode_reply(r->reply);
}

}  // namespace maroon::client
