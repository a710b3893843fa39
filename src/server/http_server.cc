#include "server/http_server.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "app/kv/kv_op.h"
#include "maroon/assert.h"
#include "server/client_stream.h"

namespace maroon::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct HttpServer::Metrics {
  explicit Metrics(Registry& r)
      : connections(r.gauge("maroon_http_connections", "Open HTTP connections.")),
        rejected(r.counter("maroon_http_connections_rejected_total",
                           "HTTP connections closed at accept: connections_max reached.")),
        requests(r.counter("maroon_http_requests_total", "HTTP requests received.")),
        bad_requests(r.counter("maroon_http_malformed_requests_total",
                               "HTTP requests that could not be parsed (connection closed).")) {}
  Gauge& connections;
  Counter& rejected;
  Counter& requests;
  Counter& bad_requests;
};

namespace {

using Response = http::response<http::string_body>;

// ---- helpers: text ------------------------------------------------------

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; '+' stays '+'. False on a bad or truncated escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_digit(in[i + 1]), lo = hex_digit(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; k++) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// ---- helpers: responses -------------------------------------------------

http::status http_status_for(Code code) {
  switch (code) {
    case Code::kOk:
      return http::status::ok;
    case Code::kInvalidArgument:
      return http::status::bad_request;
    case Code::kNotFound:
      return http::status::not_found;
    case Code::kTooLarge:
      return http::status::payload_too_large;
    case Code::kOverloaded:
      return http::status::service_unavailable;
    case Code::kUnavailable:
    case Code::kNoQuorum:
    case Code::kOutcomeUnknown:
      return http::status::service_unavailable;
    case Code::kConflict:
      return http::status::conflict;
    case Code::kWrongType:
      return http::status::unprocessable_entity;
    case Code::kUnauthenticated:
      return http::status::unauthorized;
    case Code::kPermissionDenied:
      return http::status::forbidden;
    case Code::kCorruption:
    case Code::kIoError:
      return http::status::internal_server_error;
  }
  return http::status::internal_server_error;
}

Response make_response(http::status status, std::string body, std::string_view content_type) {
  Response res(status, 11);
  res.set(http::field::server, "maroon");
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  return res;
}

Response json_response(http::status status, const json::value& v) {
  std::string body = json::serialize(v);
  body.push_back('\n');
  return make_response(status, std::move(body), "application/json");
}

Response error_response(http::status status, std::string_view message, Code code) {
  json::object o;
  o["error"] = message;
  o["code"] = code_name(code);
  // Quorum loss: whether the request may still take effect (docs/cluster.md).
  if (code == Code::kNoQuorum) o["outcome"] = "not executed";
  if (code == Code::kOutcomeUnknown) o["outcome"] = "unknown";
  Response res = json_response(status, o);
  if (code == Code::kOverloaded || code == Code::kUnavailable || code == Code::kNoQuorum ||
      code == Code::kOutcomeUnknown)
    res.set(http::field::retry_after, "1");
  return res;
}

Response error_response(const Status& s) {
  MAROON_ASSERT(!s.is_ok());
  return error_response(http_status_for(s.code()), s.message(), s.code());
}

const Status kNotUtf8(Code::kInvalidArgument,
                      "the reply holds bytes that are not valid UTF-8, which JSON cannot carry; "
                      "read binary values with GET /v1/kv/{key}");

// The JSON form of a kv reply (POST /v1/tx). `nil_is_not_ok`: a nil reply to
// a conditional set means "condition not met".
Result<json::value> reply_to_json(const kv::Reply& reply, bool nil_is_not_ok) {
  json::object o;
  switch (reply.kind) {
    case kv::Reply::Kind::kOk:
      o["ok"] = true;
      break;
    case kv::Reply::Kind::kNil:
      if (nil_is_not_ok) {
        o["ok"] = false;
      } else {
        o["value"] = nullptr;
      }
      break;
    case kv::Reply::Kind::kInt:
      o["int"] = reply.integer;
      break;
    case kv::Reply::Kind::kValue:
      if (!valid_utf8(reply.value)) return kNotUtf8;
      o["value"] = reply.value;
      break;
    case kv::Reply::Kind::kValues: {
      json::array a;
      a.reserve(reply.values.size());
      for (const auto& v : reply.values) {
        if (!v) {
          a.emplace_back(nullptr);
          continue;
        }
        if (!valid_utf8(*v)) return kNotUtf8;
        a.emplace_back(json::string(*v));
      }
      o["values"] = std::move(a);
      break;
    }
    case kv::Reply::Kind::kPairs: {
      json::array a;
      a.reserve(reply.pairs.size());
      for (const auto& [k, v] : reply.pairs) {
        if (!valid_utf8(k) || !valid_utf8(v)) return kNotUtf8;
        json::array pair;
        pair.emplace_back(json::string(k));
        pair.emplace_back(json::string(v));
        a.emplace_back(std::move(pair));
      }
      o["pairs"] = std::move(a);
      break;
    }
    case kv::Reply::Kind::kError:
      return Status(reply.error, reply.value);
  }
  return json::value(std::move(o));
}

// ---- helpers: request parsing --------------------------------------------

struct QueryParam {
  std::string name;
  std::optional<std::string> value;  // nullopt: "?name" without '='
};

Result<std::vector<QueryParam>> parse_query(std::string_view query) {
  std::vector<QueryParam> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    QueryParam p;
    const size_t eq = part.find('=');
    if (!percent_decode(part.substr(0, eq), p.name))
      return invalid_argument("bad percent-encoding in query");
    if (eq != std::string_view::npos) {
      p.value.emplace();
      if (!percent_decode(part.substr(eq + 1), *p.value))
        return invalid_argument("bad percent-encoding in query");
    }
    out.push_back(std::move(p));
    if (out.size() > 16) return invalid_argument("too many query parameters");
  }
  return out;
}

