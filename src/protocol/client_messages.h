// Native client messages, each carried as the payload of one frame (frame.h;
// layouts in docs/formats/frames.md). Decoded messages hold views into the
// payload they were decoded from; encode right after building one.
//
// A connection may start with Hello; without one, version 1 is assumed.
// Requests are pipelined: the server answers each with one Response carrying
// the same request_id, in any order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "maroon/status.h"
#include "common/types.h"
#include "protocol/frame.h"

namespace maroon::protocol {

// 2: a request names its app by a 32-bit AppId (was one byte).
inline constexpr uint32_t kProtocolVersion = 2;
// Error messages in responses are cut to this length.
inline constexpr size_t error_message_bytes_max = 4096;
inline constexpr size_t client_name_bytes_max = 256;
inline constexpr size_t hello_user_bytes_max = 64;
inline constexpr size_t hello_password_bytes_max = 1024;

struct Hello {
  uint32_t version = kProtocolVersion;
  std::string_view client_name;  // for logs, e.g. "maroon-bench"
  // Credentials, on the wire only when `password` is not empty. An empty
  // `user` with a password: the user whose password (token) it is.
  std::string_view user;
  std::string_view password;
  bool operator==(const Hello&) const = default;
};

struct HelloReply {
  uint32_t version = kProtocolVersion;  // the version the server speaks
  // kInvalidArgument: version unsupported; kUnauthenticated: credentials
  // refused. Either way the server closes the connection.
  Code code = Code::kOk;
  uint64_t node_id = 0;
  bool operator==(const HelloReply&) const = default;
};

// Request flags.
inline constexpr uint8_t kRequestReadOnly = 0x01;  // execute against applied state, not ordered
inline constexpr uint8_t kRequestFlagsKnown = kRequestReadOnly;

struct Request {
  uint64_t request_id = 0;  // chosen by the client, echoed in the response
  AppId app = AppId::kKv;
  uint8_t flags = 0;
  std::string_view op;  // the app's encoded op (kv_op.h for kv)
  bool read_only() const { return (flags & kRequestReadOnly) != 0; }
  bool operator==(const Request&) const = default;
};

struct Response {
  uint64_t request_id = 0;  // 0 for a connection-level error sent before closing
  // kOk: `reply` holds the app's encoded reply (which may itself be an app
  // error, e.g. kConflict). Otherwise the op was not executed (overloaded,
  // unavailable, too large, malformed request) and `error` says why.
  Code code = Code::kOk;
  std::string_view error;
  uint64_t tx_id = 0;  // raw TxId of a write; 0 for reads and when unknown
  std::string_view reply;
  bool operator==(const Response&) const = default;
};

// Each encode_* appends one complete frame to `out`.
void encode_hello(const Hello& m, std::string& out);
void encode_hello_reply(const HelloReply& m, std::string& out);
void encode_request(const Request& m, std::string& out);
void encode_response(const Response& m, std::string& out);

// Each decode_* takes a frame payload (not the frame) and rejects short input,
// trailing bytes, unknown flags or codes, and oversize fields.
Result<Hello> decode_hello(std::string_view payload);
Result<HelloReply> decode_hello_reply(std::string_view payload);
Result<Request> decode_request(std::string_view payload);
Result<Response> decode_response(std::string_view payload);

// Is `c` a Code this build knows (so it can travel on the wire)?
bool is_known_code(uint8_t c);

}  // namespace maroon::protocol
