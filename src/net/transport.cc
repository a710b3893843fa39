#include "net/transport.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "maroon/assert.h"
#include "maroon/limits.h"
#include "common/backoff.h"
#include "net/certs.h"
#include "net/tls.h"
#include "protocol/frame.h"

namespace maroon::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// Bytes asked of the decoder per read.
constexpr size_t read_chunk_bytes = 64 * 1024;
// A write buffer that grew past this (a burst of big frames) is freed after
// its write rather than kept for the life of the link.
constexpr size_t write_buffer_keep_bytes = 1024 * 1024;
constexpr size_t inbound_links_max = limits::connections_max;
constexpr std::chrono::milliseconds accept_retry_delay{100};
constexpr size_t hello_frame_bytes = protocol::kFrameHeaderBytes + 1 + kPeerHelloBytes;

}  // namespace

// One TCP connection, outbound (dialed for a Dialer) or inbound (accepted).
struct Transport::Link : std::enable_shared_from_this<Link> {
  enum class State : uint8_t {
    kConnecting,  // outbound: resolving and connecting
    kHandshake,   // connected, waiting for the peer's hello
    kUp,          // carries frames
  };

  explicit Link(tcp::socket s) : socket(std::move(s)), handshake_timer(socket.get_executor()) {}

  // Reads and writes go through TLS when the link has it. One read and one
  // write may be outstanding at once, as on the socket itself.
  template <typename Handler>
  void async_read_some(asio::mutable_buffer buffer, Handler&& handler) {
    if (tls) {
      tls->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      socket.async_read_some(buffer, std::forward<Handler>(handler));
    }
  }
  template <typename Handler>
  void async_write_all(asio::const_buffer buffer, Handler&& handler) {
    if (tls) {
      asio::async_write(*tls, buffer, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket, buffer, std::forward<Handler>(handler));
    }
  }

  size_t queued() const { return out.size() + (write_active ? writing.size() : 0); }

  std::string describe() const {
    if (dialer != nullptr) return fmt::format("link to node {} at {}", id, remote);
    if (state != State::kUp) return fmt::format("inbound link from {}", remote);
    return fmt::format("link from {} {} at {}", peer_kind_name(kind), id, remote);
  }

  tcp::socket socket;
  // Declared after the socket it wraps, so it goes first.
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
  // The peer's identity from its certificate, once the TLS handshake is done.
  std::optional<PeerIdentity> cert;
  asio::steady_timer handshake_timer;
  protocol::FrameDecoder decoder;
  std::string out;                  // frames not yet handed to a write
  std::string writing;              // the buffer the active async_write sends
  uint64_t out_frames = 0;          // frames in `out`, hellos not counted
  uint64_t writing_frames = 0;      // frames in `writing`, hellos not counted
  // Outbound: the dialer this attempt belongs to. Dangles once disconnect()
  // forgot that dialer, by which time the link is closed: read it only while
  // the link is open.
  Dialer* dialer = nullptr;
  PeerKind kind = PeerKind::kNode;  // outbound: the dialed node; inbound: from its hello
  uint64_t id = 0;
  std::string remote;  // host:port, for logs
  State state = State::kConnecting;
  // Set when the link is dropped or the transport closes, before anything
  // else; every completion checks it first. While it is clear, the link is in
  // its transport's links_ and the transport is alive.
  bool closed = false;
  bool write_active = false;
  bool flush_scheduled = false;
  // Reads are paused (set_reads_paused) and this link, up, has no read
  // outstanding: resuming starts one.
  bool read_parked = false;
};

// One connect() target: owns the redial timer and backoff, and points at the
// current attempt or established link (which links_ owns). Lives in dialers_
// from connect() to disconnect() or close().
struct Transport::Dialer {
  Dialer(asio::io_context& io, PeerAddress a, Backoff b)
      : address(std::move(a)), resolver(io), redial_timer(io), backoff(b) {}

