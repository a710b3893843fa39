// libFuzzer target: the VR codec (src/vr/codec.h). Arbitrary bytes are
// decoded as each of the four kinds (replica message, client request, client
// reply, durable record). Decoding must never crash or fail other than as
// corruption; whatever decodes must re-encode without tripping an encoder
// assertion (the decoder accepted nothing the encoder refuses), decode again
// to an equal value, and the re-encoding must be a fixed point.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "maroon/assert.h"
#include "vr/codec.h"

namespace {

using namespace maroon;
using namespace maroon::vr;

template <typename T, typename Decode, typename Encode>
void check(std::string_view in, Decode decode, Encode encode) {
  Result<T> first = decode(in);
  if (!first) {
    MAROON_ASSERT(first.status().code() == Code::kCorruption);
    MAROON_ASSERT(!first.status().message().empty());
    return;
  }
  std::string again;
  encode(*first, again);
  // ByteReader accepts padded varints and ByteWriter writes minimal ones, so
  // the re-encoding can only be shorter.
  MAROON_ASSERT(again.size() <= in.size());
  Result<T> second = decode(again);
  MAROON_ASSERT(second.is_ok());
  MAROON_ASSERT(*second == *first);
  std::string third;
  encode(*second, third);
  MAROON_ASSERT(third == again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check<ReplicaMessage>(in, decode_message, encode_message);
  check<ClientRequest>(in, decode_client_request, encode_client_request);
  check<ClientReply>(in, decode_client_reply, encode_client_reply);
  check<DurableRecord>(in, decode_record, encode_record);
  return 0;
}
