#include "maroon/status.h"

#include <string_view>

namespace maroon {

const char* code_name(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kTooLarge: return "too large";
    case Code::kOverloaded: return "overloaded";
    case Code::kCorruption: return "corruption";
    case Code::kIoError: return "io error";
    case Code::kUnavailable: return "unavailable";
    case Code::kConflict: return "conflict";
    case Code::kWrongType: return "wrong type";
    case Code::kNoQuorum: return "no quorum";
    case Code::kOutcomeUnknown: return "outcome unknown";
    case Code::kUnauthenticated: return "unauthenticated";
    case Code::kPermissionDenied: return "permission denied";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  // A message that starts with its code's name ("no quorum; not executed:
  // ...") already says it.
  const std::string_view name = code_name(code_);
  if (std::string_view(message_).starts_with(name)) return message_;
  return std::string(name) + ": " + message_;
}

}  // namespace maroon
