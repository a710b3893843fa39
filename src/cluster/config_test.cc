#include "cluster/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

namespace maroon::cluster {
namespace {

namespace fs = std::filesystem;

ClusterConfig three_nodes() {
  ClusterConfig c;
  c.cluster_id = 1234567;
  for (uint32_t id = 1; id <= 3; id++) {
    NodeEntry n;
    n.id = id;
    n.peer_port = static_cast<uint16_t>(7100 + id);
    n.http_port = static_cast<uint16_t>(8100 + id);
    n.resp_port = static_cast<uint16_t>(6100 + id);
    n.native_port = static_cast<uint16_t>(9100 + id);
    n.data_dir = "/var/maroon/node-" + std::to_string(id);
    c.nodes.push_back(n);
  }
  return c;
}

// The error message of a config that must not validate.
std::string invalid(const ClusterConfig& c) {
  Status s = validate_cluster_config(c);
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  return s.message();
}

std::string parse_error(std::string_view text) {
  Result<ClusterConfig> r = parse_cluster_config(text, "/base");
  EXPECT_FALSE(r.is_ok()) << text;
  return r.is_ok() ? "" : r.status().message();
}

constexpr std::string_view kMinimal = R"(
cluster_id = 42
[[nodes]]
id = 1
peer_port = 7101
http_port = 8101
resp_port = 6101
native_port = 9101
data_dir = "node-1"
)";

TEST(ClusterConfig, FormatThenParseIsTheSameConfig) {
  ClusterConfig c = three_nodes();
  c.settings.tick_ms = 5;
  c.settings.lease_ms = 2000;
  c.settings.view_change_ticks = 40;
  c.settings.send_queue_bytes_max = size_t{32} << 20;
  c.settings.tx_retention_bytes_max = size_t{1} << 30;
  c.settings.unavailable_after_ms = 7500;
  c.nodes[2].host = "10.0.0.3";
  c.peer_tls_dir = "/etc/maroon/tls";
  c.client_users_path = "/etc/maroon/users.toml";
  c.client_allow_anonymous = true;
  c.client_max_clients = 100;
  c.client_buffer_mb = 64;
  c.client_tls = {.cert = "/etc/maroon/client/server.crt",
                  .key = "/etc/maroon/client/server.key",
                  .client_ca = "/etc/maroon/client/clients-ca.crt"};
  c.nodes[1].data_dir = "/odd \"dir\"\\with \xc3\xa9 quotes";
  c.gateways.push_back(
      {.id = 1, .host = "127.0.0.1", .http_port = 8201, .resp_port = 6201, .native_port = 9201});
  c.gateways.push_back(
      {.id = 7, .host = "gw.example", .http_port = 80, .resp_port = 6379, .native_port = 9000});
  c.membership_epoch = 4;
  c.removed_nodes = {9, 5};
  ASSERT_TRUE(validate_cluster_config(c).is_ok());

  const std::string text = format_cluster_config(c);
  EXPECT_TRUE(text.starts_with("# maroon cluster config")) << text;
  Result<ClusterConfig> parsed = parse_cluster_config(text, "/elsewhere");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string() << "\n" << text;
  EXPECT_EQ(*parsed, c) << text;
  EXPECT_EQ(format_cluster_config(*parsed), text);
}

TEST(ClusterConfig, LargestClusterIdRoundTrips) {
  ClusterConfig c = three_nodes();
  c.cluster_id = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  Result<ClusterConfig> parsed = parse_cluster_config(format_cluster_config(c), "/");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->cluster_id, c.cluster_id);
}

TEST(ClusterConfig, OmittedFieldsTakeTheirDefaults) {
  Result<ClusterConfig> r = parse_cluster_config(kMinimal, "/base");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster_id, 42u);
  EXPECT_EQ(r->settings, ClusterSettings{});
  EXPECT_EQ(r->settings.tick_ms, 10u);
  EXPECT_EQ(r->settings.lease_ms, 5000u);
  ASSERT_EQ(r->nodes.size(), 1u);
  EXPECT_EQ(r->nodes[0].host, "127.0.0.1");
  EXPECT_TRUE(r->gateways.empty());
  EXPECT_EQ(r->path, "");
  EXPECT_EQ(r->f(), 0u);
}

