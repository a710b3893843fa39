// `maroon cert ca|issue`: the certificates of a cluster's peer links, for a
// cluster spread over machines (docs/cluster.md, "Peer TLS"). `maroon
// cluster up` makes the same files for a cluster on one machine.
#include <fmt/format.h>

#include <cstdio>

#include "cli/commands.h"
#include "cluster/config.h"
#include "net/cert_files.h"
#include "net/certs.h"

namespace maroon::cli {

namespace {

int fail(const char* what, const std::string& message) {
  std::fprintf(stderr, "maroon cert %s: %s\n", what, message.c_str());
  return 1;
}

}  // namespace

int run_cert_ca(const CertCaOptions& o) {
  uint64_t cluster_id = o.cluster_id;
  if (!o.config.empty()) {
    Result<cluster::ClusterConfig> config = cluster::load_cluster_config(o.config);
    if (!config.is_ok()) return fail("ca", config.status().message());
    if (cluster_id != 0 && cluster_id != config->cluster_id) {
      return fail("ca", fmt::format("--cluster-id {} but {} has cluster_id {}", cluster_id,
                                    o.config, config->cluster_id));
    }
    cluster_id = config->cluster_id;
  }
  if (cluster_id == 0) return fail("ca", "give the cluster: --cluster-id ID or --config FILE");
  const uint32_t days = o.days != 0 ? o.days : net::ca_days_default;
  if (Status s = net::create_ca_files(o.out, cluster_id, days); !s) return fail("ca", s.message());
  std::printf(
      "wrote %s and %s: the CA of cluster %llu, valid %u days.\n"
      "Keep ca.key on this machine only; issue each process's certificate with\n"
      "  maroon cert issue --ca %s --node N --out DIR\n"
      "and copy DIR to that machine as its [peer_tls] dir.\n",
      net::ca_cert_path(o.out).c_str(), net::ca_key_path(o.out).c_str(),
      static_cast<unsigned long long>(cluster_id), days, o.out.c_str());
  return 0;
}

int run_cert_issue(const CertIssueOptions& o) {
  if (o.node.has_value() == o.gateway.has_value()) {
    return fail("issue", "give exactly one of --node N and --gateway N");
  }
  const net::PeerKind kind = o.node ? net::PeerKind::kNode : net::PeerKind::kGateway;
  const uint32_t id = o.node ? *o.node : *o.gateway;
  const uint32_t id_max = o.node ? cluster::node_id_max : cluster::gateway_id_max;
  if (id < 1 || id > id_max) {
    return fail("issue", fmt::format("{} id {} is outside 1..{}", net::peer_kind_name(kind), id, id_max));
  }
  const uint32_t days = o.days != 0 ? o.days : net::cert_days_default;
  Result<net::PeerIdentity> who = net::issue_cert_files(o.ca, kind, id, o.out, days);
  if (!who.is_ok()) return fail("issue", who.status().message());
  const net::TlsPaths paths = net::tls_paths_in(o.out, kind, id);
  std::printf("wrote %s and %s (%s, %s), valid %u days; %s is the CA\n", paths.cert.c_str(),
              paths.key.c_str(), net::describe(*who).c_str(), net::identity_uri(*who).c_str(),
              days, paths.ca_cert.c_str());
  return 0;
}

}  // namespace maroon::cli
