// hiredis (Debian's libhiredis-dev), the C client library, driven from C++ through
// its plain blocking API: connect, SET/GET, a pipelined batch through
// redisAppendCommand, MULTI/EXEC, DISCARD and a transaction aborted at queue
// time. Effects are read back over a second connection.
//
// Run through run_with_server.py, which gives the server's port as
// TEST_RESP_PORT. Exits 0 when every check passed.
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace {

int passes = 0;
int failures = 0;

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;

void check(bool ok, const std::string& what) {
  std::printf("%s - %s\n", ok ? "ok" : "not ok", what.c_str());
  if (ok) {
    passes++;
  } else {
    failures++;
  }
}

// A reply lost to a connection error ends the run: later checks would only
// repeat it.
Reply must(redisContext* c, void* reply, const std::string& what) {
  if (reply == nullptr) {
    std::printf("not ok - %s: connection error: %s\n", what.c_str(), c->errstr);
    std::exit(1);
  }
  return Reply(static_cast<redisReply*>(reply));
}

Reply next_reply(redisContext* c, const std::string& what) {
  void* reply = nullptr;
  if (redisGetReply(c, &reply) != REDIS_OK) reply = nullptr;
  return must(c, reply, what);
}

std::string_view text(const redisReply* r) { return std::string_view(r->str, r->len); }

bool is_status(const redisReply* r, std::string_view s) {
  return r->type == REDIS_REPLY_STATUS && text(r) == s;
}
bool is_string(const redisReply* r, std::string_view s) {
  return r->type == REDIS_REPLY_STRING && text(r) == s;
}
bool is_integer(const redisReply* r, long long v) {
  return r->type == REDIS_REPLY_INTEGER && r->integer == v;
}

std::string describe(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      return "+" + std::string(text(r));
    case REDIS_REPLY_ERROR:
      return "-" + std::string(text(r));
    case REDIS_REPLY_STRING:
      if (r->len > 40) return "a string of " + std::to_string(r->len) + " bytes";
      return "\"" + std::string(text(r)) + "\"";
    case REDIS_REPLY_INTEGER:
      return ":" + std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ARRAY:
      return "array of " + std::to_string(r->elements);
    default:
      return "reply type " + std::to_string(r->type);
  }
}

Context connect(int port) {
  Context c(redisConnect("127.0.0.1", port));
  if (c == nullptr || c->err) {
    std::printf("not ok - connect to 127.0.0.1:%d: %s\n", port, c ? c->errstr : "out of memory");
    std::exit(1);
  }
  // Only a bound on how long a reply may take, so that a server that never
  // answers fails the run instead of hanging it; nothing sent changes.
  const timeval reply_timeout{.tv_sec = 30, .tv_usec = 0};
  if (redisSetTimeout(c.get(), reply_timeout) != REDIS_OK) {
    std::printf("not ok - set the reply timeout: %s\n", c->errstr);
    std::exit(1);
  }
  return c;
}

Reply command(redisContext* c, const char* format, const std::string& what) {
  return must(c, redisCommand(c, format), what);
}

}  // namespace

