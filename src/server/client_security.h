// What the client ports (RESP, HTTP, native) of one process require of their
// clients (docs/security.md, "Client ports"): TLS, and credentials. Made once
// per process from its flags or cluster.toml and shared by its client
// servers; everything in it is read-only once serving starts.
#pragma once

#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "server/users.h"

namespace maroon::server {

struct ClientSecurity {
  // When set, every client port speaks TLS only (server side of this context).
  std::shared_ptr<boost::asio::ssl::context> tls;
  // When set, a client must authenticate as one of these users before it may
  // run commands; without it, every client may do everything.
  std::shared_ptr<const UserTable> users;
};

}  // namespace maroon::server