TEST(ClusterConfig, UnavailableAfterDefaultsToFiveSecondsOrFourViewChanges) {
  ClusterSettings s;
  EXPECT_EQ(s.unavailable_after_ms, 0u);
  EXPECT_EQ(effective_unavailable_after_ms(s), 5000u);
  EXPECT_EQ(unavailable_after_ms_min(s), 2000u);
  EXPECT_EQ(no_quorum_after_ms(s), 600u) << "3 view-change timeouts of 20 ticks of 10 ms";
  s.tick_ms = 100;  // 4 view changes: 8000 ms
  EXPECT_EQ(effective_unavailable_after_ms(s), 8000u);
  s.view_change_ticks = 50;
  EXPECT_EQ(effective_unavailable_after_ms(s), 20000u);
  s.unavailable_after_ms = 30000;
  EXPECT_EQ(effective_unavailable_after_ms(s), 30000u);
  Result<ClusterConfig> r = parse_cluster_config(
      std::string(kMinimal) + "[settings]\nunavailable_after_ms = 2500\n", "/b");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->settings.unavailable_after_ms, 2500u);
  EXPECT_EQ(effective_unavailable_after_ms(r->settings), 2500u);
}

TEST(ClusterConfig, LookupByIdAndFaultsTolerated) {
  ClusterConfig c = three_nodes();
  c.gateways.push_back({.id = 5, .http_port = 1, .resp_port = 2, .native_port = 3});
  ASSERT_NE(c.node(2), nullptr);
  EXPECT_EQ(c.node(2)->peer_port, 7102);
  EXPECT_EQ(c.node(4), nullptr);
  ASSERT_NE(c.gateway(5), nullptr);
  EXPECT_EQ(c.gateway(1), nullptr);
  EXPECT_EQ(c.f(), 1u);
  c.nodes.pop_back();
  EXPECT_EQ(c.f(), 0u);  // two nodes tolerate no crash
}

