// xxh3 is maroon's one checksum and hash function (WAL records, frames, state hash).
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string_view>

namespace maroon {

inline uint64_t hash64(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }
inline uint64_t hash64(std::string_view s, uint64_t seed) {
  return XXH3_64bits_withSeed(s.data(), s.size(), seed);
}
inline uint32_t checksum32(std::string_view s) { return static_cast<uint32_t>(hash64(s)); }

}  // namespace maroon
