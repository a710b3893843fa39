#include "server/users.h"

// toml++ in header-only mode, without exceptions: parse errors are values.
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <toml++/toml.h>

#include "maroon/assert.h"
#include "net/cert_files.h"

namespace maroon::server {

namespace {

Status file_error(std::string_view origin, std::string_view what) {
  return invalid_argument(fmt::format("{}: {}", origin, what));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool parse_digest(std::string_view hex, SecretDigest& out) {
  if (hex.size() != 2 * out.size()) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

std::string digest_key(const SecretDigest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace

std::string_view access_name(Access access) {
  switch (access) {
    case Access::kReadOnly:
      return "read-only";
    case Access::kReadWrite:
      return "read-write";
  }
  return "?";
}

bool valid_user_name(std::string_view name) {
  if (name.empty() || name.size() > user_name_bytes_max) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

SecretDigest secret_digest(std::string_view password) {
  SecretDigest d{};
  unsigned int len = 0;
  const int ok = EVP_Digest(password.data(), password.size(), d.data(), &len, EVP_sha256(), nullptr);
  MAROON_ASSERT(ok == 1 && len == d.size());
  return d;
}

std::string digest_hex(const SecretDigest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest.size());
  for (unsigned char b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string generate_secret() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::array<unsigned char, 33> raw{};  // 264 bits: 44 characters of 6 bits
  MAROON_ASSERT(RAND_bytes(raw.data(), static_cast<int>(raw.size())) == 1);
  std::string out;
  for (size_t i = 0; i < raw.size(); i += 3) {
    const uint32_t v = (uint32_t{raw[i]} << 16) | (uint32_t{raw[i + 1]} << 8) | raw[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  return out;
}

std::string user_entry_text(const User& user) {
  MAROON_ASSERT(valid_user_name(user.name));
  return fmt::format("[[user]]\nname = \"{}\"\naccess = \"{}\"\npassword_sha256 = \"{}\"\n",
                     user.name, access_name(user.access), digest_hex(user.digest));
}

Result<UserTable> UserTable::parse(std::string_view text, std::string_view origin) {
  toml::parse_result parsed = toml::parse(text, origin);
  if (!parsed) {
    const auto& e = parsed.error();
    return file_error(origin, fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  const toml::table& root = parsed.table();
  UserTable table;
  for (const auto& [key, node] : root) {
    if (key.str() != "user") {
      return file_error(origin, fmt::format("unknown key '{}' (expected [[user]] tables)", key.str()));
    }
  }
  const toml::node* list = root.get("user");
  if (list == nullptr) return table;  // no users: nobody may log in
  const toml::array* array = list->as_array();
  if (array == nullptr) return file_error(origin, "'user' must be [[user]] tables");
  if (array->size() > users_max) {
    return file_error(origin, fmt::format("{} users; at most {}", array->size(), users_max));
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::table* t = array->get(i)->as_table();
    const std::string where = fmt::format("user {}", i + 1);
    if (t == nullptr) return file_error(origin, fmt::format("{}: not a table", where));
    User user;
    bool has_digest = false;
    bool has_access = false;
    for (const auto& [key, node] : *t) {
      const std::string_view k = key.str();
      const auto* s = node.as_string();
      if (k != "name" && k != "access" && k != "password_sha256") {
        return file_error(origin, fmt::format("{}: unknown key '{}' (known: name, access, "
                                              "password_sha256)", where, k));
      }
      if (s == nullptr) return file_error(origin, fmt::format("{}: {} must be a string", where, k));
      const std::string& v = s->get();
      if (k == "name") {
        if (!valid_user_name(v)) {
          return file_error(origin, fmt::format("{}: name \"{}\" is not 1..{} of [A-Za-z0-9_.@-]",
                                                where, v, user_name_bytes_max));
        }
        user.name = v;
      } else if (k == "access") {
        if (v == "read-only") {
          user.access = Access::kReadOnly;
        } else if (v == "read-write") {
          user.access = Access::kReadWrite;
        } else {
          return file_error(origin, fmt::format("{}: access \"{}\": expected \"read-only\" or "
                                                "\"read-write\"", where, v));
        }
        has_access = true;
      } else {
        if (!parse_digest(v, user.digest)) {
          return file_error(origin, fmt::format("{}: password_sha256 must be 64 hex digits", where));
        }
        if (user.digest == secret_digest("")) {
          return file_error(origin, fmt::format("{}: password_sha256 is the digest of the empty "
                                                "password", where));
        }
        has_digest = true;
      }
    }
    if (user.name.empty()) return file_error(origin, fmt::format("{}: no name", where));
    const std::string named = fmt::format("user \"{}\"", user.name);
    if (!has_access) return file_error(origin, fmt::format("{}: no access", named));
    if (!has_digest) return file_error(origin, fmt::format("{}: no password_sha256", named));
    if (table.by_name_.contains(user.name)) {
      return file_error(origin, fmt::format("{} appears twice", named));
    }
    if (auto it = table.by_digest_.find(digest_key(user.digest)); it != table.by_digest_.end()) {
      return file_error(origin,
                        fmt::format("{} has the same password as user \"{}\"; a password is also "
                                    "a bearer token and must name one user",
                                    named, table.users_[it->second].name));
    }
    table.by_name_.emplace(user.name, table.users_.size());
    table.by_digest_.emplace(digest_key(user.digest), table.users_.size());
    table.users_.push_back(std::move(user));
  }
  return table;
}

Result<std::shared_ptr<const UserTable>> UserTable::load(const std::string& path) {
  // It holds password digests: private like a key.
  Result<std::string> text = net::read_small_file(path, users_file_bytes_max, "a users file");
  if (!text.is_ok()) return text.status();
  Result<UserTable> table = parse(*text, path);
  if (!table.is_ok()) return table.status();
  return std::make_shared<const UserTable>(std::move(*table));
}

const User* UserTable::login(std::string_view name, std::string_view password) const {
  if (password.size() > password_bytes_max) return nullptr;
  const SecretDigest given = secret_digest(password);
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return nullptr;
  const User& user = users_[it->second];
  return CRYPTO_memcmp(given.data(), user.digest.data(), given.size()) == 0 ? &user : nullptr;
}

const User* UserTable::by_secret(std::string_view password) const {
  if (password.size() > password_bytes_max) return nullptr;
  auto it = by_digest_.find(digest_key(secret_digest(password)));
  return it == by_digest_.end() ? nullptr : &users_[it->second];
}

}  // namespace maroon::server
