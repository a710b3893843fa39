// `maroon status`: one node's /v1/status, or with --config a table of every
// node of a cluster, the primary, and a warning if replicas have diverged.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/http_get.h"
#include "cluster/config.h"

namespace maroon::cli {

namespace json = boost::json;

namespace {

constexpr std::chrono::milliseconds kSingleNodeTimeout{10000};
// Short: a down node must not hold up the table.
constexpr std::chrono::milliseconds kClusterNodeTimeout{1000};

// A field of a node's status as printed; "-" when missing.
std::string text(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return "-";
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_bool()) return v->get_bool() ? "true" : "false";
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  return json::serialize(*v);
}

std::optional<uint64_t> number(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<uint64_t>(v->get_int64());
  return std::nullopt;
}

// A node's "quorum" field; nullopt if it does not report one.
std::optional<bool> quorum_of(const json::object& o) {
  const json::value* v = o.if_contains("quorum");
  if (v == nullptr || !v->is_bool()) return std::nullopt;
  return v->get_bool();
}

struct NodeStatus {
  uint32_t id = 0;
  bool answered = false;  // it answered with a JSON object
  bool serving = false;
  json::object fields;
  std::string error;  // why it did not answer
};

NodeStatus query(const cluster::NodeEntry& n, boost::asio::ssl::context* tls,
                 const std::string& token) {
  NodeStatus s;
  s.id = n.id;
  Result<HttpResponse> r =
      http_get(n.host, n.http_port, "/v1/status", kClusterNodeTimeout, tls, token);
  if (!r.is_ok()) {
    s.error = r.status().message();
    return s;
  }
  if (r->status == 401) {
    s.error = "it asks for credentials: give --token (or set MAROON_TOKEN)";
    return s;
  }
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (ec || !v.is_object()) {
    s.error = fmt::format("HTTP {}, not a JSON object", r->status);
    return s;
  }
  s.answered = true;
  s.fields = std::move(v.as_object());
  const json::value* serving = s.fields.if_contains("serving");
  s.serving = r->status == 200 && serving != nullptr && serving->is_bool() && serving->get_bool();
  return s;
}

int run_single_node_status(const ClientOptions& o) {
  Result<HttpResponse> r =
      http_get(o.host, o.http_port, "/v1/status", kSingleNodeTimeout, nullptr, o.token);
  if (!r.is_ok()) {
    std::fprintf(stderr, "maroon: %s:%u: %s\n", o.host.c_str(), o.http_port,
                 r.status().message().c_str());
    return 1;
  }
  const int code = r->status;
  if (code == 401) {
    std::fprintf(stderr, "maroon: %s:%u asks for credentials: give --token (or set MAROON_TOKEN)\n",
                 o.host.c_str(), o.http_port);
    return 1;
  }
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (ec || !v.is_object()) {
    std::printf("HTTP %d\n%s\n", code, r->body.c_str());
    return code == 200 ? 0 : 1;
  }
  const std::optional<bool> quorum = quorum_of(v.as_object());
  std::printf("node %s:%u: %s%s\n", o.host.c_str(), o.http_port,
              code == 200 ? "serving" : "not serving",
              quorum == false ? ", NO QUORUM (requests are refused)" : "");
  for (const auto& [k, val] : v.as_object()) {
    std::printf("  %-18s %s\n", std::string(k).c_str(), json::serialize(val).c_str());
  }
  return code == 200 && quorum != false ? 0 : 1;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); i++) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); i++) {
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}  ", row[i], widths[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

