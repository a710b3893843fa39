// Credentials for a process's client ports (docs/security.md,
// "Credentials"), shared by `maroon dev`, `maroon node` and `maroon gateway`.
#pragma once

#include <string>

#include "server/client_security.h"

namespace maroon::cli {

// Loads `users_path` (when not empty) into `security.users`. Without users,
// a non-loopback `host` is refused unless `allow_anonymous`, which logs a
// warning. `what` prefixes messages ("maroon dev"); `flag_hint` says how to
// give users or allow anonymous clients. `client_certificates`: TLS asks
// every client for a certificate from a client CA, which is credential
// enough off loopback. False (after printing why) when the process must not
// start.
bool setup_client_auth(const char* what, const std::string& users_path, bool allow_anonymous,
                       const std::string& host, const std::string& flag_hint,
                       bool client_certificates, server::ClientSecurity& security);

// `maroon user add`: appends a user to a users file (made 0600 if absent) and
// prints its password, made here or read from standard input.
struct UserAddOptions {
  std::string file;
  std::string name;
  std::string access = "read-write";
  bool password_stdin = false;
};
int run_user_add(const UserAddOptions& options);

}  // namespace maroon::cli
