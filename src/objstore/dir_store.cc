// The directory store: objects are files under a root directory. Writes go
// to a temp file beside the object, fsynced, renamed into place, and the
// directory fsynced, so an object is whole or absent after a crash.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <system_error>

#include "objstore/stores.h"
#include "storage/env.h"

namespace maroon::objstore {

namespace {

namespace fs = std::filesystem;

constexpr size_t kCopyBytes = 1024 * 1024;
constexpr std::string_view kTempSuffix = ".tmp";

// A key is one or more '/'-separated names, none empty, "." or "..".
bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > 1024) return false;
  size_t at = 0;
  while (at <= key.size()) {
    size_t end = key.find('/', at);
    if (end == std::string_view::npos) end = key.size();
    const std::string_view name = key.substr(at, end - at);
    if (name.empty() || name == "." || name == "..") return false;
    at = end + 1;
  }
  return true;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Copies the file at `from` to `to` through "<to><suffix>", fsynced and
// renamed into place, its directory fsynced.
Status copy_durably(Env& env, const std::string& from, const std::string& to,
                    std::string_view suffix, const ProgressFn& progress,
                    const std::atomic<bool>& cancelled) {
  auto in = env.open(from, /*create=*/false);
  if (!in) return in.status();
  auto size = (*in)->size();
  if (!size) return size.status();
  const std::string dir = parent_of(to);
  if (Status s = env.create_dirs(dir); !s) return s;
  const std::string temp = to + std::string(suffix);
  (void)env.remove(temp);
  auto out = env.open(temp, /*create=*/true);
  if (!out) return out.status();
  std::string buf;
  for (uint64_t at = 0; at < *size;) {
    if (cancelled.load()) return unavailable("cancelled");
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kCopyBytes, *size - at));
    if (Status s = (*in)->read_at(at, n, buf); !s) return s;
    if (buf.size() != n) return io_error(fmt::format("{}: shorter than its size", from));
    if (Status s = (*out)->write_at(at, buf); !s) return s;
    at += n;
    if (progress) progress(at, *size);
  }
  if (Status s = (*out)->sync(); !s) return s;
  out->reset();
  if (Status s = env.rename(temp, to); !s) return s;
  return env.sync_dir(dir);
}

class DirStore final : public ObjectStore {
 public:
  explicit DirStore(std::string root) : root_(std::move(root)) {}

  std::string describe() const override { return root_; }

  Status put_file(const std::string& key, const std::string& path,
                  const ProgressFn& progress) override {
    if (!valid_key(key)) return invalid_argument(fmt::format("bad object key \"{}\"", key));
    Status s = copy_durably(env_, path, object_path(key), kTempSuffix, progress, cancelled_);
    if (!s) return Status(s.code(), fmt::format("storing {} in {}: {}", key, root_, s.message()));
    return s;
  }

  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    std::vector<ObjectInfo> out;
    std::error_code ec;
    if (!fs::exists(root_, ec)) return out;  // nothing stored yet
    for (auto it = fs::recursive_directory_iterator(root_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string key = fs::relative(it->path(), root_, ec).generic_string();
      if (ec) break;
      if (key.ends_with(kTempSuffix) || !key.starts_with(prefix)) continue;
      const uint64_t bytes = it->file_size(ec);
      if (ec) break;
      out.push_back(ObjectInfo{std::move(key), bytes});
    }
    if (ec) return io_error(fmt::format("listing {}: {}", root_, ec.message()));
    std::sort(out.begin(), out.end(),
              [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status get_file(const std::string& key, const std::string& path, uint64_t bytes,
                  const ProgressFn& progress) override {
    if (!valid_key(key)) return invalid_argument(fmt::format("bad object key \"{}\"", key));
    const std::string from = object_path(key);
    std::error_code ec;
    const uint64_t size = fs::file_size(from, ec);
    if (ec) return Status(Code::kNotFound, fmt::format("{} holds no object {}", root_, key));
    if (bytes != 0 && size != bytes) {
      return corruption(fmt::format("{} in {} is {} bytes, not the {} listed", key, root_, size,
                                    bytes));
    }
    Status s = copy_durably(env_, from, path, ".part", progress, cancelled_);
    if (!s) (void)env_.remove(path + ".part");
    return s;
  }

  Status remove(const std::string& key) override {
    if (!valid_key(key)) return invalid_argument(fmt::format("bad object key \"{}\"", key));
    const std::string path = object_path(key);
    if (!env_.exists(path)) return Status::ok();
    if (Status s = env_.remove(path); !s) return s;
    return env_.sync_dir(parent_of(path));
  }

 private:
  void cancel() override { cancelled_ = true; }

 private:
  std::string object_path(const std::string& key) const { return root_ + "/" + key; }

  const std::string root_;
  PosixEnv env_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

std::unique_ptr<ObjectStore> make_dir_store(std::string root, const StoreConfig& /*config*/) {
  return std::make_unique<DirStore>(std::move(root));
}

}  // namespace maroon::objstore
