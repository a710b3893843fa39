#include "server/client_resources.h"

#include "server/users.h"

#include <sys/resource.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "maroon/assert.h"

namespace maroon::server {

const char* client_port_name(ClientPort port) {
  switch (port) {
    case ClientPort::kHttp: return "http";
    case ClientPort::kResp: return "resp";
    case ClientPort::kNative: return "native";
  }
  MAROON_UNREACHABLE();
}

ClientResources::ClientResources(ClientLimits limits, Registry* metrics)
    : limits_(limits),
      own_metrics_(metrics != nullptr ? nullptr : std::make_unique<Registry>()),
      metrics_(metrics != nullptr ? *metrics : *own_metrics_),
      refused_total_(metrics_.counter("maroon_client_connections_refused_total",
                                  "Client connections refused by the connection limits (all "
                                  "client ports, every reason).")),
      refused_per_address_(
          metrics_.counter("maroon_client_connections_refused_per_address_total",
                       "Client connections refused: connections_per_address_max reached.")),
      refused_descriptors_(metrics_.counter("maroon_client_connections_refused_descriptors_total",
                                        "Client connections refused: out of file descriptors.")),
      budget_refusals_(metrics_.counter("maroon_client_budget_refusals_total",
                                    "Requests or replies refused, or connections closed, because "
                                    "the client buffer budget was spent.")),
      timeouts_(metrics_.counter("maroon_client_timeouts_total",
                             "Client connections closed by request_timeout or stall_timeout.")),
      evictions_(metrics_.counter("maroon_client_evictions_total",
                                  "Idle client connections closed to make room for new ones.")),
      auth_failures_(metrics_.counter("maroon_client_auth_failures_total",
                                      "Logins refused: a wrong user name, password or token.")),
      tls_handshake_failures_{},
      buffered_gauge_(metrics_.gauge("maroon_client_buffered_bytes",
                                 "Bytes of client input and output held from the budget.")),
      connections_gauge_(metrics_.gauge("maroon_client_connections",
                                    "Open client connections, all client ports.")) {
  for (ClientPort port : {ClientPort::kHttp, ClientPort::kResp, ClientPort::kNative}) {
    tls_handshake_failures_[static_cast<size_t>(port)] = &metrics_.counter(
        "maroon_client_tls_handshake_failures_total",
        "Client connections closed because their TLS handshake failed or was not done within "
        "header_timeout.",
        fmt::format("port=\"{}\"", client_port_name(port)));
  }
  MAROON_ASSERT(limits_.connections_max > 0);
  MAROON_ASSERT(limits_.connections_per_address_max > 0);
  limits_.http_reserved_connections =
      std::min(limits_.http_reserved_connections, limits_.connections_max / 4);
  MAROON_ASSERT(limits_.buffer_bytes_max >= limits::message_bytes_max);
}

size_t ClientResources::clamp_to_descriptors(size_t descriptors) {
  const size_t room = descriptors > client_descriptor_reserve
                          ? descriptors - client_descriptor_reserve
                          : 0;
  const size_t max = std::max(client_connections_min, std::min(limits_.connections_max, room));
  limits_.connections_max = max;
  limits_.http_reserved_connections = std::min(limits_.http_reserved_connections, max / 4);
  return max;
}

std::optional<ClientResources::Refusal> ClientResources::check(
    ClientPort port, const boost::asio::ip::address& from) const {
  const size_t for_port = port == ClientPort::kHttp
                              ? limits_.connections_max
                              : limits_.connections_max - limits_.http_reserved_connections;
  if (connections_ >= for_port) return Refusal{.why = "max number of clients reached"};
  const auto it = per_address_.find(from);
  if (it != per_address_.end() && it->second >= limits_.connections_per_address_max) {
    return Refusal{.why = fmt::format("max number of clients from one address ({}) reached",
                                      limits_.connections_per_address_max),
                   .per_address = true};
  }
  return std::nullopt;
}

std::optional<ClientResources::Refusal> ClientResources::admit(
    ClientPort port, const boost::asio::ip::address& from) {
  if (auto refusal = check(port, from)) {
    refused_total_.inc();
    if (refusal->per_address) refused_per_address_.inc();
    log(log_refused_,
        fmt::format("{} port refused a connection from {}: {} ({} open)", client_port_name(port),
                    from.to_string(), refusal->why, connections_));
    return refusal;
  }
  per_address_[from]++;
  connections_++;
  connections_gauge_.set(static_cast<int64_t>(connections_));
  return std::nullopt;
}

void ClientResources::leave(const boost::asio::ip::address& from) {
  auto it = per_address_.find(from);
  MAROON_ASSERT(it != per_address_.end() && it->second > 0);
  MAROON_ASSERT(connections_ > 0);
  if (--it->second == 0) per_address_.erase(it);
  connections_--;
  connections_gauge_.set(static_cast<int64_t>(connections_));
}

void ClientResources::note_eviction(ClientPort port) {
  evictions_.inc();
  log(log_eviction_, fmt::format("{} port full: closed the connection idle the longest to make "
                                 "room ({} client connections open)",
                                 client_port_name(port), connections_));
}

void ClientResources::note_descriptors_exhausted(ClientPort port, std::string_view error) {
  refused_descriptors_.inc();
  refused_total_.inc();
  log(log_descriptors_,
      fmt::format("{} port: out of file descriptors at accept ({}); refusing connections "
                  "({} client connections open)",
                  client_port_name(port), error, connections_));
}

bool ClientResources::reserve(size_t bytes, ClientPort port, std::string_view what) {
  if (buffered_bytes_ > limits_.buffer_bytes_max ||
      bytes > limits_.buffer_bytes_max - buffered_bytes_) {
    budget_refusals_.inc();
    log(log_budget_, fmt::format("{} port: client buffer budget spent ({} of {} bytes held); "
                                 "refused {} bytes for {}",
                                 client_port_name(port), buffered_bytes_,
                                 limits_.buffer_bytes_max, bytes, what));
    return false;
  }
  buffered_bytes_ += bytes;
  buffered_gauge_.set(static_cast<int64_t>(buffered_bytes_));
  return true;
}

void ClientResources::take(size_t bytes) {
  buffered_bytes_ += bytes;
  buffered_gauge_.set(static_cast<int64_t>(buffered_bytes_));
}

void ClientResources::release(size_t bytes) {
  MAROON_ASSERT(bytes <= buffered_bytes_);
  buffered_bytes_ -= bytes;
  buffered_gauge_.set(static_cast<int64_t>(buffered_bytes_));
}

void ClientResources::note_timeout(ClientPort port, std::string_view what) {
  timeouts_.inc();
  log(log_timeout_, fmt::format("{} port: closed a connection: {}", client_port_name(port), what));
}

void ClientResources::note_auth_failure(ClientPort port, std::string_view from,
                                        std::string_view user) {
  auth_failures_.inc();
  log(log_auth_, fmt::format("{} port: login refused from {}{}", client_port_name(port), from,
                             user.empty()               ? std::string()
                             : valid_user_name(user) ? fmt::format(" as user \"{}\"", user)
                                                     : std::string(" as a user name not valid")));
}

void ClientResources::note_tls_handshake_failure(ClientPort port,
                                                 const boost::asio::ip::address& from,
                                                 std::string_view why) {
  tls_handshake_failures_[static_cast<size_t>(port)]->inc();
  log(log_tls_, fmt::format("{} port: TLS handshake with {} failed: {}", client_port_name(port),
                            from.to_string(), why));
}

uint64_t ClientResources::tls_handshake_failures() const {
  uint64_t n = 0;
  for (const Counter* c : tls_handshake_failures_) n += c->value();
  return n;
}

ClientResources::Counters ClientResources::counters() const {
  return {.refused_total = refused_total_.value(),
          .refused_per_address = refused_per_address_.value(),
          .refused_descriptors = refused_descriptors_.value(),
          .budget_refusals = budget_refusals_.value(),
          .timeouts = timeouts_.value(),
          .evictions = evictions_.value(),
          .auth_failures = auth_failures_.value(),
          .tls_handshake_failures = tls_handshake_failures()};
}

void ClientResources::log(LogLimit& limit, std::string_view message) {
  const auto now = std::chrono::steady_clock::now();
  if (now < limit.next) {
    limit.suppressed++;
    return;
  }
  if (limit.suppressed > 0) {
    spdlog::warn("{} ({} more like it in the last second)", message, limit.suppressed);
  } else {
    spdlog::warn("{}", message);
  }
  limit.suppressed = 0;
  limit.next = now + std::chrono::seconds(1);
}

bool BudgetHold::cover(size_t total, std::string_view what) {
  const size_t want = total > free_bytes_ ? total - free_bytes_ : 0;
  if (want > held_) {
    if (!resources_->reserve(want - held_, port_, what)) return false;
  } else if (want < held_) {
    resources_->release(held_ - want);
  }
  held_ = want;
  return true;
}

void BudgetHold::shrink_to(size_t total) {
  const size_t want = total > free_bytes_ ? total - free_bytes_ : 0;
  if (want >= held_) return;
  resources_->release(held_ - want);
  held_ = want;
}

void BudgetHold::release_all() {
  if (held_ == 0) return;
  resources_->release(held_);
  held_ = 0;
}

size_t raise_descriptor_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  return static_cast<size_t>(rl.rlim_cur);
}

}  // namespace maroon::server
