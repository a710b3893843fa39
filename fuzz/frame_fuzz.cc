// libFuzzer target: the frame decoder (whole input and in chunks) and every
// client message decoder. Anything decoded must re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "maroon/assert.h"
#include "protocol/client_messages.h"
#include "protocol/frame.h"

namespace {

using namespace maroon::protocol;

void check_message(const Frame& f) {
  std::string again;
  switch (static_cast<FrameType>(f.type)) {
    case FrameType::kHello:
      if (auto m = decode_hello(f.payload); m.is_ok()) encode_hello(*m, again);
      break;
    case FrameType::kHelloReply:
      if (auto m = decode_hello_reply(f.payload); m.is_ok()) encode_hello_reply(*m, again);
      break;
    case FrameType::kRequest:
      if (auto m = decode_request(f.payload); m.is_ok()) encode_request(*m, again);
      break;
    case FrameType::kResponse:
      if (auto m = decode_response(f.payload); m.is_ok()) encode_response(*m, again);
      break;
    default:
      return;
  }
  if (again.empty()) return;
  Frame g;
  size_t consumed = 0;
  MAROON_ASSERT(decode_frame(again, g, consumed, nullptr) == DecodeResult::kFrame);
  MAROON_ASSERT(g.type == f.type);
  // Varints have one canonical encoding in ByteWriter but ByteReader accepts
  // padded ones, so compare by decoding, not by bytes: sizes can only shrink.
  MAROON_ASSERT(g.payload.size() <= f.payload.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // Whole input at once.
  FrameDecoder whole;
  whole.feed(in);
  Frame f;
  size_t frames = 0;
  DecodeResult r;
  while ((r = whole.next(f)) == DecodeResult::kFrame) {
    frames++;
    check_message(f);
  }

  // Same input in chunks sized by the first byte: same frames, same outcome.
  const size_t chunk = size > 0 ? (data[0] % 17) + 1 : 1;
  FrameDecoder chunked;
  size_t frames2 = 0;
  DecodeResult r2 = DecodeResult::kNeedMore;
  for (size_t pos = 0; pos < size && r2 != DecodeResult::kError; pos += chunk) {
    chunked.feed(in.substr(pos, chunk));
    while ((r2 = chunked.next(f)) == DecodeResult::kFrame) frames2++;
  }
  if (size == 0) r2 = chunked.next(f);
  MAROON_ASSERT(frames == frames2);
  MAROON_ASSERT(r == r2);

  // The raw input as each message payload.
  (void)decode_hello(in).is_ok();
  (void)decode_hello_reply(in).is_ok();
  (void)decode_request(in).is_ok();
  (void)decode_response(in).is_ok();
  return 0;
}
