// Object stores from the command line (docs/backups.md): `maroon snapshot
// list|download`, `maroon backup`, `maroon restore`, and the preparation of
// a new data directory for `--bootstrap-from`.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/http_get.h"
#include "cli/json_fields.h"
#include "cli/store_setup.h"
#include "host/node_host.h"
#include "host/snapshot_layout.h"
#include "objstore/fetch.h"
#include "storage/env.h"
#include "storage/snapshot_file.h"
#include "vr/codec.h"

namespace maroon::cli {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::milliseconds kRequestTimeout{10000};

// Progress of a transfer on stderr, every 2 s.
objstore::ProgressFn progress_printer(std::string what) {
  auto last = std::make_shared<std::chrono::steady_clock::time_point>(
      std::chrono::steady_clock::now());
  return [what = std::move(what), last](uint64_t done, uint64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (now - *last < std::chrono::seconds(2) || total == 0) return;
    *last = now;
    std::fprintf(stderr, "%s: %llu%% (%.1f of %.1f MiB)\n", what.c_str(),
                 static_cast<unsigned long long>(done * 100 / total), done / 1048576.0,
                 total / 1048576.0);
  };
}

Result<std::unique_ptr<objstore::ObjectStore>> open_url(const std::string& url) {
  objstore::StoreConfig c;
  c.url = url;
  return objstore::open_store(c);
}



}  // namespace

bool holds_data(const std::string& data_dir) {
  std::error_code ec;
  return fs::exists(fs::path(data_dir) / "superblock", ec) || fs::exists(fs::path(data_dir) / "wal", ec);
}

namespace {

// Checks that the snapshot at `path` can start a new data directory of a
// single node (`maroon dev`): of node 1, of no cluster, with the sequencer
// state a restore needs (written by builds since the kind-6 chunk), of a
// group of one.
Status check_restorable(const std::string& path, const std::string& key) {
  PosixEnv env;
  auto reader = SnapshotFileReader::open(env, path);
  if (!reader) return reader.status();
  auto header = host::snapshot_layout::decode_header((*reader)->header());
  if (!header) return header.status();
  if (header->node_id != 1 || header->of_another_cluster(0)) {
    return invalid_argument(fmt::format(
        "{} is a snapshot of node {} of {}; a single node (maroon dev) restores only its own "
        "(node 1, no cluster)",
        key, header->node_id,
        header->cluster_id == 0 ? std::string("a cluster or an unknown one")
                                : fmt::format("cluster {:016x}", header->cluster_id)));
  }
  for (;;) {
    auto chunk = (*reader)->next();
    if (!chunk) return chunk.status();
    if (!*chunk) break;
    if ((*chunk)->first != host::snapshot_layout::kSequencerState) continue;
    auto record = vr::decode_record((*chunk)->second);
    if (!record) return record.status();
    const auto* state = std::get_if<vr::DurableState>(&*record);
    if (state == nullptr) return corruption(key + ": its sequencer state does not decode");
    if (state->members.size() != 1) {
      return invalid_argument(fmt::format("{} is of a group of {} replicas; a single node "
                                          "restores only a single node's snapshot",
                                          key, state->members.size()));
    }
    return Status::ok();
  }
  return invalid_argument(fmt::format("{} holds no sequencer state (written by an older build): "
                                      "it cannot start a new data directory",
                                      key));
}

constexpr const char* kRestoreDownload = "restore.download";

// Leftovers of an interrupted download or marker write.
void remove_partial_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".part") || name.ends_with(".tmp") || name == kRestoreDownload) {
      fs::remove(e.path(), ec);
    }
  }
}

}  // namespace

