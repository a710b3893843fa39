#include "sim/kv_service.h"

#include <fmt/format.h>

#include "common/codec.h"
#include "common/hash.h"

namespace maroon::sim {

std::string encode_command(const KvCommand& c) {
  std::string out;
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(c.kind));
  w.bytes(c.key);
  w.bytes(c.value);
  w.u8(c.expected.has_value());
  w.bytes(c.expected.value_or(""));
  w.bytes(std::string(c.padding_bytes, 'p'));
  return out;
}

std::optional<KvCommand> decode_command(std::string_view payload) {
  ByteReader r(payload);
  KvCommand c;
  uint8_t kind = 0, has_expected = 0;
  std::string_view key, value, expected, padding;
  if (!r.u8(kind) || kind > static_cast<uint8_t>(check::KvOpKind::kIncr) ||
      !r.bytes(key, 1024) || !r.bytes(value, 64 * 1024) || !r.u8(has_expected) ||
      !r.bytes(expected, 64 * 1024) || !r.bytes(padding, vr::limits::entry_bytes_max) ||
      !r.at_end()) {
    return std::nullopt;
  }
  c.kind = static_cast<check::KvOpKind>(kind);
  c.key = key;
  c.value = value;
  if (has_expected) c.expected = std::string(expected);
  c.padding_bytes = padding.size();
  return c;
}

std::string encode_result(const KvResult& r) {
  std::string out;
  ByteWriter w(out);
  w.u8(r.output.has_value());
  w.bytes(r.output.value_or(""));
  w.u8(r.ok);
  return out;
}

std::optional<KvResult> decode_result(std::string_view bytes) {
  ByteReader r(bytes);
  uint8_t has = 0, ok = 0;
  std::string_view output;
  if (!r.u8(has) || !r.bytes(output, 1 << 20) || !r.u8(ok) || !r.at_end()) return std::nullopt;
  KvResult res;
  if (has) res.output = std::string(output);
  res.ok = ok != 0;
  return res;
}

namespace {
check::KvOperation as_operation(const KvCommand& c) {
  check::KvOperation op;
  op.kind = c.kind;
  op.key = c.key;
  op.value = c.value;
  op.expected = c.expected;
  return op;
}
}  // namespace

std::string KvService::execute(const vr::Entry& entry) {
  std::string result = apply(entry);
  if (hook_) hook_(entry, result);
  return result;
}

std::string KvService::apply(const vr::Entry& entry) {
  uint64_t& highest = executed_[entry.client.value()];
  if (entry.request.value() <= highest) {
    violation_ = fmt::format("client {} request {} executed twice (second time at op {})",
                             entry.client.value(), entry.request.value(), entry.op.value());
  }
  highest = std::max(highest, entry.request.value());
  auto cmd = decode_command(entry.payload);
  if (!cmd) return encode_result({std::nullopt, false});
  check::KvState state;
  if (auto it = data_.find(cmd->key); it != data_.end()) state = it->second;
  check::KvOutcome outcome = check::kv_apply(state, as_operation(*cmd));
  if (outcome.changes_state) {
    if (outcome.next) {
      data_[cmd->key] = *outcome.next;
    } else {
      data_.erase(cmd->key);
    }
  }
  return encode_result({outcome.output, outcome.ok});
}

std::string KvService::read(std::string_view payload) {
  auto cmd = decode_command(payload);
  if (!cmd || cmd->kind != check::KvOpKind::kGet) return encode_result({std::nullopt, false});
  auto it = data_.find(cmd->key);
  return encode_result({it == data_.end() ? std::nullopt : std::optional(it->second), true});
}

std::string KvService::snapshot() {
  std::string out;
  ByteWriter w(out);
  w.varint(data_.size());
  for (const auto& [k, v] : data_) {
    w.bytes(k);
    w.bytes(v);
  }
  w.varint(executed_.size());
  for (const auto& [c, r] : executed_) {
    w.u64(c);
    w.u64(r);
  }
  return out;
}

Status KvService::restore(std::string_view snapshot) {
  ByteReader r(snapshot);
  uint64_t n = 0;
  std::map<std::string, std::string> data;
  std::map<uint64_t, uint64_t> executed;
  if (!r.varint(n)) return corruption("kv snapshot: malformed");
  for (uint64_t i = 0; i < n; i++) {
    std::string_view k, v;
    if (!r.bytes(k, 1024) || !r.bytes(v, 1 << 20)) return corruption("kv snapshot: malformed");
    data.emplace(k, v);
  }
  if (!r.varint(n)) return corruption("kv snapshot: malformed");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t c = 0, q = 0;
    if (!r.u64(c) || !r.u64(q)) return corruption("kv snapshot: malformed");
    executed[c] = q;
  }
  if (!r.at_end()) return corruption("kv snapshot: trailing bytes");
  data_ = std::move(data);
  executed_ = std::move(executed);
  return Status::ok();
}

uint64_t KvService::state_hash() const {
  uint64_t h = 0;
  for (const auto& [k, v] : data_) h = hash64(v, hash64(k, h));
  return h;
}

}  // namespace maroon::sim
