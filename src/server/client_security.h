// What the client ports (RESP, HTTP, native) of one process require of their
// clients (docs/security.md, "Client ports"): TLS, and credentials. Made once
// per process from its flags or cluster.toml and shared by its client
// servers; everything in it is read-only once serving starts.
#pragma once

#include <memory>

#include <boost/asio/ssl/context.hpp>

namespace maroon::server {

struct ClientSecurity {
  // When set, every client port speaks TLS only (server side of this context).
  std::shared_ptr<boost::asio::ssl::context> tls;
};

}  // namespace maroon::server
