// maroon-etcd-bench: a write load generator for etcd v3 through its HTTP/JSON
// gRPC gateway (`POST /v3/kv/put`, served by etcd 3.4 on every client port).
// Keep-alive connections spread over the endpoints, one request in flight per
// connection, all on one Asio io_context per thread.
//
// Closed loop by default: each connection sends its next put as soon as the
// previous one is answered. With --rate R, open loop: puts are scheduled at
// R/s in total and taken by idle connections; latency counts from the
// scheduled send time, so a slow server cannot hide queueing (no coordinated
// omission). Prints one summary line:
//
//   etcd writes/s=9459 p50_ms=48.78 p99_ms=116.27 p999_ms=158.18 max_ms=179.90 ok=95040
//        errors=0 connections=500 seconds=10 endpoints=3
//
// With --rate it adds rate= and scheduled= (puts due before the end); no put
// starts after the end, so ok + errors < scheduled means the server fell behind.
// Only 200 answers count as writes; anything else is an error, and the first
// error's body is printed.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kLatencySamplesMax = 20'000'000;
constexpr auto kDrainLimit = std::chrono::seconds(10);
constexpr auto kReconnectDelay = std::chrono::milliseconds(100);

struct Options {
  std::vector<std::pair<std::string, std::string>> endpoints;  // host, port
  unsigned connections = 500;
  double seconds = 10;
  unsigned keys = 100000;
  unsigned value_bytes = 16;
  double rate = 0;  // writes/s in total; 0 = closed loop
  unsigned threads = 1;
  std::string path = "/v3/kv/put";
  std::string label = "etcd";
};

[[noreturn]] void usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "maroon-etcd-bench: %s\n", error.c_str());
  std::fprintf(stderr,
               "usage: maroon-etcd-bench [--endpoints host:port,...] [--connections C] [--seconds S]\n"
               "                         [--keys K] [--value-bytes V] [--rate R] [--threads T]\n"
               "                         [--path /v3/kv/put] [--label etcd]\n");
  std::exit(2);
}

