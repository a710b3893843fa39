#include "server/loop_harness.h"
#include "server/http_server.h"
#include "server/test_users.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "server/fake_engine.h"

namespace maroon::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;

// FakeEngine plus switches for the states FakeEngine cannot show.
class TestEngine final : public Engine {
 public:
  void submit(AppId app, std::string op, ReplyFn done) override {
    if (overloaded) return done(maroon::overloaded("too many txs in flight"), {});
    fake.submit(app, std::move(op), std::move(done));
  }
  Result<std::string> read(AppId app, std::string_view op) override {
    if (!serving) return unavailable("replaying the WAL");
    return fake.read(app, op);
  }
  const AppRegistry& apps() const override { return fake.apps(); }
  EngineStatus status() const override {
    EngineStatus s = fake.status();
    s.serving = serving;
    if (!serving) s.detail = "replaying the WAL";
    return s;
  }
  Registry& metrics() override { return fake.metrics(); }

  FakeEngine fake;
  bool serving = true;
  bool overloaded = false;
};

using Harness = server::LoopHarness<HttpServer, TestEngine>;


// Blocking reads give up after 10 s so a broken server fails the test instead of hanging it.
void set_receive_timeout(asio::ip::tcp::socket& s) {
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

using Res = http::response<http::string_body>;

class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    set_receive_timeout(socket_);
  }
  Res request(http::verb verb, std::string_view target, std::string body = {},
              std::vector<std::pair<http::field, std::string>> headers = {}) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "localhost");
    for (auto& [f, v] : headers) req.set(f, v);
    req.body() = std::move(body);
    req.prepare_payload();
    http::write(socket_, req);
    return read();
  }
  Res read() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    beast::error_code ec;
    http::read(socket_, buffer_, parser, ec);
    EXPECT_FALSE(ec) << ec.message();
    return parser.release();
  }
  void send_raw(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }
  // True once the server has closed the connection (EOF after any buffered data).
  bool closed_by_server() {
    char c;
    beast::error_code ec;
    socket_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  Res get(std::string_view target) { return request(http::verb::get, target); }
  Res put(std::string_view target, std::string body) {
    return request(http::verb::put, target, std::move(body));
  }
  Res del(std::string_view target) { return request(http::verb::delete_, target); }
  Res tx(std::string body) { return request(http::verb::post, "/v1/tx", std::move(body)); }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

json::value body_json(const Res& r) {
  beast::error_code ec;
  json::value v = json::parse(r.body(), ec);
  EXPECT_FALSE(ec) << "not JSON: " << r.body();
  return v;
}

int status(const Res& r) { return static_cast<int>(r.result_int()); }

TEST(HttpServer, KvRoutes) {
  Harness h;
  Client c(h.port());
  Res r = c.get("/v1/kv/k");
  EXPECT_EQ(status(r), 404);
  EXPECT_EQ(body_json(r).at("code"), "not found");

  r = c.put("/v1/kv/k", "hello");
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(body_json(r), json::parse(R"({"ok":true})"));

  r = c.get("/v1/kv/k");
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(r.body(), "hello");
  EXPECT_EQ(r[http::field::content_type], "application/octet-stream");

  r = c.del("/v1/kv/k");
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(body_json(r), json::parse(R"({"deleted":1})"));
  r = c.del("/v1/kv/k");
  EXPECT_EQ(body_json(r), json::parse(R"({"deleted":0})"));
  EXPECT_TRUE(r.keep_alive());
}

TEST(HttpServer, BinaryValuesAndPercentDecodedKeys) {
  Harness h;
  Client c(h.port());
  std::string value;
  for (int i = 0; i < 256; i++) value.push_back(static_cast<char>(i));
  EXPECT_EQ(status(c.put("/v1/kv/a%2Fb%20c+d", value)), 200);
  Res r = c.get("/v1/kv/a%2fb%20c+d");
  EXPECT_EQ(r.body(), value);
  EXPECT_EQ(h.on_loop([&] { return h.engine().fake.app().size(); }), 1u);
  // The decoded key is "a/b c+d".
  r = c.get("/v1/kv/a/b%20c+d");
  EXPECT_EQ(r.body(), value);
  // Binary values cannot travel in JSON.
  r = c.tx(R"({"op":"get","key":"a/b c+d"})");
  EXPECT_EQ(status(r), 400);
  EXPECT_NE(std::string(body_json(r).at("error").as_string()).find("UTF-8"), std::string::npos);

  EXPECT_EQ(status(c.get("/v1/kv/bad%2")), 400);
  EXPECT_EQ(status(c.get("/v1/kv/bad%zz")), 400);
  EXPECT_EQ(status(c.get("/v1/kv/")), 400);
}

TEST(HttpServer, SetIfAbsentAndCas) {
  Harness h;
  Client c(h.port());
  EXPECT_EQ(status(c.put("/v1/kv/k?if-absent", "first")), 200);
  Res r = c.put("/v1/kv/k?if-absent", "second");
  EXPECT_EQ(status(r), 409);
  EXPECT_EQ(body_json(r).at("error"), "key exists");
  EXPECT_EQ(c.get("/v1/kv/k").body(), "first");

  EXPECT_EQ(status(c.put("/v1/kv/k?cas=first", "third")), 200);
  r = c.put("/v1/kv/k?cas=first", "fourth");
  EXPECT_EQ(status(r), 409);
  EXPECT_EQ(body_json(r).at("current"), "third");
  EXPECT_EQ(body_json(r).at("code"), "conflict");
  EXPECT_EQ(status(c.put("/v1/kv/k?cas=th%69rd", "fifth")), 200);  // expected is percent-decoded
  EXPECT_EQ(c.get("/v1/kv/k").body(), "fifth");

  r = c.put("/v1/kv/k?cas-absent", "x");
  EXPECT_EQ(status(r), 409);
  EXPECT_EQ(status(c.put("/v1/kv/new?cas-absent", "x")), 200);
  r = c.put("/v1/kv/gone?cas=old", "x");
  EXPECT_EQ(status(r), 409);
  EXPECT_TRUE(body_json(r).at("current").is_null());

  EXPECT_EQ(status(c.put("/v1/kv/k?cas", "x")), 400);
  EXPECT_EQ(status(c.put("/v1/kv/k?if-absent&cas=a", "x")), 400);
  EXPECT_EQ(status(c.put("/v1/kv/k?bogus=1", "x")), 400);
  EXPECT_EQ(status(c.get("/v1/kv/k?if-absent")), 400);
}

TEST(HttpServer, TxOps) {
  Harness h;
  Client c(h.port());
  auto tx = [&](std::string_view body) {
    Res r = c.tx(std::string(body));
    EXPECT_EQ(status(r), 200) << body << " -> " << r.body();
    return body_json(r);
  };
  EXPECT_EQ(tx(R"({"op":"get","key":"a"})"), json::parse(R"({"value":null})"));
  EXPECT_EQ(tx(R"({"op":"set","key":"a","value":"1"})"), json::parse(R"({"ok":true})"));
  EXPECT_EQ(tx(R"({"op":"set-if-absent","key":"a","value":"2"})"), json::parse(R"({"ok":false})"));
  EXPECT_EQ(tx(R"({"op":"set-if-present","key":"zz","value":"2"})"),
            json::parse(R"({"ok":false})"));
  EXPECT_EQ(tx(R"({"op":"get","key":"a"})"), json::parse(R"({"value":"1"})"));
  EXPECT_EQ(tx(R"({"op":"incr","key":"a"})"), json::parse(R"({"int":2})"));
  EXPECT_EQ(tx(R"({"op":"incrby","key":"a","delta":-12})"), json::parse(R"({"int":-10})"));
  EXPECT_EQ(tx(R"({"op":"mset","keys":["b","c"],"values":["x","ü"]})"),
            json::parse(R"({"ok":true})"));
  EXPECT_EQ(tx(R"({"op":"mget","keys":["b","nope","c"]})"),
            json::parse(R"({"values":["x",null,"ü"]})"));
  EXPECT_EQ(tx(R"({"op":"exists","keys":["a","b","nope"]})"), json::parse(R"({"int":2})"));
  EXPECT_EQ(tx(R"({"op":"exists","key":"a"})"), json::parse(R"({"int":1})"));
  EXPECT_EQ(tx(R"({"op":"scan","prefix":"","limit":2})"),
            json::parse(R"({"pairs":[["a","-10"],["b","x"]]})"));
  EXPECT_EQ(tx(R"({"op":"scan","after":"a"})"), json::parse(R"({"pairs":[["b","x"],["c","ü"]]})"));
  EXPECT_EQ(tx(R"({"op":"size"})"), json::parse(R"({"int":3})"));
  EXPECT_EQ(tx(R"({"op":"cas","key":"b","expected":"x","value":"y"})"),
            json::parse(R"({"ok":true})"));
  EXPECT_EQ(tx(R"({"op":"cas","key":"new","expected":null,"value":"y"})"),
            json::parse(R"({"ok":true})"));
  EXPECT_EQ(tx(R"({"op":"del","keys":["a","b","nope"]})"), json::parse(R"({"int":2})"));
  EXPECT_EQ(tx(R"({"op":"del","key":"c"})"), json::parse(R"({"int":1})"));

  Res r = c.tx(R"({"op":"cas","key":"new","expected":"wrong","value":"z"})");
  EXPECT_EQ(status(r), 409);
  EXPECT_EQ(body_json(r).at("code"), "conflict");
  c.tx(R"({"op":"set","key":"s","value":"text"})");
  r = c.tx(R"({"op":"incr","key":"s"})");
  EXPECT_EQ(status(r), 422);
  EXPECT_EQ(body_json(r).at("code"), "wrong type");
}

TEST(HttpServer, TxErrors) {
  Harness h;
  Client c(h.port());
  auto expect = [&](std::string_view body, int code, std::string_view needle) {
    Res r = c.tx(std::string(body));
    EXPECT_EQ(status(r), code) << body << " -> " << r.body();
    EXPECT_NE(r.body().find(needle), std::string::npos) << body << " -> " << r.body();
  };
  expect("{not json", 400, "bad JSON");
  expect("[1,2]", 400, "JSON object");
  expect(R"({"key":"a"})", 400, "\\\"op\\\"");
  expect(R"({"op":"frobnicate"})", 400, "unknown op");
  expect(R"({"op":"get"})", 400, "key");
  expect(R"({"op":"get","key":7})", 400, "must be a string");
  expect(R"({"op":"set","key":"a"})", 400, "value");
  expect(R"({"op":"mset","keys":["a","b"],"values":["1"]})", 400, "values");
  expect(R"({"op":"incrby","key":"a"})", 400, "delta");
  expect(R"({"op":"incrby","key":"a","delta":1.5})", 400, "integer");
  expect(R"({"op":"cas","key":"a","value":"v"})", 400, "expected");
  expect(R"({"op":"scan","limit":100000})", 413, "limit");
  expect(R"({"op":"mget","keys":[]})", 400, "key");
  expect(R"([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])", 400,
         "JSON");
  std::string big_key(limits::key_bytes_max + 1, 'k');
  expect(R"({"op":"get","key":")" + big_key + R"("})", 413, "key is");
  // Still serving.
  EXPECT_EQ(status(c.tx(R"({"op":"size"})")), 200);
}

TEST(HttpServer, StatusAndMetrics) {
  Harness h;
  Client c(h.port());
  Res r = c.get("/v1/status");
  EXPECT_EQ(status(r), 200);
  json::value v = body_json(r);
  EXPECT_EQ(v.at("serving"), true);
  EXPECT_TRUE(v.at("state_hash").is_string());

  r = c.get("/metrics");
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.body().find("maroon_http_requests_total"), std::string::npos) << r.body();

  h.on_loop([&] { h.engine().serving = false; });
  r = c.get("/v1/status");
  EXPECT_EQ(status(r), 503);
  EXPECT_EQ(body_json(r).at("serving"), false);
  r = c.get("/v1/kv/k");
  EXPECT_EQ(status(r), 503);
  EXPECT_EQ(r[http::field::retry_after], "1");
}

