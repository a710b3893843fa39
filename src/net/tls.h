// The TLS settings of a process's peer links (docs/formats/transport.md,
// "TLS"): TLS 1.3 only, this process's certificate and key, the cluster's CA
// as the only trust anchor, and the peer's certificate required both ways.
// No session tickets or resumption: every link does a full handshake, so
// each one proves both keys afresh.
//
// A Transport given a TlsContext (TransportOptions::tls) runs every link
// through it and takes the peer's identity from its certificate.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "maroon/status.h"
#include "net/cert_files.h"
#include "net/certs.h"

namespace maroon::net {

class TlsContext {
 public:
  // From PEM text already checked (load_tls_files) or made in memory (tests).
  static Result<std::shared_ptr<TlsContext>> make(const std::string& ca_pem, const KeyAndCert& own,
                                                  const PeerIdentity& self);
  // Loads and checks the files (load_tls_files), then make().
  static Result<std::shared_ptr<TlsContext>> load(const TlsPaths& paths, const PeerIdentity& self);

  // The identity in this process's own certificate.
  const PeerIdentity& self() const { return self_; }
  boost::asio::ssl::context& asio() { return context_; }

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

 private:
  explicit TlsContext(const PeerIdentity& self);

  PeerIdentity self_;
  boost::asio::ssl::context context_;
};

}  // namespace maroon::net
