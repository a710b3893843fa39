// Quorum loss against real processes (docs/cluster.md, "When the cluster has
// no quorum"): a 3-node cluster on loopback loses 2 nodes (SIGKILL, by the
// pids this test started); the survivor must answer RESP, HTTP and native
// requests within unavailable_after_ms (+ slack) with the unavailable error,
// and say "quorum": false in /v1/status; requests arriving once it knows are
// refused at once ("no quorum; not executed"). The nodes are restarted and
// writes must succeed again with no manual action.
//
// Every wait is on a condition with a deadline; nothing sleeps to synchronize.
//
//   maroon-quorum-test --maroon BUILD/src/cli/maroon --dir DIR
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/kv/kv_op.h"
#include "client/native_client.h"
#include "cluster/config.h"
#include "fd.h"
#include "local_cluster.h"

namespace maroon::quorum_test {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using chaos::wait_fd;
using std::chrono::milliseconds;

// Short, so the test is quick; still the smallest the config allows with a
// 10 ms tick (unavailable_after_ms_min: 2000).
constexpr uint64_t kUnavailableAfterMs = 2000;
// What the bound may be exceeded by: a tick, the loop, a loaded machine.
constexpr milliseconds kSlack{1500};
constexpr milliseconds kStartTimeout{90000};
constexpr milliseconds kQuorumTimeout{60000};
constexpr milliseconds kPollPause{20};  // between two probes of a condition
constexpr milliseconds kIoTimeout{15000};

int failures = 0;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      failures++;                                                               \
      std::fprintf(stderr, "FAILED %s:%d: %s: %s\n", __FILE__, __LINE__, #cond, \
                   fmt::format(__VA_ARGS__).c_str());                           \
    }                                                                           \
  } while (0)

void note(const std::string& line) {
  std::printf("quorum-test: %s\n", line.c_str());
  std::fflush(stdout);
}

int64_t ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
}

// --- a blocking TCP exchange with one deadline -----------------------------

class Conn {
 public:
  // Connects to 127.0.0.1:port.
  static Result<Conn> open(uint16_t port, Clock::time_point deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return unavailable(std::string("socket: ") + std::strerror(errno));
    Conn c(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (errno != EINPROGRESS) return unavailable(std::string("connect: ") + std::strerror(errno));
      if (!wait_fd(fd, POLLOUT, deadline)) return unavailable("connect: timed out");
      int so_error = 0;
      socklen_t len = sizeof so_error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      if (so_error != 0) return unavailable(std::string("connect: ") + std::strerror(so_error));
    }
    return c;
  }
  Conn(Conn&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Conn& operator=(Conn&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status send_all(std::string_view bytes, Clock::time_point deadline) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!wait_fd(fd_, POLLOUT, deadline)) return unavailable("send: timed out");
      } else {
        return unavailable(std::string("send: ") + std::strerror(errno));
      }
    }
    return Status::ok();
  }

  // Reads until `complete(buffer)` or EOF; an error if neither by the deadline.
  Result<std::string> read_until(const std::function<bool(const std::string&)>& complete,
                                 Clock::time_point deadline) {
    char chunk[16384];
    for (;;) {
      if (complete(buf_)) return std::exchange(buf_, {});
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
        if (buf_.size() > (1u << 20)) return unavailable("reply too large");
      } else if (n == 0) {
        return std::exchange(buf_, {});
      } else if (errno == EAGAIN || errno == EINTR) {
        if (!wait_fd(fd_, POLLIN, deadline)) return unavailable("no reply in time");
      } else {
        return unavailable(std::string("recv: ") + std::strerror(errno));
      }
    }
  }

 private:
  explicit Conn(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::string buf_;
};

// --- the three protocols ----------------------------------------------------

struct Answer {
  bool answered = false;  // false: no answer by the deadline, or a broken link
  int64_t ms = 0;         // from sending the request to the answer
  std::string text;       // RESP line, HTTP status + body, native code + message
  // The answer's verdict.
  bool ok = false;
  bool no_quorum = false;        // refused: not executed
  bool outcome_unknown = false;  // sent, no result in time
};