  PeerAddress address;
  tcp::resolver resolver;
  asio::steady_timer redial_timer;
  Backoff backoff;
  Link* link = nullptr;
  bool dialed = false;  // a first attempt was made; later ones count as reconnects
  // Expires with the dialer. A redial handler may already be queued, with no
  // error, when the timer is cancelled or destroyed; it checks this first.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

Transport::Transport(asio::io_context& io, TransportOptions options, FrameHandler on_frame,
                     LinkHandler on_link)
    : io_(io),
      options_(std::move(options)),
      on_frame_(std::move(on_frame)),
      on_link_(std::move(on_link)),
      acceptor_(io),
      accept_retry_(io) {
  MAROON_ASSERT(on_frame_ != nullptr && on_link_ != nullptr);
  MAROON_ASSERT(options_.send_queue_bytes_max >= hello_frame_bytes);
  MAROON_ASSERT(options_.reconnect_min.count() >= 0 &&
                options_.reconnect_min <= options_.reconnect_max);
  MAROON_ASSERT(options_.handshake_timeout.count() > 0);
  if (options_.tls) {
    const PeerIdentity& self = options_.tls->self();
    MAROON_ASSERT_MSG(self.cluster_id == options_.cluster_id, "a certificate of another cluster");
    // A node's in-process gateway links with its node's certificate; a
    // gateway's hello names its incarnation, not the id in its certificate.
    MAROON_ASSERT_MSG(options_.self_kind == PeerKind::kGateway ||
                          (self.kind == PeerKind::kNode && self.id == options_.self_id),
                      "a node's certificate must name it");
  }
}

Transport::~Transport() { close(); }

Status Transport::listen(const std::string& host, uint16_t port) {
  if (closed_) return unavailable("transport closed");
  MAROON_ASSERT(!acceptor_.is_open());
  error_code ec;
  tcp::resolver resolver(io_);
  const auto endpoints = resolver.resolve(
      host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return unavailable(fmt::format("transport: cannot resolve '{}': {}", host,
                                   ec ? ec.message() : "no addresses"));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  const auto fail = [&](const char* what) {
    error_code ignored;
    acceptor_.close(ignored);
    return unavailable(
        fmt::format("transport: cannot {} {}:{}: {}", what, host, port, ec.message()));
  };
  if (acceptor_.open(endpoint.protocol(), ec)) return fail("open a socket for");
  if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec))
    return fail("set SO_REUSEADDR on");
  if (acceptor_.bind(endpoint, ec)) return fail("bind");
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) return fail("listen on");
  bound_port_ = acceptor_.local_endpoint(ec).port();
  if (ec) return fail("get the port of");
  accept();
  return Status::ok();
}

void Transport::accept() {
  acceptor_.async_accept(
      [this, alive = std::weak_ptr<bool>(alive_)](error_code ec, tcp::socket socket) {
        if (alive.expired() || ec == asio::error::operation_aborted) return;
        if (ec) {
          // E.g. out of file descriptors: wait instead of spinning.
          spdlog::warn("transport: accept failed: {}", ec.message());
          accept_retry_.expires_after(accept_retry_delay);
          accept_retry_.async_wait([this, alive](error_code wait_ec) {
            if (alive.expired() || wait_ec) return;
            accept();
          });
          return;
        }
        admit(std::move(socket));
        accept();
      });
}

void Transport::admit(tcp::socket socket) {
  error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  auto link = std::make_shared<Link>(std::move(socket));
  link->remote = ec ? "?" : fmt::format("{}:{}", remote.address().to_string(), remote.port());
  if (inbound_count_ >= inbound_links_max) {
    counters_.links_refused++;
    spdlog::warn("transport: refusing {}: {} inbound links open", link->describe(), inbound_count_);
    link->socket.close(ec);
    return;
  }
  link->socket.set_option(tcp::no_delay(true), ec);
  link->state = Link::State::kHandshake;
  links_.emplace(link.get(), link);
  inbound_count_++;
  arm_handshake_timer(link);
  if (options_.tls) return start_tls(link);
  open_hellos(link);
}

void Transport::connect(PeerAddress node) {
  if (closed_) return;
  MAROON_ASSERT_MSG(!dialers_.contains(node.id),
                    "connect() called twice for one node without disconnect()");
  // Jitter only needs to differ between processes, not to be unpredictable.
  const uint64_t seed =
      options_.self_id * 0x9e3779b97f4a7c15ULL ^ node.id ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const uint64_t id = node.id;
  auto d = std::make_unique<Dialer>(io_, std::move(node),
                                    Backoff(options_.reconnect_min, options_.reconnect_max, seed));
  Dialer& dialer = *d;
  dialers_.emplace(id, std::move(d));
  dial(dialer);
}

