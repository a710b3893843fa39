// A history of key-value operations as clients saw them (each op's invocation
// and response times, inputs and outputs), and the sequential model that says
// what each op means. The linearizability checker (check/linearizability.h)
// asks whether some total order of the ops, consistent with real time, makes
// every output what the model would produce. docs/linearizability.md has the
// prose version.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "maroon/status.h"

namespace maroon::check {

// The response time of an op whose outcome is unknown (timed out, client
// crashed): it may have taken effect at any time after its call, or never,
// with any output.
inline constexpr int64_t kPending = std::numeric_limits<int64_t>::max();

enum class KvOpKind : uint8_t { kGet, kPut, kAppend, kCas, kIncr };

struct KvOperation {
  uint64_t client = 0;  // who issued it; used only to describe ops in explanations
  int64_t call = 0;     // time of invocation (any monotonic unit; the simulator uses microseconds)
  int64_t ret = 0;      // time of response, >= call; kPending if the outcome is unknown
  KvOpKind kind = KvOpKind::kGet;
  std::string key;
  std::string value;  // put/append: the value written; cas: the new value; get/incr: unused
  std::optional<std::string> expected;  // cas only: expected current value (nullopt = absent)
  // Outputs, ignored when ret == kPending.
  std::optional<std::string> output;  // get: value read (nullopt = absent); incr: new value
                                      // as decimal text (nullopt = the incr failed)
  bool ok = true;                     // cas: whether it swapped; ignored for other kinds
};

// The state of one key: nullopt when absent.
using KvState = std::optional<std::string>;

// What an op does when applied to a state, whatever the history says it
// returned.
struct KvOutcome {
  bool changes_state = false;  // false: the state stays as it was and `next` is unused
  KvState next;
  std::optional<std::string> output;  // get: the state; incr: the new value or nullopt
  bool ok = true;                     // cas: whether it swaps
};

// The sequential specification of one key:
//   get     outputs the state;
//   put     sets it to value;
//   append  sets it to (state or "") + value;
//   cas     sets it to value iff state == expected, and ok says whether it did;
//   incr    treats absent as 0, and a state in canonical int64 decimal form (as
//           the kv app stores integers: no '+', no leading zeros, no "-0") as
//           that number; it sets the state to number + 1 and outputs it. On any
//           other state, or at INT64_MAX, it fails: no effect, output nullopt.
KvOutcome kv_apply(const KvState& state, const KvOperation& op);

// Whether `op`'s recorded outputs are the ones `outcome` produces. A pending
// op matches any outcome.
bool kv_outputs_match(const KvOperation& op, const KvOutcome& outcome);

// Checks what the checker relies on: a valid kind, call < kPending and
// ret >= call. Malformed input is the caller's bug: check_kv_history asserts
// that this holds. Fields an op's kind does not use are ignored.
Status validate_history(const std::vector<KvOperation>& history);

// One op, for explanations: `client 3 get -> "a" [call 50, ret 60]`.
std::string describe_op(const KvOperation& op);
// A state or value, quoted and escaped, cut to a readable length.
std::string describe_value(const std::optional<std::string>& value);

}  // namespace maroon::check
