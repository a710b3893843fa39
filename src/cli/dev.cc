// `maroon dev`: one node and one gateway in one process, with the kv app,
// serving RESP, HTTP and the native protocol on 127.0.0.1.
#include "cli/commands.h"
#include "cli/store_setup.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "cli/client_auth.h"
#include "cli/serve.h"
#include "server/client_resources.h"
#include "server/client_tls.h"
#include "server/driver.h"
#include "server/http_server.h"
#include "server/native_server.h"
#include "server/resp_server.h"

namespace maroon::cli {

namespace {

// How clients reach a TLS `maroon dev`: the CA file they trust, the host
// name in URLs, and what they must present.
struct DevTls {
  std::string ca;         // the CA clients verify the server with
  std::string url_host;   // a name the certificate holds
  std::string client_ca;  // clients need a certificate this CA signed
};

// The client ports' TLS from the flags (none, made in DATA-DIR/client-tls,
// or the given files) into `security` and `how`. Prints why and returns
// false if it cannot be had.
bool dev_client_tls(const DevOptions& o, server::ClientSecurity& security, DevTls& how) {
  if (!o.tls && o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty()) {
      std::fprintf(stderr, "maroon dev: --tls-client-ca needs --tls or --tls-cert\n");
      return false;
    }
    return true;
  }
  server::ClientTlsFiles files{.cert = o.tls_cert, .key = o.tls_key, .client_ca = o.tls_client_ca};
  how.ca = "CA.crt";  // whichever signed --tls-cert
  how.url_host = o.host;
  if (o.tls) {
    const std::string dir = (std::filesystem::path(o.data_dir) / "client-tls").string();
    Result<server::DevTlsFiles> made = server::ensure_dev_tls_files(dir, o.host);
    if (!made.is_ok()) {
      std::fprintf(stderr, "maroon dev: --tls: %s\n", made.status().message().c_str());
      return false;
    }
    spdlog::info("client TLS: {} certificates in {}", made->made ? "made new" : "reusing", dir);
    files.cert = made->server.cert;
    files.key = made->server.key;
    how.ca = made->ca_cert;
    boost::system::error_code ec;
    const auto addr = boost::asio::ip::make_address(o.host, ec);
    if (!ec && (addr.is_loopback() || addr.is_unspecified())) how.url_host = "localhost";
  }
  Result<std::shared_ptr<boost::asio::ssl::context>> tls = server::load_client_tls_context(files);
  if (!tls.is_ok()) {
    std::fprintf(stderr, "maroon dev: client TLS: %s\n", tls.status().message().c_str());
    return false;
  }
  security.tls = std::move(tls).value();
  how.client_ca = o.tls_client_ca;
  return true;
}

void print_tls_banner(const DevOptions& o, const DevTls& how, uint16_t http, uint16_t resp,
                      uint16_t native) {
  const std::string client_cert =
      how.client_ca.empty() ? "" : " --cert CLIENT.crt --key CLIENT.key";
  fmt::print(
      "maroon dev is serving over TLS (data in {dir}; clients trust {ca})\n"
      "  HTTPS   https://{url}:{http}   RESP+TLS {host}:{resp}   native+TLS {host}:{native}\n",
      fmt::arg("dir", o.data_dir), fmt::arg("ca", how.ca), fmt::arg("url", how.url_host),
      fmt::arg("host", o.host), fmt::arg("http", http), fmt::arg("resp", resp),
      fmt::arg("native", native));
  if (!how.client_ca.empty()) {
    fmt::print("  clients must present a certificate signed by {} (mutual TLS)\n", how.client_ca);
  }
  fmt::print(
      "try:\n"
      "  redis-cli -p {resp} --tls --cacert {ca}{cc} set greeting hello\n"
      "  curl -s --cacert {ca}{cc} https://{url}:{http}/v1/kv/greeting\n"
      "  curl -s --cacert {ca}{cc} -X PUT --data-binary world https://{url}:{http}/v1/kv/greeting\n"
      "  {maroon} bench --native-port {native} --tls --cacert {ca}{cc} --seconds 5\n"
      "  curl -s --cacert {ca}{cc} https://{url}:{http}/metrics\n",
      fmt::arg("ca", how.ca), fmt::arg("cc", client_cert), fmt::arg("url", how.url_host),
      fmt::arg("http", http), fmt::arg("resp", resp), fmt::arg("native", native),
      fmt::arg("maroon", o.program));
}

}  // namespace

