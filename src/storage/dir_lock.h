// An exclusive lock on a data directory, held for the life of the process
// (flock on DIR/LOCK). Two processes on one WAL would each take the other's
// unsynced tail for a torn write and overwrite acknowledged data.
#pragma once

#include <string>

#include "maroon/status.h"

namespace maroon {

class DirLock {
 public:
  // kUnavailable if another process holds the lock.
  static Result<DirLock> acquire(const std::string& dir);
  DirLock(DirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirLock& operator=(DirLock&&) = delete;
  DirLock(const DirLock&) = delete;
  ~DirLock();

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace maroon
