#include "common/codec.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

namespace maroon {
namespace {

TEST(Codec, RoundTripsEveryWidth) {
  EXPECT_TRUE(rc::check("fixed, varint and bytes round-trip", [](uint8_t a, uint32_t b,
                                                                    uint64_t c, uint64_t d,
                                                                    int64_t e, std::string s) {
    std::string buf;
    ByteWriter w(buf);
    w.u8(a);
    w.u32(b);
    w.u64(c);
    w.varint(d);
    w.svarint(e);
    w.bytes(s);
    ByteReader r(buf);
    uint8_t a2 = 0;
    uint32_t b2 = 0;
    uint64_t c2 = 0, d2 = 0;
    int64_t e2 = 0;
    std::string_view s2;
    RC_ASSERT(r.u8(a2) && r.u32(b2) && r.u64(c2) && r.varint(d2) && r.svarint(e2) &&
              r.bytes(s2, s.size()));
    RC_ASSERT(r.at_end());
    RC_ASSERT(a == a2 && b == b2 && c == c2 && d == d2 && e == e2 && s == s2);
  }));
}

TEST(Codec, TruncatedInputFailsWithoutReadingPastEnd) {
  EXPECT_TRUE(rc::check("every prefix of a valid encoding fails cleanly", [](uint64_t d,
                                                                             std::string s) {
    std::string buf;
    ByteWriter w(buf);
    w.varint(d);
    w.bytes(s);
    for (size_t cut = 0; cut < buf.size(); cut++) {
      ByteReader r(std::string_view(buf).substr(0, cut));
      uint64_t d2;
      std::string_view s2;
      bool ok = r.varint(d2) && r.bytes(s2, 1 << 20);
      RC_ASSERT(!ok);
      RC_ASSERT(!r.ok());
    }
  }));
}

TEST(Codec, BytesLongerThanLimitAreRejected) {
  std::string buf;
  ByteWriter(buf).bytes("hello");
  ByteReader r(buf);
  std::string_view v;
  EXPECT_FALSE(r.bytes(v, 4));
}

TEST(Codec, OverlongVarintIsRejected) {
  std::string buf(11, '\xff');
  ByteReader r(buf);
  uint64_t v;
  EXPECT_FALSE(r.varint(v));
}

}  // namespace
}  // namespace maroon
