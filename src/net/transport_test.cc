#include "net/transport.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/codec.h"
#include "maroon/prng.h"
#include "common/backoff.h"
#include "net/peer_hello.h"
#include "net/transport_harness.h"
#include "protocol/frame.h"

namespace maroon::net {
namespace {

using namespace testing_harness;

// ---- PeerHello and Backoff ----

TEST(PeerHello, RoundTripsAndRejectsMalformedPayloads) {
  std::string payload;
  encode_peer_hello({.cluster_id = 42, .kind = PeerKind::kGateway, .id = 9}, payload);
  ASSERT_EQ(payload.size(), kPeerHelloBytes);
  Result<PeerHello> h = decode_peer_hello(payload);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->version, kPeerHelloVersion);
  EXPECT_EQ(h->cluster_id, 42u);
  EXPECT_EQ(h->kind, PeerKind::kGateway);
  EXPECT_EQ(h->id, 9u);

  EXPECT_FALSE(decode_peer_hello(payload.substr(0, kPeerHelloBytes - 1)).is_ok());
  EXPECT_FALSE(decode_peer_hello(payload + "x").is_ok());
  std::string bad_kind = payload;
  bad_kind[12] = 3;
  EXPECT_FALSE(decode_peer_hello(bad_kind).is_ok());
  EXPECT_FALSE(decode_peer_hello("").is_ok());
}

TEST(PeerHello, CarriesTheAppsInOrderAndRefusesOthers) {
  std::string payload;
  encode_peer_hello({.cluster_id = 42, .kind = PeerKind::kNode, .id = 1, .apps = {3, 70000}},
                    payload);
  ASSERT_EQ(payload.size(), kPeerHelloBytes + 8);
  Result<PeerHello> h = decode_peer_hello(payload);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->apps, (std::vector<uint32_t>{3, 70000}));
  std::string swapped = payload.substr(0, kPeerHelloBytes);
  swapped += payload.substr(kPeerHelloBytes + 4, 4);
  swapped += payload.substr(kPeerHelloBytes, 4);
  EXPECT_FALSE(decode_peer_hello(swapped).is_ok());
  std::string twice = payload.substr(0, kPeerHelloBytes) + payload.substr(kPeerHelloBytes, 4) +
                      payload.substr(kPeerHelloBytes, 4);
  EXPECT_FALSE(decode_peer_hello(twice).is_ok());
  std::string too_many = payload;
  too_many[kPeerHelloBytes - 1] = static_cast<char>(kPeerHelloAppsMax + 1);
  EXPECT_FALSE(decode_peer_hello(too_many).is_ok());
  EXPECT_FALSE(decode_peer_hello(payload.substr(0, payload.size() - 1)).is_ok());
}

TEST(PeerHello, NodesRunTheSameAppsAndAGatewayASubset) {
  const std::vector<uint32_t> kv{1}, kv_hello{1, 2}, hello{2};
  EXPECT_EQ(apps_mismatch(PeerKind::kNode, kv_hello, PeerKind::kNode, kv_hello), "");
  std::string why = apps_mismatch(PeerKind::kNode, kv_hello, PeerKind::kNode, kv);
  EXPECT_NE(why.find("every node of a cluster must run the same apps"), std::string::npos) << why;
  EXPECT_NE(why.find("0x00000002"), std::string::npos) << why;
  EXPECT_NE(apps_mismatch(PeerKind::kNode, kv, PeerKind::kNode, kv_hello), "");
  // A node accepts a gateway running fewer apps, not more; and the gateway
  // judges a node the same way.
  EXPECT_EQ(apps_mismatch(PeerKind::kNode, kv_hello, PeerKind::kGateway, kv), "");
  EXPECT_EQ(apps_mismatch(PeerKind::kGateway, kv, PeerKind::kNode, kv_hello), "");
  EXPECT_NE(apps_mismatch(PeerKind::kNode, kv, PeerKind::kGateway, kv_hello), "");
  EXPECT_NE(apps_mismatch(PeerKind::kGateway, kv_hello, PeerKind::kNode, kv), "");
  EXPECT_NE(apps_mismatch(PeerKind::kNode, kv, PeerKind::kGateway, hello), "");
}

