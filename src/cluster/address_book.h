// The address book a membership change carries (docs/membership.md): where
// every member of the new group listens. It travels as the reconfiguration's
// annex (docs/formats/vr.md), so members and addresses switch in one
// committed op, and in Members frames to gateways (docs/formats/frames.md).
// Byte layout: docs/formats.md, "Address book".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/status.h"

namespace maroon::cluster {

struct NodeAddress {
  uint32_t id = 0;
  std::string host;
  uint16_t peer_port = 0;
  uint16_t http_port = 0;
  uint16_t resp_port = 0;
  uint16_t native_port = 0;
  bool operator==(const NodeAddress&) const = default;
};

inline constexpr uint8_t kAddressBookVersion = 1;
inline constexpr size_t address_book_entries_max = 64;
inline constexpr size_t address_host_bytes_max = 253;  // a DNS name's longest

std::string encode_address_book(const std::vector<NodeAddress>& book);
// Refuses (never crashes on) anything malformed: an unknown version, a
// truncated or oversize entry, id 0 or above 63, an id listed twice, an empty
// host, a peer port of 0, trailing bytes.
Result<std::vector<NodeAddress>> decode_address_book(std::string_view bytes);
// The same checks on a book built elsewhere (an admin request).
Status validate_address_book(const std::vector<NodeAddress>& book);
// The entry for `id`, or null.
const NodeAddress* find_address(const std::vector<NodeAddress>& book, uint32_t id);

}  // namespace maroon::cluster
