// A cluster node whose log is gone, against real processes (docs/cluster.md,
// "A node that lost its log"): a 3-node cluster on loopback takes writes;
// node 3 is SIGKILLed (by the pid this test started) and its wal/ folder
// removed, as a failed disk or a mistaken `rm` may leave it, its superblock
// (its identity and its replica's votes) kept. Restarted, node 3 must not
// refuse to start (before, it did: "the log is missing"), must say in its log
// that it lost records, and must recover them from its peers before it
// votes. The proof that it did: node 1 is then killed, and nodes 2 and 3
// alone (a bare quorum, which needs node 3's vote) must read every key
// written before, node 3 included, and take new writes.
//
// Then the same with node 3's whole data directory removed (docs/cluster.md,
// "A lost data directory"): restarted without --new-cluster, it must rejoin
// (saying so), never bootstrap a group of its own, and take its state back
// from its peers, with the same proof.
//
// Every wait is on a condition with a deadline; nothing sleeps to synchronize.
//
//   maroon-lost-log-test --maroon BUILD/src/cli/maroon --dir DIR
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "app/kv/kv_op.h"
#include "client/native_client.h"
#include "local_cluster.h"

namespace maroon::lost_log_test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr size_t kKeys = 200;
constexpr milliseconds kStartTimeout{90000};
constexpr milliseconds kOpTimeout{30000};

void note(const std::string& line) {
  std::printf("lost-log-test: %s\n", line.c_str());
  std::fflush(stdout);
}

// One kv op through a native client, retried while the cluster cannot take
// it yet (a range being leased, a view change); the reply once it ran.
Result<kv::Reply> call(client::Client& c, const kv::Op& op) {
  Status last = unavailable("not tried");
  std::string reply;
  const bool ok = chaos::wait_until(
      [&] {
        Result<client::Response> r = c.call_raw(AppId::kKv, kv::encode_op(op), false);
        if (!r.is_ok()) {
          last = r.status();
          return false;
        }
        last = r->code == Code::kOk ? Status::ok() : Status(r->code, r->error);
        reply = r->reply;
        return r->code == Code::kOk;
      },
      kOpTimeout);
  if (!ok) return last;
  return kv::decode_reply(reply);
}

Status set(client::Client& c, const std::string& key, const std::string& value) {
  kv::Op op;
  op.type = kv::OpType::kSet;
  op.keys = {key};
  op.values = {value};
  Result<kv::Reply> r = call(c, op);
  return r.is_ok() ? Status::ok() : r.status();
}

Result<std::string> get(client::Client& c, const std::string& key) {
  kv::Op op;
  op.type = kv::OpType::kGet;
  op.keys = {key};
  Result<kv::Reply> r = call(c, op);
  if (!r.is_ok()) return r.status();
  if (r->kind != kv::Reply::Kind::kValue) return invalid_argument(key + " is absent");
  return r->value;
}

Result<client::Client> connect(const chaos::LocalCluster& cl, size_t i) {
  client::Options o;
  o.call_timeout = milliseconds(15000);
  o.client_name = "lost-log-test";
  return client::Client::connect("127.0.0.1", cl.node(i).native_port, o);
}

// What node 3 loses.
enum class Loss { kWal, kWholeDirectory };

int run_one(const std::string& maroon, const fs::path& dir, Loss loss) {
  Result<chaos::LocalCluster> made = chaos::fresh_cluster(maroon, dir, 3);
  if (!made.is_ok()) {
    std::fprintf(stderr, "lost-log-test: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  auto fail = [&](const std::string& why) { return chaos::fail_test(cl, "lost-log-test", why); };

  if (Status s = chaos::start_all_serving(cl, "lost-log-test start", kStartTimeout); !s) {
    return fail(s.to_string());
  }
  auto c1 = connect(cl, 0);
  if (!c1.is_ok()) return fail("native connect: " + c1.status().to_string());
  for (size_t k = 0; k < kKeys; k++) {
    if (Status s = set(*c1, fmt::format("k{}", k), fmt::format("v{}", k)); !s) {
      return fail(fmt::format("write {}: {}", k, s.to_string()));
    }
  }
  note(fmt::format("{} keys written", kKeys));

  const bool whole = loss == Loss::kWholeDirectory;
  const fs::path gone = whole ? cl.node(2).data_dir : dir / "node-3" / "wal";
  note(fmt::format("SIGKILL node 3 (pid {}), then remove {}", cl.node(2).pid, gone.string()));
  cl.kill(2);
  if (!fs::exists(gone)) return fail(gone.string() + " does not exist");
  fs::remove_all(gone);
  if (Status s = cl.start(2, "lost-log-test restart"); !s) return fail(s.to_string());
  if (!chaos::wait_until([&] { return chaos::serves_as_member(cl, 2); }, kStartTimeout)) {
    return fail("node 3 never served again after losing its log");
  }
  const std::string log = chaos::read_whole_file(cl.node(2).log);
  const char* said = whole ? "this node's data directory is new, so it rejoins its cluster"
                           : "the log lost records it had made durable";
  if (log.find(said) == std::string::npos) {
    return fail(fmt::format("node 3's log does not say \"{}\"", said));
  }
  note("node 3 started, said so, and serves");
  // Its state is back: the same as node 1's at the same epoch.
  chaos::NodeStatus s1, s3;
  if (!chaos::wait_same_state(cl, 0, 2, kStartTimeout, s1, s3)) {
    return fail(fmt::format("node 3 at epoch {} hash {}, node 1 at {} hash {}", s3.applied_epoch,
                            s3.state_hash, s1.applied_epoch, s1.state_hash));
  }
  note(fmt::format("node 3 has node 1's state at epoch {}{}", s3.applied_epoch,
                   s3.snapshots_installed > 0 ? " (from a peer's snapshot)" : ""));

  note(fmt::format("SIGKILL node 1 (pid {}): nodes 2 and 3 must serve alone", cl.node(0).pid));
  cl.kill(0);
  auto c3 = connect(cl, 2);
  if (!c3.is_ok()) return fail("native connect to node 3: " + c3.status().to_string());
  for (size_t k = 0; k < kKeys; k += 7) {
    Result<std::string> v = get(*c3, fmt::format("k{}", k));
    if (!v.is_ok()) return fail(fmt::format("read k{} through node 3: {}", k, v.status().to_string()));
    if (*v != fmt::format("v{}", k)) {
      return fail(fmt::format("read k{} through node 3: {}, not v{}", k, *v, k));
    }
  }
  if (Status s = set(*c3, "after", "1"); !s) return fail("write after: " + s.to_string());
  note("nodes 2 and 3 read every key written before and take writes");
  for (const std::string& line : cl.shutdown(milliseconds(20000))) {
    if (line.find("node 1") == std::string::npos) return fail("shutdown: " + line);
  }
  note("ok");
  return 0;
}

int run(const std::string& maroon, const fs::path& dir) {
  if (int rc = run_one(maroon, dir / "wal-lost", Loss::kWal); rc != 0) return rc;
  return run_one(maroon, dir / "dir-lost", Loss::kWholeDirectory);
}

}  // namespace
}  // namespace maroon::lost_log_test

int main(int argc, char** argv) {
  std::string maroon, dir;
  if (!maroon::chaos::parse_test_args(argc, argv,
                                      "usage: maroon-lost-log-test --maroon BINARY --dir DIR",
                                      maroon, dir)) {
    return 2;
  }
  return maroon::lost_log_test::run(maroon, dir);
}
