// A small blocking HTTP GET for the CLI: `maroon status`, `maroon cluster up`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace maroon::cli {

struct HttpResponse {
  int status = 0;  // e.g. 200, 503
  std::string body;
};

// GETs http://host:port{target}. Connecting, sending and reading together
// take at most `timeout`. A connection or protocol failure is kUnavailable
// with a short reason ("Connection refused", "timed out"). A `token` is sent
// as "Authorization: Bearer <token>".
Result<HttpResponse> http_get(const std::string& host, uint16_t port, const std::string& target,
                              std::chrono::milliseconds timeout, const std::string& token = {});

}  // namespace maroon::cli
