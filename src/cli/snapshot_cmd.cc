// `maroon snapshot create`: asks a node for a snapshot now (POST
// /v1/admin/snapshot) and waits until /v1/status says it is written.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "cli/http_get.h"
#include "cli/json_fields.h"

namespace maroon::cli {

namespace json = boost::json;

namespace {

constexpr std::chrono::milliseconds kRequestTimeout{10000};

// The "snapshot" object of a node's /v1/status, or an error saying why not.
Result<json::object> snapshot_status(const ClientOptions& o) {
  Result<HttpResponse> r = http_get(o.host, o.http_port, "/v1/status", kRequestTimeout, nullptr,
                                    o.token);
  if (!r) return r.status();
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("snapshot") ||
      !v.as_object().at("snapshot").is_object()) {
    return unavailable(fmt::format("HTTP {}: {}", r->status, r->body));
  }
  return v.as_object().at("snapshot").as_object();
}


}  // namespace

int run_snapshot_create(const SnapshotCreateOptions& options) {
  const ClientOptions& o = options.client;
  const std::string where = fmt::format("{}:{}", o.host, o.http_port);
  Result<json::object> before = snapshot_status(o);
  if (!before) {
    std::fprintf(stderr, "maroon snapshot create: %s: %s\n", where.c_str(),
                 before.status().to_string().c_str());
    return 1;
  }
  Result<HttpResponse> r =
      http_post(o.host, o.http_port, "/v1/admin/snapshot", kRequestTimeout, nullptr, o.token);
  if (!r) {
    std::fprintf(stderr, "maroon snapshot create: %s: %s\n", where.c_str(),
                 r.status().to_string().c_str());
    return 1;
  }
  if (r->status != 202) {
    std::fprintf(stderr, "maroon snapshot create: %s answered HTTP %d: %s\n", where.c_str(),
                 r->status, r->body.c_str());
    return 1;
  }
  const uint64_t taken_before = uint_of(*before, "taken");
  const auto start = std::chrono::steady_clock::now();
  auto last_note = start;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Result<json::object> now = snapshot_status(o);
    if (!now) {
      std::fprintf(stderr, "maroon snapshot create: %s: %s\n", where.c_str(),
                   now.status().to_string().c_str());
      return 1;
    }
    const bool in_progress = now->contains("in_progress") && now->at("in_progress").is_bool() &&
                             now->at("in_progress").get_bool();
    if (uint_of(*now, "taken") > taken_before && !in_progress) {
      std::printf("snapshot of epoch %llu written (%llu bytes)\n",
                  static_cast<unsigned long long>(uint_of(*now, "epoch")),
                  static_cast<unsigned long long>(uint_of(*now, "bytes")));
      return 0;
    }
    const json::value* error = now->if_contains("error");
    if (!in_progress && error != nullptr && error->is_string() && !error->get_string().empty()) {
      std::fprintf(stderr, "maroon snapshot create: the snapshot failed: %s\n",
                   std::string(error->get_string()).c_str());
      return 1;
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (elapsed > std::chrono::seconds(options.wait_s)) {
      std::fprintf(stderr, "maroon snapshot create: not written within %llu s (still %s)\n",
                   static_cast<unsigned long long>(options.wait_s),
                   in_progress ? "in progress" : "not begun");
      return 1;
    }
    if (std::chrono::steady_clock::now() - last_note > std::chrono::seconds(2)) {
      last_note = std::chrono::steady_clock::now();
      std::fprintf(stderr, "snapshot %s (%llds)...\n", in_progress ? "being written" : "requested",
                   static_cast<long long>(
                       std::chrono::duration_cast<std::chrono::seconds>(elapsed).count()));
    }
  }
}

}  // namespace maroon::cli
