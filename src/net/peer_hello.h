// The PeerHello payload: the first frame each way on every node/gateway link
// (layout and rules in docs/formats/transport.md).
//
//   u32 version     kPeerHelloVersion
//   u64 cluster_id  both ends must agree
//   u8  kind        PeerKind of the sender
//   u64 id          the sender's node or gateway id
//   u8  app count   at most kPeerHelloAppsMax (version 3 on)
//   u32 × count     the AppIds the sender runs, strictly ascending
//
// All little-endian: kPeerHelloBytes, plus 4 bytes per app.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/status.h"

namespace maroon::net {

// What sits at the other end of a link. Values are on the wire; never reused.
enum class PeerKind : uint8_t { kNode = 1, kGateway = 2 };

const char* peer_kind_name(PeerKind kind);

// 3: txs name their app by a 32-bit AppId, and hellos list the apps.
// 2: offsets adverts carry tx digests, epochs bind ids to them.
inline constexpr uint32_t kPeerHelloVersion = 3;
inline constexpr size_t kPeerHelloBytes = 4 + 8 + 1 + 8 + 1;  // with no apps
inline constexpr size_t kPeerHelloAppsMax = 64;

struct PeerHello {
  uint32_t version = kPeerHelloVersion;
  uint64_t cluster_id = 0;
  PeerKind kind = PeerKind::kNode;
  uint64_t id = 0;
  std::vector<uint32_t> apps;  // AppIds, strictly ascending
};

// Whether a link between a sender of `theirs` and this end, running `ours`,
// may carry txs: between two nodes the sets are equal (a node lacking an app
// would execute its txs as nothing), and a gateway's apps are a subset of a
// node's (it forwards only what it runs). "" if so, else why not.
std::string apps_mismatch(PeerKind self_kind, const std::vector<uint32_t>& ours,
                          PeerKind their_kind, const std::vector<uint32_t>& theirs);

// Appends the payload (not the frame) to `out`.
void encode_peer_hello(const PeerHello& hello, std::string& out);

// Rejects short input, trailing bytes and an unknown kind. Any version is
// decoded; whether it is acceptable is the transport's call.
Result<PeerHello> decode_peer_hello(std::string_view payload);

}  // namespace maroon::net
