// The native binary protocol server (protocol/frame.h, protocol/client_messages.h)
// on one event-loop thread. Requests are pipelined: a connection keeps reading
// while earlier requests are in flight, and answers each as the engine
// completes it, so responses may come back out of order (matched by
// request_id). Responses finished in the same loop turn go out in one write.
//
// Bounds: a connection stops reading (TCP backpressure) while it has
// limits::connection_inflight_requests_max requests unanswered or
// native_write_bytes_max bytes of responses unsent; at most
// limits::connections_max connections are open (more are closed on accept).
// A bad frame or malformed message gets an error Response (request_id 0) and
// that connection is closed; other connections are unaffected.
#pragma once

#include <boost/asio/io_context.hpp>
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

// Responses buffered for one connection before it stops reading requests.
inline constexpr size_t native_write_bytes_max = limits::connection_read_bytes_max;
inline constexpr size_t native_read_chunk_bytes = 64 * 1024;
static_assert(native_read_chunk_bytes <= limits::connection_read_bytes_max);
// With users, bytes buffered for a connection that has not logged in.
inline constexpr size_t native_unauthenticated_bytes_max = 16 * 1024;

class NativeServer {
 public:
  // `engine` must outlive the server and any engine callbacks it hands out.
  // `resources` (shared by the process's client servers) must outlive the
  // server.
  NativeServer(boost::asio::io_context& io, Engine& engine, std::string host, uint16_t port,
             ClientResources& resources, ClientSecurity security = {});
  ~NativeServer();
  NativeServer(const NativeServer&) = delete;
  NativeServer& operator=(const NativeServer&) = delete;

  // Binds and starts accepting. Port 0 picks a free port (see port()).
  Status start() { return listener_.start(); }
  uint16_t port() const { return listener_.port(); }
  // Stops accepting and closes every connection; replies still owed by the
  // engine are dropped when they arrive. Idempotent; call on the loop thread.
  void stop() { listener_.stop(); }

  size_t connection_count() const { return listener_.connection_count(); }

 private:
  class Connection;
  friend class Connection;

  Engine& engine_;
  struct Metrics;
  std::unique_ptr<Metrics> metrics_;
  ClientResources& resources_;
  const ClientSecurity security_;
  Listener listener_;  // last: it closes the connections before the rest goes
};

}  // namespace maroon::server
