// libFuzzer target for the RESP request parser: arbitrary bytes, fed whole
// and then in pieces whose sizes come from the input, must never crash, and
// splitting must not change which requests come out (or are rejected).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/assert.h"
#include "protocol/resp.h"

namespace {

using maroon::protocol::resp::ParseStatus;
using maroon::protocol::resp::RequestParser;

struct Outcome {
  std::vector<std::vector<std::string>> commands;
  bool error = false;
};

// Appends `chunk` bytes at a time to a buffer and parses as the server does.
Outcome run(std::string_view input, size_t chunk) {
  RequestParser parser;
  Outcome out;
  std::string buf;
  for (size_t fed = 0; fed < input.size();) {
    const size_t n = std::min(chunk, input.size() - fed);
    buf.append(input.substr(fed, n));
    fed += n;
    for (;;) {
      const ParseStatus s = parser.parse(buf);
      if (s == ParseStatus::kError) {
        MAROON_ASSERT(!parser.error().empty());
        out.error = true;
        return out;
      }
      MAROON_ASSERT(parser.consumed() <= buf.size());
      if (s == ParseStatus::kCommand) {
        MAROON_ASSERT(!parser.args().empty());
        MAROON_ASSERT(parser.args().size() <= maroon::protocol::resp::command_args_max);
        out.commands.emplace_back(parser.args().begin(), parser.args().end());
      }
      if (s == ParseStatus::kRejected) {
        MAROON_ASSERT(!parser.error().empty());
        out.commands.push_back({"<rejected>", parser.error()});
      }
      buf.erase(0, parser.consumed());
      if (s == ParseStatus::kNeedMore) break;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = static_cast<size_t>(data[0] % 16) + 1;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Outcome whole = run(input, input.size() + 1);
  const Outcome pieces = run(input, chunk);
  MAROON_ASSERT(whole.error == pieces.error);
  MAROON_ASSERT(whole.commands == pieces.commands);
  return 0;
}
