#include "client/native_client.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "net/certs.h"
#include "protocol/client_messages.h"
#include "server/client_tls.h"
#include "server/loop_harness.h"
#include "server/fake_engine.h"
#include "server/native_server.h"
#include "server/test_users.h"

namespace maroon::client {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using server::FakeEngine;
using server::NativeServer;
using Harness = server::LoopHarness<server::NativeServer, server::FakeEngine>;


kv::Op get(std::string_view key) { return kv::Op{.type = kv::OpType::kGet, .keys = {key}}; }
kv::Op set(std::string_view key, std::string_view value) {
  return kv::Op{.type = kv::OpType::kSet, .keys = {key}, .values = {value}};
}

Client connect(Harness& h) {
  auto c = Client::connect("127.0.0.1", h.port());
  MAROON_ASSERT_MSG(c.is_ok(), c.is_ok() ? "" : c.status().to_string().c_str());
  return std::move(c).value();
}

// Collects responses until `n` have arrived (or the deadline).
std::vector<Response> collect(NativeConnection& conn, size_t n,
                              std::chrono::milliseconds limit = 10s) {
  std::vector<Response> got;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    auto r = conn.poll(got, 100ms);
    if (!r.is_ok()) break;
  }
  return got;
}

// A raw blocking socket for sending bytes the client library would not.
struct RawSocket {
  explicit RawSocket(uint16_t port) : socket(io) {
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  void send(std::string_view bytes) { asio::write(socket, asio::buffer(bytes)); }
  // Reads until EOF (the server closed) and returns everything received.
  std::string read_to_eof() {
    std::string all;
    boost::system::error_code ec;
    asio::read(socket, asio::dynamic_buffer(all), ec);
    return all;
  }
  asio::io_context io;
  asio::ip::tcp::socket socket;
};

std::vector<protocol::Response> parse_responses(const std::string& bytes,
                                                std::vector<std::string>& storage) {
  protocol::FrameDecoder d;
  d.feed(bytes);
  protocol::Frame f;
  std::vector<protocol::Response> out;
  storage.reserve(1024);
  while (d.next(f) == protocol::DecodeResult::kFrame) {
    storage.emplace_back(f.payload);
    auto m = protocol::decode_response(storage.back());
    if (m.is_ok()) out.push_back(*m);
  }
  return out;
}

TEST(NativeClient, BlockingCallsRoundTrip) {
  Harness h;
  Client c = connect(h);
  auto r = c.call(get("k"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->kind, kv::Reply::Kind::kNil);

  r = c.call(set("k", std::string("v\0v", 3)));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->kind, kv::Reply::Kind::kOk);

  r = c.call(get("k"));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, kv::Reply::of_value(std::string("v\0v", 3)));

  r = c.call(kv::Op{.type = kv::OpType::kIncrBy, .delta = 5, .keys = {"n"}});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, kv::Reply::of_int(5));

  // An app-level error is a reply, not a failed call.
  r = c.call(kv::Op{.type = kv::OpType::kIncrBy, .delta = 1, .keys = {"k"}});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->kind, kv::Reply::Kind::kError);
  EXPECT_EQ(r->error, Code::kWrongType);

  r = c.call(kv::Op{.type = kv::OpType::kDel, .keys = {"k", "n", "missing"}});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, kv::Reply::of_int(2));
  EXPECT_EQ(h.on_loop([&] { return h.engine().app().size(); }), 0u);
}

TEST(NativeClient, InvalidOpIsRejectedBeforeSending) {
  Harness h;
  Client c = connect(h);
  std::string big_key(limits::key_bytes_max + 1, 'k');
  auto r = c.call(get(big_key));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_TRUE(c.call(get("fine")).is_ok());
}

