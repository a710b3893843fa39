#include "cluster/config.h"

// toml++ in header-only mode, without exceptions: parse errors are values.
// Only this file includes it.
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#include <fmt/format.h>
#include <toml++/toml.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <tuple>
#include <utility>

namespace maroon::cluster {

namespace {

constexpr uint64_t kTomlIntegerMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

std::string display_name(const std::string& path) {
  return path.empty() ? std::string("cluster config") : path;
}

// A value as it appears in an error message.
std::string describe(const toml::node& n) {
  if (auto s = n.as_string()) return fmt::format("\"{}\"", s->get());
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (n.is_floating_point()) return fmt::format("{} (a float)", n.as_floating_point()->get());
  if (auto b = n.as_boolean()) return b->get() ? "true" : "false";
  if (n.is_table()) return "a table";
  if (n.is_array()) return "an array";
  return "a date or time";
}

std::string join(std::initializer_list<std::string_view> names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

// Reads the TOML document into a ClusterConfig. Checks that every key is
// known and every value fits its C++ type; validate_cluster_config checks the
// rest, so a config built in code gets the same checks.
class Reader {
 public:
  explicit Reader(std::string name) : name_(std::move(name)) {}

  Status error(std::string_view field, std::string_view what) const {
    return invalid_argument(fmt::format("{}: {}: {}", name_, field, what));
  }

  Status check_keys(const toml::table& t, std::string_view prefix,
                    std::initializer_list<std::string_view> known) const {
    for (const auto& [key, value] : t) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      return error(fmt::format("{}{}", prefix, key.str()),
                   fmt::format("unknown key (line {}); expected one of: {}",
                               key.source().begin.line, join(known)));
    }
    return Status::ok();
  }

  // An unsigned integer up to `max`; an absent optional key leaves `out` as it is.
  Status get_uint(const toml::table& t, std::string_view key, std::string_view field, uint64_t max,
                  bool required, uint64_t& out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return required ? error(field, "missing") : Status::ok();
    auto i = n->as_integer();
    if (i == nullptr || i->get() < 0 || static_cast<uint64_t>(i->get()) > max) {
      return error(field, fmt::format("expected an integer in 0..{}, got {}", max, describe(*n)));
    }
    out = static_cast<uint64_t>(i->get());
    return Status::ok();
  }

  template <typename T>
  Status get_uint_as(const toml::table& t, std::string_view key, std::string_view prefix,
                     bool required, T& out) const {
    uint64_t v = out;
    const std::string field = fmt::format("{}{}", prefix, key);
    uint64_t max = std::min<uint64_t>(std::numeric_limits<T>::max(), kTomlIntegerMax);
    if (Status s = get_uint(t, key, field, max, required, v); !s) return s;
    out = static_cast<T>(v);
    return Status::ok();
  }

  Status get_string(const toml::table& t, std::string_view key, std::string_view prefix,
                    bool required, std::string& out) const {
    const toml::node* n = t.get(key);
    const std::string field = fmt::format("{}{}", prefix, key);
    if (n == nullptr) return required ? error(field, "missing") : Status::ok();
    auto s = n->as_string();
    if (s == nullptr) return error(field, fmt::format("expected a string, got {}", describe(*n)));
    out = s->get();
    return Status::ok();
  }

  // `key` must be absent or an array of tables ([[key]]).
  Status get_table_array(const toml::table& t, std::string_view key,
                         const toml::array*& out) const {
    out = nullptr;
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::ok();
    auto a = n->as_array();
    if (a == nullptr || (!a->empty() && !a->is_array_of_tables())) {
      return error(key,
                   fmt::format("expected an array of tables ([[{}]]), got {}", key, describe(*n)));
    }
    out = a;
    return Status::ok();
  }

  Status read(const toml::table& root, const std::filesystem::path& base_dir,
              ClusterConfig& c) const {
    if (Status s = check_keys(root, "",
                              {"cluster_id", "settings", "peer_tls", "client_tls", "client_auth",
                               "client_limits", "snapshots", "backup", "membership", "nodes",
                               "gateways"});
        !s)
      return s;
    // Settings first: a cluster_id written below [settings] lands in it, and
    // "unknown key settings.cluster_id" says why better than "missing".
    if (const toml::node* n = root.get("settings")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("settings", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = read_settings(*t, c.settings); !s) return s;
    }
    if (Status s = get_uint_as(root, "cluster_id", "", true, c.cluster_id); !s) return s;
    if (const toml::node* n = root.get("peer_tls")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("peer_tls", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "peer_tls.", {"dir"}); !s) return s;
      if (Status s = get_string(*t, "dir", "peer_tls.", true, c.peer_tls_dir); !s) return s;
      if (c.peer_tls_dir.empty()) return error("peer_tls.dir", "must not be empty");
      if (std::filesystem::path(c.peer_tls_dir).is_relative()) {
        c.peer_tls_dir = (base_dir / c.peer_tls_dir).lexically_normal().string();
      }
    }
    if (const toml::node* n = root.get("client_auth")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("client_auth", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "client_auth.", {"users", "allow_anonymous"}); !s) return s;
      if (Status s = get_string(*t, "users", "client_auth.", false, c.client_users_path); !s)
        return s;
      if (!c.client_users_path.empty() &&
          std::filesystem::path(c.client_users_path).is_relative()) {
        c.client_users_path = (base_dir / c.client_users_path).lexically_normal().string();
      }
      if (const toml::node* a = t->get("allow_anonymous")) {
        auto b = a->as_boolean();
        if (b == nullptr) {
          return error("client_auth.allow_anonymous",
                       fmt::format("expected true or false, got {}", describe(*a)));
        }
        c.client_allow_anonymous = b->get();
      }
    }

