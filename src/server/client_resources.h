// What the client-facing servers of one process (HTTP, RESP, native) share:
// connection slots and the byte budget for buffered client input and output.
// One instance per process, created before the servers and outliving them;
// everything runs on the event-loop thread.
//
// Connections. At most connections_max client connections are open across
// all client ports, at most connections_per_address_max from one remote
// address, and the last http_reserved_connections slots go only to HTTP, so
// `/v1/status` and `/metrics` stay reachable when RESP or native clients take
// every other slot. connections_max is also clamped below the process's
// descriptor limit (clamp_to_descriptors), keeping a reserve for peers, WAL
// files and the servers' own sockets.
//
// Bytes. Buffers beyond a connection's small fixed ones (a request larger
// than the first read buffer, replies waiting for a client that does not read)
// take bytes from one budget of buffer_bytes_max. A connection that cannot
// get them refuses the request or reply with an error, or closes; either way
// the event is counted and logged, at most once a second per kind.
//
// Time. A request begun must be complete within request_timeout, HTTP
// headers within header_timeout (a keep-alive connection may idle longer
// before it begins the next request); output that makes no progress for
// stall_timeout closes the connection. Checked once a second.
#pragma once

#include <array>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "maroon/limits.h"
#include "server/metrics.h"

namespace maroon::server {

enum class ClientPort : uint8_t { kHttp, kResp, kNative };
inline constexpr size_t client_port_count = 3;
static_assert(static_cast<size_t>(ClientPort::kNative) + 1 == client_port_count);
const char* client_port_name(ClientPort port);

struct ClientLimits {
  size_t connections_max = limits::connections_max;
  size_t connections_per_address_max = 1024;
  size_t http_reserved_connections = 32;  // at most a quarter of connections_max
  size_t buffer_bytes_max = 256 * 1024 * 1024;
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds stall_timeout{60'000};
};

// Descriptors kept free of client connections: peers, WAL segments and
// snapshots, the listeners, epoll and timers, and the spare each listener
// holds to refuse a connection when descriptors run out.
inline constexpr size_t client_descriptor_reserve = 128;
// Below this many client connections after clamping, serving makes no sense.
inline constexpr size_t client_connections_min = 16;
// Bytes a connection may buffer without asking the budget: its first read
// buffer and small replies. Keeps the common path free of bookkeeping.
inline constexpr size_t client_free_bytes = 64 * 1024;

class ClientResources {
 public:
  // Metrics are registered in `metrics`; null keeps them in a private registry.
  explicit ClientResources(ClientLimits limits = {}, Registry* metrics = nullptr);
  ClientResources(const ClientResources&) = delete;
  ClientResources& operator=(const ClientResources&) = delete;

  const ClientLimits& limits() const { return limits_; }

  // Lowers connections_max to fit under `descriptors` (the process's open
  // file limit) minus client_descriptor_reserve. Returns the new maximum.
  size_t clamp_to_descriptors(size_t descriptors);

  // Why a connection was refused: a message fit for the client (e.g. "max
  // number of clients reached"), and whether the per-address limit did it.
  struct Refusal {
    std::string why;
    bool per_address = false;
  };
  // Why admit() would refuse now, without counting anything.
  std::optional<Refusal> check(ClientPort port, const boost::asio::ip::address& from) const;
  // Takes a slot for a new connection, or says why not. Counted and logged.
  std::optional<Refusal> admit(ClientPort port, const boost::asio::ip::address& from);
  // Gives back the slot admit() took.
  void leave(const boost::asio::ip::address& from);
  size_t connections() const { return connections_; }

  // A full listener closed an idle connection to make room.
  void note_eviction(ClientPort port);
  // A listener ran out of descriptors at accept and refused a connection.
  void note_descriptors_exhausted(ClientPort port, std::string_view error);