Status restore_data_dir(const objstore::StoreConfig& config, const std::string& data_dir,
                        uint64_t node_id, std::optional<uint64_t> epoch) {
  MAROON_ASSERT(node_id == 1);
  if (holds_data(data_dir)) {
    return invalid_argument(fmt::format(
        "{} already holds a node's data: a restore makes a new data directory (move the old "
        "one away first)",
        data_dir));
  }
  const std::string dir = data_dir + "/snapshots";
  std::error_code ec;
  if (fs::exists(join_path(dir, host::NodeHost::kRestoreMarker), ec)) {
    // Prepared already (a start from it was interrupted): it starts from
    // the snapshot it was prepared with, whatever epoch is asked for now.
    std::fprintf(stderr, "%s is prepared to start from a snapshot already%s\n", data_dir.c_str(),
                 epoch ? " (not fetching the epoch asked for: remove the directory for that)" : "");
    return Status::ok();
  }
  if (fs::is_directory(dir, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      if (parse_snapshot_file_name(e.path().filename().string())) {
        return invalid_argument(fmt::format(
            "{} holds snapshots but no superblock: not restoring over them (move the directory "
            "away first)",
            dir));
      }
    }
  }
  remove_partial_files(dir);
  auto store = objstore::open_store(config);
  if (!store) return store.status();
  auto chosen = objstore::choose_snapshot(**store, {.node_id = node_id, .epoch = epoch});
  if (!chosen) return chosen.status();
  fs::create_directories(dir, ec);
  if (ec) return io_error(fmt::format("{}: {}", dir, ec.message()));
  // Under a name no start takes for a snapshot until it is checked: an
  // interrupted fetch leaves nothing that blocks the next try.
  const std::string download = join_path(dir, kRestoreDownload);
  const std::string path = join_path(dir, snapshot_file_name(chosen->epoch));
  std::fprintf(stderr, "fetching %s (%.1f MiB) from %s\n", chosen->key.c_str(),
               chosen->bytes / 1048576.0, (*store)->describe().c_str());
  const auto began = std::chrono::steady_clock::now();
  if (Status s = objstore::fetch_snapshot(**store, *chosen, download,
                                          progress_printer("fetching " + chosen->key));
      !s) {
    return s;
  }
  PosixEnv env;
  if (Status s = check_restorable(download, chosen->key); !s) {
    (void)env.remove(download);
    return s;
  }
  if (Status s = env.rename(download, path); !s) return s;
  if (Status s = env.sync_dir(dir); !s) return s;
  if (Status s = host::NodeHost::mark_for_restore(env, dir, chosen->epoch); !s) return s;
  std::fprintf(stderr, "%s now starts from the snapshot of epoch %llu (fetched in %lld ms)\n",
               data_dir.c_str(), static_cast<unsigned long long>(chosen->epoch),
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - began)
                                          .count()));
  return Status::ok();
}

Status fetch_bootstrap(const objstore::StoreConfig& config, const std::string& data_dir,
                       uint64_t cluster_id) {
  if (holds_data(data_dir)) {
    return invalid_argument(fmt::format("{} already holds a node's data", data_dir));
  }
  auto store = objstore::open_store(config);
  if (!store) return store.status();
  auto chosen = objstore::choose_snapshot(**store, {});
  if (!chosen) return chosen.status();
  const std::string dir = data_dir + "/snapshots";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io_error(fmt::format("{}: {}", dir, ec.message()));
  remove_partial_files(dir);
  const std::string path = join_path(dir, host::NodeHost::kBootstrapName);
  std::fprintf(stderr, "fetching %s (%.1f MiB) from %s to start from\n", chosen->key.c_str(),
               chosen->bytes / 1048576.0, (*store)->describe().c_str());
  if (Status s = objstore::fetch_snapshot(**store, *chosen, path,
                                          progress_printer("fetching " + chosen->key));
      !s) {
    return s;
  }
  PosixEnv env;
  auto reader = SnapshotFileReader::open(env, path);
  Result<host::snapshot_layout::Header> header =
      reader ? host::snapshot_layout::decode_header((*reader)->header())
             : Result<host::snapshot_layout::Header>(reader.status());
  Status s = header ? Status::ok() : header.status();
  if (s && header->of_another_cluster(cluster_id)) {
    s = invalid_argument(fmt::format(
        "{} is a snapshot of {}; this node is of cluster {:016x} (one store prefix per cluster)",
        chosen->key,
        header->cluster_id == 0 ? std::string("a single node (maroon dev)")
                                : fmt::format("cluster {:016x}", header->cluster_id),
        cluster_id));
  }
  if (!s) (void)env.remove(path);
  return s;
}

int run_snapshot_list(const SnapshotListOptions& o) {
  auto store = open_url(o.store);
  if (!store) {
    std::fprintf(stderr, "maroon snapshot list: %s\n", store.status().to_string().c_str());
    return 1;
  }
  auto all = objstore::list_snapshots(**store, o.node);
  if (!all) {
    std::fprintf(stderr, "maroon snapshot list: %s\n", all.status().to_string().c_str());
    return 1;
  }
  if (all->empty()) {
    std::printf("no snapshots in %s\n", (*store)->describe().c_str());
    return 0;
  }
  std::printf("%-6s %-12s %14s  %s\n", "NODE", "EPOCH", "BYTES", "KEY");
  for (const objstore::StoredSnapshot& s : *all) {
    std::printf("%-6llu %-12llu %14llu  %s\n", static_cast<unsigned long long>(s.node_id),
                static_cast<unsigned long long>(s.epoch), static_cast<unsigned long long>(s.bytes),
                s.key.c_str());
  }
  return 0;
}

