#include "cluster/address_book.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace maroon::cluster {
namespace {

std::vector<NodeAddress> book() {
  return {NodeAddress{1, "127.0.0.1", 7101, 7201, 7301, 7401},
          NodeAddress{4, "node-4.example", 9101, 0, 0, 9401}};
}

TEST(AddressBook, RoundTrips) {
  auto decoded = decode_address_book(encode_address_book(book()));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(*decoded, book());
  ASSERT_NE(find_address(*decoded, 4), nullptr);
  EXPECT_EQ(find_address(*decoded, 4)->native_port, 9401);
  EXPECT_EQ(find_address(*decoded, 2), nullptr);
}

TEST(AddressBook, EveryTruncationAndTrailingByteIsRefused) {
  const std::string bytes = encode_address_book(book());
  for (size_t n = 0; n < bytes.size(); n++) {
    EXPECT_FALSE(decode_address_book(std::string_view(bytes).substr(0, n)).is_ok()) << n;
  }
  EXPECT_FALSE(decode_address_book(bytes + '\0').is_ok());
}

TEST(AddressBook, BadEntriesAreRefusedWithTheReason) {
  auto refused = [](std::vector<NodeAddress> b, std::string_view why) {
    Status s = validate_address_book(b);
    EXPECT_FALSE(s.is_ok());
    EXPECT_NE(s.message().find(why), std::string::npos) << s.message();
  };
  refused({NodeAddress{0, "h", 1}}, "out of range");
  refused({NodeAddress{64, "h", 1}}, "out of range");
  refused({NodeAddress{1, "", 1}}, "host");
  refused({NodeAddress{1, "h", 0}}, "peer_port");
  refused({NodeAddress{1, "h", 1}, NodeAddress{1, "g", 2}}, "twice");
  refused({NodeAddress{1, "h", 7}, NodeAddress{2, "h", 7}}, "both at h:7");
  // The decoder applies the same checks: an id listed twice on the wire.
  std::string dup = encode_address_book({NodeAddress{1, "h", 1}, NodeAddress{2, "g", 2}});
  dup[2] = 2;  // the first entry's id (after version and count) becomes 2
  EXPECT_FALSE(decode_address_book(dup).is_ok());
  std::string version = encode_address_book(book());
  version[0] = 9;
  auto v = decode_address_book(version);
  ASSERT_FALSE(v.is_ok());
  EXPECT_NE(v.status().message().find("version 9"), std::string::npos);
}

}  // namespace
}  // namespace maroon::cluster
