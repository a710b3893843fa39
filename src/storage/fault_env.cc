#include "storage/fault_env.h"

#include <algorithm>
#include <cstring>

namespace maroon {

struct FaultEnv::Node {
  std::string data;
  std::string durable;
  // Sectors written since the last successful sync, each once, in first-write
  // order so a crash consumes the Prng deterministically.
  std::vector<uint64_t> dirty;
  std::vector<bool> is_dirty;
  // Sectors a failed sync marked clean (linux_failed_sync): `data` shows
  // them, the disk never got them.
  std::vector<uint64_t> lost;

  void mark_dirty(uint64_t offset, uint64_t n) {
    if (n == 0) return;
    const uint64_t first = offset / kSectorBytes;
    const uint64_t last = (offset + n - 1) / kSectorBytes;
    if (is_dirty.size() <= last) is_dirty.resize(last + 1, false);
    for (uint64_t s = first; s <= last; s++) {
      if (!is_dirty[s]) {
        is_dirty[s] = true;
        dirty.push_back(s);
      }
    }
  }

  void sync() {
    durable.resize(data.size());
    for (uint64_t s : dirty) {
      const uint64_t begin = s * kSectorBytes;
      if (begin >= data.size()) continue;  // truncated away since
      const uint64_t end = std::min<uint64_t>(begin + kSectorBytes, data.size());
      std::memcpy(durable.data() + begin, data.data() + begin, end - begin);
    }
    dirty.clear();
    is_dirty.clear();
  }

  // Linux after a failed writeback: the dirty pages count as clean.
  void mark_dirty_lost() {
    lost.insert(lost.end(), dirty.begin(), dirty.end());
    dirty.clear();
    is_dirty.clear();
  }

  // Reads go to the disk again: what the cache showed of lost sectors goes.
  void drop_cache() {
    for (uint64_t s : lost) {
      const uint64_t begin = s * kSectorBytes;
      if (begin >= data.size()) continue;
      const uint64_t end = std::min<uint64_t>(begin + kSectorBytes, data.size());
      for (uint64_t i = begin; i < end; i++) data[i] = i < durable.size() ? durable[i] : '\0';
    }
    lost.clear();
  }

  // The content after a crash: the durable bytes, plus (with tear) a random
  // subset of the dirty sectors, which may also extend the file.
  std::shared_ptr<Node> after_crash(Prng& prng, bool tear) const {
    auto node = std::make_shared<Node>();
    node->durable = durable;
    if (tear) {
      for (uint64_t s : dirty) {
        if (!prng.chance(0.5)) continue;
        const uint64_t begin = s * kSectorBytes;
        if (begin >= data.size()) continue;
        const uint64_t end = std::min<uint64_t>(begin + kSectorBytes, data.size());
        if (node->durable.size() < end) node->durable.resize(end, '\0');
        std::memcpy(node->durable.data() + begin, data.data() + begin, end - begin);
      }
    }
    node->data = node->durable;
    return node;
  }
};

bool FaultEnv::Injection::fire() {
  if (count == 0) return false;
  if (after > 0) {
    after--;
    return false;
  }
  count--;
  return true;
}

Status FaultEnv::write_fault() {
  if (write_errors_.fire()) return io_error("injected write error: no space left on device");
  return Status::ok();
}

Status FaultEnv::sync_fault() {
  if (sync_errors_.fire()) return io_error("injected sync error: no space left on device");
  return Status::ok();
}

class FaultEnv::FaultFile final : public File {
 public:
  FaultFile(FaultEnv& env, std::shared_ptr<Node> node) : env_(env), node_(std::move(node)) {}

  Status write_at(uint64_t offset, std::string_view data) override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.write_fault(); !s) return s;
    std::string& d = node_->data;
    if (d.size() < offset + data.size()) d.resize(offset + data.size(), '\0');
    std::memcpy(d.data() + offset, data.data(), data.size());
    node_->mark_dirty(offset, data.size());
    return Status::ok();
  }

  Status read_at(uint64_t offset, size_t n, std::string& out) override {
    std::lock_guard lock(env_.mu_);
    const std::string& d = node_->data;
    if (offset >= d.size()) {
      out.clear();
      return Status::ok();
    }
    out.assign(d, offset, std::min<uint64_t>(n, d.size() - offset));
    return Status::ok();
  }

  Status sync() override {
    std::lock_guard lock(env_.mu_);
    return sync_locked();
  }

  Status sync_and_drop_cache() override {
    std::lock_guard lock(env_.mu_);
    if (Status s = sync_locked(); !s) return s;
    node_->drop_cache();
    return Status::ok();
  }

  Status allocate(uint64_t size_bytes) override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.write_fault(); !s) return s;
    if (node_->data.size() < size_bytes) node_->data.resize(size_bytes, '\0');
    return Status::ok();
  }

  Status truncate(uint64_t size_bytes) override {
    std::lock_guard lock(env_.mu_);
    node_->data.resize(size_bytes, '\0');
    return Status::ok();
  }

  Result<uint64_t> size() override {
    std::lock_guard lock(env_.mu_);
    return static_cast<uint64_t>(node_->data.size());
  }

 private:
  Status sync_locked() {
    if (Status s = env_.sync_fault(); !s) {
      if (env_.linux_failed_sync_) node_->mark_dirty_lost();
      return s;
    }
    env_.file_syncs_++;
    node_->sync();
    return Status::ok();
  }

  FaultEnv& env_;
  std::shared_ptr<Node> node_;
};

