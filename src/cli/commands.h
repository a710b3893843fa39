// The `maroon` command's subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace maroon::cli {

struct DevOptions {
  std::string data_dir = "./maroon-data";
  std::string host = "127.0.0.1";
  uint16_t http_port = 8080;
  uint16_t resp_port = 6380;
  uint16_t native_port = 6390;
  std::string program = "maroon";  // how to name this binary in the examples printed at start
};
int run_dev(const DevOptions& options);

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t http_port = 8080;
};
// `maroon kv get|put|del KEY [VALUE]` over HTTP.
int run_kv(const ClientOptions& options, const std::string& verb, const std::string& key,
           const std::string& value);
// `maroon status` over HTTP.
int run_status(const ClientOptions& options);

struct BenchOptions {
  std::string host = "127.0.0.1";
  uint16_t native_port = 6390;
  unsigned connections = 16;
  unsigned pipeline = 16;  // requests in flight per connection
  double seconds = 10;
  unsigned keys = 100000;
  unsigned value_bytes = 16;
  std::string mix = "set";  // e.g. "set", "get", "set:50,get:50", "incr"
};
int run_bench(const BenchOptions& options);

}  // namespace maroon::cli
