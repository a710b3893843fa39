// The transport with TLS (docs/formats/transport.md, "TLS"): who gets a link
// and who is refused. Every refusal here is of a peer the plaintext
// transport let in.
#include <gtest/gtest.h>

#include <array>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <string>
#include <vector>

#include "net/certs.h"
#include "net/tls.h"
#include "net/transport.h"
#include "net/transport_harness.h"
#include "protocol/frame.h"

namespace maroon::net {
namespace {

using namespace testing_harness;

// One CA per test binary: making keys is the slow part.
const KeyAndCert& cluster_ca() {
  static const KeyAndCert ca = make_ca(kCluster, 30).value();
  return ca;
}
const KeyAndCert& other_ca() {  // same cluster id, another key
  static const KeyAndCert ca = make_ca(kCluster, 30).value();
  return ca;
}

std::shared_ptr<TlsContext> tls_of(const KeyAndCert& ca, PeerKind kind, uint64_t id) {
  const PeerIdentity who{.cluster_id = kCluster, .kind = kind, .id = id};
  Result<KeyAndCert> own = issue_cert(ca, who, 10);
  EXPECT_TRUE(own.is_ok()) << own.status().to_string();
  Result<std::shared_ptr<TlsContext>> ctx = TlsContext::make(ca.cert_pem, *own, who);
  EXPECT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  return *ctx;
}

TransportOptions tls_node(uint64_t id, const KeyAndCert& ca = cluster_ca()) {
  TransportOptions o = node_options(id);
  o.tls = tls_of(ca, PeerKind::kNode, id);
  return o;
}

// A TLS client that writes `bytes` once its handshake is done, then reads
// frames until EOF: a peer with a real certificate saying what it likes.
class RawTlsPeer {
 public:
  RawTlsPeer(asio::io_context& io, uint16_t port, const std::shared_ptr<TlsContext>& ctx,
             std::string bytes)
      : s_(std::make_shared<State>(io, ctx)) {
    s_->socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    s_->to_write = std::move(bytes);
    s_->tls.async_handshake(asio::ssl::stream_base::client, [s = s_](error_code ec) {
      if (ec) {
        s->eof = true;
        return;
      }
      s->handshake_done = true;
      asio::async_write(s->tls, asio::buffer(s->to_write), [s](error_code, size_t) {});
      read_frames(s, s->tls);
    });
  }
  ~RawTlsPeer() {
    error_code ignored;
    s_->socket.close(ignored);
  }

  bool eof() const { return s_->eof; }
  bool handshake_done() const { return s_->handshake_done; }
  const std::vector<Received>& frames() const { return s_->frames; }

 private:
  struct State : FrameReader {
    State(asio::io_context& io, const std::shared_ptr<TlsContext>& c)
        : ctx(c), socket(io), tls(socket, ctx->asio()) {}
    std::shared_ptr<TlsContext> ctx;
    tcp::socket socket;
    asio::ssl::stream<tcp::socket&> tls;
    std::string to_write;
    bool handshake_done = false;
  };

  std::shared_ptr<State> s_;
};

// Accepts one connection, connects it on to `target` and forwards bytes both
// ways, keeping a copy of what the dialer sent: a man in the middle.
class RecordingProxy {
 public:
  RecordingProxy(asio::io_context& io, uint16_t target) : s_(std::make_shared<State>(io)) {
    s_->target = target;
    s_->acceptor.async_accept(s_->client, [s = s_](error_code ec) {
      if (ec) return;
      s->server.async_connect(
          tcp::endpoint(asio::ip::make_address("127.0.0.1"), s->target), [s](error_code cec) {
            if (cec) return;
            pump(s, s->client, s->server, s->up, &s->client_bytes);
            pump(s, s->server, s->client, s->down, nullptr);
          });
    });
  }
  ~RecordingProxy() { s_->close(); }

  uint16_t port() const { return s_->acceptor.local_endpoint().port(); }
  const std::string& client_bytes() const { return s_->client_bytes; }
  void close() { s_->close(); }

 private:
  struct State {
    explicit State(asio::io_context& io)
        : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          client(io),
          server(io) {}
    void close() {
      error_code ignored;
      acceptor.close(ignored);
      client.close(ignored);
      server.close(ignored);
    }
    tcp::acceptor acceptor;
    tcp::socket client;
    tcp::socket server;
    uint16_t target = 0;
    std::array<char, 4096> up{};
    std::array<char, 4096> down{};
    std::string client_bytes;
  };

