// The files of a cluster's peer certificates (certs.h), laid out in a TLS
// directory by convention (docs/cluster.md, "Peer TLS"):
//
//   ca.crt                     the cluster's CA certificate (every process)
//   ca.key                     the CA's key: only where certificates are made
//   node-<id>.crt, .key        a node's certificate and key
//   gateway-<id>.crt, .key     a standalone gateway's
//
// Every file is written mode 0600 (crash-safe: temporary file, fsync, rename,
// fsync the directory) and never overwritten; a directory made here is 0700.
// A key file that group or others may read is refused when loaded.
#pragma once

#include <cstdint>
#include <string>

#include "maroon/status.h"
#include "net/certs.h"

namespace maroon::net {

struct TlsPaths {
  std::string ca_cert;
  std::string cert;
  std::string key;
};

// The paths of `who`'s files in `dir`.
TlsPaths tls_paths_in(const std::string& dir, PeerKind kind, uint64_t id);
std::string ca_cert_path(const std::string& dir);
std::string ca_key_path(const std::string& dir);

// Makes `dir` (and missing parents) with mode 0700; an existing one is kept.
Status create_private_dir(const std::string& dir);
// Writes a new file with mode 0600; refuses if `path` exists.
Status write_private_file(const std::string& path, const std::string& contents);
// Reads a regular file of at most `max_bytes`. With `secret_kind` (e.g. "a
// private key"), refuses it if group or others may access it ("chmod 600
// FILE"). Errors start with the path.
Result<std::string> read_small_file(const std::string& path, size_t max_bytes,
                                    std::string_view secret_kind = {});
// A PEM file of at most 1 MiB; `secret`: a private key (read_small_file).
Result<std::string> read_pem_file(const std::string& path, bool secret);

// A new CA for the cluster in `dir`: ca.crt and ca.key. Refuses if either exists.
Status create_ca_files(const std::string& dir, uint64_t cluster_id, uint32_t days);
// A new key and certificate for `kind` `id`, signed by the CA in `ca_dir`,
// written to `out_dir` with a copy of ca.crt (unless it is there already,
// which must then be the same CA). Refuses to overwrite a certificate or key.
// Returns the identity issued.
Result<PeerIdentity> issue_cert_files(const std::string& ca_dir, PeerKind kind, uint64_t id,
                                      const std::string& out_dir, uint32_t days);

// What a process loads at start, checked: the CA is `self.cluster_id`'s,
// the certificate was signed by it, is valid now and names `self`, and the
// key is its key. Errors start with the file they are about.
struct LoadedTls {
  std::string ca_pem;
  KeyAndCert own;
  PeerIdentity self;
};
Result<LoadedTls> load_tls_files(const TlsPaths& paths, const PeerIdentity& self);

}  // namespace maroon::net
