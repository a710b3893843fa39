// `maroon apps` (the apps this binary runs) and `maroon call APP OP` (one op
// of any app, over HTTP): docs/apps.md.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/http_get.h"

namespace maroon::cli {

int run_apps(const AppRegistry& apps) {
  for (const AppInfo& app : apps.apps()) {
    std::printf("%-20s %#010x  %s\n", app.name.c_str(), app.id.value(), app.summary.c_str());
  }
  return 0;
}

int run_call(const CallOptions& o) {
  if (!is_valid_app_name(o.app)) {
    std::fprintf(stderr, "maroon call: \"%s\" is not an app name (maroon apps lists them)\n",
                 o.app.c_str());
    return 2;
  }
  const std::string target = fmt::format("/v1/apps/{}{}", o.app, o.read ? "/read" : "");
  Result<HttpResponse> r =
      http_post(o.client.host, o.client.http_port, target, std::chrono::milliseconds(o.timeout_ms),
                nullptr, o.client.token, o.op);
  if (!r) {
    std::fprintf(stderr, "maroon call: %s:%u: %s\n", o.client.host.c_str(), o.client.http_port,
                 r.status().message().c_str());
    return 1;
  }
  if (r->status != 200) {
    // Errors are JSON: {"error": ..., "code": ...}.
    std::string message = r->body;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(r->body, ec);
    if (!ec && v.is_object() && v.as_object().contains("error") &&
        v.as_object().at("error").is_string()) {
      message = std::string(v.as_object().at("error").as_string());
    }
    std::fprintf(stderr, "maroon call: HTTP %d: %s\n", r->status, message.c_str());
    return 1;
  }
  std::fwrite(r->body.data(), 1, r->body.size(), stdout);
  if (!r->body.empty() && r->body.back() != '\n') std::fputc('\n', stdout);
  return 0;
}

}  // namespace maroon::cli
