#include "host/snapshot_layout.h"

#include <gtest/gtest.h>

namespace maroon::host::snapshot_layout {
namespace {

TEST(SnapshotLayout, AppBeginNamesA32BitAppId) {
  const AppId hello = AppId::of("hello");
  std::string payload = encode_app_begin(hello);
  EXPECT_EQ(payload.size(), 4u);
  Result<AppId> app = decode_app_begin(payload, kHeaderFormat);
  ASSERT_TRUE(app.is_ok());
  EXPECT_EQ(*app, hello);
  EXPECT_FALSE(decode_app_begin(payload, 2).is_ok());  // one byte in format 2
}

// Snapshots of formats 1 and 2 named the app by one byte, 1 for kv.
TEST(SnapshotLayout, AppBeginOfOneByteIsStillRead) {
  for (uint8_t format : {1, 2}) {
    Result<AppId> app = decode_app_begin(std::string(1, '\x01'), format);
    ASSERT_TRUE(app.is_ok());
    EXPECT_EQ(*app, AppId::kKv);
  }
  for (std::string_view bad : {std::string_view(), std::string_view("ab"),
                               std::string_view("abcde"), std::string_view("\x01")}) {
    EXPECT_FALSE(decode_app_begin(bad, kHeaderFormat).is_ok()) << bad.size();
    if (bad.size() != 1) {
      EXPECT_FALSE(decode_app_begin(bad, 2).is_ok()) << bad.size();
    }
  }
}

TEST(SnapshotLayout, HeadersOfEveryKnownFormatDecodeAndNewerOnesAreRefused) {
  Header h{.node_id = 2,
           .epoch = 7,
           .logical_time_ms = 9,
           .state_hash = 11,
           .lsn = 13,
           .cluster_id = 17};
  std::string bytes = encode_header(h);
  Result<Header> back = decode_header(bytes);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->format, kHeaderFormat);
  EXPECT_EQ(back->cluster_id, 17u);
  bytes[0] = static_cast<char>(kHeaderFormat + 1);
  Result<Header> newer = decode_header(bytes);
  ASSERT_FALSE(newer.is_ok());
  EXPECT_NE(newer.status().message().find("not one this build reads"), std::string::npos);
  bytes[0] = 2;  // the same fields
  EXPECT_TRUE(decode_header(bytes).is_ok());
}

}  // namespace
}  // namespace maroon::host::snapshot_layout
