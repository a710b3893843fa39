#include "net/certs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <utility>

#include "net/cert_files.h"
#include "net/tls.h"

namespace maroon::net {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kCluster = 1234567;

const KeyAndCert& test_ca() {
  static const KeyAndCert ca = make_ca(kCluster, 30).value();
  return ca;
}

TEST(Certs, IdentityUrisRoundTripAndOthersAreRefused) {
  const PeerIdentity node{.cluster_id = 7, .kind = PeerKind::kNode, .id = 2};
  const PeerIdentity gateway{.cluster_id = 7, .kind = PeerKind::kGateway, .id = 63};
  EXPECT_EQ(identity_uri(node), "maroon://7/node/2");
  EXPECT_EQ(identity_uri(gateway), "maroon://7/gateway/63");
  EXPECT_EQ(parse_identity_uri("maroon://7/node/2").value(), node);
  EXPECT_EQ(parse_identity_uri("maroon://7/gateway/63").value(), gateway);
  for (const char* bad : {"maroon://7/ca", "maroon://7/node/", "maroon://7/node/02",
                          "maroon://7/client/2", "maroon://0/node/2", "maroon://7/node/0",
                          "https://7/node/2", "maroon://7/node/2x", "maroon://x/node/2"}) {
    EXPECT_FALSE(parse_identity_uri(bad).is_ok()) << bad;
  }
}

TEST(Certs, AnIssuedCertificateNamesItsPeerAndVerifiesAgainstItsCa) {
  const PeerIdentity who{.cluster_id = kCluster, .kind = PeerKind::kNode, .id = 3};
  Result<KeyAndCert> leaf = issue_cert(test_ca(), who, 10);
  ASSERT_TRUE(leaf.is_ok()) << leaf.status().to_string();
  EXPECT_EQ(cert_identity(leaf->cert_pem).value(), who);
  EXPECT_EQ(ca_cluster_id(test_ca().cert_pem).value(), kCluster);
  EXPECT_TRUE(verify_cert(test_ca().cert_pem, leaf->cert_pem).is_ok());
  EXPECT_TRUE(check_key_matches(leaf->key_pem, leaf->cert_pem).is_ok());
  EXPECT_FALSE(check_key_matches(test_ca().key_pem, leaf->cert_pem).is_ok());
  // A leaf is no CA, and has no CA identity.
  EXPECT_FALSE(ca_cluster_id(leaf->cert_pem).is_ok());
  EXPECT_FALSE(cert_identity(test_ca().cert_pem).is_ok());
}

TEST(Certs, ACertificateOfAnotherCaOrClusterIsRefused) {
  const KeyAndCert other = make_ca(kCluster, 30).value();  // same cluster id, another key
  const PeerIdentity who{.cluster_id = kCluster, .kind = PeerKind::kNode, .id = 1};
  const KeyAndCert leaf = issue_cert(other, who, 10).value();
  Status s = verify_cert(test_ca().cert_pem, leaf.cert_pem);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("not signed by this CA"), std::string::npos) << s.message();
  // The CA issues only for its own cluster.
  EXPECT_FALSE(issue_cert(test_ca(), {.cluster_id = kCluster + 1, .id = 1}, 10).is_ok());
  EXPECT_FALSE(issue_cert(test_ca(), {.cluster_id = kCluster, .id = 0}, 10).is_ok());
  EXPECT_FALSE(issue_cert(test_ca(), who, 0).is_ok());
  EXPECT_FALSE(issue_cert({other.key_pem, test_ca().cert_pem}, who, 10).is_ok());
}

// ---- Files ----

class CertFiles : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("maroon-certs-" + std::to_string(::getpid()) + "-" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static unsigned mode(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  }

  fs::path dir_;
};

