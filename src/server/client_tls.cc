#include "server/client_tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <filesystem>
#include <system_error>
#include <vector>

#include "net/cert_files.h"
#include "net/certs.h"

namespace maroon::server {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

// TLS 1.2's ciphers: forward secret and authenticated only. TLS 1.3's
// (OpenSSL's defaults) are all of that kind.
constexpr const char* kTls12Ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
// Sessions resumed with a client certificate must come from this server.
constexpr unsigned char kSessionIdContext[] = "maroon-client-tls";

// How the errors of make_context name the parts: "the key" or a file name.
struct PartNames {
  std::string cert;
  std::string key;
  std::string client_ca;
};

Status part_error(const std::string& part, std::string_view what) {
  return invalid_argument(fmt::format("{}: {}", part, what));
}

// Every certificate in a PEM text, in order.
Result<std::vector<X509*>> read_certs(const std::string& pem, const std::string& part) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return part_error(part, net::openssl_error_text());
  std::vector<X509*> certs;
  while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) certs.push_back(c);
  BIO_free(bio);
  ERR_clear_error();  // the end of the text
  if (certs.empty()) return part_error(part, "no PEM certificate in it");
  return certs;
}

Result<std::shared_ptr<asio::ssl::context>> make_context(const ClientTlsPem& pem,
                                                         const PartNames& names) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1 ||
      SSL_CTX_set_session_id_context(c, kSessionIdContext, sizeof kSessionIdContext - 1) != 1) {
    return invalid_argument(fmt::format("client TLS setup: {}", net::openssl_error_text()));
  }
  SSL_CTX_set_options(
      c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);

  boost::system::error_code ec;
  ctx->use_certificate_chain(asio::buffer(pem.cert_chain), ec);
  if (ec)
    return part_error(names.cert, fmt::format("not a PEM certificate chain ({})", ec.message()));
  if (Status s = net::check_cert_dates(pem.cert_chain); !s)
    return part_error(names.cert, s.message());
  // Checked apart first: OpenSSL's own check would only say "key values mismatch".
  if (Status s = net::check_key_matches(pem.key, pem.cert_chain); !s) {
    return part_error(
        names.key, s.message().starts_with("the key does not belong")
                       ? fmt::format("the key does not belong to the certificate in {}", names.cert)
                       : "not an unencrypted PEM private key (" + s.message() + ")");
  }
  ctx->use_private_key(asio::buffer(pem.key), asio::ssl::context::pem, ec);
  if (ec || SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    return part_error(names.key,
                      fmt::format("cannot use the key ({})", ec ? ec.message() : "mismatch"));
  }

  if (!pem.client_ca.empty()) {
    Result<std::vector<X509*>> cas = read_certs(pem.client_ca, names.client_ca);
    if (!cas.is_ok()) return cas.status();
    Status added = Status::ok();
    for (X509* ca : *cas) {
      // Trusted for client certificates, and named in the CertificateRequest
      // so that a client holding several picks the right one.
      if (added.is_ok() && (X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca) != 1 ||
                            SSL_CTX_add_client_CA(c, ca) != 1)) {
        added = part_error(names.client_ca, net::openssl_error_text());
      }
      X509_free(ca);
    }
    if (!added) return added;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

// A key whose certificate was never written (a run stopped between the two
// writes) is of no use; it goes, so that both are made again.
Status remove_orphan_key(const std::string& key, const std::string& cert) {
  if (!exists(key) || exists(cert)) return Status::ok();
  std::error_code ec;
  if (!fs::remove(key, ec) && ec) {
    return io_error(fmt::format("{}: cannot remove ({})", key, ec.message()));
  }
  return Status::ok();
}

// Writes the key, then the certificate: a crash between them leaves an
// orphan key, removed next time.
Status write_pair(const std::string& key_path, const std::string& cert_path,
                  const net::KeyAndCert& kc) {
  if (Status s = net::write_private_file(key_path, kc.key_pem); !s) return s;
  return net::write_private_file(cert_path, kc.cert_pem);
}

}  // namespace

Result<std::shared_ptr<asio::ssl::context>> make_client_tls_context(const ClientTlsPem& pem) {
  return make_context(
      pem,
      {.cert = "the certificate chain", .key = "the private key", .client_ca = "the client CA"});
}