std::string resp_command(const std::vector<std::string>& args) {
  std::string out = fmt::format("*{}\r\n", args.size());
  for (const std::string& a : args) out += fmt::format("${}\r\n{}\r\n", a.size(), a);
  return out;
}

// One RESP command whose reply is a single line (+OK, :n, -ERR ...).
Answer resp_call(Conn& c, const std::vector<std::string>& args) {
  Answer a;
  const auto t0 = Clock::now();
  const auto deadline = t0 + kIoTimeout;
  if (Status s = c.send_all(resp_command(args), deadline); !s) {
    a.text = s.to_string();
    return a;
  }
  auto line = c.read_until([](const std::string& b) { return b.find("\r\n") != std::string::npos; },
                           deadline);
  a.ms = ms_since(t0);
  if (!line.is_ok() || line->find("\r\n") == std::string::npos) {
    a.text = line.is_ok() ? "connection closed" : line.status().to_string();
    return a;
  }
  a.answered = true;
  a.text = line->substr(0, line->find("\r\n"));
  a.ok = a.text[0] == '+' || a.text[0] == ':';
  a.no_quorum = a.text.starts_with("-UNAVAILABLE no quorum; not executed");
  a.outcome_unknown = a.text.starts_with("-UNAVAILABLE outcome unknown");
  return a;
}

// One HTTP request on a fresh connection (Connection: close).
Answer http_call(uint16_t port, std::string_view method, std::string_view target,
                 std::string_view body) {
  Answer a;
  const auto t0 = Clock::now();
  const auto deadline = t0 + kIoTimeout;
  auto c = Conn::open(port, deadline);
  if (!c.is_ok()) {
    a.text = c.status().to_string();
    return a;
  }
  std::string req = fmt::format(
      "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
      method, target, body.size(), body);
  if (Status s = c->send_all(req, deadline); !s) {
    a.text = s.to_string();
    return a;
  }
  auto all = c->read_until([](const std::string&) { return false; }, deadline);
  a.ms = ms_since(t0);
  if (!all.is_ok() || !all->starts_with("HTTP/1.1 ") ||
      all->find("\r\n\r\n") == std::string::npos) {
    a.text = all.is_ok() ? "not an HTTP response: " + *all : all.status().to_string();
    return a;
  }
  a.answered = true;
  const int status = std::atoi(all->c_str() + 9);
  const std::string body_text = all->substr(all->find("\r\n\r\n") + 4);
  a.text = fmt::format("HTTP {} {}", status, body_text);
  a.ok = status == 200;
  if (status == 503) {
    boost::system::error_code ec;
    json::value v = json::parse(body_text, ec);
    if (!ec && v.is_object()) {
      const json::value* code = v.as_object().if_contains("code");
      const json::value* outcome = v.as_object().if_contains("outcome");
      const bool has_outcome = outcome != nullptr && outcome->is_string();
      if (code != nullptr && code->is_string()) {
        a.no_quorum = code->get_string() == "no quorum" && has_outcome &&
                      outcome->get_string() == "not executed";
        a.outcome_unknown = code->get_string() == "outcome unknown" && has_outcome &&
                            outcome->get_string() == "unknown";
      }
    }
  }
  return a;
}

Answer native_call(client::Client& c, const kv::Op& op) {
  Answer a;
  const auto t0 = Clock::now();
  Result<client::Response> r = c.call_raw(AppId::kKv, kv::encode_op(op), false);
  a.ms = ms_since(t0);
  if (!r.is_ok()) {
    a.text = r.status().to_string();
    return a;
  }
  a.answered = true;
  a.text = fmt::format("code {} ({}): {}", static_cast<int>(r->code), code_name(r->code), r->error);
  a.ok = r->code == Code::kOk;
  a.no_quorum = r->no_quorum();
  a.outcome_unknown = r->code == Code::kOutcomeUnknown;
  return a;
}

