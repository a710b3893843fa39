// HTTP/1.1 + JSON front end (Boost.Beast) on the event-loop thread. Routes,
// bodies and status codes are documented in docs/formats/frames.md ("HTTP
// API"). Keep-alive; one request at a time per connection, so pipelined
// requests wait in the read buffer and are answered in order.
//
// Bounds: request headers (request line included) <= http_header_bytes_max,
// bodies <= limits::op_bytes_max (413 otherwise), at most
// limits::connections_max connections (more are closed on accept), and a
// connection that sends nothing for http_idle_timeout is closed. A malformed
// request gets 400 and its connection is closed; others are unaffected.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "maroon/limits.h"
#include "maroon/status.h"
#include "server/engine.h"
#include "server/client_resources.h"
#include "server/client_security.h"
#include "server/listener.h"

namespace maroon::server {

// Room for a percent-encoded maximum-size key (3 bytes per key byte) plus headers.
inline constexpr size_t http_header_bytes_max = 3 * limits::key_bytes_max + 16 * 1024;
// A keep-alive connection waiting for its next request.
inline constexpr std::chrono::seconds http_idle_timeout{120};

// A response that the client does not read within this long closes the connection.
inline constexpr std::chrono::seconds http_write_timeout{60};
// Before closing, a connection reads and discards what the client still sends
// (so the client sees the response, not a reset) for at most this long / this much.
inline constexpr std::chrono::seconds http_linger_timeout{2};
inline constexpr size_t http_linger_bytes_max = limits::op_bytes_max;
// POST /v1/tx {"op":"scan"} without "limit".
inline constexpr uint32_t http_scan_limit_default = 100;
static_assert(http_scan_limit_default <= limits::op_keys_max);

class HttpServer {
 public:
  // `engine` must outlive the server and any engine callbacks it hands out.
  // `resources` (shared by the process's client servers) must outlive the
  // server.
  HttpServer(boost::asio::io_context& io, Engine& engine, std::string host, uint16_t port,
             ClientResources& resources, ClientSecurity security = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. Port 0 picks a free port (see port()).
  Status start() { return listener_.start(); }
  uint16_t port() const { return listener_.port(); }
  // Stops accepting and closes every connection. Idempotent; loop thread only.
  void stop() { listener_.stop(); }

  size_t connection_count() const { return listener_.connection_count(); }

 private:
  class Session;
  friend class Session;

  Engine& engine_;
  struct Metrics;
  std::unique_ptr<Metrics> metrics_;
  ClientResources& resources_;
  const ClientSecurity security_;
  Listener listener_;  // last: it closes the sessions before the rest goes
};

}  // namespace maroon::server