template <typename T>
T parse_number(std::string_view name, std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    usage(fmt::format("bad value for {}: '{}'", name, text));
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options o;
  std::string endpoints = "127.0.0.1:2379";
  for (int i = 1; i < argc; i++) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") usage("");
    if (i + 1 >= argc) usage(fmt::format("{} needs a value", arg));
    std::string_view v = argv[++i];
    if (arg == "--endpoints") endpoints = v;
    else if (arg == "--connections" || arg == "-c") o.connections = parse_number<unsigned>(arg, v);
    else if (arg == "--seconds") o.seconds = parse_number<double>(arg, v);
    else if (arg == "--keys") o.keys = parse_number<unsigned>(arg, v);
    else if (arg == "--value-bytes") o.value_bytes = parse_number<unsigned>(arg, v);
    else if (arg == "--rate") o.rate = parse_number<double>(arg, v);
    else if (arg == "--threads") o.threads = parse_number<unsigned>(arg, v);
    else if (arg == "--path") o.path = v;
    else if (arg == "--label") o.label = v;
    else usage(fmt::format("unknown option {}", arg));
  }
  size_t pos = 0;
  while (pos <= endpoints.size()) {
    size_t comma = endpoints.find(',', pos);
    std::string item = endpoints.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.rfind("http://", 0) == 0) item = item.substr(7);
    if (!item.empty() && item.back() == '/') item.pop_back();
    size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) {
      usage(fmt::format("bad endpoint '{}' (host:port)", item));
    }
    o.endpoints.emplace_back(item.substr(0, colon), item.substr(colon + 1));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (o.connections < 1 || o.connections > 100000) usage("--connections: 1 to 100000");
  if (!(o.seconds > 0 && o.seconds <= 3600)) usage("--seconds: above 0, at most 3600");
  if (o.keys < 1) usage("--keys: at least 1");
  if (o.value_bytes > 1024 * 1024) usage("--value-bytes: at most 1 MiB");
  if (o.rate < 0) usage("--rate: not negative");
  if (o.threads < 1 || o.threads > 64) usage("--threads: 1 to 64");
  o.threads = std::min(o.threads, o.connections);
  return o;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t n = uint8_t(in[i]) << 16;
    if (rest == 2) n |= uint8_t(in[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// State shared by all threads.
struct Shared {
  const Options& o;
  Clock::time_point start;
  Clock::time_point deadline;
  std::atomic<uint64_t> next_slot{0};  // open loop: the next scheduled send
  std::vector<tcp::resolver::results_type> resolved;
  std::string value_b64;
};

struct ThreadResult {
  uint64_t ok = 0;
  uint64_t errors = 0;
  std::string first_error;
  std::vector<uint32_t> latencies_us;
  Clock::time_point last_done{};
  void error(std::string text) {
    errors++;
    if (first_error.empty()) first_error = std::move(text);
  }
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, Shared& shared, ThreadResult& result, size_t endpoint,
             uint64_t seed)
      : shared_(shared), result_(result), endpoint_(endpoint), socket_(io), timer_(io),
        rng_(seed | 1) {}

  void start() { connect(); }

 private:
  void connect() {
    auto self = shared_from_this();
    asio::async_connect(socket_, shared_.resolved[endpoint_],
                        [self](beast::error_code ec, const tcp::endpoint&) {
                          if (ec) return self->failed("connect", ec);
                          self->socket_.set_option(tcp::no_delay(true));
                          self->next();
                        });
  }

  uint64_t random() {  // xorshift64
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  // Picks the next send time; stops when it is past the deadline.
  void next() {
    auto now = Clock::now();
    // Nothing starts past the deadline, in either mode: an overloaded open
    // loop ends with scheduled puts unsent (ok < scheduled in the summary).
    if (now >= shared_.deadline) return finish();
    if (shared_.o.rate > 0) {
      uint64_t slot = shared_.next_slot.fetch_add(1, std::memory_order_relaxed);
      auto at = shared_.start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(static_cast<double>(slot) / shared_.o.rate));
      if (at >= shared_.deadline) return finish();
      scheduled_ = at;
      if (at > now) {
        auto self = shared_from_this();
        timer_.expires_at(at);
        timer_.async_wait([self](beast::error_code ec) {
          if (!ec) self->send();
        });
        return;
      }
    } else {
      scheduled_ = now;
    }
    send();
  }

  void send() {
    const Options& o = shared_.o;
    char key[32];
    auto n = fmt::format_to_n(key, sizeof key, "key:{:012}", random() % o.keys).size;
    std::string body;
    body.reserve(64 + shared_.value_b64.size());
    body += R"({"key":")";
    body += base64(std::string_view(key, n));
    body += R"(","value":")";
    body += shared_.value_b64;
    body += R"("})";
    req_ = {};
    req_.method(http::verb::post);
    req_.target(o.path);
    req_.version(11);
    req_.set(http::field::host, o.endpoints[endpoint_].first + ":" + o.endpoints[endpoint_].second);
    req_.set(http::field::content_type, "application/json");
    req_.keep_alive(true);
    req_.body() = std::move(body);
    req_.prepare_payload();
    auto self = shared_from_this();
    http::async_write(socket_, req_, [self](beast::error_code ec, size_t) {
      if (ec) return self->failed("write", ec);
      self->read();
    });
  }

  void read() {
    res_.emplace();
    res_->body_limit(16 * 1024 * 1024);
    auto self = shared_from_this();
    http::async_read(socket_, buffer_, *res_, [self](beast::error_code ec, size_t) {
      if (ec) return self->failed("read", ec);
      self->answered();
    });
  }

  void answered() {
    auto done = Clock::now();
    result_.last_done = std::max(result_.last_done, done);
    auto& res = res_->get();
    if (res.result() == http::status::ok) {
      result_.ok++;
      if (result_.latencies_us.size() < kLatencySamplesMax) {
        result_.latencies_us.push_back(static_cast<uint32_t>(std::min<int64_t>(
            UINT32_MAX,
            std::chrono::duration_cast<std::chrono::microseconds>(done - scheduled_).count())));
      }
    } else {
      result_.error(fmt::format("HTTP {}: {}", res.result_int(), res.body().substr(0, 500)));
    }
    if (!res.keep_alive()) {
      beast::error_code ignored;
      socket_.close(ignored);
      buffer_.clear();
      if (Clock::now() < shared_.deadline) connect();
      return;
    }
    next();
  }

  void failed(const char* what, beast::error_code ec) {
    result_.error(fmt::format("{} {}:{}: {}", what, shared_.o.endpoints[endpoint_].first,
                              shared_.o.endpoints[endpoint_].second, ec.message()));
    beast::error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
    if (Clock::now() + kReconnectDelay >= shared_.deadline) return;
    auto self = shared_from_this();
    timer_.expires_after(kReconnectDelay);
    timer_.async_wait([self](beast::error_code e) {
      if (!e) self->connect();
    });
  }

  void finish() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  Shared& shared_;
  ThreadResult& result_;
  size_t endpoint_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::string_body>> res_;
  Clock::time_point scheduled_;
  uint64_t rng_;
};

