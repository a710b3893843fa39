// maroon: durable, replicated, deterministic execution. See README.md.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace maroon::cli;
  CLI::App app{"maroon: a durable, deterministic key-value engine"};
  app.require_subcommand(1);

  DevOptions dev;
  auto* dev_cmd = app.add_subcommand("dev", "Run one node with its gateway and the kv app");
  dev_cmd->add_option("--data-dir", dev.data_dir, "Where the WAL lives")->capture_default_str();
  dev_cmd->add_option("--host", dev.host, "Address to listen on")->capture_default_str();
  dev_cmd->add_option("--http-port", dev.http_port, "HTTP/JSON port")->capture_default_str();
  dev_cmd->add_option("--resp-port", dev.resp_port, "RESP (redis-cli) port")->capture_default_str();
  dev_cmd->add_option("--native-port", dev.native_port, "Native binary protocol port")
      ->capture_default_str();

  ClientOptions client;
  std::string verb, key, value;
  auto* kv_cmd = app.add_subcommand("kv", "Read or write one key over HTTP");
  kv_cmd->add_option("verb", verb, "get | put | del")->required()->check(CLI::IsMember({"get", "put", "del"}));
  kv_cmd->add_option("key", key, "The key")->required();
  kv_cmd->add_option("value", value, "The value (put)");
  kv_cmd->add_option("--host", client.host)->capture_default_str();
  kv_cmd->add_option("--http-port", client.http_port)->capture_default_str();

  auto* status_cmd = app.add_subcommand("status", "Show the node's status");
  status_cmd->add_option("--host", client.host)->capture_default_str();
  status_cmd->add_option("--http-port", client.http_port)->capture_default_str();

  BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "Native load generator: throughput and latency");
  bench_cmd->add_option("--host", bench.host)->capture_default_str();
  bench_cmd->add_option("--native-port", bench.native_port)->capture_default_str();
  bench_cmd->add_option("-c,--connections", bench.connections, "Concurrent connections")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  bench_cmd->add_option("-P,--pipeline", bench.pipeline, "Requests in flight per connection")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  bench_cmd->add_option("--seconds", bench.seconds, "How long to run")
      ->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  bench_cmd->add_option("--keys", bench.keys, "Distinct keys")->capture_default_str()->check(CLI::Range(1, 100000000));
  bench_cmd->add_option("--value-bytes", bench.value_bytes, "Value size")
      ->capture_default_str()->check(CLI::Range(0, 1024 * 1024));
  bench_cmd->add_option("--mix", bench.mix, "Op mix, e.g. set | get | incr | set:20,get:80")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (*dev_cmd) {
    dev.program = argv[0];
    return run_dev(dev);
  }
  if (*kv_cmd) {
    if (verb == "put" && kv_cmd->count("value") == 0) {
      std::fprintf(stderr, "maroon kv put: a VALUE is required\n");
      return 2;
    }
    return run_kv(client, verb, key, value);
  }
  if (*status_cmd) return run_status(client);
  if (*bench_cmd) return run_bench(bench);
  return 2;
}
