#include "net/certs.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <charconv>
#include <cstring>  // EVP_EC_gen uses strstr
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "maroon/assert.h"

namespace maroon::net {

namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;

constexpr std::string_view kScheme = "maroon://";
constexpr int kSerialBits = 127;  // positive and at most 20 bytes (RFC 5280)

Status ssl_failure(std::string_view what) {
  return invalid_argument(fmt::format("{}: {}", what, openssl_error_text()));
}

Result<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || (s.size() > 1 && s[0] == '0')) {
    return invalid_argument(fmt::format("'{}' is not a decimal number", s));
  }
  return v;
}

Result<CertPtr> read_cert(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return ssl_failure("BIO_new_mem_buf");
  CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return ssl_failure("not a PEM certificate");
  return cert;
}

Result<KeyPtr> read_key(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return ssl_failure("BIO_new_mem_buf");
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return ssl_failure("not a PEM private key");
  return key;
}

Result<std::string> bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  if (n < 0) return ssl_failure("BIO_get_mem_data");
  return std::string(data, static_cast<size_t>(n));
}

Result<KeyAndCert> to_pem(EVP_PKEY* key, X509* cert) {
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio) return ssl_failure("BIO_new");
  if (PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return ssl_failure("writing the key");
  if (PEM_write_bio_X509(cert_bio.get(), cert) != 1) return ssl_failure("writing the certificate");
  Result<std::string> k = bio_text(key_bio.get());
  if (!k.is_ok()) return k.status();
  Result<std::string> c = bio_text(cert_bio.get());
  if (!c.is_ok()) return c.status();
  return KeyAndCert{std::move(k).value(), std::move(c).value()};
}

// The one maroon:// URI in the certificate's subjectAltName.
Result<std::string> maroon_uri(const X509* cert) {
  NamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return invalid_argument("the certificate has no subjectAltName");
  std::optional<std::string> found;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); i++) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    if (n->type != GEN_URI) continue;
    const ASN1_STRING* s = n->d.uniformResourceIdentifier;
    std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
    if (!uri.starts_with(kScheme)) continue;
    if (found) return invalid_argument("the certificate names more than one maroon:// identity");
    found = std::move(uri);
  }
  if (!found) return invalid_argument("the certificate names no maroon:// identity");
  return *found;
}

Status add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext) return ssl_failure(fmt::format("extension {}", OBJ_nid2sn(nid)));
  if (X509_add_ext(cert, ext.get(), -1) != 1) return ssl_failure("X509_add_ext");
  return Status::ok();
}

// A certificate for `subject_key`, with the common name and extensions
// given, signed by `issuer_key` (issuer null: self-signed).
Result<CertPtr> make_cert(EVP_PKEY* subject_key, const std::string& common_name, X509* issuer,
                          EVP_PKEY* issuer_key, uint32_t days, int64_t start_offset_seconds,
                          const std::vector<std::pair<int, std::string>>& extensions) {
  CertPtr cert(X509_new());
  if (!cert) return ssl_failure("X509_new");
  BnPtr serial(BN_new());
  if (!serial || BN_rand(serial.get(), kSerialBits, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return ssl_failure("serial number");
  }
  if (X509_set_version(cert.get(), 2) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), start_offset_seconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                      start_offset_seconds + int64_t{days} * 24 * 3600) == nullptr ||
      X509_set_pubkey(cert.get(), subject_key) != 1) {
    return ssl_failure("certificate fields");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("maroon"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                 -1, 0) != 1) {
    return ssl_failure("subject name");
  }
  X509* const signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1) {
    return ssl_failure("issuer name");
  }
  if (issuer != nullptr && X509_cmp_time(X509_get0_notAfter(issuer), nullptr) > 0 &&
      ASN1_TIME_compare(X509_get0_notAfter(cert.get()), X509_get0_notAfter(issuer)) > 0) {
    // Never outlive the CA: the peer would refuse it then anyway.
    if (X509_set1_notAfter(cert.get(), X509_get0_notAfter(issuer)) != 1) {
      return ssl_failure("notAfter");
    }
  }
  for (const auto& [nid, value] : extensions) {
    if (Status s = add_extension(cert.get(), signer, nid, value); !s) return s;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) return ssl_failure("X509_sign");
  return cert;
}