TEST_F(CertFiles, CaAndIssuedFilesArePrivateAndLoad) {
  const std::string ca_dir = (dir_ / "ca").string();
  const std::string out = (dir_ / "machine-2").string();
  ASSERT_TRUE(create_ca_files(ca_dir, kCluster, 30).is_ok());
  Result<PeerIdentity> issued = issue_cert_files(ca_dir, PeerKind::kNode, 2, out, 10);
  ASSERT_TRUE(issued.is_ok()) << issued.status().to_string();
  EXPECT_EQ(*issued, (PeerIdentity{kCluster, PeerKind::kNode, 2}));
  ASSERT_TRUE(issue_cert_files(ca_dir, PeerKind::kGateway, 1, out, 10).is_ok());

  EXPECT_EQ(mode(ca_dir), 0700u);
  EXPECT_EQ(mode(out), 0700u);
  for (const char* f : {"ca/ca.crt", "ca/ca.key", "machine-2/ca.crt", "machine-2/node-2.crt",
                        "machine-2/node-2.key", "machine-2/gateway-1.key"}) {
    EXPECT_EQ(mode(dir_ / f), 0600u) << f;
  }
  EXPECT_FALSE(fs::exists(dir_ / "machine-2" / "ca.key"));  // the CA key stays where it is

  const TlsPaths paths = tls_paths_in(out, PeerKind::kNode, 2);
  Result<std::shared_ptr<TlsContext>> ctx =
      TlsContext::load(paths, {kCluster, PeerKind::kNode, 2});
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  EXPECT_EQ((*ctx)->self().id, 2u);

  // Nothing is overwritten.
  EXPECT_FALSE(create_ca_files(ca_dir, kCluster, 30).is_ok());
  EXPECT_FALSE(issue_cert_files(ca_dir, PeerKind::kNode, 2, out, 10).is_ok());
}

TEST_F(CertFiles, LoadingFailsNamingTheFileAndWhatIsWrong) {
  const std::string ca_dir = (dir_ / "ca").string();
  const std::string out = (dir_ / "out").string();
  ASSERT_TRUE(create_ca_files(ca_dir, kCluster, 30).is_ok());
  ASSERT_TRUE(issue_cert_files(ca_dir, PeerKind::kNode, 2, out, 10).is_ok());
  const TlsPaths paths = tls_paths_in(out, PeerKind::kNode, 2);
  const auto load_error = [&](const TlsPaths& p, const PeerIdentity& self) {
    Result<LoadedTls> r = load_tls_files(p, self);
    EXPECT_FALSE(r.is_ok());
    return r.is_ok() ? std::string() : r.status().message();
  };
  const auto has = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };

  // Another node's id, another cluster.
  std::string e = load_error(paths, {kCluster, PeerKind::kNode, 3});
  EXPECT_TRUE(has(e, paths.cert) && has(e, "node 2 of cluster 1234567") && has(e, "node 3")) << e;
  e = load_error(paths, {kCluster + 1, PeerKind::kNode, 2});
  EXPECT_TRUE(has(e, paths.ca_cert) && has(e, "cluster 1234567")) << e;
  // A missing file.
  TlsPaths missing = paths;
  missing.key = (dir_ / "out" / "nope.key").string();
  e = load_error(missing, {kCluster, PeerKind::kNode, 2});
  EXPECT_TRUE(has(e, missing.key) && has(e, "No such file")) << e;
  // A key others may read.
  ASSERT_EQ(::chmod(paths.key.c_str(), 0644), 0);
  e = load_error(paths, {kCluster, PeerKind::kNode, 2});
  EXPECT_TRUE(has(e, paths.key) && has(e, "chmod 600")) << e;
  ASSERT_EQ(::chmod(paths.key.c_str(), 0600), 0);
  // A certificate from another CA of the same cluster.
  const std::string other_ca = (dir_ / "other").string();
  ASSERT_TRUE(create_ca_files(other_ca, kCluster, 30).is_ok());
  TlsPaths foreign = paths;
  foreign.ca_cert = ca_cert_path(other_ca);
  e = load_error(foreign, {kCluster, PeerKind::kNode, 2});
  EXPECT_TRUE(has(e, paths.cert) && has(e, "not signed by this CA")) << e;
  // Another process's key.
  ASSERT_TRUE(issue_cert_files(ca_dir, PeerKind::kNode, 3, out, 10).is_ok());
  TlsPaths wrong_key = paths;
  wrong_key.key = tls_paths_in(out, PeerKind::kNode, 3).key;
  e = load_error(wrong_key, {kCluster, PeerKind::kNode, 2});
  EXPECT_TRUE(has(e, wrong_key.key) && has(e, "does not belong")) << e;
  // Not PEM at all.
  {
    std::ofstream(paths.cert, std::ios::trunc) << "hello";
  }
  e = load_error(paths, {kCluster, PeerKind::kNode, 2});
  EXPECT_TRUE(has(e, paths.cert)) << e;
}