void Transport::dial(Dialer& d) {
  MAROON_ASSERT(!closed_ && d.link == nullptr);
  if (d.dialed) counters_.reconnects++;
  d.dialed = true;
  auto link = std::make_shared<Link>(tcp::socket(io_));
  link->dialer = &d;
  link->kind = PeerKind::kNode;
  link->id = d.address.id;
  link->remote = fmt::format("{}:{}", d.address.host, d.address.port);
  d.link = link.get();
  links_.emplace(link.get(), link);
  arm_handshake_timer(link);

  error_code ec;
  const asio::ip::address address = asio::ip::make_address(d.address.host, ec);
  if (!ec) {
    link->socket.async_connect(
        tcp::endpoint(address, d.address.port),
        [this, link](error_code connect_ec) { on_connect(link, connect_ec); });
    return;
  }
  d.resolver.async_resolve(
      d.address.host, std::to_string(d.address.port), tcp::resolver::numeric_service,
      [this, link](error_code resolve_ec, tcp::resolver::results_type results) {
        if (link->closed) return;
        if (!resolve_ec && results.empty()) resolve_ec = asio::error::host_not_found;
        if (resolve_ec) return on_connect(link, resolve_ec);
        asio::async_connect(link->socket, results,
                            [this, link](error_code connect_ec, const tcp::endpoint&) {
                              on_connect(link, connect_ec);
                            });
      });
}

void Transport::redial_later(Dialer& d) {
  MAROON_ASSERT(!closed_ && d.link == nullptr);
  const std::chrono::milliseconds delay = d.backoff.next();
  d.redial_timer.expires_after(delay);
  // `d` is alive while its token is: disconnect() and close() destroy it.
  d.redial_timer.async_wait([this, &d, alive = std::weak_ptr<bool>(d.alive)](error_code ec) {
    if (alive.expired() || ec) return;
    dial(d);
  });
}

void Transport::disconnect(uint64_t node_id) {
  if (closed_) return;
  const bool was_connected = connected(PeerKind::kNode, node_id);
  if (const auto it = dialers_.find(node_id); it != dialers_.end()) {
    // Out of dialers_ first, so nothing below can find or redial it.
    const std::unique_ptr<Dialer> d = std::move(it->second);
    dialers_.erase(it);
    d->redial_timer.cancel();
    d->resolver.cancel();
    // A pending connect or resolve completion holds the link and sees it closed.
    if (d->link != nullptr) discard(*d->link);
    MAROON_ASSERT(d->link == nullptr);
    spdlog::info("transport: node {} disconnected, no longer dialed", node_id);
  }  // the dialer goes here, its token with it
  if (const auto it = inbound_.find({PeerKind::kNode, node_id}); it != inbound_.end()) {
    spdlog::info("transport: closing {}: node disconnected", it->second->describe());
    discard(*it->second);
  }
  MAROON_ASSERT(!connected(PeerKind::kNode, node_id));
  if (was_connected) {
    spdlog::info("transport: node {} down", node_id);
    on_link_(PeerKind::kNode, node_id, false);
  }
}

void Transport::arm_handshake_timer(const std::shared_ptr<Link>& link) {
  link->handshake_timer.expires_after(options_.handshake_timeout);
  link->handshake_timer.async_wait([this, link](error_code ec) {
    if (link->closed || ec || link->state == Link::State::kUp) return;
    if (link->state == Link::State::kConnecting) {
      spdlog::debug("transport: {}: connect timed out", link->describe());
      return drop(*link);
    }
    protocol_error(*link, unavailable(fmt::format("no peer hello within {} ms",
                                                  options_.handshake_timeout.count())));
  });
}

void Transport::on_connect(const std::shared_ptr<Link>& link, const error_code& ec) {
  if (link->closed) return;
  if (ec) {
    // Expected while the peer is down; the redial is the retry.
    spdlog::debug("transport: {}: cannot connect: {}", link->describe(), ec.message());
    return drop(*link);
  }
  error_code ignored;
  link->socket.set_option(tcp::no_delay(true), ignored);
  link->state = Link::State::kHandshake;
  if (options_.tls) return start_tls(link);
  open_hellos(link);
}

void Transport::start_tls(const std::shared_ptr<Link>& link) {
  MAROON_ASSERT(options_.tls && !link->tls && link->state == Link::State::kHandshake);
  link->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(link->socket, options_.tls->asio());
  link->tls->async_handshake(
      link->dialer != nullptr ? asio::ssl::stream_base::client : asio::ssl::stream_base::server,
      [this, link](error_code ec) { on_tls_handshake(link, ec); });
}

