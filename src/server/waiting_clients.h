// Clients waiting for the result of a write: the gateway core names each by
// a token, which is a slot index here. Shared by the node driver and the
// standalone gateway driver. Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "gateway/gateway.h"
#include "server/engine.h"
#include "server/metrics.h"

namespace maroon::server {

class WaitingClients {
 public:
  // Registers a client; returns its token for Gateway::submit.
  uint64_t add(ReplyFn done);
  // Answers the client of a token that the gateway refused at submit.
  void refuse(uint64_t token, const Status& status);
  // Hands a gateway delivery to its client and records its latency.
  void deliver(Delivery& d, std::chrono::steady_clock::time_point now, Histogram& latency);
  // Answers every waiting client with `status`.
  void fail_all(const Status& status);
  size_t size() const { return count_; }
  // Clients answered "no quorum" (refused, not executed), and "outcome
  // unknown" because the gateway's deadline passed; since the start.
  uint64_t no_quorum_refused() const { return no_quorum_refused_; }
  uint64_t timed_out() const { return timed_out_; }

 private:
  struct Waiting {
    ReplyFn done;  // empty: a free slot
    std::chrono::steady_clock::time_point submitted;
  };
  Waiting take(uint64_t token);

  std::vector<Waiting> slots_;
  std::vector<uint64_t> free_;
  size_t count_ = 0;
  uint64_t no_quorum_refused_ = 0;
  uint64_t timed_out_ = 0;
};

}  // namespace maroon::server