// Field readers for POST /v1/tx. Each returns a clear 400 for a wrong type.
Result<std::string_view> json_string(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end()) return invalid_argument(fmt::format("missing field \"{}\"", field));
  if (!it->value().is_string())
    return invalid_argument(fmt::format("field \"{}\" must be a string", field));
  const json::string& s = it->value().get_string();
  return std::string_view(s.data(), s.size());
}

Result<std::vector<std::string_view>> json_strings(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end()) return invalid_argument(fmt::format("missing field \"{}\"", field));
  if (!it->value().is_array()) {
    return invalid_argument(fmt::format("field \"{}\" must be an array of strings", field));
  }
  const json::array& a = it->value().get_array();
  if (a.size() > limits::op_keys_max) {
    return too_large(fmt::format("field \"{}\" has {} entries; the limit is {}", field, a.size(),
                                 limits::op_keys_max));
  }
  std::vector<std::string_view> out;
  out.reserve(a.size());
  for (const json::value& v : a) {
    if (!v.is_string())
      return invalid_argument(fmt::format("field \"{}\" must be an array of strings", field));
    out.emplace_back(v.get_string().data(), v.get_string().size());
  }
  return out;
}

// "key" or "keys": one key or an array of them.
Result<std::vector<std::string_view>> json_key_or_keys(const json::object& o) {
  if (o.contains("keys")) return json_strings(o, "keys");
  auto k = json_string(o, "key");
  if (!k.is_ok()) return invalid_argument("missing field \"key\" (or \"keys\")");
  return std::vector<std::string_view>{*k};
}

Result<int64_t> json_int(const json::object& o, std::string_view field,
                         std::optional<int64_t> dflt) {
  auto it = o.find(field);
  if (it == o.end()) {
    if (dflt) return *dflt;
    return invalid_argument(fmt::format("missing field \"{}\"", field));
  }
  const json::value& v = it->value();
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    return static_cast<int64_t>(v.get_uint64());
  }
  return invalid_argument(fmt::format("field \"{}\" must be a 64-bit integer", field));
}

struct TxRequest {
  kv::Op op;
  bool nil_is_not_ok = false;  // conditional set: nil means "not set"
};

// Builds a kv op from a POST /v1/tx body. Views point into `o`.
Result<TxRequest> parse_tx(const json::object& o) {
  auto name = json_string(o, "op");
  if (!name.is_ok()) return name.status();
  const std::string_view op_name = *name;
  TxRequest t;
  kv::Op& op = t.op;

  auto one_key = [&]() -> Status {
    auto k = json_string(o, "key");
    if (!k.is_ok()) return k.status();
    op.keys = {*k};
    return Status::ok();
  };
  auto one_value = [&]() -> Status {
    auto v = json_string(o, "value");
    if (!v.is_ok()) return v.status();
    op.values = {*v};
    return Status::ok();
  };

  Status s;
  if (op_name == "get") {
    op.type = kv::OpType::kGet;
    s = one_key();
  } else if (op_name == "set" || op_name == "set-if-absent" || op_name == "set-if-present") {
    op.type = kv::OpType::kSet;
    if (op_name == "set-if-absent") op.cond = kv::SetCond::kIfAbsent;
    if (op_name == "set-if-present") op.cond = kv::SetCond::kIfPresent;
    t.nil_is_not_ok = true;
    s = one_key();
    if (s.is_ok()) s = one_value();
  } else if (op_name == "del" || op_name == "exists" || op_name == "mget") {
    op.type = op_name == "del"      ? kv::OpType::kDel
              : op_name == "exists" ? kv::OpType::kExists
                                    : kv::OpType::kMget;
    auto keys = op_name == "mget" ? json_strings(o, "keys") : json_key_or_keys(o);
    if (!keys.is_ok()) return keys.status();
    op.keys.assign(keys->begin(), keys->end());
  } else if (op_name == "cas") {
    op.type = kv::OpType::kCas;
    s = one_key();
    if (s.is_ok()) s = one_value();
    if (s.is_ok()) {
      auto it = o.find("expected");
      if (it == o.end()) {
        return invalid_argument(
            "missing field \"expected\" (a string, or null for \"must be absent\")");
      }
      if (it->value().is_string()) {
        op.expected =
            std::string_view(it->value().get_string().data(), it->value().get_string().size());
      } else if (!it->value().is_null()) {
        return invalid_argument("field \"expected\" must be a string or null");
      }
    }
  } else if (op_name == "incr" || op_name == "incrby") {
    op.type = kv::OpType::kIncrBy;
    s = one_key();
    if (s.is_ok()) {
      auto d = json_int(o, "delta", op_name == "incr" ? std::optional<int64_t>(1) : std::nullopt);
      if (!d.is_ok()) return d.status();
      op.delta = *d;
    }
  } else if (op_name == "mset") {
    op.type = kv::OpType::kMset;
    auto keys = json_strings(o, "keys");
    if (!keys.is_ok()) return keys.status();
    auto values = json_strings(o, "values");
    if (!values.is_ok()) return values.status();
    op.keys.assign(keys->begin(), keys->end());
    op.values.assign(values->begin(), values->end());
  } else if (op_name == "scan") {
    op.type = kv::OpType::kScan;
    std::string_view prefix;
    if (o.contains("prefix")) {
      auto p = json_string(o, "prefix");
      if (!p.is_ok()) return p.status();
      prefix = *p;
    }
    op.keys = {prefix};
    if (o.contains("after")) {
      auto a = json_string(o, "after");
      if (!a.is_ok()) return a.status();
      op.keys.push_back(*a);
    }
    auto limit = json_int(o, "limit", int64_t{http_scan_limit_default});
    if (!limit.is_ok()) return limit.status();
    if (*limit < 0 || *limit > static_cast<int64_t>(limits::op_keys_max)) {
      return too_large(fmt::format("scan limit must be in [0, {}]", limits::op_keys_max));
    }
    op.limit = static_cast<uint32_t>(*limit);
  } else if (op_name == "size") {
    op.type = kv::OpType::kSize;
  } else {
    return invalid_argument(fmt::format(
        "unknown op \"{}\"; expected one of get, set, set-if-absent, set-if-present, del, cas, "
        "incr, incrby, mget, mset, exists, scan, size",
        op_name));
  }
  if (!s.is_ok()) return s;
  return t;
}

