// A C++ client for maroon's native protocol (docs/formats/frames.md).
//
// NativeConnection is the pipelined core, made for load generators: queue any
// number of requests with send(), then pump with poll(), which writes what is
// queued and collects whatever responses have arrived, in completion order.
// Client wraps one connection for simple blocking calls (the CLI).
//
// Neither is thread-safe: use one per thread. Plain POSIX sockets, no event
// loop; poll() never blocks on a write while responses are waiting, so a
// deep pipeline cannot deadlock against the server's backpressure.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "app/kv/kv_op.h"
#include "maroon/status.h"
#include "common/types.h"
#include "protocol/frame.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX
struct ssl_st;      // OpenSSL's SSL

namespace maroon::client {

// TLS to a native port that speaks it (docs/security.md, "Client TLS"):
// TLS 1.2 or 1.3; the server's certificate must chain to the CA given and
// name the host dialled. One per process, shared by its connections (and
// threads).
class ClientTls {
 public:
  // `ca_file`: the PEM CA the server's certificate must chain to. With
  // `cert_file` and `key_file` (PEM), the client presents that certificate
  // (mutual TLS). Errors name the file.
  static Result<std::shared_ptr<const ClientTls>> load(const std::string& ca_file,
                                                       const std::string& cert_file = "",
                                                       const std::string& key_file = "");
  ~ClientTls();
  ClientTls(const ClientTls&) = delete;
  ClientTls& operator=(const ClientTls&) = delete;
  ssl_ctx_st* context() const { return ctx_; }

 private:
  explicit ClientTls(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

struct Options {
  std::chrono::milliseconds connect_timeout{5000};
  // Client::call gives up after this long; a late response is discarded.
  std::chrono::milliseconds call_timeout{30000};
  std::string client_name = "maroon-client";  // sent in Hello, for server logs
  // Credentials for a server with users (docs/security.md): a password (or
  // token) and, optionally, the user it belongs to. Empty: none sent.
  std::string user;
  std::string password;
  std::shared_ptr<const ClientTls> tls;       // null: plaintext
};

// A response as received; owns its bytes.
struct Response {
  uint64_t request_id = 0;
  // kOk: `reply` is the app's reply. Otherwise the op did not run, except:
  // kOutcomeUnknown (may_have_run()): it was sent but no result came in time
  // (e.g. the cluster lost its quorum); it may still take effect later.
  // kNoQuorum: the cluster has no working quorum and the request was refused
  // before it was sent anywhere: it never runs; retry later.
  Code code = Code::kOk;
  std::string error;
  uint64_t tx_id = 0;
  std::string reply;
  Status status() const { return code == Code::kOk ? Status::ok() : Status(code, error); }
  bool no_quorum() const { return code == Code::kNoQuorum; }
  bool may_have_run() const { return code == Code::kOk || code == Code::kOutcomeUnknown; }
};

class NativeConnection {
 public:
  // Connects, sends Hello and waits for the server's HelloReply.
  static Result<NativeConnection> connect(const std::string& host, uint16_t port,
                                          const Options& options = {});
  NativeConnection(NativeConnection&& other) noexcept;
  NativeConnection& operator=(NativeConnection&& other) noexcept;
  NativeConnection(const NativeConnection&) = delete;
  NativeConnection& operator=(const NativeConnection&) = delete;
  ~NativeConnection();

  // Queues a request and returns its request id (1, 2, 3, ...). Nothing is
  // written until poll(). Ops over limits::op_bytes_max are the caller's
  // error to avoid; the server answers them with kTooLarge.
  uint64_t send(AppId app, std::string_view op, bool read_only);
  // Encodes a kv op; read-only ops (get, mget, exists, scan, size) are sent
  // with the read-only flag and served from applied state.
  uint64_t send(const kv::Op& op);

  // Writes queued requests and reads responses until at least one response
  // has arrived or `timeout` passes (0: do what is possible without waiting).
  // Appends the responses to `out` and returns how many. A broken connection
  // (peer closed, bad frame, connection-level error from the server) returns
  // its Status now and on every later call.
  Result<size_t> poll(std::vector<Response>& out, std::chrono::milliseconds timeout);

  // Requests sent (queued) whose responses have not been returned by poll().
  size_t in_flight() const { return in_flight_; }
  // Bytes queued but not yet written.
  size_t unsent_bytes() const { return out_.size() - out_pos_; }
  bool is_broken() const { return !broken_.is_ok(); }
  uint64_t server_node_id() const { return node_id_; }
  // For callers that multiplex many connections with epoll: readable means
  // poll(…, 0) has work; writable matters while unsent_bytes() > 0.
  int fd() const { return fd_; }

 private:
  explicit NativeConnection(int fd) : fd_(fd) {}
  // The TLS handshake over fd_, as a client of `host`, within the deadline.
  Status handshake(const ClientTls& tls, const std::string& host,
                   std::chrono::steady_clock::time_point deadline);
  Status hello(const Options& options);
  // One step: write what the socket takes, read what it has. Returns false
  // (with broken_ set) on failure.
  bool pump(bool wait, std::chrono::steady_clock::time_point deadline);
  bool write_some();
  bool read_some(bool& got_bytes);
  void decode_frames(std::vector<Response>& out);
  void fail(Status s, bool from_server = false);

  void close_socket();

  int fd_ = -1;
  ssl_st* ssl_ = nullptr;  // TLS over fd_, or null
  uint64_t next_request_id_ = 1;
  size_t in_flight_ = 0;
  std::string out_;     // encoded requests
  size_t out_pos_ = 0;  // out_[0, out_pos_) is written
  protocol::FrameDecoder decoder_;
  Status broken_;
  uint64_t node_id_ = 0;
  bool hello_done_ = false;
};

// Blocking calls over one connection.
class Client {
 public:
  static Result<Client> connect(const std::string& host, uint16_t port,
                                const Options& options = {});

  // Executes one kv op. The outer Result fails when the op did not run
  // (overloaded, unavailable, no quorum, too large) or may not have
  // (kOutcomeUnknown, connection broken or timed out); an app-level error
  // (e.g. kConflict, kWrongType) is a Reply of kind kError.
  Result<kv::Reply> call(const kv::Op& op);
  // The raw form: any app, any encoded op.
  Result<Response> call_raw(AppId app, std::string_view op, bool read_only);

  NativeConnection& connection() { return conn_; }

 private:
  Client(NativeConnection conn, Options options)
      : conn_(std::move(conn)), options_(std::move(options)) {}
  NativeConnection conn_;
  Options options_;
};

}  // namespace maroon::client
