// TLS on the client ports: each server (RESP, HTTP, native) over TLS with a
// real OpenSSL client, the ways a connection is refused, and the context and
// certificate files behind it (client_tls.h).
#include "server/client_tls.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "app/kv/kv_op.h"
#include "net/cert_files.h"
#include "net/certs.h"
#include "protocol/client_messages.h"
#include "protocol/frame.h"
#include "server/fake_engine.h"
#include "server/http_server.h"
#include "server/loop_harness.h"
#include "server/native_server.h"
#include "server/resp_server.h"

namespace maroon::server {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

constexpr auto kDeadline = 10s;

// ---- certificates, made once

struct Pki {
  net::KeyAndCert ca = net::make_local_ca("test CA", 30).value();
  net::KeyAndCert server =
      net::issue_tls_leaf(
          ca, {.common_name = "localhost", .dns_names = {"localhost"}, .ips = {"127.0.0.1"}}, 10)
          .value();
  net::KeyAndCert client_ca = net::make_local_ca("test client CA", 30).value();
  net::KeyAndCert client =
      net::issue_tls_leaf(client_ca, {.common_name = "alice", .use = net::TlsLeaf::Use::kClient},
                          10)
          .value();
  // A client certificate from a CA the server does not trust.
  net::KeyAndCert stranger_ca = net::make_local_ca("another CA", 30).value();
  net::KeyAndCert stranger =
      net::issue_tls_leaf(stranger_ca,
                          {.common_name = "mallory", .use = net::TlsLeaf::Use::kClient}, 10)
          .value();
};

const Pki& pki() {
  static const Pki p;
  return p;
}

ClientSecurity tls_security(bool client_certs = false) {
  Result<std::shared_ptr<ssl::context>> ctx =
      make_client_tls_context({.cert_chain = pki().server.cert_pem,
                               .key = pki().server.key_pem,
                               .client_ca = client_certs ? pki().client_ca.cert_pem : ""});
  MAROON_ASSERT_MSG(ctx.is_ok(), ctx.status().to_string().c_str());
  return ClientSecurity{.tls = std::move(ctx).value()};
}

// A client context trusting the test CA, as curl --cacert does; presents
// `cert` when given.
std::unique_ptr<ssl::context> client_context(const net::KeyAndCert* cert = nullptr) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->add_certificate_authority(asio::buffer(pki().ca.cert_pem));
  ctx->set_verify_mode(ssl::verify_peer);
  if (cert != nullptr) {
    ctx->use_certificate_chain(asio::buffer(cert->cert_pem));
    ctx->use_private_key(asio::buffer(cert->key_pem), ssl::context::pem);
  }
  return ctx;
}

// ---- a client with deadlines: each operation runs the client's own
// io_context until it completes or the deadline passes.

class TestClient {
 public:
  // TLS over the connection when `tls` is set (handshake() first), else plain.
  TestClient(uint16_t port, ssl::context* tls) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    if (tls != nullptr) {
      tls_.emplace(socket_, *tls);
      tls_->set_verify_callback(ssl::host_name_verification("localhost"));
      SSL_set_tlsext_host_name(tls_->native_handle(), "localhost");
    }
  }

  error_code handshake() {
    error_code result;
    bool done = false;
    tls_->async_handshake(ssl::stream_base::client, [&](error_code ec) {
      result = ec;
      done = true;
    });
    if (!run_until(done, kDeadline)) return asio::error::timed_out;
    return result;
  }

  error_code write(std::string_view bytes) {
    error_code result;
    bool done = false;
    const auto on_done = [&](error_code ec, size_t) {
      result = ec;
      done = true;
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(bytes), on_done);
    } else {
      asio::async_write(socket_, asio::buffer(bytes), on_done);
    }
    if (!run_until(done, kDeadline)) return asio::error::timed_out;
    return result;
  }

  struct Read {
    std::string bytes;
    error_code ended;  // why the stream ended; none if `enough` held first
    bool timed_out = false;
  };
  // Reads until enough(bytes) holds, the stream ends or `limit` passes.
  Read read(const std::function<bool(const std::string&)>& enough,
            std::chrono::steady_clock::duration limit = kDeadline) {
    Read r;
    bool done = false;
    std::array<char, 4096> chunk{};
    std::function<void()> next = [&] {
      auto on_read = [&](error_code ec, size_t n) {
        r.bytes.append(chunk.data(), n);
        if (ec || enough(r.bytes)) {
          r.ended = ec;
          done = true;
        } else {
          next();
        }
      };
      if (tls_) {
        tls_->async_read_some(asio::buffer(chunk), on_read);
      } else {
        socket_.async_read_some(asio::buffer(chunk), on_read);
      }
    };
    if (enough(r.bytes)) return r;
    next();
    r.timed_out = !run_until(done, limit);
    return r;
  }
  // Everything until the server ends the stream.
  Read read_to_end(std::chrono::steady_clock::duration limit = kDeadline) {
    return read([](const std::string&) { return false; }, limit);
  }

 private:
  bool run_until(bool& flag, std::chrono::steady_clock::duration limit) {
    io_.restart();
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!flag && std::chrono::steady_clock::now() < deadline) io_.run_one_for(20ms);
    if (flag) return true;
    error_code ignored;
    socket_.cancel(ignored);
    io_.restart();
    io_.run();  // the cancelled operation's handler
    return false;
  }

  asio::io_context io_;
  tcp::socket socket_;
  std::optional<ssl::stream<tcp::socket&>> tls_;
};

