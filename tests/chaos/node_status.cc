#include "node_status.h"

#include "fd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace maroon::chaos {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kResponseBytesMax = 1 << 20;


Result<std::string> http_get_raw(const std::string& host, uint16_t port, std::string_view target,
                                 std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return invalid_argument("not an IPv4 address: " + host);
  }
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return unavailable(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) return unavailable(std::string("connect: ") + std::strerror(errno));
    if (!wait_fd(fd.get(), POLLOUT, deadline)) return unavailable("connect: timed out");
    int so_error = 0;
    socklen_t len = sizeof so_error;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error != 0) return unavailable(std::string("connect: ") + std::strerror(so_error));
  }
  std::string request =
      "GET " + std::string(target) + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd.get(), POLLOUT, deadline)) return unavailable("send: timed out");
    } else {
      return unavailable(std::string("send: ") + std::strerror(errno));
    }
  }
  std::string response;
  char buf[16384];
  for (;;) {
    // Done once the head and Content-Length bytes of body are in.
    size_t head_end = response.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      std::string_view head(response.data(), head_end);
      size_t cl = std::string::npos;
      for (size_t pos = 0; pos < head.size();) {
        size_t eol = head.find("\r\n", pos);
        if (eol == std::string_view::npos) eol = head.size();
        std::string_view line = head.substr(pos, eol - pos);
        constexpr std::string_view kName = "content-length:";
        if (line.size() > kName.size() &&
            ::strncasecmp(line.data(), kName.data(), kName.size()) == 0) {
          cl = std::strtoull(std::string(line.substr(kName.size())).c_str(), nullptr, 10);
        }
        pos = eol + 2;
      }
      if (cl != std::string::npos && response.size() >= head_end + 4 + cl) {
        response.resize(head_end + 4 + cl);
        return response;
      }
    }
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
      if (response.size() > kResponseBytesMax) return unavailable("response too large");
    } else if (n == 0) {
      return response;  // closed: whatever came is the response
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_fd(fd.get(), POLLIN, deadline)) return unavailable("no answer in time");
    } else {
      return unavailable(std::string("recv: ") + std::strerror(errno));
    }
  }
}

}  // namespace

Result<NodeStatus> get_node_status(const std::string& host, uint16_t port,
                                   std::chrono::milliseconds timeout) {
  Result<std::string> raw = http_get_raw(host, port, "/v1/status", timeout);
  if (!raw.is_ok()) return raw.status();
  const std::string& text = *raw;
  NodeStatus s;
  if (text.rfind("HTTP/1.", 0) != 0 || text.size() < 12) return unavailable("not an HTTP response");
  s.http_status = std::atoi(text.c_str() + 9);
  size_t head_end = text.find("\r\n\r\n");
  if (head_end == std::string::npos) return unavailable("truncated HTTP response");
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(std::string_view(text).substr(head_end + 4), ec);
  if (ec || !v.is_object()) return unavailable("status body is not a JSON object");
  const boost::json::object& o = v.as_object();
  auto u64 = [&](const char* name) -> uint64_t {
    const boost::json::value* f = o.if_contains(name);
    if (f == nullptr) return 0;
    if (f->is_uint64()) return f->get_uint64();
    if (f->is_int64() && f->get_int64() >= 0) return static_cast<uint64_t>(f->get_int64());
    return 0;
  };
  auto str = [&](const char* name) -> std::string {
    const boost::json::value* f = o.if_contains(name);
    return f != nullptr && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  const boost::json::value* serving = o.if_contains("serving");
  s.serving =
      s.http_status == 200 && serving != nullptr && serving->is_bool() && serving->get_bool();
  s.role = str("role");
  s.view = u64("view");
  s.primary = u64("primary");
  s.applied_epoch = u64("applied_epoch");
  s.commit_epoch = u64("commit_epoch");
  s.state_hash = str("state_hash");
  s.detail = str("detail");
  if (const boost::json::value* snap = o.if_contains("snapshot"); snap && snap->is_object()) {
    if (const boost::json::value* t = snap->as_object().if_contains("transfer");
        t && t->is_object()) {
      const boost::json::object& to = t->as_object();
      if (const auto* n = to.if_contains("installed"); n && n->is_uint64()) {
        s.snapshots_installed = n->get_uint64();
      } else if (n && n->is_int64() && n->get_int64() >= 0) {
        s.snapshots_installed = static_cast<uint64_t>(n->get_int64());
      }
      if (const auto* b = to.if_contains("needed"); b && b->is_bool()) s.snapshot_needed = b->get_bool();
    }
  }
  return s;
}

}  // namespace maroon::chaos
