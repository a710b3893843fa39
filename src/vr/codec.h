// Binary encoding of every VR type: replica messages, client requests and
// replies, and the durable records a replica asks its driver to persist. The
// format, field by field, is in docs/formats/vr.md; this file and that one
// change together.
//
// Every encoding starts with a format (version) byte and a type byte. Type
// bytes are disjoint across the four kinds (messages 1-12, client request 32,
// client reply 33, records 64-66), so bytes handed to the wrong decoder fail
// with "unknown type" instead of decoding as something else.
//
// Encoders append to `out`. Their input must be within the limits below and
// in vr/types.h; anything else is a programmer error and stops the process.
// Decoders trust nothing: every count and size is checked against those
// limits and against the bytes left before anything is allocated, trailing
// bytes are rejected, and a failure is kCorruption with a message naming what
// was wrong. Whatever decodes re-encodes to an equal value.
//
// No checksum: messages, requests and replies travel in native frames
// (docs/formats/frames.md) and records in WAL records or the superblock
// (docs/formats/wal.md), which checksum their payloads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "maroon/status.h"
#include "vr/messages.h"
#include "vr/replica.h"

namespace maroon::vr {

inline constexpr uint8_t kWireFormat = 1;    // messages, client requests and replies
inline constexpr uint8_t kRecordFormat = 1;  // DurableRecord

// Bytes of a LEB128 varint holding v.
constexpr size_t varint_bytes(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

// Bounds on encoded sizes, derived from the protocol limits in types.h.
namespace limits {
// Payload bytes in one LogSuffix. Replica::adopt_log lets the in-memory log
// exceed log_bytes_max by up to one entry, and DoViewChange, StartView and
// RecoveryResponse carry that whole log, so the codec must accept the same
// slack or a legitimate view change could not be decoded.
inline constexpr size_t log_payload_bytes_max = log_bytes_max + entry_bytes_max;
// One encoded entry beyond its payload: op, view, client, request as varints
// (at most 10 bytes each), kind, and the payload's length prefix.
inline constexpr size_t entry_overhead_bytes_max = 4 * 10 + 1 + varint_bytes(entry_bytes_max);
inline constexpr size_t log_encoded_bytes_max =
    10 + varint_bytes(log_ops_max) + log_ops_max * entry_overhead_bytes_max + log_payload_bytes_max;
inline constexpr size_t checkpoint_encoded_bytes_max =
    10 + varint_bytes(checkpoint_bytes_max) + checkpoint_bytes_max;
inline constexpr size_t members_encoded_bytes_max = varint_bytes(replicas_max) + 4 * replicas_max;
// format, type, then a header (epoch, view as varints, from as u32).
inline constexpr size_t message_prefix_bytes_max = 2 + 10 + 10 + 4;
// The largest messages (NewState, RecoveryResponse): the prefix, up to three
// more numbers, a nonce, a flag, an optional checkpoint and a log.
inline constexpr size_t message_encoded_bytes_max = message_prefix_bytes_max + 3 * 10 + 8 + 1 + 1 +
                                                    checkpoint_encoded_bytes_max +
                                                    log_encoded_bytes_max;
inline constexpr size_t client_request_encoded_bytes_max =
    2 + 10 + 10 + 1 + 1 + varint_bytes(entry_bytes_max) + entry_bytes_max;
inline constexpr size_t client_reply_encoded_bytes_max =
    2 + 10 + 10 + 1 + 10 + 10 + 4 + members_encoded_bytes_max + varint_bytes(reply_bytes_max) +
    reply_bytes_max;
inline constexpr size_t durable_state_encoded_bytes_max = 4 * 10 + 2 * members_encoded_bytes_max;
inline constexpr size_t record_encoded_bytes_max =
    2 + (log_encoded_bytes_max > checkpoint_encoded_bytes_max ? log_encoded_bytes_max
                                                              : checkpoint_encoded_bytes_max);

static_assert(message_encoded_bytes_max <= message_bytes_max);
static_assert(client_request_encoded_bytes_max <= message_bytes_max);
static_assert(client_reply_encoded_bytes_max <= message_bytes_max);
static_assert(durable_state_encoded_bytes_max <= log_encoded_bytes_max);
// The WAL bounds its records by maroon/limits.h's wal_record_bytes_max (8 MiB),
// which a whole-log LogSuffix record can exceed; see docs/formats/vr.md.
}  // namespace limits

void encode_message(const ReplicaMessage& msg, std::string& out);
Result<ReplicaMessage> decode_message(std::string_view bytes);

void encode_client_request(const ClientRequest& req, std::string& out);
Result<ClientRequest> decode_client_request(std::string_view bytes);

void encode_client_reply(const ClientReply& reply, std::string& out);
Result<ClientReply> decode_client_reply(std::string_view bytes);

void encode_record(const DurableRecord& record, std::string& out);
Result<DurableRecord> decode_record(std::string_view bytes);

}  // namespace maroon::vr
