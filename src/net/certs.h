// The certificates of a cluster's peer links (docs/security.md,
// docs/formats/transport.md "TLS"): one CA per cluster, and one certificate
// per node and per gateway, signed by it. Keys are ECDSA P-256; certificates
// are X.509 v3, signed with SHA-256, made with OpenSSL's C API (nothing here
// does cryptography itself).
//
// Identity. A certificate names exactly one peer in a subjectAltName URI:
//
//   maroon://<cluster_id>/node/<id>      a node
//   maroon://<cluster_id>/gateway/<id>   a standalone gateway (its config id)
//   maroon://<cluster_id>/ca             the cluster's CA
//
// (decimal numbers). A leaf is CA:FALSE with digitalSignature and both
// serverAuth and clientAuth, since every process both dials and accepts; the
// CA is CA:TRUE, pathlen 0, keyCertSign only.
//
// Everything is PEM text in memory; cert_files.h reads and writes the files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/status.h"
#include "net/peer_hello.h"

struct x509_st;  // OpenSSL's X509

namespace maroon::net {

struct PeerIdentity {
  uint64_t cluster_id = 0;
  PeerKind kind = PeerKind::kNode;
  uint64_t id = 0;
  bool operator==(const PeerIdentity&) const = default;
};

// "node 2 of cluster 7"
std::string describe(const PeerIdentity& who);
// "maroon://7/node/2"
std::string identity_uri(const PeerIdentity& who);
std::string ca_uri(uint64_t cluster_id);
// The inverse of identity_uri; anything else (the CA's URI included) is an error.
Result<PeerIdentity> parse_identity_uri(std::string_view uri);

struct KeyAndCert {
  std::string key_pem;   // PKCS#8, unencrypted: guard it with file modes
  std::string cert_pem;
};

// Validity of new certificates, in days, and its bounds.
inline constexpr uint32_t ca_days_default = 3650;
inline constexpr uint32_t cert_days_default = 825;
inline constexpr uint32_t cert_days_max = 36500;

// A new CA for this cluster (a fresh key, self-signed).
Result<KeyAndCert> make_ca(uint64_t cluster_id, uint32_t days);
// Seconds before now a new certificate is valid from, so that a peer whose
// clock is a little behind accepts a certificate made just now.
inline constexpr int64_t cert_backdate_seconds = 3600;

// A new key and certificate for `who`, signed by `ca`, valid from
// `start_offset_seconds` from now for `days` days. `who.cluster_id` must be
// the CA's; the certificate does not outlive the CA.
Result<KeyAndCert> issue_cert(const KeyAndCert& ca, const PeerIdentity& who, uint32_t days,
                              int64_t start_offset_seconds = -cert_backdate_seconds);

// The identity a leaf certificate names (its one maroon:// URI).
Result<PeerIdentity> cert_identity(std::string_view cert_pem);
Result<PeerIdentity> cert_identity(const x509_st* cert);
// The cluster a CA certificate belongs to.
Result<uint64_t> ca_cluster_id(std::string_view ca_pem);
// Whether `cert_pem` was signed by `ca_pem` and is valid now (dates, CA:FALSE
// leaf, purposes). The error says which check failed, e.g. "certificate has
// expired".
Status verify_cert(std::string_view ca_pem, std::string_view cert_pem);
// Whether the private key belongs to the certificate.
Status check_key_matches(std::string_view key_pem, std::string_view cert_pem);

// ---- Client ports (docs/security.md, "Client TLS")
//
// Certificates for the client ports (RESP, HTTP, native) are ordinary web
// PKI certificates: clients such as curl and redis-cli check the host they
// dialled against the DNS names and IP addresses of the server
// certificate's subjectAltName. `maroon dev --tls` makes a local CA and one
// server certificate with these; an operator may bring any others.

// A new CA named `common_name` (a fresh key, self-signed), with no maroon://
// identity: it signs client-port certificates only.
Result<KeyAndCert> make_local_ca(std::string_view common_name, uint32_t days);

// What a client-port leaf certificate names and is for.
struct TlsLeaf {
  enum class Use : uint8_t { kServer, kClient };
  std::string common_name;
  std::vector<std::string> dns_names;  // e.g. "localhost"
  std::vector<std::string> ips;        // e.g. "127.0.0.1", "::1"
  Use use = Use::kServer;
};
// A new key and certificate for `leaf`, signed by `ca` (from make_local_ca
// or any CA whose key is at hand), valid from `start_offset_seconds` from
// now for `days` days; it does not outlive the CA. A server certificate must
// name at least one DNS name or address.
Result<KeyAndCert> issue_tls_leaf(const KeyAndCert& ca, const TlsLeaf& leaf, uint32_t days,
                                  int64_t start_offset_seconds = -cert_backdate_seconds);
// Whether the certificate's dates include now; the error says which ends
// the validity, e.g. "the certificate has expired (notAfter ...)".
Status check_cert_dates(std::string_view cert_pem);
// Whether the certificate's subjectAltName names `host`: an IP address
// literal is matched against its IP entries, anything else against its DNS
// names (wildcards as TLS clients match them).
Result<bool> cert_names_host(std::string_view cert_pem, std::string_view host);

// The error OpenSSL queued last (and clears the queue); for messages.
std::string openssl_error_text();

}  // namespace maroon::net
