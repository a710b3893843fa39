#include "protocol/client_messages.h"

#include "maroon/assert.h"
#include "common/codec.h"

namespace maroon::protocol {

namespace {

Status malformed(const char* what) {
  return invalid_argument(std::string("malformed ") + what + " message");
}

}  // namespace

bool is_known_code(uint8_t c) { return c <= static_cast<uint8_t>(kCodeLast); }

void encode_hello(const Hello& m, std::string& out) {
  MAROON_ASSERT(m.client_name.size() <= client_name_bytes_max);
  MAROON_ASSERT(m.user.size() <= hello_user_bytes_max);
  MAROON_ASSERT(m.password.size() <= hello_password_bytes_max);
  MAROON_ASSERT(m.user.empty() || !m.password.empty());
  const size_t start = start_frame(FrameType::kHello, out);
  ByteWriter w(out);
  w.u32(m.version);
  w.bytes(m.client_name);
  if (!m.password.empty()) {
    w.bytes(m.user);
    w.bytes(m.password);
  }
  finish_frame(start, out);
}

void encode_hello_reply(const HelloReply& m, std::string& out) {
  const size_t start = start_frame(FrameType::kHelloReply, out);
  ByteWriter w(out);
  w.u32(m.version);
  w.u8(static_cast<uint8_t>(m.code));
  w.u64(m.node_id);
  finish_frame(start, out);
}

void encode_request(const Request& m, std::string& out) {
  MAROON_ASSERT((m.flags & ~kRequestFlagsKnown) == 0);
  const size_t start = start_frame(FrameType::kRequest, out);
  ByteWriter w(out);
  w.u64(m.request_id);
  w.u32(m.app.value());
  w.u8(m.flags);
  w.bytes(m.op);
  finish_frame(start, out);
}

void encode_response(const Response& m, std::string& out) {
  MAROON_ASSERT(m.code == Code::kOk || m.reply.empty());
  const size_t start = start_frame(FrameType::kResponse, out);
  ByteWriter w(out);
  w.u64(m.request_id);
  w.u8(static_cast<uint8_t>(m.code));
  w.bytes(m.error.substr(0, error_message_bytes_max));
  w.u64(m.tx_id);
  w.bytes(m.reply);
  finish_frame(start, out);
}

Result<Hello> decode_hello(std::string_view payload) {
  ByteReader r(payload);
  Hello m;
  r.u32(m.version);
  r.bytes(m.client_name, client_name_bytes_max);
  if (!r.at_end()) {
    r.bytes(m.user, hello_user_bytes_max);
    r.bytes(m.password, hello_password_bytes_max);
    if (m.password.empty()) return malformed("hello");
  }
  if (!r.at_end()) return malformed("hello");
  return m;
}

Result<HelloReply> decode_hello_reply(std::string_view payload) {
  ByteReader r(payload);
  HelloReply m;
  uint8_t code = 0;
  r.u32(m.version);
  r.u8(code);
  r.u64(m.node_id);
  if (!r.at_end() || !is_known_code(code)) return malformed("hello reply");
  m.code = static_cast<Code>(code);
  return m;
}

Result<Request> decode_request(std::string_view payload) {
  ByteReader r(payload);
  Request m;
  uint32_t app = 0;
  r.u64(m.request_id);
  r.u32(app);
  r.u8(m.flags);
  r.bytes(m.op, kFramePayloadBytesMax);
  if (!r.at_end() || (m.flags & ~kRequestFlagsKnown) != 0) return malformed("request");
  // Any app id decodes; the engine answers an unknown one with an error.
  m.app = AppId(app);
  return m;
}

Result<Response> decode_response(std::string_view payload) {
  ByteReader r(payload);
  Response m;
  uint8_t code = 0;
  r.u64(m.request_id);
  r.u8(code);
  r.bytes(m.error, error_message_bytes_max);
  r.u64(m.tx_id);
  r.bytes(m.reply, kFramePayloadBytesMax);
  if (!r.at_end() || !is_known_code(code)) return malformed("response");
  m.code = static_cast<Code>(code);
  if (m.code != Code::kOk && !m.reply.empty()) return malformed("response");
  return m;
}

}  // namespace maroon::protocol
