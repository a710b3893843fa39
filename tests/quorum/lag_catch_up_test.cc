// A node that lags beyond its peers' retention, against real processes
// (docs/snapshots.md, "Transfer"): a 3-node cluster on loopback keeps only
// 16 MiB of executed txs for lagging peers; node 3 is SIGKILLed (by the pid
// this test started), 48 MiB are written through node 1, and node 3 is
// restarted. Its peers answer its pulls with TxEvicted, so it must fetch a
// peer's snapshot, install it and catch up (its applied epoch reaching
// node 1's, with the same state hash) within a bound, while node 1 keeps
// taking writes. Before snapshot transfer it stopped with "lags too far".
//
// Every wait is on a condition with a deadline; nothing sleeps to synchronize.
//
//   maroon-lag-catch-up-test --maroon BUILD/src/cli/maroon --dir DIR
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

namespace maroon::lag_catch_up_test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr uint64_t kRetentionBytes = 16 << 20;  // the smallest the config allows
constexpr size_t kValueBytes = 64 << 10;
constexpr size_t kWrites = 3 * kRetentionBytes / kValueBytes;  // 48 MiB
constexpr milliseconds kStartTimeout{90000};
constexpr milliseconds kCatchUpTimeout{120000};

void note(const std::string& line) {
  std::printf("lag-catch-up-test: %s\n", line.c_str());
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
    std::fprintf(stderr, "lag-catch-up-test: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  if (Status st = cl.edit_config([](cluster::ClusterConfig& c) {
        c.settings.tx_retention_bytes_max = kRetentionBytes;
      });
      !st) {
    std::fprintf(stderr, "lag-catch-up-test: %s\n", st.to_string().c_str());
    return 1;
  }
  auto fail = [&](const std::string& why) { return chaos::fail_test(cl, "lag-catch-up-test", why); };

  if (Status s = chaos::start_all_serving(cl, "lag-catch-up-test start", kStartTimeout); !s) {
    return fail(s.to_string());
  }
  client::Options copts;
  copts.call_timeout = milliseconds(15000);
  copts.client_name = "lag-catch-up-test";
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

  const auto restarted = std::chrono::steady_clock::now();
  if (Status s = cl.start(2, "lag-catch-up-test restart"); !s) return fail(s.to_string());
  // Node 1 keeps taking writes while node 3 catches up.
  size_t during = 0;
  chaos::NodeStatus three, one;
  std::string ended;
  const bool caught_up = chaos::wait_until(
      [&] {
        for (const std::string& line : cl.reap_unexpected()) ended += line;
        if (!cl.running(2)) return true;
        if (during < 200 && write(*c, fmt::format("during{}", during), "d").is_ok()) during++;
        auto s3 = cl.status(2, milliseconds(2000));
        auto s1 = cl.status(0, milliseconds(2000));
        if (!s3.is_ok() || !s1.is_ok()) return false;
        three = *s3;
        one = *s1;
        return three.snapshots_installed >= 1 && !three.snapshot_needed &&
               three.applied_epoch >= one.applied_epoch && three.applied_epoch > 0;
      },
      kCatchUpTimeout);
  if (!cl.running(2)) return fail("node 3 stopped: " + ended);
  if (!caught_up) {
    return fail(fmt::format("node 3 did not catch up within {} s of its restart (installed {}, "
                            "applied {} of node 1's {})",
                            kCatchUpTimeout.count() / 1000, three.snapshots_installed,
                            three.applied_epoch, one.applied_epoch));
  }
  const auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                             restarted);
  note(fmt::format("node 3 installed a peer's snapshot and caught up {} ms after its restart; "
                   "node 1 took {} writes meanwhile",
                   took.count(), during));
  // With no writes, every node reaches the same epoch with the same state.
  if (!chaos::wait_same_state(cl, 2, 0, milliseconds(30000), three, one)) {
    return fail(fmt::format("node 3 at epoch {} hash {}, node 1 at {} hash {}",
                            three.applied_epoch, three.state_hash, one.applied_epoch,
                            one.state_hash));
  }
  note(fmt::format("nodes 1 and 3 at epoch {} with state hash {}", one.applied_epoch,
                   one.state_hash));
  if (Status s = write(*c, "after", "1"); !s) return fail("write after: " + s.to_string());
  if (auto problems = cl.shutdown(milliseconds(20000)); !problems.empty()) {
    return fail("shutdown: " + problems.front());
  }
  note("ok");
  return 0;
}

}  // namespace
}  // namespace maroon::lag_catch_up_test

int main(int argc, char** argv) {
  std::string maroon, dir;
  if (!maroon::chaos::parse_test_args(argc, argv,
                                      "usage: maroon-lag-catch-up-test --maroon BINARY --dir DIR",
                                      maroon, dir)) {
    return 2;
  }
  return maroon::lag_catch_up_test::run(maroon, dir);
}
