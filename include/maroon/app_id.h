// How a tx names its app. Clients, the CLI and the HTTP API name apps by
// their registered name ("kv", "orderbook", "hello"); every tx in the log
// carries the name's AppId, a 32-bit FNV-1a hash of it. The hash depends on
// the name alone, so every binary and every node agrees on it without any
// table, and an app keeps its id for as long as it keeps its name. Two names
// of one registry hashing alike are refused when the second is registered.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace maroon {

// An app name: 1 to 32 characters of [a-z0-9_-], starting with a letter.
inline constexpr size_t kAppNameBytesMax = 32;

constexpr bool is_valid_app_name(std::string_view name) {
  if (name.empty() || name.size() > kAppNameBytesMax) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

class AppId {
 public:
  constexpr AppId() = default;
  constexpr explicit AppId(uint32_t value) : value_(value) {}
  constexpr uint32_t value() const { return value_; }
  constexpr auto operator<=>(const AppId&) const = default;

  // The id of the app named `name` (FNV-1a, 32 bits). 0 is reserved for the
  // engine's own system ops; a name hashing to 0 is not registrable.
  static constexpr AppId of(std::string_view name) {
    uint32_t h = 2166136261u;
    for (char c : name) {
      h ^= static_cast<unsigned char>(c);
      h *= 16777619u;
    }
    return AppId(h);
  }

  static const AppId kSystem;  // system ops carried by the sequencer (lease, seal)
  static const AppId kKv;      // the built-in key-value app, "kv"

 private:
  uint32_t value_ = 0;
};

inline constexpr AppId AppId::kSystem{0};
inline constexpr AppId AppId::kKv = AppId::of("kv");
static_assert(AppId::kKv != AppId::kSystem);

}  // namespace maroon
