#include "vr/log_matching.h"

#include <fmt/format.h>

#include <algorithm>

namespace maroon::vr {
namespace {

std::optional<std::string> check_pair(const Replica& a, const Replica& b) {
  const uint64_t low = std::max(a.log_after().value(), b.log_after().value()) + 1;
  const uint64_t high = std::min(a.op().value(), b.op().value());
  // From the top down: once an equal entry is found, everything below it
  // that both hold must be equal too.
  bool matched = false;
  uint64_t matched_at = 0;
  for (uint64_t op = high; op >= low && op != 0; op--) {
    const Entry* x = a.entry(OpNumber(op));
    const Entry* y = b.entry(OpNumber(op));
    if (x == nullptr || y == nullptr) continue;
    if (*x == *y) {
      if (!matched) matched_at = op;
      matched = true;
    } else if (matched) {
      return fmt::format(
          "log matching: r{} and r{} hold the same entry at op {} but differ at op {} "
          "(epoch {} view {} and epoch {} view {})",
          a.id().value(), b.id().value(), matched_at, op, x->epoch.value(), x->view.value(),
          y->epoch.value(), y->view.value());
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_log_matching(const std::vector<const Replica*>& replicas) {
  for (size_t i = 0; i < replicas.size(); i++) {
    for (size_t j = i + 1; j < replicas.size(); j++) {
      if (auto v = check_pair(*replicas[i], *replicas[j])) return v;
    }
  }
  return std::nullopt;
}

}  // namespace maroon::vr
