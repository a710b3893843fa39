#include "protocol/client_messages.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

namespace maroon::protocol {
namespace {

// Strips the frame around an encoded message, checking its type.
std::string_view payload_of(const std::string& wire, FrameType type) {
  Frame f;
  size_t consumed = 0;
  MAROON_ASSERT(decode_frame(wire, f, consumed, nullptr) == DecodeResult::kFrame);
  MAROON_ASSERT(consumed == wire.size());
  MAROON_ASSERT(f.type == static_cast<uint8_t>(type));
  return f.payload;
}

Code gen_code(uint8_t raw) {
  return static_cast<Code>(raw % (static_cast<uint8_t>(kCodeLast) + 1));
}

TEST(ClientMessages, RequestRoundTrips) {
  EXPECT_TRUE(rc::check([](uint64_t id, uint32_t app, bool ro, std::string op) {
    Request m{.request_id = id,
              .app = AppId(app),
              .flags = static_cast<uint8_t>(ro ? kRequestReadOnly : 0),
              .op = op};
    std::string wire;
    encode_request(m, wire);
    auto d = decode_request(payload_of(wire, FrameType::kRequest));
    RC_ASSERT(d.is_ok());
    RC_ASSERT(*d == m);
    RC_ASSERT(d->read_only() == ro);
  }));
}

TEST(ClientMessages, ResponseRoundTrips) {
  EXPECT_TRUE(
      rc::check([](uint64_t id, uint8_t code, std::string error, uint64_t tx, std::string reply) {
        if (error.size() > error_message_bytes_max) error.resize(error_message_bytes_max);
        Response m{.request_id = id, .code = gen_code(code), .error = error, .tx_id = tx};
        if (m.code == Code::kOk) m.reply = reply;
        std::string wire;
        encode_response(m, wire);
        auto d = decode_response(payload_of(wire, FrameType::kResponse));
        RC_ASSERT(d.is_ok());
        RC_ASSERT(*d == m);
      }));
}

TEST(ClientMessages, HelloRoundTrips) {
  Hello h{.version = 9, .client_name = "bench"};
  std::string wire;
  encode_hello(h, wire);
  auto d = decode_hello(payload_of(wire, FrameType::kHello));
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(*d, h);

  HelloReply r{.version = 1, .code = Code::kInvalidArgument, .node_id = 42};
  wire.clear();
  encode_hello_reply(r, wire);
  auto dr = decode_hello_reply(payload_of(wire, FrameType::kHelloReply));
  ASSERT_TRUE(dr.is_ok());
  EXPECT_EQ(*dr, r);
}

TEST(ClientMessages, HelloCarriesCredentialsOnlyWithAPassword) {
  for (const Hello& h : {Hello{.client_name = "c", .user = "app", .password = "secret"},
                         Hello{.client_name = "c", .user = "", .password = "token"}}) {
    std::string wire;
    encode_hello(h, wire);
    auto d = decode_hello(payload_of(wire, FrameType::kHello));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, h);
  }
  std::string bare, with;
  encode_hello({.client_name = "c"}, bare);
  encode_hello({.client_name = "c", .password = "p"}, with);
  EXPECT_EQ(with.size(), bare.size() + 3);  // two lengths and one byte: nothing without a password
  // A user with an empty password, or trailing bytes, is malformed.
  std::string payload(payload_of(bare, FrameType::kHello));
  EXPECT_FALSE(decode_hello(payload + std::string("\x03app\x00", 5)).is_ok());
  EXPECT_FALSE(decode_hello(payload + std::string("\x00\x01p\x00", 4)).is_ok());
  EXPECT_TRUE(decode_hello(payload + std::string("\x00\x01p", 3)).is_ok());
  HelloReply r{.version = 1, .code = Code::kUnauthenticated, .node_id = 1};
  std::string wire;
  encode_hello_reply(r, wire);
  auto dr = decode_hello_reply(payload_of(wire, FrameType::kHelloReply));
  ASSERT_TRUE(dr.is_ok());
  EXPECT_EQ(dr->code, Code::kUnauthenticated);
}

TEST(ClientMessages, ErrorMessagesAreCut) {
  std::string long_error(error_message_bytes_max + 100, 'e');
  std::string wire;
  encode_response({.request_id = 1, .code = Code::kOverloaded, .error = long_error}, wire);
  auto d = decode_response(payload_of(wire, FrameType::kResponse));
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->error.size(), error_message_bytes_max);
}

