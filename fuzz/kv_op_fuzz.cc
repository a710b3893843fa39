// Fuzzes the kv op and reply decoders and KvApp::apply. The input is read two
// ways: whole, as one op and as one reply; and as a sequence of
// varint-length-prefixed ops applied in turn to one fresh KvApp, so ops meet a
// state that earlier ops built. A fresh app per input keeps every finding
// reproducible from its input alone.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "app/kv/kv_app.h"
#include "app/kv/kv_op.h"
#include "maroon/assert.h"
#include "common/codec.h"
#include "maroon/limits.h"

namespace {

using maroon::kv::KvApp;
using maroon::kv::Op;
using maroon::kv::Reply;

// Applies one op and checks what must hold whatever the bytes were.
// WATCH and MULTI answer in shapes of their own (kv_op.h); every other op,
// and any refused op, with a Reply.
bool reply_decodes(const maroon::Result<Op>& op, std::string_view reply) {
  if (op.is_ok() && op->type == maroon::kv::OpType::kWatch &&
      maroon::kv::decode_stamps_reply(reply).is_ok()) {
    return true;
  }
  if (op.is_ok() && op->type == maroon::kv::OpType::kMulti &&
      maroon::kv::decode_multi_reply(reply).is_ok()) {
    return true;
  }
  maroon::Result<Reply> r = maroon::kv::decode_reply(reply);
  const bool special = op.is_ok() && (op->type == maroon::kv::OpType::kWatch ||
                                      op->type == maroon::kv::OpType::kMulti);
  return r.is_ok() && (!special || r->kind == Reply::Kind::kError);
}

void apply_checked(KvApp& app, std::string_view bytes) {
  const uint64_t hash_before = app.state_hash();
  const size_t size_before = app.size();

  maroon::Result<Op> op = maroon::kv::decode_op(bytes);
  if (op.is_ok()) {
    // Whatever decodes is valid and survives a re-encode.
    MAROON_ASSERT(maroon::kv::validate(op.value()).is_ok());
    const std::string again = maroon::kv::encode_op(op.value());
    maroon::Result<Op> op2 = maroon::kv::decode_op(again);
    MAROON_ASSERT(op2.is_ok() && op2.value() == op.value());
  }

  // read() never changes anything, whatever the op.
  const std::string read_reply = app.read(bytes);
  MAROON_ASSERT(read_reply.size() <= maroon::limits::reply_bytes_max);
  MAROON_ASSERT(reply_decodes(op, read_reply));
  MAROON_ASSERT(app.state_hash() == hash_before && app.size() == size_before);

  const std::string reply_bytes = app.apply(maroon::TxContext{}, bytes);
  MAROON_ASSERT(reply_bytes.size() <= maroon::limits::reply_bytes_max);
  MAROON_ASSERT(reply_decodes(op, reply_bytes));
  if (!op.is_ok()) {
    // A bad op is an error reply and changes nothing.
    maroon::Result<Reply> reply = maroon::kv::decode_reply(reply_bytes);
    MAROON_ASSERT(reply.is_ok() && reply->kind == Reply::Kind::kError);
    MAROON_ASSERT(app.state_hash() == hash_before && app.size() == size_before);
  } else if (maroon::kv::is_read_only(op->type)) {
    MAROON_ASSERT(app.state_hash() == hash_before && app.size() == size_before);
  } else if (op->type == maroon::kv::OpType::kFlush) {
    // Every key goes; only the counters remain in the hash.
    MAROON_ASSERT(app.size() == 0);
    MAROON_ASSERT(size_before > 0 || app.state_hash() == hash_before);
  }
}

void decode_reply_checked(std::string_view bytes) {
  maroon::Result<Reply> reply = maroon::kv::decode_reply(bytes);
  if (!reply.is_ok()) return;
  maroon::Result<Reply> again = maroon::kv::decode_reply(maroon::kv::encode_reply(reply.value()));
  MAROON_ASSERT(again.is_ok() && again.value() == reply.value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  KvApp single;
  apply_checked(single, input);
  decode_reply_checked(input);

  KvApp app;
  maroon::ByteReader r(input);
  std::string_view op;
  while (r.bytes(op, input.size())) apply_checked(app, op);
  return 0;
}
