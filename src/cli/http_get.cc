#include "cli/http_get.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <type_traits>
#include <utility>

namespace maroon::cli {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// `Stream` is beast::tcp_stream or TlsStream over it.
template <class Stream>
Result<HttpResponse> get(boost::asio::io_context& io, Stream& stream, const std::string& host,
                         uint16_t port, const std::string& target,
                         std::chrono::milliseconds timeout, const std::string& token,
                         http::verb method = http::verb::get, const std::string& body = {}) {
  // Each step is asynchronous so that one deadline bounds all of them,
  // name resolution included; the steps run one after another.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  tcp::resolver resolver(io);
  beast::error_code ec;
  bool done = false;
  auto run_step = [&]() -> bool {
    io.restart();
    io.run_until(deadline);
    if (!done) {
      resolver.cancel();
      beast::error_code ignored;
      beast::get_lowest_layer(stream).socket().close(ignored);
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

  beast::get_lowest_layer(stream).async_connect(
      endpoints, [&](const beast::error_code& e, const tcp::endpoint&) {
        ec = e;
        done = true;
      });
  if (!run_step()) return failed();

  if constexpr (std::is_same_v<Stream, TlsStream>) {
    stream.set_verify_callback(ssl::host_name_verification(host));
    if (!is_ip_literal(host)) SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
    stream.async_handshake(ssl::stream_base::client, [&](const beast::error_code& e) {
      ec = e;
      done = true;
    });
    if (!run_step()) return failed();
  }

  http::request<http::string_body> req{method, target, 11};
  if (method == http::verb::post) {
    req.body() = body;
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.prepare_payload();
  }
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
  beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
  return HttpResponse{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace

Result<HttpResponse> http_get(const std::string& host, uint16_t port, const std::string& target,
                              std::chrono::milliseconds timeout, ssl::context* tls,
                              const std::string& token) {
  boost::asio::io_context io(1);
  if (tls == nullptr) {
    beast::tcp_stream stream(io);
    return get(io, stream, host, port, target, timeout, token);
  }
  TlsStream stream(io, *tls);
  return get(io, stream, host, port, target, timeout, token);
}

Result<HttpResponse> http_post(const std::string& host, uint16_t port, const std::string& target,
                               std::chrono::milliseconds timeout, ssl::context* tls,
                               const std::string& token, const std::string& body) {
  boost::asio::io_context io(1);
  if (tls == nullptr) {
    beast::tcp_stream stream(io);
    return get(io, stream, host, port, target, timeout, token, http::verb::post, body);
  }
  TlsStream stream(io, *tls);
  return get(io, stream, host, port, target, timeout, token, http::verb::post, body);
}

Result<std::shared_ptr<ssl::context>> https_context_trusting(const std::string& trust_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  beast::error_code ec;
  ctx->load_verify_file(trust_file, ec);
  if (ec) return invalid_argument(fmt::format("{}: {}", trust_file, ec.message()));
  // Each certificate in the file is an anchor, leaf or CA alike.
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx->native_handle()), X509_V_FLAG_PARTIAL_CHAIN);
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

Result<std::shared_ptr<ssl::context>> cluster_http_tls(const cluster::ClusterConfig& config) {
  if (!config.client_tls_on()) return std::shared_ptr<ssl::context>();
  Result<std::shared_ptr<ssl::context>> tls = https_context_trusting(config.client_tls.cert);
  if (!tls.is_ok()) {
    return Status(tls.status().code(),
                  fmt::format("[client_tls] of {}: {}", config.path, tls.status().message()));
  }
  return tls;
}

}  // namespace maroon::cli