TEST(NativeClient, ManyPipelinedRequestsAllAnswered) {
  Harness h;
  auto conn = NativeConnection::connect("127.0.0.1", h.port());
  ASSERT_TRUE(conn.is_ok());
  constexpr int kN = 5000;
  std::vector<std::string> keys;
  for (int i = 0; i < kN; i++) keys.push_back("key" + std::to_string(i));
  std::set<uint64_t> ids;
  for (int i = 0; i < kN; i++) ids.insert(conn->send(set(keys[i], keys[i])));
  for (int i = 0; i < kN; i++) ids.insert(conn->send(get(keys[i])));
  EXPECT_EQ(ids.size(), 2u * kN);
  auto got = collect(*conn, 2 * kN);
  ASSERT_EQ(got.size(), 2u * kN);
  EXPECT_EQ(conn->in_flight(), 0u);
  std::set<uint64_t> answered;
  for (const Response& r : got) {
    EXPECT_EQ(r.code, Code::kOk) << r.error;
    EXPECT_TRUE(answered.insert(r.request_id).second);
  }
  EXPECT_EQ(answered, ids);
  EXPECT_EQ(h.on_loop([&] { return h.engine().app().size(); }), size_t{kN});
}

TEST(NativeClient, ReadsOvertakeDeferredWrites) {
  Harness h;
  h.on_loop([&] { h.engine().defer_writes = true; });
  auto conn = NativeConnection::connect("127.0.0.1", h.port());
  ASSERT_TRUE(conn.is_ok());
  const uint64_t w = conn->send(set("a", "1"));
  const uint64_t r = conn->send(get("a"));
  auto got = collect(*conn, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].request_id, r);  // the read is answered while the write waits
  auto reply = kv::decode_reply(got[0].reply);
  ASSERT_TRUE(reply.is_ok());
  EXPECT_EQ(reply->kind, kv::Reply::Kind::kNil);

  ASSERT_TRUE(h.wait_until([&] { return h.engine().pending() == 1; }));
  h.on_loop([&] { h.engine().complete_writes(); });
  got = collect(*conn, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].request_id, w);
}

TEST(NativeClient, InflightLimitStopsReadingUntilRepliesDrain) {
  Harness h;
  h.on_loop([&] { h.engine().defer_writes = true; });
  auto conn = NativeConnection::connect("127.0.0.1", h.port());
  ASSERT_TRUE(conn.is_ok());
  constexpr size_t kMax = limits::connection_inflight_requests_max;
  constexpr size_t kN = kMax + 500;
  for (size_t i = 0; i < kN; i++) conn->send(set("k" + std::to_string(i), "v"));
  std::vector<Response> got;
  // Push the bytes out; nothing can come back yet.
  for (int i = 0; i < 20 && conn->unsent_bytes() > 0; i++)
    ASSERT_TRUE(conn->poll(got, 10ms).is_ok());
  ASSERT_TRUE(h.wait_until([&] { return h.engine().pending() == kMax; }));
  // Reading stopped at the limit: no more submissions arrive.
  EXPECT_EQ(h.on_loop([&] { return h.engine().submitted; }), kMax);
  EXPECT_TRUE(got.empty());

  size_t answered = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (answered < kN && std::chrono::steady_clock::now() < deadline) {
    h.on_loop([&] { h.engine().complete_writes(); });
    got.clear();
    auto n = conn->poll(got, 5ms);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    answered += got.size();
    EXPECT_LE(h.on_loop([&] { return h.engine().pending(); }), kMax);
  }
  EXPECT_EQ(answered, kN);
  EXPECT_EQ(h.on_loop([&] { return h.engine().submitted; }), kN);
}

