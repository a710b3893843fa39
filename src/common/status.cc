#include "common/status.h"

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
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(code_name(code_)) + ": " + message_;
}

}  // namespace maroon
