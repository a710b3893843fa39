#include "chaos_history.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "maroon/assert.h"

namespace maroon::chaos {

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::kGet:
      return "get";
    case OpKind::kSet:
      return "set";
    case OpKind::kCas:
      return "cas";
    case OpKind::kIncr:
      return "incr";
  }
  return "?";
}

const char* outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "?";
}

std::vector<check::KvOperation> to_checker_history(const std::vector<ChaosOp>& ops) {
  std::vector<check::KvOperation> out;
  out.reserve(ops.size());
  for (const ChaosOp& op : ops) {
    if (op.outcome == Outcome::kFailed) continue;
    check::KvOperation k;
    k.client = op.client;
    k.call = op.call_us;
    k.ret = op.outcome == Outcome::kOk ? std::max(op.ret_us, op.call_us) : check::kPending;
    k.key = op.key;
    switch (op.kind) {
      case OpKind::kGet:
        k.kind = check::KvOpKind::kGet;
        k.output = op.output;
        break;
      case OpKind::kSet:
        k.kind = check::KvOpKind::kPut;
        k.value = op.value;
        break;
      case OpKind::kCas:
        k.kind = check::KvOpKind::kCas;
        k.value = op.value;
        k.expected = op.expected;
        k.ok = op.cas_swapped;
        break;
      case OpKind::kIncr:
        k.kind = check::KvOpKind::kIncr;
        k.output = op.output;
        break;
    }
    out.push_back(std::move(k));
  }
  return out;
}

namespace {

std::optional<int64_t> parse_int(const std::optional<std::string>& text) {
  if (!text) return int64_t{0};  // absent counts as 0, as INCR treats it
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return v;
}

std::string describe(const ChaosOp& op) {
  std::string what;
  switch (op.kind) {
    case OpKind::kSet:
      what = fmt::format("set {}", check::describe_value(op.value));
      break;
    case OpKind::kCas:
      what = fmt::format("cas {} -> {}", check::describe_value(op.expected),
                         check::describe_value(op.value));
      break;
    case OpKind::kIncr:
      what = fmt::format("incr -> {}", check::describe_value(op.output));
      break;
    case OpKind::kGet:
      what = fmt::format("get -> {}", check::describe_value(op.output));
      break;
  }
  if (op.outcome == Outcome::kOk) {
    return fmt::format("client {} {} via node {} [{} us .. {} us]", op.client, what, op.node,
                       op.call_us, op.ret_us);
  }
  return fmt::format("client {} {} via node {} [{} us .. {} {}]", op.client, what, op.node,
                     op.call_us, outcome_name(op.outcome), op.error);
}

// A write that took effect for sure: an acknowledged set, or a cas that swapped.
bool acknowledged_write(const ChaosOp& op) {
  return op.outcome == Outcome::kOk &&
         (op.kind == OpKind::kSet || (op.kind == OpKind::kCas && op.cas_swapped));
}

void check_register(const std::string& key, const std::vector<const ChaosOp*>& ops,
                    const std::optional<std::string>& final_value, WriteCheck& r) {
  std::vector<const ChaosOp*> acked;
  const ChaosOp* writer = nullptr;  // the op that wrote final_value
  for (const ChaosOp* op : ops) {
    if (acknowledged_write(*op)) acked.push_back(op);
    if (final_value && (op->kind == OpKind::kSet || op->kind == OpKind::kCas) &&
        op->value == *final_value) {
      MAROON_ASSERT(writer == nullptr);  // values are unique per run
      writer = op;
    }
  }
  r.acknowledged_writes += acked.size();
  if (!final_value) {
    if (!acked.empty()) {
      r.lost += acked.size();
      r.problems.push_back(
          fmt::format("key {}: absent at the end, yet {} writes were acknowledged, "
                      "the last called: {}",
                      key, acked.size(), describe(*acked.back())));
    }
    return;
  }
  if (writer == nullptr) {
    r.problems.push_back(fmt::format("key {}: the final value {} was never written by a client",
                                     key, check::describe_value(final_value)));
    return;
  }
  const bool not_applied =
      writer->outcome == Outcome::kFailed ||
      (writer->outcome == Outcome::kOk && writer->kind == OpKind::kCas && !writer->cas_swapped);
  if (not_applied) {
    r.problems.push_back(fmt::format(
        "key {}: the final value comes from a write the server said was not applied: {}", key,
        describe(*writer)));
    return;
  }
  if (writer->outcome != Outcome::kOk) return;  // unknown: it may have landed last
  size_t overwritten = 0;
  const ChaosOp* first = nullptr;
  for (const ChaosOp* op : acked) {
    if (op->call_us > writer->ret_us) {
      overwritten++;
      if (first == nullptr || op->call_us < first->call_us) first = op;
    }
  }
  if (overwritten > 0) {
    r.lost += overwritten;
    r.problems.push_back(fmt::format(
        "key {}: final value written by {}, but {} acknowledged writes started after it was "
        "acknowledged and are gone, the first: {}",
        key, describe(*writer), overwritten, describe(*first)));
  }
}

void check_counter(const std::string& key, const std::vector<const ChaosOp*>& ops,
                   const std::optional<std::string>& final_value, WriteCheck& r) {
  int64_t acked = 0, unknown = 0, highest = 0;
  const ChaosOp* highest_op = nullptr;
  for (const ChaosOp* op : ops) {
    if (op->kind != OpKind::kIncr) continue;
    if (op->outcome == Outcome::kUnknown) unknown++;
    if (op->outcome != Outcome::kOk || !op->output) continue;  // failed, or kWrongType
    acked++;
    std::optional<int64_t> v = parse_int(op->output);
    if (v && *v > highest) {
      highest = *v;
      highest_op = op;
    }
  }
  r.acknowledged_writes += static_cast<size_t>(acked);
  std::optional<int64_t> final_count = parse_int(final_value);
  if (!final_count) {
    r.problems.push_back(fmt::format("key {}: counter holds {}, not an integer", key,
                                     check::describe_value(final_value)));
    return;
  }
  if (*final_count < acked) {
    r.lost += static_cast<size_t>(acked - *final_count);
    r.problems.push_back(fmt::format("key {}: counter is {} after {} acknowledged increments", key,
                                     *final_count, acked));
  } else if (*final_count < highest) {
    r.lost += static_cast<size_t>(highest - *final_count);
    r.problems.push_back(fmt::format("key {}: counter is {}, but an increment returned {}: {}", key,
                                     *final_count, highest, describe(*highest_op)));
  }
  if (*final_count > acked + unknown) {
    r.problems.push_back(fmt::format(
        "key {}: counter is {}, more than the {} acknowledged plus {} unknown increments", key,
        *final_count, acked, unknown));
  }
}

}  // namespace