FaultEnv::FaultEnv(uint64_t seed) : dirs_{".", "/"}, random_(seed) {}
FaultEnv::~FaultEnv() = default;

Result<std::unique_ptr<File>> FaultEnv::open(const std::string& path, bool create) {
  std::lock_guard lock(mu_);
  auto it = live_.find(path);
  if (it == live_.end()) {
    if (!create) return Status(Code::kNotFound, "open " + path + ": no such file");
    if (!dirs_.contains(parent_dir(path))) {
      return Status(Code::kNotFound, "open " + path + ": no such directory");
    }
    it = live_.emplace(path, std::make_shared<Node>()).first;
  }
  return std::unique_ptr<File>(std::make_unique<FaultFile>(*this, it->second));
}

Result<std::vector<std::string>> FaultEnv::list_dir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (!dirs_.contains(dir))
    return Status(Code::kNotFound, "opendir " + dir + ": no such directory");
  std::vector<std::string> names;
  auto add = [&](const std::string& path) {
    if (path != dir && parent_dir(path) == dir) names.push_back(path.substr(path.rfind('/') + 1));
  };
  for (const auto& [path, node] : live_) add(path);
  for (const auto& path : dirs_) add(path);
  std::sort(names.begin(), names.end());
  return names;
}

Status FaultEnv::remove(const std::string& path) {
  std::lock_guard lock(mu_);
  if (live_.erase(path) == 0) return Status(Code::kNotFound, "unlink " + path + ": no such file");
  return Status::ok();
}

Status FaultEnv::rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto it = live_.find(from);
  if (it == live_.end()) return Status(Code::kNotFound, "rename " + from + ": no such file");
  if (!dirs_.contains(parent_dir(to)))
    return Status(Code::kNotFound, "rename to " + to + ": no such directory");
  auto node = it->second;
  live_.erase(it);
  live_[to] = std::move(node);
  return Status::ok();
}

Status FaultEnv::sync_dir(const std::string& dir) {
  std::lock_guard lock(mu_);
  if (!dirs_.contains(dir))
    return Status(Code::kNotFound, "open directory " + dir + ": no such directory");
  if (Status s = sync_fault(); !s) return s;
  dir_syncs_++;
  std::erase_if(durable_, [&](const auto& entry) { return parent_dir(entry.first) == dir; });
  for (const auto& [path, node] : live_) {
    if (parent_dir(path) == dir) durable_[path] = node;
  }
  return Status::ok();
}

Status FaultEnv::create_dirs(const std::string& dir) {
  std::lock_guard lock(mu_);
  for (std::string d = dir; !d.empty() && !dirs_.contains(d); d = parent_dir(d)) {
    if (live_.contains(d)) return io_error("mkdir " + d + ": a file is in the way");
    dirs_.insert(d);
  }
  return Status::ok();
}

bool FaultEnv::exists(const std::string& path) {
  std::lock_guard lock(mu_);
  return live_.contains(path) || dirs_.contains(path);
}

uint64_t FaultEnv::random64() {
  std::lock_guard lock(mu_);
  return random_.next();
}

void FaultEnv::crash(Prng& prng, bool tear) {
  std::lock_guard lock(mu_);
  // A node durable under two names (a rename synced in one directory only)
  // stays one node, like a hard link.
  std::map<const Node*, std::shared_ptr<Node>> rebuilt;
  std::map<std::string, std::shared_ptr<Node>> after;
  for (const auto& [path, node] : durable_) {
    auto& fresh = rebuilt[node.get()];
    if (!fresh) fresh = node->after_crash(prng, tear);
    after[path] = fresh;
  }
  durable_ = after;
  live_ = std::move(after);
  write_errors_ = {};
  sync_errors_ = {};
}

void FaultEnv::inject_write_errors(uint64_t count, uint64_t after) {
  std::lock_guard lock(mu_);
  write_errors_ = {after, count};
}

void FaultEnv::inject_sync_errors(uint64_t count, uint64_t after) {
  std::lock_guard lock(mu_);
  sync_errors_ = {after, count};
}

void FaultEnv::set_linux_failed_sync(bool on) {
  std::lock_guard lock(mu_);
  linux_failed_sync_ = on;
}

uint64_t FaultEnv::file_syncs() const {
  std::lock_guard lock(mu_);
  return file_syncs_;
}

uint64_t FaultEnv::dir_syncs() const {
  std::lock_guard lock(mu_);
  return dir_syncs_;
}

}  // namespace maroon