TEST(Backoff, GrowsExponentiallyWithJitterUpToMaxAndResets) {
  Backoff b(10ms, 200ms, 1);
  for (int round = 0; round < 2; round++) {
    std::chrono::milliseconds nominal = 10ms;
    for (int i = 0; i < 12; i++) {
      const auto d = b.next();
      EXPECT_GE(d, nominal / 2) << i;
      EXPECT_LE(d, nominal) << i;
      nominal = std::min<std::chrono::milliseconds>(nominal * 2, 200ms);
    }
    b.reset();
  }
  Backoff zero(0ms, 0ms, 2);
  EXPECT_EQ(zero.next(), 0ms);
}

// ---- Transport over loopback ----

TEST_F(TransportTest, TwoTransportsExchangeFramesBothWays) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  const uint16_t port = b.listen();
  EXPECT_FALSE(a.t().send(PeerKind::kNode, 2, kVr, "too early"));
  link_up(a, b, port);
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true}}));
  EXPECT_EQ(b.events, (std::vector<LinkEvent>{{PeerKind::kNode, 1, true}}));

  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "from a"));
  EXPECT_TRUE(b.t().send(PeerKind::kNode, 1, kVr, "from b"));  // on the inbound link
  EXPECT_TRUE(b.t().send(PeerKind::kNode, 1, kVr, ""));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 1 && a.frames.size() == 2; }));
  EXPECT_EQ(b.frames[0].kind, PeerKind::kNode);
  EXPECT_EQ(b.frames[0].id, 1u);
  EXPECT_EQ(b.frames[0].type, kVr);
  EXPECT_EQ(b.frames[0].payload, "from a");
  EXPECT_EQ(a.frames[0].id, 2u);
  EXPECT_EQ(a.frames[0].payload, "from b");
  EXPECT_EQ(a.frames[1].payload, "");
  EXPECT_FALSE(a.t().send(PeerKind::kNode, 3, kVr, "nobody"));
  EXPECT_FALSE(a.t().send(PeerKind::kGateway, 2, kVr, "wrong kind"));
  EXPECT_EQ(a.t().counters().frames_dropped, 3u);
  ASSERT_TRUE(run_until([&] { return a.t().queued_bytes_total() == 0; }));
  EXPECT_EQ(a.t().counters().frames_sent, 1u);
  EXPECT_EQ(b.t().counters().frames_sent, 2u);
  EXPECT_EQ(b.t().counters().frames_received, 1u);
  EXPECT_EQ(a.t().counters().reconnects, 0u);
}

TEST_F(TransportTest, TenThousandFramesEachWayArriveInOrderAndIntact) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  link_up(a, b, b.listen());
  constexpr uint64_t kFrames = 10000;
  const auto payload = [](uint64_t seq) {
    std::string p;
    ByteWriter(p).u64(seq);
    p.append(seq % 300, static_cast<char>('a' + seq % 26));
    return p;
  };
  for (uint64_t i = 0; i < kFrames; i++) {
    ASSERT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, payload(i)));
    ASSERT_TRUE(b.t().send(PeerKind::kNode, 1, kTx, payload(i)));
  }
  ASSERT_TRUE(run_until([&] { return a.frames.size() == kFrames && b.frames.size() == kFrames; }));
  for (uint64_t i = 0; i < kFrames; i++) {
    ASSERT_EQ(b.frames[i].payload, payload(i)) << i;
    ASSERT_EQ(b.frames[i].type, kVr);
    ASSERT_EQ(a.frames[i].payload, payload(i)) << i;
    ASSERT_EQ(a.frames[i].type, kTx);
  }
  ASSERT_TRUE(run_until([&] { return a.t().queued_bytes_total() == 0; }));
  EXPECT_EQ(a.t().counters().frames_sent, kFrames);
  EXPECT_EQ(b.t().counters().frames_received, kFrames);
  EXPECT_EQ(a.t().counters().bytes_sent, b.t().counters().bytes_received);
}

