// A file descriptor that closes itself, and a poll with a deadline: the
// socket helpers the real-process tests (chaos, quorum) share.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace maroon::chaos {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

inline int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Waits until fd is ready for `events`; false on timeout or error.
inline bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  pollfd p{.fd = fd, .events = events, .revents = 0};
  for (;;) {
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

}  // namespace maroon::chaos
