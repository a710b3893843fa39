// libFuzzer target: the WAL payload decoders of the node and the sequencer.
// Arbitrary bytes must never crash decode_epoch or decode_tx_record; whatever
// decodes is valid and survives re-encoding unchanged.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "maroon/assert.h"
#include "node/node.h"
#include "sequencer/epoch.h"

namespace {

using namespace maroon;

void check_epoch(std::string_view in) {
  Result<Epoch> e = decode_epoch(in);
  if (!e) {
    MAROON_ASSERT(e.status().code() == Code::kCorruption ||
                  e.status().code() == Code::kInvalidArgument);
    return;
  }
  MAROON_ASSERT(validate_epoch(*e).is_ok());
  std::string again;
  encode_epoch(*e, again);
  // ByteReader accepts padded varints, ByteWriter writes minimal ones: the
  // re-encoding can only be shorter, and it decodes to the same epoch. (An
  // epoch of format 1 is written as format 2, one digest count longer per
  // interval.)
  const size_t counts_added = in[0] == 1 ? e->intervals.size() : 0;
  MAROON_ASSERT(again.size() <= in.size() + counts_added);
  Result<Epoch> e2 = decode_epoch(again);
  MAROON_ASSERT(e2.is_ok());
  MAROON_ASSERT(*e2 == *e);
  // The canonical encoding is a fixed point.
  std::string third;
  encode_epoch(*e2, third);
  MAROON_ASSERT(third == again);
}

void check_tx_record(std::string_view in) {
  Result<TxMsg> tx = decode_tx_record(in);
  if (!tx) {
    MAROON_ASSERT(tx.status().code() == Code::kCorruption);
    return;
  }
  MAROON_ASSERT(tx->id.offset() != 0);
  std::string again;
  encode_tx_record(*tx, again);
  // Format 1 (a one-byte app) is read and written again as format 2, 3
  // bytes longer.
  MAROON_ASSERT(again.size() <= in.size() + 3);
  Result<TxMsg> tx2 = decode_tx_record(again);
  MAROON_ASSERT(tx2.is_ok());
  MAROON_ASSERT(tx2->id == tx->id);
  MAROON_ASSERT(tx2->app == tx->app);
  MAROON_ASSERT(tx2->op == tx->op);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_epoch(in);
  check_tx_record(in);
  return 0;
}
