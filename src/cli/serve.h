// Shared by `maroon dev` and `maroon node`: starts a driver, serves HTTP, RESP
// and the native protocol for it, and runs until SIGINT/SIGTERM (drain, then
// stop; a second signal exits at once).
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "server/client_resources.h"
#include "server/client_security.h"
#include "server/driver.h"

namespace maroon::cli {

struct ServeAddresses {
  std::string host;
  uint16_t http_port = 0;
  uint16_t resp_port = 0;
  uint16_t native_port = 0;
  server::ClientLimits client_limits;
  server::ClientSecurity security;
};

// Returns the process exit code. `banner` gets the bound ports once serving.
int serve(boost::asio::io_context& io, server::Driver& driver, uint64_t drain_ms,
          const ServeAddresses& addresses,
          const std::function<void(uint16_t http, uint16_t resp, uint16_t native)>& banner);

// The part after the engine started: client servers and signal handling.
// `shutdown(done)` drains the engine and then calls done.
int serve_engine(boost::asio::io_context& io, server::Engine& engine,
                 const ServeAddresses& addresses,
                 const std::function<void(std::function<void()>)>& shutdown, uint64_t drain_ms,
                 const std::function<void(uint16_t http, uint16_t resp, uint16_t native)>& banner);

}  // namespace maroon::cli
