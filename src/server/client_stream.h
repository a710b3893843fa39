// The byte stream of one client connection (RESP, HTTP, native): plain TCP,
// or TLS over TCP when the process's client ports speak TLS
// (ClientSecurity::tls; docs/security.md, "Client TLS").
//
// `Next` is the TCP layer: tcp::socket, or beast::tcp_stream, whose
// expires_after timeouts then bound the TLS stream's reads and writes too
// (they are the TCP layer's). Either way a ClientStream is an
// AsyncReadStream and AsyncWriteStream, for asio::async_write and
// beast::http's reads and writes.
//
// What TLS changes, and what the servers rely on:
// - A TLS stream does the server handshake (async_handshake) before anything
//   else, within a deadline; a plain one has none.
// - A read that meets the client's TCP FIN without a TLS close_notify
//   (ssl::error::stream_truncated) ends as asio::error::eof, as on plain
//   TCP. Every client protocol here frames its own messages, so a stream cut
//   inside one is still a partial message to its parser; and redis-cli, and
//   curl on a keep-alive connection, close without close_notify.
// - shutdown_send() half-closes TCP without sending close_notify; a client
//   reading sees the end of the stream after the last reply. (close_notify
//   would need the TLS engine's write side while a linger read is in flight.)
// - A TLS port refuses a connection by closing it (refusal_unless_tls).
#pragma once

#include <fmt/format.h>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "maroon/assert.h"
#include "server/client_security.h"

namespace maroon::server {

namespace client_stream_detail {

// A read handler that sees stream_truncated as eof (see the header comment).
template <class Handler>
struct EofOnTruncation {
  Handler handler;
  void operator()(boost::system::error_code ec, std::size_t n) {
    if (ec == boost::asio::ssl::error::stream_truncated) ec = boost::asio::error::eof;
    std::move(handler)(ec, n);
  }
};

}  // namespace client_stream_detail

template <class Next>
class ClientStream {
 public:
  using executor_type = typename Next::executor_type;

  // TLS (server side of `tls`) when `tls` is set, else plain.
  ClientStream(boost::asio::ip::tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> tls)
      : context_(std::move(tls)), stream_(open(std::move(socket), context_.get())) {}
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  bool is_tls() const { return stream_.index() == 1; }
  executor_type get_executor() { return next_layer().get_executor(); }

  // The TCP layer, under TLS if any.
  Next& next_layer() {
    if (Tls* tls = std::get_if<1>(&stream_)) return tls->next_layer();
    return std::get<0>(stream_);
  }
  // The socket: endpoints, options, half-close.
  boost::asio::ip::tcp::socket& socket() {
    if constexpr (std::is_same_v<Next, boost::asio::ip::tcp::socket>) {
      return next_layer();
    } else {
      return next_layer().socket();
    }
  }