int run_dev(const DevOptions& o) {
  ServeAddresses addresses{
      .host = o.host,
      .http_port = o.http_port,
      .resp_port = o.resp_port,
      .native_port = o.native_port,
      .client_limits = {.connections_max = o.max_clients,
                        .connections_per_address_max = o.max_clients_per_address,
                        .buffer_bytes_max = o.client_buffer_mb << 20}};
  DevTls tls;
  if (!dev_client_tls(o, addresses.security, tls)) return 1;
  if (!setup_client_auth("maroon dev", o.users, o.allow_anonymous, o.host,
                         "--users FILE, or --allow-anonymous", !o.tls_client_ca.empty(),
                         addresses.security)) {
    return 1;
  }
  boost::asio::io_context io(1);
  server::DriverOptions driver_options;
  driver_options.data_dir = o.data_dir;
  if (o.apps != nullptr) driver_options.apps = *o.apps;
  driver_options.snapshots.log_bytes = o.snapshot_log_mb << 20;
  driver_options.snapshots.epochs = o.snapshot_epochs;
  driver_options.snapshots.kept = o.snapshots_kept;
  if (!o.backup_to.empty()) {
    objstore::StoreConfig store;
    store.url = o.backup_to;
    store.part_bytes = o.backup_part_mb << 20;
    driver_options.backup_store = store;
    driver_options.backup.interval_ms = o.backup_interval_s * 1000;
    driver_options.backup.kept = o.backups_kept;
  }
  if (!o.bootstrap_from.empty()) {
    if (holds_data(o.data_dir)) {
      spdlog::info("{} already holds data: --bootstrap-from {} is not used", o.data_dir,
                   o.bootstrap_from);
    } else {
      objstore::StoreConfig from;
      from.url = o.bootstrap_from;
      if (Status s = restore_data_dir(from, o.data_dir, /*node_id=*/1, std::nullopt); !s) {
        std::fprintf(stderr, "maroon dev: --bootstrap-from: %s\n", s.to_string().c_str());
        return 1;
      }
    }
  }
  server::Driver driver(io, driver_options);
  spdlog::info("maroon dev: opening {}", o.data_dir);
  return serve(io, driver, driver_options.drain_ms, addresses,
               [&](uint16_t http, uint16_t resp, uint16_t native) {
                 if (addresses.security.tls) return print_tls_banner(o, tls, http, resp, native);
                 fmt::print(
                     "maroon dev is serving (data in {dir})\n"
                     "  HTTP    http://{host}:{http}   RESP {host}:{resp}   native {host}:{native}\n"
                     "try:\n"
                     "  redis-cli -p {resp} set greeting hello\n"
                     "  curl -s http://{host}:{http}/v1/kv/greeting\n"
                     "  curl -s -X PUT --data-binary world http://{host}:{http}/v1/kv/greeting\n"
                     "  {maroon} kv get greeting --http-port {http}\n"
                     "  {maroon} bench --native-port {native} --seconds 5\n"
                     "  curl -s http://{host}:{http}/metrics\n",
                     fmt::arg("dir", o.data_dir), fmt::arg("host", o.host), fmt::arg("http", http),
                     fmt::arg("resp", resp), fmt::arg("native", native),
                     fmt::arg("maroon", o.program));
               });
}

int serve(boost::asio::io_context& io, server::Driver& driver, uint64_t drain_ms,
          const ServeAddresses& a, const std::function<void(uint16_t, uint16_t, uint16_t)>& banner) {
  if (Status s = driver.start(); !s) {
    spdlog::error("cannot start: {}", s.to_string());
    return 1;
  }
  const auto& r = driver.replay_stats();
  spdlog::info("replayed {} WAL records ({} txs, {} epochs) in {} ms", r.records, r.txs, r.epochs,
               r.millis);
  return serve_engine(
      io, driver, a, [&](std::function<void()> done) { driver.shutdown(std::move(done)); },
      drain_ms, banner);
}

int serve_engine(boost::asio::io_context& io, server::Engine& driver, const ServeAddresses& a,
                 const std::function<void(std::function<void()>)>& shutdown, uint64_t drain_ms,
                 const std::function<void(uint16_t, uint16_t, uint16_t)>& banner) {
  server::ClientResources resources(a.client_limits, &driver.metrics());
  if (const size_t descriptors = server::raise_descriptor_limit(); descriptors > 0) {
    const size_t max = resources.clamp_to_descriptors(descriptors);
    spdlog::info("file descriptors: {}; client connections: at most {} ({} kept for HTTP)",
                 descriptors, max, resources.limits().http_reserved_connections);
  }
  server::HttpServer http(io, driver, a.host, a.http_port, resources, a.security);
  server::RespServer resp(io, driver, a.host, a.resp_port, resources, a.security);
  server::NativeServer native(io, driver, a.host, a.native_port, resources, a.security);
  if (Status s = http.start(); !s) {
    spdlog::error("HTTP port {}: {}", a.http_port, s.to_string());
    return 1;
  }
  if (Status s = resp.start(); !s) {
    spdlog::error("RESP port {}: {}", a.resp_port, s.to_string());
    return 1;
  }
  if (Status s = native.start(); !s) {
    spdlog::error("native port {}: {}", a.native_port, s.to_string());
    return 1;
  }
  banner(http.port(), resp.port(), native.port());
  std::fflush(stdout);

  // First signal: refuse new writes, drain the ones in flight, stop. A second signal, or a
  // drain that cannot finish (a hung fdatasync), exits at once: the WAL makes
  // that safe, since nothing unsynced was ever acknowledged.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::steady_timer force_exit(io);
  std::function<void(const boost::system::error_code&, int)> on_signal;
  bool stopping = false;
  std::function<void()> begin_stop;
  on_signal = [&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (stopping) {
      spdlog::warn("signal {} again: exiting now", sig);
      std::_Exit(1);
    }
    spdlog::info("signal {}: draining in-flight requests and stopping", sig);
    signals.async_wait(on_signal);  // a second signal exits at once
    begin_stop();
  };
  // The engine stops on its own (a node its group removed): as on SIGTERM.
  driver.set_stop_handler([&](std::string why) {
    if (stopping) return;
    spdlog::info("stopping: {}; draining in-flight requests", why);
    begin_stop();
  });
  begin_stop = [&] {
    stopping = true;
    force_exit.expires_after(std::chrono::milliseconds(drain_ms + 5000));
    force_exit.async_wait([](const boost::system::error_code& e) {
      if (e) return;
      spdlog::error("shutdown did not finish (WAL sync hung?); exiting now");
      std::_Exit(1);
    });
    // Connections stay open while in-flight writes drain, so their clients
    // get answers; new writes are refused meanwhile ("shutting down").
    shutdown([&] {
      http.stop();
      resp.stop();
      native.stop();
      force_exit.cancel();
      signals.cancel();
      io.stop();
    });
  };
  signals.async_wait(on_signal);
  io.run();
  driver.set_stop_handler({});
  spdlog::info("stopped");
  return 0;
}

}  // namespace maroon::cli