TEST(HttpServer, RoutingErrors) {
  Harness h;
  Client c(h.port());
  Res r = c.get("/nope");
  EXPECT_EQ(status(r), 404);
  EXPECT_EQ(body_json(r).at("code"), "not found");
  r = c.request(http::verb::post, "/v1/kv/k", "x");
  EXPECT_EQ(status(r), 405);
  EXPECT_EQ(r[http::field::allow], "GET, PUT, DELETE");
  r = c.get("/v1/tx");
  EXPECT_EQ(status(r), 405);
  EXPECT_EQ(status(c.request(http::verb::delete_, "/v1/status")), 405);
  EXPECT_EQ(status(c.request(http::verb::put, "/metrics")), 405);
  EXPECT_TRUE(r.keep_alive());
  EXPECT_EQ(status(c.get("/v1/status")), 200);
}

TEST(HttpServer, SizeLimits) {
  Harness h;
  Client c(h.port());
  std::string big_key(limits::key_bytes_max + 1, 'k');
  Res r = c.put("/v1/kv/" + big_key, "v");
  EXPECT_EQ(status(r), 413);
  EXPECT_NE(r.body().find("key is"), std::string::npos) << r.body();
  std::string max_key(limits::key_bytes_max, 'k');
  EXPECT_EQ(status(c.put("/v1/kv/" + max_key, "v")), 200);

  r = c.put("/v1/kv/k", std::string(limits::value_bytes_max + 1, 'v'));
  EXPECT_EQ(status(r), 413);
  EXPECT_NE(r.body().find("value is"), std::string::npos) << r.body();
  EXPECT_EQ(status(c.put("/v1/kv/k", std::string(limits::value_bytes_max, 'v'))), 200);
  EXPECT_EQ(c.get("/v1/kv/k").body().size(), limits::value_bytes_max);

  // A body over op_bytes_max is refused from its Content-Length, before it is read.
  Client big(h.port());
  big.send_raw("PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: " +
               std::to_string(limits::op_bytes_max + 1) + "\r\n\r\n");
  r = big.read();
  EXPECT_EQ(status(r), 413);
  EXPECT_TRUE(big.closed_by_server());

  // A request line longer than the header limit.
  Client huge(h.port());
  huge.send_raw("GET /v1/kv/" + std::string(http_header_bytes_max + 10, 'k') + " HTTP/1.1\r\n\r\n");
  r = huge.read();
  EXPECT_EQ(status(r), 431);
  EXPECT_TRUE(huge.closed_by_server());
}

