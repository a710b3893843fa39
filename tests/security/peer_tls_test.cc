// Forged peers against a real 3-node cluster (docs/security.md, "Peer
// links"). Each forger knows everything in cluster.toml and speaks the wire
// protocol correctly: a PeerHello naming another node, then a StartViewChange
// for view 1000 with the right cluster id, sent to every node's peer port.
//
//   1. Control, a cluster without [peer_tls]: the plaintext forger's link is
//      taken and the cluster moves to view 1000 (the finding this fixes).
//   2. A cluster with TLS (as `maroon cluster up` makes it): the same
//      plaintext forger, a forger with a certificate of another CA (same
//      cluster id), and one with node 3's real certificate claiming to be
//      node 2 are each refused; the view stays where it was, the cluster
//      keeps serving, and the nodes' logs say why.
//
// Waits are on conditions with deadlines; nothing sleeps to synchronize.
//
//   maroon-peer-tls-test --maroon BUILD/src/cli/maroon --dir DIR
#include <fmt/format.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "local_cluster.h"
#include "maroon/app.h"
#include "net/cert_files.h"
#include "net/certs.h"
#include "net/peer_hello.h"
#include "net/tls.h"
#include "protocol/frame.h"
#include "vr/codec.h"
#include "vr/messages.h"

namespace maroon::peer_tls_test {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

constexpr uint64_t kForgedView = 1000;
constexpr milliseconds kStartTimeout{90000};
// How long the view is given to move.
constexpr milliseconds kVerdictTimeout{5000};

void note(const std::string& line) {
  std::printf("peer-tls-test: %s\n", line.c_str());
  std::fflush(stdout);
}

// A hello naming `as_node` (running the apps the nodes run), then its
// StartViewChange for the forged view.
std::string forged_bytes(uint64_t cluster_id, uint32_t as_node) {
  std::string hello;
  net::encode_peer_hello({.cluster_id = cluster_id,
                          .kind = net::PeerKind::kNode,
                          .id = as_node,
                          .apps = app_ids(builtin_apps())},
                         hello);
  std::string out;
  protocol::encode_frame(static_cast<uint8_t>(protocol::FrameType::kPeerHello), hello, out);
  std::string svc;
  vr::encode_message(vr::StartViewChange{.h = {.epoch = vr::ConfigEpoch(0),
                                               .view = vr::ViewNumber(kForgedView),
                                               .from = vr::ReplicaId(as_node)}},
                     svc);
  protocol::encode_frame(static_cast<uint8_t>(protocol::FrameType::kVr), svc, out);
  return out;
}

enum class Verdict { kRefused, kAccepted };

const char* name(Verdict v) { return v == Verdict::kRefused ? "refused" : "accepted"; }

// Reads until the node answers with its own PeerHello (it took the link) or
// closes the connection without one (refused). A node does either at once.
template <typename Stream>
Verdict await_verdict(Stream& s) {
  protocol::FrameDecoder decoder;
  for (;;) {
    boost::system::error_code ec;
    const std::span<char> space = decoder.prepare(4096);
    const size_t n = s.read_some(asio::buffer(space.data(), space.size()), ec);
    if (ec) return Verdict::kRefused;  // EOF, reset, a TLS alert
    decoder.commit(n);
    protocol::Frame f;
    switch (decoder.next(f)) {
      case protocol::DecodeResult::kNeedMore:
        continue;
      case protocol::DecodeResult::kFrame:
        return f.type == static_cast<uint8_t>(protocol::FrameType::kPeerHello) ? Verdict::kAccepted
                                                                               : Verdict::kRefused;
      case protocol::DecodeResult::kError:
        return Verdict::kRefused;  // not our protocol: e.g. a TLS alert to a plaintext peer
    }
  }
}

Result<tcp::socket> dial(asio::io_context& io, const chaos::NodeProc& n) {
  tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address(n.host), n.peer_port), ec);
  if (ec) return unavailable(fmt::format("connect to node {}: {}", n.id, ec.message()));
  return socket;
}