int main() {
  const char* port_env = std::getenv("TEST_RESP_PORT");
  if (port_env == nullptr) {
    std::printf("TEST_RESP_PORT is not set: run through tests/clients/run_with_server.py\n");
    return 2;
  }
  const int port = std::atoi(port_env);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // every check is seen even if the run is killed
  Context c = connect(port);
  Context other = connect(port);

  Reply r = command(c.get(), "PING", "PING");
  check(is_status(r.get(), "PONG"), "PING answers +PONG, got " + describe(r.get()));

  const std::string value(1000, 'v');
  r = must(c.get(), redisCommand(c.get(), "SET %s %b", "h:a", value.data(), value.size()), "SET");
  check(is_status(r.get(), "OK"), "SET answers +OK, got " + describe(r.get()));
  r = command(other.get(), "GET h:a", "GET");
  check(is_string(r.get(), value),
        "GET on another connection returns the value, got " + describe(r.get()));

  // A pipelined batch: everything is written before the first reply is read.
  constexpr int kIncrs = 200;
  redisAppendCommand(c.get(), "SET h:p 0");
  for (int i = 0; i < kIncrs; i++) redisAppendCommand(c.get(), "INCR h:p");
  redisAppendCommand(c.get(), "GET h:p");
  r = next_reply(c.get(), "pipelined SET");
  check(is_status(r.get(), "OK"), "pipelined SET answers +OK, got " + describe(r.get()));
  bool in_order = true;
  for (int i = 1; i <= kIncrs; i++) {
    r = next_reply(c.get(), "pipelined INCR");
    in_order = in_order && is_integer(r.get(), i);
  }
  check(in_order, "pipelined INCRs answer 1.." + std::to_string(kIncrs) + " in order");
  r = next_reply(c.get(), "pipelined GET");
  check(is_string(r.get(), std::to_string(kIncrs)),
        "pipelined GET sees every INCR, got " + describe(r.get()));

  // MULTI/EXEC: commands are queued, then run together once.
  r = command(c.get(), "MULTI", "MULTI");
  check(is_status(r.get(), "OK"), "MULTI answers +OK, got " + describe(r.get()));
  r = command(c.get(), "INCR h:m", "queued INCR");
  check(is_status(r.get(), "QUEUED"),
        "INCR inside MULTI answers +QUEUED, got " + describe(r.get()));
  r = command(c.get(), "INCRBY h:m 5", "queued INCRBY");
  check(is_status(r.get(), "QUEUED"),
        "INCRBY inside MULTI answers +QUEUED, got " + describe(r.get()));
  r = command(other.get(), "EXISTS h:m", "EXISTS before EXEC");
  check(is_integer(r.get(), 0), "nothing is applied before EXEC, got " + describe(r.get()));
  r = command(c.get(), "EXEC", "EXEC");
  check(r->type == REDIS_REPLY_ARRAY && r->elements == 2 && is_integer(r->element[0], 1) &&
            is_integer(r->element[1], 6),
        "EXEC answers [1, 6], got " + describe(r.get()));
  r = command(other.get(), "GET h:m", "GET after EXEC");
  check(is_string(r.get(), "6"), "EXEC applied the transaction once, got " + describe(r.get()));

  // DISCARD drops the queue.
  r = command(c.get(), "MULTI", "MULTI");
  check(is_status(r.get(), "OK"), "MULTI answers +OK, got " + describe(r.get()));
  r = command(c.get(), "SET h:d x", "queued SET");
  check(is_status(r.get(), "QUEUED"), "SET inside MULTI answers +QUEUED, got " + describe(r.get()));
  r = command(c.get(), "DISCARD", "DISCARD");
  check(is_status(r.get(), "OK"), "DISCARD answers +OK, got " + describe(r.get()));
  r = command(other.get(), "EXISTS h:d", "EXISTS after DISCARD");
  check(is_integer(r.get(), 0), "DISCARD applied nothing, got " + describe(r.get()));

  // A command refused while queueing aborts the whole transaction.
  r = command(c.get(), "MULTI", "MULTI");
  check(is_status(r.get(), "OK"), "MULTI answers +OK, got " + describe(r.get()));
  r = command(c.get(), "SET h:e x", "queued SET");
  check(is_status(r.get(), "QUEUED"), "SET inside MULTI answers +QUEUED, got " + describe(r.get()));
  r = command(c.get(), "INCR", "INCR without a key");
  check(r->type == REDIS_REPLY_ERROR,
        "INCR without a key is refused while queueing, got " + describe(r.get()));
  r = command(c.get(), "EXEC", "EXEC");
  check(r->type == REDIS_REPLY_ERROR && text(r.get()).starts_with("EXECABORT"),
        "EXEC answers -EXECABORT, got " + describe(r.get()));
  r = command(other.get(), "EXISTS h:e", "EXISTS after EXECABORT");
  check(is_integer(r.get(), 0),
        "the aborted transaction applied nothing, got " + describe(r.get()));
  r = command(c.get(), "PING", "PING after EXECABORT");
  check(is_status(r.get(), "PONG"), "the connection left MULTI state, got " + describe(r.get()));

  std::printf("%d passed, %d failed\n", passes, failures);
  return failures == 0 ? 0 : 1;
}