// Backpressure: while b's reads are paused, a's frames stop arriving after
// at most one read's worth, pile up in the kernel and then in a's queue;
// resuming delivers every one, in order.
TEST_F(TransportTest, PausedReadsStopDeliveryAndResumingDeliversEverythingInOrder) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  link_up(a, b, b.listen());
  b.t().set_reads_paused(true);
  EXPECT_TRUE(b.t().reads_paused());
  constexpr uint64_t kFrames = 2000;
  const std::string filler(4000, 'f');
  for (uint64_t i = 0; i < kFrames; i++) {
    std::string p;
    ByteWriter(p).u64(i);
    p += filler;
    ASSERT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, p));
  }
  run_for(300ms);
  const size_t while_paused = b.frames.size();
  // One read in flight when the pause began may still hand on its frames.
  EXPECT_LT(while_paused, kFrames / 4) << "reads went on while paused";
  run_for(200ms);
  EXPECT_EQ(b.frames.size(), while_paused) << "frames kept arriving while paused";
  EXPECT_GT(a.t().queued_bytes(PeerKind::kNode, 2), 0u) << "the sender never felt the pause";
  b.t().set_reads_paused(false);
  ASSERT_TRUE(run_until([&] { return b.frames.size() == kFrames; }));
  for (uint64_t i = 0; i < kFrames; i++) {
    uint64_t seq = ~uint64_t{0};
    ByteReader r(b.frames[i].payload);
    ASSERT_TRUE(r.u64(seq));
    ASSERT_EQ(seq, i);
  }
  EXPECT_EQ(b.t().counters().read_pauses, 1u);
}

TEST_F(TransportTest, DialerRetriesUntilThePeerStartsListening) {
  const uint16_t port = free_port();
  Peer a(io_, node_options(1));
  a.t().connect(address(2, port));
  ASSERT_TRUE(run_until([&] { return a.t().counters().reconnects >= 3; }));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_TRUE(a.events.empty());

  Peer b(io_, node_options(2));
  b.on_port(port).listen();
  ASSERT_TRUE(run_until([&] { return a.t().connected(PeerKind::kNode, 2); }));
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "finally"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 1; }));
  EXPECT_EQ(b.frames[0].payload, "finally");
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true}}));
}

TEST_F(TransportTest, PeerRestartBringsTheLinkBackDownThenUp) {
  Peer a(io_, node_options(1));
  auto b = std::make_unique<Peer>(io_, node_options(2));
  const uint16_t port = b->listen();
  link_up(a, *b, port);
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "before"));
  ASSERT_TRUE(run_until([&] { return b->frames.size() == 1; }));

  b.reset();  // with its links and a pending read: nothing of it may run later
  ASSERT_TRUE(run_until([&] { return !a.t().connected(PeerKind::kNode, 2); }));
  EXPECT_FALSE(a.t().send(PeerKind::kNode, 2, kVr, "while down"));
  run_for(20ms);  // a few failed redials

  b = std::make_unique<Peer>(io_, node_options(2));
  b->on_port(port).listen();
  ASSERT_TRUE(run_until([&] { return a.t().connected(PeerKind::kNode, 2); }));
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "after"));
  ASSERT_TRUE(run_until([&] { return b->frames.size() == 1; }));
  EXPECT_EQ(b->frames[0].payload, "after");
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false},
                                              {PeerKind::kNode, 2, true}}));
  EXPECT_GE(a.t().counters().reconnects, 1u);
}

TEST_F(TransportTest, WrongClusterIdIsRefused) {
  Peer a(io_, node_options(1));
  TransportOptions other = node_options(2);
  other.cluster_id = kCluster + 1;
  Peer b(io_, other);
  a.t().connect(address(2, b.listen()));
  ASSERT_TRUE(run_until([&] { return b.t().counters().links_refused >= 2; }));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_TRUE(a.events.empty());
  EXPECT_TRUE(b.events.empty());
}

TEST_F(TransportTest, NodesRunningOtherAppsAreRefused) {
  TransportOptions ao = node_options(1);
  ao.apps = {1, 2};
  TransportOptions bo = node_options(2);
  bo.apps = {1};
  Peer a(io_, ao);
  Peer b(io_, bo);
  a.t().connect(address(2, b.listen()));
  ASSERT_TRUE(run_until([&] { return b.t().counters().links_refused >= 2; }));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_TRUE(a.events.empty());
  EXPECT_TRUE(b.events.empty());
}