int run_cluster_status(const std::string& config_path, const std::string& token) {
  Result<cluster::ClusterConfig> config = cluster::load_cluster_config(config_path);
  if (!config.is_ok()) {
    std::fprintf(stderr, "maroon status: %s\n", config.status().message().c_str());
    return 1;
  }
  Result<std::shared_ptr<boost::asio::ssl::context>> tls = cluster_http_tls(*config);
  if (!tls.is_ok()) {
    std::fprintf(stderr, "maroon status: %s\n", tls.status().message().c_str());
    return 1;
  }
  std::vector<std::future<NodeStatus>> pending;
  for (const cluster::NodeEntry& n : config->nodes) {
    pending.push_back(std::async(std::launch::async, [&n, &tls, &token] { return query(n, tls->get(), token); }));
  }
  std::vector<NodeStatus> nodes;
  for (auto& p : pending) nodes.push_back(p.get());

  std::vector<std::vector<std::string>> rows = {
      {"id", "state", "quorum", "role", "view", "applied_epoch", "commit_epoch", "lag",
       "applied_txs", "held_txs", "offsets", "txs_behind", "state_hash", "detail"}};
  // A node's offsets: the sum over ranges of its durable offset, i.e. how
  // many txs it holds durably; txs_behind compares it with the best node.
  auto offsets_sum = [](const json::object& f) -> std::optional<uint64_t> {
    const json::value* v = f.if_contains("offsets");
    if (v == nullptr || !v->is_object()) return std::nullopt;
    uint64_t sum = 0;
    for (const auto& kv : v->as_object()) {
      if (kv.value().is_uint64()) sum += kv.value().as_uint64();
      if (kv.value().is_int64()) sum += static_cast<uint64_t>(kv.value().as_int64());
    }
    return sum;
  };
  uint64_t best = 0;
  for (const NodeStatus& s : nodes) {
    if (s.answered) best = std::max(best, offsets_sum(s.fields).value_or(0));
  }
  size_t serving = 0;
  size_t no_quorum = 0;
  for (const NodeStatus& s : nodes) {
    if (!s.answered) {
      rows.push_back({std::to_string(s.id), "down", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                      "-", "-", s.error});
      continue;
    }
    if (s.serving) serving++;
    const json::object& f = s.fields;
    std::optional<uint64_t> applied = number(f, "applied_epoch"),
                            committed = number(f, "commit_epoch");
    std::string lag = applied && committed && *committed >= *applied
                          ? std::to_string(*committed - *applied)
                          : "-";
    std::string detail = text(f, "detail");
    const std::optional<bool> quorum = quorum_of(f);
    if (quorum == false) {
      no_quorum++;
      const std::string why = text(f, "unavailable_reason");
      if (why != "-" && !why.empty())
        detail = detail == "-" || detail.empty() ? why : detail + "; " + why;
    }
    const std::optional<uint64_t> sum = offsets_sum(f);
    rows.push_back({std::to_string(s.id), s.serving ? "up" : "not-serving",
                    quorum ? (*quorum ? "yes" : "NO") : "-", text(f, "role"), text(f, "view"),
                    text(f, "applied_epoch"), text(f, "commit_epoch"), lag, text(f, "applied_txs"),
                    text(f, "held_txs"), sum ? std::to_string(*sum) : "-",
                    sum ? std::to_string(best - *sum) : "-", text(f, "state_hash"),
                    detail == "-" ? "" : detail});
  }
  std::printf("cluster %llu (%s): %zu nodes, %zu serving, tolerates %zu crashed\n",
              static_cast<unsigned long long>(config->cluster_id), config_path.c_str(),
              nodes.size(), serving, config->f());
  print_table(rows);
  if (no_quorum > 0) {
    std::printf(
        "WARNING: no quorum at %zu live node%s: writes and ordered reads there are refused "
        "(\"no quorum\") or time out (\"outcome unknown\") until %zu of the %zu nodes "
        "work together again\n",
        no_quorum, no_quorum == 1 ? "" : "s", nodes.size() / 2 + 1, nodes.size());
  }

  // The primary: a node that says it is one (the highest view wins), else
  // what the node in the highest view believes.
  const NodeStatus* claimed = nullptr;
  const NodeStatus* newest = nullptr;
  for (const NodeStatus& s : nodes) {
    if (!s.answered) continue;
    uint64_t view = number(s.fields, "view").value_or(0);
    if (text(s.fields, "role") == "primary" &&
        (claimed == nullptr || view > number(claimed->fields, "view").value_or(0))) {
      claimed = &s;
    }
    if (number(s.fields, "primary") &&
        (newest == nullptr || view > number(newest->fields, "view").value_or(0))) {
      newest = &s;
    }
  }
  if (claimed != nullptr) {
    std::printf("primary: node %u, view %s\n", claimed->id, text(claimed->fields, "view").c_str());
  } else if (newest != nullptr) {
    std::printf("primary: node %s, view %s (as node %u sees it)\n",
                text(newest->fields, "primary").c_str(), text(newest->fields, "view").c_str(),
                newest->id);
  } else {
    std::printf("primary: none known\n");
  }

  // The group: the newest membership config a node reports (docs/membership.md).
  const json::object* group = nullptr;
  uint64_t group_epoch = 0;
  for (const NodeStatus& s : nodes) {
    const json::value* m = s.answered ? s.fields.if_contains("membership") : nullptr;
    if (m == nullptr || !m->is_object()) continue;
    const json::value* e = m->get_object().if_contains("epoch");
    if (e == nullptr || !e->is_number()) continue;
    const uint64_t epoch = e->to_number<uint64_t>();
    if (group == nullptr || epoch > group_epoch) {
      group = &m->get_object();
      group_epoch = epoch;
    }
  }
  if (group != nullptr) {
    std::string ids;
    if (const json::value* list = group->if_contains("members"); list && list->is_array()) {
      for (const json::value& id : list->get_array()) ids += " " + json::serialize(id);
    }
    std::printf("group: membership config %llu, members%s\n",
                static_cast<unsigned long long>(group_epoch), ids.c_str());
    if (group_epoch != config->membership_epoch) {
      std::printf("WARNING: %s describes membership config %llu: rewrite it to the group above "
                  "(docs/membership.md)\n",
                  config->path.c_str(), static_cast<unsigned long long>(config->membership_epoch));
    }
  }

  // Nodes that applied the same epochs must hold the same state.
  std::map<uint64_t, std::map<std::string, std::vector<uint32_t>>> hashes;
  for (const NodeStatus& s : nodes) {
    std::optional<uint64_t> epoch = number(s.fields, "applied_epoch");
    const json::value* hash = s.fields.if_contains("state_hash");
    if (!s.answered || !epoch || hash == nullptr || !hash->is_string()) continue;
    hashes[*epoch][std::string(hash->get_string())].push_back(s.id);
  }
  bool diverged = false;
  for (const auto& [epoch, by_hash] : hashes) {
    if (by_hash.size() < 2) continue;
    diverged = true;
    std::string which;
    for (const auto& [hash, ids] : by_hash) {
      for (uint32_t id : ids)
        which += fmt::format("{}node {} {}", which.empty() ? "" : ", ", id, hash);
    }
    std::printf("WARNING: nodes at applied_epoch %llu have different state hashes: %s\n",
                static_cast<unsigned long long>(epoch), which.c_str());
  }
  return serving == nodes.size() && !diverged && no_quorum == 0 ? 0 : 1;
}

}  // namespace

int run_status(const StatusOptions& o) {
  if (!o.config.empty()) return run_cluster_status(o.config, o.client.token);
  return run_single_node_status(o.client);
}

}  // namespace maroon::cli