TEST(HttpServer, OverloadedAndUnavailableSay503WithRetryAfter) {
  Harness h;
  Client c(h.port());
  h.on_loop([&] { h.engine().overloaded = true; });
  Res r = c.put("/v1/kv/k", "v");
  EXPECT_EQ(status(r), 503);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(body_json(r).at("code"), "overloaded");
  h.on_loop([&] {
    h.engine().overloaded = false;
    h.engine().fake.refuse_writes = true;
  });
  r = c.tx(R"({"op":"set","key":"a","value":"b"})");
  EXPECT_EQ(status(r), 503);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(body_json(r).at("code"), "unavailable");
}

TEST(HttpServer, QuorumLossSays503WithTheOutcome) {
  Harness h;
  Client c(h.port());
  h.on_loop([&] {
    h.engine().fake.refuse_writes = true;
    h.engine().fake.refusal = no_quorum("no quorum; not executed: node 1 is in a view change");
  });
  Res r = c.put("/v1/kv/k", "v");
  EXPECT_EQ(status(r), 503);
  EXPECT_EQ(r[http::field::retry_after], "1");
  json::value v = body_json(r);
  EXPECT_EQ(v.at("code"), "no quorum");
  EXPECT_EQ(v.at("outcome"), "not executed");
  EXPECT_EQ(v.at("error"), "no quorum; not executed: node 1 is in a view change");

  h.on_loop([&] {
    h.engine().fake.refusal =
        outcome_unknown("outcome unknown (no quorum): no result within 5000 ms");
  });
  r = c.tx(R"({"op":"incr","key":"n"})");
  EXPECT_EQ(status(r), 503);
  EXPECT_EQ(r[http::field::retry_after], "1");
  v = body_json(r);
  EXPECT_EQ(v.at("code"), "outcome unknown");
  EXPECT_EQ(v.at("outcome"), "unknown");

  // Other errors carry no outcome field.
  h.on_loop([&] { h.engine().fake.refusal = unavailable("x"); });
  r = c.put("/v1/kv/k", "v");
  EXPECT_EQ(status(r), 503);
  EXPECT_FALSE(body_json(r).as_object().contains("outcome"));
}

