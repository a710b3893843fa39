// The users of a process's client ports (docs/security.md, "Credentials";
// format in docs/formats/users.md): a name, what the user may do, and the
// SHA-256 digest of its password. The same password is the user's HTTP
// bearer token, so no two users may share one.
//
// Read-only users may read (GET, MGET, EXISTS, status, metrics); read-write
// users may also write. Passwords are never stored, only digests; a password
// `maroon user add` makes is 33 random bytes, for which an unsalted digest is
// as good as any (a chosen password should be as long: see the docs).
//
// A UserTable is immutable once loaded and shared by the client servers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "maroon/status.h"

namespace maroon::server {

enum class Access : uint8_t { kReadOnly, kReadWrite };
// "read-only" | "read-write"
std::string_view access_name(Access access);

using SecretDigest = std::array<unsigned char, 32>;

struct User {
  std::string name;
  Access access = Access::kReadOnly;
  SecretDigest digest{};
};

// Bounds of a users file.
inline constexpr size_t users_max = 4096;
inline constexpr size_t user_name_bytes_max = 64;
inline constexpr size_t users_file_bytes_max = 1 << 20;
// Longest password checked; longer ones are refused unread.
inline constexpr size_t password_bytes_max = 1024;
// Shortest password `maroon user add` accepts from its user.
inline constexpr size_t password_bytes_min = 16;

class UserTable {
 public:
  // From the text of a users file; `origin` names it in errors.
  static Result<UserTable> parse(std::string_view text, std::string_view origin);
  // Reads and parses a users file; refuses one that group or others may
  // access (it holds password digests).
  static Result<std::shared_ptr<const UserTable>> load(const std::string& path);

  // The user `name` when `password` is its password, else null. The digests
  // are compared in constant time.
  const User* login(std::string_view name, std::string_view password) const;
  // The user whose password (bearer token) this is, else null.
  const User* by_secret(std::string_view password) const;
  // login(name, password), or by_secret(password) when `name` is empty.
  const User* authenticate(std::string_view name, std::string_view password) const {
    return name.empty() ? by_secret(password) : login(name, password);
  }

  const std::vector<User>& users() const { return users_; }

 private:
  std::vector<User> users_;
  std::unordered_map<std::string, size_t> by_name_;
  std::unordered_map<std::string, size_t> by_digest_;  // raw digest bytes as key
};

// SHA-256 of a password.
SecretDigest secret_digest(std::string_view password);
std::string digest_hex(const SecretDigest& digest);
// A new password: 33 random bytes as 44 characters of base64url.
std::string generate_secret();
// Whether `name` is a valid user name: 1..64 of [A-Za-z0-9_.@-].
bool valid_user_name(std::string_view name);
// The users-file text of one user (a [[user]] table), for `maroon user add`.
std::string user_entry_text(const User& user);

}  // namespace maroon::server