void Transport::on_tls_handshake(const std::shared_ptr<Link>& link, const error_code& ec) {
  if (link->closed) return;
  Link& l = *link;
  if (ec) {
    // A plaintext peer, a certificate of another CA, expired or missing, a
    // replay of another link's bytes: none gets past this point.
    return refuse(l, fmt::format("TLS handshake failed: {}", ec.message()));
  }
  SSL* ssl = l.tls->native_handle();
  const X509* peer = SSL_get0_peer_certificate(ssl);
  // SSL_VERIFY_PEER and SSL_VERIFY_FAIL_IF_NO_PEER_CERT (tls.cc): no
  // handshake completes without a certificate the CA signed.
  MAROON_ASSERT(peer != nullptr && SSL_get_verify_result(ssl) == X509_V_OK);
  Result<PeerIdentity> who = cert_identity(peer);
  if (!who.is_ok()) return refuse(l, fmt::format("its certificate: {}", who.status().message()));
  if (who->cluster_id != options_.cluster_id) {
    return refuse(l, fmt::format("its certificate is of {}, this is cluster {}", describe(*who),
                                 options_.cluster_id));
  }
  if (l.dialer != nullptr && (who->kind != PeerKind::kNode || who->id != l.id)) {
    return refuse(l, fmt::format("the node reached holds the certificate of {}", describe(*who)));
  }
  l.cert = *who;
  open_hellos(link);
}

void Transport::open_hellos(const std::shared_ptr<Link>& link) {
  if (link->dialer != nullptr) {
    std::string hello;
    encode_peer_hello(
        {.cluster_id = options_.cluster_id,
         .kind = options_.self_kind,
         .id = options_.self_id,
         .apps = options_.apps},
        hello);
    queue_frame(*link, static_cast<uint8_t>(protocol::FrameType::kPeerHello), hello, false);
  }
  read(link);
}

std::string Transport::hello_mismatch(const Link& l, const PeerHello& hello) const {
  if (!l.cert) return "";
  const PeerIdentity& c = *l.cert;
  // A node speaks as itself only. Gateway hellos name an incarnation, which
  // no certificate can: a node's in-process gateway carries its node's
  // certificate, a standalone gateway one naming its config id.
  if (hello.kind == PeerKind::kNode && (c.kind != PeerKind::kNode || c.id != hello.id)) {
    return fmt::format("its hello names node {}, its certificate is of {}", hello.id, describe(c));
  }
  return "";
}

void Transport::read(const std::shared_ptr<Link>& link) {
  const std::span<char> space = link->decoder.prepare(read_chunk_bytes);
  link->async_read_some(
      asio::buffer(space.data(), space.size()), [this, link](error_code ec, size_t n) {
        if (link->closed) return;
        if (ec) {
          if (link->state == Link::State::kUp) {
            spdlog::info("transport: {} lost: {}", link->describe(), ec.message());
          }
          return drop(*link);
        }
        on_read(link, n);
      });
}

void Transport::on_read(const std::shared_ptr<Link>& link, size_t bytes) {
  Link& l = *link;
  counters_.bytes_received += bytes;
  l.decoder.commit(bytes);
  // Each handler may send, close the transport, or (through on_hello) drop
  // this link; `link` keeps it alive and `closed` says when to stop.
  for (;;) {
    protocol::Frame frame;
    const protocol::DecodeResult r = l.decoder.next(frame);
    if (r == protocol::DecodeResult::kNeedMore) break;
    if (r == protocol::DecodeResult::kError) return protocol_error(l, l.decoder.error());
    if (frame.type == static_cast<uint8_t>(protocol::FrameType::kPeerHello)) {
      if (l.state == Link::State::kUp) {
        return protocol_error(l, invalid_argument("a second peer hello"));
      }
      on_hello(l, frame.payload);
    } else if (l.state != Link::State::kUp) {
      return protocol_error(
          l, invalid_argument(fmt::format("frame type {} before the peer hello", frame.type)));
    } else {
      counters_.frames_received++;
      on_frame_(l.kind, l.id, frame.type, frame.payload);
    }
    if (l.closed) return;
  }
  if (reads_paused_ && l.state == Link::State::kUp) {
    l.read_parked = true;
    return;
  }
  read(link);
}

void Transport::set_reads_paused(bool paused) {
  if (paused == reads_paused_) return;
  reads_paused_ = paused;
  if (paused) {
    counters_.read_pauses++;
    return;
  }
  std::vector<std::shared_ptr<Link>> parked;
  for (const auto& [raw, link] : links_) {
    if (link->read_parked) parked.push_back(link);
  }
  for (const std::shared_ptr<Link>& link : parked) {
    link->read_parked = false;
    if (!link->closed) read(link);
  }
}