TEST(ClientMessages, ShortAndTrailingInputIsRejected) {
  std::string wire;
  encode_request({.request_id = 5, .flags = kRequestReadOnly, .op = "abc"}, wire);
  std::string payload(payload_of(wire, FrameType::kRequest));
  for (size_t n = 0; n < payload.size(); n++) {
    EXPECT_FALSE(decode_request(payload.substr(0, n)).is_ok()) << n;
  }
  EXPECT_FALSE(decode_request(payload + "x").is_ok());

  wire.clear();
  encode_response({.request_id = 5, .reply = "r"}, wire);
  payload = std::string(payload_of(wire, FrameType::kResponse));
  for (size_t n = 0; n < payload.size(); n++) {
    EXPECT_FALSE(decode_response(payload.substr(0, n)).is_ok()) << n;
  }
  EXPECT_FALSE(decode_response(payload + "x").is_ok());
}

TEST(ClientMessages, UnknownFlagsAndCodesAreRejected) {
  std::string wire;
  encode_request({.request_id = 5, .op = "abc"}, wire);
  std::string payload(payload_of(wire, FrameType::kRequest));
  payload[12] = 0x02;  // flags byte after u64 id and u32 app
  EXPECT_FALSE(decode_request(payload).is_ok());

  wire.clear();
  encode_response({.request_id = 5}, wire);
  payload = std::string(payload_of(wire, FrameType::kResponse));
  payload[8] = 0x7f;  // code byte
  EXPECT_FALSE(decode_response(payload).is_ok());

  // An error response must not carry a reply.
  wire.clear();
  encode_response({.request_id = 5, .reply = "r"}, wire);
  payload = std::string(payload_of(wire, FrameType::kResponse));
  ASSERT_TRUE(decode_response(payload).is_ok());
  payload[8] = static_cast<char>(Code::kOverloaded);
  EXPECT_FALSE(decode_response(payload).is_ok());
}

TEST(ClientMessages, QuorumLossAndCredentialCodesTravelAndTheNextOneIsRejected) {
  // docs/formats/frames.md: 10 no quorum (not executed), 11 outcome unknown,
  // 12 unauthenticated, 13 permission denied.
  EXPECT_EQ(static_cast<int>(Code::kNoQuorum), 10);
  EXPECT_EQ(static_cast<int>(Code::kOutcomeUnknown), 11);
  EXPECT_EQ(static_cast<int>(Code::kUnauthenticated), 12);
  EXPECT_EQ(static_cast<int>(Code::kPermissionDenied), 13);
  for (Code code : {Code::kNoQuorum, Code::kOutcomeUnknown, Code::kUnauthenticated,
                    Code::kPermissionDenied}) {
    std::string wire;
    encode_response({.request_id = 9, .code = code, .error = "why"}, wire);
    auto d = decode_response(payload_of(wire, FrameType::kResponse));
    ASSERT_TRUE(d.is_ok()) << code_name(code);
    EXPECT_EQ(d->code, code);
    EXPECT_EQ(d->error, "why");
  }
  std::string wire;
  encode_response({.request_id = 5}, wire);
  std::string payload(payload_of(wire, FrameType::kResponse));
  payload[8] = 14;
  EXPECT_FALSE(decode_response(payload).is_ok());
  EXPECT_TRUE(is_known_code(13));
  EXPECT_FALSE(is_known_code(14));
}

TEST(ClientMessages, ArbitraryBytesNeverCrash) {
  EXPECT_TRUE(rc::check([](std::string bytes) {
    (void)decode_request(bytes).is_ok();
    (void)decode_response(bytes).is_ok();
    (void)decode_hello(bytes).is_ok();
    (void)decode_hello_reply(bytes).is_ok();
  }));
}

}  // namespace
}  // namespace maroon::protocol
