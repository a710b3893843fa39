#include "storage/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <cerrno>
#include <system_error>

namespace maroon {
namespace {

// std::error_code's message is thread-safe, unlike strerror.
Status errno_status(std::string_view what, const std::string& path, int err) {
  std::string message = std::string(what) + " " + path + ": " +
                        std::error_code(err, std::generic_category()).message();
  if (err == ENOENT) return Status(Code::kNotFound, std::move(message));
  return io_error(std::move(message));
}

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  Status write_at(uint64_t offset, std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status("write", path_, errno);
      }
      MAROON_ASSERT(n > 0);
      data.remove_prefix(static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
    }
    return Status::ok();
  }

  Status read_at(uint64_t offset, size_t n, std::string& out) override {
    out.resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t r =
          ::pread(fd_, out.data() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        out.clear();
        return errno_status("read", path_, errno);
      }
      if (r == 0) break;  // end of file
      done += static_cast<size_t>(r);
    }
    out.resize(done);
    return Status::ok();
  }

  Status sync() override {
    // Retrying a failed fdatasync is wrong (the kernel may have dropped the
    // dirty pages and will report success next time), so callers treat any
    // failure as final; here we only retry an interrupted call.
    while (::fdatasync(fd_) != 0) {
      if (errno != EINTR) return errno_status("fdatasync", path_, errno);
    }
    return Status::ok();
  }

  Status sync_and_drop_cache() override {
    if (Status s = sync(); !s) return s;
    // Clean pages only: everything was just synced.
    const int err = ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
    if (err != 0) return errno_status("posix_fadvise", path_, err);
    return Status::ok();
  }

  Status allocate(uint64_t size_bytes) override {
    if (::fallocate(fd_, 0, 0, static_cast<off_t>(size_bytes)) == 0) return Status::ok();
    if (errno != EOPNOTSUPP) return errno_status("fallocate", path_, errno);
    // Some file systems (e.g. older tmpfs) lack fallocate; posix_fallocate
    // emulates it by writing zeros.
    const int err = ::posix_fallocate(fd_, 0, static_cast<off_t>(size_bytes));
    if (err != 0) return errno_status("posix_fallocate", path_, err);
    return Status::ok();
  }

  Status truncate(uint64_t size_bytes) override {
    while (::ftruncate(fd_, static_cast<off_t>(size_bytes)) != 0) {
      if (errno != EINTR) return errno_status("ftruncate", path_, errno);
    }
    return Status::ok();
  }

  Result<uint64_t> size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return errno_status("fstat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  int fd_;
  std::string path_;
};

}  // namespace

std::string parent_dir(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string join_path(std::string_view dir, std::string_view name) {
  std::string path(dir);
  if (path.empty() || path.back() != '/') path.push_back('/');
  path.append(name);
  return path;
}

Result<std::unique_ptr<File>> PosixEnv::open(const std::string& path, bool create) {
  const int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0600);  // data is nobody else's business
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_status("open", path, errno);
  return std::unique_ptr<File>(std::make_unique<PosixFile>(fd, path));
}

Result<std::vector<std::string>> PosixEnv::list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno_status("opendir", dir, errno);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name(e->d_name);
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return errno_status("readdir", dir, err);
  std::sort(names.begin(), names.end());
  return names;
}

Status PosixEnv::remove(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return errno_status("unlink", path, errno);
  return Status::ok();
}

Status PosixEnv::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return errno_status("rename", from + " to " + to, errno);
  return Status::ok();
}

Status PosixEnv::sync_dir(const std::string& dir) {
  int fd;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_status("open directory", dir, errno);
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return errno_status("fsync directory", dir, err);
  return Status::ok();
}

Status PosixEnv::create_dirs(const std::string& dir) {
  if (dir.empty() || exists(dir)) return Status::ok();
  const std::string parent = parent_dir(dir);
  if (parent != dir) {
    if (Status s = create_dirs(parent); !s) return s;
  }
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return Status::ok();  // raced with another creator
    return errno_status("mkdir", dir, errno);
  }
  // The new entry lives in the parent; without this a crash can lose it.
  return sync_dir(parent);
}

bool PosixEnv::exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t PosixEnv::random64() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device();
}

}  // namespace maroon