int run_snapshot_download(const SnapshotDownloadOptions& o) {
  auto store = open_url(o.store);
  if (!store) {
    std::fprintf(stderr, "maroon snapshot download: %s\n", store.status().to_string().c_str());
    return 1;
  }
  auto chosen = objstore::choose_snapshot(**store, {.node_id = o.node, .epoch = o.epoch});
  if (!chosen) {
    std::fprintf(stderr, "maroon snapshot download: %s\n", chosen.status().to_string().c_str());
    return 1;
  }
  std::error_code ec;
  std::string to = o.to;
  if (fs::is_directory(to, ec)) to = join_path(to, snapshot_file_name(chosen->epoch));
  const auto began = std::chrono::steady_clock::now();
  if (Status s = objstore::fetch_snapshot(**store, *chosen, to,
                                          progress_printer("downloading " + chosen->key));
      !s) {
    std::fprintf(stderr, "maroon snapshot download: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("%s: snapshot of node %llu at epoch %llu, %llu bytes, verified (%lld ms)\n",
              to.c_str(), static_cast<unsigned long long>(chosen->node_id),
              static_cast<unsigned long long>(chosen->epoch),
              static_cast<unsigned long long>(chosen->bytes),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - began)
                                         .count()));
  return 0;
}

int run_backup(const BackupOptions& options) {
  const ClientOptions& o = options.client;
  const std::string where = fmt::format("{}:{}", o.host, o.http_port);
  Result<HttpResponse> r =
      http_post(o.host, o.http_port, "/v1/admin/backup", kRequestTimeout, nullptr, o.token);
  if (!r) {
    std::fprintf(stderr, "maroon backup: %s: %s\n", where.c_str(), r.status().to_string().c_str());
    return 1;
  }
  if (r->status != 202) {
    std::fprintf(stderr, "maroon backup: %s answered HTTP %d: %s\n", where.c_str(), r->status,
                 r->body.c_str());
    return 1;
  }
  boost::system::error_code ec;
  json::value accepted = json::parse(r->body, ec);
  if (ec || !accepted.is_object()) {
    std::fprintf(stderr, "maroon backup: unexpected answer: %s\n", r->body.c_str());
    return 1;
  }
  const uint64_t uploads_before = uint_of(accepted.as_object(), "uploads");
  const uint64_t min_epoch = uint_of(accepted.as_object(), "min_epoch");
  const auto start = std::chrono::steady_clock::now();
  auto last_note = start;
  uint64_t failures_seen = 0;
  bool first = true;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Result<HttpResponse> st =
        http_get(o.host, o.http_port, "/v1/status", kRequestTimeout, nullptr, o.token);
    if (!st) {
      std::fprintf(stderr, "maroon backup: %s: %s\n", where.c_str(),
                   st.status().to_string().c_str());
      return 1;
    }
    json::value v = json::parse(st->body, ec);
    if (ec || !v.is_object() || !v.as_object().contains("backup") ||
        !v.as_object().at("backup").is_object()) {
      std::fprintf(stderr, "maroon backup: %s answered HTTP %d: %s\n", where.c_str(), st->status,
                   st->body.c_str());
      return 1;
    }
    const json::object& b = v.as_object().at("backup").as_object();
    // An older snapshot uploaded meanwhile is not the one asked for.
    if (uint_of(b, "uploads") > uploads_before && uint_of(b, "last_epoch") >= min_epoch) {
      std::printf("snapshot of epoch %llu (%llu bytes) uploaded to %s in %llu ms\n",
                  static_cast<unsigned long long>(uint_of(b, "last_epoch")),
                  static_cast<unsigned long long>(uint_of(b, "last_bytes")),
                  string_of(b, "store").c_str(),
                  static_cast<unsigned long long>(uint_of(b, "last_ms")));
      return 0;
    }
    // Failures are retried by the node; each is reported here.
    const uint64_t failures = uint_of(b, "failures");
    if (first) failures_seen = failures;
    first = false;
    if (failures > failures_seen) {
      failures_seen = failures;
      std::fprintf(stderr, "upload failed (the node retries): %s\n",
                   string_of(b, "error").c_str());
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (elapsed > std::chrono::seconds(options.wait_s)) {
      std::fprintf(stderr, "maroon backup: not uploaded within %llu s%s%s\n",
                   static_cast<unsigned long long>(options.wait_s),
                   string_of(b, "error").empty() ? "" : "; last error: ",
                   string_of(b, "error").c_str());
      return 1;
    }
    if (std::chrono::steady_clock::now() - last_note > std::chrono::seconds(2)) {
      last_note = std::chrono::steady_clock::now();
      std::fprintf(stderr, "backup %s (%llds)...\n",
                   b.contains("uploading") && b.at("uploading").is_bool() &&
                           b.at("uploading").get_bool()
                       ? "uploading"
                       : "waiting for the snapshot",
                   static_cast<long long>(
                       std::chrono::duration_cast<std::chrono::seconds>(elapsed).count()));
    }
  }
}

int run_restore(const RestoreOptions& o) {
  objstore::StoreConfig c;
  c.url = o.from;
  if (Status s = restore_data_dir(c, o.data_dir, /*node_id=*/1, o.epoch); !s) {
    std::fprintf(stderr, "maroon restore: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("restored: start it with `maroon dev --data-dir %s`\n", o.data_dir.c_str());
  return 0;
}

}  // namespace maroon::cli
