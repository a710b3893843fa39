#include "server/resp_server.h"
#include "server/test_users.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "maroon/limits.h"
#include "protocol/resp.h"
#include "server/fake_engine.h"

namespace maroon::server {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using protocol::resp::encode_command;

constexpr auto kDeadline = 10s;

// A blocking-style client with deadlines: each read runs its own io_context
// until the bytes arrive or the deadline passes.
class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    socket_.set_option(tcp::no_delay(true));
  }

  void send(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }
  // As send, but a failure (the server closed) is reported, not thrown.
  void try_send(std::string_view bytes, boost::system::error_code& ec) {
    asio::write(socket_, asio::buffer(bytes), ec);
  }

  // Exactly n bytes, or what arrived before EOF or the deadline (a failure).
  std::string read(size_t n) {
    std::string buf(n, '\0');
    size_t got = 0;
    bool done = false;
    asio::async_read(socket_, asio::buffer(buf), [&](const boost::system::error_code&, size_t k) {
      got = k;
      done = true;
    });
    run_until(done);
    buf.resize(got);
    return buf;
  }

  // Everything until the server closes; nullopt if it does not by the deadline.
  std::optional<std::string> read_until_closed() {
    std::string all;
    bool closed = false;
    std::array<char, 4096> chunk;
    std::function<void()> next = [&] {
      socket_.async_read_some(asio::buffer(chunk), [&](const boost::system::error_code& ec, size_t k) {
        all.append(chunk.data(), k);
        if (ec) {
          closed = true;
        } else {
          next();
        }
      });
    };
    next();
    if (!run_until(closed)) return std::nullopt;
    return all;
  }

  // Bytes up to and including the first `suffix` at their end; what arrived
  // if the server closes or the deadline passes first.
  std::string read_through(std::string_view suffix) {
    std::string got;
    while (!got.ends_with(suffix)) {
      const std::string b = read(1);
      if (b.empty()) break;
      got += b;
    }
    return got;
  }

  // Sends a request and checks its reply byte for byte.
  void expect(std::string_view request, std::string_view reply) {
    send(request);
    EXPECT_EQ(read(reply.size()), reply) << "request: " << testing::PrintToString(std::string(request));
  }

  size_t available() { return socket_.available(); }
  // Closes with a TCP reset (asio drops SO_LINGER in the destructor, so close here).
  void reset() {
    socket_.set_option(asio::socket_base::linger(true, 0));
    socket_.close();
  }

 private:
  bool run_until(bool& flag) {
    io_.restart();
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (!flag && std::chrono::steady_clock::now() < deadline) io_.run_one_for(100ms);
    if (!flag) {
      ADD_FAILURE() << "client read timed out";
      socket_.cancel();
      io_.restart();
      io_.run();
      return false;
    }
    return true;
  }

  asio::io_context io_;
  tcp::socket socket_;
};

std::string cmd(std::initializer_list<std::string_view> args) { return encode_command(args); }
std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

class RespServerTest : public testing::Test {
 protected:
  // The client bounds the server runs with; a fixture may choose others.
  virtual ClientLimits client_limits() const { return {}; }
  // What clients must present; a fixture may ask for users.
  virtual ClientSecurity security() const { return {}; }

  void SetUp() override {
    resources_ = std::make_unique<ClientResources>(client_limits(), &engine_.metrics());
    server_ = std::make_unique<RespServer>(io_, engine_, "127.0.0.1", 0, *resources_, security());
    ASSERT_TRUE(server_->start().is_ok());
    ASSERT_NE(server_->port(), 0);
    loop_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    on_loop([this] { server_->stop(); });
    guard_.reset();
    loop_.join();
    server_.reset();
  }

  // Runs f on the event-loop thread (the only thread that may touch the
  // engine and the server) and returns its result.
  template <typename F>
  auto on_loop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    if (result.wait_for(kDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "event loop did not run the task";
      std::abort();
    }
    return result.get();
  }

  // Waits, with a deadline, for a condition evaluated on the loop.
  bool wait_until(std::function<bool()> condition) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (std::chrono::steady_clock::now() < deadline) {
      if (on_loop(condition)) return true;
      std::this_thread::yield();
    }
    return false;
  }

  // On the loop thread: a counter's value from the engine's registry.
  uint64_t metric_on_loop(const std::string& name) {
    std::istringstream in(engine_.metrics().render());
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name + " ", 0) == 0) return std::stoull(line.substr(name.size() + 1));
    }
    ADD_FAILURE() << "no metric " << name;
    return 0;
  }
  uint64_t metric(const std::string& name) {
    return on_loop([&] { return metric_on_loop(name); });
  }
  uint64_t commands() { return metric("maroon_resp_commands_total"); }
  uint64_t commands_on_loop() { return metric_on_loop("maroon_resp_commands_total"); }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_ = asio::make_work_guard(io_);
  FakeEngine engine_;
  std::unique_ptr<ClientResources> resources_;
  std::unique_ptr<RespServer> server_;
  std::thread loop_;
};

// A small client buffer budget and short request timeout.
class RespBudgetTest : public RespServerTest {
 protected:
  static constexpr size_t kBudget = limits::message_bytes_max;
  ClientLimits client_limits() const override {
    return {.buffer_bytes_max = kBudget, .request_timeout = 300ms};
  }
  size_t buffered() { return on_loop([this] { return resources_->buffered_bytes(); }); }
};

TEST_F(RespBudgetTest, AMultiQueueAndWatchedKeysAreChargedToTheBudget) {
  Client c(server_->port());
  const std::string value(400 * 1024, 'v');
  ASSERT_TRUE(on_loop([&] { return resources_->reserve(kBudget - 2000 * 1024, ClientPort::kHttp, "test"); }));
  const size_t spent = buffered();
  c.expect(cmd({"MULTI"}), "+OK\r\n");
  c.expect(cmd({"SET", "a", value}), "+QUEUED\r\n");
  EXPECT_GT(buffered(), spent + 300 * 1024);  // the queued op holds budget
  // Queue until the budget refuses (a few 400 KiB ops fit in 2000 KiB, the
  // input buffer's share included); the refusal fails the EXEC.
  int queued = 1;
  std::string reply;
  while (queued < 10) {
    c.send(cmd({"SET", "k" + std::to_string(queued), value}));
    reply = c.read_through("\r\n");
    if (reply != "+QUEUED\r\n") break;
    queued++;
  }
  EXPECT_LT(queued, 10);
  EXPECT_EQ(reply, "-ERR the server's client buffer budget is spent; retry later\r\n");
  c.expect(cmd({"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.\r\n");
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == spent; }));  // given back with the queue
  c.expect(cmd({"EXISTS", "a"}), ":0\r\n");
  // Watched keys too.
  // Keys are at most 16 KiB: watch 60 of 15 KiB, then 60 more.
  auto watch_many = [](char tag) {
    std::string request = "*61\r\n" + bulk("WATCH");
    for (int i = 0; i < 60; i++) request += bulk(std::string(15 * 1024, tag) + std::to_string(i));
    return request;
  };
  c.expect(watch_many('x'), "+OK\r\n");
  EXPECT_GT(buffered(), spent + 800 * 1024);
  c.expect(watch_many('y'),
           "-ERR the server's client buffer budget is spent; retry later\r\n");
  c.expect(cmd({"UNWATCH"}), "+OK\r\n");
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == spent; }));
  c.expect(cmd({"MULTI"}), "+OK\r\n");
  c.expect(cmd({"SET", "a", value}), "+QUEUED\r\n");
  c.expect(cmd({"EXEC"}), "*1\r\n+OK\r\n");
  // The reply's bytes go back once its write completes, just after the client has it.
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == spent; }));
  on_loop([&] { resources_->release(kBudget - 2000 * 1024); });
}