Status check_days(uint32_t days) {
  if (days < 1 || days > cert_days_max) {
    return invalid_argument(fmt::format("validity of {} days is outside 1..{}", days, cert_days_max));
  }
  return Status::ok();
}

Result<KeyPtr> new_key() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return ssl_failure("generating a P-256 key");
  return key;
}

// A new self-signed CA certificate and key; `uri` (if not empty) is its
// subjectAltName URI.
Result<KeyAndCert> make_ca_named(const std::string& common_name, const std::string& uri,
                                 uint32_t days) {
  if (Status s = check_days(days); !s) return s;
  Result<KeyPtr> key = new_key();
  if (!key.is_ok()) return key.status();
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
      {NID_key_usage, "critical,keyCertSign,cRLSign"},
      {NID_subject_key_identifier, "hash"}};
  if (!uri.empty()) extensions.emplace_back(NID_subject_alt_name, "URI:" + uri);
  Result<CertPtr> cert = make_cert(key->get(), common_name, nullptr, key->get(), days,
                                   -cert_backdate_seconds, extensions);
  if (!cert.is_ok()) return cert.status();
  return to_pem(key->get(), cert->get());
}

struct CaKeys {
  CertPtr cert;
  KeyPtr key;
};

// The CA's certificate and key, checked to belong together.
Result<CaKeys> read_ca(const KeyAndCert& ca) {
  Result<CertPtr> cert = read_cert(ca.cert_pem);
  if (!cert.is_ok()) return cert.status();
  Result<KeyPtr> key = read_key(ca.key_pem);
  if (!key.is_ok()) return key.status();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return invalid_argument("the CA key does not belong to the CA certificate");
  }
  return CaKeys{std::move(cert).value(), std::move(key).value()};
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A DNS name as a subjectAltName takes it: letters, digits, '-', '.', and a
// leading "*." wildcard. Nothing that would end the entry in OpenSSL's
// "DNS:a,DNS:b" syntax.
bool is_dns_name(std::string_view s) {
  if (s.starts_with("*.")) s.remove_prefix(2);
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string asn1_time_text(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  Result<std::string> text = bio_text(bio.get());
  return text.is_ok() ? *text : "?";
}

}  // namespace

std::string openssl_error_text() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string describe(const PeerIdentity& who) {
  return fmt::format("{} {} of cluster {}", peer_kind_name(who.kind), who.id, who.cluster_id);
}

std::string identity_uri(const PeerIdentity& who) {
  return fmt::format("{}{}/{}/{}", kScheme, who.cluster_id, peer_kind_name(who.kind), who.id);
}

std::string ca_uri(uint64_t cluster_id) { return fmt::format("{}{}/ca", kScheme, cluster_id); }

Result<PeerIdentity> parse_identity_uri(std::string_view uri) {
  const auto bad = [&](std::string_view why) {
    return invalid_argument(fmt::format("identity '{}': {}", uri, why));
  };
  if (!uri.starts_with(kScheme)) return bad("not a maroon:// URI");
  std::string_view rest = uri.substr(kScheme.size());
  const size_t slash1 = rest.find('/');
  if (slash1 == std::string_view::npos) return bad("expected maroon://CLUSTER/KIND/ID");
  const size_t slash2 = rest.find('/', slash1 + 1);
  if (slash2 == std::string_view::npos) return bad("expected maroon://CLUSTER/KIND/ID");
  Result<uint64_t> cluster = parse_u64(rest.substr(0, slash1));
  Result<uint64_t> id = parse_u64(rest.substr(slash2 + 1));
  if (!cluster.is_ok()) return bad(cluster.status().message());
  if (!id.is_ok()) return bad(id.status().message());
  const std::string_view kind = rest.substr(slash1 + 1, slash2 - slash1 - 1);
  PeerIdentity who{.cluster_id = *cluster, .id = *id};
  if (kind == "node") {
    who.kind = PeerKind::kNode;
  } else if (kind == "gateway") {
    who.kind = PeerKind::kGateway;
  } else {
    return bad(fmt::format("unknown kind '{}'", kind));
  }
  if (who.cluster_id == 0 || who.id == 0) return bad("cluster and id must not be 0");
  return who;
}