kv::Op set_op(const std::string& key, const std::string& value) {
  kv::Op op;
  op.type = kv::OpType::kSet;
  op.keys = {key};
  op.values = {value};
  return op;
}

// --- status and metrics -------------------------------------------------------

struct QuorumStatus {
  bool answered = false;  // a status JSON with "quorum" and "serving"
  bool serving = false;
  bool quorum = false;
  std::string reason;
  std::string role;
};

QuorumStatus quorum_status(uint16_t http_port) {
  QuorumStatus q;
  Answer a = http_call(http_port, "GET", "/v1/status", "");
  if (!a.answered) return q;
  const size_t brace = a.text.find('{');
  if (brace == std::string::npos) return q;
  boost::system::error_code ec;
  json::value v = json::parse(std::string_view(a.text).substr(brace), ec);
  if (ec || !v.is_object()) return q;
  const json::object& o = v.as_object();
  const json::value* quorum = o.if_contains("quorum");
  const json::value* reason = o.if_contains("unavailable_reason");
  const json::value* role = o.if_contains("role");
  const json::value* serving = o.if_contains("serving");
  if (quorum == nullptr || !quorum->is_bool() || serving == nullptr || !serving->is_bool()) {
    return q;
  }
  q.answered = true;
  q.serving = serving->get_bool();
  q.quorum = quorum->get_bool();
  if (reason != nullptr && reason->is_string()) q.reason = std::string(reason->get_string());
  if (role != nullptr && role->is_string()) q.role = std::string(role->get_string());
  return q;
}

// Probes `cond` until it holds or `timeout` passes.
bool wait_for(const std::function<bool()>& cond, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollPause);  // a probe interval, not synchronization
  }
}

// A metric's value from /metrics; nullopt if absent.
std::optional<int64_t> metric(uint16_t http_port, std::string_view name) {
  Answer a = http_call(http_port, "GET", "/metrics", "");
  if (!a.answered) return std::nullopt;
  const std::string needle = "\n" + std::string(name) + " ";
  size_t at = a.text.find(needle);
  if (at == std::string::npos) return std::nullopt;
  return std::atoll(a.text.c_str() + at + needle.size());
}