void Transport::on_hello(Link& l, std::string_view payload) {
  MAROON_ASSERT(l.state == Link::State::kHandshake);
  Result<PeerHello> hello = decode_peer_hello(payload);
  if (!hello.is_ok()) return protocol_error(l, hello.status());
  if (hello->version != kPeerHelloVersion) {
    return refuse(
        l, fmt::format("peer hello version {}, expected {}", hello->version, kPeerHelloVersion));
  }
  if (hello->cluster_id != options_.cluster_id) {
    return refuse(l, fmt::format("peer is in cluster {}, this is cluster {}", hello->cluster_id,
                                 options_.cluster_id));
  }
  if (const std::string why = hello_mismatch(l, *hello); !why.empty()) return refuse(l, why);
  if (const std::string why =
          apps_mismatch(options_.self_kind, options_.apps, hello->kind, hello->apps);
      !why.empty()) {
    return refuse(l, why);
  }

  if (l.dialer != nullptr) {
    if (hello->kind != PeerKind::kNode || hello->id != l.id) {
      return refuse(l,
                    fmt::format("the reply names {} {}", peer_kind_name(hello->kind), hello->id));
    }
    const bool was_connected = connected(PeerKind::kNode, l.id);
    l.state = Link::State::kUp;
    l.handshake_timer.cancel();
    l.dialer->backoff.reset();
    spdlog::info("transport: {} up", l.describe());
    if (!was_connected) on_link_(PeerKind::kNode, l.id, true);
    return;
  }

  const PeerKey key{hello->kind, hello->id};
  if (const auto it = inbound_.find(key); it != inbound_.end() && it->second->cert != l.cert) {
    return refuse(l, fmt::format("{} {} is linked already, under another certificate",
                                 peer_kind_name(key.first), key.second));
  }
  const bool was_connected = connected(key.first, key.second);
  l.kind = key.first;
  l.id = key.second;
  // The reply goes first, so it precedes anything the LinkHandler sends.
  std::string reply;
  encode_peer_hello(
      {.cluster_id = options_.cluster_id,
         .kind = options_.self_kind,
         .id = options_.self_id,
         .apps = options_.apps},
      reply);
  queue_frame(l, static_cast<uint8_t>(protocol::FrameType::kPeerHello), reply, false);
  l.state = Link::State::kUp;
  l.handshake_timer.cancel();
  Link* const replaced = std::exchange(inbound_[key], &l);
  spdlog::info("transport: {} up", l.describe());
  if (replaced != nullptr) {
    // The peer redialed; its old link is dead or about to be. `l` is up, so
    // this reports no transition.
    spdlog::info("transport: {} replaced by a newer one", replaced->describe());
    drop(*replaced);
  }
  if (!was_connected) on_link_(key.first, key.second, true);
}

void Transport::queue_frame(Link& l, uint8_t type, std::string_view payload, bool counted) {
  MAROON_ASSERT(!l.closed);
  protocol::encode_frame(type, payload, l.out);
  if (counted) l.out_frames++;
  schedule_flush(l);
}

// Writes are deferred to the end of the loop turn, so frames sent together
// (one batch of protocol output) share a write; frames sent while a write is
// active share the next one.
void Transport::schedule_flush(Link& l) {
  if (l.flush_scheduled || l.write_active || l.closed) return;
  l.flush_scheduled = true;
  asio::post(io_, [this, link = l.shared_from_this()] {
    link->flush_scheduled = false;
    if (link->closed) return;
    flush(*link);
  });
}

void Transport::flush(Link& l) {
  if (l.write_active || l.out.empty()) return;
  std::swap(l.out, l.writing);
  l.out.clear();
  l.writing_frames = std::exchange(l.out_frames, 0);
  l.write_active = true;
  l.async_write_all(asio::buffer(l.writing),
                    [this, link = l.shared_from_this()](error_code ec, size_t n) {
                      if (link->closed) return;
                      if (ec) {
                        if (link->state == Link::State::kUp) {
                          spdlog::info("transport: {} lost: {}", link->describe(), ec.message());
                        }
                        return drop(*link);  // counts the unwritten frames as dropped
                      }
                      Link& w = *link;
                      w.write_active = false;
                      counters_.bytes_sent += n;
                      counters_.frames_sent += std::exchange(w.writing_frames, 0);
                      if (w.writing.capacity() > write_buffer_keep_bytes) {
                        std::string().swap(w.writing);
                      } else {
                        w.writing.clear();
                      }
                      flush(w);
                    });
}