void run_thread(Shared& shared, unsigned first, unsigned count, ThreadResult& result) {
  asio::io_context io(1);
  std::vector<std::shared_ptr<Connection>> conns;
  for (unsigned i = first; i < first + count; i++) {
    auto c = std::make_shared<Connection>(io, shared, result, i % shared.o.endpoints.size(),
                                          0x9e3779b97f4a7c15ull * (i + 1));
    c->start();
    conns.push_back(std::move(c));
  }
  conns.clear();  // the handlers keep them alive
  // Past the deadline no request starts; the ones in flight get kDrainLimit.
  io.run_until(shared.deadline + kDrainLimit);
  if (!io.stopped()) result.error("answers missing 10 s after the end");
}

double percentile_ms(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<size_t>(p * static_cast<double>(sorted.size() - 1))] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  Shared shared{o, {}, {}, {}, {}, base64(std::string(o.value_bytes, 'v'))};
  {
    asio::io_context io;
    tcp::resolver resolver(io);
    for (auto& [host, port] : o.endpoints) {
      beast::error_code ec;
      auto r = resolver.resolve(host, port, ec);
      if (ec) {
        std::fprintf(stderr, "maroon-etcd-bench: cannot resolve %s:%s: %s\n", host.c_str(),
                     port.c_str(), ec.message().c_str());
        return 2;
      }
      shared.resolved.push_back(std::move(r));
    }
  }
  shared.start = Clock::now();
  shared.deadline = shared.start + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(o.seconds));
  std::vector<ThreadResult> results(o.threads);
  std::vector<std::thread> pool;
  unsigned first = 0;
  for (unsigned t = 0; t < o.threads; t++) {
    unsigned n = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0);
    pool.emplace_back(run_thread, std::ref(shared), first, n, std::ref(results[t]));
    first += n;
  }
  for (auto& th : pool) th.join();
  ThreadResult all;
  all.last_done = shared.deadline;
  for (auto& r : results) {
    all.ok += r.ok;
    all.errors += r.errors;
    if (all.first_error.empty()) all.first_error = r.first_error;
    all.last_done = std::max(all.last_done, r.last_done);
    all.latencies_us.insert(all.latencies_us.end(), r.latencies_us.begin(), r.latencies_us.end());
  }
  std::sort(all.latencies_us.begin(), all.latencies_us.end());
  // Sends stop at the deadline; the answers to the last ones count too.
  double elapsed = std::chrono::duration<double>(all.last_done - shared.start).count();
  std::string rate = o.rate > 0 ? fmt::format(" rate={:.0f} scheduled={:.0f}", o.rate,
                                              std::ceil(o.rate * o.seconds))
                                : std::string();
  fmt::print("{} writes/s={:.0f} p50_ms={:.2f} p99_ms={:.2f} p999_ms={:.2f} max_ms={:.2f} ok={} errors={} "
             "connections={} seconds={:g}{} endpoints={}\n",
             o.label, static_cast<double>(all.ok) / elapsed, percentile_ms(all.latencies_us, 0.50),
             percentile_ms(all.latencies_us, 0.99), percentile_ms(all.latencies_us, 0.999),
             all.latencies_us.empty() ? 0.0 : all.latencies_us.back() / 1000.0, all.ok, all.errors,
             o.connections, o.seconds, rate, o.endpoints.size());
  if (!all.first_error.empty()) fmt::print("first error: {}\n", all.first_error);
  std::fflush(stdout);
  return all.ok == 0 || all.errors > 0 ? 1 : 0;
}