TEST(HttpServer, StatusSaysWhetherTheNodeHasAQuorum) {
  Harness h;
  Client c(h.port());
  json::value v = body_json(c.get("/v1/status"));
  EXPECT_EQ(v.at("quorum"), true);
  EXPECT_EQ(v.at("unavailable_reason"), "");
  h.on_loop([&] {
    h.engine().fake.quorum = false;
    h.engine().fake.unavailable_reason = "node 2 is recovering";
  });
  Res r = c.get("/v1/status");
  EXPECT_EQ(status(r), 200) << "a live node without a quorum still serves its status";
  v = body_json(r);
  EXPECT_EQ(v.at("quorum"), false);
  EXPECT_EQ(v.at("unavailable_reason"), "node 2 is recovering");
}

TEST(HttpServer, KeepAliveAndPipelining) {
  Harness h;
  Client c(h.port());
  for (int i = 0; i < 50; i++) {
    EXPECT_EQ(status(c.put("/v1/kv/k" + std::to_string(i), std::to_string(i))), 200);
  }
  // Three requests in one write: answered in order on the same connection.
  c.send_raw(
      "GET /v1/kv/k1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "PUT /v1/kv/k1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew"
      "GET /v1/kv/k1 HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(c.read().body(), "1");
  EXPECT_EQ(status(c.read()), 200);
  EXPECT_EQ(c.read().body(), "new");
  EXPECT_EQ(h.on_loop([&] { return h.server().connection_count(); }), 1u);

  // HTTP/1.0 without keep-alive: the server closes after answering.
  Client old(h.port());
  old.send_raw("GET /v1/kv/k2 HTTP/1.0\r\n\r\n");
  Res r = old.read();
  EXPECT_EQ(r.body(), "2");
  EXPECT_TRUE(old.closed_by_server());
  // Connection: close on 1.1.
  Client once(h.port());
  r = once.request(http::verb::get, "/v1/kv/k3", "", {{http::field::connection, "close"}});
  EXPECT_EQ(r.body(), "3");
  EXPECT_TRUE(once.closed_by_server());
}

TEST(HttpServer, DeferredWritesAnswerInOrder) {
  Harness h;
  h.on_loop([&] { h.engine().fake.defer_writes = true; });
  Client c(h.port());
  c.send_raw(
      "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
      "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(h.wait_until([&] { return h.engine().fake.pending() == 1; }));
  h.on_loop([&] { h.engine().fake.complete_writes(); });
  EXPECT_EQ(status(c.read()), 200);
  EXPECT_EQ(c.read().body(), "1");  // the GET was read only after the PUT was answered
}

TEST(HttpServer, Expect100Continue) {
  Harness h;
  Client c(h.port());
  c.send_raw(
      "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  Res r = c.read();
  EXPECT_EQ(status(r), 100);
  c.send_raw("hello");
  EXPECT_EQ(status(c.read()), 200);
  EXPECT_EQ(c.get("/v1/kv/k").body(), "hello");
}

TEST(HttpServer, MalformedRequestClosesOnlyThatConnection) {
  Harness h;
  Client good(h.port());
  EXPECT_EQ(status(good.put("/v1/kv/k", "v")), 200);
  static constexpr char kTlsHello[] =
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n";
  for (std::string_view junk :
       {std::string_view("GARBAGE\r\n\r\n"), std::string_view("GET / HTTP/9.9\r\n\r\n"),
        std::string_view("GET /v1/status HTTP/1.1\r\nContent-Length: nope\r\n\r\n"),
        std::string_view(kTlsHello, sizeof kTlsHello - 1),
        std::string_view("PUT /v1/kv/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    Client bad(h.port());
    bad.send_raw(junk);
    Res r = bad.read();
    EXPECT_EQ(status(r), 400) << junk;
    EXPECT_TRUE(bad.closed_by_server()) << junk;
  }
  EXPECT_EQ(good.get("/v1/kv/k").body(), "v");
  EXPECT_TRUE(h.wait_until([&] { return h.server().connection_count() == 1; }));
}

TEST(HttpServer, ClientLeavesBeforeTheReply) {
  Harness h;
  h.on_loop([&] { h.engine().fake.defer_writes = true; });
  {
    Client c(h.port());
    c.send_raw("PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1");
    ASSERT_TRUE(h.wait_until([&] { return h.engine().fake.pending() == 1; }));
  }
  // The server is not reading while the engine works, so it learns that the
  // client left only when it writes the reply.
  h.on_loop([&] { h.engine().fake.complete_writes(); });
  ASSERT_TRUE(h.wait_until([&] { return h.server().connection_count() == 0; }));
  Client c(h.port());
  h.on_loop([&] { h.engine().fake.defer_writes = false; });
  EXPECT_EQ(c.get("/v1/kv/a").body(), "1");
}


// Slow clients that never finish their headers hold every slot: a new client
// still gets in (the one waiting longest is closed for it), so /v1/status
// stays reachable.
TEST(HttpServer, ClientsStuckInTheirHeadersCannotLockOthersOut) {
  Harness h(ClientLimits{.connections_max = 40, .http_reserved_connections = 8});
  std::vector<std::unique_ptr<Client>> slow;
  for (int i = 0; i < 40; i++) {
    slow.push_back(std::make_unique<Client>(h.port()));
    slow.back()->send_raw("GET /v1/status HTTP/1.1\r\nHost: x\r\n");
  }
  ASSERT_TRUE(h.wait_until([&] { return h.resources().connections() == 40; }));
  for (int i = 0; i < 3; i++) {
    Client c(h.port());
    EXPECT_EQ(status(c.get("/v1/status")), 200);
  }
  EXPECT_TRUE(slow.front()->closed_by_server());  // the oldest went first
  EXPECT_GE(h.on_loop([&] { return h.resources().counters().evictions; }), 1u);
  EXPECT_EQ(h.on_loop([&] { return h.resources().counters().refused_total; }), 0u);
}

TEST(HttpServer, HeadersNotCompleteInTimeCloseTheConnection) {
  Harness h(ClientLimits{.header_timeout = 300ms});
  Client slow(h.port());
  slow.send_raw("GET /v1/status HTTP/1.1\r\nHost: x\r\n");
  Client silent(h.port());  // a first request that never begins: also headers
  Client idle(h.port());    // one request, then a keep-alive pause
  EXPECT_EQ(status(idle.get("/v1/status")), 200);
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_TRUE(silent.closed_by_server());
  EXPECT_GE(h.on_loop([&] { return h.resources().counters().timeouts; }), 2u);
  std::this_thread::sleep_for(1500ms);  // past the timeout and a tick
  EXPECT_EQ(status(idle.get("/v1/status")), 200);
}

TEST(HttpServer, ASpentClientBufferBudgetAnswers503) {
  const size_t budget = limits::message_bytes_max;
  Harness h(ClientLimits{.buffer_bytes_max = budget});
  Client c(h.port());
  const std::string big(512 * 1024, 'v');
  ASSERT_EQ(status(c.put("/v1/kv/big", big)), 200);
  ASSERT_TRUE(h.on_loop([&] { return h.resources().reserve(budget - 1000, ClientPort::kResp, "test"); }));
  const Res refused = c.get("/v1/kv/big");
  EXPECT_EQ(status(refused), 503);
  EXPECT_NE(refused.body().find("budget"), std::string::npos) << refused.body();
  EXPECT_EQ(status(c.get("/v1/status")), 200);  // small replies need nothing from it
  h.on_loop([&] { h.resources().release(budget - 1000); });
  const Res ok = c.get("/v1/kv/big");
  EXPECT_EQ(status(ok), 200);
  EXPECT_EQ(ok.body(), big);
  // Given back once the response is written.
  EXPECT_TRUE(h.wait_until([&] { return h.resources().buffered_bytes() == 0; }));
}

// ---- credentials (ClientSecurity::users)

// A password is also its user's bearer token.
constexpr std::string_view kWriterToken = kWriterPassword;
constexpr std::string_view kReaderToken = kReaderPassword;
ClientSecurity two_users() { return two_test_users(); }

std::vector<std::pair<http::field, std::string>> bearer(std::string_view token) {
  return {{http::field::authorization, "Bearer " + std::string(token)}};
}

TEST(HttpAuth, EveryRouteNeedsValidCredentials) {
  Harness h({}, two_users());
  Client c(h.port());
  for (std::string_view target : {"/v1/kv/k", "/v1/status", "/metrics", "/nowhere"}) {
    Res r = c.get(target);
    EXPECT_EQ(status(r), 401) << target;
    EXPECT_EQ(body_json(r).at("code"), "unauthenticated");
    EXPECT_NE(std::string(r[http::field::www_authenticate]).find("Bearer"), std::string::npos);
    EXPECT_TRUE(r.keep_alive());  // no body was left unread
  }
  const uint64_t failures_before = h.on_loop([&] { return h.resources().counters().auth_failures; });
  for (const std::string& header :
       {std::string("Bearer nope"), std::string("Bearer ") + std::string(kWriterToken) + "x",
        std::string("Basic d3JpdGVyOm5vcGU="),  // writer:nope
        std::string("Digest abc"), std::string("Bearer"),
        std::string("Basic d3JpdGVyOndyaXRlci10b2tlbi0wMTIzNDU2Nzg5YWJjZGVm===="),  // bad padding
        std::string("Basic d3JpdGVyOndyaXRlci10b2tlbi0=MDEyMzQ1Njc4OWFiY2RlZg==")}) {
    Res r = c.request(http::verb::get, "/v1/kv/k", {}, {{http::field::authorization, header}});
    EXPECT_EQ(status(r), 401) << header;
    EXPECT_EQ(body_json(r).at("error"), "invalid credentials") << header;
  }
  EXPECT_EQ(h.on_loop([&] { return h.resources().counters().auth_failures; }), failures_before + 7);
  // A write without credentials is refused before its body is read, and
  // the connection closes (its body is still on the wire).
  Client w(h.port());
  w.send_raw("PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial");
  Res r = w.read();
  EXPECT_EQ(status(r), 401);
  EXPECT_FALSE(r.keep_alive());
  EXPECT_TRUE(w.closed_by_server());
  EXPECT_EQ(h.on_loop([&] { return h.engine().fake.submitted; }), 0u);
}

TEST(HttpAuth, BearerAndBasicCredentialsWork) {
  Harness h({}, two_users());
  Client c(h.port());
  EXPECT_EQ(status(c.request(http::verb::put, "/v1/kv/k", "v", bearer(kWriterToken))), 200);
  Res r = c.request(http::verb::get, "/v1/kv/k", {}, bearer(kReaderToken));
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(r.body(), "v");
  // curl -u writer:TOKEN sends Basic base64("writer:TOKEN").
  r = c.request(http::verb::get, "/v1/status", {},
                {{http::field::authorization,
                  "Basic d3JpdGVyOndyaXRlci1wYXNzd29yZC0wMTIzNDU2Nzg5"}});
  EXPECT_EQ(status(r), 200);
  r = c.request(http::verb::get, "/metrics", {}, {{http::field::authorization,
                                                   "bearer  " + std::string(kReaderToken)}});
  EXPECT_EQ(status(r), 200);
}

// Any app by name: the body is the app's op, the response body its reply.
TEST(HttpServer, AppRoutes) {
  Harness h;
  Client c(h.port());
  Res r = c.get("/v1/apps");
  EXPECT_EQ(status(r), 200);
  const json::value listed = body_json(r);
  const json::array& apps = listed.at("apps").as_array();
  ASSERT_EQ(apps.size(), 1u);
  EXPECT_EQ(apps[0].at("name"), "kv");
  EXPECT_EQ(apps[0].at("id"), "0x593d1d94");

  kv::Op set{.type = kv::OpType::kSet, .keys = {"k"}, .values = {"v"}};
  r = c.request(http::verb::post, "/v1/apps/kv", kv::encode_op(set));
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(r[http::field::content_type], "application/octet-stream");
  EXPECT_EQ(kv::decode_reply(r.body()).value(), kv::Reply::ok());
  kv::Op get{.type = kv::OpType::kGet, .keys = {"k"}};
  for (std::string_view target : {"/v1/apps/kv/read", "/v1/apps/kv"}) {
    r = c.request(http::verb::post, target, kv::encode_op(get));
    EXPECT_EQ(status(r), 200) << target;
    EXPECT_EQ(kv::decode_reply(r.body()).value(), kv::Reply::of_value("v")) << target;
  }
  // The app's own error, as its reply.
  r = c.request(http::verb::post, "/v1/apps/kv", "garbage");
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(kv::decode_reply(r.body())->kind, kv::Reply::Kind::kError);

  for (std::string_view target : {"/v1/apps/nosuch", "/v1/apps/nosuch/read", "/v1/apps/",
                                  "/v1/apps/kv/other"}) {
    r = c.request(http::verb::post, target, "x");
    EXPECT_EQ(status(r), 404) << target;
    EXPECT_EQ(body_json(r).at("code"), "not found") << target;
    EXPECT_NE(std::string(body_json(r).at("error").as_string()).find("this process runs: kv"),
              std::string::npos)
        << r.body();
  }
  r = c.get("/v1/apps/kv");
  EXPECT_EQ(status(r), 405);
  EXPECT_EQ(r[http::field::allow], "POST");
}

TEST(HttpAuth, AReadOnlyUserCannotWrite) {
  Harness h({}, two_users());
  Client c(h.port());
  ASSERT_EQ(status(c.request(http::verb::put, "/v1/kv/k", "v", bearer(kWriterToken))), 200);
  const uint64_t submitted = h.on_loop([&] { return h.engine().fake.submitted; });
  for (auto [verb, target, body] :
       std::vector<std::tuple<http::verb, std::string, std::string>>{
           {http::verb::put, "/v1/kv/k", "w"},
           {http::verb::delete_, "/v1/kv/k", ""},
           {http::verb::post, "/v1/tx", R"({"op":"set","key":"k","value":"w"})"},
           {http::verb::post, "/v1/tx", R"({"op":"incr","key":"n"})"},
           {http::verb::post, "/v1/apps/kv", "any op"}}) {
    Res r = c.request(verb, target, body, bearer(kReaderToken));
    EXPECT_EQ(status(r), 403) << target << " " << body;
    EXPECT_EQ(body_json(r).at("code"), "permission denied");
    EXPECT_EQ(body_json(r).at("error"), "user \"reader\" is read-only");
  }
  EXPECT_EQ(h.on_loop([&] { return h.engine().fake.submitted; }), submitted);
  Res r = c.request(http::verb::post, "/v1/tx", R"({"op":"get","key":"k"})", bearer(kReaderToken));
  EXPECT_EQ(status(r), 200);
  // A read of any app runs its read(), which cannot write.
  r = c.request(http::verb::post, "/v1/apps/kv/read",
                kv::encode_op(kv::Op{.type = kv::OpType::kGet, .keys = {"k"}}), bearer(kReaderToken));
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(kv::decode_reply(r.body()).value(), kv::Reply::of_value("v"));
  EXPECT_EQ(c.request(http::verb::get, "/v1/kv/k", {}, bearer(kWriterToken)).body(), "v");
}

}  // namespace
}  // namespace maroon::server
