// libFuzzer target: the membership address book (cluster/address_book.h),
// which arrives from peers inside reconfigurations and GroupMembers frames.
// Decoding must never crash or fail other than as corruption; whatever
// decodes must re-encode (the encoder asserts the book is valid), decode
// again to an equal book, and the re-encoding must be a fixed point.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/address_book.h"
#include "maroon/assert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace maroon;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto first = cluster::decode_address_book(in);
  if (!first) {
    MAROON_ASSERT(first.status().code() == Code::kCorruption);
    MAROON_ASSERT(!first.status().message().empty());
    return 0;
  }
  const std::string again = cluster::encode_address_book(*first);
  MAROON_ASSERT(again.size() <= in.size());  // varints re-encode minimal
  auto second = cluster::decode_address_book(again);
  MAROON_ASSERT(second.is_ok());
  MAROON_ASSERT(*second == *first);
  MAROON_ASSERT(cluster::encode_address_book(*second) == again);
  return 0;
}
