#include "net/cert_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "maroon/assert.h"

namespace maroon::net {

namespace fs = std::filesystem;

namespace {

constexpr size_t pem_file_bytes_max = 1 << 20;

std::string errno_text(int err) { return std::strerror(err); }

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error(fmt::format("{}: {}", dir, errno_text(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return io_error(fmt::format("{}: fsync: {}", dir, errno_text(err)));
  return Status::ok();
}

std::string leaf_name(PeerKind kind, uint64_t id) {
  return fmt::format("{}-{}", peer_kind_name(kind), id);
}

}  // namespace

TlsPaths tls_paths_in(const std::string& dir, PeerKind kind, uint64_t id) {
  const fs::path d(dir);
  return {.ca_cert = ca_cert_path(dir),
          .cert = (d / (leaf_name(kind, id) + ".crt")).string(),
          .key = (d / (leaf_name(kind, id) + ".key")).string()};
}

std::string ca_cert_path(const std::string& dir) { return (fs::path(dir) / "ca.crt").string(); }
std::string ca_key_path(const std::string& dir) { return (fs::path(dir) / "ca.key").string(); }

Status create_private_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return Status::ok();
  const fs::path parent = fs::path(dir).parent_path();
  if (!parent.empty() && !fs::exists(parent, ec)) {
    if (Status s = create_private_dir(parent.string()); !s) return s;
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return io_error(fmt::format("{}: mkdir: {}", dir, errno_text(errno)));
  }
  return fsync_dir(parent.empty() ? "." : parent.string());
}

Status write_private_file(const std::string& path, const std::string& contents) {
  std::error_code ec;
  if (fs::exists(path, ec)) {
    return invalid_argument(fmt::format("{} exists; it is never overwritten", path));
  }
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error(fmt::format("{}: {}", tmp, errno_text(errno)));
  // A leftover temporary file keeps its old mode; make sure.
  Status result = ::fchmod(fd, 0600) == 0 ? Status::ok()
                                           : io_error(fmt::format("{}: chmod: {}", tmp, errno_text(errno)));
  size_t done = 0;
  while (result.is_ok() && done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result = io_error(fmt::format("{}: {}", tmp, errno_text(errno)));
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (result.is_ok() && ::fsync(fd) != 0) {
    result = io_error(fmt::format("{}: fsync: {}", tmp, errno_text(errno)));
  }
  ::close(fd);
  if (result.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    result = io_error(fmt::format("{}: rename: {}", path, errno_text(errno)));
  }
  if (!result.is_ok()) {
    ::unlink(tmp.c_str());
    return result;
  }
  const fs::path parent = fs::path(path).parent_path();
  return fsync_dir(parent.empty() ? "." : parent.string());
}

Result<std::string> read_small_file(const std::string& path, size_t max_bytes,
                                    std::string_view secret_kind) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(fmt::format("{}: cannot open: {}", path, errno_text(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(fmt::format("{}: stat: {}", path, errno_text(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(fmt::format("{}: not a regular file", path));
  }
  if (!secret_kind.empty() && (st.st_mode & 077) != 0) {
    ::close(fd);
    return invalid_argument(fmt::format(
        "{}: {} that group or others may access (mode {:04o}); run: chmod 600 {}", path,
        secret_kind, st.st_mode & 07777, path));
  }
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return invalid_argument(
        fmt::format("{}: {} bytes; at most {} are read here", path, st.st_size, max_bytes));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const int err = errno;
  ::close(fd);
  if (done != text.size()) return io_error(fmt::format("{}: cannot read: {}", path, errno_text(err)));
  return text;
}

Result<std::string> read_pem_file(const std::string& path, bool secret) {
  return read_small_file(path, pem_file_bytes_max, secret ? "a private key" : "");
}

Status create_ca_files(const std::string& dir, uint64_t cluster_id, uint32_t days) {
  if (cluster_id == 0) return invalid_argument("the cluster id must not be 0");
  std::error_code ec;
  for (const std::string& p : {ca_cert_path(dir), ca_key_path(dir)}) {
    if (fs::exists(p, ec)) {
      return invalid_argument(fmt::format("{} exists; a CA is never overwritten", p));
    }
  }
  if (Status s = create_private_dir(dir); !s) return s;
  Result<KeyAndCert> ca = make_ca(cluster_id, days);
  if (!ca.is_ok()) return ca.status();
  // The key first: a crash between the two leaves no certificate without it.
  if (Status s = write_private_file(ca_key_path(dir), ca->key_pem); !s) return s;
  return write_private_file(ca_cert_path(dir), ca->cert_pem);
}

Result<PeerIdentity> issue_cert_files(const std::string& ca_dir, PeerKind kind, uint64_t id,
                                      const std::string& out_dir, uint32_t days) {
  Result<std::string> ca_cert = read_pem_file(ca_cert_path(ca_dir), false);
  if (!ca_cert.is_ok()) return ca_cert.status();
  Result<std::string> ca_key = read_pem_file(ca_key_path(ca_dir), true);
  if (!ca_key.is_ok()) return ca_key.status();
  Result<uint64_t> cluster = ca_cluster_id(*ca_cert);
  if (!cluster.is_ok()) {
    return invalid_argument(fmt::format("{}: {}", ca_cert_path(ca_dir), cluster.status().message()));
  }
  const PeerIdentity who{.cluster_id = *cluster, .kind = kind, .id = id};
  const TlsPaths out = tls_paths_in(out_dir, kind, id);
  std::error_code ec;
  for (const std::string& p : {out.cert, out.key}) {
    if (fs::exists(p, ec)) return invalid_argument(fmt::format("{} exists; it is never overwritten", p));
  }
  if (fs::exists(out.ca_cert, ec)) {
    Result<std::string> there = read_pem_file(out.ca_cert, false);
    if (!there.is_ok()) return there.status();
    if (*there != *ca_cert) {
      return invalid_argument(
          fmt::format("{} is another CA than {}", out.ca_cert, ca_cert_path(ca_dir)));
    }
  }
  Result<KeyAndCert> issued = issue_cert({*ca_key, *ca_cert}, who, days);
  if (!issued.is_ok()) return issued.status();
  if (Status s = create_private_dir(out_dir); !s) return s;
  if (!fs::exists(out.ca_cert, ec)) {
    if (Status s = write_private_file(out.ca_cert, *ca_cert); !s) return s;
  }
  if (Status s = write_private_file(out.key, issued->key_pem); !s) return s;
  if (Status s = write_private_file(out.cert, issued->cert_pem); !s) return s;
  return who;
}

Result<LoadedTls> load_tls_files(const TlsPaths& paths, const PeerIdentity& self) {
  const auto about = [](const std::string& path, const Status& s) {
    return Status(s.code(), fmt::format("{}: {}", path, s.message()));
  };
  LoadedTls t;
  t.self = self;
  Result<std::string> ca = read_pem_file(paths.ca_cert, false);
  if (!ca.is_ok()) return ca.status();
  Result<std::string> cert = read_pem_file(paths.cert, false);
  if (!cert.is_ok()) return cert.status();
  Result<std::string> key = read_pem_file(paths.key, true);
  if (!key.is_ok()) return key.status();

  Result<uint64_t> cluster = ca_cluster_id(*ca);
  if (!cluster.is_ok()) return about(paths.ca_cert, cluster.status());
  if (*cluster != self.cluster_id) {
    return invalid_argument(fmt::format("{}: the CA of cluster {}, but this is cluster {}",
                                        paths.ca_cert, *cluster, self.cluster_id));
  }
  if (Status s = verify_cert(*ca, *cert); !s) {
    return invalid_argument(fmt::format("{}: {} (CA {})", paths.cert, s.message(), paths.ca_cert));
  }
  Result<PeerIdentity> named = cert_identity(*cert);
  if (!named.is_ok()) return about(paths.cert, named.status());
  if (*named != self) {
    return invalid_argument(fmt::format("{}: the certificate of {}, but this process is {}",
                                        paths.cert, describe(*named), describe(self)));
  }
  if (Status s = check_key_matches(*key, *cert); !s) {
    return invalid_argument(fmt::format("{}: {} {}", paths.key, s.message(), paths.cert));
  }
  t.ca_pem = std::move(ca).value();
  t.own = {std::move(key).value(), std::move(cert).value()};
  return t;
}

}  // namespace maroon::net