TEST_F(TransportTest, AGatewayRunningAnAppTheNodeLacksIsRefused) {
  TransportOptions no = node_options(1);
  no.apps = {1, 2};
  Peer node(io_, no);
  TransportOptions fewer = gateway_options(100);
  fewer.apps = {2};
  Peer fine(io_, fewer);
  const uint16_t port = node.listen();
  fine.t().connect(address(1, port));
  ASSERT_TRUE(run_until([&] { return fine.t().connected(PeerKind::kNode, 1); }));
  TransportOptions more = gateway_options(101);
  more.apps = {1, 2, 3};
  Peer extra(io_, more);
  extra.t().connect(address(1, port));
  ASSERT_TRUE(run_until([&] { return node.t().counters().links_refused >= 2; }));
  EXPECT_FALSE(extra.t().connected(PeerKind::kNode, 1));
  EXPECT_FALSE(node.t().connected(PeerKind::kGateway, 101));
  EXPECT_TRUE(node.t().connected(PeerKind::kGateway, 100));
}

TEST_F(TransportTest, AReplyNamingAnotherNodeIsRefusedByTheDialer) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  a.t().connect(address(9, b.listen()));  // node 2 listens where node 9 was expected
  ASSERT_TRUE(run_until([&] { return a.t().counters().links_refused >= 2; }));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 9));
  EXPECT_TRUE(a.events.empty());
}

TEST_F(TransportTest, GarbageClosesOnlyThatLink) {
  Peer a(io_, node_options(1));
  TransportOptions bo = node_options(2);
  bo.handshake_timeout = 300ms;  // random bytes may look like the start of a long frame
  Peer b(io_, bo);
  link_up(a, b, b.listen());
  const uint16_t port = b.t().bound_port();

  std::string random(1000, '\0');
  Prng prng(99);
  for (char& c : random) c = static_cast<char>(prng.next());
  std::string bad_checksum = hello_frame(kCluster, PeerKind::kNode, 5);
  bad_checksum[5] ^= 1;
  std::string huge = frame(kVr, "x");
  huge[0] = huge[1] = huge[2] = huge[3] = static_cast<char>(0xff);
  std::string bad_after_hello = hello_frame(kCluster, PeerKind::kNode, 6) + frame(kVr, "ok");
  std::string corrupt = frame(kVr, "corrupt me");
  corrupt.back() ^= 1;
  bad_after_hello += corrupt;
  const std::vector<std::string> abuses = {
      random,
      bad_checksum,
      huge,
      frame(kVr, "no hello first"),
      hello_frame(kCluster, PeerKind::kNode, 7) + hello_frame(kCluster, PeerKind::kNode, 7),
      frame(static_cast<uint8_t>(FrameType::kPeerHello), "short"),
      bad_after_hello,
  };
  std::vector<std::unique_ptr<RawPeer>> raws;
  for (const std::string& bytes : abuses) {
    raws.push_back(std::make_unique<RawPeer>(io_, port));
    raws.back()->write(bytes);
    raws.back()->start_reading();
  }
  ASSERT_TRUE(run_until([&] {
    for (auto& r : raws) {
      if (!r->eof()) return false;
    }
    return true;
  }));
  EXPECT_EQ(b.t().counters().protocol_errors, abuses.size());
  // The frame before the corrupt one was delivered; the ones after a hello
  // each saw node 6 and 7 come and go.
  ASSERT_EQ(b.frames.size(), 1u);
  EXPECT_EQ(b.frames[0].id, 6u);
  EXPECT_EQ(b.frames[0].payload, "ok");
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 6));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 7));

  // The good link still works both ways.
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "still here"));
  EXPECT_TRUE(b.t().send(PeerKind::kNode, 1, kVr, "me too"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 2 && a.frames.size() == 1; }));
  EXPECT_EQ(b.frames[1].payload, "still here");
  EXPECT_EQ(a.frames[0].payload, "me too");
}

TEST_F(TransportTest, SilentInboundLinkTimesOut) {
  TransportOptions bo = node_options(2);
  bo.handshake_timeout = 50ms;
  Peer b(io_, bo);
  RawPeer raw(io_, b.listen());
  raw.start_reading();
  ASSERT_TRUE(run_until([&] { return raw.eof(); }));
  EXPECT_EQ(b.t().counters().protocol_errors, 1u);
}