Result<Verdict> forge_plaintext(const chaos::NodeProc& n, const std::string& bytes) {
  asio::io_context io;
  Result<tcp::socket> socket = dial(io, n);
  if (!socket.is_ok()) return socket.status();
  boost::system::error_code ec;
  asio::write(*socket, asio::buffer(bytes), ec);
  if (ec) return Verdict::kRefused;
  return await_verdict(*socket);
}

Result<Verdict> forge_tls(const chaos::NodeProc& n, net::TlsContext& ctx, const std::string& bytes) {
  asio::io_context io;
  Result<tcp::socket> socket = dial(io, n);
  if (!socket.is_ok()) return socket.status();
  asio::ssl::stream<tcp::socket&> tls(*socket, ctx.asio());
  boost::system::error_code ec;
  tls.handshake(asio::ssl::stream_base::client, ec);
  if (ec) return Verdict::kRefused;
  asio::write(tls, asio::buffer(bytes), ec);
  if (ec) return Verdict::kRefused;
  return await_verdict(tls);
}

uint64_t max_view(const chaos::LocalCluster& cl) {
  uint64_t view = 0;
  for (size_t i = 0; i < cl.size(); i++) {
    auto s = cl.status(i, milliseconds(2000));
    if (s.is_ok()) view = std::max(view, s->view);
  }
  return view;
}

uint64_t cluster_id_of(const chaos::LocalCluster& cl) {
  return cluster::load_cluster_config(cl.config_path().string()).value().cluster_id;
}

// A fresh 3-node cluster in `dir`, started and serving. On failure it has
// printed the nodes' logs and stopped them.
Result<chaos::LocalCluster> serving_cluster(const std::string& maroon, const fs::path& dir,
                                            bool peer_tls) {
  Result<chaos::LocalCluster> made = chaos::fresh_cluster(maroon, dir, 3, peer_tls);
  if (!made.is_ok()) return made.status();
  if (Status s = chaos::start_all_serving(*made, "peer-tls-test", kStartTimeout); !s) {
    chaos::fail_test(*made, "peer-tls-test", s.to_string());
    return s;
  }
  return made;
}

// Every node gets the forgery of another node: 1 claims to be 2, 2 and 3 to be 1.
uint32_t impersonated(size_t i) { return i == 0 ? 2 : 1; }

