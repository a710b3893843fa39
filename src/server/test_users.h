// Two users for the client servers' credential tests: "writer"
// (read-write) and "reader" (read-only), with these passwords.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string_view>

#include "server/client_security.h"
#include "server/users.h"

namespace maroon::server {

inline constexpr std::string_view kWriterPassword = "writer-password-0123456789";
inline constexpr std::string_view kReaderPassword = "reader-password-0123456789";

inline ClientSecurity two_test_users() {
  auto users = UserTable::parse(
      user_entry_text({.name = "writer", .access = Access::kReadWrite,
                       .digest = secret_digest(kWriterPassword)}) +
          user_entry_text({.name = "reader", .access = Access::kReadOnly,
                           .digest = secret_digest(kReaderPassword)}),
      "test users");
  EXPECT_TRUE(users.is_ok());
  return {.users = std::make_shared<const UserTable>(std::move(*users))};
}

}  // namespace maroon::server
