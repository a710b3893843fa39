// The cluster frames both drivers share: every frame type survives a round
// trip, batches are cut at the byte and count bounds, and a malformed frame
// is an error, never a crash.
#include "server/cluster_frames.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace maroon::server {
namespace {

using protocol::FrameType;

struct Sent {
  uint64_t to = 0;  // 0: every node
  FrameType type;
  std::string payload;
};

struct Recorder {
  std::vector<Sent> frames;
  ClusterOutbox outbox{
      NodeId(2),
      [this](FrameType type, std::string_view p) { frames.push_back({0, type, std::string(p)}); },
      [this](uint64_t to, FrameType type, std::string_view p) {
        frames.push_back({to, type, std::string(p)});
      }};
};

TxId tx_id(uint64_t offset) { return TxId::make(RangeId(3), offset); }

TEST(ClusterFrames, PeerMessagesRoundTrip) {
  const std::vector<PeerMessage> msgs = {
      VrPacket{"vr bytes"},
      Offsets{true, {{RangeId(3), 7}, {RangeId(4), 1}}, EpochNumber(5), 0x1234},
      TxPull{RangeId(3), 2, 9},
      TxPush{{TxMsg{tx_id(1), AppId::kKv, "a"}, TxMsg{tx_id(2), AppId::kKv, "bb"}}},
  };
  const std::vector<FrameType> types = {FrameType::kVr, FrameType::kOffsets, FrameType::kTxPull,
                                        FrameType::kTxPush};
  for (size_t i = 0; i < msgs.size(); i++) {
    int calls = 0;
    send_peer_message(msgs[i], [&](FrameType type, std::string_view payload) {
      calls++;
      EXPECT_EQ(type, types[i]);
      auto back = decode_peer_frame(static_cast<uint8_t>(type), payload);
      ASSERT_TRUE(back.is_ok()) << back.status().to_string();
      EXPECT_EQ(*back, msgs[i]);
    });
    EXPECT_EQ(calls, 1);
  }
}

TEST(ClusterFrames, GatewayToNodeFramesRoundTrip) {
  Recorder r;
  const GatewayId gw(9);
  r.outbox.to_nodes(LeaseRequest{gw, RangeId(2)});
  r.outbox.to_nodes(RenewLease{gw, RangeId(3)});
  r.outbox.to_nodes(TxMsg{tx_id(1), AppId::kKv, "x"});
  r.outbox.to_nodes(TxMsg{tx_id(2), AppId::kKv, "y"});
  // Lease frames leave at once, txs at flush.
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.outbox.queued(), 2u);
  r.outbox.flush();
  EXPECT_EQ(r.outbox.queued(), 0u);
  ASSERT_EQ(r.frames.size(), 3u);
  std::vector<GatewayToNode> got;
  for (const Sent& s : r.frames) {
    EXPECT_EQ(s.to, 0u);
    auto m = decode_gateway_frame(gw, static_cast<uint8_t>(s.type), s.payload);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    got.insert(got.end(), m->begin(), m->end());
  }
  const std::vector<GatewayToNode> want = {
      LeaseRequest{gw, RangeId(2)}, RenewLease{gw, RangeId(3)},
      TxMsg{tx_id(1), AppId::kKv, "x"}, TxMsg{tx_id(2), AppId::kKv, "y"}};
  EXPECT_EQ(got, want);
  // A lease frame naming another gateway is refused.
  auto other = decode_gateway_frame(GatewayId(8), static_cast<uint8_t>(r.frames[0].type),
                                    r.frames[0].payload);
  ASSERT_FALSE(other.is_ok());
  EXPECT_NE(other.status().message().find("another gateway"), std::string::npos);
}