TEST(NativeClient, EngineErrorsAndUnknownAppComeBackAsCodes) {
  Harness h;
  Client c = connect(h);
  h.on_loop([&] { h.engine().refuse_writes = true; });
  auto r = c.call(set("a", "b"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);

  auto raw = c.call_raw(AppId(77), "x", false);
  ASSERT_TRUE(raw.is_ok());
  EXPECT_EQ(raw->code, Code::kNotFound);
  raw = c.call_raw(AppId(77), "x", true);
  ASSERT_TRUE(raw.is_ok());
  EXPECT_EQ(raw->code, Code::kNotFound);
  // Still usable.
  EXPECT_TRUE(c.call(get("a")).is_ok());
}

TEST(NativeClient, QuorumLossCodesComeBackDistinctAndTheConnectionSurvives) {
  Harness h;
  Client c = connect(h);
  h.on_loop([&] {
    h.engine().refuse_writes = true;
    h.engine().refusal = no_quorum("no quorum; not executed: node 1 is recovering; retry later");
  });
  auto raw = c.call_raw(AppId::kKv, kv::encode_op(set("a", "b")), false);
  ASSERT_TRUE(raw.is_ok());
  EXPECT_EQ(raw->code, Code::kNoQuorum);
  EXPECT_TRUE(raw->no_quorum());
  EXPECT_FALSE(raw->may_have_run());
  EXPECT_EQ(raw->status().to_string(),
            "no quorum; not executed: node 1 is recovering; retry later");
  auto r = c.call(set("a", "b"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNoQuorum);

  h.on_loop([&] { h.engine().refusal = outcome_unknown("outcome unknown (no quorum): x"); });
  raw = c.call_raw(AppId::kKv, kv::encode_op(set("a", "b")), false);
  ASSERT_TRUE(raw.is_ok());
  EXPECT_EQ(raw->code, Code::kOutcomeUnknown);
  EXPECT_FALSE(raw->no_quorum());
  EXPECT_TRUE(raw->may_have_run());
  EXPECT_TRUE(c.call(get("a")).is_ok()) << "the connection is still usable";
}

TEST(NativeClient, OversizeOpGetsTooLargeAndConnectionSurvives) {
  Harness h;
  Client c = connect(h);
  std::string op(limits::op_bytes_max + 1, 'x');
  auto raw = c.call_raw(AppId::kKv, op, false);
  ASSERT_TRUE(raw.is_ok()) << raw.status().to_string();
  EXPECT_EQ(raw->code, Code::kTooLarge);
  EXPECT_TRUE(c.call(get("a")).is_ok());
}

TEST(NativeClient, GarbageClosesOnlyThatConnection) {
  Harness h;
  Client good = connect(h);
  ASSERT_TRUE(good.call(set("a", "1")).is_ok());

  RawSocket bad(h.port());
  bad.send("this is not a frame at all, not even close");
  std::vector<std::string> storage;
  auto responses = parse_responses(bad.read_to_eof(), storage);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].request_id, 0u);
  EXPECT_NE(responses[0].code, Code::kOk);

  auto r = good.call(get("a"));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, kv::Reply::of_value("1"));
  EXPECT_TRUE(h.wait_until([&] { return h.server().connection_count() == 1; }));
}

TEST(NativeClient, CorruptChecksumAndMalformedRequestClose) {
  Harness h;
  {
    std::string wire;
    protocol::encode_request({.request_id = 1, .op = "x"}, wire);
    wire[5] ^= 1;  // checksum
    RawSocket s(h.port());
    s.send(wire);
    std::vector<std::string> storage;
    auto rs = parse_responses(s.read_to_eof(), storage);
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_EQ(rs[0].code, Code::kCorruption);
  }
  {
    std::string wire;
    protocol::encode_frame(protocol::FrameType::kRequest, "short", wire);
    RawSocket s(h.port());
    s.send(wire);
    std::vector<std::string> storage;
    auto rs = parse_responses(s.read_to_eof(), storage);
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_EQ(rs[0].code, Code::kInvalidArgument);
  }
  {
    std::string wire;
    protocol::encode_frame(99, "", wire);
    RawSocket s(h.port());
    s.send(wire);
    std::vector<std::string> storage;
    EXPECT_EQ(parse_responses(s.read_to_eof(), storage).size(), 1u);
  }
}

TEST(NativeClient, UnsupportedHelloVersionIsRefused) {
  Harness h;
  std::string wire;
  protocol::encode_hello({.version = 99, .client_name = "future"}, wire);
  RawSocket s(h.port());
  s.send(wire);
  std::string all = s.read_to_eof();
  protocol::FrameDecoder d;
  d.feed(all);
  protocol::Frame f;
  ASSERT_EQ(d.next(f), protocol::DecodeResult::kFrame);
  ASSERT_EQ(f.type, static_cast<uint8_t>(protocol::FrameType::kHelloReply));
  auto m = protocol::decode_hello_reply(f.payload);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->code, Code::kInvalidArgument);
  EXPECT_EQ(m->version, protocol::kProtocolVersion);
}

