#include "cli/http_get.h"

#include <fmt/format.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <utility>

namespace maroon::cli {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

Result<HttpResponse> http_get(const std::string& host, uint16_t port, const std::string& target,
                              std::chrono::milliseconds timeout, const std::string& token) {
  // Each step is asynchronous so that one deadline bounds all of them,
  // name resolution included; the steps run one after another.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  boost::asio::io_context io(1);
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::error_code ec;
  bool done = false;
  auto run_step = [&]() -> bool {
    io.restart();
    io.run_until(deadline);
    if (!done) {
      resolver.cancel();
      beast::error_code ignored;
      stream.socket().close(ignored);
      io.restart();
      io.run();
      ec = boost::asio::error::timed_out;
    }
    done = false;
    return !ec;
  };
  auto failed = [&]() -> Status {
    return unavailable(ec == boost::asio::error::timed_out
                           ? fmt::format("no answer within {} ms", timeout.count())
                           : ec.message());
  };

  tcp::resolver::results_type endpoints;
  resolver.async_resolve(host, std::to_string(port),
                         [&](const beast::error_code& e, tcp::resolver::results_type r) {
                           ec = e;
                           endpoints = std::move(r);
                           done = true;
                         });
  if (!run_step()) return failed();

  stream.async_connect(endpoints, [&](const beast::error_code& e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  if (!run_step()) return failed();

  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "maroon-cli");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  http::async_write(stream, req, [&](const beast::error_code& e, size_t) {
    ec = e;
    done = true;
  });
  if (!run_step()) return failed();

  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::async_read(stream, buffer, res, [&](const beast::error_code& e, size_t) {
    ec = e;
    done = true;
  });
  if (!run_step()) return failed();

  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return HttpResponse{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace maroon::cli