// The credentials in an Authorization header: "Bearer <token>" (a user's
// password), or "Basic base64(user:password)". `user` is empty for a token.
struct Credentials {
  std::string user;
  std::string password;
};

bool iequals_ascii(std::string_view a, std::string_view b) {
  return a.size() == b.size() && beast::iequals(a, b);
}

std::optional<Credentials> parse_authorization(std::string_view header) {
  const size_t space = header.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view scheme = header.substr(0, space);
  std::string_view rest = header.substr(space + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  if (rest.empty() || rest.size() > 4 * password_bytes_max) return std::nullopt;
  if (iequals_ascii(scheme, "bearer")) return Credentials{.user = {}, .password = std::string(rest)};
  if (!iequals_ascii(scheme, "basic") || rest.size() % 4 != 0) return std::nullopt;
  // Padding: at most two '=', only at the end.
  const size_t pad = rest.find('=');
  if (pad != std::string_view::npos &&
      (rest.size() - pad > 2 || rest.find_first_not_of('=', pad) != std::string_view::npos)) {
    return std::nullopt;
  }
  std::string decoded(rest.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                reinterpret_cast<const unsigned char*>(rest.data()),
                                static_cast<int>(rest.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding's zero bytes; drop them.
  size_t len = static_cast<size_t>(n);
  const size_t padding = pad == std::string_view::npos ? 0 : rest.size() - pad;
  if (len < padding) return std::nullopt;
  len -= padding;
  decoded.resize(len);
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return std::nullopt;
  return Credentials{.user = decoded.substr(0, colon), .password = decoded.substr(colon + 1)};
}

}  // namespace

// One HTTP connection. Reads one request, answers it, then reads the next.
// Async operations hold a shared_ptr; engine callbacks only a weak_ptr, so a
// reply arriving after the connection closed is dropped.
class HttpServer::Session : public Listener::Connection,
                            public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer& server, tcp::socket socket)
      : engine_(server.engine_),
        metrics_(*server.metrics_),
        resources_(server.resources_),
        security_(server.security_),
        budget_(server.resources_, ClientPort::kHttp),
        stream_(std::move(socket), server.security_.tls) {}

  void start() override {
    if (!stream_.is_tls()) return read_header();
    handshaking_ = true;
    header_started_ = std::chrono::steady_clock::now();
    stream_.async_handshake(resources_.limits().header_timeout,
                            [self = shared_from_this()](error_code ec) { self->on_handshake(ec); });
  }

  // A client must send its first request's headers, and any request's
  // headers once it has begun them, within ClientLimits::header_timeout.
  // (Over TLS, the handshake's own deadline is header_timeout too.)
  void tick(std::chrono::steady_clock::time_point now) override {
    if (closed_ || !reading_header_) return;
    if (requests_ > 0 && buffer_.size() == 0) return;  // keep-alive idle: http_idle_timeout
    if (now - header_started_ < resources_.limits().header_timeout) return;
    resources_.note_timeout(ClientPort::kHttp, "request headers not complete in time");
    close();
  }

  // Waiting for a request's headers, or in the TLS handshake before them: a
  // full server may close this one.
  std::optional<std::chrono::steady_clock::time_point> idle_since() const override {
    if (!(reading_header_ || handshaking_) || closed_) return std::nullopt;
    return header_started_;
  }

  void close() override {
    if (closed_) return;
    auto self = shared_from_this();  // leave() may drop the table's reference
    closed_ = true;
    stream_.shutdown_both();
    stream_.close();
    budget_.release_all();
    leave();
  }

 private:
  void on_handshake(error_code ec) {
    handshaking_ = false;
    if (closed_) return;
    if (ec) {
      resources_.note_tls_handshake_failure(
          ClientPort::kHttp, remote(),
          tls_handshake_failure_text(ec, resources_.limits().header_timeout));
      return close();
    }
    read_header();
  }

  void read_header() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(http_header_bytes_max));
    parser_->body_limit(limits::op_bytes_max);
    stream_.expires_after(http_idle_timeout);
    reading_header_ = true;
    header_started_ = std::chrono::steady_clock::now();
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (closed_) return;
    reading_header_ = false;
    if (ec) return on_read_error(ec);
    requests_++;
    const auto& req = parser_->get();
    // Before the body is read: a client without credentials gets nothing buffered.
    if (security_.users != nullptr) {
      version_ = req.version();
      keep_alive_ = req.keep_alive() && parser_->is_done();
      if (!authenticate(req)) return;
    }
    if (const auto length = parser_->content_length();
        length && !budget_.cover(*length, "a request body")) {
      metrics_.bad_requests.inc();
      version_ = req.version();
      keep_alive_ = false;
      return write(error_response(http::status::service_unavailable,
                                  "the server's client buffer budget is spent; retry later",
                                  Code::kUnavailable));
    }
    if (beast::iequals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      // curl sends this before bodies over 1 KiB and waits a second without it.
      continue_.emplace(http::status::continue_, req.version());
      stream_.expires_after(http_write_timeout);
      http::async_write(stream_, *continue_, [self = shared_from_this()](error_code ec, size_t) {
        if (self->closed_) return;
        if (ec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_.expires_after(http_idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->on_body(ec); });
  }

  void on_read_error(error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      return close();
    }
    metrics_.bad_requests.inc();
    Response res;
    if (ec == http::error::body_limit) {
      res = error_response(
          http::status::payload_too_large,
          fmt::format("request body exceeds {} bytes (values are limited to {} bytes)",
                      limits::op_bytes_max, limits::value_bytes_max),
          Code::kTooLarge);
    } else if (ec == http::error::header_limit) {
      res = error_response(
          http::status::request_header_fields_too_large,
          fmt::format("request line and headers exceed {} bytes (keys are limited to {} bytes)",
                      http_header_bytes_max, limits::key_bytes_max),
          Code::kTooLarge);
    } else {
      res = error_response(http::status::bad_request, "malformed HTTP request: " + ec.message(),
                           Code::kInvalidArgument);
    }
    version_ = 11;
    keep_alive_ = false;
    write(std::move(res));
  }

  void on_body(error_code ec) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    stream_.expires_never();  // the engine may take a while; no timer while it works
    metrics_.requests.inc();
    request_ = parser_->release();
    version_ = request_.version();
    keep_alive_ = request_.keep_alive();
    route();
  }

  // ---- routing ----

  // With users: the user a request's credentials name, or an answer of 401
  // (false). Every route needs a user; writes need read-write access.
  template <class Fields>
  bool authenticate(const Fields& req) {
    user_ = nullptr;
    if (security_.users == nullptr) return true;
    const auto header = req[http::field::authorization];
    std::optional<Credentials> given;
    if (!header.empty()) given = parse_authorization(std::string_view(header.data(), header.size()));
    if (given) {
      user_ = security_.users->authenticate(given->user, given->password);
    }
    if (user_ != nullptr) return true;
    if (!header.empty()) {
      resources_.note_auth_failure(ClientPort::kHttp, remote_address(),
                                   given ? std::string_view(given->user) : std::string_view());
    }
    Response res = error_response(
        http::status::unauthorized,
        header.empty() ? "credentials required: send Authorization: Bearer <token> (or Basic)"
                       : "invalid credentials",
        Code::kUnauthenticated);
    res.set(http::field::www_authenticate, R"(Bearer realm="maroon", Basic realm="maroon")");
    write(std::move(res));
    return false;
  }

  bool may_write() const {
    return security_.users == nullptr || (user_ != nullptr && user_->access == Access::kReadWrite);
  }

  // The answer to a read-only user's write.
  void refuse_read_only() {
    write(error_response(Status(Code::kPermissionDenied,
                                fmt::format("user \"{}\" is read-only", user_->name))));
  }

  std::string remote_address() const { return remote().to_string(); }

  void route() {
    const std::string_view target(request_.target().data(), request_.target().size());
    const size_t q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const std::string_view query =
        q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    const http::verb method = request_.method();

    auto only = [&](std::initializer_list<http::verb> allowed, std::string_view allow_header) {
      for (http::verb v : allowed) {
        if (v == method) return true;
      }
      Response res = error_response(
          http::status::method_not_allowed,
          fmt::format("method {} not allowed on {}; allowed: {}",
                      std::string_view(request_.method_string()), path, allow_header),
          Code::kInvalidArgument);
      res.set(http::field::allow, allow_header);
      write(std::move(res));
      return false;
    };

    static constexpr std::string_view kKvPrefix = "/v1/kv/";
    if (path.starts_with(kKvPrefix)) {
      if (!only({http::verb::get, http::verb::put, http::verb::delete_}, "GET, PUT, DELETE"))
        return;
      return handle_kv(path.substr(kKvPrefix.size()), query, method);
    }
    if (path == "/v1/tx") {
      if (!only({http::verb::post}, "POST")) return;
      return handle_tx();
    }
    if (path == "/v1/apps") {
      if (!only({http::verb::get}, "GET")) return;
      return handle_apps();
    }
    static constexpr std::string_view kAppsPrefix = "/v1/apps/";
    if (path.starts_with(kAppsPrefix)) {
      if (!only({http::verb::post}, "POST")) return;
      return handle_app_op(path.substr(kAppsPrefix.size()));
    }
    if (path == "/v1/status") {
      if (!only({http::verb::get}, "GET")) return;
      return handle_status();
    }
    if (path == "/v1/admin/snapshot") {
      if (!only({http::verb::post}, "POST")) return;
      return handle_snapshot();
    }
    if (path == "/v1/admin/backup") {
      if (!only({http::verb::post}, "POST")) return;
      return handle_backup();
    }
    if (path == "/v1/admin/members") {
      if (!only({http::verb::post}, "POST")) return;
      return handle_members();
    }
    if (path == "/metrics") {
      if (!only({http::verb::get}, "GET")) return;
      return write(make_response(http::status::ok, engine_.metrics().render(),
                                 "text/plain; version=0.0.4; charset=utf-8"));
    }
    write(error_response(http::status::not_found, fmt::format("no route for {}", path),
                         Code::kNotFound));
  }

  // Asks for a snapshot now (docs/snapshots.md); 202: it is being taken,
  // and /v1/status shows when it is done.
  void handle_snapshot() {
    if (!may_write()) return refuse_read_only();
    if (Status s = engine_.request_snapshot(); !s) return write(error_response(s));
    const EngineStatus st = engine_.status();
    json::object o;
    o["requested"] = true;
    o["snapshots_taken"] = st.snapshots_taken;
    o["snapshot_epoch"] = st.snapshot_epoch;
    write(json_response(http::status::accepted, o));
  }

  // Asks for a snapshot now, uploaded as soon as it is written
  // (docs/backups.md); 202, and /v1/status "backup" shows the upload.
  void handle_backup() {
    if (!may_write()) return refuse_read_only();
    Result<Engine::BackupTicket> ticket = engine_.request_backup();
    if (!ticket) return write(error_response(ticket.status()));
    const EngineStatus st = engine_.status();
    json::object o;
    o["requested"] = true;
    // Done once more than `uploads` went, one of `min_epoch` or later.
    o["uploads"] = ticket->uploads;
    o["min_epoch"] = ticket->min_epoch;
    o["store"] = st.backup ? st.backup->store : std::string();
    write(json_response(http::status::accepted, o));
  }

  // Asks the group to become the given members (docs/membership.md):
  // {"expect_epoch": N, "members": [{"id", "host", "peer_port", "http_port",
  // "resp_port", "native_port"}, ...]}. 202 once proposed; /v1/status shows
  // membership_epoch move when it is committed.
  void handle_members() {
    if (!may_write()) return refuse_read_only();
    json::parse_options opts;
    opts.max_depth = 4;
    error_code ec;
    json::value body = json::parse(request_.body(), ec, {}, opts);
    if (ec) return write(error_response(invalid_argument("bad JSON body: " + ec.message())));
    auto request = parse_members(body);
    if (!request) return write(error_response(request.status()));
    if (Status st = engine_.request_membership(request->first, std::move(request->second)); !st) {
      return write(error_response(st));
    }
    json::object o;
    o["requested"] = true;
    o["epoch"] = request->first + 1;
    write(json_response(http::status::accepted, o));
  }

  static Result<std::pair<uint64_t, std::vector<cluster::NodeAddress>>> parse_members(
      const json::value& body) {
    const char* shape =
        "the body must be {\"expect_epoch\": N, \"members\": [{\"id\": 1, \"host\": "
        "\"127.0.0.1\", \"peer_port\": 7101, \"http_port\": ..., \"resp_port\": ..., "
        "\"native_port\": ...}, ...]}";
    const json::object* o = body.if_object();
    if (o == nullptr) return invalid_argument(shape);
    for (const auto& [key, value] : *o) {
      if (key != "expect_epoch" && key != "members") {
        return invalid_argument(fmt::format("unknown field \"{}\": {}", std::string_view(key), shape));
      }
    }
    auto number = [](const json::object& obj, std::string_view key, uint64_t max,
                     bool required) -> Result<uint64_t> {
      const json::value* v = obj.if_contains(key);
      if (v == nullptr) {
        if (required) return invalid_argument(fmt::format("\"{}\" is missing", key));
        return uint64_t{0};
      }
      if (const auto* u = v->if_uint64(); u != nullptr && *u <= max) return *u;
      if (const auto* i = v->if_int64(); i != nullptr && *i >= 0 && static_cast<uint64_t>(*i) <= max) {
        return static_cast<uint64_t>(*i);
      }
      return invalid_argument(fmt::format("\"{}\" must be an integer from 0 to {}", key, max));
    };
    auto epoch = number(*o, "expect_epoch", UINT64_MAX - 1, true);
    if (!epoch) return epoch.status();
    const json::value* list = o->if_contains("members");
    if (list == nullptr || !list->is_array()) return invalid_argument(shape);
    if (list->as_array().size() > cluster::address_book_entries_max) {
      return invalid_argument(fmt::format("more than {} members", cluster::address_book_entries_max));
    }
    std::vector<cluster::NodeAddress> members;
    for (const json::value& m : list->as_array()) {
      const json::object* e = m.if_object();
      if (e == nullptr) return invalid_argument(shape);
      for (const auto& [key, value] : *e) {
        if (key != "id" && key != "host" && key != "peer_port" && key != "http_port" &&
            key != "resp_port" && key != "native_port") {
          return invalid_argument(
              fmt::format("unknown member field \"{}\": {}", std::string_view(key), shape));
        }
      }
      cluster::NodeAddress a;
      auto id = number(*e, "id", UINT32_MAX, true);
      if (!id) return id.status();
      a.id = static_cast<uint32_t>(*id);
      const json::value* host = e->if_contains("host");
      if (host == nullptr || !host->is_string()) {
        return invalid_argument(fmt::format("member {}: \"host\" must be a string", a.id));
      }
      a.host = std::string(host->as_string());
      uint16_t* ports[] = {&a.peer_port, &a.http_port, &a.resp_port, &a.native_port};
      const char* names[] = {"peer_port", "http_port", "resp_port", "native_port"};
      for (size_t i = 0; i < 4; i++) {
        auto p = number(*e, names[i], 65535, i == 0);
        if (!p) return Status(p.status().code(), fmt::format("member {}: {}", a.id, p.status().message()));
        *ports[i] = static_cast<uint16_t>(*p);
      }
      members.push_back(std::move(a));
    }
    if (Status st = cluster::validate_address_book(members); !st) return st;
    return std::make_pair(*epoch, std::move(members));
  }

  void handle_status() {
    const EngineStatus s = engine_.status();
    json::object o;
    o["serving"] = s.serving;
    o["read_only"] = s.read_only;
    o["detail"] = valid_utf8(s.detail) ? s.detail : std::string("(not UTF-8)");
    o["node_id"] = s.node_id;
    o["data_id"] = fmt::format("{:016x}", s.data_id);
    o["range"] = s.range;
    o["applied_epoch"] = s.applied_epoch;
    o["applied_txs"] = s.applied_txs;
    o["state_hash"] = fmt::format("{:016x}", s.state_hash);
    o["inflight_txs"] = s.inflight_txs;
    o["role"] = s.role;
    o["view"] = s.view;
    o["primary"] = s.primary;
    o["commit_epoch"] = s.commit_epoch;
    o["held_txs"] = s.held_txs;
    o["epochs_waiting"] = s.epochs_waiting;
    o["quorum"] = s.quorum;
    o["unavailable_reason"] =
        valid_utf8(s.unavailable_reason) ? s.unavailable_reason : std::string("(not UTF-8)");
    json::object offsets;
    for (const auto& [range, offset] : s.offsets) offsets[std::to_string(range)] = offset;
    o["offsets"] = std::move(offsets);
    json::object snapshot;
    snapshot["epoch"] = s.snapshot_epoch;
    snapshot["bytes"] = s.snapshot_bytes;
    snapshot["taken"] = s.snapshots_taken;
    snapshot["in_progress"] = s.snapshot_in_progress;
    snapshot["error"] = valid_utf8(s.snapshot_error) ? s.snapshot_error : std::string("(not UTF-8)");
    snapshot["wal_first_segment"] = s.wal_first_segment;
    json::object transfer;
    const host::TransferStatus& t = s.transfer;
    transfer["needed"] = t.fetching;
    transfer["why"] = valid_utf8(t.why) ? t.why : std::string("(not UTF-8)");
    transfer["peer"] = t.peer;
    transfer["epoch"] = t.epoch;
    transfer["received"] = t.received;
    transfer["total"] = t.total;
    transfer["installed"] = t.installed;
    transfer["bytes_received"] = t.bytes_received;
    transfer["bytes_sent"] = t.bytes_sent;
    transfer["bootstrap_epoch"] = t.bootstrap_epoch;
    transfer["error"] = valid_utf8(t.last_error) ? t.last_error : std::string("(not UTF-8)");
    snapshot["transfer"] = std::move(transfer);
    o["snapshot"] = std::move(snapshot);
    json::object membership;
    membership["epoch"] = s.membership_epoch;
    json::array members;
    for (uint64_t id : s.members) members.push_back(id);
    membership["members"] = std::move(members);
    json::array removed;
    for (uint64_t id : s.removed) removed.push_back(id);
    membership["removed"] = std::move(removed);
    membership["switch_epoch"] = s.switch_epoch;
    membership["leaving"] = s.leaving;
    membership["retired"] = s.retired;
    o["membership"] = std::move(membership);
    if (s.backup) {
      const objstore::UploaderStatus& b = *s.backup;
      json::object backup;
      backup["store"] = valid_utf8(b.store) ? b.store : std::string("(not UTF-8)");
      backup["uploads"] = b.uploads;
      backup["failures"] = b.failures;
      backup["last_epoch"] = b.last_epoch;
      backup["last_bytes"] = b.last_bytes;
      backup["last_ms"] = b.last_ms;
      backup["pruned"] = b.pruned;
      backup["uploading"] = b.uploading;
      backup["pending_epoch"] = b.pending_epoch;
      backup["forced"] = b.forced;
      backup["forced_epoch"] = b.forced_epoch;
      backup["error"] = valid_utf8(b.last_error) ? b.last_error : std::string("(not UTF-8)");
      o["backup"] = std::move(backup);
    }
    Response res =
        json_response(s.serving ? http::status::ok : http::status::service_unavailable, o);
    if (!s.serving) res.set(http::field::retry_after, "1");
    write(std::move(res));
  }

  void handle_kv(std::string_view encoded_key, std::string_view query, http::verb method) {
    if (!percent_decode(encoded_key, key_)) {
      return write(error_response(invalid_argument("bad percent-encoding in key")));
    }
    if (key_.empty()) return write(error_response(invalid_argument("empty key")));
    auto params = parse_query(query);
    if (!params.is_ok()) return write(error_response(params.status()));

    kv::Op op{.keys = {key_}};
    enum class Cond { kNone, kIfAbsent, kCas, kCasAbsent } cond = Cond::kNone;
    for (QueryParam& p : *params) {
      Cond c;
      if (p.name == "if-absent" && method == http::verb::put) {
        c = Cond::kIfAbsent;
      } else if (p.name == "cas" && method == http::verb::put) {
        if (!p.value)
          return write(error_response(invalid_argument("cas needs a value: ?cas=<expected>")));
        c = Cond::kCas;
        expected_ = std::move(*p.value);
      } else if (p.name == "cas-absent" && method == http::verb::put) {
        c = Cond::kCasAbsent;
      } else {
        return write(error_response(
            invalid_argument(fmt::format("unknown query parameter \"{}\" for {}; PUT takes one of "
                                         "if-absent, cas=<expected>, cas-absent",
                                         p.name, std::string_view(request_.method_string())))));
      }
      if (cond != Cond::kNone) {
        return write(error_response(invalid_argument("at most one of if-absent, cas, cas-absent")));
      }
      cond = c;
    }

    switch (method) {
      case http::verb::get:
        op.type = kv::OpType::kGet;
        return execute(op, [this](kv::Reply r) {
          if (r.kind == kv::Reply::Kind::kValue) {
            return write(
                make_response(http::status::ok, std::move(r.value), "application/octet-stream"));
          }
          if (r.kind == kv::Reply::Kind::kNil) {
            return write(error_response(http::status::not_found, "key not found", Code::kNotFound));
          }
          write_reply_error(r);
        });
      case http::verb::delete_:
        op.type = kv::OpType::kDel;
        return execute(op, [this](kv::Reply r) {
          if (r.kind != kv::Reply::Kind::kInt) return write_reply_error(r);
          json::object o;
          o["deleted"] = r.integer;
          write(json_response(http::status::ok, o));
        });
      case http::verb::put: {
        const std::string_view value = request_.body();
        if (cond == Cond::kNone || cond == Cond::kIfAbsent) {
          op.type = kv::OpType::kSet;
          op.values = {value};
          if (cond == Cond::kIfAbsent) op.cond = kv::SetCond::kIfAbsent;
          return execute(op, [this](kv::Reply r) {
            if (r.kind == kv::Reply::Kind::kOk) return write_ok();
            if (r.kind == kv::Reply::Kind::kNil) {
              return write(error_response(http::status::conflict, "key exists", Code::kConflict));
            }
            write_reply_error(r);
          });
        }
        op.type = kv::OpType::kCas;
        op.values = {value};
        if (cond == Cond::kCas) op.expected = expected_;
        return execute(op, [this](kv::Reply r) {
          if (r.kind == kv::Reply::Kind::kOk) return write_ok();
          if (r.kind == kv::Reply::Kind::kError && r.error == Code::kConflict)
            return write_cas_conflict(r.value);
          write_reply_error(r);
        });
      }
      default:
        MAROON_UNREACHABLE();
    }
  }

  // 409 with the value the key holds now (read after the failed CAS, so it
  // may already be newer than the one that made the CAS fail).
  void write_cas_conflict(const std::string& message) {
    json::object o;
    o["error"] = message.empty() ? std::string("value differs from expected") : message;
    o["code"] = code_name(Code::kConflict);
    kv::Op get{.type = kv::OpType::kGet, .keys = {key_}};
    Result<std::string> now = engine_.read(AppId::kKv, kv::encode_op(get));
    if (now.is_ok()) {
      auto reply = kv::decode_reply(*now);
      if (reply.is_ok() && reply->kind == kv::Reply::Kind::kNil) o["current"] = nullptr;
      if (reply.is_ok() && reply->kind == kv::Reply::Kind::kValue && valid_utf8(reply->value)) {
        o["current"] = reply->value;
      }
    }
    write(json_response(http::status::conflict, o));
  }

  // GET /v1/apps: the apps this process runs (docs/apps.md).
  void handle_apps() {
    json::array apps;
    for (const AppInfo& app : engine_.apps().apps()) {
      json::object o;
      o["name"] = app.name;
      o["id"] = fmt::format("{:#010x}", app.id.value());
      o["summary"] = app.summary;
      apps.push_back(std::move(o));
    }
    json::object o;
    o["apps"] = std::move(apps);
    write(json_response(http::status::ok, o));
  }

  // POST /v1/apps/{name}: the body is one op of that app, ordered and
  // executed; the response body is the app's reply, as it encoded it.
  // POST /v1/apps/{name}/read: StateMachine::read against this node's
  // applied state, unordered (a gateway, which holds none, refuses it).
  // A read is never ordered here: apply might write, and read-only users
  // may read. docs/apps.md.
  void handle_app_op(std::string_view rest) {
    static constexpr std::string_view kReadSuffix = "/read";
    const bool read = rest.ends_with(kReadSuffix);
    const std::string_view name = read ? rest.substr(0, rest.size() - kReadSuffix.size()) : rest;
    const AppInfo* app = engine_.apps().find(name);
    if (app == nullptr) {
      std::string known;
      for (const AppInfo& a : engine_.apps().apps()) known += (known.empty() ? "" : ", ") + a.name;
      return write(error_response(
          http::status::not_found,
          fmt::format("unknown app \"{}\"; this process runs: {}", name.substr(0, kAppNameBytesMax + 8),
                      known),
          Code::kNotFound));
    }
    if (!read && !may_write()) return refuse_read_only();
    std::string op = std::move(request_.body());
    if (read) {
      Result<std::string> r = engine_.read(app->id, op);
      if (!r) return write(error_response(r.status()));
      return write(make_response(http::status::ok, std::move(*r), "application/octet-stream"));
    }
    pending_ = true;
    engine_.submit(app->id, std::move(op),
                   [weak = weak_from_this()](const Status& s, std::string_view reply) {
                     auto self = weak.lock();
                     if (!self || self->closed_) return;
                     self->pending_ = false;
                     if (!s) return self->write(error_response(s));
                     self->write(make_response(http::status::ok, std::string(reply),
                                               "application/octet-stream"));
                   });
  }

  void handle_tx() {
    json::parse_options opts;
    opts.max_depth = 8;
    error_code ec;
    tx_json_ = json::parse(request_.body(), ec, {}, opts);
    if (ec) {
      return write(error_response(invalid_argument("bad JSON body: " + ec.message())));
    }
    if (!tx_json_.is_object()) {
      return write(
          error_response(invalid_argument("the body must be a JSON object with an \"op\" field")));
    }
    auto tx = parse_tx(tx_json_.get_object());
    if (!tx.is_ok()) return write(error_response(tx.status()));
    const bool nil_is_not_ok = tx->nil_is_not_ok;
    execute(tx->op, [this, nil_is_not_ok](kv::Reply r) {
      auto j = reply_to_json(r, nil_is_not_ok);
      if (!j.is_ok()) return write(error_response(j.status()));
      write(json_response(http::status::ok, *j));
    });
  }

  // Validates and runs an op: reads against applied state now, writes through
  // the engine. `on_reply` runs once with the decoded reply (on this session,
  // which is still open); engine-level failures become error responses.
  template <typename F>
  void execute(const kv::Op& op, F on_reply) {
    if (Status s = kv::validate(op); !s.is_ok()) return write(error_response(s));
    if (!kv::is_read_only(op.type) && !may_write()) return refuse_read_only();
    std::string bytes;
    kv::encode_op(op, bytes);
    if (kv::is_read_only(op.type) && !engine_.orders_reads()) {
      Result<std::string> r = engine_.read(AppId::kKv, bytes);
      return deliver(r.is_ok() ? Status::ok() : r.status(), r.is_ok() ? std::string_view(*r) : "",
                     on_reply);
    }
    pending_ = true;
    engine_.submit(AppId::kKv, std::move(bytes),
                   [weak = weak_from_this(), on_reply](const Status& s, std::string_view reply) {
                     auto self = weak.lock();
                     if (!self || self->closed_) return;
                     self->pending_ = false;
                     self->deliver(s, reply, on_reply);
                   });
  }

  template <typename F>
  void deliver(const Status& s, std::string_view reply_bytes, const F& on_reply) {
    if (!s.is_ok()) return write(error_response(s));
    auto reply = kv::decode_reply(reply_bytes);
    if (!reply.is_ok()) {
      return write(error_response(
          Status(Code::kCorruption, "engine reply did not decode: " + reply.status().message())));
    }
    on_reply(std::move(reply).value());
  }

  void write_ok() {
    json::object o;
    o["ok"] = true;
    write(json_response(http::status::ok, o));
  }

  void write_reply_error(const kv::Reply& r) {
    if (r.kind == kv::Reply::Kind::kError) return write(error_response(Status(r.error, r.value)));
    write(error_response(Status(Code::kCorruption, "unexpected reply kind from the kv app")));
  }

  // ---- writing ----

  void write(Response res) {
    if (closed_) return;
    MAROON_ASSERT(!pending_);
    res_ = std::move(res);
    if (!budget_.cover(res_.body().size(), "a response")) {
      res_ = error_response(http::status::service_unavailable,
                            "the server's client buffer budget is spent; retry later",
                            Code::kUnavailable);
      budget_.release_all();
    }
    res_.version(version_ == 10 ? 10 : 11);
    res_.keep_alive(keep_alive_);
    res_.prepare_payload();
    stream_.expires_after(http_write_timeout);
    http::async_write(stream_, res_,
                      [self = shared_from_this()](error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    if (closed_) return;
    res_ = {};
    request_ = {};
    tx_json_ = nullptr;
    budget_.release_all();
    if (ec) return close();
    if (!keep_alive_) return linger();
    read_header();
  }

  // Half-closes, then reads and discards what the client still sends before
  // closing. Closing a socket with unread input sends RST, which can destroy
  // the response (e.g. a 413 or 400) before the client has read it.
  void linger() {
    stream_.shutdown_send();
    stream_.expires_after(http_linger_timeout);
    if (!linger_buffer_) linger_buffer_ = std::make_unique<std::array<char, 4096>>();
    stream_.async_read_some(asio::buffer(*linger_buffer_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (self->closed_) return;
                              self->lingered_bytes_ += n;
                              if (ec || self->lingered_bytes_ > http_linger_bytes_max)
                                return self->close();
                              self->linger();
                            });
  }

  Engine& engine_;
  Metrics& metrics_;
  ClientResources& resources_;
  const ClientSecurity& security_;
  const User* user_ = nullptr;  // who sent the request being answered (with users)
  BudgetHold budget_;  // the request body, then the response, beyond client_free_bytes
  ClientStream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::empty_body>> continue_;
  http::request<http::string_body> request_;
  Response res_;
  // Request-scoped storage that ops point into until they are encoded.
  std::string key_;
  std::string expected_;
  json::value tx_json_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool pending_ = false;  // an engine reply is owed
  bool closed_ = false;
  bool reading_header_ = false;
  bool handshaking_ = false;  // TLS: header_started_ is when it began
  std::chrono::steady_clock::time_point header_started_{};
  uint64_t requests_ = 0;  // headers received on this connection
  std::unique_ptr<std::array<char, 4096>> linger_buffer_;
  size_t lingered_bytes_ = 0;
};

HttpServer::HttpServer(asio::io_context& io, Engine& engine, std::string host, uint16_t port,
                       ClientResources& resources, ClientSecurity security)
    : engine_(engine),
      metrics_(std::make_unique<Metrics>(engine.metrics())),
      resources_(resources),
      security_(std::move(security)),
      listener_(io, resources_,
                {.name = "http server",
                 .host = std::move(host),
                 .port = port,
                 .client_port = ClientPort::kHttp,
                 .refusal = refusal_unless_tls(
                     security_,
                     [](std::string_view why) {
                       Response res =
                           error_response(http::status::service_unavailable, why, Code::kOverloaded);
                       res.keep_alive(false);
                       res.prepare_payload();
                       std::ostringstream out;
                       out << res;
                       return std::move(out).str();
                     }),
                 .evict_idle = true},
                {.open = metrics_->connections, .refused = metrics_->rejected},
                [this](tcp::socket socket) {
                  return std::make_shared<Session>(*this, std::move(socket));
                }) {}

HttpServer::~HttpServer() = default;

}  // namespace maroon::server
