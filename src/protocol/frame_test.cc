#include "protocol/frame.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <vector>

#include "common/codec.h"

namespace maroon::protocol {
namespace {

struct Decoded {
  uint8_t type;
  std::string payload;
  bool operator==(const Decoded&) const = default;
};

// Feeds `wire` to a decoder in the given chunk sizes and collects the frames.
DecodeResult decode_chunked(std::string_view wire, const std::vector<size_t>& cuts,
                            std::vector<Decoded>& out) {
  FrameDecoder d;
  size_t pos = 0;
  auto drain = [&] {
    Frame f;
    DecodeResult r;
    while ((r = d.next(f)) == DecodeResult::kFrame) out.push_back({f.type, std::string(f.payload)});
    return r;
  };
  DecodeResult last = DecodeResult::kNeedMore;
  for (size_t cut : cuts) {
    cut = std::min(cut, wire.size() - pos);
    d.feed(wire.substr(pos, cut));
    pos += cut;
    last = drain();
    if (last == DecodeResult::kError) return last;
  }
  d.feed(wire.substr(pos));
  return drain();
}

TEST(Frame, RoundTripsInChunks) {
  EXPECT_TRUE(
      rc::check("frames survive any chunking",
                [](std::vector<std::pair<uint8_t, std::string>> msgs, std::vector<uint8_t> cuts) {
                  std::string wire;
                  std::vector<Decoded> want;
                  for (auto& [t, p] : msgs) {
                    encode_frame(t, p, wire);
                    want.push_back({t, p});
                  }
                  std::vector<size_t> cut_sizes(cuts.begin(), cuts.end());
                  std::vector<Decoded> got;
                  RC_ASSERT(decode_chunked(wire, cut_sizes, got) == DecodeResult::kNeedMore);
                  RC_ASSERT(got == want);
                }));
}

TEST(Frame, EveryByteSplitOfTwoFrames) {
  std::string wire;
  encode_frame(FrameType::kRequest, "hello payload", wire);
  encode_frame(FrameType::kResponse, std::string(300, 'x'), wire);
  for (size_t split = 0; split <= wire.size(); split++) {
    std::vector<Decoded> got;
    ASSERT_EQ(decode_chunked(wire, {split}, got), DecodeResult::kNeedMore) << split;
    ASSERT_EQ(got.size(), 2u) << split;
    EXPECT_EQ(got[0], (Decoded{3, "hello payload"}));
    EXPECT_EQ(got[1], (Decoded{4, std::string(300, 'x')}));
  }
  // One byte at a time.
  std::vector<Decoded> got;
  ASSERT_EQ(decode_chunked(wire, std::vector<size_t>(wire.size(), 1), got),
            DecodeResult::kNeedMore);
  EXPECT_EQ(got.size(), 2u);
}

TEST(Frame, EmptyPayload) {
  std::string wire;
  encode_frame(7, "", wire);
  EXPECT_EQ(wire.size(), kFrameHeaderBytes + 1);
  Frame f;
  size_t consumed = 0;
  ASSERT_EQ(decode_frame(wire, f, consumed, nullptr), DecodeResult::kFrame);
  EXPECT_EQ(f.type, 7);
  EXPECT_TRUE(f.payload.empty());
  EXPECT_EQ(consumed, wire.size());
}

TEST(Frame, LayoutIsLittleEndianLengthChecksumType) {
  std::string wire;
  encode_frame(FrameType::kHello, "ab", wire);
  ASSERT_EQ(wire.size(), 11u);
  EXPECT_EQ(wire.substr(0, 4), std::string("\x03\x00\x00\x00", 4));
  EXPECT_EQ(wire[8], 1);
  EXPECT_EQ(wire.substr(9), "ab");
}

TEST(Frame, CorruptedChecksumOrBodyIsAnError) {
  std::string good;
  encode_frame(FrameType::kRequest, "some payload bytes", good);
  for (size_t i = 4; i < good.size(); i++) {
    for (int bit = 0; bit < 8; bit++) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      FrameDecoder d;
      d.feed(bad);
      Frame f;
      ASSERT_EQ(d.next(f), DecodeResult::kError) << i << " " << bit;
      EXPECT_EQ(d.error().code(), Code::kCorruption);
      // Sticky: more bytes do not revive it.
      d.feed(good);
      EXPECT_EQ(d.next(f), DecodeResult::kError);
    }
  }
}

TEST(Frame, OversizeAndZeroLengthAreErrorsBeforeThePayloadArrives) {
  std::string header;
  ByteWriter w(header);
  w.u32(static_cast<uint32_t>(limits::message_bytes_max + 1));
  w.u32(0);
  FrameDecoder d;
  d.feed(header);
  Frame f;
  EXPECT_EQ(d.next(f), DecodeResult::kError);
  EXPECT_EQ(d.error().code(), Code::kTooLarge);

  std::string zero(8, '\0');
  FrameDecoder d2;
  d2.feed(zero);
  EXPECT_EQ(d2.next(f), DecodeResult::kError);

  std::string max;
  ByteWriter w2(max);
  w2.u32(static_cast<uint32_t>(limits::message_bytes_max));
  w2.u32(0);
  FrameDecoder d3;
  d3.feed(max);
  EXPECT_EQ(d3.next(f), DecodeResult::kNeedMore);  // legal length, waits for the body
}

TEST(Frame, LargestFrameRoundTrips) {
  std::string payload(kFramePayloadBytesMax, 'z');
  std::string wire;
  encode_frame(FrameType::kResponse, payload, wire);
  EXPECT_EQ(wire.size(), kFrameBytesMax);
  FrameDecoder d;
  size_t pos = 0;
  Frame f;
  while (pos < wire.size()) {
    auto span = d.prepare(64 * 1024);
    size_t n = std::min(span.size(), wire.size() - pos);
    std::copy_n(wire.data() + pos, n, span.data());
    d.commit(n);
    pos += n;
    if (pos < wire.size()) {
      ASSERT_EQ(d.next(f), DecodeResult::kNeedMore);
    }
  }
  ASSERT_EQ(d.next(f), DecodeResult::kFrame);
  EXPECT_EQ(f.payload.size(), payload.size());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(Frame, ArbitraryBytesNeverCrash) {
  EXPECT_TRUE(rc::check("decoder terminates on any input", [](std::string bytes) {
    FrameDecoder d;
    d.feed(bytes);
    Frame f;
    size_t frames = 0;
    DecodeResult r;
    while ((r = d.next(f)) == DecodeResult::kFrame) frames++;
    RC_ASSERT(frames <= bytes.size() / (kFrameHeaderBytes + 1));
  }));
}

TEST(Frame, InPlaceBuildMatchesEncodeFrame) {
  std::string a, b = "prefix";
  encode_frame(FrameType::kRequest, "payload", a);
  size_t start = start_frame(FrameType::kRequest, b);
  b += "payload";
  finish_frame(start, b);
  EXPECT_EQ(b, "prefix" + a);
}

}  // namespace
}  // namespace maroon::protocol