TEST_F(TransportTest, SendRefusesOnceTheQueueIsFullAgainstAPeerThatDoesNotRead) {
  constexpr size_t kLimit = 1024 * 1024;
  TransportOptions bo = node_options(2);
  bo.send_queue_bytes_max = kLimit;
  Peer b(io_, bo);
  RawPeer raw(io_, b.listen(), 4096);
  raw.write(hello_frame(kCluster, PeerKind::kNode, 7));
  ASSERT_TRUE(run_until([&] { return b.t().connected(PeerKind::kNode, 7); }));

  const std::string big(256 * 1024, 'z');
  // Fill the queue, let the loop write into the kernel, repeat until the
  // kernel buffers are full and a write stays pending.
  bool blocked = false;
  for (int round = 0; round < 200 && !blocked; round++) {
    while (b.t().send(PeerKind::kNode, 7, kVr, big)) {
    }
    EXPECT_LE(b.t().queued_bytes(PeerKind::kNode, 7), kLimit);
    run_for(10ms);
    blocked = b.t().queued_bytes(PeerKind::kNode, 7) > 0;
  }
  ASSERT_TRUE(blocked);
  while (b.t().send(PeerKind::kNode, 7, kVr, big)) {
  }
  run_for(20ms);
  EXPECT_FALSE(b.t().send(PeerKind::kNode, 7, kVr, big));
  EXPECT_GT(b.t().queued_bytes(PeerKind::kNode, 7), kLimit - big.size() - 64);
  EXPECT_LE(b.t().queued_bytes(PeerKind::kNode, 7), kLimit);
  EXPECT_EQ(b.t().queued_bytes_total(), b.t().queued_bytes(PeerKind::kNode, 7));
  EXPECT_GT(b.t().counters().frames_dropped, 0u);
  EXPECT_TRUE(b.t().connected(PeerKind::kNode, 7));
}

TEST_F(TransportTest, GatewayDialsANodeAndTheNodeRepliesToIt) {
  Peer node(io_, node_options(1));
  Peer gateway(io_, gateway_options(100));
  gateway.t().connect(address(1, node.listen()));
  ASSERT_TRUE(run_until([&] {
    return gateway.t().connected(PeerKind::kNode, 1) && node.t().connected(PeerKind::kGateway, 100);
  }));
  EXPECT_EQ(node.events, (std::vector<LinkEvent>{{PeerKind::kGateway, 100, true}}));
  EXPECT_FALSE(node.t().connected(PeerKind::kNode, 100));

  node.on_frame = [&](PeerKind kind, uint64_t id, uint8_t type, std::string_view payload) {
    if (type == kTx) {
      EXPECT_TRUE(node.t().send(kind, id, kTxAck, payload));  // reentrant send
    }
  };
  EXPECT_TRUE(gateway.t().send(PeerKind::kNode, 1, kTx, "tx-1"));
  ASSERT_TRUE(run_until([&] { return gateway.frames.size() == 1; }));
  EXPECT_EQ(node.frames[0].kind, PeerKind::kGateway);
  EXPECT_EQ(node.frames[0].id, 100u);
  EXPECT_EQ(gateway.frames[0].kind, PeerKind::kNode);
  EXPECT_EQ(gateway.frames[0].id, 1u);
  EXPECT_EQ(gateway.frames[0].type, kTxAck);
  EXPECT_EQ(gateway.frames[0].payload, "tx-1");
}

TEST_F(TransportTest, ANewerInboundLinkReplacesTheOlderOne) {
  Peer node(io_, node_options(1));
  const uint16_t port = node.listen();
  RawPeer first(io_, port);
  first.write(hello_frame(kCluster, PeerKind::kGateway, 5));
  first.start_reading();
  ASSERT_TRUE(run_until([&] { return node.t().connected(PeerKind::kGateway, 5); }));
  RawPeer second(io_, port);
  second.write(hello_frame(kCluster, PeerKind::kGateway, 5));
  second.start_reading();
  ASSERT_TRUE(run_until([&] { return first.eof() && second.frames().size() == 1; }));
  EXPECT_TRUE(node.t().connected(PeerKind::kGateway, 5));
  EXPECT_EQ(node.events, (std::vector<LinkEvent>{{PeerKind::kGateway, 5, true}}));

  // Both got the node's hello; frames now go to the second.
  ASSERT_EQ(first.frames().size(), 1u);
  Result<PeerHello> h = decode_peer_hello(second.frames()[0].payload);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->kind, PeerKind::kNode);
  EXPECT_EQ(h->id, 1u);
  EXPECT_EQ(h->cluster_id, kCluster);
  EXPECT_TRUE(node.t().send(PeerKind::kGateway, 5, kTxAck, "to the newer"));
  ASSERT_TRUE(run_until([&] { return second.frames().size() == 2; }));
  EXPECT_EQ(second.frames()[1].payload, "to the newer");
  EXPECT_EQ(first.frames().size(), 1u);
}

