// `maroon kv`: a small HTTP client of a running node.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/json.hpp>

#include <cstdio>
#include <string>

#include "cli/commands.h"

namespace maroon::cli {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// Sends one request; returns the status code, or -1 with an error printed.
int request(const ClientOptions& o, http::verb verb, const std::string& target,
            const std::string& body, std::string& response_body) {
  try {
    boost::asio::io_context io;
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(10));
    stream.connect(resolver.resolve(o.host, std::to_string(o.http_port)));
    // The synchronous calls below ignore expires_after: bound them in the
    // kernel, so a stopped node cannot hang the command.
    timeval timeout{10, 0};
    ::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, o.host);
    req.set(http::field::user_agent, "maroon-cli");
    if (!o.token.empty()) req.set(http::field::authorization, "Bearer " + o.token);
    if (verb == http::verb::put) {
      req.body() = body;
      req.set(http::field::content_type, "application/octet-stream");
      req.prepare_payload();
    }
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    response_body = res.body();
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return static_cast<int>(res.result_int());
  } catch (const boost::system::system_error& e) {
    std::fprintf(stderr, "maroon: %s:%u: %s\n", o.host.c_str(), o.http_port,
                 e.code().message().c_str());
    return -1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "maroon: %s:%u: %s\n", o.host.c_str(), o.http_port, e.what());
    return -1;
  }
}

}  // namespace

int run_kv(const ClientOptions& o, const std::string& verb, const std::string& key,
           const std::string& value) {
  std::string target = "/v1/kv/" + percent_encode(key);
  std::string body;
  http::verb v = verb == "get" ? http::verb::get : verb == "put" ? http::verb::put : http::verb::delete_;
  int code = request(o, v, target, value, body);
  if (code < 0) return 1;
  if (verb == "get" && code == 404) {
    std::fprintf(stderr, "(nil)\n");
    return 1;
  }
  if (code != 200) {
    // Quorum loss has its own exit statuses (docs/cluster.md): 3 = not
    // executed (no quorum; retry later), 4 = outcome unknown.
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(body, ec);
    if (!ec && v.is_object()) {
      const boost::json::value* c = v.as_object().if_contains("code");
      const boost::json::value* e = v.as_object().if_contains("error");
      if (c != nullptr && c->is_string() && e != nullptr && e->is_string()) {
        const std::string cs(c->get_string());
        if (cs == "no quorum" || cs == "outcome unknown") {
          std::fprintf(stderr, "maroon: unavailable (HTTP %d): %s\n", code,
                       std::string(e->get_string()).c_str());
          return cs == "no quorum" ? 3 : 4;
        }
      }
    }
    std::fprintf(stderr, "maroon: HTTP %d: %s\n", code, body.c_str());
    return 1;
  }
  std::fwrite(body.data(), 1, body.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace maroon::cli
