// `maroon cluster add-node | remove-node | replace-node`: membership changes
// of a local cluster while it serves (docs/membership.md). Each asks the
// primary for one reconfiguration (POST /v1/admin/members), waits until the
// group committed it, and then rewrites DIR/cluster.toml with the new node
// list and the membership config. A new node starts first, with `--join`,
// from DIR/cluster.toml.join-<id> (the group and itself); it is removed once
// cluster.toml lists the node.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/http_get.h"
#include "cli/local_cluster.h"
#include "cluster/config.h"
#include "net/cert_files.h"
#include "server/driver.h"

namespace maroon::cli {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using namespace local;

namespace {

constexpr auto kRequestTimeout = std::chrono::milliseconds(2000);

// What one node says of the group (its /v1/status).
struct NodeView {
  uint32_t id = 0;
  bool reachable = false;
  std::string role;
  uint64_t membership_epoch = 0;
  std::vector<uint32_t> members;
  bool serving = false;
  bool leaving = false;
  uint64_t applied_epoch = 0;
  std::string error;
};

const char* token() {
  const char* t = std::getenv("MAROON_TOKEN");
  return t != nullptr ? t : "";
}

NodeView view_of(const cluster::NodeEntry& n, boost::asio::ssl::context* tls) {
  NodeView v;
  v.id = n.id;
  Result<HttpResponse> r = http_get(n.host, n.http_port, "/v1/status", kProbeTimeout, tls, token());
  if (!r) {
    v.error = r.status().message();
    return v;
  }
  json::error_code ec;
  json::value body = json::parse(r->body, ec);
  const json::object* o = ec ? nullptr : body.if_object();
  if (o == nullptr) {
    v.error = fmt::format("HTTP {}: not a status", r->status);
    return v;
  }
  v.reachable = true;
  if (const auto* role = o->if_contains("role"); role && role->is_string()) {
    v.role = std::string(role->get_string());
  }
  if (const auto* s = o->if_contains("serving"); s && s->is_bool()) v.serving = s->get_bool();
  if (const auto* a = o->if_contains("applied_epoch"); a && a->is_number()) {
    v.applied_epoch = a->to_number<uint64_t>();
  }
  if (const auto* m = o->if_contains("membership"); m && m->is_object()) {
    const json::object& mo = m->get_object();
    if (const auto* e = mo.if_contains("epoch"); e && e->is_number()) {
      v.membership_epoch = e->to_number<uint64_t>();
    }
    if (const auto* l = mo.if_contains("leaving"); l && l->is_bool()) v.leaving = l->get_bool();
    if (const auto* ids = mo.if_contains("members"); ids && ids->is_array()) {
      for (const json::value& id : ids->get_array()) {
        if (id.is_number()) v.members.push_back(id.to_number<uint32_t>());
      }
    }
  }
  return v;
}

std::vector<NodeView> view_all(const cluster::ClusterConfig& c, boost::asio::ssl::context* tls) {
  std::vector<NodeView> out;
  for (const cluster::NodeEntry& n : c.nodes) out.push_back(view_of(n, tls));
  return out;
}

// The newest membership config any reachable node reports.
uint64_t newest_epoch(const std::vector<NodeView>& views) {
  uint64_t e = 0;
  for (const NodeView& v : views) {
    if (v.reachable) e = std::max(e, v.membership_epoch);
  }
  return e;
}

std::string ids_text(const std::vector<uint32_t>& ids) {
  std::string out;
  for (uint32_t id : ids) out += fmt::format("{}{}", out.empty() ? "" : " ", id);
  return out;
}

json::object address_json(const cluster::NodeEntry& n) {
  json::object a;
  a["id"] = n.id;
  a["host"] = n.host;
  a["peer_port"] = n.peer_port;
  a["http_port"] = n.http_port;
  a["resp_port"] = n.resp_port;
  a["native_port"] = n.native_port;
  return a;
}

class Change {
 public:
  Change(const char* what, fs::path dir, double timeout_seconds)
      : what_(what), dir_(std::move(dir)), timeout_(timeout_seconds) {}