void Transport::drop(Link& l) {
  MAROON_ASSERT(!l.closed);
  const std::shared_ptr<Link> self = l.shared_from_this();  // links_ may hold the last reference
  const PeerKey key{l.kind, l.id};
  const bool was_up = l.state == Link::State::kUp;
  Dialer* const dialer = l.dialer;
  discard(l);
  if (dialer != nullptr) redial_later(*dialer);
  if (was_up && !connected(key.first, key.second)) {
    spdlog::info("transport: {} {} down", peer_kind_name(key.first), key.second);
    on_link_(key.first, key.second, false);
  }
}

void Transport::discard(Link& l) {
  MAROON_ASSERT(!l.closed);
  const std::shared_ptr<Link> self = l.shared_from_this();  // links_ may hold the last reference
  counters_.frames_dropped += l.out_frames + (l.write_active ? l.writing_frames : 0);
  l.closed = true;
  l.handshake_timer.cancel();
  error_code ignored;
  l.socket.shutdown(tcp::socket::shutdown_both, ignored);
  l.socket.close(ignored);
  links_.erase(&l);
  if (l.dialer != nullptr) {
    MAROON_ASSERT(l.dialer->link == &l);
    l.dialer->link = nullptr;
    l.dialer->resolver.cancel();
  } else {
    MAROON_ASSERT(inbound_count_ > 0);
    inbound_count_--;
    const auto it = inbound_.find({l.kind, l.id});
    if (it != inbound_.end() && it->second == &l) inbound_.erase(it);
  }
}

void Transport::protocol_error(Link& l, const Status& why) {
  counters_.protocol_errors++;
  spdlog::warn("transport: closing {}: {}", l.describe(), why.to_string());
  drop(l);
}

void Transport::refuse(Link& l, const std::string& why) {
  counters_.links_refused++;
  spdlog::warn("transport: refusing {}: {}", l.describe(), why);
  drop(l);
}

Transport::Link* Transport::route(PeerKind kind, uint64_t peer_id) const {
  if (kind == PeerKind::kNode) {
    const auto it = dialers_.find(peer_id);
    if (it != dialers_.end()) {
      Link* l = it->second->link;
      if (l != nullptr && l->state == Link::State::kUp) return l;
    }
  }
  const auto it = inbound_.find({kind, peer_id});
  return it == inbound_.end() ? nullptr : it->second;
}

bool Transport::send(PeerKind kind, uint64_t peer_id, uint8_t type, std::string_view payload) {
  MAROON_ASSERT_MSG(type != static_cast<uint8_t>(protocol::FrameType::kPeerHello),
                    "the transport sends the hellos");
  Link* l = closed_ ? nullptr : route(kind, peer_id);
  const size_t frame_bytes = protocol::kFrameHeaderBytes + 1 + payload.size();
  if (l == nullptr || payload.size() > protocol::kFramePayloadBytesMax ||
      l->queued() + frame_bytes > options_.send_queue_bytes_max) {
    counters_.frames_dropped++;
    return false;
  }
  queue_frame(*l, type, payload, true);
  return true;
}

size_t Transport::queued_bytes(PeerKind kind, uint64_t peer_id) const {
  size_t total = 0;
  if (kind == PeerKind::kNode) {
    const auto it = dialers_.find(peer_id);
    if (it != dialers_.end() && it->second->link != nullptr) total += it->second->link->queued();
  }
  const auto it = inbound_.find({kind, peer_id});
  if (it != inbound_.end()) total += it->second->queued();
  return total;
}

size_t Transport::queued_bytes_total() const {
  size_t total = 0;
  for (const auto& [raw, l] : links_) total += l->queued();
  return total;
}

bool Transport::connected(PeerKind kind, uint64_t peer_id) const {
  return route(kind, peer_id) != nullptr;
}

void Transport::close() {
  if (closed_) return;
  closed_ = true;
  alive_.reset();
  error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  for (auto& [id, d] : dialers_) {
    d->redial_timer.cancel();
    d->resolver.cancel();
    d->link = nullptr;
  }
  // Marked closed before anything else, so completions still queued return at once.
  auto links = std::move(links_);
  links_.clear();
  inbound_.clear();
  inbound_count_ = 0;
  for (auto& [raw, l] : links) {
    l->closed = true;
    l->handshake_timer.cancel();
    l->socket.shutdown(tcp::socket::shutdown_both, ignored);
    l->socket.close(ignored);
  }
  dialers_.clear();
}

}  // namespace maroon::net