TEST(ClusterConfig, RelativeDataDirIsResolvedAgainstTheBaseDir) {
  std::string text(kMinimal);
  Result<ClusterConfig> r = parse_cluster_config(text, "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->nodes[0].data_dir, "/srv/cl/node-1");

  text.replace(text.find("\"node-1\""), 8, "\"../data/./n1\"");
  r = parse_cluster_config(text, "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->nodes[0].data_dir, "/srv/data/n1");

  text.replace(text.find("\"../data/./n1\""), 14, "\"/abs/n1\"");
  r = parse_cluster_config(text, "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->nodes[0].data_dir, "/abs/n1");

  // A relative base dir is taken from the working directory.
  r = parse_cluster_config(kMinimal, "sub");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->nodes[0].data_dir, (fs::current_path() / "sub/node-1").lexically_normal().string());
}

TEST(ClusterConfig, ClientAuthIsOptionalAndItsUsersFileRelativeToTheFile) {
  Result<ClusterConfig> r = parse_cluster_config(kMinimal, "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->client_users_path.empty());
  EXPECT_FALSE(r->client_allow_anonymous);

  r = parse_cluster_config(
      std::string(kMinimal).insert(17, "[client_auth]\nusers = \"users.toml\"\n"), "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->client_users_path, "/srv/cl/users.toml");
  r = parse_cluster_config(
      std::string(kMinimal).insert(17, "[client_auth]\nallow_anonymous = true\n"), "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->client_allow_anonymous);

  std::string e =
      parse_error(std::string(kMinimal).insert(17, "[client_auth]\nallow_anonymous = 1\n"));
  EXPECT_NE(e.find("client_auth.allow_anonymous: expected true or false"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[client_auth]\npassword = \"x\"\n"));
  EXPECT_NE(e.find("client_auth.password: unknown key"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[client_limits]\nmax_clients = 8\n"));
  EXPECT_NE(e.find("client_limits.max_clients: expected an integer in 16..1048576, got 8"),
            std::string::npos) << e;
  r = parse_cluster_config(
      std::string(kMinimal).insert(17, "[client_limits]\nmax_clients_per_address = 10\n"), "/");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->client_max_clients_per_address, 10u);
  EXPECT_EQ(r->client_max_clients, 0u);
  r = parse_cluster_config(
      std::string(kMinimal).insert(17, "[snapshots]\nlog_mb = 16\nepochs = 1000\nkept = 3\n"),
      "/");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->snapshot_log_mb, 16u);
  EXPECT_EQ(r->snapshot_epochs, 1000u);
  EXPECT_EQ(r->snapshots_kept, 3u);
  {
    // The section goes round through the formatter.
    Result<ClusterConfig> again = parse_cluster_config(format_cluster_config(*r), "/");
    ASSERT_TRUE(again.is_ok()) << again.status().to_string();
    EXPECT_EQ(*again, *r);
  }
  e = parse_error(std::string(kMinimal).insert(17, "[snapshots]\nkept = 0\n"));
  EXPECT_NE(e.find("snapshots.kept: 0 is outside 1..100"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[snapshots]\nevery = 3\n"));
  EXPECT_NE(e.find("snapshots.every: unknown key"), std::string::npos) << e;
  EXPECT_TRUE(is_loopback_host("127.0.0.2"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
  EXPECT_FALSE(is_loopback_host("127.attacker.example"));  // a name, not an address
  EXPECT_TRUE(is_loopback_host("::ffff:127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
}

TEST(ClusterConfig, PeerTlsDirIsOptionalAndRelativeToTheFile) {
  Result<ClusterConfig> r = parse_cluster_config(kMinimal, "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->peer_tls());  // a config from before peer TLS: plaintext links
  EXPECT_TRUE(r->loopback_only());

  const std::string text = "[peer_tls]\ndir = \"tls\"\n";
  r = parse_cluster_config(std::string(kMinimal).insert(17, text), "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->peer_tls_dir, "/srv/cl/tls");

  std::string e = parse_error(std::string(kMinimal).insert(17, "[peer_tls]\ndir = \"\"\n"));
  EXPECT_NE(e.find("peer_tls.dir: must not be empty"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[peer_tls]\nca = \"x\"\n"));
  EXPECT_NE(e.find("peer_tls.ca: unknown key"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[peer_tls]\n"));
  EXPECT_NE(e.find("peer_tls.dir: missing"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "peer_tls = 1\n"));
  EXPECT_NE(e.find("peer_tls: expected a table"), std::string::npos) << e;

  ClusterConfig c = three_nodes();
  EXPECT_TRUE(c.loopback_only());
  c.nodes[1].host = "10.0.0.2";
  EXPECT_FALSE(c.loopback_only());
}

TEST(ClusterConfig, ClientTlsIsOptionalAndItsFilesAreRelativeToTheFile) {
  Result<ClusterConfig> r = parse_cluster_config(kMinimal, "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->client_tls_on());  // plaintext client ports

  std::string text = "[client_tls]\ncert = \"tls/server.crt\"\nkey = \"/keys/server.key\"\n";
  r = parse_cluster_config(std::string(kMinimal).insert(17, text), "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->client_tls_on());
  EXPECT_EQ(r->client_tls.cert, "/srv/cl/tls/server.crt");
  EXPECT_EQ(r->client_tls.key, "/keys/server.key");
  EXPECT_EQ(r->client_tls.client_ca, "");
  r = parse_cluster_config(std::string(kMinimal).insert(17, text + "client_ca = \"clients.crt\"\n"),
                           "/srv/cl");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->client_tls.client_ca, "/srv/cl/clients.crt");

  std::string e = parse_error(std::string(kMinimal).insert(17, "[client_tls]\ncert = \"a\"\n"));
  EXPECT_NE(e.find("client_tls.key: missing"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[client_tls]\nkey = \"a\"\n"));
  EXPECT_NE(e.find("client_tls.cert: missing"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "[client_tls]\ncert = \"\"\nkey = \"k\"\n"));
  EXPECT_NE(e.find("client_tls.cert: must not be empty"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, text + "ca = \"x\"\n"));
  EXPECT_NE(e.find("client_tls.ca: unknown key"), std::string::npos) << e;
  e = parse_error(std::string(kMinimal).insert(17, "client_tls = \"on\"\n"));
  EXPECT_NE(e.find("client_tls: expected a table"), std::string::npos) << e;

  ClusterConfig c = three_nodes();
  c.client_tls.key = "/k";
  Status s = validate_cluster_config(c);
  EXPECT_NE(s.message().find("client_tls.cert: missing"), std::string::npos) << s.message();
}

class ClusterConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "maroon-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(std::string_view text) {
    std::string path = (dir_ / "cluster.toml").string();
    std::ofstream(path) << text;
    return path;
  }
  fs::path dir_;
};

TEST_F(ClusterConfigFile, LoadResolvesDataDirAgainstTheFilesDirectory) {
  std::string path = write(kMinimal);
  Result<ClusterConfig> r = load_cluster_config(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->path, path);
  EXPECT_EQ(r->nodes[0].data_dir, (dir_ / "node-1").string());
  EXPECT_TRUE(fs::path(r->nodes[0].data_dir).is_absolute());
}

TEST_F(ClusterConfigFile, ErrorsNameTheFile) {
  std::string path = write("cluster_id = 0\n");
  Result<ClusterConfig> r = load_cluster_config(path);
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(r.status().message().starts_with(path + ": ")) << r.status().message();

  r = load_cluster_config((dir_ / "missing.toml").string());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kIoError);
  EXPECT_NE(r.status().message().find("missing.toml: cannot open"), std::string::npos)
      << r.status().message();
}

TEST(ClusterConfig, MalformedTomlIsAnErrorWithItsLine) {
  std::string m = parse_error("cluster_id = 1\n[[nodes]\nid = 1\n");
  EXPECT_NE(m.find("malformed TOML"), std::string::npos) << m;
  EXPECT_TRUE(m.starts_with("cluster config:2:")) << m;
  m = parse_error("cluster_id = 1\ncluster_id = 2\n");
  EXPECT_NE(m.find("malformed TOML"), std::string::npos) << m;
}

TEST(ClusterConfig, UnknownKeysAreErrors) {
  std::string text(kMinimal);
  EXPECT_NE(parse_error(text + "clusterid = 3\n").find("clusterid: unknown key"),
            std::string::npos);
  std::string m = parse_error(text + "peer_prot = 7\n");  // lands in nodes[0]
  EXPECT_NE(m.find("nodes[0].peer_prot: unknown key (line 10)"), std::string::npos) << m;
  EXPECT_NE(m.find("expected one of: id, host, peer_port"), std::string::npos) << m;
  m = parse_error(text + "[settings]\ntick = 5\n");
  EXPECT_NE(m.find("settings.tick: unknown key"), std::string::npos) << m;
  m = parse_error("[settings]\ntick_ms = 5\ncluster_id = 3\n[[nodes]]\n");
  EXPECT_NE(m.find("settings.cluster_id: unknown key"), std::string::npos) << m;
  m = parse_error(text +
                  "[[gateways]]\nid = 1\nhttp_port = 1\nresp_port = 2\nnative_port = 3\n"
                  "data_dir = \"x\"\n");
  EXPECT_NE(m.find("gateways[0].data_dir: unknown key"), std::string::npos) << m;
}

TEST(ClusterConfig, WrongTypesAndMissingFieldsAreErrors) {
  const std::string text(kMinimal);
  auto with = [&](std::string_view from, std::string_view to) {
    std::string t = text;
    size_t at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  std::string m = parse_error(with("peer_port = 7101", "peer_port = \"7101\""));
  EXPECT_NE(m.find("nodes[0].peer_port: expected an integer in 0..65535, got \"7101\""),
            std::string::npos)
      << m;
  m = parse_error(with("peer_port = 7101", "peer_port = 70000"));
  EXPECT_NE(m.find("nodes[0].peer_port: expected an integer in 0..65535, got 70000"),
            std::string::npos)
      << m;
  m = parse_error(with("id = 1", "id = -1"));
  EXPECT_NE(m.find("nodes[0].id: expected an integer"), std::string::npos) << m;
  m = parse_error(with("peer_port = 7101", ""));
  EXPECT_NE(m.find("nodes[0].peer_port: missing"), std::string::npos) << m;
  m = parse_error(with("data_dir = \"node-1\"", "data_dir = 1.5"));
  EXPECT_NE(m.find("nodes[0].data_dir: expected a string, got 1.5 (a float)"), std::string::npos)
      << m;
  m = parse_error(with("cluster_id = 42", ""));
  EXPECT_NE(m.find("cluster_id: missing"), std::string::npos) << m;
  m = parse_error(with("cluster_id = 42", "cluster_id = 42\nsettings = 3"));
  EXPECT_NE(m.find("settings: expected a table"), std::string::npos) << m;
  m = parse_error(with("cluster_id = 42", "cluster_id = 42\ngateways = [1, 2]"));
  EXPECT_NE(m.find("gateways: expected an array of tables ([[gateways]])"), std::string::npos) << m;
}

struct InvalidCase {
  const char* name;
  std::function<void(ClusterConfig&)> mutate;
  const char* message;  // the whole message, after "cluster config: "
};

TEST(ClusterConfig, EachValidationError) {
  const InvalidCase cases[] = {
      {"cluster id 0", [](ClusterConfig& c) { c.cluster_id = 0; }, "cluster_id: must not be 0"},
      {"removed node still listed", [](ClusterConfig& c) { c.removed_nodes = {2}; },
       "membership.removed: node 2 is listed as a node and as removed"},
      {"removed twice", [](ClusterConfig& c) { c.removed_nodes = {9, 9}; },
       "membership.removed: 9 is listed twice"},
      {"removed id 0", [](ClusterConfig& c) { c.removed_nodes = {0}; },
       "membership.removed: 0 is outside 1..63"},
      {"cluster id above int64", [](ClusterConfig& c) { c.cluster_id = uint64_t{1} << 63; },
       "cluster_id: 9223372036854775808 is above 2^63-1, the largest TOML integer"},
      {"tick 0", [](ClusterConfig& c) { c.settings.tick_ms = 0; },
       "settings.tick_ms: 0 is outside 1..1000"},
      {"tick too long", [](ClusterConfig& c) { c.settings.tick_ms = 1001; },
       "settings.tick_ms: 1001 is outside 1..1000"},
      {"lease shorter than 10 ticks", [](ClusterConfig& c) { c.settings.lease_ms = 99; },
       "settings.lease_ms: 99 is outside 100..3600000 (at least 10 ticks of 10 ms)"},
      {"lease too long", [](ClusterConfig& c) { c.settings.lease_ms = 3600001; },
       "settings.lease_ms: 3600001 is outside 100..3600000 (at least 10 ticks of 10 ms)"},
      {"view change below the VR lease",
       [](ClusterConfig& c) { c.settings.view_change_ticks = 11; },
       "settings.view_change_ticks: 11 is neither 0 (the VR default) nor in 12..100000"},
      {"send queue below one message",
       [](ClusterConfig& c) { c.settings.send_queue_bytes_max = (32 << 20) - 1; },
       "settings.send_queue_bytes_max: 33554431 is outside 33554432..17179869184 (32 MiB, the "
       "largest message, to 16 GiB)"},
      {"unavailable_after_ms below 4 view changes",
       [](ClusterConfig& c) {
         c.settings.view_change_ticks = 100;
         c.settings.unavailable_after_ms = 3999;
       },
       "settings.unavailable_after_ms: 3999 is neither 0 (the default) nor in 4000..86400000 (at "
       "least 4 view-change timeouts of 100 ticks of 10 ms, and at least 2000 ms)"},
      {"unavailable_after_ms below the floor",
       [](ClusterConfig& c) { c.settings.unavailable_after_ms = 1999; },
       "settings.unavailable_after_ms: 1999 is neither 0 (the default) nor in 2000..86400000 (at "
       "least 4 view-change timeouts of 20 ticks of 10 ms, and at least 2000 ms)"},
      {"unavailable_after_ms over a day",
       [](ClusterConfig& c) { c.settings.unavailable_after_ms = 86400001; },
       "settings.unavailable_after_ms: 86400001 is neither 0 (the default) nor in 2000..86400000 "
       "(at least 4 view-change timeouts of 20 ticks of 10 ms, and at least 2000 ms)"},
      {"retention below one message",
       [](ClusterConfig& c) { c.settings.tx_retention_bytes_max = 1; },
       "settings.tx_retention_bytes_max: 1 is outside 16777216..1099511627776 (16 MiB to 1 TiB)"},
      {"no nodes", [](ClusterConfig& c) { c.nodes.clear(); },
       "nodes: a cluster needs at least one node ([[nodes]])"},
      {"eight nodes",
       [](ClusterConfig& c) {
         for (uint32_t id = 4; id <= 8; id++) {
           NodeEntry n = c.nodes[0];
           n.id = id;
           n.host = "10.0.0." + std::to_string(id);
           c.nodes.push_back(n);
         }
       },
       "nodes: 8 nodes; at most 7 are supported"},
      {"node id 0", [](ClusterConfig& c) { c.nodes[1].id = 0; }, "nodes[1].id: 0 is outside 1..63"},
      {"node id 64", [](ClusterConfig& c) { c.nodes[1].id = 64; },
       "nodes[1].id: 64 is outside 1..63"},
      {"duplicate node id", [](ClusterConfig& c) { c.nodes[2].id = 1; },
       "nodes[2].id: 1 is already used by nodes[0]"},
      {"empty host", [](ClusterConfig& c) { c.nodes[0].host = ""; },
       "nodes[0].host: must not be empty"},
      {"host with a space", [](ClusterConfig& c) { c.nodes[0].host = "a b"; },
       "nodes[0].host: \"a b\" is not a host name or address"},
      {"port 0", [](ClusterConfig& c) { c.nodes[0].resp_port = 0; },
       "nodes[0].resp_port: must not be 0"},
      {"port used twice by one node", [](ClusterConfig& c) { c.nodes[0].native_port = 8101; },
       "nodes[0].native_port: 8101 is already used by nodes[0].http_port on host 127.0.0.1"},
      {"port used by two nodes", [](ClusterConfig& c) { c.nodes[2].peer_port = 7102; },
       "nodes[2].peer_port: 7102 is already used by nodes[1].peer_port on host 127.0.0.1"},
      {"gateway port used by a node",
       [](ClusterConfig& c) {
         c.gateways.push_back({.id = 1, .http_port = 9103, .resp_port = 2, .native_port = 3});
       },
       "gateways[0].http_port: 9103 is already used by nodes[2].native_port on host 127.0.0.1"},
      {"empty data dir", [](ClusterConfig& c) { c.nodes[1].data_dir = ""; },
       "nodes[1].data_dir: must not be empty"},
      {"shared data dir", [](ClusterConfig& c) { c.nodes[2].data_dir = "/var/maroon/x/../node-1"; },
       "nodes[2].data_dir: /var/maroon/x/../node-1 is already used by nodes[0] on host 127.0.0.1"},
      {"gateway id 0",
       [](ClusterConfig& c) {
         c.gateways.push_back({.id = 0, .http_port = 1, .resp_port = 2, .native_port = 3});
       },
       "gateways[0].id: 0 is outside 1..63"},
      {"duplicate gateway id",
       [](ClusterConfig& c) {
         c.gateways.push_back({.id = 2, .http_port = 1, .resp_port = 2, .native_port = 3});
         c.gateways.push_back({.id = 2, .http_port = 4, .resp_port = 5, .native_port = 6});
       },
       "gateways[1].id: 2 is already used by gateways[0]"},
      {"gateway port 0",
       [](ClusterConfig& c) {
         c.gateways.push_back({.id = 1, .http_port = 1, .resp_port = 2, .native_port = 0});
       },
       "gateways[0].native_port: must not be 0"},
  };
  for (const InvalidCase& k : cases) {
    SCOPED_TRACE(k.name);
    ClusterConfig c = three_nodes();
    ASSERT_TRUE(validate_cluster_config(c).is_ok());
    k.mutate(c);
    EXPECT_EQ(invalid(c), std::string("cluster config: ") + k.message);
  }
}

TEST(ClusterConfig, ErrorsNameTheConfigPath) {
  ClusterConfig c = three_nodes();
  c.path = "cluster.toml";
  c.nodes[2].peer_port = 7102;
  EXPECT_EQ(invalid(c),
            "cluster.toml: nodes[2].peer_port: 7102 is already used by nodes[1].peer_port on host "
            "127.0.0.1");
}

TEST(ClusterConfig, SamePortOnDifferentHostsIsFine) {
  ClusterConfig c = three_nodes();
  for (size_t i = 0; i < c.nodes.size(); i++) {
    c.nodes[i].host = "10.0.0." + std::to_string(i + 1);
    c.nodes[i].peer_port = 7000;
    c.nodes[i].http_port = 8000;
    c.nodes[i].resp_port = 6379;
    c.nodes[i].native_port = 9000;
    c.nodes[i].data_dir = "/var/maroon";
  }
  EXPECT_TRUE(validate_cluster_config(c).is_ok());
}

TEST(ClusterConfig, ParsingValidates) {
  std::string text(kMinimal);
  text.replace(text.find("native_port = 9101"), 18, "native_port = 7101");
  EXPECT_EQ(parse_error(text),
            "cluster config: nodes[0].native_port: 7101 is already used by nodes[0].peer_port on "
            "host 127.0.0.1");
}

}  // namespace
}  // namespace maroon::cluster
