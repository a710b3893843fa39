#include "sim/kv_history.h"

#include <fmt/format.h>

#include "check/linearizability.h"

namespace maroon::sim {

const char* kv_op_name(check::KvOpKind k) {
  switch (k) {
    case check::KvOpKind::kGet:
      return "get";
    case check::KvOpKind::kPut:
      return "put";
    case check::KvOpKind::kAppend:
      return "append";
    case check::KvOpKind::kCas:
      return "cas";
    case check::KvOpKind::kIncr:
      return "incr";
  }
  return "?";
}

void check_kv_linearizable(World& world, const std::vector<check::KvOperation>& history) {
  check::CheckResult lin = check::check_kv_history(history);
  if (lin.verdict == check::Verdict::kNotLinearizable) {
    world.fail(fmt::format("history not linearizable on key {}: {}", lin.key, lin.explanation));
  } else if (lin.verdict == check::Verdict::kUnknown) {
    world.fail(
        fmt::format("linearizability check gave up on key {} after {} steps", lin.key, lin.steps));
  }
}

}  // namespace maroon::sim