Result<KeyAndCert> make_ca(uint64_t cluster_id, uint32_t days) {
  MAROON_ASSERT(cluster_id != 0);
  return make_ca_named(fmt::format("maroon cluster {} CA", cluster_id), ca_uri(cluster_id), days);
}

Result<KeyAndCert> issue_cert(const KeyAndCert& ca, const PeerIdentity& who, uint32_t days,
                              int64_t start_offset_seconds) {
  if (Status s = check_days(days); !s) return s;
  if (who.id == 0) return invalid_argument("a certificate's id must not be 0");
  Result<CaKeys> ca_keys = read_ca(ca);
  if (!ca_keys.is_ok()) return ca_keys.status();
  Result<uint64_t> cluster = ca_cluster_id(ca.cert_pem);
  if (!cluster.is_ok()) return cluster.status();
  if (*cluster != who.cluster_id) {
    return invalid_argument(
        fmt::format("the CA is cluster {}'s, not cluster {}'s", *cluster, who.cluster_id));
  }
  Result<KeyPtr> key = new_key();
  if (!key.is_ok()) return key.status();
  Result<CertPtr> cert =
      make_cert(key->get(), fmt::format("maroon {} {}", peer_kind_name(who.kind), who.id),
                ca_keys->cert.get(), ca_keys->key.get(), days, start_offset_seconds,
                {{NID_basic_constraints, "critical,CA:FALSE"},
                 {NID_key_usage, "critical,digitalSignature"},
                 {NID_ext_key_usage, "serverAuth,clientAuth"},
                 {NID_subject_key_identifier, "hash"},
                 {NID_authority_key_identifier, "keyid:always"},
                 {NID_subject_alt_name, "URI:" + identity_uri(who)}});
  if (!cert.is_ok()) return cert.status();
  return to_pem(key->get(), cert->get());
}

Result<PeerIdentity> cert_identity(const x509_st* cert) {
  MAROON_ASSERT(cert != nullptr);
  Result<std::string> uri = maroon_uri(cert);
  if (!uri.is_ok()) return uri.status();
  return parse_identity_uri(*uri);
}

Result<PeerIdentity> cert_identity(std::string_view cert_pem) {
  Result<CertPtr> cert = read_cert(cert_pem);
  if (!cert.is_ok()) return cert.status();
  return cert_identity(cert->get());
}

Result<uint64_t> ca_cluster_id(std::string_view ca_pem) {
  Result<CertPtr> cert = read_cert(ca_pem);
  if (!cert.is_ok()) return cert.status();
  if (X509_check_ca(cert->get()) == 0) return invalid_argument("not a CA certificate");
  Result<std::string> uri = maroon_uri(cert->get());
  if (!uri.is_ok()) return uri.status();
  std::string_view rest = std::string_view(*uri).substr(kScheme.size());
  if (!rest.ends_with("/ca")) return invalid_argument(fmt::format("'{}' is not a CA identity", *uri));
  Result<uint64_t> id = parse_u64(rest.substr(0, rest.size() - 3));
  if (!id.is_ok() || *id == 0) {
    return invalid_argument(fmt::format("'{}' is not a CA identity", *uri));
  }
  return *id;
}

Status verify_cert(std::string_view ca_pem, std::string_view cert_pem) {
  Result<CertPtr> ca = read_cert(ca_pem);
  if (!ca.is_ok()) return ca.status();
  Result<CertPtr> cert = read_cert(cert_pem);
  if (!cert.is_ok()) return cert.status();
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca->get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
    return ssl_failure("X509_STORE");
  }
  // The purposes TLS checks on each side: a peer is both.
  for (int purpose : {X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT}) {
    X509_STORE_CTX_set_purpose(ctx.get(), purpose);
    if (X509_verify_cert(ctx.get()) != 1) {
      const int err = X509_STORE_CTX_get_error(ctx.get());
      ERR_clear_error();
      if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
          err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || err == X509_V_ERR_CERT_SIGNATURE_FAILURE) {
        return invalid_argument("not signed by this CA");
      }
      return invalid_argument(X509_verify_cert_error_string(err));
    }
    X509_STORE_CTX_cleanup(ctx.get());
    if (X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
      return ssl_failure("X509_STORE_CTX_init");
    }
  }
  return Status::ok();
}