  int fail(const std::string& message) const {
    std::fprintf(stderr, "maroon cluster %s: %s\n", what_, message.c_str());
    return 1;
  }

  Status load() {
    Result<cluster::ClusterConfig> c = cluster::load_cluster_config((dir_ / kConfigFile).string());
    if (!c) return c.status();
    config_ = std::move(c).value();
    auto tls = cluster_http_tls(config_);
    if (!tls) return tls.status();
    tls_ = std::move(tls).value();
    return Status::ok();
  }

  cluster::ClusterConfig& config() { return config_; }

  // The group as the file lists it must be the group the cluster runs: the
  // commands change it from there.
  Result<uint64_t> current_epoch() {
    std::vector<NodeView> views = view_all(config_, tls_.get());
    const uint64_t epoch = newest_epoch(views);
    size_t reachable = 0;
    for (const NodeView& v : views) reachable += v.reachable ? 1 : 0;
    if (reachable == 0) {
      return unavailable("no node of the cluster answers its HTTP port: start it first "
                         "(maroon cluster up --dir " + dir_.string() + ")");
    }
    if (epoch != config_.membership_epoch) {
      return invalid_argument(fmt::format(
          "{} describes membership config {}, but the cluster is in config {}: a change was made "
          "without rewriting the file (an interrupted command?); fix the file's node list and "
          "[membership] epoch first",
          (dir_ / kConfigFile).string(), config_.membership_epoch, epoch));
    }
    return epoch;
  }

  // A free id: above every id used or removed (ids are never reused).
  Result<uint32_t> new_node_id() const {
    uint32_t top = 0;
    for (const cluster::NodeEntry& n : config_.nodes) top = std::max(top, n.id);
    for (uint32_t id : config_.removed_nodes) top = std::max(top, id);
    if (top >= cluster::node_id_max) {
      return invalid_argument(fmt::format("node ids run to {}; none is free", cluster::node_id_max));
    }
    return top + 1;
  }

  // A new node entry on free ports, its certificate made with the cluster's
  // CA (DIR/tls/ca.key, as `cluster up` left it).
  Result<cluster::NodeEntry> new_node(uint32_t id) {
    cluster::NodeEntry n;
    n.id = id;
    n.host = config_.nodes.front().host;
    auto ports = pick_free_ports(kPortsPerNode);
    if (!ports) return ports.status();
    n.peer_port = (*ports)[0];
    n.http_port = (*ports)[1];
    n.resp_port = (*ports)[2];
    n.native_port = (*ports)[3];
    n.data_dir = (dir_ / fmt::format("node-{}", id)).string();
    // Made here, exclusively: a second command picking the same id at the
    // same time fails here, and an undo removes only what this one made.
    std::error_code ec;
    if (!fs::create_directory(n.data_dir, ec)) {
      return invalid_argument(fmt::format("{} {}: move it away first, or run one membership "
                                          "command at a time",
                                          n.data_dir, ec ? ec.message() : "exists already"));
    }
    joiner_dir_ = n.data_dir;
    fs::permissions(n.data_dir, fs::perms::owner_all, ec);
    if (config_.peer_tls()) {
      auto who = net::issue_cert_files(config_.peer_tls_dir, net::PeerKind::kNode, id,
                                       config_.peer_tls_dir, net::ca_days_default);
      if (!who) {
        return Status(who.status().code(),
                      fmt::format("a certificate for node {} from the CA in {}: {}", id,
                                  config_.peer_tls_dir, who.status().message()));
      }
    }
    return n;
  }