int control(const std::string& maroon, const fs::path& dir) {
  Result<chaos::LocalCluster> made = serving_cluster(maroon, dir, /*peer_tls=*/false);
  if (!made.is_ok()) {
    std::fprintf(stderr, "peer-tls-test: control: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  auto fail = [&](const std::string& why) { return chaos::fail_test(cl, "peer-tls-test", why); };
  const uint64_t cluster_id = cluster_id_of(cl);
  for (size_t i = 0; i < cl.size(); i++) {
    Result<Verdict> v = forge_plaintext(cl.node(i), forged_bytes(cluster_id, impersonated(i)));
    if (!v.is_ok()) return fail(v.status().to_string());
    note(fmt::format("control: plaintext forgery to node {}: {}", cl.node(i).id, name(*v)));
    if (*v != Verdict::kAccepted) return fail("the control cluster refused the forger");
    if (max_view(cl) >= kForgedView) break;
  }
  if (!chaos::wait_until([&] { return max_view(cl) >= kForgedView; }, kVerdictTimeout)) {
    return fail(fmt::format("the forgery did not move the plaintext cluster to view {}: the test "
                            "would not see the attack",
                            kForgedView));
  }
  note(fmt::format("control: without peer TLS the forgery moved the cluster to view {}",
                   max_view(cl)));
  cl.shutdown(milliseconds(20000));
  return 0;
}

int with_tls(const std::string& maroon, const fs::path& dir) {
  Result<chaos::LocalCluster> made = serving_cluster(maroon, dir, /*peer_tls=*/true);
  if (!made.is_ok()) {
    std::fprintf(stderr, "peer-tls-test: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  auto fail = [&](const std::string& why) { return chaos::fail_test(cl, "peer-tls-test", why); };
  const uint64_t cluster_id = cluster_id_of(cl);
  const uint64_t view_before = max_view(cl);
  note(fmt::format("TLS cluster {} serving at view {}", cluster_id, view_before));

  // Node 3's real certificate, from the cluster's CA; and one of another CA.
  const std::string tls_dir = cl.tls_dir().string();
  const net::KeyAndCert ca{net::read_pem_file(net::ca_key_path(tls_dir), true).value(),
                           net::read_pem_file(net::ca_cert_path(tls_dir), false).value()};
  auto context = [&](const net::KeyAndCert& issuer, uint64_t node) {
    const net::PeerIdentity who{.cluster_id = cluster_id, .kind = net::PeerKind::kNode, .id = node};
    return net::TlsContext::make(issuer.cert_pem, net::issue_cert(issuer, who, 1).value(), who)
        .value();
  };
  const net::KeyAndCert other_ca = net::make_ca(cluster_id, 1).value();

  for (size_t i = 0; i < cl.size(); i++) {
    const chaos::NodeProc& n = cl.node(i);
    const uint32_t as = impersonated(i);
    const std::string bytes = forged_bytes(cluster_id, as);
    struct Attempt {
      std::string what;
      Result<Verdict> verdict;
    };
    constexpr uint32_t holder = 3;  // a real certificate, not of the node it claims to be
    auto own_ca = context(ca, holder);
    auto foreign = context(other_ca, as);
    const Attempt attempts[] = {
        {fmt::format("plaintext, as node {}", as), forge_plaintext(n, bytes)},
        {fmt::format("another CA's certificate of node {}", as), forge_tls(n, *foreign, bytes)},
        {fmt::format("node {}'s certificate, as node {}", holder, as), forge_tls(n, *own_ca, bytes)},
    };
    for (const Attempt& a : attempts) {
      if (!a.verdict.is_ok()) return fail(a.what + ": " + a.verdict.status().to_string());
      note(fmt::format("node {}: {}: {}", n.id, a.what, name(*a.verdict)));
      if (*a.verdict != Verdict::kRefused) {
        return fail(fmt::format("node {} kept a forged link ({})", n.id, a.what));
      }
    }
  }
  if (chaos::wait_until([&] { return max_view(cl) >= kForgedView; }, kVerdictTimeout)) {
    return fail(fmt::format("a forgery moved the cluster to view {}", max_view(cl)));
  }
  for (size_t i = 0; i < cl.size(); i++) {
    if (!chaos::wait_until([&] { return chaos::serves_as_member(cl, i); }, kStartTimeout)) {
      return fail(fmt::format("node {} stopped serving", cl.node(i).id));
    }
    const std::string log = chaos::read_whole_file(cl.node(i).log);
    for (const char* says : {"TLS handshake failed", "its hello names node"}) {
      if (log.find(says) == std::string::npos) {
        return fail(fmt::format("node {}'s log does not say \"{}\"", cl.node(i).id, says));
      }
    }
  }
  note(fmt::format("every forgery refused and logged; view {} (was {})", max_view(cl), view_before));
  const std::vector<std::string> unclean = cl.shutdown(milliseconds(20000));
  if (!unclean.empty()) return fail("shutdown: " + unclean.front());
  return 0;
}

}  // namespace
}  // namespace maroon::peer_tls_test

int main(int argc, char** argv) {
  std::string maroon, dir;
  if (!maroon::chaos::parse_test_args(argc, argv,
                                      "usage: maroon-peer-tls-test --maroon BINARY --dir DIR",
                                      maroon, dir)) {
    return 2;
  }
  const std::filesystem::path root(dir);
  if (int rc = maroon::peer_tls_test::control(maroon, root / "plaintext"); rc != 0) return rc;
  if (int rc = maroon::peer_tls_test::with_tls(maroon, root / "tls"); rc != 0) return rc;
  std::printf("peer-tls-test: PASSED\n");
  return 0;
}