TEST_F(TransportTest, CloseInsideAFrameHandlerIsSafe) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  link_up(a, b, b.listen());
  b.on_frame = [&](PeerKind, uint64_t, uint8_t, std::string_view) {
    EXPECT_FALSE(b.t().send(PeerKind::kNode, 3, kVr, "nobody"));
    b.t().close();
    b.t().close();
    EXPECT_FALSE(b.t().send(PeerKind::kNode, 1, kVr, "closed"));
  };
  // All three arrive in one write, so the close comes mid-batch.
  for (int i = 0; i < 3; i++) EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "x"));
  ASSERT_TRUE(run_until([&] { return !a.t().connected(PeerKind::kNode, 2); }));
  run_for(20ms);  // a redials into the closed port
  EXPECT_EQ(b.frames.size(), 1u);
  EXPECT_EQ(b.events.size(), 1u);  // only the "up"; close() reports nothing
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_EQ(a.events.back(), (LinkEvent{PeerKind::kNode, 2, false}));
}

TEST_F(TransportTest, CloseInsideALinkHandlerIsSafe) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  a.on_link = [&](PeerKind kind, uint64_t id, bool up) {
    EXPECT_TRUE(up);
    EXPECT_TRUE(a.t().send(kind, id, kVr, "queued, then closed"));
    a.t().close();
  };
  a.t().connect(address(2, b.listen()));
  ASSERT_TRUE(run_until([&] { return !a.events.empty(); }));
  run_for(20ms);
  EXPECT_EQ(a.events.size(), 1u);
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_TRUE(b.frames.empty());
}

TEST_F(TransportTest, CloseWithPendingWorkRunsNothingLater) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  const uint16_t port = b.listen();
  a.t().connect(address(2, port));
  a.t().connect(address(3, free_port()));  // never answers: a redial timer stays armed
  ASSERT_TRUE(run_until([&] { return b.t().connected(PeerKind::kNode, 1); }));
  // Queued and never flushed, plus the pending reads, connects and timers.
  EXPECT_TRUE(b.t().send(PeerKind::kNode, 1, kVr, "pending"));
  b.t().close();
  a.t().close();
  EXPECT_FALSE(a.t().listen("127.0.0.1", 0).is_ok());
  EXPECT_EQ(a.t().queued_bytes_total(), 0u);
  run_for(20ms);
  EXPECT_TRUE(a.frames.empty());
  EXPECT_EQ(b.events.size(), 1u);
}

TEST_F(TransportTest, AHostNameIsResolved) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  a.t().connect({.id = 2, .host = "localhost", .port = b.listen()});
  ASSERT_TRUE(run_until([&] { return a.t().connected(PeerKind::kNode, 2); }));
}

// ---- disconnect() ----

// The dialer forgets the node: one "down" on each side, nothing routable,
// and no redial afterwards (b would see node 1 come up again).
TEST_F(TransportTest, DisconnectClosesTheLinkReportsDownOnceAndStopsRedialing) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  link_up(a, b, b.listen());
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "before"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 1; }));

  a.t().disconnect(2);
  // Reported inside the call, before anything else runs.
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false}}));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  const uint64_t dropped = a.t().counters().frames_dropped;
  EXPECT_FALSE(a.t().send(PeerKind::kNode, 2, kVr, "after"));
  EXPECT_EQ(a.t().counters().frames_dropped, dropped + 1);
  EXPECT_EQ(a.t().queued_bytes(PeerKind::kNode, 2), 0u);
  ASSERT_TRUE(run_until([&] { return !b.t().connected(PeerKind::kNode, 1); }));

  // reconnect_max is 40 ms: a dialer still alive would have redialed many
  // times over.
  run_for(300ms);
  EXPECT_EQ(a.t().counters().reconnects, 0u);
  EXPECT_EQ(a.events.size(), 2u);
  EXPECT_EQ(b.events, (std::vector<LinkEvent>{{PeerKind::kNode, 1, true},
                                              {PeerKind::kNode, 1, false}}));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_EQ(b.frames.size(), 1u);
  EXPECT_EQ(a.t().queued_bytes_total(), 0u);
}