  // Takes `bytes` from the budget; false (counted, logged) when that would
  // pass buffer_bytes_max.
  [[nodiscard]] bool reserve(size_t bytes, ClientPort port, std::string_view what);
  // Takes bytes already buffered that cannot be refused (a write's reply);
  // the budget may go past its maximum by them.
  void take(size_t bytes);
  void release(size_t bytes);
  size_t buffered_bytes() const { return buffered_bytes_; }

  // A connection closed by request_timeout or stall_timeout.
  void note_timeout(ClientPort port, std::string_view what);
  // A client gave a wrong user name or password (or token); `from` is its
  // address, `user` the name it gave (empty for a bare password or token).
  void note_auth_failure(ClientPort port, std::string_view from, std::string_view user);
  // A TLS port's handshake failed or was not done within header_timeout
  // (plaintext to a TLS port, a refused client certificate, a silent client).
  void note_tls_handshake_failure(ClientPort port, const boost::asio::ip::address& from,
                                  std::string_view why);

  struct Counters {
    uint64_t refused_total = 0;        // connections refused by slot limits
    uint64_t refused_per_address = 0;  // of which for the per-address limit
    uint64_t refused_descriptors = 0;  // refused because accept hit EMFILE/ENFILE
    uint64_t budget_refusals = 0;      // reserve() calls refused
    uint64_t timeouts = 0;
    uint64_t evictions = 0;
    uint64_t auth_failures = 0;
    uint64_t tls_handshake_failures = 0;  // all ports
  };
  Counters counters() const;

 private:
  // At most one log line per kind per second; the next says how many were
  // suppressed meanwhile.
  struct LogLimit {
    std::chrono::steady_clock::time_point next{};
    uint64_t suppressed = 0;
  };
  void log(LogLimit& limit, std::string_view message);
  uint64_t tls_handshake_failures() const;

  ClientLimits limits_;
  std::unique_ptr<Registry> own_metrics_;
  Registry& metrics_;
  Counter& refused_total_;
  Counter& refused_per_address_;
  Counter& refused_descriptors_;
  Counter& budget_refusals_;
  Counter& timeouts_;
  Counter& evictions_;
  Counter& auth_failures_;
  std::array<Counter*, client_port_count> tls_handshake_failures_;  // by ClientPort
  Gauge& buffered_gauge_;
  Gauge& connections_gauge_;
  size_t connections_ = 0;
  size_t buffered_bytes_ = 0;
  std::map<boost::asio::ip::address, size_t> per_address_;
  LogLimit log_refused_, log_descriptors_, log_budget_, log_timeout_, log_eviction_, log_auth_,
      log_tls_;
};

// A connection's share of the budget: what it holds, given back as its
// buffers shrink and all at once when it closes (or is destroyed).
class BudgetHold {
 public:
  // `free_bytes`: what it holds without asking (a connection's first buffers
  // take client_free_bytes; what a connection may have many of, none).
  BudgetHold(ClientResources& resources, ClientPort port, size_t free_bytes = client_free_bytes)
      : resources_(&resources), port_(port), free_bytes_(free_bytes) {}
  ~BudgetHold() { release_all(); }
  BudgetHold(const BudgetHold&) = delete;
  BudgetHold& operator=(const BudgetHold&) = delete;

  // Holds exactly `bytes` beyond client_free_bytes of `total` buffered bytes:
  // asks the budget for more or gives back. False (holding what it had) when
  // the budget refused.
  [[nodiscard]] bool cover(size_t total, std::string_view what);
  // Gives back what `total` buffered bytes no longer need; never asks for more
  // (bytes buffered past what it holds, e.g. an error sent in place of a
  // refused reply, stay uncounted until they are written).
  void shrink_to(size_t total);
  void release_all();
  size_t held() const { return held_; }

 private:
  ClientResources* resources_;
  ClientPort port_;
  size_t free_bytes_;
  size_t held_ = 0;
};

// Raises the soft limit on open files to the hard limit; returns the limit
// in effect (0 if it cannot be read).
size_t raise_descriptor_limit();

}  // namespace maroon::server
