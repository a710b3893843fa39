// The pieces of `maroon cluster up|down|start|stop` that the membership
// commands (membership_cmd.cc) share: a local cluster's processes, their pid
// files and logs in DIR, starting and stopping them, and waiting until they
// serve. Defined in cluster_cmd.cc.
#pragma once

#include <sys/types.h>

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cluster/config.h"
#include "maroon/status.h"

namespace maroon::cli {

inline constexpr char kConfigFile[] = "cluster.toml";
inline constexpr char kTlsDir[] = "tls";  // DIR/tls: the CA and every process's certificate
inline constexpr auto kPollInterval = std::chrono::milliseconds(50);
inline constexpr auto kProbeTimeout = std::chrono::milliseconds(500);
inline constexpr size_t kLogTailLines = 20;
inline constexpr unsigned kPortsPerNode = 4;

// One process of the cluster: a node or a standalone gateway.
struct Member {
  std::string kind;  // "node" | "gateway"
  uint32_t id = 0;
  std::string host;
  uint16_t http_port = 0;
  std::filesystem::path log;
  std::filesystem::path pid_file;
  std::filesystem::path data_dir;  // nodes only
  off_t log_start = 0;  // where this start's output begins in the log
  pid_t pid = 0;
  bool serving = false;
  std::string waiting_for;  // why it is not serving yet

  std::string name() const { return fmt::format("{} {}", kind, id); }
};

namespace local {

std::vector<Member> members_of(const cluster::ClusterConfig& c, const std::filesystem::path& dir);
std::optional<pid_t> read_pid_file(const std::filesystem::path& path);
// Crash-safe: a temporary file, fsynced, renamed over, the directory fsynced.
Status write_file_atomically(const std::filesystem::path& path, const std::string& contents);
bool is_alive(pid_t pid);
// Whether the pid is (still) `maroon node|gateway ...`.
bool is_maroon_member(pid_t pid);
std::string log_tail(const std::filesystem::path& path, off_t start, size_t lines_max);
std::string describe_exit(int status);
Result<std::vector<uint16_t>> pick_free_ports(size_t count);
// Starts `exe kind --config CONFIG --id ID [flags]` in its own session,
// output appended to the member's log.
Result<pid_t> spawn(const std::string& exe, Member& m, const std::filesystem::path& config_path,
                    bool new_cluster, const std::string& bootstrap_from, bool join);
std::string self_exe();
// Asks the member's /v1/status whether it serves; sets waiting_for if not.
void probe(Member& m, boost::asio::ssl::context* tls);
// Stops every started member (our children), removes their pid files.
void stop_started(std::vector<Member>& members);

}  // namespace local

// Waits until every member serves (true), or one exits or the timeout
// passes (false, after saying why with the end of its log).
bool wait_serving(std::vector<Member>& members, boost::asio::ssl::context* http_tls,
                  double timeout_seconds, const char* what);

}  // namespace maroon::cli