  // Starts the joiner with a config of the group it joins (itself included).
  Status start_joiner(const std::vector<cluster::NodeEntry>& group, const cluster::NodeEntry& n,
                      Member& m, const std::string& bootstrap_from) {
    cluster::ClusterConfig join = config_;
    join.path.clear();
    join.nodes = group;
    join_config_ = dir_ / fmt::format("{}.join-{}", kConfigFile, n.id);
    if (Status s = cluster::validate_cluster_config(join); !s) return s;
    if (Status s = write_file_atomically(join_config_, cluster::format_cluster_config(join)); !s) {
      return s;
    }
    for (const Member& x : members_of(join, dir_)) {
      if (x.kind == "node" && x.id == n.id) m = x;
    }
    MAROON_ASSERT(m.kind == "node" && m.id == n.id);
    auto pid = spawn(self_exe(), m, join_config_, false, bootstrap_from, /*join=*/true);
    if (!pid) return pid.status();
    m.pid = *pid;
    if (Status s = write_file_atomically(m.pid_file, fmt::format("{}\n", m.pid)); !s) return s;
    std::printf("started node %u (pid %d) to join, log %s\n", n.id, m.pid, m.log.c_str());
    return Status::ok();
  }

  // Waits until the joiner answers its status page (it started), or says
  // why not (it exited: the end of its log).
  Status wait_started(Member& m) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout_));
    while (Clock::now() < deadline) {
      int st = 0;
      if (::waitpid(m.pid, &st, WNOHANG) == m.pid) {
        m.pid = 0;
        return unavailable(fmt::format("the new node {} {}; the end of {}:\n{}", m.id,
                                       describe_exit(st), m.log.string(),
                                       log_tail(m.log, m.log_start, kLogTailLines)));
      }
      probe(m, tls_.get());
      if (m.waiting_for.starts_with("HTTP")) return Status::ok();  // it answers
      std::this_thread::sleep_for(kPollInterval);
    }
    return unavailable(fmt::format("the new node {} did not answer within {:.0f} s: {}", m.id,
                                   timeout_, m.waiting_for));
  }

  // A change that did not happen: its joiner stopped, its files removed.
  void undo_joiner(Member& m) {
    if (m.pid > 0) {
      std::vector<Member> started{m};
      stop_started(started);
    }
    std::error_code ec;
    if (!join_config_.empty()) fs::remove(join_config_, ec);
    if (!joiner_dir_.empty()) fs::remove_all(joiner_dir_, ec);
    if (m.id != 0) std::printf("stopped node %u and removed its directory\n", m.id);
  }

  enum class Outcome { kCommitted, kRefused, kUnknown };
  struct ChangeResult {
    Outcome outcome;
    std::string message;
  };

  // Asks the primary for the group `members` until a node reports it
  // committed. The request is idempotent (VR runs request e+1 of the
  // membership client once), so it is asked again every 2 s, and after a
  // view change, until then. kUnknown: the primary accepted it, and no
  // node reported it committed in time: it may still commit.
  ChangeResult change_to(uint64_t expect, const std::vector<cluster::NodeEntry>& members,
                    const std::vector<cluster::NodeEntry>& nodes, Member* joiner) {
    json::object body;
    body["expect_epoch"] = expect;
    json::array list;
    for (const cluster::NodeEntry& n : members) list.push_back(address_json(n));
    body["members"] = std::move(list);
    const std::string text = json::serialize(body);
    std::vector<uint32_t> want;
    for (const cluster::NodeEntry& m : members) want.push_back(m.id);
    std::sort(want.begin(), want.end());
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout_));
    std::string last_error = "no primary found";
    bool accepted = false;
    // A POST whose answer was lost may have reached the primary.
    bool maybe_asked = false;
    auto next_ask = Clock::now();
    auto next_progress = Clock::now() + std::chrono::seconds(1);
    // What the nodes report: committed, another change won, or nothing yet.
    auto look = [&]() -> std::optional<ChangeResult> {
      for (const cluster::NodeEntry& n : nodes) {
        NodeView v = view_of(n, tls_.get());
        if (!v.reachable || v.membership_epoch <= expect) continue;
        if (v.membership_epoch == expect + 1 && v.members == want) {
          return ChangeResult{Outcome::kCommitted, ""};
        }
        if (v.membership_epoch == expect + 1) {
          return ChangeResult{Outcome::kRefused,
                         fmt::format("the group moved to membership config {} with members {}, "
                                     "not the change asked: another change won; look again",
                                     v.membership_epoch, ids_text(v.members))};
        }
        // Later changes on top: whether this one was among them is not known here.
        return ChangeResult{Outcome::kUnknown,
                       fmt::format("the group is already in membership config {} (members {}): "
                                   "other changes followed, and node {} cannot tell whether this "
                                   "one committed",
                                   v.membership_epoch, ids_text(v.members), n.id)};
      }
      return std::nullopt;
    };
    while (Clock::now() < deadline) {
      if (auto seen = look()) return *seen;
      if (joiner != nullptr && joiner->pid > 0) {
        int st = 0;
        if (::waitpid(joiner->pid, &st, WNOHANG) == joiner->pid) {
          joiner->pid = 0;
          const std::string why = fmt::format("the new node {} {}; the end of {}:\n{}",
                                              joiner->id, describe_exit(st), joiner->log.string(),
                                              log_tail(joiner->log, joiner->log_start,
                                                       kLogTailLines));
          if (!accepted && !maybe_asked) return ChangeResult{Outcome::kRefused, why};
          last_error = why;
        }
      }
      if (Clock::now() >= next_ask) {
        for (const cluster::NodeEntry& n : nodes) {
          NodeView v = view_of(n, tls_.get());
          if (!v.reachable || v.role != "primary") continue;
          next_ask = Clock::now() + std::chrono::seconds(2);
          Result<HttpResponse> r = http_post(n.host, n.http_port, "/v1/admin/members",
                                             kRequestTimeout, tls_.get(), token(), text);
          if (!r) {
            last_error = fmt::format("node {}: {}", n.id, r.status().message());
            maybe_asked = true;
          } else if (r->status == 202) {
            if (!accepted) std::printf("asked node %u (the primary) for the change\n", n.id);
            accepted = true;
          } else {
            last_error = fmt::format("node {}: HTTP {}: {}", n.id, r->status, r->body);
            // The group moved on (perhaps by this very change): look again.
            const bool moved = r->body.find("the group is in config") != std::string::npos;
            // Refusals that waiting cannot fix: a bad request, no permission.
            if (!accepted && !maybe_asked && !moved &&
                (r->status == 400 || r->status == 401 || r->status == 403)) {
              return ChangeResult{Outcome::kRefused, last_error};
            }
          }
          break;
        }
      }
      if (Clock::now() >= next_progress) {
        std::printf("waiting: %s\n", accepted ? "for the change to commit" : last_error.c_str());
        std::fflush(stdout);
        next_progress += std::chrono::seconds(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (auto seen = look()) return *seen;
    if (accepted || maybe_asked) {
      return ChangeResult{Outcome::kUnknown,
                     fmt::format("the primary {} the change, but no node reported it "
                                 "committed within {:.0f} s ({}); it may still commit",
                                 accepted ? "accepted" : "may have received",
                                 timeout_, last_error)};
    }
    return ChangeResult{Outcome::kRefused,
                   fmt::format("not asked within {:.0f} s: {}", timeout_, last_error)};
  }

  Status rewrite(std::vector<cluster::NodeEntry> nodes, uint64_t epoch, std::vector<uint32_t> removed) {
    cluster::ClusterConfig next = config_;
    next.nodes = std::move(nodes);
    std::sort(next.nodes.begin(), next.nodes.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    next.membership_epoch = epoch;
    for (uint32_t id : removed) next.removed_nodes.push_back(id);
    next.path.clear();
    if (Status s = cluster::validate_cluster_config(next); !s) return s;
    const fs::path path = dir_ / kConfigFile;
    if (Status s = write_file_atomically(path, cluster::format_cluster_config(next)); !s) return s;
    std::printf("rewrote %s: membership config %llu, nodes %zu\n", path.c_str(),
                static_cast<unsigned long long>(epoch), next.nodes.size());
    return Status::ok();
  }

  // DIR/cluster.toml.leaving-<id>: the config as it was, for restarting a
  // removed node until it retired.
  fs::path leaving_config(uint32_t id) const {
    return dir_ / fmt::format("{}.leaving-{}", kConfigFile, id);
  }
  Status keep_leaving_config(uint32_t id) const {
    cluster::ClusterConfig old = config_;
    old.path.clear();
    return write_file_atomically(leaving_config(id), cluster::format_cluster_config(old));
  }
  void drop_leaving_config(uint32_t id) const {
    std::error_code ec;
    fs::remove(leaving_config(id), ec);
  }

  // The node's process if it runs now (before the change).
  std::optional<pid_t> running_pid(uint32_t id) const {
    for (const Member& x : members_of(config_, dir_)) {
      if (x.kind != "node" || x.id != id) continue;
      std::optional<pid_t> pid = read_pid_file(x.pid_file);
      if (pid && is_alive(*pid) && is_maroon_member(*pid)) return pid;
    }
    return std::nullopt;
  }

  // Waits for a removed node that ran to hand over and exit (it exits 0
  // once retired, leaving its data directory marked REMOVED).
  void wait_retired(const cluster::NodeEntry& n, std::optional<pid_t> pid) {
    Member m;
    for (Member& x : members_of(config_, dir_)) {
      if (x.kind == "node" && x.id == n.id) m = x;
    }
    MAROON_ASSERT(m.kind == "node" && m.id == n.id);
    std::error_code ec;
    if (!pid) {
      std::printf("node %u was not running: it never hands over. If it comes back, `maroon "
                  "cluster start --dir %s --id %u` starts it to hand over and retire; else its "
                  "directory %s is no longer used\n",
                  n.id, dir_.c_str(), n.id, n.data_dir.c_str());
      fs::remove(m.pid_file, ec);
      return;
    }
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout_));
    while (Clock::now() < deadline && is_alive(*pid)) {
      std::this_thread::sleep_for(kPollInterval);
    }
    if (is_alive(*pid)) {
      std::printf("node %u (pid %d) has not retired within %.0f s: the new group does not yet "
                  "hold everything it held. It stops on its own once it does (restarted, it "
                  "starts with `maroon cluster start --id %u`); its log: %s\n",
                  n.id, *pid, timeout_, n.id, m.log.c_str());
      return;
    }
    fs::remove(m.pid_file, ec);
    if (fs::exists(fs::path(n.data_dir) / server::Driver::kRemovedMarker, ec)) {
      drop_leaving_config(n.id);
      std::printf("node %u handed over and retired (pid %d exited); %s is no longer used\n", n.id,
                  *pid, n.data_dir.c_str());
    } else {
      std::printf("node %u (pid %d) exited before it retired (`maroon cluster start --dir %s "
                  "--id %u` starts it again to hand over); its log: %s\n",
                  n.id, *pid, dir_.c_str(), n.id, m.log.c_str());
    }
  }

  bool wait_joined(Member& m) {
    std::vector<Member> ms{m};
    ms.front().serving = false;
    const bool ok = wait_serving(ms, tls_.get(), timeout_, what_);
    if (ok) std::printf("node %u serves\n", m.id);
    // It read the file at its start; restarts read cluster.toml.
    std::error_code ec;
    fs::remove(join_config_, ec);
    return ok;
  }


 private:
  const char* what_;
  fs::path dir_;
  double timeout_;
  cluster::ClusterConfig config_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  fs::path join_config_;
  std::string joiner_dir_;
};