// ---- each server's protocol: a request, and the reply it must get.

struct Resp {
  using Server = RespServer;
  // SET, GET and QUIT: the server answers, then half-closes (its linger path).
  static std::string request() {
    return "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
           "*1\r\n$4\r\nQUIT\r\n";
  }
  static bool answered(const std::string& got) { return got == "+OK\r\n$1\r\nv\r\n+OK\r\n"; }
  static constexpr bool server_closes = true;
};

struct Http {
  using Server = HttpServer;
  // PUT, then a GET with Connection: close (the server's linger path).
  static std::string request() {
    return "PUT /v1/kv/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nv"
           "GET /v1/kv/k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  }
  static bool answered(const std::string& got) {
    return got.starts_with("HTTP/1.1 200") &&
           got.find("\r\n\r\n{\"ok\":true}\nHTTP/1.1 200") != std::string::npos &&
           got.ends_with("\r\n\r\nv");
  }
  static constexpr bool server_closes = true;
};

struct Native {
  using Server = NativeServer;
  // Hello, a SET and a GET: three frames back.
  static std::string request() {
    std::string out;
    protocol::encode_hello({.client_name = "tls-test"}, out);
    kv::Op set{.type = kv::OpType::kSet};
    set.keys = {"k"};
    set.values = {"v"};
    protocol::encode_request({.request_id = 1, .op = kv::encode_op(set)}, out);
    kv::Op get{.type = kv::OpType::kGet};
    get.keys = {"k"};
    const std::string get_op = kv::encode_op(get);
    protocol::encode_request({.request_id = 2, .flags = protocol::kRequestReadOnly, .op = get_op},
                             out);
    return out;
  }
  static bool answered(const std::string& got) {
    protocol::FrameDecoder d;
    d.feed(got);
    protocol::Frame f;
    if (d.next(f) != protocol::DecodeResult::kFrame) return false;
    Result<protocol::HelloReply> hello = protocol::decode_hello_reply(f.payload);
    if (!hello.is_ok() || hello->code != Code::kOk) return false;
    for (uint64_t id : {1, 2}) {
      if (d.next(f) != protocol::DecodeResult::kFrame) return false;
      Result<protocol::Response> r = protocol::decode_response(f.payload);
      if (!r.is_ok() || r->request_id != id || r->code != Code::kOk) return false;
      const kv::Reply want = id == 1 ? kv::Reply::ok() : kv::Reply::of_value("v");
      if (kv::decode_reply(r->reply).value() != want) return false;
    }
    return d.buffered() == 0;
  }
  static constexpr bool server_closes = false;
};

template <typename P>
class ClientTlsServer : public testing::Test {
 protected:
  using Harness = LoopHarness<typename P::Server, FakeEngine>;

  static uint64_t failures(Harness& h) {
    return h.on_loop([&] { return h.resources().counters().tls_handshake_failures; });
  }
  // Every connection closed and its slot given back.
  static bool all_closed(Harness& h) {
    return h.wait_until(
        [&] { return h.server().connection_count() == 0 && h.resources().connections() == 0; });
  }
  // The exchange over `client`; the client's handshake already done.
  static void expect_answered(TestClient& client) {
    ASSERT_FALSE(client.write(P::request()));
    const TestClient::Read r = P::server_closes ? client.read_to_end() : client.read(P::answered);
    EXPECT_FALSE(r.timed_out);
    EXPECT_TRUE(P::answered(r.bytes)) << testing::PrintToString(r.bytes);
    if (P::server_closes) {
      // No close_notify, by design (client_stream.h): the end of the stream.
      EXPECT_TRUE(r.ended == ssl::error::stream_truncated || r.ended == asio::error::eof)
          << r.ended.message();
    }
  }
  // The request gets no answer: the connection ends (or the handshake fails) first.
  static void expect_refused(TestClient& client) {
    if (client.handshake()) return;  // TLS 1.2 fails here
    // TLS 1.3: the server checks the client's certificate after the client's
    // handshake is done, and its alert ends the stream.
    (void)client.write(P::request());
    const TestClient::Read r = client.read_to_end();
    EXPECT_FALSE(r.timed_out);
    EXPECT_TRUE(r.bytes.empty()) << testing::PrintToString(r.bytes);
    EXPECT_TRUE(r.ended) << "the stream should end with an error";
  }
};

using Servers = testing::Types<Resp, Http, Native>;
class ServerNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, Resp>) return "Resp";
    if constexpr (std::is_same_v<T, Http>) return "Http";
    return "Native";
  }
};
TYPED_TEST_SUITE(ClientTlsServer, Servers, ServerNames);

