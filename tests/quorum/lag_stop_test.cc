// A node that lags beyond its peers' retention, against real processes
// (docs/architecture.md, "Catching up"): a 3-node cluster on loopback keeps
// only 16 MiB of executed txs for lagging peers; node 3 is SIGKILLed (by the
// pid this test started), 48 MiB are written through node 1, and node 3 is
// restarted. Its peers answer its pulls with TxEvicted, so it must exit on
// its own within a bound, its log saying which tx every peer evicted, rather
// than pull for ever looking healthy. The other two go on serving.
//
// Every wait is on a condition with a deadline; nothing sleeps to synchronize.
//
//   maroon-lag-stop-test --maroon BUILD/src/cli/maroon --dir DIR
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "app/kv/kv_op.h"
#include "client/native_client.h"
#include "cluster/config.h"
#include "local_cluster.h"

namespace maroon::lag_test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr uint64_t kRetentionBytes = 16 << 20;  // the smallest the config allows
constexpr size_t kValueBytes = 64 << 10;
constexpr size_t kWrites = 3 * kRetentionBytes / kValueBytes;  // 48 MiB
constexpr milliseconds kStartTimeout{90000};
constexpr milliseconds kStopTimeout{60000};

void note(const std::string& line) {
  std::printf("lag-stop-test: %s\n", line.c_str());
  std::fflush(stdout);
}

// A SET through node i's native port; retried while its gateway leases a range.
Status write(client::Client& c, const std::string& key, const std::string& value) {
  kv::Op op;
  op.type = kv::OpType::kSet;
  op.keys = {key};
  op.values = {value};
  Status last = unavailable("not tried");
  const bool ok = chaos::wait_until(
      [&] {
        Result<client::Response> r = c.call_raw(AppId::kKv, kv::encode_op(op), false);
        if (!r.is_ok()) {
          last = r.status();
          return false;
        }
        last = r->code == Code::kOk ? Status::ok() : Status(r->code, r->error);
        return r->code == Code::kOk;
      },
      milliseconds(30000));
  return ok ? Status::ok() : last;
}

int run(const std::string& maroon, const fs::path& dir) {
  Result<chaos::LocalCluster> made = chaos::fresh_cluster(maroon, dir, 3);
  if (!made.is_ok()) {
    std::fprintf(stderr, "lag-stop-test: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  if (Status st = cl.edit_config([](cluster::ClusterConfig& c) {
        c.settings.tx_retention_bytes_max = kRetentionBytes;
      });
      !st) {
    std::fprintf(stderr, "lag-stop-test: %s\n", st.to_string().c_str());
    return 1;
  }
  auto fail = [&](const std::string& why) { return chaos::fail_test(cl, "lag-stop-test", why); };

  if (Status s = chaos::start_all_serving(cl, "lag-stop-test start", kStartTimeout); !s) {
    return fail(s.to_string());
  }
  client::Options copts;
  copts.call_timeout = milliseconds(15000);
  copts.client_name = "lag-stop-test";
  auto c = client::Client::connect("127.0.0.1", cl.node(0).native_port, copts);
  if (!c.is_ok()) return fail("native connect: " + c.status().to_string());
  if (Status s = write(*c, "before", "1"); !s) return fail("first write: " + s.to_string());

  note(fmt::format("SIGKILL node 3 (pid {})", cl.node(2).pid));
  cl.kill(2);
  const std::string value(kValueBytes, 'v');
  for (size_t i = 0; i < kWrites; i++) {
    if (Status s = write(*c, fmt::format("k{}", i), value); !s) {
      return fail(fmt::format("write {} of {}: {}", i, kWrites, s.to_string()));
    }
  }
  note(fmt::format("{} MiB written while node 3 was down", kWrites * kValueBytes >> 20));

  if (Status s = cl.start(2, "lag-stop-test restart"); !s) return fail(s.to_string());
  std::string ended;
  const bool stopped = chaos::wait_until(
      [&] {
        for (const std::string& line : cl.reap_unexpected()) ended += line;
        return !cl.running(2);
      },
      kStopTimeout);
  if (!stopped) {
    return fail(fmt::format("node 3 did not stop within {} s of its restart",
                            kStopTimeout.count() / 1000));
  }
  note("node 3 stopped: " + ended);
  const std::string log = chaos::read_whole_file(cl.node(2).log);
  if (log.find("node 3 lags too far") == std::string::npos ||
      log.find("every peer has executed and no longer keeps") == std::string::npos) {
    return fail("node 3's log does not say why it stopped");
  }
  for (size_t i = 0; i < 2; i++) {
    if (!cl.running(i)) return fail(fmt::format("node {} is not running", cl.node(i).id));
  }
  if (Status s = write(*c, "after", "1"); !s) return fail("write after: " + s.to_string());
  note("nodes 1 and 2 still serve writes");
  for (const std::string& line : cl.shutdown(milliseconds(20000))) {
    if (line.find("node 3") == std::string::npos) return fail("shutdown: " + line);
  }
  note("ok");
  return 0;
}

}  // namespace
}  // namespace maroon::lag_test

int main(int argc, char** argv) {
  std::string maroon, dir;
  if (!maroon::chaos::parse_test_args(argc, argv,
                                      "usage: maroon-lag-stop-test --maroon BINARY --dir DIR",
                                      maroon, dir)) {
    return 2;
  }
  return maroon::lag_test::run(maroon, dir);
}
