#include "server/listener.h"

#include <fmt/format.h>

#include <boost/asio/write.hpp>
#include <utility>

#include "common/assert.h"

namespace maroon::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

void Listener::Connection::leave() {
  if (listener_ == nullptr) return;
  std::exchange(listener_, nullptr)->forget(this);
}

Listener::Listener(asio::io_context& io, Options options, Metrics metrics, Factory make)
    : io_(io),
      options_(std::move(options)),
      metrics_(metrics),
      make_(std::move(make)),
      acceptor_(io),
      accept_retry_(io) {
  MAROON_ASSERT(make_ != nullptr);
  MAROON_ASSERT(options_.connections_max > 0);
}

Listener::~Listener() {
  stop();
  alive_.reset();
}

Status Listener::start() {
  MAROON_ASSERT(!running_ && !acceptor_.is_open());
  error_code ec;
  tcp::resolver resolver(io_);
  const auto endpoints =
      resolver.resolve(options_.host, std::to_string(options_.port),
                       tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return unavailable(fmt::format("{}: cannot resolve '{}': {}", options_.name, options_.host,
                                   ec ? ec.message() : "no addresses"));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  const auto fail = [&](const char* what) {
    error_code ignored;
    acceptor_.close(ignored);
    return unavailable(fmt::format("{}: cannot {} {}:{}: {}", options_.name, what, options_.host,
                                   options_.port, ec.message()));
  };
  if (acceptor_.open(endpoint.protocol(), ec)) return fail("open a socket for");
  if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec)) {
    return fail("set SO_REUSEADDR on");
  }
  if (acceptor_.bind(endpoint, ec)) return fail("bind");
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) return fail("listen on");
  bound_port_ = acceptor_.local_endpoint(ec).port();
  if (ec) return fail("get the port of");
  running_ = true;
  accept();
  return Status::ok();
}

void Listener::accept() {
  // A completed accept may still be queued when the listener is destroyed;
  // the handler checks `alive` before touching `this`.
  acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](error_code ec,
                                                                      tcp::socket socket) {
    if (alive.expired() || !running_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      accept_retry_.expires_after(accept_retry_delay);
      accept_retry_.async_wait([this, alive](error_code wait_ec) {
        if (alive.expired() || wait_ec || !running_) return;
        accept();
      });
      return;
    }
    if (connections_.size() >= options_.connections_max) {
      refuse(std::move(socket));
    } else {
      admit(std::move(socket));
    }
    accept();
  });
}

void Listener::admit(tcp::socket socket) {
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (metrics_.accepted != nullptr) metrics_.accepted->inc();
  std::shared_ptr<Connection> c = make_(std::move(socket));
  MAROON_ASSERT(c != nullptr && c->listener_ == nullptr);
  c->listener_ = this;
  connections_.emplace(c.get(), c);
  metrics_.open.set(static_cast<int64_t>(connections_.size()));
  c->start();
}

void Listener::refuse(tcp::socket socket) {
  metrics_.refused.inc();
  if (options_.refusal.empty()) {
    error_code ignored;
    socket.close(ignored);
    return;
  }
  // The handler owns the socket and the message until the write ends; it
  // does not touch the listener.
  struct Refused {
    tcp::socket socket;
    std::string message;
  };
  auto r = std::make_shared<Refused>(Refused{std::move(socket), options_.refusal});
  asio::async_write(r->socket, asio::buffer(r->message), [r](error_code, size_t) {
    error_code ignored;
    r->socket.shutdown(tcp::socket::shutdown_send, ignored);
    r->socket.close(ignored);
  });
}

void Listener::forget(Connection* c) {
  const size_t erased = connections_.erase(c);
  MAROON_ASSERT(erased == 1);
  metrics_.open.set(static_cast<int64_t>(connections_.size()));
}

void Listener::stop() {
  running_ = false;
  error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  // Cleared first: a connection's close() must not reach back into the table.
  auto open = std::move(connections_);
  connections_.clear();
  for (auto& [raw, c] : open) {
    c->listener_ = nullptr;
    c->close();
  }
  metrics_.open.set(0);
}

}  // namespace maroon::server