Status check_key_matches(std::string_view key_pem, std::string_view cert_pem) {
  Result<CertPtr> cert = read_cert(cert_pem);
  if (!cert.is_ok()) return cert.status();
  Result<KeyPtr> key = read_key(key_pem);
  if (!key.is_ok()) return key.status();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return invalid_argument("the key does not belong to the certificate");
  }
  return Status::ok();
}

Result<KeyAndCert> make_local_ca(std::string_view common_name, uint32_t days) {
  if (common_name.empty()) return invalid_argument("a CA needs a name");
  return make_ca_named(std::string(common_name), "", days);
}

Result<KeyAndCert> issue_tls_leaf(const KeyAndCert& ca, const TlsLeaf& leaf, uint32_t days,
                                  int64_t start_offset_seconds) {
  if (Status s = check_days(days); !s) return s;
  if (leaf.common_name.empty()) return invalid_argument("a certificate needs a common name");
  std::string san;
  for (const std::string& name : leaf.dns_names) {
    if (!is_dns_name(name)) return invalid_argument(fmt::format("'{}' is not a DNS name", name));
    san += (san.empty() ? "DNS:" : ",DNS:") + name;
  }
  for (const std::string& ip : leaf.ips) {
    if (!is_ip_literal(ip)) return invalid_argument(fmt::format("'{}' is not an IP address", ip));
    san += (san.empty() ? "IP:" : ",IP:") + ip;
  }
  if (leaf.use == TlsLeaf::Use::kServer && san.empty()) {
    return invalid_argument("a server certificate must name a DNS name or an IP address");
  }
  Result<CaKeys> ca_keys = read_ca(ca);
  if (!ca_keys.is_ok()) return ca_keys.status();
  Result<KeyPtr> key = new_key();
  if (!key.is_ok()) return key.status();
  std::vector<std::pair<int, std::string>> extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, leaf.use == TlsLeaf::Use::kServer ? "serverAuth" : "clientAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"}};
  if (!san.empty()) extensions.emplace_back(NID_subject_alt_name, san);
  Result<CertPtr> cert = make_cert(key->get(), leaf.common_name, ca_keys->cert.get(),
                                   ca_keys->key.get(), days, start_offset_seconds, extensions);
  if (!cert.is_ok()) return cert.status();
  return to_pem(key->get(), cert->get());
}

Status check_cert_dates(std::string_view cert_pem) {
  Result<CertPtr> cert = read_cert(cert_pem);
  if (!cert.is_ok()) return cert.status();
  const ASN1_TIME* not_before = X509_get0_notBefore(cert->get());
  const ASN1_TIME* not_after = X509_get0_notAfter(cert->get());
  if (X509_cmp_current_time(not_before) >= 0) {
    return invalid_argument(
        fmt::format("the certificate is not valid yet (notBefore {})", asn1_time_text(not_before)));
  }
  if (X509_cmp_current_time(not_after) <= 0) {
    return invalid_argument(
        fmt::format("the certificate has expired (notAfter {})", asn1_time_text(not_after)));
  }
  return Status::ok();
}

Result<bool> cert_names_host(std::string_view cert_pem, std::string_view host) {
  Result<CertPtr> cert = read_cert(cert_pem);
  if (!cert.is_ok()) return cert.status();
  const std::string h(host);
  if (is_ip_literal(h)) return X509_check_ip_asc(cert->get(), h.c_str(), 0) == 1;
  return X509_check_host(cert->get(), h.data(), h.size(), 0, nullptr) == 1;
}

}  // namespace maroon::net
