// The TCP acceptor the client-facing servers share (HTTP, RESP, native): binds,
// accepts up to a connection limit, and keeps the table of open connections
// that stop() closes. The protocol lives in each server's Connection class,
// which the listener creates through a factory and knows only through
// Listener::Connection.
//
// Ownership: the listener holds one shared_ptr per open connection; a
// connection that closes on its own calls leave() to drop it. stop() clears
// the connections' back pointers before closing them, so nothing calls into a
// stopped (or destroyed) listener. Accept and retry handlers check a weak
// token, so a completion queued when the listener is destroyed touches nothing.
//
// Bounds: at most Options::connections_max connections, and the slots
// ClientResources grants (all client ports, per remote address); more are
// refused at accept (sent Options::refusal's message, then closed). With
// Options::evict_idle, a full listener first closes its connection idle the
// longest (HTTP: a keep-alive or slow client still sending headers), so an
// idle crowd cannot lock everyone out. Out of file descriptors at accept, the
// listener frees a spare descriptor it keeps for this, accepts, refuses and
// closes the connection, and counts and logs it: clients get an answer, not a
// hang. After any other accept error the next accept waits
// accept_retry_delay instead of spinning. Once a second, every connection's
// tick() runs (request and stall timeouts). Everything runs on the
// io_context's one loop thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "maroon/limits.h"
#include "maroon/status.h"
#include "server/client_resources.h"
#include "server/metrics.h"

namespace maroon::server {

inline constexpr std::chrono::milliseconds accept_retry_delay{100};
inline constexpr std::chrono::milliseconds listener_tick_interval{1000};

class Listener {
 public:
  // One accepted connection, as the listener sees it.
  class Connection {
   public:
    virtual ~Connection() = default;
    // Begins serving; called once, right after the listener registered it.
    virtual void start() = 0;
    // Closes the socket; idempotent. Also how stop() closes a connection,
    // after clearing listener(), so it must not need the listener.
    virtual void close() = 0;
    // Once a second: close on a request or stall timeout. May call close().
    virtual void tick(std::chrono::steady_clock::time_point /*now*/) {}
    // With Options::evict_idle: when this connection became idle (nothing
    // owed, no request complete), or nullopt while it is busy.
    virtual std::optional<std::chrono::steady_clock::time_point> idle_since() const {
      return std::nullopt;
    }

   protected:
    // The listener while this connection is in its table; null once the
    // connection left or the listener stopped. Through it, and only while it
    // is set, a connection may reach its server.
    Listener* listener() const { return listener_; }
    // The client's address; set before start().
    const boost::asio::ip::address& remote() const { return remote_; }
    // Drops the listener's reference; the caller must hold its own. Call on
    // close; a no-op once left or stopped.
    void leave();

   private:
    friend class Listener;
    Listener* listener_ = nullptr;
    boost::asio::ip::address remote_;  // its slot in ClientResources
  };

  // Builds the connection for an accepted socket; it starts after it is registered.
  using Factory = std::function<std::shared_ptr<Connection>(boost::asio::ip::tcp::socket)>;

  struct Options {
    std::string name;  // prefixes start()'s errors, e.g. "http server"
    std::string host;
    uint16_t port = 0;  // 0 picks a free port
    ClientPort client_port = ClientPort::kNative;
    size_t connections_max = limits::connections_max;
    // What a refused connection is sent before it is closed, given why;
    // null (or an empty result) closes it at once.
    std::function<std::string(std::string_view why)> refusal;
    bool evict_idle = false;
  };

  // The server's metrics; they must outlive the listener.
  struct Metrics {
    Gauge& open;
    Counter& refused;
    Counter* accepted = nullptr;  // not counted when null
  };

  // `resources` must outlive the listener.
  Listener(boost::asio::io_context& io, ClientResources& resources, Options options,
           Metrics metrics, Factory make);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Resolves, binds and starts accepting; errors (bad host, port in use) as a Status.
  Status start();
  // The port bound by start() (the actual one when 0 was asked for); 0 before.
  uint16_t port() const { return bound_port_; }
  // Stops accepting and closes every connection. Idempotent.
  void stop();

  size_t connection_count() const { return connections_.size(); }

 private:
  void accept();
  void on_accept_error(const boost::system::error_code& ec);
  void admit(boost::asio::ip::tcp::socket socket);
  void refuse(boost::asio::ip::tcp::socket socket, std::string_view why);
  bool evict_one();
  void forget(Connection* c);
  void tick();
  void open_spare();

  boost::asio::io_context& io_;
  ClientResources& resources_;
  const Options options_;
  const Metrics metrics_;
  const Factory make_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  boost::asio::steady_timer tick_timer_;
  int spare_fd_ = -1;  // freed to accept and refuse a connection at EMFILE
  uint16_t bound_port_ = 0;
  bool running_ = false;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
  // Expires with the listener; queued accept and retry handlers check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace maroon::server
