#include "cli/client_auth.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "cluster/config.h"

namespace maroon::cli {

bool setup_client_auth(const char* what, const std::string& users_path, bool allow_anonymous,
                       const std::string& host, const std::string& flag_hint,
                       bool client_certificates, server::ClientSecurity& security) {
  if (!users_path.empty()) {
    auto users = server::UserTable::load(users_path);
    if (!users.is_ok()) {
      std::fprintf(stderr, "%s: users: %s\n", what, users.status().message().c_str());
      return false;
    }
    security.users = std::move(users).value();
    spdlog::info("client ports ask for credentials: {} users in {}", security.users->users().size(),
                 users_path);
    return true;
  }
  if (cluster::is_loopback_host(host)) return true;
  if (client_certificates) {
    spdlog::info("client ports on {} admit only clients with a certificate from the client CA "
                 "(no users: each such client may read and write everything)",
                 host);
    return true;
  }
  if (!allow_anonymous) {
    std::fprintf(stderr,
                 "%s: refusing to serve clients on %s without credentials: anyone who can reach "
                 "it could read and write everything. Give users, or allow anonymous clients "
                 "explicitly (%s).\n",
                 what, host.c_str(), flag_hint.c_str());
    return false;
  }
  spdlog::warn("client ports on {} ask for NO credentials: anyone who reaches them may read and "
               "write everything (anonymous clients were allowed explicitly)",
               host);
  return true;
}

namespace {

// A users file opened for `user add`: locked against another `user add`,
// never through a symlink, owned by us and private.
class LockedFile {
 public:
  ~LockedFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status open(const std::string& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ < 0) return io_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    if (::flock(fd_, LOCK_EX) != 0) {
      return io_error(fmt::format("{}: cannot lock: {}", path, std::strerror(errno)));
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      return invalid_argument(fmt::format("{}: not a regular file", path));
    }
    if (st.st_uid != ::geteuid()) {
      return invalid_argument(fmt::format("{}: owned by another user (uid {})", path, st.st_uid));
    }
    if ((st.st_mode & 077) != 0) {
      return invalid_argument(fmt::format(
          "{}: group or others may access it (mode {:04o}); run: chmod 600 {}", path,
          st.st_mode & 07777, path));
    }
    if (static_cast<size_t>(st.st_size) > server::users_file_bytes_max) {
      return invalid_argument(fmt::format("{}: larger than a users file may be", path));
    }
    text_.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < text_.size()) {
      const ssize_t n = ::pread(fd_, text_.data() + done, text_.size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return io_error(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
    return Status::ok();
  }
  const std::string& text() const { return text_; }
  Status append(const std::string& more) {
    size_t done = 0;
    while (done < more.size()) {
      const ssize_t n = ::pwrite(fd_, more.data() + done, more.size() - done,
                                 static_cast<off_t>(text_.size() + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return io_error(fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd_) != 0) return io_error(fmt::format("{}: fsync: {}", path_, std::strerror(errno)));
    // A new file's name is durable once its directory is synced.
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    return Status::ok();
  }

 private:
  std::string path_;
  std::string text_;
  int fd_ = -1;
};

}  // namespace

int run_user_add(const UserAddOptions& o) {
  if (!server::valid_user_name(o.name)) {
    std::fprintf(stderr, "maroon user add: a user name is 1..%zu of [A-Za-z0-9_.@-]\n",
                 server::user_name_bytes_max);
    return 2;
  }
  server::User user{.name = o.name,
                    .access = o.access == "read-only" ? server::Access::kReadOnly
                                                      : server::Access::kReadWrite};
  std::string password;
  if (o.password_stdin) {
    std::getline(std::cin, password);
    if (password.size() < server::password_bytes_min ||
        password.size() > server::password_bytes_max) {
      std::fprintf(stderr,
                   "maroon user add: a password is %zu..%zu bytes (it is stored as an unsalted "
                   "SHA-256 digest, so it must be long); leave out --password-stdin to have one "
                   "made\n",
                   server::password_bytes_min, server::password_bytes_max);
      return 2;
    }
  } else {
    password = server::generate_secret();
  }
  user.digest = server::secret_digest(password);

  LockedFile file;
  if (Status s = file.open(o.file); !s) {
    std::fprintf(stderr, "maroon user add: %s\n", s.message().c_str());
    return 1;
  }
  // The file as it will be must still load: no duplicate name or password.
  const std::string sep = file.text().empty() || file.text().ends_with("\n\n") ? ""
                          : file.text().ends_with("\n")                         ? "\n"
                                                                                : "\n\n";
  const std::string entry = sep + server::user_entry_text(user);
  if (auto check = server::UserTable::parse(file.text() + entry, o.file); !check.is_ok()) {
    std::fprintf(stderr, "maroon user add: %s\n", check.status().message().c_str());
    return 1;
  }
  if (Status s = file.append(entry); !s) {
    std::fprintf(stderr, "maroon user add: %s\n", s.message().c_str());
    return 1;
  }
  std::fprintf(stderr, "added %s user \"%s\" to %s\n",
               std::string(server::access_name(user.access)).c_str(), user.name.c_str(),
               o.file.c_str());
  if (!o.password_stdin) {
    // Only the digest is kept: this is the one time the password is shown.
    std::printf("%s\n", password.c_str());
    std::fprintf(stderr,
                 "its password (also its HTTP bearer token) is printed above, once; e.g.\n"
                 "  redis-cli --user %s --pass <password> ...\n"
                 "  curl -H 'Authorization: Bearer <password>' ...\n",
                 user.name.c_str());
  }
  return 0;
}

}  // namespace maroon::cli