// `maroon status --config FILE`: exit status and output.
std::pair<int, std::string> run_status(const std::string& maroon, const fs::path& config) {
  const std::string cmd = fmt::format("'{}' status --config '{}' 2>&1", maroon, config.string());
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Checks an answer given while the cluster has no quorum.
void check_unavailable(const std::string& what, const Answer& a, bool must_be_refused) {
  CHECK(a.answered, "{}: no answer ({}) after {} ms", what, a.text, a.ms);
  if (!a.answered) return;
  CHECK(!a.ok, "{}: succeeded without a quorum: {}", what, a.text);
  CHECK(a.no_quorum || a.outcome_unknown, "{}: not the unavailable error: {}", what, a.text);
  CHECK(a.text.find("no quorum") != std::string::npos, "{}: does not say no quorum: {}", what,
        a.text);
  CHECK(a.ms <= static_cast<int64_t>(kUnavailableAfterMs) + kSlack.count(),
        "{}: answered after {} ms; the bound is {} ms + {} ms slack", what, a.ms,
        kUnavailableAfterMs, kSlack.count());
  if (must_be_refused) {
    CHECK(a.no_quorum, "{}: expected the fast refusal (no quorum; not executed): {}", what, a.text);
  }
  note(fmt::format("{}: {} ms: {}", what, a.ms, a.text.substr(0, 200)));
}

// One loss and return of the quorum: keeps the node whose role is
// `survivor_role` ("backup" or "primary"), SIGKILLs the other two, checks the
// survivor's answers and status, restarts them and checks that writes work
// again. Returns why it could not go on (checks that fail only count).
std::string lose_and_regain_quorum(chaos::LocalCluster& cl, const cluster::ClusterConfig& config_in,
                                   const std::string& maroon, const std::string& survivor_role,
                                   const std::string& tag) {
  const cluster::ClusterConfig* config = &config_in;
  size_t survivor = cl.size();
  wait_for(
      [&] {
        for (size_t i = 0; i < cl.size(); i++) {
          QuorumStatus q = quorum_status(cl.node(i).http_port);
          if (q.serving && q.quorum && q.role == survivor_role) survivor = i;
        }
        return survivor != cl.size();
      },
      kQuorumTimeout);
  if (survivor == cl.size()) return "no node reports itself a " + survivor_role + " with a quorum";
  const chaos::NodeProc& s = cl.node(survivor);
  const uint16_t resp_port = [&] {
    for (const cluster::NodeEntry& n : config->nodes) {
      if (n.id == s.id) return n.resp_port;
    }
    return uint16_t{0};
  }();
  note(fmt::format("round '{}': the survivor is node {}, a {} (http {}, resp {}, native {})", tag,
                   s.id, survivor_role, s.http_port, resp_port, s.native_port));

  // A write on every protocol works before the loss.
  auto resp = Conn::open(resp_port, Clock::now() + kIoTimeout);
  if (!resp.is_ok()) return "RESP connect: " + resp.status().to_string();
  client::Options copts;
  copts.call_timeout = kIoTimeout;
  copts.client_name = "quorum-test";
  auto native = client::Client::connect("127.0.0.1", s.native_port, copts);
  if (!native.is_ok()) return "native connect: " + native.status().to_string();
  {
    // (Retried: after an earlier round a gateway may still be leasing.)
    Answer a;
    CHECK(wait_for(
              [&] {
                a = resp_call(*resp, {"SET", tag + "-before-resp", "1"});
                return a.ok;
              },
              kQuorumTimeout),
          "{}: RESP write before the loss: {}", tag, a.text);
    CHECK(wait_for(
              [&] {
                a = http_call(s.http_port, "PUT", "/v1/kv/" + tag + "-before-http", "1");
                return a.ok;
              },
              kQuorumTimeout),
          "{}: HTTP write before the loss: {}", tag, a.text);
    CHECK(wait_for(
              [&] {
                a = native_call(*native, set_op(tag + "-before-native", "1"));
                return a.ok;
              },
              kQuorumTimeout),
          "{}: native write before the loss: {}", tag, a.text);
  }
  const int64_t unavailable_before =
      metric(s.http_port, "maroon_requests_unavailable_total").value_or(-1);
  const int64_t unknown_before =
      metric(s.http_port, "maroon_requests_outcome_unknown_total").value_or(-1);
  CHECK(unavailable_before >= 0 && unknown_before >= 0, "{}: metrics missing", tag);

  // Two of three nodes die.
  for (size_t i = 0; i < cl.size(); i++) {
    if (i != survivor) {
      note(fmt::format("SIGKILL node {} (pid {})", cl.node(i).id, cl.node(i).pid));
      cl.kill(i);
    }
  }

  // Requests sent right away: the survivor may not know yet; each must be
  // answered within the bound, all three at once.
  {
    auto r = std::async(std::launch::async, [&] {
      return resp_call(*resp, {"SET", tag + "-lost-resp", "1"});
    });
    auto h = std::async(std::launch::async, [&] {
      return http_call(s.http_port, "PUT", "/v1/kv/" + tag + "-lost-http", "1");
    });
    auto n = std::async(std::launch::async,
                        [&] { return native_call(*native, set_op(tag + "-lost-native", "1")); });
    check_unavailable(tag + ": RESP SET in flight at the loss", r.get(), false);
    check_unavailable(tag + ": HTTP PUT in flight at the loss", h.get(), false);
    check_unavailable(tag + ": native SET in flight at the loss", n.get(), false);
  }

  // The survivor knows it has no quorum...
  QuorumStatus q;
  const bool knows = wait_for(
      [&] {
        q = quorum_status(s.http_port);
        return q.answered && !q.quorum;
      },
      milliseconds(10000));
  CHECK(knows, "/v1/status of node {} did not say \"quorum\": false in time", s.id);
  CHECK(!q.reason.empty(), "no unavailable_reason with \"quorum\": false");
  note(fmt::format("{}: status: quorum false: {}", tag, q.reason));

  // ... so new requests are refused at once: not executed.
  check_unavailable(tag + ": RESP SET without a quorum",
                    resp_call(*resp, {"SET", tag + "-refused-resp", "1"}), true);
  check_unavailable(tag + ": RESP INCR without a quorum",
                    resp_call(*resp, {"INCR", tag + "-refused-n"}), true);
  check_unavailable(tag + ": HTTP PUT without a quorum",
                    http_call(s.http_port, "PUT", "/v1/kv/" + tag + "-refused-http", "1"), true);
  check_unavailable(tag + ": HTTP GET without a quorum (reads are ordered)",
                    http_call(s.http_port, "GET", "/v1/kv/" + tag + "-before-http", ""), true);
  check_unavailable(tag + ": native SET without a quorum",
                    native_call(*native, set_op(tag + "-refused-native", "1")), true);

  // Metrics are mirrored once per tick.
  std::optional<int64_t> unavailable_total, outcome_unknown_total, quorum_gauge;
  CHECK(wait_for(
            [&] {
              unavailable_total = metric(s.http_port, "maroon_requests_unavailable_total");
              return unavailable_total && *unavailable_total - unavailable_before == 8;
            },
            milliseconds(5000)),
        "{}: maroon_requests_unavailable_total went from {} to {} (8 requests were "
        "answered unavailable)",
        tag, unavailable_before,
        unavailable_total ? std::to_string(*unavailable_total) : "missing");
  outcome_unknown_total = metric(s.http_port, "maroon_requests_outcome_unknown_total");
  CHECK(outcome_unknown_total && *outcome_unknown_total - unknown_before <= 3,
        "{}: maroon_requests_outcome_unknown_total went from {} to {} (at most the 3 in flight at "
        "the loss)",
        tag, unknown_before,
        outcome_unknown_total ? std::to_string(*outcome_unknown_total) : "missing");
  quorum_gauge = metric(s.http_port, "maroon_quorum");
  CHECK(quorum_gauge == 0, "maroon_quorum is {}",
        quorum_gauge ? std::to_string(*quorum_gauge) : "missing");

  auto [status_exit, status_out] = run_status(maroon, cl.config_path());
  CHECK(status_exit == 1, "maroon status exited {} without a quorum:\n{}", status_exit, status_out);
  CHECK(status_out.find("WARNING: no quorum") != std::string::npos,
        "maroon status does not warn about the lost quorum:\n{}", status_out);

  // The quorum returns: the dead nodes restart, nothing else is done.
  for (size_t i = 0; i < cl.size(); i++) {
    if (i == survivor) continue;
    if (Status st = cl.start(i, "quorum-test restart"); !st) return st.to_string();
  }
  note(tag + ": restarted the 2 nodes; waiting for the quorum");
  const auto back = Clock::now();
  CHECK(wait_for(
            [&] {
              q = quorum_status(s.http_port);
              return q.answered && q.quorum;
            },
            kQuorumTimeout),
        "node {} did not regain its quorum: {}", s.id, q.reason);

  // Writes succeed again on every protocol (the first ones may still find
  // the gateway leasing a fresh range: retried until the deadline).
  Answer last;
  CHECK(wait_for(
            [&] {
              last = resp_call(*resp, {"SET", tag + "-after-resp", "2"});
              return last.ok;
            },
            kQuorumTimeout),
        "RESP write after the quorum returned: {}", last.text);
  CHECK(wait_for(
            [&] {
              last = http_call(s.http_port, "PUT", "/v1/kv/" + tag + "-after-http", "2");
              return last.ok;
            },
            kQuorumTimeout),
        "HTTP write after the quorum returned: {}", last.text);
  CHECK(wait_for(
            [&] {
              last = native_call(*native, set_op(tag + "-after-native", "2"));
              return last.ok;
            },
            kQuorumTimeout),
        "native write after the quorum returned: {}", last.text);
  note(fmt::format("{}: writes succeed again {} ms after the restart", tag, ms_since(back)));
  Answer read = http_call(s.http_port, "GET", "/v1/kv/" + tag + "-after-http", "");
  CHECK(read.ok && read.text.ends_with("2"), "reading the write back: {}", read.text);
  for (size_t i = 0; i < cl.size(); i++) {
    CHECK(wait_for(
              [&] {
                QuorumStatus n = quorum_status(cl.node(i).http_port);
                return n.answered && n.quorum;
              },
              kQuorumTimeout),
          "node {} does not report a quorum", cl.node(i).id);
  }
  std::optional<int64_t> regained;
  CHECK(wait_for(
            [&] {
              regained = metric(s.http_port, "maroon_quorum");
              return regained == 1;
            },
            milliseconds(5000)),
        "maroon_quorum is {} after the quorum returned",
        regained ? std::to_string(*regained) : "missing");

  return {};
}

int run(const std::string& maroon, const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  chaos::ClusterSpec spec;
  spec.maroon = maroon;
  spec.dir = dir;
  spec.nodes = 3;
  Result<chaos::LocalCluster> made = chaos::LocalCluster::create(spec);
  if (!made.is_ok()) {
    std::fprintf(stderr, "quorum-test: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  // The bound under test, written into the cluster's config.
  if (Status st = cl.edit_config([](cluster::ClusterConfig& c) {
        c.settings.unavailable_after_ms = kUnavailableAfterMs;
      });
      !st) {
    std::fprintf(stderr, "quorum-test: %s\n", st.to_string().c_str());
    return 1;
  }
  Result<cluster::ClusterConfig> config = cluster::load_cluster_config(cl.config_path().string());
  if (!config.is_ok()) {
    std::fprintf(stderr, "quorum-test: %s\n", config.status().to_string().c_str());
    return 1;
  }
  auto fail_with_logs = [&](const std::string& why) {
    std::fprintf(stderr, "quorum-test: %s\n", why.c_str());
    for (size_t i = 0; i < cl.size(); i++) {
      std::fprintf(stderr, "node %u log:\n%s", cl.node(i).id, cl.log_tail(i, 30).c_str());
    }
    cl.shutdown(milliseconds(10000));
    return 1;
  };

  for (size_t i = 0; i < cl.size(); i++) {
    if (Status s = cl.start(i, "quorum-test start"); !s) return fail_with_logs(s.to_string());
  }
  note("3 nodes started; waiting for them to serve with a quorum");
  for (size_t i = 0; i < cl.size(); i++) {
    const uint16_t port = cl.node(i).http_port;
    if (!wait_for(
            [&] {
              QuorumStatus q = quorum_status(port);
              return q.serving && q.quorum;
            },
            kStartTimeout)) {
      return fail_with_logs(
          fmt::format("node {} did not serve with a quorum in time", cl.node(i).id));
    }
  }

  for (const std::string& role : {std::string("backup"), std::string("primary")}) {
    const std::string why = lose_and_regain_quorum(cl, *config, maroon, role, "keep-" + role);
    if (!why.empty()) return fail_with_logs(why);
  }

  for (const std::string& p : cl.shutdown(milliseconds(20000))) note("shutdown: " + p);
  if (failures > 0) {
    for (size_t i = 0; i < cl.size(); i++) {
      std::fprintf(stderr, "node %u log:\n%s", cl.node(i).id, cl.log_tail(i, 30).c_str());
    }
    std::fprintf(stderr, "quorum-test: %d checks failed\n", failures);
    return 1;
  }
  note("passed");
  return 0;
}

}  // namespace
}  // namespace maroon::quorum_test

int main(int argc, char** argv) {
  std::string maroon, dir;
  if (!maroon::chaos::parse_test_args(argc, argv,
                                      "usage: maroon-quorum-test --maroon BINARY --dir DIR", maroon,
                                      dir)) {
    return 2;
  }
  return maroon::quorum_test::run(maroon, dir);
}
