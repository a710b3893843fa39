#include "objstore/object_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "objstore/stores.h"
#include "storage/snapshot_file.h"

namespace maroon::objstore {

namespace {

constexpr std::string_view kS3Scheme = "s3://";
constexpr std::string_view kFileScheme = "file://";
constexpr std::string_view kNodeFolder = "node-";

std::string from_env(const std::string& given, std::initializer_list<const char*> names) {
  if (!given.empty()) return given;
  for (const char* n : names) {
    const char* v = std::getenv(n);
    if (v != nullptr && *v != '\0') return v;
  }
  return {};
}

bool valid_bucket(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  return std::all_of(b.begin(), b.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

}  // namespace

bool is_s3_url(const std::string& url) { return url.starts_with(kS3Scheme); }

Result<std::unique_ptr<ObjectStore>> open_store(const StoreConfig& config) {
  const std::string& url = config.url;
  if (url.empty()) return invalid_argument("no object store given");
  if (config.attempts == 0 || config.retry_min_ms > config.retry_max_ms) {
    return invalid_argument("object store: attempts must be at least 1, retry_min_ms at most "
                            "retry_max_ms");
  }
  if (!is_s3_url(url)) {
    std::string root = url.starts_with(kFileScheme) ? url.substr(kFileScheme.size()) : url;
    if (url.find("://") != std::string::npos && !url.starts_with(kFileScheme)) {
      return invalid_argument(fmt::format(
          "object store {}: not a directory, file:// or s3:// URL", url));
    }
    if (root.empty()) return invalid_argument(fmt::format("object store {}: no directory", url));
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    return make_dir_store(std::move(root), config);
  }
  std::string_view rest = std::string_view(url).substr(kS3Scheme.size());
  const size_t slash = rest.find('/');
  S3Location where;
  where.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) where.prefix = std::string(rest.substr(slash + 1));
  while (!where.prefix.empty() && where.prefix.front() == '/') where.prefix.erase(0, 1);
  if (!where.prefix.empty() && where.prefix.back() != '/') where.prefix += '/';
  if (!valid_bucket(where.bucket)) {
    return invalid_argument(fmt::format(
        "object store {}: \"{}\" is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')", url,
        where.bucket));
  }
  StoreConfig c = config;
  c.endpoint = from_env(c.endpoint, {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"});
  c.region = from_env(c.region, {"AWS_REGION", "AWS_DEFAULT_REGION"});
  if (c.region.empty()) c.region = "us-east-1";
  c.access_key = from_env(c.access_key, {"AWS_ACCESS_KEY_ID"});
  c.secret_key = from_env(c.secret_key, {"AWS_SECRET_ACCESS_KEY"});
  c.session_token = from_env(c.session_token, {"AWS_SESSION_TOKEN"});
  if (c.access_key.empty() || c.secret_key.empty()) {
    return invalid_argument(fmt::format(
        "object store {}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
        "access_key and secret_key in the [backup] section)",
        url));
  }
  if (c.part_bytes < 5 * 1024 * 1024) {
    return invalid_argument("object store: part_bytes must be at least 5 MiB (S3's minimum)");
  }
  return make_s3_store(std::move(where), c);
}

std::string snapshot_key(uint64_t node_id, uint64_t epoch) {
  return fmt::format("{}{}/{}", kNodeFolder, node_id, snapshot_file_name(epoch));
}

Result<std::vector<StoredSnapshot>> list_snapshots(ObjectStore& store,
                                                   std::optional<uint64_t> node_id) {
  auto objects = store.list(node_id ? fmt::format("{}{}/", kNodeFolder, *node_id)
                                    : std::string(kNodeFolder));
  if (!objects) return objects.status();
  std::vector<StoredSnapshot> out;
  for (const ObjectInfo& o : *objects) {
    std::string_view k = o.key;
    if (!k.starts_with(kNodeFolder)) continue;
    k.remove_prefix(kNodeFolder.size());
    const size_t slash = k.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash > 19) continue;
    uint64_t node = 0;
    bool digits = true;
    for (char c : k.substr(0, slash)) {
      if (c < '0' || c > '9') digits = false;
      node = node * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!digits || node == 0) continue;
    const std::optional<uint64_t> epoch = parse_snapshot_file_name(k.substr(slash + 1));
    if (!epoch) continue;
    out.push_back(StoredSnapshot{node, *epoch, o.bytes, o.key});
  }
  std::sort(out.begin(), out.end(), [](const StoredSnapshot& a, const StoredSnapshot& b) {
    return a.epoch != b.epoch ? a.epoch < b.epoch : a.node_id < b.node_id;
  });
  return out;
}

}  // namespace maroon::objstore