WriteCheck check_acknowledged_writes(
    const std::vector<ChaosOp>& ops,
    const std::map<std::string, std::optional<std::string>>& final_values,
    const std::set<std::string>& counter_keys) {
  std::unordered_map<std::string, std::vector<const ChaosOp*>> by_key;
  for (const ChaosOp& op : ops) by_key[op.key].push_back(&op);
  WriteCheck r;
  for (const auto& [key, final_value] : final_values) {
    r.keys++;
    const std::vector<const ChaosOp*>& key_ops = by_key[key];
    if (counter_keys.contains(key)) {
      check_counter(key, key_ops, final_value, r);
    } else {
      check_register(key, key_ops, final_value, r);
    }
  }
  return r;
}

std::string format_history(const std::vector<ChaosOp>& ops) {
  std::string out = "# call_us\tret_us\tclient\tnode\top\tkey\tinput\toutcome\toutput\terror\n";
  for (const ChaosOp& op : ops) {
    std::string input;
    if (op.kind == OpKind::kSet) input = op.value;
    if (op.kind == OpKind::kCas)
      input = fmt::format("{}->{}", op.expected ? *op.expected : "(absent)", op.value);
    std::string output = "-";
    if (op.outcome == Outcome::kOk) {
      if (op.kind == OpKind::kCas) output = op.cas_swapped ? "swapped" : "conflict";
      if (op.kind == OpKind::kSet) output = "ok";
      if (op.kind == OpKind::kGet || op.kind == OpKind::kIncr)
        output = op.output ? *op.output : "(nil)";
    }
    out += fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", op.call_us, op.ret_us, op.client,
                       op.node, op_kind_name(op.kind), op.key, input, outcome_name(op.outcome),
                       output, op.error);
  }
  return out;
}

}  // namespace maroon::chaos
