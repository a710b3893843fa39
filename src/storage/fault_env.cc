#include "storage/fault_env.h"

#include <algorithm>
#include <cstring>
#include <optional>

namespace maroon {

struct FaultEnv::Node {
  // A misdirected write waiting for the next sync: whole sectors of `data`,
  // to be written at `offset` instead of where they belong.
  struct Misdirected {
    uint64_t offset = 0;
    std::string bytes;
  };

  std::string data;
  std::string durable;
  // Sectors written since the last successful sync, each once, in first-write
  // order so a crash consumes the Prng deterministically.
  std::vector<uint64_t> dirty;
  std::vector<bool> is_dirty;
  // Sectors whose write the disk never got (a failed sync under
  // linux_failed_sync, a lost or misdirected write) or whose disk content
  // the cache does not show (a misdirected write's target): `data` shows
  // the cache until drop_cache().
  std::vector<uint64_t> lost;
  std::vector<Misdirected> misdirected;
  // Unreadable sectors of the medium (latent sector errors).
  std::set<uint64_t> bad;

  static uint64_t first_sector(uint64_t offset) { return offset / kSectorBytes; }
  static uint64_t last_sector(uint64_t offset, uint64_t n) {
    return (offset + n - 1) / kSectorBytes;
  }

  // Whether reads of sector s come from the page cache, not the medium.
  bool cached(uint64_t s) const {
    return (s < is_dirty.size() && is_dirty[s]) ||
           std::find(lost.begin(), lost.end(), s) != lost.end();
  }

  // The first sector of [offset, offset + n) a read must take from a bad
  // sector of the medium, if any.
  std::optional<uint64_t> unreadable(uint64_t offset, uint64_t n) const {
    if (n == 0) return std::nullopt;
    const uint64_t last = last_sector(offset, n);
    for (auto it = bad.lower_bound(first_sector(offset)); it != bad.end() && *it <= last; ++it) {
      if (!cached(*it)) return *it;
    }
    return std::nullopt;
  }

  // A bad sector this write covers only partly (the kernel would read it).
  std::optional<uint64_t> partly_written_bad(uint64_t offset, uint64_t n) const {
    if (n == 0) return std::nullopt;
    for (uint64_t s : {first_sector(offset), last_sector(offset, n)}) {
      const bool whole = offset <= s * kSectorBytes && (s + 1) * kSectorBytes <= offset + n;
      if (!whole && bad.contains(s) && !cached(s)) return s;
    }
    return std::nullopt;
  }

  void mark_dirty(uint64_t offset, uint64_t n) {
    if (n == 0) return;
    const uint64_t first = first_sector(offset);
    const uint64_t last = last_sector(offset, n);
    if (is_dirty.size() <= last) is_dirty.resize(last + 1, false);
    for (uint64_t s = first; s <= last; s++) {
      if (!is_dirty[s]) {
        is_dirty[s] = true;
        dirty.push_back(s);
      }
    }
  }

  // A write the disk drops: its sectors (whatever else was pending in them)
  // stop being dirty and show their durable content after drop_cache().
  void mark_lost(uint64_t offset, uint64_t n) {
    if (n == 0) return;
    for (uint64_t s = first_sector(offset); s <= last_sector(offset, n); s++) {
      if (s < is_dirty.size() && is_dirty[s]) {
        is_dirty[s] = false;
        std::erase(dirty, s);
      }
      lost.push_back(s);
    }
  }

  void copy_sector_to_durable(uint64_t s) {
    const uint64_t begin = s * kSectorBytes;
    if (begin >= data.size()) return;  // truncated away since
    const uint64_t end = std::min<uint64_t>(begin + kSectorBytes, data.size());
    if (durable.size() < end) durable.resize(end, '\0');
    std::memcpy(durable.data() + begin, data.data() + begin, end - begin);
    bad.erase(s);
  }

  // Puts a misdirected write on the medium (image), as far as the file still
  // reaches; returns the bytes written.
  uint64_t land(const Misdirected& m, std::string& image) {
    if (m.offset >= image.size()) return 0;
    const uint64_t n = std::min<uint64_t>(m.bytes.size(), image.size() - m.offset);
    std::memcpy(image.data() + m.offset, m.bytes.data(), n);
    for (uint64_t s = first_sector(m.offset); s <= last_sector(m.offset, n); s++) bad.erase(s);
    return n;
  }

