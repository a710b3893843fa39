#include "net/tls.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace maroon::net {

namespace {

// The chain is the peer's certificate and the CA: nothing in between.
constexpr int kVerifyDepthMax = 1;

}  // namespace

TlsContext::TlsContext(const PeerIdentity& self)
    : self_(self), context_(boost::asio::ssl::context::tls) {}

Result<std::shared_ptr<TlsContext>> TlsContext::make(const std::string& ca_pem,
                                                     const KeyAndCert& own,
                                                     const PeerIdentity& self) {
  std::shared_ptr<TlsContext> t(new TlsContext(self));
  SSL_CTX* ctx = t->context_.native_handle();
  const auto fail = [](std::string_view what) {
    return invalid_argument(fmt::format("TLS setup: {}: {}", what, openssl_error_text()));
  };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return fail("TLS 1.3 only");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);

  // The CA: the only certificate trusted, from memory (no default paths).
  {
    BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
    X509* ca = bio != nullptr ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    if (ca == nullptr) return fail("the CA certificate");
    const int added = X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
    X509_free(ca);
    if (added != 1) return fail("adding the CA");
  }
  boost::system::error_code ec;
  t->context_.use_certificate(boost::asio::buffer(own.cert_pem), boost::asio::ssl::context::pem, ec);
  if (ec) return invalid_argument(fmt::format("TLS setup: the certificate: {}", ec.message()));
  t->context_.use_private_key(boost::asio::buffer(own.key_pem), boost::asio::ssl::context::pem, ec);
  if (ec) return invalid_argument(fmt::format("TLS setup: the key: {}", ec.message()));
  if (SSL_CTX_check_private_key(ctx) != 1) return fail("the key does not match the certificate");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_verify_depth(ctx, kVerifyDepthMax);
  return t;
}

Result<std::shared_ptr<TlsContext>> TlsContext::load(const TlsPaths& paths,
                                                     const PeerIdentity& self) {
  Result<LoadedTls> files = load_tls_files(paths, self);
  if (!files.is_ok()) return files.status();
  return make(files->ca_pem, files->own, self);
}

}  // namespace maroon::net
