// The "hello" app: it greets people by name and counts the greetings.
//
// Ops are text:
//   greet NAME   ->  "hello, NAME (greeting #N)"   (counts one more)
//   count NAME   ->  "N"                           (read-only)
// Anything else gets a reply starting with "error: ", and changes nothing.
#pragma once

#include <maroon/state_machine.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace hello {

class HelloApp final : public maroon::StateMachine {
 public:
  static constexpr size_t kNameBytesMax = 256;
  static constexpr size_t kNamesMax = 1'000'000;

  std::string apply(const maroon::TxContext& ctx, std::string_view op) override;
  std::string read(std::string_view op) const override;
  uint64_t state_hash() const override { return hash_; }
  std::unique_ptr<maroon::AppSnapshotCursor> begin_snapshot() override;
  [[nodiscard]] maroon::Status restore(maroon::SnapshotPieces& pieces) override;

 private:
  // Kept up to date on every change, so state_hash() costs nothing: the
  // XOR of one hash per (name, count).
  static uint64_t entry_hash(std::string_view name, uint64_t count);

  std::map<std::string, uint64_t, std::less<>> counts_;
  uint64_t hash_ = 0;
};

}  // namespace hello
