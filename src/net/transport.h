// The TCP transport between nodes and gateways: native frames
// (protocol/frame.h) over links that open with a PeerHello handshake
// (net/peer_hello.h; wire rules in docs/formats/transport.md).
//
// TLS. With TransportOptions::tls set, every link is TLS 1.3 with mutual
// authentication (net/tls.h): the TLS handshake comes first, the peer's
// identity is the one its certificate names (net/certs.h), and the hello that
// follows must agree with it, else the link is refused. A dialer also checks
// that the node it reached holds the certificate of the node it dialed.
// Without it, links are plain TCP and the hello alone names the peer (for
// loopback `maroon dev` and tests).
//
// Links. A node keeps one outbound link to every node it was told to
// connect() to, redialing with backoff whenever it fails, until it is told to
// disconnect() from it; it accepts inbound links from nodes and gateways. A
// gateway only dials. Frames to a node go on the outbound link to it when that
// one is up, else on an inbound link from it; frames to a gateway go on the
// inbound link whose hello named it. A newer inbound link from the same
// (kind, id) replaces the older one.
//
// A peer is connected() while some link to it can carry frames; the
// LinkHandler reports exactly the transitions of connected(), so two links to
// one peer (each side dialed the other) give one "up" and one "down".
//
// Ownership: the Transport owns every link (a shared_ptr in links_); pending
// async operations and timers hold a shared_ptr too, so the socket and the
// buffers they use outlive them. A link that is dropped, or every link when
// the transport closes, is marked closed before anything else, and every
// completion checks that flag first: an open link implies a live transport.
// The acceptor checks the transport's alive token, which close() expires; a
// dialer's redial timer checks the dialer's own token, which expires with the
// dialer (disconnect() or close()): a live dialer implies a live transport.
//
// An inbound gateway link may replace an older one of the same (kind, id)
// only if it carries the same certificate identity, so one certificate
// holder cannot displace another's link.
//
// Bounds: send_queue_bytes_max bytes queued per link (send() refuses beyond);
// a frame is at most protocol::kFrameBytesMax; the decoder buffers at most one
// frame plus one read; at most limits::connections_max inbound links.
//
// Everything, handlers included, runs on the io_context's one thread. A
// handler may call send(), connected(), disconnect() and close(); it must not
// destroy the Transport.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "maroon/status.h"
#include "net/peer_hello.h"

namespace maroon::net {

class TlsContext;

struct PeerAddress {
  uint64_t id = 0;
  std::string host;
  uint16_t port = 0;
};

struct TransportOptions {
  uint64_t cluster_id = 0;  // both ends must agree, else the link is refused
  PeerKind self_kind = PeerKind::kNode;
  uint64_t self_id = 0;
  // The AppIds this process runs, ascending (peer_hello.h, apps_mismatch).
  std::vector<uint32_t> apps;
  size_t send_queue_bytes_max = 64 * 1024 * 1024;  // per link; send() refuses beyond it
  // Redial delays: exponential with jitter (common/backoff.h).
  std::chrono::milliseconds reconnect_min{20};
  std::chrono::milliseconds reconnect_max{1000};
  // From the start of a dial (or an accept) to a valid hello from the peer,
  // the TLS handshake included.
  std::chrono::milliseconds handshake_timeout{2000};
  // Null: plain TCP. Else every link is TLS with this context, whose own
  // certificate must be of cluster_id (and, for a node, of self_id).
  std::shared_ptr<TlsContext> tls;
};

class Transport {
 public:
  // Called for every valid frame received after the handshake. `payload`
  // is valid only during the call.
  using FrameHandler =
      std::function<void(PeerKind kind, uint64_t peer_id, uint8_t type, std::string_view payload)>;
  // Called when a peer becomes connected() (true) or stops being (false).
  using LinkHandler = std::function<void(PeerKind kind, uint64_t peer_id, bool up)>;

  struct Counters {
    uint64_t frames_sent = 0;      // frames written (not counting hellos)
    uint64_t frames_received = 0;  // frames delivered to the FrameHandler
    uint64_t bytes_sent = 0;       // frame bytes written, hellos included (before TLS)
    uint64_t bytes_received = 0;   // frame bytes read (after TLS)
    uint64_t frames_dropped = 0;   // refused by send(), or queued on a link that failed
    // Wrong version, cluster or peer id; too many links; a failed TLS
    // handshake; a certificate that does not name the hello's sender.
    uint64_t links_refused = 0;
    uint64_t protocol_errors = 0;  // bad frame or hello, handshake timeout
    uint64_t reconnects = 0;       // dial attempts after the first, per peer
    uint64_t read_pauses = 0;      // set_reads_paused(true) calls that paused
  };

