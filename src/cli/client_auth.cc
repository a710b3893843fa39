#include "cli/client_auth.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "cluster/config.h"

namespace maroon::cli {

bool setup_client_auth(const char* what, const std::string& users_path, bool allow_anonymous,
                       const std::string& host, const std::string& flag_hint,
                       server::ClientSecurity& security) {
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

// Appends `text` to `path`, creating it 0600; refuses a file others may access.
Status append_private(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  Status status = Status::ok();
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    status = invalid_argument(fmt::format("{}: not a regular file", path));
  } else if ((st.st_mode & 077) != 0) {
    status = invalid_argument(fmt::format(
        "{}: group or others may access it (mode {:04o}); run: chmod 600 {}", path,
        st.st_mode & 07777, path));
  } else {
    size_t done = 0;
    while (done < text.size() && status.is_ok()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status = io_error(fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
      } else {
        done += static_cast<size_t>(n);
      }
    }
    if (status.is_ok() && ::fsync(fd) != 0) {
      status = io_error(fmt::format("{}: fsync: {}", path, std::strerror(errno)));
    }
  }
  ::close(fd);
  return status;
}

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

  // The file as it will be must still load: no duplicate name or password.
  std::string text;
  if (::access(o.file.c_str(), F_OK) == 0) {
    auto existing = server::UserTable::load(o.file);
    if (!existing.is_ok()) {
      std::fprintf(stderr, "maroon user add: %s\n", existing.status().message().c_str());
      return 1;
    }
    for (const server::User& u : (*existing)->users()) text += server::user_entry_text(u) + "\n";
  }
  const std::string entry = server::user_entry_text(user);
  if (auto check = server::UserTable::parse(text + entry, o.file); !check.is_ok()) {
    std::fprintf(stderr, "maroon user add: %s\n", check.status().message().c_str());
    return 1;
  }
  if (Status s = append_private(o.file, (text.empty() ? "" : "\n") + entry); !s) {
    std::fprintf(stderr, "maroon user add: %s\n", s.message().c_str());
    return 1;
  }
  std::fprintf(stderr, "added %s user \"%s\" to %s\n", std::string(server::access_name(user.access)).c_str(),
               user.name.c_str(), o.file.c_str());
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