TEST_F(TransportTest, ConnectAfterDisconnectIsAFreshConnect) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  const uint16_t port = b.listen();
  link_up(a, b, port);
  a.t().disconnect(2);
  ASSERT_TRUE(run_until([&] { return !b.t().connected(PeerKind::kNode, 1); }));

  // The same id at another address: node 2 moved (a new process on a new port).
  Peer b2(io_, node_options(2));
  const uint16_t port2 = b2.listen();
  ASSERT_NE(port2, port);
  a.t().connect(address(2, port2));
  ASSERT_TRUE(run_until([&] {
    return a.t().connected(PeerKind::kNode, 2) && b2.t().connected(PeerKind::kNode, 1);
  }));
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "to the new one"));
  EXPECT_TRUE(b2.t().send(PeerKind::kNode, 1, kVr, "back"));
  ASSERT_TRUE(run_until([&] { return b2.frames.size() == 1 && a.frames.size() == 1; }));
  EXPECT_EQ(b2.frames[0].payload, "to the new one");
  EXPECT_EQ(a.frames[0].payload, "back");
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false},
                                              {PeerKind::kNode, 2, true}}));
  // The old b was never redialed; the new dialer's first attempt is no reconnect.
  EXPECT_EQ(b.events.size(), 2u);
  EXPECT_EQ(a.t().counters().reconnects, 0u);

  // And once more, back to the first address.
  a.t().disconnect(2);
  a.t().connect(address(2, port));
  ASSERT_TRUE(run_until([&] {
    return a.t().connected(PeerKind::kNode, 2) && b.t().connected(PeerKind::kNode, 1);
  }));
  EXPECT_TRUE(a.t().send(PeerKind::kNode, 2, kVr, "again"));
  ASSERT_TRUE(run_until([&] { return b.frames.size() == 1; }));
  EXPECT_EQ(b.frames[0].payload, "again");
  EXPECT_EQ(a.events.size(), 5u);
  EXPECT_EQ(a.events.back(), (LinkEvent{PeerKind::kNode, 2, true}));
}

TEST_F(TransportTest, DisconnectOfAnUnknownNodeAndATwiceDisconnectedOneAreNoOps) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  link_up(a, b, b.listen());
  a.t().disconnect(9);  // never connected
  a.t().disconnect(1);  // itself
  EXPECT_TRUE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_EQ(a.events.size(), 1u);

  a.t().disconnect(2);
  a.t().disconnect(2);
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false}}));
  run_for(100ms);
  a.t().disconnect(2);
  EXPECT_EQ(a.events.size(), 2u);
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_EQ(a.t().counters().reconnects, 0u);

  a.t().close();
  a.t().disconnect(2);  // after close(): nothing to do, nothing reported
  EXPECT_EQ(a.events.size(), 2u);
}

TEST_F(TransportTest, DisconnectWhileRedialingStopsTheDialer) {
  const uint16_t port = free_port();
  Peer a(io_, node_options(1));
  a.t().connect(address(2, port));
  ASSERT_TRUE(run_until([&] { return a.t().counters().reconnects >= 3; }));
  a.t().disconnect(2);
  EXPECT_TRUE(a.events.empty());  // never up, so no "down" either
  const uint64_t reconnects = a.t().counters().reconnects;

  Peer b(io_, node_options(2));
  b.on_port(port).listen();
  run_for(300ms);
  EXPECT_EQ(a.t().counters().reconnects, reconnects);
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_TRUE(a.events.empty());
  EXPECT_TRUE(b.events.empty());
}

