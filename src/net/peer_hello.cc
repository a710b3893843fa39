#include "net/peer_hello.h"

#include "common/codec.h"

namespace maroon::net {

const char* peer_kind_name(PeerKind kind) {
  switch (kind) {
    case PeerKind::kNode:
      return "node";
    case PeerKind::kGateway:
      return "gateway";
  }
  return "unknown";
}

void encode_peer_hello(const PeerHello& hello, std::string& out) {
  ByteWriter w(out);
  const size_t start = w.size();
  w.u32(hello.version);
  w.u64(hello.cluster_id);
  w.u8(static_cast<uint8_t>(hello.kind));
  w.u64(hello.id);
  MAROON_ASSERT(w.size() - start == kPeerHelloBytes);
}

Result<PeerHello> decode_peer_hello(std::string_view payload) {
  ByteReader r(payload);
  PeerHello hello;
  uint8_t kind = 0;
  r.u32(hello.version);
  r.u64(hello.cluster_id);
  r.u8(kind);
  r.u64(hello.id);
  if (!r.at_end()) {
    return invalid_argument("peer hello of " + std::to_string(payload.size()) +
                            " bytes, expected " + std::to_string(kPeerHelloBytes));
  }
  if (kind != static_cast<uint8_t>(PeerKind::kNode) &&
      kind != static_cast<uint8_t>(PeerKind::kGateway)) {
    return invalid_argument("peer hello with unknown kind " + std::to_string(kind));
  }
  hello.kind = static_cast<PeerKind>(kind);
  return hello;
}

}  // namespace maroon::net
