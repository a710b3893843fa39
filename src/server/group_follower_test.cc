#include "server/group_follower.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "cluster/address_book.h"

namespace maroon::server {
namespace {

std::vector<ClusterMember> three() {
  return {{NodeId(1), "127.0.0.1", 7101}, {NodeId(2), "127.0.0.1", 7102},
          {NodeId(3), "127.0.0.1", 7103}};
}

TEST(GroupFollower, AdoptsOnlyNewerGroupsAndLearnsTheirAddresses) {
  GroupFollower g(three());
  EXPECT_EQ(g.config(), 0u);
  EXPECT_EQ(g.members(), (std::vector<NodeId>{NodeId(1), NodeId(2), NodeId(3)}));
  const std::string book = cluster::encode_address_book(
      {{4, "10.0.0.4", 7104, 0, 0, 0}, {1, "127.0.0.1", 7101, 0, 0, 0},
       {2, "127.0.0.1", 7102, 0, 0, 0}});
  auto adopted = g.adopt(1, {NodeId(4), NodeId(1), NodeId(2)}, book);
  ASSERT_TRUE(adopted.is_ok());
  EXPECT_TRUE(*adopted);
  EXPECT_EQ(g.members(), (std::vector<NodeId>{NodeId(1), NodeId(2), NodeId(4)})) << "sorted";
  ASSERT_NE(g.address(NodeId(4)), nullptr);
  EXPECT_EQ(g.address(NodeId(4))->host, "10.0.0.4");
  EXPECT_NE(g.address(NodeId(3)), nullptr) << "a removed node's address is kept";
  EXPECT_TRUE(g.is_member(NodeId(4)));
  EXPECT_FALSE(g.is_member(NodeId(3)));
  // Not newer: ignored.
  auto again = g.adopt(1, {NodeId(1), NodeId(2)}, {});
  ASSERT_TRUE(again.is_ok());
  EXPECT_FALSE(*again);
  EXPECT_EQ(g.members().size(), 3u);
  // A book that does not decode changes nothing.
  auto bad = g.adopt(2, {NodeId(1), NodeId(2)}, "\x07garbage");
  EXPECT_FALSE(bad.is_ok());
  EXPECT_EQ(g.config(), 1u);
  EXPECT_EQ(g.members().size(), 3u);
}

TEST(GroupFollower, RelinkConnectsNewPeersAndDisconnectsGoneOnes) {
  boost::asio::io_context io;
  net::Transport t(
      io, net::TransportOptions{.cluster_id = 1, .self_id = 9},
      [](net::PeerKind, uint64_t, uint8_t, std::string_view) {},
      [](net::PeerKind, uint64_t, bool) {});
  GroupFollower g(three());
  std::set<uint64_t> linked;
  auto unknown = g.relink(t, linked, {NodeId(1), NodeId(2)});
  EXPECT_TRUE(unknown.empty());
  EXPECT_EQ(linked, (std::set<uint64_t>{1, 2}));
  // 2 goes, 3 comes, 5 has no known address.
  unknown = g.relink(t, linked, {NodeId(1), NodeId(3), NodeId(5)});
  EXPECT_EQ(unknown, (std::vector<NodeId>{NodeId(5)}));
  EXPECT_EQ(linked, (std::set<uint64_t>{1, 3}));
  // Connecting 2 again after its disconnect is allowed (Transport asserts
  // one connect per id until disconnect).
  g.relink(t, linked, {NodeId(2)});
  EXPECT_EQ(linked, (std::set<uint64_t>{2}));
  t.close();
}

}  // namespace
}  // namespace maroon::server