TEST_F(RespBudgetTest, AnExecWaitingForTheEngineStillHoldsItsQueue) {
  Client c(server_->port());
  const std::string value(400 * 1024, 'v');
  const size_t before = buffered();
  on_loop([&] { engine_.defer_writes = true; });
  c.expect(cmd({"MULTI"}), "+OK\r\n");
  c.expect(cmd({"SET", "a", value}), "+QUEUED\r\n");
  c.send(cmd({"EXEC"}));
  EXPECT_TRUE(wait_until([&] { return engine_.pending() == 1; }));
  EXPECT_GT(buffered(), before + 300 * 1024);  // in the EXEC's slot, not given back yet
  on_loop([&] {
    engine_.defer_writes = false;
    engine_.complete_writes();
  });
  EXPECT_EQ(c.read(9), "*1\r\n+OK\r\n");
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == before; }));
}

TEST_F(RespBudgetTest, AReadReplyTheBudgetCannotHoldIsRefusedAndTheConnectionGoesOn) {
  Client c(server_->port());
  const std::string big(512 * 1024, 'v');
  c.expect(cmd({"SET", "big", big}), "+OK\r\n");
  ASSERT_TRUE(on_loop([&] { return resources_->reserve(kBudget - 1000, ClientPort::kHttp, "test"); }));
  c.expect(cmd({"GET", "big"}),
           "-ERR the server's client buffer budget is spent; retry later\r\n");
  c.expect(cmd({"SET", "small", "v"}), "+OK\r\n");  // small replies need nothing from it
  c.expect(cmd({"GET", "small"}), "$1\r\nv\r\n");
  on_loop([&] { resources_->release(kBudget - 1000); });
  c.expect(cmd({"GET", "big"}), bulk(big));
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == 0; }));
  EXPECT_GE(on_loop([&] { return resources_->counters().budget_refusals; }), 1u);
}

TEST_F(RespBudgetTest, RepliesNobodyReadsHoldTheBudgetUntilTheConnectionCloses) {
  Client writer(server_->port());
  const std::string big(256 * 1024, 'v');
  writer.expect(cmd({"SET", "big", big}), "+OK\r\n");
  auto reader = std::make_unique<Client>(server_->port());
  // 16 MiB of replies: more than the kernel's socket buffers on both ends
  // can take (they grow to several MiB on loopback), so most stay with us.
  std::string gets;
  for (int i = 0; i < 64; i++) gets += cmd({"GET", "big"});
  reader->send(gets);
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() >= 16 * big.size(); }));
  reader->reset();
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == 0; }));
}

// What is charged is what is written: a WATCH's reply from the engine lists
// every key's stamp, but the client gets +OK.
TEST_F(RespBudgetTest, WatchRepliesHoldOnlyWhatTheyWrite) {
  Client c(server_->port());
  std::vector<std::string> keys;
  for (int i = 0; i < 2000; i++) keys.push_back("key" + std::to_string(i));
  std::string request = "*" + std::to_string(keys.size() + 1) + "\r\n" + bulk("WATCH");
  for (const auto& k : keys) request += bulk(k);
  for (int round = 0; round < 5; round++) {
    c.expect(request, "+OK\r\n");
    c.expect(cmd({"UNWATCH"}), "+OK\r\n");
  }
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == 0; }));
}

TEST_F(RespBudgetTest, SilentRepliesHoldNothing) {
  Client c(server_->port());
  c.expect(cmd({"SET", "big", std::string(64 * 1024, 'v')}), "+OK\r\n");
  c.send(cmd({"CLIENT", "REPLY", "OFF"}));
  for (int i = 0; i < 50; i++) c.send(cmd({"GET", "big"}));
  c.expect(cmd({"CLIENT", "REPLY", "ON"}), "+OK\r\n");
  EXPECT_TRUE(wait_until([&] { return resources_->buffered_bytes() == 0; }));
}

TEST_F(RespBudgetTest, ARequestNotCompleteInTimeClosesTheConnection) {
  Client slow(server_->port());
  slow.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab");
  EXPECT_EQ(slow.read_until_closed(), "");
  EXPECT_EQ(on_loop([&] { return resources_->counters().timeouts; }), 1u);
  Client idle(server_->port());  // idle between requests: not a partial request
  std::this_thread::sleep_for(1500ms);
  idle.expect(cmd({"PING"}), "+PONG\r\n");
}