  static void pump(const std::shared_ptr<State>& s, tcp::socket& from, tcp::socket& to,
                   std::array<char, 4096>& buf, std::string* record) {
    from.async_read_some(asio::buffer(buf), [s, &from, &to, &buf, record](error_code ec, size_t n) {
      if (ec) return s->close();
      if (record != nullptr) record->append(buf.data(), n);
      asio::async_write(to, asio::buffer(buf.data(), n),
                        [s, &from, &to, &buf, record](error_code wec, size_t) {
                          if (wec) return s->close();
                          pump(s, from, to, buf, record);
                        });
    });
  }

  std::shared_ptr<State> s_;
};

class TransportTlsTest : public TransportTest {};

TEST_F(TransportTlsTest, TlsLinksCarryFramesBothWaysLargeOnesIncluded) {
  Peer a(io_, tls_node(1));
  Peer b(io_, tls_node(2));
  link_up(a, b, b.listen());
  const std::string big(3 * 1024 * 1024 + 17, 'x');
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "hello over tls"));
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kTx, big));
  EXPECT_TRUE(b.t().send(PeerKind::kNode, 1, kTxAck, "and back"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 2 && a.frames.size() == 1; }));
  EXPECT_EQ(b.frames[0].payload, "hello over tls");
  EXPECT_EQ(b.frames[1].payload, big);
  EXPECT_EQ(a.frames[0].payload, "and back");
  EXPECT_EQ(a.t().counters().links_refused + b.t().counters().links_refused, 0u);
}

TEST_F(TransportTlsTest, APlaintextPeerWithACorrectHelloIsRefused) {
  Peer b(io_, tls_node(2));
  const uint16_t port = b.listen();
  RawPeer raw(io_, port);
  raw.write(hello_frame(kCluster, PeerKind::kNode, 1) + frame(kVr, "forged"));
  raw.start_reading();
  ASSERT_TRUE(run_until([&] { return raw.eof(); }));
  EXPECT_EQ(b.t().counters().links_refused, 1u);
  EXPECT_TRUE(b.frames.empty());
  EXPECT_TRUE(b.events.empty());

  // A plaintext transport dialing it fares no better, and vice versa.
  Peer plain(io_, node_options(1));
  plain.t().connect(address(2, port));
  ASSERT_TRUE(run_until([&] { return b.t().counters().links_refused >= 3; }));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_TRUE(b.events.empty());
}

TEST_F(TransportTlsTest, ACertificateFromAnotherCaIsRefusedBothWays) {
  Peer a(io_, tls_node(1, other_ca()));
  Peer b(io_, tls_node(2));
  a.t().connect(address(2, b.listen()));
  ASSERT_TRUE(run_until([&] {
    return a.t().counters().links_refused >= 2 && b.t().counters().links_refused >= 2;
  }));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_TRUE(a.events.empty());
  EXPECT_TRUE(b.events.empty());
}

TEST_F(TransportTlsTest, ANode3CertificateClaimingNode2IsRefusedAndDoesNotDisplaceNode2) {
  Peer b(io_, tls_node(1));
  Peer real(io_, tls_node(2));
  const uint16_t port = b.listen();
  real.t().connect(address(1, port));
  ASSERT_TRUE(run_until([&] { return b.t().connected(PeerKind::kNode, 2); }));

  RawTlsPeer imposter(io_, port, tls_of(cluster_ca(), PeerKind::kNode, 3),
                      hello_frame(kCluster, PeerKind::kNode, 2) + frame(kVr, "view 1000"));
  ASSERT_TRUE(run_until([&] { return imposter.eof(); }));
  EXPECT_TRUE(imposter.handshake_done());  // its certificate is good; its claim is not
  EXPECT_EQ(b.t().counters().links_refused, 1u);
  EXPECT_TRUE(b.frames.empty());
  EXPECT_TRUE(imposter.frames().empty());  // not even the node's hello

  // Node 2's own link is the one still up.
  EXPECT_TRUE(b.t().connected(PeerKind::kNode, 2));
  EXPECT_EQ(b.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true}}));
  EXPECT_TRUE(real.t().send(PeerKind::kNode, 1, kVr, "the real node 2"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 1; }));
  EXPECT_EQ(b.frames[0].payload, "the real node 2");
  EXPECT_EQ(b.frames[0].id, 2u);
}