  Transport(boost::asio::io_context& io, TransportOptions options, FrameHandler on_frame,
            LinkHandler on_link);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Accepts inbound links (port 0 picks a free one; bound_port() tells
  // which). Call at most once. Errors (bad host, port in use) as a Status.
  Status listen(const std::string& host, uint16_t port);
  uint16_t bound_port() const { return bound_port_; }

  // Keeps an outbound link to this node up: connect, handshake, and on any
  // failure redial with backoff. Once per node id until disconnect() of it;
  // after that, a fresh connect, possibly to another address.
  void connect(PeerAddress node);

  // For a node that left the cluster: undoes connect(node_id), if any, so it
  // is no longer dialed (a pending resolve, connect or redial comes to
  // nothing) and the outbound link to it closes; also closes the inbound link
  // from node `node_id` that is past its hello, if any (one still in its
  // handshake is left to finish). If the node was connected(), the LinkHandler
  // reports it down once, inside this call (the handler may do there what it
  // may do anywhere); no other handler runs inside it. Later inbound links
  // from the node are accepted as before, so if it keeps dialing it comes
  // back up: refusing it is the application's business, not the transport's.
  // Idempotent; a node neither dialed nor linked, or any after close(), is a
  // no-op.
  void disconnect(uint64_t node_id);

  // Queues one frame (type must not be kPeerHello). Returns false, dropping
  // the frame, if the peer has no usable link, the payload exceeds
  // protocol::kFramePayloadBytesMax, or the frame would take the link's
  // queue past send_queue_bytes_max. Never blocks, never throws.
  bool send(PeerKind kind, uint64_t peer_id, uint8_t type, std::string_view payload);

  // Backpressure on what peers send: while paused, no link that is up starts
  // another read once it has handed on the frames of the read it had (so at
  // most one read's worth arrives after the pause); handshakes go on. The
  // kernel's socket buffers then fill and TCP slows the senders. Resuming
  // restarts the reads.
  void set_reads_paused(bool paused);
  bool reads_paused() const { return reads_paused_; }

  // Bytes queued and not yet written (for metrics and backpressure).
  size_t queued_bytes(PeerKind kind, uint64_t peer_id) const;
  size_t queued_bytes_total() const;
  bool connected(PeerKind kind, uint64_t peer_id) const;

  // Closes every link and the acceptor; no handler is called afterwards.
  // Idempotent; the destructor calls it.
  void close();

  const Counters& counters() const { return counters_; }

 private:
  struct Link;
  struct Dialer;
  using PeerKey = std::pair<PeerKind, uint64_t>;

  void accept();
  void admit(boost::asio::ip::tcp::socket socket);
  void dial(Dialer& d);
  void redial_later(Dialer& d);
  void arm_handshake_timer(const std::shared_ptr<Link>& link);
  void on_connect(const std::shared_ptr<Link>& link, const boost::system::error_code& ec);
  // TLS: the handshake, then the peer's certificate, then the hellos.
  void start_tls(const std::shared_ptr<Link>& link);
  void on_tls_handshake(const std::shared_ptr<Link>& link, const boost::system::error_code& ec);
  // The dialer's hello goes first on a link; then both ends read.
  void open_hellos(const std::shared_ptr<Link>& link);
  // Why the hello does not match the link's certificate; empty if it does.
  std::string hello_mismatch(const Link& link, const PeerHello& hello) const;
  void read(const std::shared_ptr<Link>& link);
  void on_read(const std::shared_ptr<Link>& link, size_t bytes);
  void on_hello(Link& link, std::string_view payload);
  void queue_frame(Link& link, uint8_t type, std::string_view payload, bool counted);
  void schedule_flush(Link& link);
  void flush(Link& link);
  // Closes the link, forgets it and, for an outbound one, schedules a redial.
  // Calls the LinkHandler last, if the peer lost its last usable link, so
  // callers return right after; the link stays valid only while they hold a
  // reference to it.
  void drop(Link& link);
  // drop() without the redial or the LinkHandler: marks the link closed,
  // closes its socket and forgets it (links_, its dialer's link, inbound_).
  // The link stays valid only while the caller holds a reference to it.
  void discard(Link& link);
  void protocol_error(Link& link, const Status& why);
  void refuse(Link& link, const std::string& why);
  // The link send() uses for this peer; null if none is up.
  Link* route(PeerKind kind, uint64_t peer_id) const;

  boost::asio::io_context& io_;
  const TransportOptions options_;
  const FrameHandler on_frame_;
  const LinkHandler on_link_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  uint16_t bound_port_ = 0;
  bool closed_ = false;
  bool reads_paused_ = false;
  // Every open link, outbound and inbound, in handshake or up.
  std::unordered_map<Link*, std::shared_ptr<Link>> links_;
  size_t inbound_count_ = 0;                                       // inbound links in links_
  std::unordered_map<uint64_t, std::unique_ptr<Dialer>> dialers_;  // by node id
  std::map<PeerKey, Link*> inbound_;  // inbound links past the handshake, by hello
  Counters counters_;
  // Expires at close(); queued accept, resolve and redial handlers check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace maroon::net