TEST_F(CertFiles, AnExpiredOrNotYetValidCertificateIsRefusedAtLoad) {
  const std::string out = (dir_ / "out").string();
  ASSERT_TRUE(create_private_dir(out).is_ok());
  ASSERT_TRUE(write_private_file(ca_cert_path(out), test_ca().cert_pem).is_ok());
  const PeerIdentity self{kCluster, PeerKind::kNode, 1};
  const TlsPaths paths = tls_paths_in(out, PeerKind::kNode, 1);
  constexpr int64_t kDay = 24 * 3600;
  for (const auto& [offset, why] : {std::pair<int64_t, const char*>{-10 * kDay, "expired"},
                                    {10 * kDay, "not yet valid"}}) {
    const KeyAndCert leaf = issue_cert(test_ca(), self, 1, offset).value();
    fs::remove(paths.cert);
    fs::remove(paths.key);
    ASSERT_TRUE(write_private_file(paths.cert, leaf.cert_pem).is_ok());
    ASSERT_TRUE(write_private_file(paths.key, leaf.key_pem).is_ok());
    Result<LoadedTls> r = load_tls_files(paths, self);
    ASSERT_FALSE(r.is_ok()) << why;
    EXPECT_NE(r.status().message().find(paths.cert), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  }
}

// ---- client ports: a local CA and web-style leaf certificates

TEST(ClientCerts, ALocalServerCertificateNamesItsHostsAndVerifiesAgainstItsCa) {
  const KeyAndCert ca = make_local_ca("maroon dev CA", 30).value();
  Result<KeyAndCert> leaf = issue_tls_leaf(
      ca, {.common_name = "localhost", .dns_names = {"localhost"}, .ips = {"127.0.0.1", "::1"}},
      10);
  ASSERT_TRUE(leaf.is_ok()) << leaf.status().to_string();
  EXPECT_TRUE(check_key_matches(leaf->key_pem, leaf->cert_pem).is_ok());
  EXPECT_TRUE(check_cert_dates(leaf->cert_pem).is_ok());
  for (const char* host : {"localhost", "LOCALHOST", "127.0.0.1", "::1"}) {
    EXPECT_TRUE(cert_names_host(leaf->cert_pem, host).value()) << host;
  }
  for (const char* host : {"example.com", "127.0.0.2", "local", "::2"}) {
    EXPECT_FALSE(cert_names_host(leaf->cert_pem, host).value()) << host;
  }
  // No maroon:// identity on either: they cannot pass for peer certificates.
  EXPECT_FALSE(cert_identity(leaf->cert_pem).is_ok());
  EXPECT_FALSE(ca_cluster_id(ca.cert_pem).is_ok());
}

TEST(ClientCerts, NamesThatWouldBreakTheSubjectAltNameAreRefused) {
  const KeyAndCert ca = make_local_ca("maroon dev CA", 30).value();
  for (const char* bad : {"a,DNS:evil.com", "a b", "", "exa\nmple"}) {
    EXPECT_FALSE(issue_tls_leaf(ca, {.common_name = "x", .dns_names = {bad}}, 10).is_ok()) << bad;
  }
  EXPECT_FALSE(issue_tls_leaf(ca, {.common_name = "x", .ips = {"localhost"}}, 10).is_ok());
  EXPECT_FALSE(issue_tls_leaf(ca, {.common_name = "x", .ips = {"1.2.3.4,IP:5.6.7.8"}}, 10).is_ok());
  // A server certificate that names nothing could never be verified.
  EXPECT_FALSE(issue_tls_leaf(ca, {.common_name = "x"}, 10).is_ok());
  EXPECT_TRUE(
      issue_tls_leaf(ca, {.common_name = "alice", .use = TlsLeaf::Use::kClient}, 10).is_ok());
  // The CA's key must be the CA's.
  const KeyAndCert other = make_local_ca("other", 30).value();
  EXPECT_FALSE(issue_tls_leaf({other.key_pem, ca.cert_pem},
                              {.common_name = "x", .dns_names = {"localhost"}}, 10)
                   .is_ok());
}

TEST(ClientCerts, DatesOutsideTheValidityAreReported) {
  const KeyAndCert ca = make_local_ca("maroon dev CA", 30).value();
  constexpr int64_t kDay = 24 * 3600;
  const TlsLeaf leaf{.common_name = "localhost", .dns_names = {"localhost"}};
  Status s = check_cert_dates(issue_tls_leaf(ca, leaf, 1, -10 * kDay).value().cert_pem);
  EXPECT_NE(s.message().find("has expired"), std::string::npos) << s.message();
  s = check_cert_dates(issue_tls_leaf(ca, leaf, 1, 2 * kDay).value().cert_pem);
  EXPECT_NE(s.message().find("not valid yet"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace maroon::net
