// An app of durable fibers (include/maroon/fiber.h): a StateMachine whose
// ops start fibers and feed the queues and futures they wait on. Register
// the fiber types, then the app:
//
//   maroon::FiberTypes types;                 // must outlive the apps made
//   types.add("greeter", 1, greeter);
//   apps.add("greeters", [&types] { return maroon::make_fiber_app(types); });
//
// Each op first moves the runtime's logical time to the tx's (timers due
// fire), then does its work and runs every fiber it made ready.
//
// Ops (fiber_op::*) and replies, all little-endian, `bytes` = varint length
// + bytes:
//   1 start   bytes type, bytes id, bytes args
//   2 send    bytes queue, bytes message
//   3 resolve bytes future, bytes value
//   4 cancel  bytes fiber
//   5 get     bytes fiber                      (read-only)
// Reply: u8 code (maroon::Code); not 0: bytes message. 0: for start, send,
// resolve and cancel u8 ok (1: it took effect); for get u8 state (1
// waiting, 2 done, 3 failed), u8 cancelled, bytes type, u32 version,
// bytes result, varint history events.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "maroon/fiber.h"
#include "maroon/state_machine.h"
#include "maroon/status.h"

namespace maroon {

std::unique_ptr<StateMachine> make_fiber_app(const FiberTypes& types, FiberLimits limits = {});

namespace fiber_op {
std::string start(std::string_view type, std::string_view id, std::string_view args);
std::string send(std::string_view queue, std::string_view message);
std::string resolve(std::string_view future, std::string_view value);
std::string cancel(std::string_view fiber);
std::string get(std::string_view fiber);
}  // namespace fiber_op

struct FiberReply {
  Code code = Code::kOk;
  std::string error;  // code != kOk
  bool ok = false;    // start, send, resolve, cancel
  // get:
  uint8_t state = 0;  // 1 waiting, 2 done, 3 failed
  bool cancelled = false;
  std::string type;
  uint32_t version = 0;
  std::string result;
  uint64_t history_events = 0;
};
// Decodes a reply to an op of `kind` (the op's first byte).
Result<FiberReply> decode_fiber_reply(uint8_t kind, std::string_view reply);

}  // namespace maroon