TEST(NativeClient, HalfCloseStillGetsEveryAnswer) {
  Harness h;
  h.on_loop([&] { h.engine().defer_writes = true; });
  std::string wire;
  for (uint64_t id = 1; id <= 10; id++) {
    std::string op = kv::encode_op(set("k" + std::to_string(id), "v"));
    protocol::encode_request({.request_id = id, .op = op}, wire);
  }
  RawSocket s(h.port());
  s.send(wire);
  s.socket.shutdown(asio::ip::tcp::socket::shutdown_send);
  ASSERT_TRUE(h.wait_until([&] { return h.engine().pending() == 10; }));
  h.on_loop([&] { h.engine().complete_writes(); });
  std::vector<std::string> storage;
  auto rs = parse_responses(s.read_to_eof(), storage);
  EXPECT_EQ(rs.size(), 10u);
  EXPECT_TRUE(h.wait_until([&] { return h.server().connection_count() == 0; }));
}

TEST(NativeClient, RepliesAfterTheClientLeftAreDropped) {
  Harness h;
  h.on_loop([&] { h.engine().defer_writes = true; });
  {
    auto conn = NativeConnection::connect("127.0.0.1", h.port());
    ASSERT_TRUE(conn.is_ok());
    for (int i = 0; i < 50; i++) conn->send(set("k" + std::to_string(i), "v"));
    std::vector<Response> got;
    while (conn->unsent_bytes() > 0) ASSERT_TRUE(conn->poll(got, 10ms).is_ok());
    ASSERT_TRUE(h.wait_until([&] { return h.engine().pending() == 50; }));
  }
  // EOF may be a half-close, so the server answers what it was sent before
  // closing; the replies go to a socket nobody reads.
  h.on_loop([&] { h.engine().complete_writes(); });
  ASSERT_TRUE(h.wait_until([&] { return h.server().connection_count() == 0; }));
  EXPECT_EQ(h.on_loop([&] { return h.engine().app().size(); }), 50u);
  // And after stop(), with replies still owed.
  auto conn = NativeConnection::connect("127.0.0.1", h.port());
  ASSERT_TRUE(conn.is_ok());
  conn->send(set("late", "v"));
  std::vector<Response> got;
  while (conn->unsent_bytes() > 0) ASSERT_TRUE(conn->poll(got, 10ms).is_ok());
  ASSERT_TRUE(h.wait_until([&] { return h.engine().pending() == 1; }));
  h.on_loop([&] { h.server().stop(); });
  h.on_loop([&] { h.engine().complete_writes(); });
  auto r = conn->poll(got, 2s);
  EXPECT_FALSE(r.is_ok());
  EXPECT_TRUE(conn->is_broken());
}

TEST(NativeClient, ConnectFailsCleanly) {
  Harness h;
  const uint16_t port = h.port();
  h.on_loop([&] { h.server().stop(); });
  auto c = Client::connect("127.0.0.1", port, Options{.connect_timeout = 2s});
  EXPECT_FALSE(c.is_ok());
  auto c2 = Client::connect("no-such-host.invalid", 1, Options{.connect_timeout = 2s});
  EXPECT_FALSE(c2.is_ok());
}


// The client buffer budget (server/client_resources.h) is shared by every
// connection: a reply it cannot hold becomes a short error, and a partial
// frame it cannot hold closes its connection with the reason.
TEST(NativeServer, ARepliesTheBudgetCannotHoldIsRefusedWithAnError) {
  const size_t budget = limits::message_bytes_max;
  Harness h(server::ClientLimits{.buffer_bytes_max = budget});
  Client c = connect(h);
  const std::string big(512 * 1024, 'v');
  ASSERT_TRUE(c.call(set("big", big)).is_ok());
  ASSERT_TRUE(h.on_loop(
      [&] { return h.resources().reserve(budget - 1000, server::ClientPort::kResp, "test"); }));
  auto refused = c.call(get("big"));
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Code::kOverloaded);
  EXPECT_NE(refused.status().message().find("budget"), std::string::npos);
  h.on_loop([&] { h.resources().release(budget - 1000); });
  auto ok = c.call(get("big"));
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, kv::Reply::of_value(big));
  EXPECT_TRUE(h.wait_until([&] { return h.resources().buffered_bytes() == 0; }));
}

