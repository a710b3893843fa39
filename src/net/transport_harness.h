// Test helpers for the transport's tests (transport_test.cc,
// transport_tls_test.cc): transports that record what their handlers see,
// raw sockets that speak or abuse the wire protocol, and a fixture that runs
// the io_context until a condition holds or a deadline passes.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "net/peer_hello.h"
#include "net/transport.h"
#include "protocol/frame.h"

namespace maroon::net::testing_harness {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using protocol::FrameType;

inline constexpr uint64_t kCluster = 7;
inline constexpr auto kDeadline = 3s;
inline constexpr uint8_t kVr = static_cast<uint8_t>(FrameType::kVr);
inline constexpr uint8_t kTx = static_cast<uint8_t>(FrameType::kTx);
inline constexpr uint8_t kTxAck = static_cast<uint8_t>(FrameType::kTxAck);


struct Received {
  PeerKind kind;
  uint64_t id;
  uint8_t type;
  std::string payload;
};

struct LinkEvent {
  PeerKind kind;
  uint64_t id;
  bool up;
  bool operator==(const LinkEvent&) const = default;
};

// A transport that records what its handlers see.
class Peer {
 public:
  Peer(asio::io_context& io, const TransportOptions& options)
      : transport_(
            io, options,
            [this](PeerKind kind, uint64_t id, uint8_t type, std::string_view payload) {
              frames.push_back({kind, id, type, std::string(payload)});
              if (on_frame) on_frame(kind, id, type, payload);
            },
            [this](PeerKind kind, uint64_t id, bool up) {
              events.push_back({kind, id, up});
              if (on_link) on_link(kind, id, up);
            }) {}

  Transport& t() { return transport_; }
  uint16_t listen() {
    EXPECT_TRUE(transport_.listen("127.0.0.1", port_).is_ok());
    return transport_.bound_port();
  }
  Peer& on_port(uint16_t port) {
    port_ = port;
    return *this;
  }

  std::vector<Received> frames;
  std::vector<LinkEvent> events;
  std::function<void(PeerKind, uint64_t, uint8_t, std::string_view)> on_frame;
  std::function<void(PeerKind, uint64_t, bool)> on_link;

 private:
  uint16_t port_ = 0;
  Transport transport_;  // last: destroyed first, while the vectors exist
};

inline TransportOptions node_options(uint64_t id) {
  return {.cluster_id = kCluster,
          .self_kind = PeerKind::kNode,
          .self_id = id,
          .reconnect_min = 2ms,
          .reconnect_max = 40ms,
          .handshake_timeout = 1000ms};
}

inline TransportOptions gateway_options(uint64_t id) {
  TransportOptions o = node_options(id);
  o.self_kind = PeerKind::kGateway;
  return o;
}

inline PeerAddress address(uint64_t id, uint16_t port) {
  return {.id = id, .host = "127.0.0.1", .port = port};
}

inline std::string frame(uint8_t type, std::string_view payload) {
  std::string out;
  protocol::encode_frame(type, payload, out);
  return out;
}

inline std::string hello_frame(uint64_t cluster, PeerKind kind, uint64_t id) {
  std::string payload;
  encode_peer_hello({.cluster_id = cluster, .kind = kind, .id = id}, payload);
  return frame(static_cast<uint8_t>(FrameType::kPeerHello), payload);
}

// What a raw peer has read: the frames decoded, and whether the stream ended.
struct FrameReader {
  protocol::FrameDecoder decoder;
  std::vector<Received> frames;
  bool eof = false;
};

// Reads `stream` until an error, decoding frames into `owner`'s FrameReader
// part; the pending read holds `owner`, which holds the stream.
template <typename Owner, typename Stream>
void read_frames(const std::shared_ptr<Owner>& owner, Stream& stream) {
  FrameReader& r = *owner;
  std::span<char> space = r.decoder.prepare(4096);
  stream.async_read_some(asio::buffer(space.data(), space.size()),
                         [owner, &stream](error_code ec, size_t n) {
                           FrameReader& fr = *owner;
                           if (ec) {
                             fr.eof = true;
                             return;
                           }
                           fr.decoder.commit(n);
                           protocol::Frame f;
                           while (fr.decoder.next(f) == protocol::DecodeResult::kFrame) {
                             fr.frames.push_back({PeerKind::kNode, 0, f.type, std::string(f.payload)});
                           }
                           read_frames(owner, stream);
                         });
}

// A plain socket speaking (or abusing) the wire protocol. Its read state is
// shared with the pending read, so destroying it mid-read is safe.
class RawPeer {
 public:
  RawPeer(asio::io_context& io, uint16_t port, int receive_buffer_bytes = 0)
      : s_(std::make_shared<State>(io)) {
    s_->socket.open(tcp::v4());
    if (receive_buffer_bytes > 0) {
      s_->socket.set_option(asio::socket_base::receive_buffer_size(receive_buffer_bytes));
    }
    // The kernel completes the handshake from the backlog; no loop needed.
    s_->socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  ~RawPeer() {
    error_code ignored;
    s_->socket.close(ignored);
  }

  void write(std::string_view bytes) { asio::write(s_->socket, asio::buffer(bytes)); }

  // Reads until EOF, decoding frames as they come.
  void start_reading() { read_frames(s_, s_->socket); }
  bool eof() const { return s_->eof; }
  const std::vector<Received>& frames() const { return s_->frames; }

 private:
  struct State : FrameReader {
    explicit State(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
  };

  std::shared_ptr<State> s_;
};

class TransportTest : public testing::Test {
 protected:
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = kDeadline) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(10ms);
    }
    return done();
  }
  // Runs whatever is ready and what becomes ready within `d`.
  void run_for(std::chrono::milliseconds d) {
    const auto deadline = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
    }
  }

  uint16_t free_port() {
    tcp::acceptor a(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return a.local_endpoint().port();
  }

  // Node 1 dials node 2; returns once both see the link.
  void link_up(Peer& a, Peer& b, uint16_t b_port) {
    a.t().connect(address(2, b_port));
    ASSERT_TRUE(run_until([&] {
      return a.t().connected(PeerKind::kNode, 2) && b.t().connected(PeerKind::kNode, 1);
    }));
  }

  // Declared first: destroyed last, after every transport and socket.
  asio::io_context io_;
};

}  // namespace maroon::net::testing_harness