  void sync() {
    durable.resize(data.size());
    // Misdirected writes first: the cache's own dirty sectors, written back
    // by the same sync, are what the disk holds last.
    for (const Misdirected& m : misdirected) {
      const uint64_t n = land(m, durable);
      // The cache still shows what was written there before.
      for (uint64_t s = first_sector(m.offset); n > 0 && s <= last_sector(m.offset, n); s++) {
        lost.push_back(s);
      }
    }
    misdirected.clear();
    for (uint64_t s : dirty) copy_sector_to_durable(s);
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
  // subset of the dirty sectors, which may also extend the file, and of the
  // pending misdirected writes. Bad sectors not rewritten stay bad.
  std::shared_ptr<Node> after_crash(Prng& prng, bool tear) const {
    auto node = std::make_shared<Node>();
    node->durable = durable;
    node->bad = bad;
    if (tear) {
      for (uint64_t s : dirty) {
        if (!prng.chance(0.5)) continue;
        const uint64_t begin = s * kSectorBytes;
        if (begin >= data.size()) continue;
        const uint64_t end = std::min<uint64_t>(begin + kSectorBytes, data.size());
        if (node->durable.size() < end) node->durable.resize(end, '\0');
        std::memcpy(node->durable.data() + begin, data.data() + begin, end - begin);
        node->bad.erase(s);
      }
      for (const Misdirected& m : misdirected) {
        if (prng.chance(0.5)) node->land(m, node->durable);
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

Status FaultEnv::mutation(std::string_view op, const std::string& path) {
  if (crash_point_) {
    return io_error("machine crashed (at " + *crash_point_ + "): " + std::string(op) + " " + path +
                    " never reached the disk");
  }
  if (ops_until_crash_) {
    if (*ops_until_crash_ == 0) {
      crash_point_ = std::string(op) + " " + path;
      ops_until_crash_.reset();
      return io_error("machine crashed: " + *crash_point_ + " never reached the disk");
    }
    --*ops_until_crash_;
  }
  mutating_ops_++;
  return Status::ok();
}

Status FaultEnv::mutation(std::string_view op, const Node& node) {
  // The file's name only matters for a refusal, so only then is it looked
  // up (a renamed file is found under its new name).
  std::string path;
  if (crash_point_ || ops_until_crash_ == 0u) {
    path = "(a file with no name)";
    for (const auto& [name, live] : live_) {
      if (live.get() == &node) {
        path = name;
        break;
      }
    }
  }
  return mutation(op, path);
}

Status FaultEnv::write_fault() {
  if (write_errors_.fire()) return io_error("injected write error: no space left on device");
  return Status::ok();
}

Status FaultEnv::read_fault() {
  if (read_errors_.fire()) return io_error("injected read error: input/output error");
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
    if (Status s = env_.mutation("write_at", *node_); !s) return s;
    if (Status s = env_.write_fault(); !s) return s;
    if (auto bad = node_->partly_written_bad(offset, data.size())) {
      return io_error("write of part of bad sector " + std::to_string(*bad) +
                      ": input/output error");
    }
    std::string& d = node_->data;
    if (d.size() < offset + data.size()) d.resize(offset + data.size(), '\0');
    std::memcpy(d.data() + offset, data.data(), data.size());
    if (data.empty()) return Status::ok();
    if (env_.misdirected_writes_ > 0) {
      env_.misdirected_writes_--;
      misdirect(offset, data.size());
    } else if (env_.lost_writes_ > 0) {
      env_.lost_writes_--;
      node_->mark_lost(offset, data.size());
    } else {
      node_->mark_dirty(offset, data.size());
    }
    return Status::ok();
  }

  Status read_at(uint64_t offset, size_t n, std::string& out) override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.read_fault(); !s) return s;
    const std::string& d = node_->data;
    if (offset < d.size()) {
      if (auto bad = node_->unreadable(offset, std::min<uint64_t>(n, d.size() - offset))) {
        out.clear();
        return io_error("read of bad sector " + std::to_string(*bad) + ": input/output error");
      }
    }
    if (offset >= d.size()) {
      out.clear();
      return Status::ok();
    }
    out.assign(d, offset, std::min<uint64_t>(n, d.size() - offset));
    return Status::ok();
  }

  Status sync() override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.mutation("sync", *node_); !s) return s;
    return sync_locked();
  }

