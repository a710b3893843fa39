#include "maroon/fiber_app.h"

#include <fmt/format.h>

#include "common/codec.h"
#include "fiber/fiber_runtime.h"
#include "maroon/limits.h"

namespace maroon {

namespace {

constexpr uint8_t kStart = 1, kSend = 2, kResolve = 3, kCancel = 4, kGet = 5;
// The state's bytes in a snapshot, at most (it is copied whole).
constexpr size_t kStateBytesMax = size_t{1} << 31;

std::string op(uint8_t kind, std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::string out;
  ByteWriter w(out);
  w.u8(kind);
  w.bytes(a);
  if (kind == kSend || kind == kResolve || kind == kStart) w.bytes(b);
  if (kind == kStart) w.bytes(c);
  return out;
}

std::string error_reply(const Status& s) {
  std::string out;
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(s.code()));
  w.bytes(s.message());
  return out;
}

std::string ok_reply(bool ok) {
  std::string out;
  ByteWriter w(out);
  w.u8(0);
  w.u8(ok ? 1 : 0);
  return out;
}

// A name as an error message shows it: at most 64 bytes, so that no reply
// grows with the op (replies are bounded by limits::reply_bytes_max).
std::string shown(std::string_view name) {
  constexpr size_t kShownBytesMax = 64;
  return name.size() <= kShownBytesMax ? std::string(name)
                                       : std::string(name.substr(0, kShownBytesMax)) + "...";
}

class FiberApp final : public StateMachine {
 public:
  FiberApp(const FiberTypes& types, FiberLimits limits)
      : limits_(limits), runtime_(types, limits) {}

  std::string apply(const TxContext& ctx, std::string_view bytes) override {
    runtime_.advance_time(ctx.logical_time_ms);
    ByteReader r(bytes);
    uint8_t kind = 0;
    std::string_view a, b, c;
    constexpr size_t kFieldMax = size_t{64} << 20;
    if (!r.u8(kind) || kind < kStart || kind > kGet || !r.bytes(a, kFieldMax)) {
      return error_reply(invalid_argument("not a fiber op"));
    }
    if ((kind == kSend || kind == kResolve || kind == kStart) && !r.bytes(b, kFieldMax)) {
      return error_reply(invalid_argument("not a fiber op"));
    }
    if (kind == kStart && !r.bytes(c, kFieldMax)) {
      return error_reply(invalid_argument("not a fiber op"));
    }
    if (!r.at_end()) return error_reply(invalid_argument("not a fiber op: trailing bytes"));
    // Names and payloads within the runtime's limits, before anything else
    // (errors then never echo more than a short name).
    const bool payload = kind == kSend || kind == kResolve;
    if (a.size() > limits_.name_bytes_max ||
        (kind == kStart && b.size() > limits_.name_bytes_max)) {
      return error_reply(
          too_large(fmt::format("a name of more than {} bytes", limits_.name_bytes_max)));
    }
    if ((payload && b.size() > limits_.message_bytes_max) ||
        (kind == kStart && c.size() > limits_.message_bytes_max)) {
      return error_reply(
          too_large(fmt::format("a payload of more than {} bytes", limits_.message_bytes_max)));
    }
    switch (kind) {
      case kStart: {
        Status s = runtime_.start(a, b, c);
        return s ? ok_reply(true) : error_reply(s);
      }
      case kSend:
        return ok_reply(runtime_.send(a, b));
      case kResolve:
        return ok_reply(runtime_.resolve(a, b));
      case kCancel:
        return ok_reply(runtime_.cancel(a));
      default:
        return get(a);
    }
  }

  std::string read(std::string_view bytes) const override {
    ByteReader r(bytes);
    uint8_t kind = 0;
    std::string_view fiber;
    if (!r.u8(kind) || kind != kGet || !r.bytes(fiber, 1 << 20) || !r.at_end()) {
      return error_reply(invalid_argument("only get reads"));
    }
    return get(fiber);
  }

  uint64_t state_hash() const override { return runtime_.state_hash(); }

  // Each epoch: timers due fire even when no tx of this app is applied.
  void advance_time(uint64_t logical_time_ms) override { runtime_.advance_time(logical_time_ms); }

  std::unique_ptr<AppSnapshotCursor> begin_snapshot() override {
    return std::make_unique<CopiedSnapshotCursor>(runtime_.encode());
  }

  Status restore(SnapshotPieces& pieces) override {
    Result<std::string> all = read_all_pieces(pieces, kStateBytesMax);
    if (!all) return all.status();
    return runtime_.restore(*all);
  }

 private:
  std::string get(std::string_view fiber) const {
    std::optional<FiberRuntime::Info> info = runtime_.info(fiber);
    if (!info) {
      return error_reply(Status(Code::kNotFound, fmt::format("no fiber \"{}\"", shown(fiber))));
    }
    std::string out;
    ByteWriter w(out);
    w.u8(0);
    w.u8(static_cast<uint8_t>(info->state));
    w.u8(info->cancelled ? 1 : 0);
    w.bytes(info->type);
    w.u32(info->version);
    w.bytes(info->result);
    w.varint(info->history_events);
    return out;
  }

  const FiberLimits limits_;
  FiberRuntime runtime_;
};

}  // namespace

std::unique_ptr<StateMachine> make_fiber_app(const FiberTypes& types, FiberLimits limits) {
  return std::make_unique<FiberApp>(types, limits);
}

namespace fiber_op {
std::string start(std::string_view type, std::string_view id, std::string_view args) {
  return op(kStart, type, id, args);
}
std::string send(std::string_view queue, std::string_view message) {
  return op(kSend, queue, message);
}
std::string resolve(std::string_view future, std::string_view value) {
  return op(kResolve, future, value);
}
std::string cancel(std::string_view fiber) { return op(kCancel, fiber); }
std::string get(std::string_view fiber) { return op(kGet, fiber); }
}  // namespace fiber_op

Result<FiberReply> decode_fiber_reply(uint8_t kind, std::string_view bytes) {
  ByteReader r(bytes);
  FiberReply reply;
  uint8_t code = 0;
  if (!r.u8(code) || code > static_cast<uint8_t>(kCodeLast)) {
    return invalid_argument("not a fiber reply");
  }
  reply.code = static_cast<Code>(code);
  if (reply.code != Code::kOk) {
    std::string_view message;
    if (!r.bytes(message, limits::reply_bytes_max) || !r.at_end()) {
      return invalid_argument("not a fiber reply");
    }
    reply.error = std::string(message);
    return reply;
  }
  if (kind == kGet) {
    std::string_view type, result;
    uint8_t cancelled = 0;
    if (!r.u8(reply.state) || !r.u8(cancelled) || !r.bytes(type, 1 << 20) ||
        !r.u32(reply.version) || !r.bytes(result, size_t{64} << 20) ||
        !r.varint(reply.history_events) || !r.at_end()) {
      return invalid_argument("not a fiber reply");
    }
    if (reply.state < 1 || reply.state > 3 || cancelled > 1) {
      return invalid_argument("not a fiber reply");
    }
    reply.cancelled = cancelled == 1;
    reply.type = std::string(type);
    reply.result = std::string(result);
    return reply;
  }
  uint8_t ok = 0;
  if (!r.u8(ok) || ok > 1 || !r.at_end()) return invalid_argument("not a fiber reply");
  reply.ok = ok == 1;
  return reply;
}

}  // namespace maroon
