// The simulator's replicated service: a key-value map whose ops mean exactly
// what the linearizability checker's model says (check/history.h), so any
// history the checker rejects is a replication bug, not an app bug. It also
// checks at-most-once execution itself: every (client, request) it executes
// is remembered (as the highest request per client), in its snapshots too.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "check/history.h"
#include "vr/replica.h"

namespace maroon::sim {

struct KvCommand {
  check::KvOpKind kind = check::KvOpKind::kGet;
  std::string key;
  std::string value;
  std::optional<std::string> expected;
  // Ignored by the service: makes the log entry large (seeds that fill the
  // replica's log by bytes, not by ops) without growing the state.
  size_t padding_bytes = 0;
};

std::string encode_command(const KvCommand& c);
std::optional<KvCommand> decode_command(std::string_view payload);

// The op's outputs as the client sees them, decoded from a reply.
struct KvResult {
  std::optional<std::string> output;
  bool ok = true;
};
std::string encode_result(const KvResult& r);
std::optional<KvResult> decode_result(std::string_view bytes);

class KvService final : public vr::Service {
 public:
  // Called for every executed entry with the result it returns: the
  // simulator's committed-prefix and at-most-once checkers, and what it
  // knows of ops whose clients never learned their outcome.
  using ExecuteHook = std::function<void(const vr::Entry&, const std::string& result)>;
  explicit KvService(ExecuteHook hook) : hook_(std::move(hook)) {}

  std::string execute(const vr::Entry& entry) override;
  std::string read(std::string_view payload) override;
  std::string snapshot() override;
  Status restore(std::string_view snapshot) override;

  // Set when a request executed twice (the violation, for the report).
  const std::optional<std::string>& violation() const { return violation_; }
  uint64_t state_hash() const;
  const std::map<std::string, std::string>& data() const { return data_; }

 private:
  std::string apply(const vr::Entry& entry);

  ExecuteHook hook_;
  std::map<std::string, std::string> data_;
  // Highest request executed per client. A client's requests are numbered
  // up and it has one outstanding at a time, so executing a request at or
  // below this number again is a second execution.
  std::map<uint64_t, uint64_t> executed_;
  std::optional<std::string> violation_;
};

}  // namespace maroon::sim