  Status sync_and_drop_cache() override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.mutation("sync_and_drop_cache", *node_); !s) return s;
    if (Status s = sync_locked(); !s) return s;
    node_->drop_cache();
    return Status::ok();
  }

  Status allocate(uint64_t size_bytes) override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.mutation("allocate", *node_); !s) return s;
    if (Status s = env_.write_fault(); !s) return s;
    if (node_->data.size() < size_bytes) node_->data.resize(size_bytes, '\0');
    return Status::ok();
  }

  Status truncate(uint64_t size_bytes) override {
    std::lock_guard lock(env_.mu_);
    if (Status s = env_.mutation("truncate", *node_); !s) return s;
    node_->data.resize(size_bytes, '\0');
    return Status::ok();
  }

  Result<uint64_t> size() override {
    std::lock_guard lock(env_.mu_);
    return static_cast<uint64_t>(node_->data.size());
  }

 private:
  // The whole sectors just written go to another sector offset of the file
  // at the next sync; where they belong keeps its durable content.
  void misdirect(uint64_t offset, uint64_t n) {
    const uint64_t first = Node::first_sector(offset);
    const uint64_t sectors = Node::last_sector(offset, n) - first + 1;
    const uint64_t file_sectors = (node_->data.size() + kSectorBytes - 1) / kSectorBytes;
    node_->mark_lost(offset, n);
    if (file_sectors <= sectors) return;  // nowhere else to go: simply lost
    uint64_t target = env_.misdirect_.below(file_sectors - sectors);
    if (target >= first) target++;
    const uint64_t begin = first * kSectorBytes;
    const uint64_t end = std::min<uint64_t>(begin + sectors * kSectorBytes, node_->data.size());
    node_->misdirected.push_back({target * kSectorBytes, node_->data.substr(begin, end - begin)});
  }

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
  if (create) {
    if (Status s = mutation("open(create)", path); !s) return s;
  }
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
  if (Status s = mutation("remove", path); !s) return s;
  if (live_.erase(path) == 0) return Status(Code::kNotFound, "unlink " + path + ": no such file");
  return Status::ok();
}

Status FaultEnv::rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  if (Status s = mutation("rename", from + " -> " + to); !s) return s;
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
  if (Status s = mutation("sync_dir", dir); !s) return s;
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
  if (Status s = mutation("create_dirs", dir); !s) return s;
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
  read_errors_ = {};
  lost_writes_ = 0;
  misdirected_writes_ = 0;
  ops_until_crash_.reset();
  crash_point_.reset();
}

void FaultEnv::inject_write_errors(uint64_t count, uint64_t after) {
  std::lock_guard lock(mu_);
  write_errors_ = {after, count};
}

void FaultEnv::inject_sync_errors(uint64_t count, uint64_t after) {
  std::lock_guard lock(mu_);
  sync_errors_ = {after, count};
}

void FaultEnv::inject_read_errors(uint64_t count, uint64_t after) {
  std::lock_guard lock(mu_);
  read_errors_ = {after, count};
}

std::shared_ptr<FaultEnv::Node> FaultEnv::live_node(const std::string& path) const {
  auto it = live_.find(path);
  MAROON_ASSERT_MSG(it != live_.end(), path.c_str());
  return it->second;
}

void FaultEnv::add_bad_sectors(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto node = live_node(path);
  MAROON_ASSERT(bytes > 0 && offset + bytes <= node->data.size());
  for (uint64_t s = Node::first_sector(offset); s <= Node::last_sector(offset, bytes); s++) {
    node->bad.insert(s);
  }
}

void FaultEnv::flip_bit(const std::string& path, uint64_t bit_offset) {
  std::lock_guard lock(mu_);
  auto node = live_node(path);
  const uint64_t at = bit_offset / 8;
  const char mask = static_cast<char>(1 << (bit_offset % 8));
  MAROON_ASSERT(at < node->durable.size());
  node->durable[at] ^= mask;
  if (at < node->data.size() && !node->cached(at / kSectorBytes)) node->data[at] ^= mask;
}

uint64_t FaultEnv::flip_random_bit(const std::string& path, Prng& prng, uint64_t offset,
                                   uint64_t bytes) {
  MAROON_ASSERT(bytes > 0);
  const uint64_t bit = offset * 8 + prng.below(bytes * 8);
  flip_bit(path, bit);
  return bit;
}

void FaultEnv::lose_next_writes(uint64_t count) {
  std::lock_guard lock(mu_);
  lost_writes_ = count;
}

void FaultEnv::misdirect_next_writes(uint64_t count, Prng& prng) {
  std::lock_guard lock(mu_);
  misdirected_writes_ = count;
  misdirect_ = Prng(prng.next());
}

void FaultEnv::crash_after_ops(uint64_t ops) {
  std::lock_guard lock(mu_);
  MAROON_ASSERT_MSG(!crash_point_, "a frozen machine must crash() before the next crash is armed");
  ops_until_crash_ = ops;
}

std::optional<std::string> FaultEnv::crash_point() const {
  std::lock_guard lock(mu_);
  return crash_point_;
}

uint64_t FaultEnv::mutating_ops() const {
  std::lock_guard lock(mu_);
  return mutating_ops_;
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
