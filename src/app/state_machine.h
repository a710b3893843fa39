// The interface every app implements (docs/architecture.md). An app must be a pure
// function of the ops it has applied: no wall clock, no OS randomness, no
// iteration over unordered containers into results, no floating point in
// decisions. A bad op returns an error reply; it never crashes the node,
// because a crash in apply would repeat on every replica.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/prng.h"
#include "common/types.h"

namespace maroon {

// Everything an app may depend on besides its state and the op bytes.
struct TxContext {
  TxId tx_id;
  EpochNumber epoch;
  uint64_t logical_time_ms = 0;
  // Deterministic randomness for the app: seeded from (tx id, epoch).
  Prng prng() const { return Prng(tx_id.raw() * 0x9e3779b97f4a7c15ULL ^ epoch.value()); }
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Executes one op; returns the app's encoded reply (errors included).
  virtual std::string apply(const TxContext& ctx, std::string_view op) = 0;
  // Executes a read-only op against the current state without changing it;
  // an op that would write gets an error reply.
  virtual std::string read(std::string_view op) const = 0;
  // A hash of the whole state, equal on every replica after the same ops.
  virtual uint64_t state_hash() const = 0;
};

}  // namespace maroon