TEST(ClusterFrames, NodeToGatewayFramesRoundTrip) {
  Recorder r;
  r.outbox.to_gateway(7, LeaseGranted{GatewayId(7), RangeId(3)});
  r.outbox.to_gateway(7, RangeSealed{RangeId(3), 42});
  r.outbox.to_gateway(7, TxAck{tx_id(1), NodeId(2)});
  r.outbox.to_gateway(8, TxResult{tx_id(1), "ok", false});
  r.outbox.to_gateway(8, TxResult{tx_id(2), "", true});
  ASSERT_EQ(r.frames.size(), 2u);
  r.outbox.flush();
  ASSERT_EQ(r.frames.size(), 4u);
  for (const Sent& s : r.frames) {
    switch (s.type) {
      case FrameType::kLeaseGranted: {
        EXPECT_EQ(s.to, 7u);
        auto m = protocol::decode_lease_granted(s.payload);
        ASSERT_TRUE(m.is_ok());
        EXPECT_EQ(*m, (LeaseGranted{GatewayId(7), RangeId(3)}));
        break;
      }
      case FrameType::kRangeSealed: {
        auto m = protocol::decode_range_sealed(s.payload);
        ASSERT_TRUE(m.is_ok());
        EXPECT_EQ(*m, (RangeSealed{RangeId(3), 42}));
        break;
      }
      case FrameType::kTxAck: {
        EXPECT_EQ(s.to, 7u);
        auto m = protocol::decode_tx_acks(s.payload);
        ASSERT_TRUE(m.is_ok());
        EXPECT_EQ(m->node, NodeId(2));
        EXPECT_EQ(m->ids, std::vector<TxId>{tx_id(1)});
        break;
      }
      case FrameType::kTxResult: {
        EXPECT_EQ(s.to, 8u);
        auto m = protocol::decode_tx_results(s.payload);
        ASSERT_TRUE(m.is_ok());
        EXPECT_EQ(*m, (std::vector<TxResult>{{tx_id(1), "ok", false}, {tx_id(2), "", true}}));
        break;
      }
      default:
        ADD_FAILURE() << "unexpected frame type " << static_cast<int>(s.type);
    }
  }
}

TEST(ClusterFrames, TxBatchesAreCutAtTheByteBound) {
  Recorder r;
  // Ops of 1/8 of the bound: 8 fit by op bytes, but with each tx's header
  // only 7 do.
  const size_t op_bytes = protocol::cluster_batch_bytes_max / 8;
  const size_t count = 20;
  for (uint64_t i = 1; i <= count; i++) {
    r.outbox.to_nodes(TxMsg{tx_id(i), AppId::kKv, std::string(op_bytes, 'a')});
  }
  r.outbox.flush();
  ASSERT_EQ(r.frames.size(), 3u);  // 7 + 7 + 6
  uint64_t next = 1;
  for (const Sent& s : r.frames) {
    ASSERT_EQ(s.type, FrameType::kTx);
    auto txs = protocol::decode_txs(s.payload);
    ASSERT_TRUE(txs.is_ok()) << txs.status().to_string();
    size_t bytes = 0;
    for (const TxMsg& tx : *txs) {
      EXPECT_EQ(tx.id, tx_id(next++)) << "in order, none lost or doubled";
      bytes += protocol::encoded_tx_bytes(tx);
    }
    EXPECT_LE(bytes, protocol::cluster_batch_bytes_max);
    EXPECT_LE(s.payload.size(), protocol::kFramePayloadBytesMax);
  }
  EXPECT_EQ(next, count + 1);
}

TEST(ClusterFrames, OneItemLargerThanTheBoundStillGoesAlone) {
  Recorder r;
  r.outbox.to_gateway(7, TxResult{tx_id(1), "small", false});
  r.outbox.to_gateway(7, TxResult{tx_id(2), std::string(protocol::cluster_batch_bytes_max, 'r'), false});
  r.outbox.to_gateway(7, TxResult{tx_id(3), "small", false});
  r.outbox.flush();
  ASSERT_EQ(r.frames.size(), 3u);
  for (size_t i = 0; i < 3; i++) {
    auto m = protocol::decode_tx_results(r.frames[i].payload);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    ASSERT_EQ(m->size(), 1u);
    EXPECT_EQ((*m)[0].id, tx_id(i + 1));
  }
}

