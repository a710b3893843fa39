// maroon's native binary frames: the unit nodes, gateways and the native
// client exchange over TCP (layout in docs/formats/frames.md).
//
//   u32 length    bytes after the 8-byte header: 1 (type) + payload size
//   u32 checksum  low 32 bits of xxh3-64 over type + payload
//   u8  type      FrameType
//   ... payload
//
// All integers little-endian. 1 <= length <= limits::message_bytes_max. A frame
// that breaks either rule is a protocol error: the connection is closed, since
// nothing after a bad header can be trusted to be on a frame boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "maroon/limits.h"
#include "maroon/status.h"

namespace maroon::protocol {

inline constexpr size_t kFrameHeaderBytes = 8;  // length + checksum
// `length` counts the type byte too, so a frame is at most this big on the wire.
inline constexpr size_t kFrameBytesMax = kFrameHeaderBytes + limits::message_bytes_max;
inline constexpr size_t kFramePayloadBytesMax = limits::message_bytes_max - 1;

// Frame types are never reused. Client messages are 1..15; messages between
// nodes and gateways (net/, protocol/cluster_messages.h) are 16..47.
enum class FrameType : uint8_t {
  kHello = 1,       // client -> server: protocol version
  kHelloReply = 2,  // server -> client
  kRequest = 3,     // client -> server: one op
  kResponse = 4,    // server -> client: the reply to one request

  kPeerHello = 16,  // first frame each way on a node/gateway link (net/transport.h)
  kVr = 17,         // node -> node: a VR message (vr/codec.h)
  kOffsets = 18,    // node -> node: advertised durable offsets and applied state hash
  kTxPull = 19,     // node -> node: send me these txs
  kTxPush = 20,     // node -> node: txs answering a pull
  kTx = 21,         // gateway -> node: hold this tx durably
  kLeaseRequest = 22,  // gateway -> node
  kTxAck = 23,         // node -> gateway
  kTxResult = 24,      // node -> gateway
  kLeaseGranted = 25,  // node -> gateway
  kRangeSealed = 26,   // node -> gateway
  kRenewLease = 27,    // gateway -> node
  kTxEvicted = 28,     // node -> node: answers a pull for an executed tx no longer kept
  kSnapshotWanted = 29,  // node -> node: send me a snapshot at least this new
  kSnapshotOffer = 30,   // node -> node: my newest snapshot (epoch, size)
  kSnapshotPull = 31,    // node -> node: send me these bytes of it
  kSnapshotChunk = 32,   // node -> node: bytes of a snapshot file, checksummed
  kMembershipNote = 33,  // node -> node: handed over to / retired from a new group
  kGroupMembers = 34,    // node -> gateway: the group and its address book
};

struct Frame {
  uint8_t type = 0;
  std::string_view payload;
};

enum class DecodeResult : uint8_t {
  kFrame,     // a complete, checksummed frame
  kNeedMore,  // the input ends inside a frame
  kError,     // bad length or checksum: close the connection
};

// Decodes the frame at the start of `in`. On kFrame, `frame.payload` views into
// `in` and `consumed` is the frame's size on the wire. On kError, `error` says
// why (kTooLarge for a bad length, kCorruption for a bad checksum). Reads only
// the bytes it needs; never reads past `in`.
DecodeResult decode_frame(std::string_view in, Frame& frame, size_t& consumed, Status* error);

// Appends a complete frame to `out`.
void encode_frame(FrameType type, std::string_view payload, std::string& out);
void encode_frame(uint8_t type, std::string_view payload, std::string& out);

// Builds a frame in place, without copying the payload: start_frame reserves
// the header and writes the type; append the payload to `out`; finish_frame
// fills in length and checksum. Returns the frame's start offset.
size_t start_frame(FrameType type, std::string& out);
void finish_frame(size_t start, std::string& out);

// An incremental decoder for one connection's byte stream. Read into
// prepare()'s span, commit() what arrived, then call next() until it stops
// returning kFrame. Once it returns kError it always does.
//
// A frame returned by next() views into the decoder's buffer and stays valid
// until the next call to prepare(), feed() or next().
class FrameDecoder {
 public:
  // A span of at least `min_bytes` writable bytes after the buffered data.
  std::span<char> prepare(size_t min_bytes);
  void commit(size_t bytes);
  // Copies bytes in (prepare + copy + commit).
  void feed(std::string_view bytes);

  DecodeResult next(Frame& frame);

  // Bytes received but not yet returned as frames.
  size_t buffered() const { return end_ - begin_; }
  bool failed() const { return !error_.is_ok(); }
  const Status& error() const { return error_; }

 private:
  std::string buf_;
  size_t begin_ = 0;            // first byte not yet returned as a frame
  size_t end_ = 0;              // end of received bytes; buf_[end_..] is scratch
  size_t committed_limit_ = 0;  // end of the span handed out by prepare()
  Status error_;
};

}  // namespace maroon::protocol
