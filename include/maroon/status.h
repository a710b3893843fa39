// Operating errors (bad input, full disk, peer gone) are values, never
// exceptions: Status for "did it work", Result<T> for "the value or why not".
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "maroon/assert.h"

namespace maroon {

enum class Code : unsigned char {
  kOk = 0,
  kInvalidArgument,  // malformed input from a client or peer
  kNotFound,
  kTooLarge,         // a limit was exceeded
  kOverloaded,       // backpressure: try again later
  kCorruption,       // a checksum or structure check failed on stored data
  kIoError,          // the OS refused a read, write or sync
  kUnavailable,      // not serving (starting, read-only after a WAL error, shutting down)
  kConflict,         // a conditional write's condition did not hold
  kWrongType,        // e.g. INCR on a value that is not an integer
  // The cluster has no working quorum and the request was refused before it
  // was sent anywhere: it was not executed and never will be. Retry later.
  kNoQuorum,
  // The request was sent but no result came in time (a client-facing bound,
  // e.g. unavailable_after_ms while the cluster has no quorum): it may or may
  // not take effect later.
  kOutcomeUnknown,
  kUnauthenticated,   // no credentials, or wrong ones
  kPermissionDenied,  // the user may not do this (a read-only user's write)
};
inline constexpr Code kCodeLast = Code::kPermissionDenied;

const char* code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
inline Status io_error(std::string m) { return {Code::kIoError, std::move(m)}; }
inline Status too_large(std::string m) { return {Code::kTooLarge, std::move(m)}; }
inline Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status overloaded(std::string m) { return {Code::kOverloaded, std::move(m)}; }
inline Status no_quorum(std::string m) { return {Code::kNoQuorum, std::move(m)}; }
inline Status outcome_unknown(std::string m) { return {Code::kOutcomeUnknown, std::move(m)}; }

// The value, or the Status that says why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    MAROON_ASSERT(!std::get<Status>(v_).is_ok());
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    MAROON_ASSERT(!is_ok());
    return std::get<Status>(v_);
  }
  T& value() & {
    MAROON_ASSERT(is_ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    MAROON_ASSERT(is_ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    MAROON_ASSERT(is_ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace maroon