TEST_F(RespServerTest, KvCommandsByteExact) {
  Client c(server_->port());
  c.expect(cmd({"SET", "k", "v"}), "+OK\r\n");
  c.expect(cmd({"GET", "k"}), "$1\r\nv\r\n");
  c.expect(cmd({"get", "missing"}), "$-1\r\n");
  c.expect(cmd({"INCR", "n"}), ":1\r\n");
  c.expect(cmd({"INCRBY", "n", "10"}), ":11\r\n");
  c.expect(cmd({"DECR", "n"}), ":10\r\n");
  c.expect(cmd({"DECRBY", "n", "-5"}), ":15\r\n");
  c.expect(cmd({"INCR", "k"}), "-ERR value is not an integer or out of range\r\n");
  c.expect(cmd({"INCRBY", "n", "x"}), "-ERR value is not an integer or out of range\r\n");
  c.expect(cmd({"INCRBY", "n", "01"}), "-ERR value is not an integer or out of range\r\n");
  c.expect(cmd({"INCRBY", "n", "9223372036854775807"}),
           "-ERR increment or decrement would overflow\r\n");
  c.expect(cmd({"DECRBY", "n", "-9223372036854775808"}), "-ERR decrement would overflow\r\n");
  c.expect(cmd({"MSET", "a", "1", "b", "2"}), "+OK\r\n");
  c.expect(cmd({"MGET", "a", "b", "zz"}), "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n");
  c.expect(cmd({"EXISTS", "a", "b", "zz"}), ":2\r\n");
  c.expect(cmd({"DEL", "a", "zz"}), ":1\r\n");
  c.expect(cmd({"DBSIZE"}), ":3\r\n");  // k, n, b
  c.expect(cmd({"SETNX", "k", "x"}), ":0\r\n");
  c.expect(cmd({"SETNX", "fresh", "x"}), ":1\r\n");
  c.expect(cmd({"SET", "k", "v2", "NX"}), "$-1\r\n");
  c.expect(cmd({"SET", "k", "v2", "xx"}), "+OK\r\n");
  c.expect(cmd({"SET", "nokey", "v", "XX"}), "$-1\r\n");
  c.expect(cmd({"SET", "nokey", "v", "NX"}), "+OK\r\n");
  c.expect(cmd({"GET", "k"}), "$2\r\nv2\r\n");
  c.expect(cmd({"SET", "k", "v", "NX", "XX"}), "-ERR syntax error\r\n");
  c.expect(cmd({"SET", "k", "v", "EX", "10"}), "-ERR expiry is not supported\r\n");
  c.expect(cmd({"SET", "k", "v", "KEEPTTL"}), "-ERR expiry is not supported\r\n");
  c.expect(cmd({"SET", "k", "v", "BOGUS"}), "-ERR syntax error\r\n");
  c.expect(cmd({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command\r\n");
  c.expect(cmd({"GET", "k"}), "$2\r\nv2\r\n");
}

TEST_F(RespServerTest, AdminCommands) {
  Client c(server_->port());
  c.expect(cmd({"PING"}), "+PONG\r\n");
  c.expect(cmd({"PING", "hi"}), "$2\r\nhi\r\n");
  c.expect(cmd({"ECHO", "a\r\nb"}), "$4\r\na\r\nb\r\n");
  c.expect(cmd({"SELECT", "0"}), "+OK\r\n");
  c.expect(cmd({"SELECT", "1"}), "-ERR DB index is out of range\r\n");
  c.expect(cmd({"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  c.expect(cmd({"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
  c.expect(cmd({"CONFIG", "GET", "maxmemory"}), "*0\r\n");
  c.expect(cmd({"COMMAND"}), "*0\r\n");
  c.expect(cmd({"COMMAND", "DOCS"}), "*0\r\n");
  c.expect(cmd({"COMMAND", "COUNT"}), ":30\r\n");
  c.expect(cmd({"CLIENT", "SETNAME", "x"}), "+OK\r\n");
  c.expect(cmd({"HELLO", "4"}), "-NOPROTO sorry, this protocol version is not supported\r\n");
  const std::string hello_prefix = "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n";
  c.send(cmd({"HELLO", "2"}));
  EXPECT_EQ(c.read(hello_prefix.size()), hello_prefix);
  c.send(cmd({"INFO"}));
  const std::string header = c.read(4);  // "$<len>" starts the bulk
  ASSERT_EQ(header[0], '$');
  c.send("PING\r\n");
  // The INFO bulk is followed by +PONG; read up to it.
  std::string rest;
  while (rest.size() < 7 || rest.substr(rest.size() - 7) != "+PONG\r\n") {
    const std::string b = c.read(1);
    ASSERT_EQ(b.size(), 1u);
    rest += b;
  }
  EXPECT_NE(rest.find("redis_version:7.0.0-maroon"), std::string::npos);
  EXPECT_NE(rest.find("db0:keys=0"), std::string::npos);
  c.expect("QUIT\r\n", "+OK\r\n");
  EXPECT_EQ(c.read_until_closed(), "");
}

TEST_F(RespServerTest, InlineCommands) {
  Client c(server_->port());
  c.expect("SET greeting \"hello world\"\r\nGET greeting\r\n", "+OK\r\n$11\r\nhello world\r\n");
  c.expect("\r\nping\n", "+PONG\r\n");
}

TEST_F(RespServerTest, UnknownCommandAndWrongArityKeepConnectionUsable) {
  Client c(server_->port());
  c.expect(cmd({"FOO", "a", "b"}),
           "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
  c.expect(cmd({"NOPE"}), "-ERR unknown command 'NOPE', with args beginning with: \r\n");
  c.expect(cmd({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  c.expect(cmd({"get", "a", "b"}), "-ERR wrong number of arguments for 'get' command\r\n");
  c.expect(cmd({"PING", "a", "b"}), "-ERR wrong number of arguments for 'ping' command\r\n");
  c.expect(cmd({"SET", "k", "v"}), "+OK\r\n");
  c.expect(cmd({"GET", "k"}), "$1\r\nv\r\n");
  EXPECT_EQ(metric("maroon_resp_errors_total"), 5u);
  EXPECT_EQ(commands(), 7u);
}

// 100 mixed commands in one write, and again in 7-byte pieces: the replies
// come back in request order.
TEST_F(RespServerTest, PipelinedBatchAnsweredInOrder) {
  std::string requests, replies;
  int counter = 0;
  for (int i = 0; i < 100; i++) {
    const std::string key = "key:" + std::to_string(i / 5 % 10);
    switch (i % 5) {
      case 0:
        requests += cmd({"SET", key, "v" + std::to_string(i)});
        replies += "+OK\r\n";
        break;
      case 1:
        requests += cmd({"GET", key});
        replies += bulk("v" + std::to_string(i - 1));
        break;
      case 2:
        requests += cmd({"INCR", "counter"});
        replies += ":" + std::to_string(++counter) + "\r\n";
        break;
      case 3:
        requests += cmd({"PING"});
        replies += "+PONG\r\n";
        break;
      case 4:
        requests += cmd({"EXISTS", key, "nope"});
        replies += ":1\r\n";
        break;
    }
  }
  {
    Client c(server_->port());
    c.send(requests);
    EXPECT_EQ(c.read(replies.size()), replies);
  }
  // Same again split into small pieces (the counter keeps counting).
  std::string replies2;
  counter = 0;
  std::string requests2;
  for (int i = 0; i < 100; i++) {
    requests2 += cmd({"INCR", "counter2"});
    replies2 += ":" + std::to_string(++counter) + "\r\n";
    requests2 += cmd({"GET", "key:8"});
    replies2 += bulk("v90");
  }
  Client c(server_->port());
  for (size_t i = 0; i < requests2.size(); i += 7) c.send(std::string_view(requests2).substr(i, 7));
  EXPECT_EQ(c.read(replies2.size()), replies2);
}

TEST_F(RespServerTest, ReadWaitsForEarlierWriteOnSameConnection) {
  on_loop([this] { engine_.defer_writes = true; });
  Client a(server_->port());
  Client b(server_->port());
  a.send(cmd({"SET", "k", "v1"}) + cmd({"GET", "k"}) + cmd({"SET", "k", "v2"}) + cmd({"GET", "k"}) +
         cmd({"PING"}));
  ASSERT_TRUE(wait_until([this] { return engine_.pending() == 1; }));
  ASSERT_TRUE(wait_until([this] { return commands_on_loop() == 5; }));
  // The second SET waits for the GET before it, which waits for the first SET.
  EXPECT_EQ(on_loop([this] { return engine_.pending(); }), 1u);
  EXPECT_EQ(a.available(), 0u);
  // Another connection is not held up by a's pending write.
  b.expect(cmd({"GET", "k"}), "$-1\r\n");

  // Completing the first SET lets the GET run and then submits the second
  // SET (on the next loop turn: replies completed together are answered
  // together); completing that one lets the last GET run.
  on_loop([this] { engine_.complete_writes(); });
  ASSERT_TRUE(wait_until([this] { return engine_.pending() == 1; }));
  on_loop([this] { engine_.complete_writes(); });
  const std::string expected = "+OK\r\n$2\r\nv1\r\n+OK\r\n$2\r\nv2\r\n+PONG\r\n";
  EXPECT_EQ(a.read(expected.size()), expected);
}

TEST_F(RespServerTest, MalformedFrameClosesOnlyThatConnection) {
  Client good(server_->port());
  {
    Client bad(server_->port());
    bad.send("PING\r\n*1\r\n$x\r\n" + cmd({"PING"}));
    EXPECT_EQ(bad.read_until_closed(), "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
    good.expect(cmd({"PING"}), "+PONG\r\n");
  }
  ASSERT_TRUE(wait_until([this] { return server_->connection_count() == 1; }));

  Client bad2(server_->port());
  bad2.send("*1\r\n:1\r\n");
  EXPECT_EQ(bad2.read_until_closed(), "-ERR Protocol error: expected '$', got ':'\r\n");
  good.expect(cmd({"GET", "x"}), "$-1\r\n");
}

// Over the protocol's limits but well-formed: skipped as it streams in, an
// error reply, and the requests after it are answered.
TEST_F(RespServerTest, OversizeBulkIsSkippedAndTheConnectionGoesOn) {
  Client c(server_->port());
  const size_t len = protocol::resp::bulk_bytes_max + 1;
  c.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + std::to_string(len) + "\r\n");
  const std::string chunk(1024 * 1024, 'v');
  for (size_t sent = 0; sent < len; sent += chunk.size()) {
    c.send(std::string_view(chunk).substr(0, std::min(chunk.size(), len - sent)));
  }
  c.expect("\r\n" + cmd({"PING"}),
           "-ERR argument is " + std::to_string(len) + " bytes; the limit is " +
               std::to_string(protocol::resp::bulk_bytes_max) + "\r\n+PONG\r\n");
  // Too many arguments: the same.
  std::string many = "*" + std::to_string(protocol::resp::command_args_max + 1) + "\r\n";
  for (size_t i = 0; i <= protocol::resp::command_args_max; i++) many += "$1\r\nk\r\n";
  c.expect(many + cmd({"GET", "k"}),
           "-ERR request has " + std::to_string(protocol::resp::command_args_max + 1) +
               " arguments; the limit is " + std::to_string(protocol::resp::command_args_max) +
               "\r\n$-1\r\n");

  // Within the protocol's bounds but over the kv limits: an error reply, and
  // the connection stays usable.
  Client d(server_->port());
  d.send(cmd({"SET", "k", std::string(limits::value_bytes_max + 1, 'v')}));
  const std::string reply = d.read(5);
  EXPECT_EQ(reply, "-ERR ");
  d.send(cmd({"SET", std::string(limits::key_bytes_max + 1, 'k'), "v"}) + cmd({"PING"}));
  std::string rest;
  while (rest.find("+PONG\r\n") == std::string::npos) {
    const std::string b = d.read(1);
    ASSERT_EQ(b.size(), 1u);
    rest += b;
  }
  EXPECT_EQ(std::count(rest.begin(), rest.end(), '\n'), 3);  // two errors and +PONG
  EXPECT_EQ(on_loop([this] { return engine_.app().size(); }), 0u);
}

// Bytes that are not RESP: the error, then the connection closes at once,
// however much the client keeps sending (Redis's "protocol desync" test).
TEST_F(RespServerTest, DesyncClosesPromptly) {
  Client c(server_->port());
  const auto start = std::chrono::steady_clock::now();
  c.send("*3\r\n$3\r\nSET\r\n$1\r\nxx" + std::string(1000, 'x'));
  // The client keeps writing until the server is gone. Socket buffers take
  // a few MiB at most; a server that drains the stream takes everything.
  std::string junk(1024, 'A');
  boost::system::error_code ec;
  size_t sent_kib = 0;
  for (; sent_kib < 64 * 1024 && !ec; sent_kib++) c.try_send(junk, ec);
  EXPECT_TRUE(ec) << "the server kept reading";
  EXPECT_LT(sent_kib, 8 * 1024u) << "the server read far past the error";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(RespServerTest, LargeValueRoundTrips) {
  Client c(server_->port());
  const std::string value(limits::value_bytes_max, 'x');
  c.expect(cmd({"SET", "big", value}), "+OK\r\n");
  c.expect(cmd({"GET", "big"}), bulk(value));
  const std::string five_mib(5 * 1024 * 1024, 'y');
  c.expect(cmd({"SET", "five", five_mib}) + cmd({"GET", "five"}) + cmd({"PING"}),
           "+OK\r\n" + bulk(five_mib) + "+PONG\r\n");
}

// What redis-benchmark and bulk loaders send: MSET of 10,001 pairs and MGET
// of 10,000 keys in one request each.
TEST_F(RespServerTest, TenThousandKeysInOneRequest) {
  Client c(server_->port());
  std::vector<std::string> words = {"MSET"};
  for (int i = 0; i <= 10000; i++) {
    words.push_back("key:" + std::to_string(i));
    words.push_back(std::to_string(i));
  }
  std::vector<std::string_view> views(words.begin(), words.end());
  std::string mset;
  protocol::resp::append_command(mset, views);
  c.expect(mset, "+OK\r\n");
  std::vector<std::string> get = {"MGET"};
  std::string want = "*10000\r\n";
  for (int i = 0; i < 10000; i++) {
    get.push_back("key:" + std::to_string(i));
    want += bulk(std::to_string(i));
  }
  std::vector<std::string_view> get_views(get.begin(), get.end());
  std::string mget;
  protocol::resp::append_command(mget, get_views);
  c.expect(mget + cmd({"DBSIZE"}), want + ":10001\r\n");
}

TEST_F(RespServerTest, InflightLimitAppliesBackpressureWithoutLosingReplies) {
  constexpr size_t kLimit = limits::connection_inflight_requests_max;
  constexpr size_t kExtra = 100;
  on_loop([this] { engine_.defer_writes = true; });
  Client c(server_->port());
  std::string requests;
  for (size_t i = 0; i < kLimit + kExtra; i++) requests += cmd({"SET", "k" + std::to_string(i), "v"});
  c.send(requests);
  ASSERT_TRUE(wait_until([this] { return engine_.pending() == kLimit; }));
  // Nothing beyond the limit was taken while none was answered.
  EXPECT_EQ(commands(), kLimit);
  EXPECT_EQ(on_loop([this] { return engine_.pending(); }), kLimit);

  // Completing writes frees slots, so the server parses the rest (FakeEngine
  // completes those in the same call too). Never more than the limit pending.
  size_t max_pending = 0;
  ASSERT_TRUE(wait_until([&] {
    max_pending = std::max(max_pending, engine_.pending());
    engine_.complete_writes();
    return commands_on_loop() == kLimit + kExtra && engine_.pending() == 0;
  }));
  EXPECT_EQ(max_pending, kLimit);
  std::string expected;
  for (size_t i = 0; i < kLimit + kExtra; i++) expected += "+OK\r\n";
  EXPECT_EQ(c.read(expected.size()), expected);
  c.expect(cmd({"DBSIZE"}), ":" + std::to_string(kLimit + kExtra) + "\r\n");
}

TEST_F(RespServerTest, EngineErrorsBecomeErrorReplies) {
  on_loop([this] { engine_.refuse_writes = true; });
  Client c(server_->port());
  c.expect(cmd({"SET", "k", "v"}), "-ERR writes refused by test\r\n");
  c.expect(cmd({"GET", "k"}), "$-1\r\n");
}

TEST_F(RespServerTest, QuorumLossRepliesStartWithUnavailable) {
  on_loop([this] {
    engine_.refuse_writes = true;
    engine_.refusal = no_quorum("no quorum; not executed: node 1 is recovering; retry later");
  });
  Client c(server_->port());
  c.expect(cmd({"SET", "k", "v"}),
           "-UNAVAILABLE no quorum; not executed: node 1 is recovering; retry later\r\n");
  on_loop([this] {
    engine_.refusal = outcome_unknown("outcome unknown (no quorum): no result within 5000 ms");
  });
  c.expect(cmd({"INCR", "n"}),
           "-UNAVAILABLE outcome unknown (no quorum): no result within 5000 ms\r\n");
  on_loop([this] { engine_.quorum = false; });
  c.send(cmd({"INFO"}));
  c.send("PING\r\n");
  const std::string info = c.read_through("+PONG\r\n");
  EXPECT_NE(info.find("maroon_quorum:0\r\n"), std::string::npos) << info;
}

TEST_F(RespServerTest, WriteCompletingAfterClientLeftIsDropped) {
  on_loop([this] { engine_.defer_writes = true; });
  {
    Client c(server_->port());
    c.send(cmd({"SET", "k", "v"}));
    ASSERT_TRUE(wait_until([this] { return engine_.pending() == 1; }));
    c.reset();  // the server sees ECONNRESET and drops the connection at once
  }
  ASSERT_TRUE(wait_until([this] { return server_->connection_count() == 0; }));
  on_loop([this] { engine_.complete_writes(); });
  Client d(server_->port());
  d.expect(cmd({"GET", "k"}), "$1\r\nv\r\n");
}

TEST_F(RespServerTest, WriteCompletingAfterStopIsDropped) {
  on_loop([this] { engine_.defer_writes = true; });
  Client c(server_->port());
  c.send(cmd({"SET", "k", "v"}));
  ASSERT_TRUE(wait_until([this] { return engine_.pending() == 1; }));
  on_loop([this] { server_->stop(); });
  on_loop([this] { engine_.complete_writes(); });
  EXPECT_EQ(c.read_until_closed(), "");
}

// ---- MULTI / EXEC / WATCH

TEST_F(RespServerTest, MultiExecRunsTheQueueAsOneTx) {
  Client c(server_->port());
  Client other(server_->port());
  c.expect(cmd({"MULTI"}), "+OK\r\n");
  c.expect(cmd({"INCR", "c"}), "+QUEUED\r\n");
  c.expect(cmd({"GET", "c"}), "+QUEUED\r\n");
  c.expect(cmd({"PING"}), "+QUEUED\r\n");
  c.expect(cmd({"SETNX", "c", "x"}), "+QUEUED\r\n");
  other.expect(cmd({"GET", "c"}), "$-1\r\n");  // nothing ran yet
  const uint64_t submitted = on_loop([this] { return engine_.submitted; });
  c.expect(cmd({"EXEC"}), "*4\r\n:1\r\n$1\r\n1\r\n+PONG\r\n:0\r\n");
  EXPECT_EQ(on_loop([this] { return engine_.submitted; }), submitted + 1);  // one tx
  other.expect(cmd({"GET", "c"}), "$1\r\n1\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"EXEC"}), "+OK\r\n*0\r\n");
}

TEST_F(RespServerTest, AQueueingErrorDiscardsTheWholeTx) {
  Client c(server_->port());
  c.expect(cmd({"MULTI"}), "+OK\r\n");
  c.expect(cmd({"INCR", "c"}), "+QUEUED\r\n");
  c.expect(cmd({"NOPE"}), "-ERR unknown command 'NOPE', with args beginning with: \r\n");
  c.expect(cmd({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  c.expect(cmd({"CONFIG", "GET", "save"}), "-ERR Command not allowed inside a transaction\r\n");
  c.expect(cmd({"EXEC"}), "-EXECABORT Transaction discarded because of previous errors.\r\n");
  c.expect(cmd({"GET", "c"}), "$-1\r\n");
  // Runtime errors are per command, as Redis: the others still run.
  c.expect(cmd({"SET", "s", "text"}), "+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"INCR", "s"}) + cmd({"SET", "k", "v", "BOGUS"}) +
               cmd({"INCR", "c"}) + cmd({"EXEC"}),
           "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n"
           "-ERR value is not an integer or out of range\r\n-ERR syntax error\r\n:1\r\n");
}

TEST_F(RespServerTest, MultiStateErrorsAsRedis) {
  Client c(server_->port());
  c.expect(cmd({"EXEC"}), "-ERR EXEC without MULTI\r\n");
  c.expect(cmd({"DISCARD"}), "-ERR DISCARD without MULTI\r\n");
  c.expect(cmd({"MULTI"}), "+OK\r\n");
  c.expect(cmd({"MULTI"}), "-ERR MULTI calls can not be nested\r\n");
  c.expect(cmd({"WATCH", "k"}), "-ERR WATCH inside MULTI is not allowed\r\n");
  c.expect(cmd({"SET", "k", "v"}), "+QUEUED\r\n");
  c.expect(cmd({"DISCARD"}), "+OK\r\n");
  c.expect(cmd({"GET", "k"}), "$-1\r\n");
  // Neither the nested MULTI nor the WATCH spoiled the tx.
  c.expect(cmd({"MULTI"}) + cmd({"MULTI"}) + cmd({"SET", "k", "v"}) + cmd({"EXEC"}),
           "+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n*1\r\n+OK\r\n");
}

TEST_F(RespServerTest, WatchedKeyWrittenMakesExecReturnNull) {
  Client c(server_->port());
  Client other(server_->port());
  c.expect(cmd({"SET", "k", "v"}), "+OK\r\n");
  c.expect(cmd({"WATCH", "k"}), "+OK\r\n");
  other.expect(cmd({"SET", "k", "v"}), "+OK\r\n");  // same value: still a write
  c.expect(cmd({"MULTI"}) + cmd({"INCR", "c"}) + cmd({"EXEC"}),
           "+OK\r\n+QUEUED\r\n*-1\r\n");
  c.expect(cmd({"GET", "c"}), "$-1\r\n");
  // EXEC cleared the watch: the next tx runs.
  c.expect(cmd({"MULTI"}) + cmd({"INCR", "c"}) + cmd({"EXEC"}), "+OK\r\n+QUEUED\r\n*1\r\n:1\r\n");
  // Unchanged watched keys: it runs. UNWATCH forgets them.
  c.expect(cmd({"WATCH", "k", "absent"}), "+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"INCR", "c"}) + cmd({"EXEC"}), "+OK\r\n+QUEUED\r\n*1\r\n:2\r\n");
  c.expect(cmd({"WATCH", "k"}), "+OK\r\n");
  other.expect(cmd({"DEL", "k"}) + cmd({"SET", "k", "v"}), ":1\r\n+OK\r\n");
  c.expect(cmd({"UNWATCH"}), "+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"INCR", "c"}) + cmd({"EXEC"}), "+OK\r\n+QUEUED\r\n*1\r\n:3\r\n");
  // Deleted and re-created counts as changed; DISCARD also unwatches.
  c.expect(cmd({"WATCH", "k"}), "+OK\r\n");
  other.expect(cmd({"DEL", "k"}) + cmd({"SET", "k", "v"}), ":1\r\n+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"INCR", "c"}) + cmd({"EXEC"}), "+OK\r\n+QUEUED\r\n*-1\r\n");
}

// FLUSHALL and FLUSHDB are one kv op through the order; FUNCTION FLUSH has
// nothing to flush. Redis's test runner sends both before its tests.
TEST_F(RespServerTest, FlushCommandsEmptyTheKeyspace) {
  Client c(server_->port());
  c.expect(cmd({"MSET", "a", "1", "b", "2"}), "+OK\r\n");
  const uint64_t submitted = on_loop([this] { return engine_.submitted; });
  c.expect(cmd({"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(on_loop([this] { return engine_.submitted; }), submitted + 1);
  c.expect(cmd({"DBSIZE"}), ":0\r\n");
  c.expect(cmd({"SET", "a", "1"}) + cmd({"FLUSHDB", "ASYNC"}) + cmd({"EXISTS", "a"}),
           "+OK\r\n+OK\r\n:0\r\n");
  c.expect(cmd({"flushall", "sync"}) + cmd({"flushdb"}), "+OK\r\n+OK\r\n");
  c.expect(cmd({"FLUSHALL", "LAZY"}), "-ERR syntax error\r\n");
  c.expect(cmd({"FLUSHDB", "ASYNC", "SYNC"}), "-ERR syntax error\r\n");
  c.expect(cmd({"FUNCTION", "FLUSH"}) + cmd({"function", "flush", "async"}), "+OK\r\n+OK\r\n");
  c.expect(cmd({"FUNCTION", "FLUSH", "NOW"}), "-ERR syntax error\r\n");
  c.expect(cmd({"FUNCTION", "LIST"}),
           "-ERR FUNCTION list is not supported: there are no functions\r\n");
  c.expect(cmd({"FUNCTION"}), "-ERR wrong number of arguments for 'function' command\r\n");
  // Inside MULTI it is queued and runs in the tx.
  c.expect(cmd({"MULTI"}) + cmd({"SET", "k", "v"}) + cmd({"FLUSHALL"}) + cmd({"GET", "k"}) +
               cmd({"EXEC"}),
           "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n+OK\r\n$-1\r\n");
}

// Redis's "FLUSHALL is able to touch the watched keys" and "FLUSHALL does not
// touch non affected keys" (tests/unit/multi.tcl).
TEST_F(RespServerTest, FlushTouchesOnlyWatchedKeysThatExisted) {
  Client c(server_->port());
  c.expect(cmd({"SET", "x", "30"}) + cmd({"SET", "other", "1"}), "+OK\r\n+OK\r\n");
  c.expect(cmd({"WATCH", "x"}) + cmd({"FLUSHALL"}), "+OK\r\n+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"PING"}) + cmd({"EXEC"}), "+OK\r\n+QUEUED\r\n*-1\r\n");
  c.expect(cmd({"SET", "other", "1"}), "+OK\r\n");
  c.expect(cmd({"DEL", "x"}) + cmd({"WATCH", "x"}) + cmd({"FLUSHDB"}), ":0\r\n+OK\r\n+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"PING"}) + cmd({"EXEC"}), "+OK\r\n+QUEUED\r\n*1\r\n+PONG\r\n");
}

// WATCH, MULTI and EXEC pipelined behind a write the engine holds: the EXEC
// waits for the WATCH's stamps, and a write by another client in between
// still aborts it.
TEST_F(RespServerTest, PipelinedWatchExecWaitsForTheWatch) {
  on_loop([this] { engine_.defer_writes = true; });
  Client c(server_->port());
  c.send(cmd({"SET", "x", "1"}) + cmd({"WATCH", "k"}) + cmd({"MULTI"}) + cmd({"INCR", "c"}) +
         cmd({"EXEC"}) + cmd({"GET", "c"}));
  ASSERT_TRUE(wait_until([this] { return commands_on_loop() == 6; }));
  EXPECT_EQ(on_loop([this] { return engine_.pending(); }), 1u);  // only the SET
  ASSERT_TRUE(wait_until([this] {
    engine_.complete_writes();
    return engine_.pending() == 0 && engine_.submitted == 2;
  }));
  const std::string want = "+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n:1\r\n$1\r\n1\r\n";
  EXPECT_EQ(c.read(want.size()), want);
}

// ---- CLIENT and HELLO

TEST_F(RespServerTest, ClientNameIdInfoAndList) {
  Client c(server_->port());
  Client other(server_->port());
  c.expect(cmd({"CLIENT", "GETNAME"}), "$-1\r\n");
  c.expect(cmd({"CLIENT", "SETNAME", "app"}), "+OK\r\n");
  c.expect(cmd({"CLIENT", "GETNAME"}), "$3\r\napp\r\n");
  c.expect(cmd({"CLIENT", "SETNAME", "my app"}),
           "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  c.expect(cmd({"CLIENT", "SETINFO", "lib-name", "redis-py"}), "+OK\r\n");
  c.expect(cmd({"CLIENT", "SETINFO", "color", "red"}), "-ERR Unrecognized option 'color'\r\n");
  c.expect(cmd({"CLIENT", "NO-EVICT", "on"}), "+OK\r\n");
  c.expect(cmd({"CLIENT", "NO-TOUCH", "maybe"}), "-ERR syntax error\r\n");
  c.expect(cmd({"CLIENT", "FOOBAR"}), "-ERR unknown subcommand 'FOOBAR'. Try CLIENT HELP.\r\n");
  c.expect(cmd({"CLIENT", "SETNAME"}),
           "-ERR wrong number of arguments for 'client|setname' command\r\n");
  c.expect(cmd({"CLIENT", "ID"}), ":1\r\n");  // the server's first connection
  c.send(cmd({"CLIENT", "LIST"}) + cmd({"PING"}));
  const std::string list = c.read_through("+PONG\r\n");
  EXPECT_NE(list.find("name=app "), std::string::npos) << list;
  EXPECT_NE(list.find(" lib-name=redis-py "), std::string::npos) << list;
  EXPECT_EQ(std::count(list.begin(), list.end(), '\n'), 2 + 3) << list;  // two lines in a bulk, +PONG
  EXPECT_NE(list.find(" db=0 "), std::string::npos);
}

TEST_F(RespServerTest, ClientKillClosesTheOtherConnection) {
  Client c(server_->port());
  Client victim(server_->port());
  victim.send(cmd({"CLIENT", "ID"}));
  std::string id = victim.read(4);  // ":<n>\r" at least
  while (id.back() != '\n') id += victim.read(1);
  const std::string victim_id = id.substr(1, id.size() - 3);
  c.expect(cmd({"CLIENT", "KILL", "ID", "999999"}), ":0\r\n");
  c.expect(cmd({"CLIENT", "KILL", "10.0.0.1:1"}), "-ERR No such client\r\n");
  c.expect(cmd({"CLIENT", "KILL", "ID", "x"}), "-ERR client-id should be greater than 0\r\n");
  c.expect(cmd({"CLIENT", "KILL", "ID", victim_id}), ":1\r\n");
  EXPECT_EQ(victim.read_until_closed(), "");
  ASSERT_TRUE(wait_until([this] { return server_->connection_count() == 1; }));
  c.expect(cmd({"PING"}), "+PONG\r\n");
}

TEST_F(RespServerTest, ClientReplyOffOnAndSkip) {
  Client c(server_->port());
  c.send(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"SET", "k", "v"}) + cmd({"GET", "k"}) +
         cmd({"NOPE"}) + cmd({"CLIENT", "REPLY", "ON"}));
  EXPECT_EQ(c.read(5), "+OK\r\n");  // only ON answers
  c.expect(cmd({"CLIENT", "REPLY", "SKIP"}) + cmd({"GET", "k"}) + cmd({"PING"}), "+PONG\r\n");
  c.expect(cmd({"CLIENT", "REPLY", "MAYBE"}), "-ERR syntax error\r\n");
}

TEST_F(RespServerTest, Hello3SwitchesToResp3) {
  Client c(server_->port());
  const std::string hello3_prefix =
      "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$12\r\n7.0.0-maroon\r\n"
      "$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:";
  c.send(cmd({"HELLO", "3", "AUTH", "default", "anything", "SETNAME", "node-redis"}));
  EXPECT_EQ(c.read(hello3_prefix.size()), hello3_prefix);
  c.read_through("$7\r\nmodules\r\n*0\r\n");
  c.expect(cmd({"GET", "missing"}), "_\r\n");
  c.expect(cmd({"MGET", "missing"}), "*1\r\n_\r\n");
  c.expect(cmd({"CONFIG", "GET", "save"}), "%1\r\n$4\r\nsave\r\n$0\r\n\r\n");
  c.expect(cmd({"CLIENT", "GETNAME"}), "$10\r\nnode-redis\r\n");
  c.expect(cmd({"HELLO", "3", "AUTH", "bob", "pw"}),
           "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  c.expect(cmd({"HELLO", "3", "SETNAME", "a b"}),
           "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  c.expect(cmd({"HELLO", "3", "BOGUS"}), "-ERR Syntax error in HELLO option 'BOGUS'\r\n");
  c.expect(cmd({"WATCH", "k"}) + cmd({"SET", "k", "1"}), "+OK\r\n+OK\r\n");
  c.expect(cmd({"MULTI"}) + cmd({"EXEC"}), "+OK\r\n_\r\n");  // aborted EXEC: RESP3 null
  const std::string hello2_prefix = "*14\r\n$6\r\nserver\r\n";
  c.send(cmd({"HELLO", "2"}));
  EXPECT_EQ(c.read(hello2_prefix.size()), hello2_prefix);
  c.read_through("$7\r\nmodules\r\n*0\r\n");
  c.expect(cmd({"GET", "missing"}), "$-1\r\n");
}

TEST_F(RespServerTest, PortInUseIsAStatus) {
  const Status s = on_loop([this] {
    RespServer second(io_, engine_, "127.0.0.1", server_->port(), *resources_);
    return second.start();
  });
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("bind"), std::string::npos) << s.message();
}

// ---- credentials (ClientSecurity::users)

class RespAuthTest : public RespServerTest {
 protected:
  ClientSecurity security() const override { return two_test_users(); }
  uint64_t auth_failures() { return metric("maroon_client_auth_failures_total"); }
};

TEST_F(RespAuthTest, NothingRunsBeforeLogin) {
  Client c(server_->port());
  const std::string noauth = "-NOAUTH Authentication required.\r\n";
  c.expect(cmd({"SET", "k", "v"}), noauth);
  c.expect(cmd({"GET", "k"}), noauth);
  c.expect(cmd({"PING"}), noauth);
  c.expect(cmd({"NOSUCHCOMMAND"}), noauth);  // says nothing about which commands exist
  c.expect(cmd({"MULTI"}), noauth);
  c.expect(cmd({"CLIENT", "LIST"}), noauth);
  c.send(cmd({"HELLO", "3"}));
  EXPECT_EQ(c.read_through("\r\n").rfind("-NOAUTH HELLO must be called", 0), 0u);
  EXPECT_EQ(on_loop([this] { return engine_.submitted; }), 0u);
  c.expect(cmd({"QUIT"}), "+OK\r\n");
}

TEST_F(RespAuthTest, WrongCredentialsAreRefusedAndCounted) {
  Client c(server_->port());
  const std::string wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
  const uint64_t before = auth_failures();
  c.expect(cmd({"AUTH", "writer", kReaderPassword}), wrongpass);  // another user's password
  c.expect(cmd({"AUTH", "nobody", kWriterPassword}), wrongpass);
  c.expect(cmd({"AUTH", "wrong-password"}), wrongpass);
  c.expect(cmd({"HELLO", "3", "AUTH", "writer", "nope"}), wrongpass);
  c.expect(cmd({"AUTH", "a", "b", "c"}), "-ERR syntax error\r\n");
  EXPECT_EQ(auth_failures(), before + 4);
  c.expect(cmd({"GET", "k"}), "-NOAUTH Authentication required.\r\n");
}

TEST_F(RespAuthTest, AReadWriteUserMayDoEverything) {
  Client c(server_->port());
  c.expect(cmd({"AUTH", "writer", kWriterPassword}), "+OK\r\n");
  c.expect(cmd({"SET", "k", "v"}), "+OK\r\n");
  c.expect(cmd({"GET", "k"}), "$1\r\nv\r\n");
  c.send(cmd({"CLIENT", "INFO"}));
  EXPECT_NE(c.read_through("\n\r\n").find(" user=writer "), std::string::npos);
  // A bare password logs in its user (a password is also a token).
  Client d(server_->port());
  d.expect(cmd({"AUTH", kWriterPassword}), "+OK\r\n");
  d.expect(cmd({"INCR", "n"}), ":1\r\n");
}

TEST_F(RespAuthTest, AReadOnlyUserReadsButCannotWrite) {
  Client w(server_->port());
  w.expect(cmd({"AUTH", "writer", kWriterPassword}), "+OK\r\n");
  w.expect(cmd({"SET", "k", "v"}), "+OK\r\n");
  Client r(server_->port());
  r.expect(cmd({"AUTH", "reader", kReaderPassword}), "+OK\r\n");
  r.expect(cmd({"GET", "k"}), "$1\r\nv\r\n");
  r.expect(cmd({"MGET", "k", "x"}), "*2\r\n$1\r\nv\r\n$-1\r\n");
  const uint64_t submitted = on_loop([this] { return engine_.submitted; });
  for (const auto& args : std::vector<std::vector<std::string_view>>{
           {"SET", "k", "w"}, {"DEL", "k"}, {"INCR", "n"}, {"MSET", "a", "1"}, {"FLUSHALL"}}) {
    std::string name(args[0]);
    for (char& ch : name) ch = static_cast<char>(std::tolower(ch));
    std::string request = "*" + std::to_string(args.size()) + "\r\n";
    for (std::string_view a : args) request += bulk(a);
    r.expect(request,
             "-NOPERM this user has no permissions to run the '" + name + "' command\r\n");
  }
  r.expect(cmd({"CLIENT", "KILL", "ID", "1"}),
           "-NOPERM this user has no permissions to run the 'client|kill' command\r\n");
  // Inside MULTI the refusal fails the EXEC, as Redis's ACL does.
  r.expect(cmd({"MULTI"}), "+OK\r\n");
  r.expect(cmd({"GET", "k"}), "+QUEUED\r\n");
  r.expect(cmd({"SET", "k", "w"}),
           "-NOPERM this user has no permissions to run the 'set' command\r\n");
  r.expect(cmd({"EXEC"}),
           "-EXECABORT Transaction discarded because of previous errors.\r\n");
  EXPECT_EQ(on_loop([this] { return engine_.submitted; }), submitted);
  r.expect(cmd({"GET", "k"}), "$1\r\nv\r\n");
  // Logging in as the writer on the same connection grants writes.
  r.send(cmd({"HELLO", "2", "AUTH", "writer", kWriterPassword}));
  EXPECT_EQ(r.read(4), "*14\r");
  r.read_through("master\r\n$7\r\nmodules\r\n*0\r\n");
  r.expect(cmd({"SET", "k", "w"}), "+OK\r\n");
}

TEST_F(RespAuthTest, ClientKillUserMatchesWhoLoggedIn) {
  Client w(server_->port());
  w.expect(cmd({"AUTH", "writer", kWriterPassword}), "+OK\r\n");
  Client r(server_->port());
  r.expect(cmd({"AUTH", "reader", kReaderPassword}), "+OK\r\n");
  Client anonymous(server_->port());
  anonymous.expect(cmd({"PING"}), "-NOAUTH Authentication required.\r\n");
  w.expect(cmd({"CLIENT", "KILL", "USER", "default"}), ":0\r\n");
  w.expect(cmd({"CLIENT", "KILL", "USER", "reader"}), ":1\r\n");
  EXPECT_TRUE(wait_until([this] { return server_->connection_count() == 2; }));
  r.send(cmd({"PING"}));
  EXPECT_EQ(r.read(1), "");  // closed
  w.expect(cmd({"PING"}), "+PONG\r\n");
}

TEST_F(RespServerTest, WithoutUsersAuthBehavesAsRedisOutOfTheBox) {
  Client c(server_->port());
  c.expect(cmd({"AUTH", "pw"}),
           "-ERR AUTH <password> called without any password configured for the default user. "
           "Are you sure your configuration is correct?\r\n");
  c.expect(cmd({"AUTH", "default", "anything"}), "+OK\r\n");
  c.expect(cmd({"AUTH", "alice", "anything"}),
           "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  c.expect(cmd({"SET", "k", "v"}), "+OK\r\n");
}

}  // namespace
}  // namespace maroon::server
