#include "server/resp_clients.h"

#include <gtest/gtest.h>

namespace maroon::server {
namespace {

TEST(RespClientNames, AsRedisPrintableWithoutSpaces) {
  EXPECT_TRUE(valid_client_name(""));
  EXPECT_TRUE(valid_client_name("app-1:worker!"));
  EXPECT_FALSE(valid_client_name("my app"));
  EXPECT_FALSE(valid_client_name("a\nb"));
  EXPECT_FALSE(valid_client_name("\x7f"));
  EXPECT_FALSE(valid_client_name("caf\xc3\xa9"));
  EXPECT_TRUE(valid_client_name(std::string(client_name_bytes_max, 'a')));
  EXPECT_FALSE(valid_client_name(std::string(client_name_bytes_max + 1, 'a')));
}

TEST(RespClientInfo, LineHasRedisFields) {
  RespClientInfo c;
  c.id = 7;
  c.addr = "127.0.0.1:5000";
  c.laddr = "127.0.0.1:6379";
  c.name = "app";
  c.created = RespClock::time_point(std::chrono::seconds(100));
  c.last_command_at = RespClock::time_point(std::chrono::seconds(110));
  c.last_command = "client|list";
  c.resp = 3;
  const std::string line = format_client_info(c, RespClock::time_point(std::chrono::seconds(112)));
  EXPECT_EQ(line.rfind("id=7 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=-1 name=app age=12 idle=2 "
                       "flags=N db=0 ",
                       0),
            0u)
      << line;
  EXPECT_NE(line.find(" multi=-1 "), std::string::npos);
  EXPECT_NE(line.find(" cmd=client|list user=default redir=-1 resp=3 lib-name= lib-ver="),
            std::string::npos)
      << line;
}

struct FakeMember : RespClientRegistry::Member {
  RespClientInfo info;
  bool killed = false;
  const RespClientInfo& client_info() const override { return info; }
  void kill() override { killed = true; }
};

TEST(RespClientRegistry, FindsByIdAndListsInIdOrder) {
  FakeMember a, b;
  a.info.id = 9;
  b.info.id = 3;
  RespClientRegistry r;
  r.add(a);
  r.add(b);
  EXPECT_EQ(r.find(9), &a);
  EXPECT_EQ(r.find(4), nullptr);
  ASSERT_EQ(r.members().size(), 2u);
  EXPECT_EQ(r.members()[0], &b);
  r.remove(b);
  r.remove(b);  // idempotent
  EXPECT_EQ(r.size(), 1u);
}

}  // namespace
}  // namespace maroon::server
