#include "check/history.h"

#include <fmt/format.h>

#include <charconv>

namespace maroon::check {

namespace {

// Longer values are cut in explanations: a failure report names ops, it does
// not need to reproduce megabyte values.
constexpr size_t kDescribedValueBytesMax = 48;

// The kv app's integer form: what std::to_string would print for an int64.
std::optional<int64_t> parse_canonical_int64(const std::string& s) {
  int64_t n = 0;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, n);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  if (std::to_string(n) != s) return std::nullopt;  // "+1", "007", "-0"
  return n;
}

const char* kind_name(KvOpKind kind) {
  switch (kind) {
    case KvOpKind::kGet:
      return "get";
    case KvOpKind::kPut:
      return "put";
    case KvOpKind::kAppend:
      return "append";
    case KvOpKind::kCas:
      return "cas";
    case KvOpKind::kIncr:
      return "incr";
  }
  MAROON_UNREACHABLE();
}

}  // namespace

KvOutcome kv_apply(const KvState& state, const KvOperation& op) {
  switch (op.kind) {
    case KvOpKind::kGet:
      return KvOutcome{.changes_state = false, .next = {}, .output = state, .ok = true};
    case KvOpKind::kPut:
      return KvOutcome{.changes_state = true, .next = op.value, .output = {}, .ok = true};
    case KvOpKind::kAppend:
      return KvOutcome{
          .changes_state = true, .next = state.value_or("") + op.value, .output = {}, .ok = true};
    case KvOpKind::kCas:
      if (state == op.expected) {
        return KvOutcome{.changes_state = true, .next = op.value, .output = {}, .ok = true};
      }
      return KvOutcome{.changes_state = false, .next = {}, .output = {}, .ok = false};
    case KvOpKind::kIncr: {
      const std::optional<int64_t> n = state ? parse_canonical_int64(*state) : int64_t{0};
      if (!n || *n == std::numeric_limits<int64_t>::max()) {
        return KvOutcome{.changes_state = false, .next = {}, .output = {}, .ok = false};
      }
      std::string next = std::to_string(*n + 1);
      return KvOutcome{.changes_state = true, .next = next, .output = next, .ok = true};
    }
  }
  MAROON_UNREACHABLE();
}

bool kv_outputs_match(const KvOperation& op, const KvOutcome& outcome) {
  if (op.ret == kPending) return true;
  switch (op.kind) {
    case KvOpKind::kGet:
    case KvOpKind::kIncr:
      return op.output == outcome.output;
    case KvOpKind::kCas:
      return op.ok == outcome.ok;
    case KvOpKind::kPut:
    case KvOpKind::kAppend:
      return true;
  }
  MAROON_UNREACHABLE();
}

Status validate_history(const std::vector<KvOperation>& history) {
  for (size_t i = 0; i < history.size(); i++) {
    const KvOperation& op = history[i];
    if (static_cast<uint8_t>(op.kind) > static_cast<uint8_t>(KvOpKind::kIncr)) {
      return invalid_argument(fmt::format("op {}: unknown kind {}", i, uint8_t(op.kind)));
    }
    if (op.call == kPending) {
      return invalid_argument(fmt::format("op {}: call time is kPending", i));
    }
    if (op.ret < op.call) {
      return invalid_argument(
          fmt::format("op {}: returns at {} before its call at {}", i, op.ret, op.call));
    }
  }
  return Status::ok();
}

std::string describe_value(const std::optional<std::string>& value) {
  if (!value) return "absent";
  std::string out = "\"";
  const size_t shown = std::min(value->size(), kDescribedValueBytesMax);
  for (size_t i = 0; i < shown; i++) {
    const auto c = static_cast<unsigned char>((*value)[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (shown < value->size()) out += fmt::format("...({} bytes)", value->size());
  return out;
}

std::string describe_op(const KvOperation& op) {
  const bool pending = op.ret == kPending;
  std::string what;
  switch (op.kind) {
    case KvOpKind::kGet:
      what = pending ? "get -> ?" : fmt::format("get -> {}", describe_value(op.output));
      break;
    case KvOpKind::kPut:
    case KvOpKind::kAppend:
      what = fmt::format("{} {}", kind_name(op.kind), describe_value(op.value));
      break;
    case KvOpKind::kCas:
      what = fmt::format("cas {} => {}{}", describe_value(op.expected), describe_value(op.value),
                         pending ? " -> ?" : (op.ok ? " -> swapped" : " -> not swapped"));
      break;
    case KvOpKind::kIncr:
      what = pending ? "incr -> ?"
                     : fmt::format("incr -> {}", op.output ? describe_value(op.output) : "failed");
      break;
  }
  const std::string ret = pending ? "pending" : std::to_string(op.ret);
  return fmt::format("client {} {} [call {}, ret {}]", op.client, what, op.call, ret);
}

}  // namespace maroon::check
