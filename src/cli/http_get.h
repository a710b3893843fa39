// A small blocking HTTP GET for the CLI: `maroon status`, `maroon cluster up`.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "cluster/config.h"
#include "maroon/status.h"

namespace maroon::cli {

struct HttpResponse {
  int status = 0;  // e.g. 200, 503
  std::string body;
};

// GETs http://host:port{target}, or https:// with `tls` (a client context:
// https_context_trusting). Connecting, the TLS handshake, sending and
// reading together take at most `timeout`. A connection, TLS or protocol
// failure is kUnavailable with a short reason ("Connection refused", "timed
// out", "certificate verify failed"). A `token` is sent as "Authorization:
// Bearer <token>".
Result<HttpResponse> http_get(const std::string& host, uint16_t port, const std::string& target,
                              std::chrono::milliseconds timeout,
                              boost::asio::ssl::context* tls = nullptr,
                              const std::string& token = {});

// As http_get, a POST (admin actions) with `body` as JSON, or empty.
Result<HttpResponse> http_post(const std::string& host, uint16_t port, const std::string& target,
                               std::chrono::milliseconds timeout,
                               boost::asio::ssl::context* tls = nullptr,
                               const std::string& token = {}, const std::string& body = {});

// A client context for http_get that trusts the certificates in
// `trust_file` (PEM), each as an anchor of its own: a server presenting one
// of them, or a certificate one of them signed, passes. The server's
// certificate must name the host dialled.
Result<std::shared_ptr<boost::asio::ssl::context>> https_context_trusting(
    const std::string& trust_file);

// How the cluster tools reach a process's HTTP port: null (plain HTTP)
// without [client_tls]; with it, https_context_trusting its `cert` file.
Result<std::shared_ptr<boost::asio::ssl::context>> cluster_http_tls(
    const cluster::ClusterConfig& config);

}  // namespace maroon::cli