TEST_F(TransportTlsTest, AGatewayLinkIsReplacedOnlyUnderTheSameCertificate) {
  Peer node(io_, tls_node(1));
  const uint16_t port = node.listen();
  const auto gateway_tls = tls_of(cluster_ca(), PeerKind::kGateway, 1);
  RawTlsPeer first(io_, port, gateway_tls, hello_frame(kCluster, PeerKind::kGateway, 5));
  ASSERT_TRUE(run_until([&] { return node.t().connected(PeerKind::kGateway, 5); }));
  // Another certificate holder (node 3's) names the same gateway incarnation.
  RawTlsPeer other(io_, port, tls_of(cluster_ca(), PeerKind::kNode, 3),
                   hello_frame(kCluster, PeerKind::kGateway, 5));
  ASSERT_TRUE(run_until([&] { return other.eof(); }));
  EXPECT_EQ(node.t().counters().links_refused, 1u);
  EXPECT_FALSE(first.eof());
  // The gateway itself, redialing, does replace its link.
  RawTlsPeer again(io_, port, gateway_tls, hello_frame(kCluster, PeerKind::kGateway, 5));
  ASSERT_TRUE(run_until([&] { return first.eof() && again.frames().size() == 1; }));
  EXPECT_TRUE(node.t().connected(PeerKind::kGateway, 5));
  EXPECT_EQ(node.t().counters().links_refused, 1u);
}

TEST_F(TransportTlsTest, ADialerRefusesAServerHoldingAnotherNodesCertificate) {
  Peer a(io_, tls_node(1));
  Peer b(io_, tls_node(2));
  a.t().connect(address(9, b.listen()));  // node 2 listens where node 9 was expected
  ASSERT_TRUE(run_until([&] { return a.t().counters().links_refused >= 2; }));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 9));
  EXPECT_TRUE(a.events.empty());
  EXPECT_TRUE(b.frames.empty());
}

TEST_F(TransportTlsTest, ReplayedBytesOfARealLinkGetNoHandshake) {
  Peer b(io_, tls_node(2));
  const uint16_t port = b.listen();
  RecordingProxy proxy(io_, port);
  Peer a(io_, tls_node(1));
  a.t().connect(address(2, proxy.port()));
  ASSERT_TRUE(run_until([&] {
    return a.t().connected(PeerKind::kNode, 2) && b.t().connected(PeerKind::kNode, 1);
  }));
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "StartViewChange, view 1000"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 1; }));
  const std::string recorded = proxy.client_bytes();
  // Nothing of the frame is in the clear.
  EXPECT_EQ(recorded.find("StartViewChange"), std::string::npos);
  EXPECT_GT(recorded.size(), 500u);
  proxy.close();
  a.t().close();
  ASSERT_TRUE(run_until([&] { return !b.t().connected(PeerKind::kNode, 1); }));

  RawPeer replay(io_, port);
  replay.write(recorded);
  replay.start_reading();
  ASSERT_TRUE(run_until([&] { return replay.eof(); }));
  EXPECT_EQ(b.t().counters().links_refused, 1u);
  EXPECT_EQ(b.frames.size(), 1u);
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
}

TEST_F(TransportTlsTest, TheHandshakeTimeoutCoversTheTlsHandshake) {
  TransportOptions bo = tls_node(2);
  bo.handshake_timeout = 50ms;
  Peer b(io_, bo);
  RawPeer silent(io_, b.listen());
  silent.start_reading();
  ASSERT_TRUE(run_until([&] { return silent.eof(); }));
  EXPECT_EQ(b.t().counters().protocol_errors, 1u);
}

TEST_F(TransportTlsTest, AGatewayWithItsCertificateLinksToANode) {
  Peer node(io_, tls_node(1));
  TransportOptions go = gateway_options(0xfeedbeef);  // an incarnation, not its config id
  go.tls = tls_of(cluster_ca(), PeerKind::kGateway, 4);
  Peer gateway(io_, go);
  gateway.t().connect(address(1, node.listen()));
  ASSERT_TRUE(run_until([&] { return node.t().connected(PeerKind::kGateway, 0xfeedbeef); }));
  EXPECT_TRUE(node.t().send(PeerKind::kGateway, 0xfeedbeef, kTxAck, "ack"));
  ASSERT_TRUE(run_until([&] { return gateway.frames.size() == 1; }));
  EXPECT_EQ(gateway.frames[0].payload, "ack");
}

}  // namespace
}  // namespace maroon::net