TYPED_TEST(ClientTlsServer, ARequestIsAnsweredOverTls) {
  typename TestFixture::Harness h({}, tls_security());
  auto ctx = client_context();
  TestClient client(h.port(), ctx.get());
  ASSERT_FALSE(client.handshake());
  TestFixture::expect_answered(client);
  EXPECT_EQ(TestFixture::failures(h), 0u);
}

TYPED_TEST(ClientTlsServer, APlaintextClientIsClosedAndCounted) {
  typename TestFixture::Harness h({}, tls_security());
  {
    TestClient plain(h.port(), nullptr);
    ASSERT_FALSE(plain.write(TypeParam::request()));
    const TestClient::Read r = plain.read_to_end();
    EXPECT_FALSE(r.timed_out);
    EXPECT_TRUE(r.ended);
    // At most a TLS alert, never a plaintext answer.
    EXPECT_FALSE(TypeParam::answered(r.bytes));
    EXPECT_EQ(r.bytes.find("OK"), std::string::npos) << testing::PrintToString(r.bytes);
    EXPECT_EQ(r.bytes.find("HTTP"), std::string::npos) << testing::PrintToString(r.bytes);
  }
  EXPECT_TRUE(TestFixture::all_closed(h));
  EXPECT_EQ(TestFixture::failures(h), 1u);
  const std::string metrics = h.on_loop([&] { return h.engine().metrics().render(); });
  const std::string port = std::is_same_v<TypeParam, Resp>   ? "resp"
                           : std::is_same_v<TypeParam, Http> ? "http"
                                                             : "native";
  EXPECT_NE(metrics.find("maroon_client_tls_handshake_failures_total{port=\"" + port + "\"} 1\n"),
            std::string::npos)
      << metrics;

  // The port still serves TLS clients.
  auto ctx = client_context();
  TestClient client(h.port(), ctx.get());
  ASSERT_FALSE(client.handshake());
  TestFixture::expect_answered(client);
}

TYPED_TEST(ClientTlsServer, ASilentClientIsClosedAtTheHandshakeDeadline) {
  constexpr auto kHandshakeDeadline = 300ms;
  typename TestFixture::Harness h({.header_timeout = kHandshakeDeadline}, tls_security());
  TestClient silent(h.port(), nullptr);
  const auto start = std::chrono::steady_clock::now();
  const TestClient::Read r = silent.read_to_end();
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(r.timed_out) << "a client that sends nothing must be closed";
  EXPECT_TRUE(r.bytes.empty());
  EXPECT_GE(waited, kHandshakeDeadline - 50ms);
  EXPECT_LT(waited, kHandshakeDeadline + 3s);
  EXPECT_TRUE(TestFixture::all_closed(h));
  EXPECT_EQ(TestFixture::failures(h), 1u);
}

TYPED_TEST(ClientTlsServer, StopClosesConnectionsStillInTheHandshake) {
  std::optional<typename TestFixture::Harness> h;
  h.emplace(ClientLimits{}, tls_security());
  TestClient silent(h->port(), nullptr);
  ASSERT_TRUE(h->wait_until([&] { return h->server().connection_count() == 1; }));
  h.reset();  // stops the server; the handshake's deadline is 10 s away
  const TestClient::Read r = silent.read_to_end(2s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.bytes.empty());
}

TYPED_TEST(ClientTlsServer, WithAClientCaOnlyItsCertificatesGetIn) {
  typename TestFixture::Harness h({}, tls_security(/*client_certs=*/true));
  {
    auto ctx = client_context();  // no certificate
    TestClient client(h.port(), ctx.get());
    TestFixture::expect_refused(client);
  }
  {
    auto ctx = client_context(&pki().stranger);  // signed by a CA the server does not trust
    TestClient client(h.port(), ctx.get());
    TestFixture::expect_refused(client);
  }
  EXPECT_TRUE(TestFixture::all_closed(h));
  EXPECT_EQ(TestFixture::failures(h), 2u);

  auto ctx = client_context(&pki().client);
  TestClient client(h.port(), ctx.get());
  ASSERT_FALSE(client.handshake());
  TestFixture::expect_answered(client);
  EXPECT_EQ(TestFixture::failures(h), 2u);
}

