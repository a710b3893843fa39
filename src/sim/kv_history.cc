#include "sim/kv_history.h"

#include <fmt/format.h>

#include "check/linearizability.h"
#include "maroon/assert.h"

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

ResolvedOps resolve_pending_ops(
    std::vector<check::KvOperation>& history,
    const std::function<std::optional<KnownExecution>(size_t index)>& known) {
  ResolvedOps resolved;
  std::vector<check::KvOperation> kept;
  kept.reserve(history.size());
  for (size_t i = 0; i < history.size(); i++) {
    check::KvOperation& op = history[i];
    if (op.ret != check::kPending) {
      kept.push_back(std::move(op));
      continue;
    }
    std::optional<KnownExecution> e = known(i);
    if (!e) {
      resolved.never_ran++;
      continue;
    }
    MAROON_ASSERT(e->first_us >= op.call);
    op.ret = e->first_us;
    op.output = e->output;
    op.ok = e->ok;
    resolved.executed++;
    kept.push_back(std::move(op));
  }
  history = std::move(kept);
  return resolved;
}

void check_kv_linearizable(World& world, const std::vector<check::KvOperation>& history) {
  // A budget far above the library's default: a few histories with many
  // concurrent ops on one key need it (cluster seed 8137 took a few
  // seconds; seeds 25244 and 29749 of the hour-long sweep, one key, eight
  // clients and dozens of ops whose outcome the client never learned, about
  // 3.5 minutes each and more than the default 1 GiB of memo), and giving
  // up fails the run.
  check::CheckOptions options;
  options.steps_max = 5'000'000'000;
  options.memo_bytes_max = uint64_t{6} << 30;
  check::CheckResult lin = check::check_kv_history(history, options);
  if (lin.verdict == check::Verdict::kNotLinearizable) {
    world.fail(fmt::format("history not linearizable on key {}: {}", lin.key, lin.explanation));
  } else if (lin.verdict == check::Verdict::kUnknown) {
    world.fail(
        fmt::format("linearizability check gave up on key {} after {} steps", lin.key, lin.steps));
  }
}

}  // namespace maroon::sim
