// The RESP front end (docs/resp.md): RESP2 and, after HELLO 3, RESP3, for
// stock Redis clients (redis-cli, redis-benchmark, redis-py, node-redis,
// ioredis), pipelining included, over the kv app. MULTI/EXEC runs as one kv
// tx; WATCH reads key stamps through the engine, EXEC carries them as
// conditions checked when the tx applies.
//
// Credentials (ClientSecurity::users): a connection runs nothing but AUTH,
// HELLO ... AUTH and QUIT until it logs in (NOAUTH), and a read-only user's
// writes are refused (NOPERM). Without users, Redis's out-of-the-box setup:
// everyone is the "default" user, which any password logs in.
//
// Threading: everything runs on the io_context's one event-loop thread, the
// Engine included. Per connection, requests are answered in the order they
// arrived; a read (GET, MGET, EXISTS, DBSIZE) never runs before an earlier
// write on the same connection has been answered, and a write is not
// submitted before an earlier read on that connection has run, so each
// connection sees its own requests take effect in order.
//
// Limits (maroon/limits.h): per connection at most
// connection_inflight_requests_max requests without a reply (then the socket
// is not read until replies drain: backpressure, not an error) and at most
// connection_read_bytes_max bytes buffered; at most connections_max
// connections (extras get an error and are closed).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "maroon/status.h"
#include "server/engine.h"
#include "server/client_resources.h"
#include "server/client_security.h"
#include "server/listener.h"
#include "server/metrics.h"
#include "server/resp_clients.h"

namespace maroon::server {

class RespServer {
 public:
  // `engine`, `io` and `resources` (shared by the process's client servers)
  // must outlive the server. `port` 0 picks a free port.
  RespServer(boost::asio::io_context& io, Engine& engine, std::string host, uint16_t port,
             ClientResources& resources, ClientSecurity security = {});
  ~RespServer();
  RespServer(const RespServer&) = delete;
  RespServer& operator=(const RespServer&) = delete;

  // Binds and starts accepting; errors (bad host, port in use) as a Status.
  Status start() { return listener_.start(); }
  // The port bound by start() (the actual one when 0 was asked for).
  uint16_t port() const { return listener_.port(); }
  // Stops accepting and closes every connection; replies still owed are
  // dropped. Idempotent; the destructor calls it.
  void stop() { listener_.stop(); }

  size_t connection_count() const { return listener_.connection_count(); }

  // Shared with connections; they stop touching it once closed.
  struct Metrics {
    Counter& commands;
    Counter& errors;
    Counter& connections_accepted;
    Counter& connections_refused;
    Gauge& connections_open;
  };

  class Connection;

 private:
  Engine& engine_;
  ClientResources& resources_;
  const ClientSecurity security_;
  uint64_t next_connection_id_ = 1;
  Metrics metrics_;
  // This server's open connections, for CLIENT LIST and CLIENT KILL; a
  // connection leaves it when it closes, before the listener forgets it.
  RespClientRegistry clients_;
  // Holds the open connections. A closed connection leaves it at once; its
  // object lives on only until its outstanding socket operations complete,
  // and engine callbacks reach it through a weak_ptr. Last: it closes the
  // connections before the rest goes.
  Listener listener_;
};

}  // namespace maroon::server