// add (remove_id 0), remove (add false) or replace.
int run_change(const char* what, const MembershipChangeOptions& o, bool add, uint32_t remove_id) {
  Change change(what, fs::absolute(o.dir).lexically_normal(), o.timeout_seconds);
  if (Status s = change.load(); !s) return change.fail(s.message());
  cluster::ClusterConfig& c = change.config();
  if (remove_id != 0 && c.node(remove_id) == nullptr) {
    return change.fail(fmt::format("{} has no node {}", c.path, remove_id));
  }
  std::vector<cluster::NodeEntry> stay;
  for (const cluster::NodeEntry& n : c.nodes) {
    if (n.id != remove_id) stay.push_back(n);
  }
  const size_t size = stay.size() + (add ? 1 : 0);
  if (size < 2) return change.fail("a group keeps at least 2 nodes (one node alone is maroon dev)");
  if (size > cluster::nodes_max) {
    return change.fail(fmt::format("a group has at most {} nodes", cluster::nodes_max));
  }
  // A majority of the new group must be current members, or it could not
  // work at once (the nodes refuse such a change too).
  if (stay.size() < size / 2 + 1) {
    return change.fail(fmt::format(
        "a group of {} cannot lose node {} and gain a new one in one change (a majority of the "
        "new group must be current members): add a node first, then remove node {}",
        c.nodes.size(), remove_id, remove_id));
  }
  auto epoch = change.current_epoch();
  if (!epoch) return change.fail(epoch.status().message());
  const std::optional<pid_t> leaving_pid =
      remove_id != 0 ? change.running_pid(remove_id) : std::nullopt;

  std::vector<cluster::NodeEntry> next = stay;
  Member joiner;
  if (add) {
    auto id = change.new_node_id();
    if (!id) return change.fail(id.status().message());
    auto n = change.new_node(*id);
    if (!n) {
      change.undo_joiner(joiner);
      return change.fail(n.status().message());
    }
    next.push_back(*n);
    if (Status s = change.start_joiner(next, *n, joiner, o.bootstrap_from); !s) {
      change.undo_joiner(joiner);
      return change.fail(s.message());
    }
    if (Status s = change.wait_started(joiner); !s) {
      change.undo_joiner(joiner);
      return change.fail(s.message());
    }
  }
  std::vector<uint32_t> ids;
  for (const cluster::NodeEntry& n : next) ids.push_back(n.id);
  std::sort(ids.begin(), ids.end());
  std::printf("membership config %llu -> %llu: members %s\n",
              static_cast<unsigned long long>(*epoch), static_cast<unsigned long long>(*epoch + 1),
              ids_text(ids).c_str());
  if (remove_id != 0) {
    // Until it retired, `maroon cluster start --id N` starts the removed
    // node from this copy of the config (it hands over, then exits).
    if (Status s = change.keep_leaving_config(remove_id); !s) {
      if (add) change.undo_joiner(joiner);
      return change.fail(s.message());
    }
  }
  auto result = change.change_to(*epoch, next, c.nodes, add ? &joiner : nullptr);
  if (result.outcome == Change::Outcome::kRefused) {
    if (add) change.undo_joiner(joiner);
    if (remove_id != 0) change.drop_leaving_config(remove_id);
    return change.fail(result.message);
  }
  if (result.outcome == Change::Outcome::kUnknown) {
    return change.fail(fmt::format(
        "{}. Nothing was undone{}: once `maroon status --config {}` shows membership config {}, "
        "rewrite the file to the nodes {} with [membership] epoch = {}",
        result.message, add ? " (the new node keeps running)" : "", c.path, *epoch + 1,
        ids_text(ids), *epoch + 1));
  }
  std::printf("committed: membership config %llu, members %s\n",
              static_cast<unsigned long long>(*epoch + 1), ids_text(ids).c_str());
  std::vector<uint32_t> removed;
  if (remove_id != 0) removed.push_back(remove_id);
  if (Status s = change.rewrite(next, *epoch + 1, removed); !s) {
    return change.fail(fmt::format(
        "the change committed, but the config file was not rewritten: {}. Write it by hand: the "
        "nodes {} and [membership] epoch = {}",
        s.message(), ids_text(ids), *epoch + 1));
  }
  int rc = 0;
  if (add && !change.wait_joined(joiner)) rc = 1;
  if (remove_id != 0) change.wait_retired(*c.node(remove_id), leaving_pid);
  return rc;
}

}  // namespace

int run_cluster_add_node(const MembershipChangeOptions& o) {
  return run_change("add-node", o, true, 0);
}

int run_cluster_remove_node(const MembershipChangeOptions& o) {
  return run_change("remove-node", o, false, o.id);
}

int run_cluster_replace_node(const MembershipChangeOptions& o) {
  return run_change("replace-node", o, true, o.id);
}

}  // namespace maroon::cli