    if (const toml::node* n = root.get("membership")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("membership", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "membership.", {"epoch", "removed"}); !s) return s;
      if (Status s = get_uint_as(*t, "epoch", "membership.", false, c.membership_epoch); !s)
        return s;
      if (const toml::node* r = t->get("removed")) {
        auto a = r->as_array();
        if (a == nullptr) {
          return error("membership.removed",
                       fmt::format("expected an array of node ids, got {}", describe(*r)));
        }
        for (const toml::node& id : *a) {
          auto i = id.as_integer();
          if (i == nullptr || i->get() < 1 || i->get() > node_id_max) {
            return error("membership.removed",
                         fmt::format("expected node ids in 1..{}, got {}", node_id_max,
                                     describe(id)));
          }
          c.removed_nodes.push_back(static_cast<uint32_t>(i->get()));
        }
      }
    }

    if (const toml::node* n = root.get("client_limits")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("client_limits", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "client_limits.",
                                {"max_clients", "max_clients_per_address", "buffer_mb"});
          !s)
        return s;
      struct Bound {
        const char* key;
        uint64_t min;
        uint64_t& out;
      };
      for (const Bound& b : {Bound{"max_clients", 16, c.client_max_clients},
                             Bound{"max_clients_per_address", 1, c.client_max_clients_per_address},
                             Bound{"buffer_mb", 32, c.client_buffer_mb}}) {
        const std::string field = fmt::format("client_limits.{}", b.key);
        if (Status s = get_uint(*t, b.key, field, uint64_t{1} << 20, false, b.out); !s) return s;
        if (t->get(b.key) != nullptr && b.out < b.min) {
          return error(field, fmt::format("expected an integer in {}..{}, got {}", b.min,
                                          uint64_t{1} << 20, b.out));
        }
      }
    }

    if (const toml::node* n = root.get("snapshots")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("snapshots", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "snapshots.", {"log_mb", "epochs", "kept"}); !s) return s;
      if (Status s = get_uint(*t, "log_mb", "snapshots.log_mb", uint64_t{1} << 30, false,
                              c.snapshot_log_mb);
          !s)
        return s;
      if (Status s = get_uint(*t, "epochs", "snapshots.epochs", uint64_t{1} << 40, false,
                              c.snapshot_epochs);
          !s)
        return s;
      if (Status s = get_uint(*t, "kept", "snapshots.kept", 100, false, c.snapshots_kept); !s)
        return s;
    }

    if (const toml::node* n = root.get("backup")) {
      auto t = n->as_table();
      if (t == nullptr) return error("backup", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "backup.",
                                {"store", "endpoint", "region", "access_key", "secret_key",
                                 "interval_s", "kept", "part_mb"});
          !s)
        return s;
      ClusterConfig::Backup& b = c.backup;
      for (auto [key, out] : {std::pair<std::string_view, std::string*>{"store", &b.store},
                              {"endpoint", &b.endpoint},
                              {"region", &b.region},
                              {"access_key", &b.access_key},
                              {"secret_key", &b.secret_key}}) {
        if (Status s = get_string(*t, key, "backup.", key == "store", *out); !s) return s;
      }
      if (Status s = get_uint(*t, "interval_s", "backup.interval_s", 86400 * 7, false,
                              b.interval_s);
          !s)
        return s;
      if (Status s = get_uint(*t, "kept", "backup.kept", 10000, false, b.kept); !s) return s;
      if (Status s = get_uint(*t, "part_mb", "backup.part_mb", 5120, false, b.part_mb); !s)
        return s;
      if (b.part_mb < 5) return error("backup.part_mb", "S3 needs parts of at least 5 MiB");
      if (b.store.empty()) return error("backup.store", "empty");
      // A relative directory is taken relative to the config's, as data_dir.
      if (b.store.find("://") == std::string::npos && b.store.front() != '/') {
        b.store = (base_dir / b.store).lexically_normal().string();
      }
    }

    if (const toml::node* n = root.get("client_tls")) {
      auto t = n->as_table();
      if (t == nullptr)
        return error("client_tls", fmt::format("expected a table, got {}", describe(*n)));
      if (Status s = check_keys(*t, "client_tls.", {"cert", "key", "client_ca"}); !s) return s;
      ClusterConfig::ClientTls& tls = c.client_tls;
      for (auto [key, required, out] :
           {std::tuple{"cert", true, &tls.cert}, std::tuple{"key", true, &tls.key},
            std::tuple{"client_ca", false, &tls.client_ca}}) {
        if (Status s = get_string(*t, key, "client_tls.", required, *out); !s) return s;
        if (required && out->empty()) {
          return error(fmt::format("client_tls.{}", key), "must not be empty");
        }
        if (!out->empty() && std::filesystem::path(*out).is_relative()) {
          *out = (base_dir / *out).lexically_normal().string();
        }
      }
    }

    const toml::array* nodes = nullptr;
    if (Status s = get_table_array(root, "nodes", nodes); !s) return s;
    if (nodes != nullptr) {
      for (size_t i = 0; i < nodes->size(); i++) {
        NodeEntry e;
        if (Status s =
                read_node(*(*nodes)[i].as_table(), fmt::format("nodes[{}].", i), base_dir, e);
            !s)
          return s;
        c.nodes.push_back(std::move(e));
      }
    }

    const toml::array* gateways = nullptr;
    if (Status s = get_table_array(root, "gateways", gateways); !s) return s;
    if (gateways != nullptr) {
      for (size_t i = 0; i < gateways->size(); i++) {
        GatewayEntry e;
        if (Status s = read_gateway(*(*gateways)[i].as_table(), fmt::format("gateways[{}].", i), e);
            !s)
          return s;
        c.gateways.push_back(std::move(e));
      }
    }
    return Status::ok();
  }

 private:
  Status read_settings(const toml::table& t, ClusterSettings& s) const {
    constexpr std::string_view p = "settings.";
    if (Status st = check_keys(t, p,
                               {"tick_ms", "lease_ms", "view_change_ticks", "send_queue_bytes_max",
                                "tx_retention_bytes_max", "unavailable_after_ms"});
        !st)
      return st;
    if (Status st = get_uint_as(t, "tick_ms", p, false, s.tick_ms); !st) return st;
    if (Status st = get_uint_as(t, "lease_ms", p, false, s.lease_ms); !st) return st;
    if (Status st = get_uint_as(t, "view_change_ticks", p, false, s.view_change_ticks); !st)
      return st;
    if (Status st = get_uint_as(t, "send_queue_bytes_max", p, false, s.send_queue_bytes_max); !st)
      return st;
    if (Status st = get_uint_as(t, "tx_retention_bytes_max", p, false, s.tx_retention_bytes_max);
        !st)
      return st;
    if (Status st = get_uint_as(t, "unavailable_after_ms", p, false, s.unavailable_after_ms); !st)
      return st;
    return Status::ok();
  }

  Status read_node(const toml::table& t, const std::string& p,
                   const std::filesystem::path& base_dir, NodeEntry& e) const {
    if (Status s = check_keys(
            t, p, {"id", "host", "peer_port", "http_port", "resp_port", "native_port", "data_dir"});
        !s)
      return s;
    if (Status s = get_uint_as(t, "id", p, true, e.id); !s) return s;
    if (Status s = get_string(t, "host", p, false, e.host); !s) return s;
    if (Status s = get_uint_as(t, "peer_port", p, true, e.peer_port); !s) return s;
    if (Status s = get_uint_as(t, "http_port", p, true, e.http_port); !s) return s;
    if (Status s = get_uint_as(t, "resp_port", p, true, e.resp_port); !s) return s;
    if (Status s = get_uint_as(t, "native_port", p, true, e.native_port); !s) return s;
    if (Status s = get_string(t, "data_dir", p, true, e.data_dir); !s) return s;
    if (!e.data_dir.empty() && std::filesystem::path(e.data_dir).is_relative()) {
      e.data_dir = (base_dir / e.data_dir).lexically_normal().string();
    }
    return Status::ok();
  }

  Status read_gateway(const toml::table& t, const std::string& p, GatewayEntry& e) const {
    if (Status s = check_keys(t, p, {"id", "host", "http_port", "resp_port", "native_port"}); !s)
      return s;
    if (Status s = get_uint_as(t, "id", p, true, e.id); !s) return s;
    if (Status s = get_string(t, "host", p, false, e.host); !s) return s;
    if (Status s = get_uint_as(t, "http_port", p, true, e.http_port); !s) return s;
    if (Status s = get_uint_as(t, "resp_port", p, true, e.resp_port); !s) return s;
    if (Status s = get_uint_as(t, "native_port", p, true, e.native_port); !s) return s;
    return Status::ok();
  }

  std::string name_;
};