TEST(ClusterFrames, AckBatchesAreCutAtTheCountBound) {
  Recorder r;
  const size_t count = protocol::cluster_batch_txs_max + 1;
  for (uint64_t i = 1; i <= count; i++) r.outbox.to_gateway(7, TxAck{tx_id(i), NodeId(2)});
  r.outbox.flush();
  ASSERT_EQ(r.frames.size(), 2u);
  auto first = protocol::decode_tx_acks(r.frames[0].payload);
  auto second = protocol::decode_tx_acks(r.frames[1].payload);
  ASSERT_TRUE(first.is_ok() && second.is_ok());
  EXPECT_EQ(first->ids.size(), protocol::cluster_batch_txs_max);
  EXPECT_EQ(second->ids, std::vector<TxId>{tx_id(count)});
}

TEST(ClusterFrames, MalformedFramesAreClearErrors) {
  // A frame of each kind, cut short or with trailing garbage.
  std::vector<Sent> frames;
  send_peer_message(Offsets{true, {{RangeId(3), 7}}, EpochNumber(5), 1},
                    [&](FrameType t, std::string_view p) { frames.push_back({0, t, std::string(p)}); });
  send_peer_message(TxPull{RangeId(3), 2, 9},
                    [&](FrameType t, std::string_view p) { frames.push_back({0, t, std::string(p)}); });
  send_peer_message(TxPush{{TxMsg{tx_id(1), AppId::kKv, "a"}}},
                    [&](FrameType t, std::string_view p) { frames.push_back({0, t, std::string(p)}); });
  for (const Sent& f : frames) {
    for (size_t cut = 0; cut < f.payload.size(); cut++) {
      auto m = decode_peer_frame(static_cast<uint8_t>(f.type), f.payload.substr(0, cut));
      ASSERT_FALSE(m.is_ok()) << "type " << static_cast<int>(f.type) << " cut at " << cut;
      EXPECT_FALSE(m.status().message().empty());
    }
  }

  Recorder r;
  r.outbox.to_nodes(LeaseRequest{GatewayId(9), RangeId(2)});
  r.outbox.to_nodes(TxMsg{tx_id(1), AppId::kKv, "x"});
  r.outbox.flush();
  for (const Sent& f : r.frames) {
    for (size_t cut = 0; cut < f.payload.size(); cut++) {
      auto m = decode_gateway_frame(GatewayId(9), static_cast<uint8_t>(f.type), f.payload.substr(0, cut));
      EXPECT_FALSE(m.is_ok()) << "type " << static_cast<int>(f.type) << " cut at " << cut;
    }
  }

  // Frame types that do not belong on the link.
  auto wrong = decode_peer_frame(static_cast<uint8_t>(FrameType::kTx), r.frames[1].payload);
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.status().message().find("unexpected frame type"), std::string::npos);
  auto unknown = decode_gateway_frame(GatewayId(9), 0xee, "junk");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("unexpected frame type 238"), std::string::npos);

  // To a gateway: malformed, or acks claiming another node, change nothing.
  Gateway gateway(GatewayConfig{});
  (void)gateway.take_output();  // what it says on its own (its lease request)
  Recorder n;
  n.outbox.to_gateway(1, TxAck{tx_id(1), NodeId(2)});
  n.outbox.to_gateway(1, TxResult{tx_id(1), "ok", false});
  n.outbox.flush();
  ASSERT_EQ(n.frames.size(), 2u);
  for (const Sent& f : n.frames) {
    for (size_t cut = 0; cut < f.payload.size(); cut++) {
      Status s = deliver_to_gateway(gateway, 2, static_cast<uint8_t>(f.type), f.payload.substr(0, cut));
      EXPECT_FALSE(s.is_ok()) << "type " << static_cast<int>(f.type) << " cut at " << cut;
    }
  }
  Status other = deliver_to_gateway(gateway, 3, static_cast<uint8_t>(FrameType::kTxAck),
                                    n.frames[0].payload);
  ASSERT_FALSE(other.is_ok());
  EXPECT_NE(other.message().find("another node"), std::string::npos);
  GatewayOutput after = gateway.take_output();
  EXPECT_TRUE(after.to_nodes.empty() && after.deliveries.empty());
}

}  // namespace
}  // namespace maroon::server
