// The kv app's op and reply formats (byte layouts and semantics in docs/formats/kv.md).
// Ops hold views: encode right after building one; a decoded op points into
// the bytes it was decoded from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "maroon/status.h"

namespace maroon::kv {

// The first byte of every encoded op and reply. A decoder rejects any other.
inline constexpr uint8_t kOpFormatVersion = 1;
inline constexpr uint8_t kReplyFormatVersion = 1;

enum class OpType : uint8_t {
  kGet = 1,     // keys[0]                      -> Value | Nil
  kSet = 2,     // keys[0], values[0], cond      -> Ok | Nil (condition not met)
  kDel = 3,     // keys[0..n)                    -> Int (how many existed)
  kCas = 4,     // keys[0], expected, values[0]  -> Ok | Error(kConflict)
  kIncrBy = 5,  // keys[0], delta                -> Int (new value) | Error(kWrongType)
  kMget = 6,    // keys[0..n)                    -> Values
  kMset = 7,    // keys[0..n), values[0..n)      -> Ok
  kExists = 8,  // keys[0..n)                    -> Int (how many exist)
  kScan = 9,    // keys[0] = prefix, limit, keys[1] (optional) = start after -> Pairs
  kSize = 10,   //                               -> Int
  kWatch = 11,  // keys[0..n)                    -> Stamps (one per key)
  // keys[0..n) watched with stamps[0..n); ops: encoded sub-ops run in order
  //   -> Nil (a watched key changed: nothing ran) | Replies (one per sub-op)
  kMulti = 12,
  kFlush = 13,  //                               -> Ok (every key removed)
};

// What WATCH saw of a key: its version if present (the app's mutation
// counter at the key's last change), else the mutation counter at the WATCH.
// MULTI aborts unless the key kept its version, or, absent, stayed absent
// and no key written after the WATCH was removed (docs/formats/kv.md,
// "Watches and versions").
struct KeyStamp {
  bool present = false;
  uint64_t version = 0;
  bool operator==(const KeyStamp&) const = default;
};

enum class SetCond : uint8_t {
  kAlways = 0,
  kIfAbsent = 1,   // first writer wins (SET NX, SETNX, PUT ?if-absent)
  kIfPresent = 2,  // SET XX
};

using Views = boost::container::small_vector<std::string_view, 2>;

struct Op {
  OpType type = OpType::kGet;
  SetCond cond = SetCond::kAlways;
  int64_t delta = 0;   // kIncrBy
  uint32_t limit = 0;  // kScan: at most this many pairs (<= limits::op_keys_max)
  // Inline room for the common one-key ops: no allocation on the hot path.
  Views keys;
  Views values;
  // kCas: the value the key must hold; nullopt means "the key must be absent".
  std::optional<std::string_view> expected;
  // kMulti: the stamps the watched keys (keys) must still have, and the
  // encoded sub-ops (any op but kWatch and kMulti).
  std::vector<KeyStamp> stamps;
  std::vector<std::string_view> ops;

  bool operator==(const Op&) const = default;
};

bool is_read_only(OpType type);
const char* op_name(OpType type);

// Checks limits and shape: key and value sizes, key counts, keys/values pairing,
// the encoded size. A field the op type does not use must keep its default, so
// that decode_op(encode_op(op)) == op for every valid op.
// Errors are kInvalidArgument or kTooLarge with a message fit for a client.
Status validate(const Op& op);
// Appends the encoding of a valid op to out.
void encode_op(const Op& op, std::string& out);
std::string encode_op(const Op& op);
// Decodes and validates; views point into `bytes`.
Result<Op> decode_op(std::string_view bytes);

struct Reply {
  enum class Kind : uint8_t { kOk = 0, kNil, kInt, kValue, kValues, kPairs, kError };
  Kind kind = Kind::kOk;
  int64_t integer = 0;                                     // kInt
  std::string value;                                       // kValue; kError: the message
  std::vector<std::optional<std::string>> values;          // kValues (nullopt = absent key)
  std::vector<std::pair<std::string, std::string>> pairs;  // kPairs, in key order
  Code error = Code::kOk;                                  // kError

  static Reply ok() { return {}; }
  static Reply nil() { return Reply{.kind = Kind::kNil}; }
  static Reply of_int(int64_t v) { return Reply{.kind = Kind::kInt, .integer = v}; }
  static Reply of_value(std::string v) {
    return Reply{.kind = Kind::kValue, .value = std::move(v)};
  }
  static Reply of_error(Code code, std::string message) {
    return Reply{.kind = Kind::kError, .value = std::move(message), .error = code};
  }
  bool operator==(const Reply&) const = default;
};

void encode_reply(const Reply& reply, std::string& out);
std::string encode_reply(const Reply& reply);
Result<Reply> decode_reply(std::string_view bytes);

// WATCH and MULTI answer in shapes of their own, reply kinds 7 and 8 on the
// wire (docs/formats/kv.md). Only the RESP front end sends these ops, so they
// are not Reply kinds that every front end would have to handle;
// decode_reply refuses them. Either op refused as a whole gets an ordinary
// Error reply, which these decoders return as its Status.
inline constexpr uint8_t kStampsReplyKind = 7;
inline constexpr uint8_t kMultiReplyKind = 8;

void encode_stamps_reply(const std::vector<KeyStamp>& stamps, std::string& out);
Result<std::vector<KeyStamp>> decode_stamps_reply(std::string_view bytes);

struct MultiReply {
  bool aborted = false;              // a watched key changed: nothing ran (Nil on the wire)
  std::vector<std::string> replies;  // else one encoded Reply per sub-op, in order
  bool operator==(const MultiReply&) const = default;
};
void encode_multi_reply(const MultiReply& reply, std::string& out);
Result<MultiReply> decode_multi_reply(std::string_view bytes);

}  // namespace maroon::kv