// Each pending step of a dial (resolve, connect, hello) comes to nothing.
TEST_F(TransportTest, DisconnectMidDialRunsNothingLater) {
  Peer b(io_, node_options(2));
  const uint16_t port = b.listen();
  Peer a(io_, node_options(1));
  a.t().connect({.id = 2, .host = "localhost", .port = port});  // resolve pending
  a.t().disconnect(2);
  a.t().connect(address(2, port));  // connect pending
  a.t().disconnect(2);
  a.t().connect(address(2, port));
  // Accepted by b, a's hello in flight: b may see node 1 up and then down.
  ASSERT_TRUE(run_until([&] { return a.t().counters().bytes_sent > 0; }));
  a.t().disconnect(2);
  run_for(300ms);
  EXPECT_TRUE(a.events.empty());
  EXPECT_TRUE(a.frames.empty());
  EXPECT_EQ(a.t().counters().reconnects, 0u);
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_TRUE(b.events.empty() || b.events == (std::vector<LinkEvent>{{PeerKind::kNode, 1, true},
                                                                     {PeerKind::kNode, 1, false}}));
}

// The accepting side disconnects an inbound-only node: the link closes and
// is reported down, and the node's own redial is accepted again.
TEST_F(TransportTest, DisconnectClosesInboundLinksFromTheNodeButLaterOnesAreAccepted) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  link_up(a, b, b.listen());
  b.t().disconnect(1);
  EXPECT_EQ(b.events, (std::vector<LinkEvent>{{PeerKind::kNode, 1, true},
                                              {PeerKind::kNode, 1, false}}));
  EXPECT_FALSE(b.t().connected(PeerKind::kNode, 1));
  EXPECT_FALSE(b.t().send(PeerKind::kNode, 1, kVr, "gone"));
  ASSERT_TRUE(run_until([&] { return a.events.size() == 3; }));  // down, then up on the redial
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false},
                                              {PeerKind::kNode, 2, true}}));
  ASSERT_TRUE(run_until([&] { return b.t().connected(PeerKind::kNode, 1); }));
  EXPECT_EQ(b.events.size(), 3u);
  EXPECT_TRUE(b.t().send(PeerKind::kNode, 1, kVr, "back"));
  ASSERT_TRUE(run_until([&] { return a.frames.size() == 1; }));
  EXPECT_EQ(a.frames[0].payload, "back");
}

// Both directions up (each dialed the other): one "down" for both links.
TEST_F(TransportTest, DisconnectWithLinksBothWaysReportsOneDown) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  const uint16_t b_port = b.listen();
  const uint16_t a_port = a.listen();
  link_up(a, b, b_port);
  // So far b received one hello, a's reply on the link a dialed. Once it has
  // a's reply on the link it dials too, a has marked that inbound link up.
  const uint64_t hello_bytes = b.t().counters().bytes_received;
  ASSERT_GT(hello_bytes, 0u);
  b.t().connect(address(1, a_port));
  ASSERT_TRUE(run_until([&] { return b.t().counters().bytes_received == 2 * hello_bytes; }));
  EXPECT_EQ(a.events.size(), 1u);  // the second link is no transition
  a.t().disconnect(2);
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false}}));
  EXPECT_FALSE(a.t().connected(PeerKind::kNode, 2));
  EXPECT_FALSE(a.t().send(PeerKind::kNode, 2, kVr, "none"));
}

// A LinkHandler may disconnect the node it is told about.
TEST_F(TransportTest, DisconnectInsideALinkHandlerIsSafe) {
  Peer a(io_, node_options(1));
  Peer b(io_, node_options(2));
  int ups = 0;
  a.on_link = [&](PeerKind kind, uint64_t id, bool up) {
    if (!up) return;
    ups++;
    EXPECT_TRUE(a.t().send(kind, id, kVr, "queued, then dropped"));
    a.t().disconnect(id);  // reports the "down" from inside the "up"
    EXPECT_FALSE(a.t().connected(kind, id));
  };
  a.t().connect(address(2, b.listen()));
  ASSERT_TRUE(run_until([&] { return a.events.size() == 2; }));
  run_for(200ms);
  EXPECT_EQ(ups, 1);
  EXPECT_EQ(a.events, (std::vector<LinkEvent>{{PeerKind::kNode, 2, true},
                                              {PeerKind::kNode, 2, false}}));
  EXPECT_EQ(a.t().counters().reconnects, 0u);
  EXPECT_EQ(a.t().counters().frames_sent, 0u);
  EXPECT_TRUE(b.frames.empty());
}

}  // namespace
}  // namespace maroon::net
