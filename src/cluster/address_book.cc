#include "cluster/address_book.h"

#include <fmt/format.h>

#include <algorithm>

#include "cluster/config.h"
#include "common/codec.h"

namespace maroon::cluster {

const NodeAddress* find_address(const std::vector<NodeAddress>& book, uint32_t id) {
  for (const NodeAddress& a : book) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

Status validate_address_book(const std::vector<NodeAddress>& book) {
  if (book.size() > address_book_entries_max) {
    return invalid_argument(
        fmt::format("{} addresses, over {}", book.size(), address_book_entries_max));
  }
  for (size_t i = 0; i < book.size(); i++) {
    const NodeAddress& a = book[i];
    if (a.id == 0 || a.id > node_id_max) {
      return invalid_argument(fmt::format("node id {} out of range (1 to {})", a.id, node_id_max));
    }
    if (a.host.empty() || a.host.size() > address_host_bytes_max) {
      return invalid_argument(fmt::format("node {}: host must be 1 to {} bytes", a.id,
                                          address_host_bytes_max));
    }
    if (a.peer_port == 0) return invalid_argument(fmt::format("node {}: peer_port is 0", a.id));
    for (size_t j = 0; j < i; j++) {
      if (book[j].id == a.id) return invalid_argument(fmt::format("node {} listed twice", a.id));
      if (book[j].host == a.host && book[j].peer_port == a.peer_port) {
        return invalid_argument(fmt::format("nodes {} and {} both at {}:{}", book[j].id, a.id,
                                            a.host, a.peer_port));
      }
    }
  }
  return Status::ok();
}

std::string encode_address_book(const std::vector<NodeAddress>& book) {
  MAROON_ASSERT(validate_address_book(book).is_ok());
  std::string out;
  ByteWriter w(out);
  w.u8(kAddressBookVersion);
  w.varint(book.size());
  for (const NodeAddress& a : book) {
    w.u32(a.id);
    w.bytes(a.host);
    for (uint16_t port : {a.peer_port, a.http_port, a.resp_port, a.native_port}) w.varint(port);
  }
  return out;
}

Result<std::vector<NodeAddress>> decode_address_book(std::string_view bytes) {
  ByteReader r(bytes);
  uint8_t version = 0;
  uint64_t count = 0;
  if (!r.u8(version) || !r.varint(count)) return corruption("address book: truncated header");
  if (version != kAddressBookVersion) {
    return corruption(fmt::format("address book: version {}, this build reads {}", version,
                                  kAddressBookVersion));
  }
  if (count > address_book_entries_max) {
    return corruption(fmt::format("address book: {} entries, over {}", count,
                                  address_book_entries_max));
  }
  std::vector<NodeAddress> book;
  book.reserve(count);
  for (uint64_t i = 0; i < count; i++) {
    NodeAddress a;
    std::string_view host;
    uint64_t ports[4] = {};
    if (!r.u32(a.id) || !r.bytes(host, address_host_bytes_max)) {
      return corruption(fmt::format("address book: entry {} truncated", i));
    }
    for (uint64_t& p : ports) {
      if (!r.varint(p) || p > 65535) {
        return corruption(fmt::format("address book: entry {}: bad port", i));
      }
    }
    a.host = std::string(host);
    a.peer_port = static_cast<uint16_t>(ports[0]);
    a.http_port = static_cast<uint16_t>(ports[1]);
    a.resp_port = static_cast<uint16_t>(ports[2]);
    a.native_port = static_cast<uint16_t>(ports[3]);
    book.push_back(std::move(a));
  }
  if (!r.at_end()) return corruption("address book: trailing bytes");
  if (Status s = validate_address_book(book); !s) {
    return corruption("address book: " + s.message());
  }
  return book;
}

}  // namespace maroon::cluster
