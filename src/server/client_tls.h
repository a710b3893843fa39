// TLS on the client ports (RESP, HTTP, native; docs/security.md, "Client
// TLS"): the server-side context every client connection of a process
// handshakes with (ClientSecurity::tls), and the certificates `maroon dev
// --tls` makes for itself.
//
// The context: TLS 1.2 or 1.3 (1.2 with ECDHE and AEAD ciphers only), no
// compression or renegotiation; the server's certificate chain and key from
// PEM files; with a client CA, every client must present a certificate that
// CA signed (mutual TLS), else the handshake fails. Clients find the server
// by the names in its certificate, so a certificate must name the host they
// dial (issue_tls_leaf does).
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "maroon/status.h"

namespace maroon::server {

// Validity of the certificates `maroon dev --tls` makes.
inline constexpr uint32_t dev_tls_ca_days = 3650;
inline constexpr uint32_t dev_tls_cert_days = 825;

struct ClientTlsFiles {
  std::string cert;       // PEM: the server's certificate, then any intermediates
  std::string key;        // PEM: its private key; refused if group or others may read it
  std::string client_ca;  // PEM, optional: clients must present a certificate it signed
};

// The PEM text of ClientTlsFiles (what the files hold; tests make it in memory).
struct ClientTlsPem {
  std::string cert_chain;
  std::string key;
  std::string client_ca;  // empty: no client certificates asked for
};

// A server context from PEM text, checked: the key belongs to the first
// certificate, which is valid now. Errors say what is wrong with which part.
Result<std::shared_ptr<boost::asio::ssl::context>> make_client_tls_context(const ClientTlsPem& pem);
// Reads the files (src/net/cert_files.h's rules: at most 1 MiB, the key 0600
// or stricter), then make_client_tls_context. Errors start with the file.
Result<std::shared_ptr<boost::asio::ssl::context>> load_client_tls_context(
    const ClientTlsFiles& files);

// `maroon dev --tls`: the files in `dir` (made 0700): ca.crt and ca.key, a
// local CA; server.crt and server.key, signed by it, for localhost,
// 127.0.0.1, ::1 and `host` (unless it is a wildcard address). Made when
// absent, reused when present (never overwritten); a reused certificate that
// has expired or does not name `host` is an error that says to remove `dir`.
// Clients verify the server with `dir`/ca.crt.
struct DevTlsFiles {
  std::string ca_cert;
  ClientTlsFiles server;
  bool made = false;  // made now, not reused
};
Result<DevTlsFiles> ensure_dev_tls_files(const std::string& dir, const std::string& host);

}  // namespace maroon::server