TEST(NativeServer, APartialFrameTheBudgetCannotHoldClosesItsConnection) {
  const size_t budget = limits::message_bytes_max;
  Harness h(server::ClientLimits{.buffer_bytes_max = budget});
  ASSERT_TRUE(h.on_loop([&] {
    return h.resources().reserve(budget - 256 * 1024, server::ClientPort::kResp, "test");
  }));
  const std::string big(1024 * 1024, 'v');
  std::string frame;
  const std::string op = kv::encode_op(set("k", big));
  protocol::encode_request({.request_id = 1, .op = op}, frame);
  RawSocket raw(h.port());
  // Just past what the budget can hold (its free share included), so the
  // server has read everything when it closes (else a reset may beat the reply).
  raw.send(std::string_view(frame).substr(
      0, 256 * 1024 + server::client_free_bytes + server::native_read_chunk_bytes + 4096));
  std::vector<std::string> storage;
  const auto responses = parse_responses(raw.read_to_eof(), storage);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].request_id, 0u);
  EXPECT_EQ(responses[0].code, Code::kUnavailable);
  EXPECT_NE(responses[0].error.find("budget"), std::string::npos) << responses[0].error;
  EXPECT_TRUE(h.wait_until([&] { return h.resources().buffered_bytes() == budget - 256 * 1024; }));
}

// Errors sent in place of refused replies pile up while the client does not
// read; when it reads again the server gives back what it held and goes on.
TEST(NativeServer, ErrorsInPlaceOfRefusedRepliesAreWrittenWhenTheClientReads) {
  const size_t budget = limits::message_bytes_max;
  Harness h(server::ClientLimits{.buffer_bytes_max = budget});
  Client c = connect(h);
  ASSERT_TRUE(c.call(set("big", std::string(4096, 'v'))).is_ok());
  ASSERT_TRUE(h.on_loop([&] { return h.resources().reserve(budget, server::ClientPort::kHttp, "test"); }));
  std::string frames;
  const std::string op = kv::encode_op(get("big"));
  constexpr int kRequests = 40000;
  for (int i = 1; i <= kRequests; i++) {
    protocol::encode_request({.request_id = static_cast<uint64_t>(i), .flags = protocol::kRequestReadOnly, .op = op}, frames);
  }
  RawSocket raw(h.port());
  raw.send(frames);  // not read until all were handled
  EXPECT_TRUE(h.wait_until([&] {
    return h.engine().metrics().render().find("maroon_native_requests_total 40001") != std::string::npos;
  }, 30s));
  std::string got;
  std::array<char, 65536> chunk;
  size_t responses = 0;
  while (responses < kRequests) {
    boost::system::error_code ec;
    const size_t n = raw.socket.read_some(asio::buffer(chunk), ec);
    ASSERT_FALSE(ec) << ec.message();
    got.append(chunk.data(), n);
    std::vector<std::string> storage;
    responses = parse_responses(got, storage).size();
  }
  h.on_loop([&] { h.resources().release(budget); });
  EXPECT_TRUE(c.call(get("big")).is_ok());  // still serving
}

TEST(NativeServer, AFrameNotCompleteInTimeClosesItsConnection) {
  Harness h(server::ClientLimits{.request_timeout = 300ms});
  std::string frame;
  const std::string op = kv::encode_op(set("k", "v"));
  protocol::encode_request({.request_id = 1, .op = op}, frame);
  RawSocket raw(h.port());
  raw.send(std::string_view(frame).substr(0, 5));
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(raw.read_to_eof(), "");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(h.on_loop([&] { return h.resources().counters().timeouts; }), 1u);
  // A client that sends whole frames is not affected.
  Client c = connect(h);
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(c.call(set("k", "v")).is_ok());
}

// ---- credentials (ClientSecurity::users)

using server::kReaderPassword;
using server::kWriterPassword;
server::ClientSecurity two_users() { return server::two_test_users(); }

Result<Client> connect_as(Harness& h, std::string_view user, std::string_view password) {
  return Client::connect("127.0.0.1", h.port(),
                         Options{.user = std::string(user), .password = std::string(password)});
}