Result<ClusterConfig> parse_named(std::string_view text, const std::string& base_dir,
                                  const std::string& path) {
  const std::string name = display_name(path);
  toml::parse_result parsed = toml::parse(text);
  if (!parsed) {
    const toml::parse_error& e = parsed.error();
    return invalid_argument(fmt::format("{}:{}:{}: malformed TOML: {}", name, e.source().begin.line,
                                        e.source().begin.column, e.description()));
  }
  std::error_code ec;
  std::filesystem::path base = std::filesystem::absolute(base_dir.empty() ? "." : base_dir, ec);
  if (ec)
    return invalid_argument(fmt::format("{}: cannot resolve {}: {}", name, base_dir, ec.message()));
  base = base.lexically_normal();

  ClusterConfig c;
  c.path = path;
  if (Status s = Reader(name).read(parsed.table(), base, c); !s) return s;
  if (Status s = validate_cluster_config(c); !s) return s;
  return c;
}

bool has_control_chars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto u = static_cast<unsigned char>(ch);
    return u < 0x20 || u == 0x7f;
  });
}

// A TOML basic string.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04X}", u);
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

}  // namespace

const NodeEntry* ClusterConfig::node(uint32_t id) const {
  for (const NodeEntry& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  // Only addresses, not names: a name may resolve anywhere.
  const std::string h(host);
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

bool ClusterConfig::loopback_only() const {
  for (const NodeEntry& n : nodes) {
    const bool loopback = is_loopback_host(n.host);
    if (!loopback) return false;
  }
  return true;
}

const GatewayEntry* ClusterConfig::gateway(uint32_t id) const {
  for (const GatewayEntry& g : gateways) {
    if (g.id == id) return &g;
  }
  return nullptr;
}

Result<ClusterConfig> parse_cluster_config(std::string_view toml_text,
                                           const std::string& base_dir) {
  return parse_named(toml_text, base_dir, "");
}

Result<ClusterConfig> load_cluster_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return io_error(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  std::string base_dir = std::filesystem::path(path).parent_path().string();
  return parse_named(text.str(), base_dir, path);
}

Status validate_cluster_config(const ClusterConfig& c) {
  const std::string name = display_name(c.path);
  auto fail = [&](std::string_view field, std::string_view what) {
    return invalid_argument(fmt::format("{}: {}: {}", name, field, what));
  };

  if (c.cluster_id == 0) return fail("cluster_id", "must not be 0");
  if (c.cluster_id > kTomlIntegerMax) {
    return fail("cluster_id",
                fmt::format("{} is above 2^63-1, the largest TOML integer", c.cluster_id));
  }

  if (c.membership_epoch > kTomlIntegerMax) {
    return fail("membership.epoch", "above 2^63-1, the largest TOML integer");
  }
  if (c.removed_nodes.size() > 64) return fail("membership.removed", "more than 64 ids");
  for (size_t i = 0; i < c.removed_nodes.size(); i++) {
    const uint32_t id = c.removed_nodes[i];
    if (id == 0 || id > node_id_max) {
      return fail("membership.removed", fmt::format("{} is outside 1..{}", id, node_id_max));
    }
    if (c.node(id) != nullptr) {
      return fail("membership.removed",
                  fmt::format("node {} is listed as a node and as removed", id));
    }
    for (size_t j = 0; j < i; j++) {
      if (c.removed_nodes[j] == id) {
        return fail("membership.removed", fmt::format("{} is listed twice", id));
      }
    }
  }

  const ClusterSettings& s = c.settings;
  if (s.tick_ms < 1 || s.tick_ms > tick_ms_max) {
    return fail("settings.tick_ms", fmt::format("{} is outside 1..{}", s.tick_ms, tick_ms_max));
  }
  if (s.lease_ms < lease_ticks_min * s.tick_ms || s.lease_ms > lease_ms_max) {
    return fail("settings.lease_ms",
                fmt::format("{} is outside {}..{} (at least {} ticks of {} ms)", s.lease_ms,
                            lease_ticks_min * s.tick_ms, lease_ms_max, lease_ticks_min, s.tick_ms));
  }
  if (s.view_change_ticks != 0 && (s.view_change_ticks < view_change_ticks_min ||
                                   s.view_change_ticks > view_change_ticks_max)) {
    return fail("settings.view_change_ticks",
                fmt::format("{} is neither 0 (the VR default) nor in {}..{}", s.view_change_ticks,
                            view_change_ticks_min, view_change_ticks_max));
  }
  if (s.send_queue_bytes_max < send_queue_bytes_min ||
      s.send_queue_bytes_max > send_queue_bytes_max_max) {
    return fail(
        "settings.send_queue_bytes_max",
        fmt::format("{} is outside {}..{} (32 MiB, the largest message, to 16 GiB)",
                    s.send_queue_bytes_max, send_queue_bytes_min, send_queue_bytes_max_max));
  }
  if (s.tx_retention_bytes_max < tx_retention_bytes_min ||
      s.tx_retention_bytes_max > tx_retention_bytes_max_max) {
    return fail("settings.tx_retention_bytes_max",
                fmt::format("{} is outside {}..{} (16 MiB to 1 TiB)", s.tx_retention_bytes_max,
                            tx_retention_bytes_min, tx_retention_bytes_max_max));
  }

  if (s.unavailable_after_ms != 0) {
    const uint64_t min = unavailable_after_ms_min(s);
    if (s.unavailable_after_ms < min || s.unavailable_after_ms > unavailable_after_ms_max) {
      return fail(
          "settings.unavailable_after_ms",
          fmt::format("{} is neither 0 (the default) nor in {}..{} (at least {} view-change "
                      "timeouts of {} ticks of {} ms, and at least {} ms)",
                      s.unavailable_after_ms, min, unavailable_after_ms_max,
                      unavailable_after_view_changes_min, effective_view_change_ticks(s), s.tick_ms,
                      unavailable_after_ms_floor));
    }
  }

  for (auto [field, value, min] :
       {std::tuple{"client_limits.max_clients", c.client_max_clients, uint64_t{16}},
        std::tuple{"client_limits.max_clients_per_address", c.client_max_clients_per_address,
                   uint64_t{1}},
        std::tuple{"client_limits.buffer_mb", c.client_buffer_mb, uint64_t{32}}}) {
    if (value != 0 && (value < min || value > (uint64_t{1} << 20))) {
      return fail(field, fmt::format("{} is outside {}..{}", value, min, uint64_t{1} << 20));
    }
  }
  if (c.snapshots_kept < 1 || c.snapshots_kept > 100) {
    return fail("snapshots.kept", fmt::format("{} is outside 1..100", c.snapshots_kept));
  }
  if (has_control_chars(c.client_users_path)) {
    return fail("client_auth.users", "contains control characters");
  }
  if (c.peer_tls() && has_control_chars(c.peer_tls_dir)) {
    return fail("peer_tls.dir", "contains control characters");
  }
  if (c.client_tls_on() || !c.client_tls.key.empty() || !c.client_tls.client_ca.empty()) {
    const ClusterConfig::ClientTls& t = c.client_tls;
    for (const auto& [key, value] : {std::pair{"cert", &t.cert}, std::pair{"key", &t.key}}) {
      if (value->empty()) return fail(fmt::format("client_tls.{}", key), "missing");
    }
    for (const auto& [key, value] : {std::pair{"cert", &t.cert}, std::pair{"key", &t.key},
                                     std::pair{"client_ca", &t.client_ca}}) {
      if (has_control_chars(*value)) {
        return fail(fmt::format("client_tls.{}", key), "contains control characters");
      }
    }
  }

  if (c.nodes.empty()) return fail("nodes", "a cluster needs at least one node ([[nodes]])");
  if (c.nodes.size() > nodes_max) {
    return fail("nodes",
                fmt::format("{} nodes; at most {} are supported", c.nodes.size(), nodes_max));
  }
  if (c.gateways.size() > gateway_id_max) {
    return fail("gateways", fmt::format("{} gateways; at most {} are supported", c.gateways.size(),
                                        gateway_id_max));
  }

  // (host, port) -> the field that uses it.
  std::map<std::pair<std::string, uint16_t>, std::string> ports;
  auto check_port = [&](const std::string& host, uint16_t port,
                        const std::string& field) -> Status {
    if (port == 0) return fail(field, "must not be 0");
    auto [it, inserted] = ports.emplace(std::make_pair(host, port), field);
    if (!inserted) {
      return fail(field,
                  fmt::format("{} is already used by {} on host {}", port, it->second, host));
    }
    return Status::ok();
  };
  auto check_host = [&](const std::string& host, const std::string& field) -> Status {
    if (host.empty()) return fail(field, "must not be empty");
    if (has_control_chars(host) || host.find(' ') != std::string::npos) {
      return fail(field, fmt::format("{} is not a host name or address", quote(host)));
    }
    return Status::ok();
  };

  std::map<uint32_t, size_t> node_ids;
  std::map<std::pair<std::string, std::string>, size_t> data_dirs;
  for (size_t i = 0; i < c.nodes.size(); i++) {
    const NodeEntry& n = c.nodes[i];
    const std::string p = fmt::format("nodes[{}].", i);
    if (n.id < 1 || n.id > node_id_max) {
      return fail(p + "id", fmt::format("{} is outside 1..{}", n.id, node_id_max));
    }
    if (auto [it, inserted] = node_ids.emplace(n.id, i); !inserted) {
      return fail(p + "id", fmt::format("{} is already used by nodes[{}]", n.id, it->second));
    }
    if (Status st = check_host(n.host, p + "host"); !st) return st;
    if (Status st = check_port(n.host, n.peer_port, p + "peer_port"); !st) return st;
    if (Status st = check_port(n.host, n.http_port, p + "http_port"); !st) return st;
    if (Status st = check_port(n.host, n.resp_port, p + "resp_port"); !st) return st;
    if (Status st = check_port(n.host, n.native_port, p + "native_port"); !st) return st;
    if (n.data_dir.empty()) return fail(p + "data_dir", "must not be empty");
    if (has_control_chars(n.data_dir)) return fail(p + "data_dir", "contains control characters");
    auto dir_key =
        std::make_pair(n.host, std::filesystem::path(n.data_dir).lexically_normal().string());
    if (auto [it, inserted] = data_dirs.emplace(dir_key, i); !inserted) {
      return fail(p + "data_dir", fmt::format("{} is already used by nodes[{}] on host {}",
                                              n.data_dir, it->second, n.host));
    }
  }

  std::map<uint32_t, size_t> gateway_ids;
  for (size_t i = 0; i < c.gateways.size(); i++) {
    const GatewayEntry& g = c.gateways[i];
    const std::string p = fmt::format("gateways[{}].", i);
    if (g.id < 1 || g.id > gateway_id_max) {
      return fail(p + "id", fmt::format("{} is outside 1..{}", g.id, gateway_id_max));
    }
    if (auto [it, inserted] = gateway_ids.emplace(g.id, i); !inserted) {
      return fail(p + "id", fmt::format("{} is already used by gateways[{}]", g.id, it->second));
    }
    if (Status st = check_host(g.host, p + "host"); !st) return st;
    if (Status st = check_port(g.host, g.http_port, p + "http_port"); !st) return st;
    if (Status st = check_port(g.host, g.resp_port, p + "resp_port"); !st) return st;
    if (Status st = check_port(g.host, g.native_port, p + "native_port"); !st) return st;
  }
  return Status::ok();
}

uint64_t effective_view_change_ticks(const ClusterSettings& s) {
  return s.view_change_ticks != 0 ? s.view_change_ticks : vr_view_change_ticks_default;
}

uint64_t unavailable_after_ms_min(const ClusterSettings& s) {
  return std::max(unavailable_after_view_changes_min * effective_view_change_ticks(s) * s.tick_ms,
                  unavailable_after_ms_floor);
}

uint64_t effective_unavailable_after_ms(const ClusterSettings& s) {
  if (s.unavailable_after_ms != 0) return s.unavailable_after_ms;
  return std::max(unavailable_after_ms_default, unavailable_after_ms_min(s));
}

uint64_t no_quorum_after_ms(const ClusterSettings& s) {
  return 3 * effective_view_change_ticks(s) * s.tick_ms;
}

std::string format_cluster_config(const ClusterConfig& c) {
  const ClusterSettings& s = c.settings;
  ClusterSettings defaulted = s;
  defaulted.unavailable_after_ms = 0;
  std::string out = fmt::format(
      "# maroon cluster config: every node and gateway of the cluster reads this\n"
      "# file (`maroon node --config FILE --id N`). Layout and settings: docs/cluster.md.\n"
      "# A relative data_dir is relative to this file's directory.\n"
      "cluster_id = {}\n"
      "\n"
      "[settings]\n"
      "tick_ms = {}  # one protocol tick\n"
      "lease_ms = {}  # a gateway's range lease; unrenewed ranges are sealed after it\n"
      "view_change_ticks = {}  # 0: the VR default\n"
      "send_queue_bytes_max = {}  # per peer connection\n"
      "tx_retention_bytes_max = {}  # applied txs kept to serve lagging peers\n"
      "unavailable_after_ms = {}  # a request without a result after this long is answered "
      "\"outcome unknown\"; 0: the default ({} ms)\n",
      c.cluster_id, s.tick_ms, s.lease_ms, s.view_change_ticks, s.send_queue_bytes_max,
      s.tx_retention_bytes_max, s.unavailable_after_ms, effective_unavailable_after_ms(defaulted));
  if (c.peer_tls()) {
    out += fmt::format(
        "\n# TLS on every node and gateway link: the CA certificate (ca.crt) and each\n"
        "# process's certificate and key (node-<id>.crt, node-<id>.key, gateway-<id>.*).\n"
        "[peer_tls]\n"
        "dir = {}\n",
        quote(c.peer_tls_dir));
  }
  if (c.client_tls_on()) {
    out += fmt::format(
        "\n# TLS on every node's and gateway's client ports (RESP, HTTP, native): the\n"
        "# server certificate chain and key (mode 0600), and optionally a CA whose\n"
        "# certificates clients must present (mutual TLS).\n"
        "[client_tls]\n"
        "cert = {}\n"
        "key = {}\n",
        quote(c.client_tls.cert), quote(c.client_tls.key));
    if (!c.client_tls.client_ca.empty()) {
      out += fmt::format("client_ca = {}\n", quote(c.client_tls.client_ca));
    }
  }
  if (!c.client_users_path.empty() || c.client_allow_anonymous) {
    out += "\n# Who may use the client ports (docs/security.md, \"Credentials\").\n[client_auth]\n";
    if (!c.client_users_path.empty()) out += fmt::format("users = {}\n", quote(c.client_users_path));
    if (c.client_allow_anonymous) {
      out += "allow_anonymous = true  # client ports beyond loopback without credentials\n";
    }
  }
  if (c.client_max_clients != 0 || c.client_max_clients_per_address != 0 ||
      c.client_buffer_mb != 0) {
    out += "\n# Client connection bounds of every node and gateway (docs/architecture.md).\n"
           "[client_limits]\n";
    if (c.client_max_clients != 0) out += fmt::format("max_clients = {}\n", c.client_max_clients);
    if (c.client_max_clients_per_address != 0) {
      out += fmt::format("max_clients_per_address = {}\n", c.client_max_clients_per_address);
    }
    if (c.client_buffer_mb != 0) out += fmt::format("buffer_mb = {}\n", c.client_buffer_mb);
  }
  if (c.snapshot_log_mb != 32 || c.snapshot_epochs != 0 || c.snapshots_kept != 2) {
    out += fmt::format(
        "\n# When every node takes a snapshot, and how many it keeps (docs/snapshots.md).\n"
        "[snapshots]\n"
        "log_mb = {}\n"
        "epochs = {}\n"
        "kept = {}\n",
        c.snapshot_log_mb, c.snapshot_epochs, c.snapshots_kept);
  }
  if (!c.backup.store.empty()) {
    const ClusterConfig::Backup& b = c.backup;
    out += fmt::format(
        "\n# Every node uploads its snapshots here (docs/backups.md).\n"
        "[backup]\n"
        "store = {}\n",
        quote(b.store));
    for (auto [key, value] : {std::pair<std::string_view, const std::string*>{"endpoint", &b.endpoint},
                              {"region", &b.region},
                              {"access_key", &b.access_key},
                              {"secret_key", &b.secret_key}}) {
      if (!value->empty()) out += fmt::format("{} = {}\n", key, quote(*value));
    }
    out += fmt::format("interval_s = {}\nkept = {}\npart_mb = {}\n", b.interval_s, b.kept,
                       b.part_mb);
  }
  if (c.membership_epoch != 0 || !c.removed_nodes.empty()) {
    std::string removed;
    for (uint32_t id : c.removed_nodes) removed += fmt::format("{}{}", removed.empty() ? "" : ", ", id);
    out += fmt::format(
        "\n# The membership config the nodes below are, and nodes removed for good\n"
        "# (their ids are not used again). Written by `maroon cluster add-node` and\n"
        "# the others (docs/membership.md).\n"
        "[membership]\n"
        "epoch = {}\n"
        "removed = [{}]\n",
        c.membership_epoch, removed);
  }
  for (const NodeEntry& n : c.nodes) {
    out += fmt::format(
        "\n[[nodes]]\n"
        "id = {}\n"
        "host = {}\n"
        "peer_port = {}\n"
        "http_port = {}\n"
        "resp_port = {}\n"
        "native_port = {}\n"
        "data_dir = {}\n",
        n.id, quote(n.host), n.peer_port, n.http_port, n.resp_port, n.native_port,
        quote(n.data_dir));
  }
  for (const GatewayEntry& g : c.gateways) {
    out += fmt::format(
        "\n[[gateways]]\n"
        "id = {}\n"
        "host = {}\n"
        "http_port = {}\n"
        "resp_port = {}\n"
        "native_port = {}\n",
        g.id, quote(g.host), g.http_port, g.resp_port, g.native_port);
  }
  return out;
}

}  // namespace maroon::cluster
