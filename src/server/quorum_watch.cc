#include "server/quorum_watch.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace maroon::server {

QuorumMetrics::QuorumMetrics(Registry& registry)
    : quorum_(registry.gauge("maroon_quorum",
                             "1 if this node (or gateway) is part of a working quorum, else 0")),
      unavailable_(registry.counter(
          "maroon_requests_unavailable_total",
          "Requests answered for lack of a quorum: refused (no quorum, not executed) or without a "
          "result within unavailable_after_ms (outcome unknown)")),
      outcome_unknown_(registry.counter(
          "maroon_requests_outcome_unknown_total",
          "Requests answered 'outcome unknown': sent, but no result within unavailable_after_ms")) {
  quorum_.set(1);
}

void QuorumMetrics::update(bool quorum, std::string_view reason, const WaitingClients& waiting) {
  quorum_.set(quorum ? 1 : 0);
  const Logged now = quorum ? Logged::kQuorum : Logged::kNoQuorum;
  if (now != logged_) {
    if (quorum) {
      if (had_quorum_) {
        spdlog::info("quorum regained: requests are served again");
      } else if (logged_ == Logged::kNoQuorum) {
        spdlog::info("joined a working quorum");
      }
      had_quorum_ = true;
    } else if (!had_quorum_) {
      spdlog::info("waiting for a quorum: {}", reason);
    } else {
      spdlog::warn("no quorum: {}; requests are refused until it returns", reason);
    }
    logged_ = now;
  }
  const uint64_t unavailable = waiting.no_quorum_refused() + waiting.timed_out();
  if (unavailable > unavailable_.value()) unavailable_.inc(unavailable - unavailable_.value());
  if (waiting.timed_out() > outcome_unknown_.value()) {
    outcome_unknown_.inc(waiting.timed_out() - outcome_unknown_.value());
  }
}

void LinkQuorum::update(size_t connected) {
  now_++;
  if (connected >= needed_) {
    short_ = false;
    quorum_ = true;
    reason_.clear();
    return;
  }
  if (!short_) {
    short_ = true;
    short_since_ = now_;
  }
  if (now_ - short_since_ >= grace_ticks_) {
    quorum_ = false;
    reason_ = fmt::format("the gateway is linked to {} of the {} nodes; it needs {}", connected,
                          nodes_, needed_);
  }
}

}  // namespace maroon::server