TEST(NativeAuth, RequestsBeforeLoginAreRefused) {
  Harness h({}, two_users());
  auto c = Client::connect("127.0.0.1", h.port());  // a Hello without credentials
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  // Requests without any Hello are answered, each with code 12.
  RawSocket raw(h.port());
  std::string frames, op;
  kv::encode_op(get("k"), op);
  protocol::encode_request({.request_id = 7, .app = AppId::kKv, .flags = protocol::kRequestReadOnly, .op = op}, frames);
  op.clear();
  kv::encode_op(set("k", "v"), op);
  protocol::encode_request({.request_id = 8, .app = AppId::kKv, .op = op}, frames);
  raw.send(frames);
  std::string got;
  std::vector<std::string> storage;
  std::vector<protocol::Response> responses;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (responses.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    char buf[4096];
    boost::system::error_code ec;
    const size_t n = raw.socket.read_some(asio::buffer(buf), ec);
    if (ec) break;
    got.append(buf, n);
    storage.clear();
    responses = parse_responses(got, storage);
  }
  ASSERT_EQ(responses.size(), 2u);
  for (const auto& r : responses) EXPECT_EQ(r.code, Code::kUnauthenticated);
  EXPECT_EQ(h.on_loop([&] { return h.engine().submitted; }), 0u);
  // A big frame before a login is not buffered: the connection closes.
  RawSocket big(h.port());
  timeval tv{.tv_sec = 10, .tv_usec = 0};  // a server that keeps it open fails, not hangs
  ::setsockopt(big.socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  op.clear();
  kv::encode_op(set("k", std::string(100 * 1024, 'v')), op);
  frames.clear();
  protocol::encode_request({.request_id = 9, .app = AppId::kKv, .op = op}, frames);
  boost::system::error_code ec;
  asio::write(big.socket, asio::buffer(frames), ec);  // may fail once the server closed
  const std::string all = big.read_to_eof();
  storage.clear();
  auto last = parse_responses(all, storage);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].request_id, 0u);
  EXPECT_EQ(last[0].code, Code::kUnauthenticated);
}

TEST(NativeAuth, WrongCredentialsCloseTheConnection) {
  Harness h({}, two_users());
  for (auto [user, password] : std::vector<std::pair<std::string_view, std::string_view>>{
           {"writer", kReaderPassword}, {"nobody", kWriterPassword}, {"", "not-a-password"}}) {
    auto c = connect_as(h, user, password);
    ASSERT_FALSE(c.is_ok()) << user;
    EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  }
  EXPECT_EQ(h.on_loop([&] { return h.resources().counters().auth_failures; }), 3u);
  EXPECT_FALSE(Client::connect("127.0.0.1", h.port()).is_ok());  // no credentials at all
  EXPECT_EQ(h.on_loop([&] { return h.resources().counters().auth_failures; }), 4u);
}

TEST(NativeAuth, UsersGetTheirAccess) {
  Harness h({}, two_users());
  auto w = connect_as(h, "writer", kWriterPassword);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  ASSERT_TRUE(w->call(set("k", "v")).is_ok());
  auto by_token = connect_as(h, "", kWriterPassword);  // a password alone names its user
  ASSERT_TRUE(by_token.is_ok());
  ASSERT_TRUE(by_token->call(set("k2", "v")).is_ok());

  auto r = connect_as(h, "reader", kReaderPassword);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto got = r->call(get("k"));
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, kv::Reply::of_value("v"));
  const uint64_t submitted = h.on_loop([&] { return h.engine().submitted; });
  auto denied = r->call(set("k", "w"));
  ASSERT_FALSE(denied.is_ok());
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied);
  // A write op sent as an ordered request without the read-only flag, or
  // with it: neither changes anything.
  std::string op;
  kv::encode_op(set("k", "w"), op);
  auto raw = r->call_raw(AppId::kKv, op, false);
  ASSERT_TRUE(raw.is_ok());
  EXPECT_EQ(raw->code, Code::kPermissionDenied);
  raw = r->call_raw(AppId::kKv, op, true);  // the read path refuses writes
  ASSERT_TRUE(raw.is_ok());
  if (raw->code == Code::kOk) {
    auto reply = kv::decode_reply(raw->reply);
    ASSERT_TRUE(reply.is_ok());
    EXPECT_EQ(reply->kind, kv::Reply::Kind::kError);
  }
  EXPECT_EQ(h.on_loop([&] { return h.engine().submitted; }), submitted);
  got = r->call(get("k"));
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, kv::Reply::of_value("v"));
}

