#include "net/peer_hello.h"

#include <fmt/format.h>

#include <algorithm>

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
  MAROON_ASSERT(hello.apps.size() <= kPeerHelloAppsMax);
  w.u8(static_cast<uint8_t>(hello.apps.size()));
  for (size_t i = 0; i < hello.apps.size(); i++) {
    MAROON_ASSERT(i == 0 || hello.apps[i - 1] < hello.apps[i]);
    w.u32(hello.apps[i]);
  }
  MAROON_ASSERT(w.size() - start == kPeerHelloBytes + 4 * hello.apps.size());
}

Result<PeerHello> decode_peer_hello(std::string_view payload) {
  ByteReader r(payload);
  PeerHello hello;
  uint8_t kind = 0;
  r.u32(hello.version);
  r.u64(hello.cluster_id);
  r.u8(kind);
  r.u64(hello.id);
  uint8_t apps = 0;
  r.u8(apps);
  if (apps > kPeerHelloAppsMax) {
    return invalid_argument("peer hello with " + std::to_string(apps) + " apps");
  }
  for (uint8_t i = 0; i < apps; i++) {
    uint32_t app = 0;
    r.u32(app);
    if (!hello.apps.empty() && app <= hello.apps.back()) {
      return invalid_argument("peer hello with apps out of order");
    }
    hello.apps.push_back(app);
  }
  if (!r.at_end()) {
    return invalid_argument("peer hello of " + std::to_string(payload.size()) +
                            " bytes, expected " +
                            std::to_string(kPeerHelloBytes + 4 * size_t{apps}));
  }
  if (kind != static_cast<uint8_t>(PeerKind::kNode) &&
      kind != static_cast<uint8_t>(PeerKind::kGateway)) {
    return invalid_argument("peer hello with unknown kind " + std::to_string(kind));
  }
  hello.kind = static_cast<PeerKind>(kind);
  return hello;
}

namespace {

std::string app_list(const std::vector<uint32_t>& apps) {
  std::string out;
  for (uint32_t app : apps) out += fmt::format("{}{:#010x}", out.empty() ? "" : ", ", app);
  return "[" + out + "]";
}

bool subset(const std::vector<uint32_t>& small, const std::vector<uint32_t>& big) {
  return std::includes(big.begin(), big.end(), small.begin(), small.end());
}

}  // namespace

std::string apps_mismatch(PeerKind self_kind, const std::vector<uint32_t>& ours,
                          PeerKind their_kind, const std::vector<uint32_t>& theirs) {
  if (self_kind == PeerKind::kNode && their_kind == PeerKind::kNode) {
    if (ours == theirs) return "";
    return fmt::format(
        "it runs apps {}, this node {}: every node of a cluster must run the same apps",
        app_list(theirs), app_list(ours));
  }
  if (self_kind == their_kind) return "";  // two gateways never link
  const bool ok = self_kind == PeerKind::kGateway ? subset(ours, theirs) : subset(theirs, ours);
  if (ok) return "";
  return fmt::format("it runs apps {}, this {} {}: a gateway's apps must all run on the nodes",
                     app_list(theirs), peer_kind_name(self_kind), app_list(ours));
}

}  // namespace maroon::net