Result<std::shared_ptr<asio::ssl::context>> load_client_tls_context(const ClientTlsFiles& files) {
  ClientTlsPem pem;
  Result<std::string> cert = net::read_pem_file(files.cert, false);
  if (!cert.is_ok()) return cert.status();
  pem.cert_chain = std::move(cert).value();
  Result<std::string> key = net::read_pem_file(files.key, true);
  if (!key.is_ok()) return key.status();
  pem.key = std::move(key).value();
  if (!files.client_ca.empty()) {
    Result<std::string> ca = net::read_pem_file(files.client_ca, false);
    if (!ca.is_ok()) return ca.status();
    pem.client_ca = std::move(ca).value();
  }
  return make_context(pem, {.cert = files.cert, .key = files.key, .client_ca = files.client_ca});
}

Result<DevTlsFiles> ensure_dev_tls_files(const std::string& dir, const std::string& host) {
  DevTlsFiles out;
  out.ca_cert = net::ca_cert_path(dir);
  const std::string ca_key = net::ca_key_path(dir);
  out.server.cert = (fs::path(dir) / "server.crt").string();
  out.server.key = (fs::path(dir) / "server.key").string();
  const auto start_over = [&](std::string_view why) {
    return invalid_argument(
        fmt::format("{}: {}; remove {} to make new certificates", dir, why, dir));
  };

  // The names clients may dial: the loopback ones, and the host listened on.
  net::TlsLeaf leaf{
      .common_name = "localhost", .dns_names = {"localhost"}, .ips = {"127.0.0.1", "::1"}};
  boost::system::error_code ec;
  const asio::ip::address addr = asio::ip::make_address(host, ec);
  const bool wildcard = !ec && addr.is_unspecified();
  if (!ec) {
    const std::string ip = addr.to_string();
    if (!wildcard && std::find(leaf.ips.begin(), leaf.ips.end(), ip) == leaf.ips.end()) {
      leaf.ips.push_back(ip);
    }
  } else if (host != "localhost") {
    leaf.dns_names.push_back(host);
  }

  if (Status s = net::create_private_dir(dir); !s) return s;
  if (Status s = remove_orphan_key(ca_key, out.ca_cert); !s) return s;
  if (!exists(out.ca_cert)) {
    if (exists(out.server.cert)) return start_over("server.crt without the CA that signed it");
    Result<net::KeyAndCert> ca = net::make_local_ca("maroon dev local CA", dev_tls_ca_days);
    if (!ca.is_ok()) return ca.status();
    if (Status s = write_pair(ca_key, out.ca_cert, *ca); !s) return s;
    out.made = true;
  }
  if (Status s = remove_orphan_key(out.server.key, out.server.cert); !s) return s;
  if (!exists(out.server.cert)) {
    Result<std::string> ca_cert = net::read_pem_file(out.ca_cert, false);
    if (!ca_cert.is_ok()) return ca_cert.status();
    Result<std::string> ca_key_pem = net::read_pem_file(ca_key, true);
    if (!ca_key_pem.is_ok()) return ca_key_pem.status();
    Result<net::KeyAndCert> server =
        net::issue_tls_leaf({*ca_key_pem, *ca_cert}, leaf, dev_tls_cert_days);
    if (!server.is_ok()) {
      return Status(server.status().code(),
                    fmt::format("{}: {}", out.server.cert, server.status().message()));
    }
    if (Status s = write_pair(out.server.key, out.server.cert, *server); !s) return s;
    out.made = true;
    return out;
  }

  Result<std::string> cert = net::read_pem_file(out.server.cert, false);
  if (!cert.is_ok()) return cert.status();
  if (Status s = net::check_cert_dates(*cert); !s) return start_over("server.crt: " + s.message());
  if (!wildcard) {
    Result<bool> named = net::cert_names_host(*cert, host);
    if (!named.is_ok()) return start_over("server.crt: " + named.status().message());
    if (!*named) return start_over(fmt::format("server.crt does not name the host {}", host));
  }
  return out;
}

}  // namespace maroon::server
