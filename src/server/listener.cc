#include "server/listener.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <boost/asio/write.hpp>
#include <utility>
#include <vector>

#include "maroon/assert.h"

namespace maroon::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

void Listener::Connection::leave() {
  if (listener_ == nullptr) return;
  std::exchange(listener_, nullptr)->forget(this);
}

Listener::Listener(asio::io_context& io, ClientResources& resources, Options options,
                   Metrics metrics, Factory make)
    : io_(io),
      resources_(resources),
      options_(std::move(options)),
      metrics_(metrics),
      make_(std::move(make)),
      acceptor_(io),
      accept_retry_(io),
      tick_timer_(io) {
  MAROON_ASSERT(make_ != nullptr);
  MAROON_ASSERT(options_.connections_max > 0);
}

Listener::~Listener() {
  stop();
  alive_.reset();
}

void Listener::open_spare() {
  if (spare_fd_ < 0) spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
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
  open_spare();
  accept();
  tick();
  return Status::ok();
}

void Listener::tick() {
  tick_timer_.expires_after(listener_tick_interval);
  tick_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](error_code ec) {
    if (alive.expired() || ec || !running_) return;
    // tick() may close a connection, which leaves the table: walk a copy.
    std::vector<std::shared_ptr<Connection>> open;
    open.reserve(connections_.size());
    for (auto& [raw, c] : connections_) open.push_back(c);
    open_spare();  // taken back here if a refused connection held it at EMFILE
    const auto now = std::chrono::steady_clock::now();
    for (auto& c : open) {
      if (c->listener_ == this) c->tick(now);
    }
    tick();
  });
}

void Listener::accept() {
  // A completed accept may still be queued when the listener is destroyed;
  // the handler checks `alive` before touching `this`.
  acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](error_code ec,
                                                                      tcp::socket socket) {
    if (alive.expired() || !running_ || ec == asio::error::operation_aborted) return;
    if (ec) return on_accept_error(ec);
    admit(std::move(socket));
    accept();
  });
}

void Listener::on_accept_error(const error_code& ec) {
  if ((ec == asio::error::no_descriptors || ec.value() == ENFILE) && spare_fd_ >= 0) {
    // The connection waits in the backlog; with a descriptor free again,
    // take it and tell it why instead of leaving it hanging.
    ::close(spare_fd_);
    spare_fd_ = -1;
    resources_.note_descriptors_exhausted(options_.client_port, ec.message());
    metrics_.refused.inc();
    error_code accept_ec;
    tcp::socket socket(io_);
    acceptor_.non_blocking(true, accept_ec);
    acceptor_.accept(socket, accept_ec);
    if (!accept_ec) {
      refuse(std::move(socket), "out of file descriptors");
    }
    error_code ignored;
    acceptor_.non_blocking(false, ignored);
    open_spare();
    if (!accept_ec) {
      accept();
      return;
    }
  }
  accept_retry_.expires_after(accept_retry_delay);
  accept_retry_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](error_code wait_ec) {
    if (alive.expired() || wait_ec || !running_) return;
    accept();
  });
}

void Listener::admit(tcp::socket socket) {
  error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) return;  // already gone; the socket closes here
  if (options_.evict_idle) {
    // Making room helps only when the listener or the process is full, not
    // when this address has its share.
    const auto would = resources_.check(options_.client_port, remote.address());
    if (connections_.size() >= options_.connections_max || (would && !would->per_address)) {
      evict_one();
    }
  }
  std::optional<ClientResources::Refusal> refusal;
  if (connections_.size() >= options_.connections_max) {
    refusal = ClientResources::Refusal{.why = "max number of clients reached"};
  } else {
    refusal = resources_.admit(options_.client_port, remote.address());
  }
  if (refusal) {
    metrics_.refused.inc();
    refuse(std::move(socket), refusal->why);
    return;
  }
  socket.set_option(tcp::no_delay(true), ec);
  if (metrics_.accepted != nullptr) metrics_.accepted->inc();
  std::shared_ptr<Connection> c = make_(std::move(socket));
  MAROON_ASSERT(c != nullptr && c->listener_ == nullptr);
  c->listener_ = this;
  c->remote_ = remote.address();
  connections_.emplace(c.get(), c);
  metrics_.open.set(static_cast<int64_t>(connections_.size()));
  c->start();
}

// Closes the connection idle the longest, if any is idle; true if one went.
bool Listener::evict_one() {
  std::shared_ptr<Connection> oldest;
  std::chrono::steady_clock::time_point oldest_since{};
  for (auto& [raw, c] : connections_) {
    const auto since = c->idle_since();
    if (since && (oldest == nullptr || *since < oldest_since)) {
      oldest = c;
      oldest_since = *since;
    }
  }
  if (oldest == nullptr) return false;
  resources_.note_eviction(options_.client_port);
  oldest->close();
  MAROON_ASSERT(oldest->listener_ == nullptr);
  return true;
}

void Listener::refuse(tcp::socket socket, std::string_view why) {
  std::string message = options_.refusal ? options_.refusal(why) : std::string();
  if (message.empty()) {
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
  auto r = std::make_shared<Refused>(Refused{std::move(socket), std::move(message)});
  asio::async_write(r->socket, asio::buffer(r->message), [r](error_code, size_t) {
    error_code ignored;
    r->socket.shutdown(tcp::socket::shutdown_send, ignored);
    r->socket.close(ignored);
  });
}

void Listener::forget(Connection* c) {
  const size_t erased = connections_.erase(c);
  MAROON_ASSERT(erased == 1);
  resources_.leave(c->remote_);
  metrics_.open.set(static_cast<int64_t>(connections_.size()));
}

void Listener::stop() {
  running_ = false;
  error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  tick_timer_.cancel();
  if (spare_fd_ >= 0) {
    ::close(spare_fd_);
    spare_fd_ = -1;
  }
  // Cleared first: a connection's close() must not reach back into the table.
  auto open = std::move(connections_);
  connections_.clear();
  for (auto& [raw, c] : open) {
    c->listener_ = nullptr;
    resources_.leave(c->remote_);
    c->close();
  }
  metrics_.open.set(0);
}

}  // namespace maroon::server