  // The TLS server handshake; `handler(error_code)` gets asio::error::timed_out
  // unless it completes within `deadline`. `handler` must keep the stream
  // alive (hold a reference to its owner) until it runs. TLS streams only.
  template <class Handler>
  void async_handshake(std::chrono::steady_clock::duration deadline, Handler handler) {
    Tls* tls = std::get_if<1>(&stream_);
    MAROON_ASSERT(tls != nullptr);
    struct Op {
      Op(executor_type ex, Handler h) : timer(ex), handler(std::move(h)) {}
      boost::asio::steady_timer timer;
      Handler handler;
      bool done = false;
      bool timed_out = false;
    };
    auto op = std::make_shared<Op>(get_executor(), std::move(handler));
    op->timer.expires_after(deadline);
    // `op` holds the handler, which holds the stream's owner: `this` lives.
    op->timer.async_wait([this, op](const boost::system::error_code& ec) {
      if (ec || op->done) return;
      op->timed_out = true;
      boost::system::error_code ignored;
      socket().close(ignored);  // ends the handshake at once
    });
    tls->async_handshake(boost::asio::ssl::stream_base::server, [op](boost::system::error_code ec) {
      op->done = true;
      op->timer.cancel();
      if (op->timed_out) ec = boost::asio::error::timed_out;
      std::move(op->handler)(ec);
    });
  }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& b) {
          using H = std::decay_t<decltype(handler)>;
          if (Tls* tls = std::get_if<1>(&stream_)) {
            tls->async_read_some(b, client_stream_detail::EofOnTruncation<H>{std::move(handler)});
          } else {
            std::get<0>(stream_).async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& b) {
          if (Tls* tls = std::get_if<1>(&stream_)) {
            tls->async_write_some(b, std::move(handler));
          } else {
            std::get<0>(stream_).async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  // beast::tcp_stream's timeouts, for the next reads and writes whatever the
  // layer (Next = beast::tcp_stream only: instantiated only where called).
  template <class Duration>
  void expires_after(Duration d) {
    next_layer().expires_after(d);
  }
  void expires_never() { next_layer().expires_never(); }

  // Sends TCP FIN (no close_notify: see the header comment); reads go on.
  void shutdown_send() {
    boost::system::error_code ignored;
    socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  }
  void shutdown_both() {
    boost::system::error_code ignored;
    socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  }
  // Closes the socket (and a tcp_stream's timer); pending operations end
  // with operation_aborted. Idempotent.
  void close() {
    if constexpr (std::is_same_v<Next, boost::asio::ip::tcp::socket>) {
      boost::system::error_code ignored;
      socket().close(ignored);
    } else {
      next_layer().close();
    }
  }

 private:
  using Tls = boost::beast::ssl_stream<Next>;

  static std::variant<Next, Tls> open(boost::asio::ip::tcp::socket socket,
                                      boost::asio::ssl::context* tls) {
    if (tls == nullptr) return std::variant<Next, Tls>(std::in_place_index<0>, std::move(socket));
    return std::variant<Next, Tls>(std::in_place_index<1>, std::move(socket), *tls);
  }

  // Every TLS connection holds its context: it may outlive its server.
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::variant<Next, Tls> stream_;
};

// Why a TLS handshake failed, for the log: the TLS library's reason, or
// that it was not done within `deadline`.
inline std::string tls_handshake_failure_text(const boost::system::error_code& ec,
                                              std::chrono::milliseconds deadline) {
  if (ec == boost::asio::error::timed_out) {
    return fmt::format("not done within {} ms (header_timeout)", deadline.count());
  }
  std::string why = ec.message();
  // OpenSSL's words for a plaintext request on a TLS port.
  if (why.find("wrong version number") != std::string::npos ||
      why.find("http request") != std::string::npos) {
    why += " (a plaintext client?)";
  }
  return why;
}

// A listener's refusal message (Listener::Options::refusal) on a plain port;
// none on a TLS port, which closes a refused connection at once: a
// plaintext reason would reach the client as a broken handshake, and a
// handshake is more than an overloaded server should spend on a refusal.
inline std::function<std::string(std::string_view)> refusal_unless_tls(
    const ClientSecurity& security, std::function<std::string(std::string_view)> refusal) {
  if (security.tls) return nullptr;
  return refusal;
}

}  // namespace maroon::server

// Handlers wrapped above keep their associated executor, allocator and
// cancellation slot.
template <template <typename, typename> class Associator, typename Handler, typename Default>
struct boost::asio::associator<
    Associator, maroon::server::client_stream_detail::EofOnTruncation<Handler>, Default> {
  using type = typename Associator<Handler, Default>::type;
  static type get(
      const maroon::server::client_stream_detail::EofOnTruncation<Handler>& h) noexcept {
    return Associator<Handler, Default>::get(h.handler);
  }
  static auto get(const maroon::server::client_stream_detail::EofOnTruncation<Handler>& h,
                  const Default& d) noexcept
      -> decltype(Associator<Handler, Default>::get(h.handler, d)) {
    return Associator<Handler, Default>::get(h.handler, d);
  }
};
