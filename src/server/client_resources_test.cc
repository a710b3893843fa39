#include "server/client_resources.h"

#include <gtest/gtest.h>

namespace maroon::server {
namespace {

const boost::asio::ip::address kA = boost::asio::ip::make_address("198.18.0.1");
const boost::asio::ip::address kB = boost::asio::ip::make_address("198.18.0.2");

TEST(ClientResources, RespAndNativeLeaveTheLastSlotsToHttp) {
  ClientResources r(ClientLimits{.connections_max = 8, .http_reserved_connections = 2});
  for (int i = 0; i < 3; i++) {
    EXPECT_FALSE(r.admit(ClientPort::kResp, kA));
    EXPECT_FALSE(r.admit(ClientPort::kNative, kB));
  }
  const auto refused = r.admit(ClientPort::kResp, kA);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->why, "max number of clients reached");
  EXPECT_FALSE(refused->per_address);
  EXPECT_TRUE(r.admit(ClientPort::kNative, kB));
  EXPECT_FALSE(r.admit(ClientPort::kHttp, kA));
  EXPECT_FALSE(r.admit(ClientPort::kHttp, kB));
  EXPECT_TRUE(r.admit(ClientPort::kHttp, kA));
  EXPECT_EQ(r.connections(), 8u);
  EXPECT_EQ(r.counters().refused_total, 3u);
  r.leave(kA);
  EXPECT_FALSE(r.admit(ClientPort::kHttp, kA));
}

TEST(ClientResources, TheHttpReserveIsAtMostAQuarter) {
  ClientResources r(ClientLimits{.connections_max = 16, .http_reserved_connections = 32});
  EXPECT_EQ(r.limits().http_reserved_connections, 4u);
}

TEST(ClientResources, OneAddressGetsAtMostItsShare) {
  ClientResources r(ClientLimits{.connections_max = 100, .connections_per_address_max = 2});
  EXPECT_FALSE(r.admit(ClientPort::kResp, kA));
  EXPECT_FALSE(r.admit(ClientPort::kHttp, kA));
  const auto refused = r.admit(ClientPort::kNative, kA);
  ASSERT_TRUE(refused);
  EXPECT_TRUE(refused->per_address);
  EXPECT_NE(refused->why.find("one address"), std::string::npos) << refused->why;
  EXPECT_FALSE(r.admit(ClientPort::kResp, kB));  // others are not affected
  EXPECT_EQ(r.counters().refused_per_address, 1u);
  r.leave(kA);
  EXPECT_FALSE(r.admit(ClientPort::kResp, kA));
}

TEST(ClientResources, TheDescriptorLimitLowersTheConnectionMaximum) {
  ClientResources r(ClientLimits{.connections_max = 4096, .http_reserved_connections = 32});
  EXPECT_EQ(r.clamp_to_descriptors(1024), 1024 - client_descriptor_reserve);
  EXPECT_EQ(r.limits().connections_max, 1024 - client_descriptor_reserve);
  EXPECT_EQ(r.clamp_to_descriptors(1u << 20), 1024 - client_descriptor_reserve);  // never raises
  ClientResources tiny(ClientLimits{.connections_max = 4096, .http_reserved_connections = 32});
  EXPECT_EQ(tiny.clamp_to_descriptors(10), client_connections_min);
  EXPECT_LE(tiny.limits().http_reserved_connections, client_connections_min / 4);
}

TEST(ClientResources, TheBudgetRefusesWhatWouldPassItsMaximum) {
  const size_t max = limits::message_bytes_max;
  ClientResources r(ClientLimits{.buffer_bytes_max = max});
  EXPECT_TRUE(r.reserve(max - 10, ClientPort::kResp, "test"));
  EXPECT_FALSE(r.reserve(11, ClientPort::kResp, "test"));
  EXPECT_TRUE(r.reserve(10, ClientPort::kResp, "test"));
  EXPECT_EQ(r.buffered_bytes(), max);
  EXPECT_EQ(r.counters().budget_refusals, 1u);
  r.release(max);
  EXPECT_EQ(r.buffered_bytes(), 0u);
}

TEST(BudgetHold, HoldsWhatPassesTheFreeBytesAndGivesItBack) {
  const size_t max = limits::message_bytes_max;
  ClientResources r(ClientLimits{.buffer_bytes_max = max});
  {
    BudgetHold a(r, ClientPort::kNative);
    EXPECT_TRUE(a.cover(client_free_bytes, "x"));
    EXPECT_EQ(r.buffered_bytes(), 0u);
    EXPECT_TRUE(a.cover(client_free_bytes + 1000, "x"));
    EXPECT_EQ(r.buffered_bytes(), 1000u);
    BudgetHold b(r, ClientPort::kNative);
    EXPECT_FALSE(b.cover(client_free_bytes + max, "x"));  // 1000 already held
    EXPECT_EQ(b.held(), 0u);
    EXPECT_TRUE(b.cover(client_free_bytes + max - 1000, "x"));
    EXPECT_TRUE(a.cover(10, "x"));  // shrinking gives back
    EXPECT_EQ(r.buffered_bytes(), max - 1000);
  }
  EXPECT_EQ(r.buffered_bytes(), 0u);  // both released on destruction
}

}  // namespace
}  // namespace maroon::server