TYPED_TEST(ClientTlsServer, AClientThatDoesNotTrustTheServerFailsItsOwnHandshake) {
  typename TestFixture::Harness h({}, tls_security());
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->add_certificate_authority(asio::buffer(pki().stranger_ca.cert_pem));
  ctx->set_verify_mode(ssl::verify_peer);
  TestClient client(h.port(), ctx.get());
  EXPECT_TRUE(client.handshake());
  EXPECT_TRUE(TestFixture::all_closed(h));
  EXPECT_EQ(TestFixture::failures(h), 1u);
}

// ---- the context and its files

class ClientTlsFilesTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("maroon-client-tls-" + std::to_string(::getpid()) + "-" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    ASSERT_TRUE(net::create_private_dir(dir_.string()).is_ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string path = (dir_ / name).string();
    fs::remove(path);
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
  std::string load_error(const ClientTlsFiles& files) {
    Result<std::shared_ptr<ssl::context>> r = load_client_tls_context(files);
    return r.is_ok() ? "" : r.status().message();
  }

  fs::path dir_;
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(ClientTlsFilesTest, GoodFilesLoadAndEveryBadOneIsNamed) {
  const std::string cert = write("server.crt", pki().server.cert_pem);
  const std::string key = write("server.key", pki().server.key_pem);
  const std::string client_ca = write("client-ca.crt", pki().client_ca.cert_pem);
  EXPECT_EQ(load_error({.cert = cert, .key = key}), "");
  EXPECT_EQ(load_error({.cert = cert, .key = key, .client_ca = client_ca}), "");

  // A key others may read.
  const std::string open_key = write("open.key", pki().server.key_pem, 0644);
  std::string e = load_error({.cert = cert, .key = open_key});
  EXPECT_TRUE(has(e, open_key) && has(e, "chmod 600")) << e;
  // Another certificate's key.
  const std::string other_key = write("other.key", pki().client.key_pem);
  e = load_error({.cert = cert, .key = other_key});
  EXPECT_TRUE(has(e, other_key) && has(e, "does not belong")) << e;
  // Not PEM, missing, expired.
  const std::string junk = write("junk.crt", "hello");
  e = load_error({.cert = junk, .key = key});
  EXPECT_TRUE(has(e, junk)) << e;
  e = load_error({.cert = (dir_ / "absent.crt").string(), .key = key});
  EXPECT_TRUE(has(e, "absent.crt")) << e;
  const std::string expired =
      write("expired.crt",
            net::issue_tls_leaf(pki().ca, {.common_name = "localhost", .dns_names = {"localhost"}},
                                1, -10 * 24 * 3600)
                .value()
                .cert_pem);
  e = load_error({.cert = expired, .key = key});
  EXPECT_TRUE(has(e, expired) && has(e, "expired")) << e;
  e = load_error({.cert = cert, .key = key, .client_ca = junk});
  EXPECT_TRUE(has(e, junk)) << e;
}

TEST_F(ClientTlsFilesTest, DevFilesAreMadeOnceThenReused) {
  const std::string dir = (dir_ / "client-tls").string();
  Result<DevTlsFiles> made = ensure_dev_tls_files(dir, "127.0.0.1");
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  EXPECT_TRUE(made->made);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const std::string& key : {made->server.key, net::ca_key_path(dir)}) {
    ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
  const std::string cert_pem = net::read_pem_file(made->server.cert, false).value();
  for (const char* host : {"localhost", "127.0.0.1", "::1"}) {
    EXPECT_TRUE(net::cert_names_host(cert_pem, host).value()) << host;
  }
  EXPECT_TRUE(load_client_tls_context(made->server).is_ok());

  Result<DevTlsFiles> again = ensure_dev_tls_files(dir, "127.0.0.1");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_FALSE(again->made);
  EXPECT_EQ(net::read_pem_file(again->server.cert, false).value(), cert_pem);

  // A host the certificate does not name: the error says what to do.
  Result<DevTlsFiles> other = ensure_dev_tls_files(dir, "10.1.2.3");
  ASSERT_FALSE(other.is_ok());
  EXPECT_TRUE(has(other.status().message(), "10.1.2.3") &&
              has(other.status().message(), "remove " + dir))
      << other.status().message();

  // A certificate lost after its key (a run stopped in between) is made anew.
  fs::remove(made->server.cert);
  Result<DevTlsFiles> remade = ensure_dev_tls_files(dir, "myhost.example");
  ASSERT_TRUE(remade.is_ok()) << remade.status().to_string();
  EXPECT_TRUE(remade->made);
  const std::string new_pem = net::read_pem_file(remade->server.cert, false).value();
  EXPECT_TRUE(net::cert_names_host(new_pem, "myhost.example").value());
  EXPECT_TRUE(net::cert_names_host(new_pem, "localhost").value());
}

}  // namespace
}  // namespace maroon::server