// ---- TLS (docs/security.md, "Client TLS")

// A local CA, a server certificate for localhost and 127.0.0.1, and the CA
// written where ClientTls::load reads it.
class NativeClientTls : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("maroon-native-tls-" + std::to_string(::getpid()) + "-" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    ca_file_ = write("ca.crt", ca_.cert_pem);
    other_ca_file_ = write("other-ca.crt", net::make_local_ca("another CA", 30).value().cert_pem);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  server::ClientSecurity security() {
    const net::KeyAndCert leaf =
        net::issue_tls_leaf(
            ca_, {.common_name = "localhost", .dns_names = {"localhost"}, .ips = {"127.0.0.1"}}, 10)
            .value();
    return {.tls =
                server::make_client_tls_context({.cert_chain = leaf.cert_pem, .key = leaf.key_pem})
                    .value()};
  }
  Options tls_options(const std::string& ca_file) {
    Result<std::shared_ptr<const ClientTls>> tls = ClientTls::load(ca_file);
    MAROON_ASSERT_MSG(tls.is_ok(), tls.is_ok() ? "" : tls.status().to_string().c_str());
    return Options{.connect_timeout = 5000ms, .tls = std::move(tls).value()};
  }

  net::KeyAndCert ca_ = net::make_local_ca("test CA", 30).value();
  std::filesystem::path dir_;
  std::string ca_file_;
  std::string other_ca_file_;
};

TEST_F(NativeClientTls, CallsAndAPipelineWorkOverTls) {
  Harness h({}, security());
  for (const char* host : {"127.0.0.1", "localhost"}) {
    auto c = Client::connect(host, h.port(), tls_options(ca_file_));
    ASSERT_TRUE(c.is_ok()) << host << ": " << c.status().to_string();
    ASSERT_TRUE(c->call(set("k", host)).is_ok());
    EXPECT_EQ(c->call(get("k")).value(), kv::Reply::of_value(host));
  }
  // Enough in flight to take several TLS records each way.
  auto conn = NativeConnection::connect("127.0.0.1", h.port(), tls_options(ca_file_));
  ASSERT_TRUE(conn.is_ok()) << conn.status().to_string();
  const std::string value(20000, 'x');
  constexpr size_t kRequests = 200;
  for (size_t i = 0; i < kRequests; i++) conn->send(set("big" + std::to_string(i % 7), value));
  std::vector<Response> got = collect(*conn, kRequests);
  ASSERT_EQ(got.size(), kRequests);
  for (const Response& r : got) EXPECT_EQ(r.code, Code::kOk) << r.error;
}

TEST_F(NativeClientTls, AServerTheCaDidNotSignIsRefused) {
  Harness h({}, security());
  auto c = Client::connect("127.0.0.1", h.port(), tls_options(other_ca_file_));
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("certificate"), std::string::npos) << c.status().message();
}

TEST_F(NativeClientTls, PlaintextAndTlsDoNotMix) {
  {
    Harness tls_port({}, security());
    auto c = Client::connect("127.0.0.1", tls_port.port());  // plaintext
    EXPECT_FALSE(c.is_ok());
  }
  // The server takes the ClientHello for the start of a large frame and
  // waits for the rest: the handshake times out.
  Harness plain_port;
  Options options = tls_options(ca_file_);
  options.connect_timeout = 300ms;
  auto c = Client::connect("127.0.0.1", plain_port.port(), options);
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("TLS"), std::string::npos) << c.status().message();
}

TEST(ClientTlsLoad, ErrorsNameTheFile) {
  Result<std::shared_ptr<const ClientTls>> tls = ClientTls::load("/nonexistent/ca.crt");
  ASSERT_FALSE(tls.is_ok());
  EXPECT_NE(tls.status().message().find("/nonexistent/ca.crt"), std::string::npos)
      << tls.status().message();
}

}  // namespace
}  // namespace maroon::client
