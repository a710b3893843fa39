// rapidcheck generators for kv ops and replies, shared by the kv tests. Call
// only from inside a rapidcheck property.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <string_view>

#include "app/kv/kv_op.h"

namespace maroon::kv::testing {

// An Op together with the bytes its views point at. A deque keeps element
// addresses stable as it grows; not copyable, so views cannot dangle.
struct OwnedOp {
  OwnedOp() = default;
  OwnedOp(const OwnedOp&) = delete;
  OwnedOp& operator=(const OwnedOp&) = delete;

  std::string_view keep(std::string s) {
    bytes.push_back(std::move(s));
    return bytes.back();
  }

  std::deque<std::string> bytes;
  Op op;
};

// Keys from a tiny alphabet collide often, which is what a model test needs;
// arbitrary keys exercise the codec.
enum class KeySpace { kSmall, kArbitrary };

inline std::string random_key(KeySpace space) {
  if (space == KeySpace::kArbitrary) return *rc::gen::arbitrary<std::string>();
  const auto len = *rc::gen::inRange<size_t>(0, 4);
  return *rc::gen::container<std::string>(len, rc::gen::elementOf(std::string("abc")));
}

// Values that are sometimes integers (canonical or not), so INCRBY meets both.
inline std::string random_value() {
  return *rc::gen::oneOf(
      rc::gen::arbitrary<std::string>(),
      rc::gen::map(rc::gen::inRange<int64_t>(-5, 6), [](int64_t v) { return std::to_string(v); }),
      rc::gen::map(rc::gen::arbitrary<int64_t>(), [](int64_t v) { return std::to_string(v); }),
      rc::gen::element<std::string>("", "0", "-0", "01", "+1", " 1", "1 ", "1.5",
                                    "9223372036854775807", "-9223372036854775808",
                                    "9223372036854775808", "-9223372036854775809"));
}

inline int64_t random_delta() {
  return *rc::gen::oneOf(
      rc::gen::inRange<int64_t>(-3, 4), rc::gen::arbitrary<int64_t>(),
      rc::gen::element(std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()));
}

// Fills `out` with a random valid op.
inline void random_op(OwnedOp& out, KeySpace space) {
  Op& op = out.op;
  op = Op{};
  // GET..SIZE and, now and then, FLUSH: the ops the model in kv_app_test knows.
  op.type = *rc::gen::inRange<int>(0, 40) == 0 ? OpType::kFlush
                                               : static_cast<OpType>(*rc::gen::inRange<int>(1, 11));
  auto add_key = [&] { op.keys.push_back(out.keep(random_key(space))); };
  auto add_value = [&] { op.values.push_back(out.keep(random_value())); };
  switch (op.type) {
    case OpType::kGet:
      add_key();
      break;
    case OpType::kSet:
      op.cond = static_cast<SetCond>(*rc::gen::inRange<int>(0, 3));
      add_key();
      add_value();
      break;
    case OpType::kDel:
    case OpType::kMget:
    case OpType::kExists:
    case OpType::kWatch:
    case OpType::kMset: {
      const int n = *rc::gen::inRange(1, 6);
      for (int i = 0; i < n; i++) {
        add_key();
        if (op.type == OpType::kMset) add_value();
      }
      break;
    }
    case OpType::kCas:
      add_key();
      if (*rc::gen::arbitrary<bool>()) op.expected = out.keep(random_value());
      add_value();
      break;
    case OpType::kIncrBy:
      add_key();
      op.delta = random_delta();
      break;
    case OpType::kScan:
      add_key();
      if (*rc::gen::arbitrary<bool>()) add_key();
      op.limit =
          *rc::gen::oneOf(rc::gen::inRange<uint32_t>(0, 5), rc::gen::inRange<uint32_t>(0, 1025));
      break;
    case OpType::kSize:
    case OpType::kFlush:
    case OpType::kMulti:  // not generated: kv_op_test and kv_app_test build their own
      break;
  }
}

inline Reply random_reply() {
  Reply r;
  r.kind = static_cast<Reply::Kind>(*rc::gen::inRange<int>(0, 7));
  switch (r.kind) {
    case Reply::Kind::kOk:
    case Reply::Kind::kNil:
      break;
    case Reply::Kind::kInt:
      r.integer = *rc::gen::arbitrary<int64_t>();
      break;
    case Reply::Kind::kValue:
      r.value = *rc::gen::arbitrary<std::string>();
      break;
    case Reply::Kind::kValues: {
      const int n = *rc::gen::inRange(0, 6);
      for (int i = 0; i < n; i++) {
        if (*rc::gen::arbitrary<bool>()) {
          r.values.emplace_back(*rc::gen::arbitrary<std::string>());
        } else {
          r.values.emplace_back();
        }
      }
      break;
    }
    case Reply::Kind::kPairs: {
      const int n = *rc::gen::inRange(0, 6);
      for (int i = 0; i < n; i++)
        r.pairs.emplace_back(*rc::gen::arbitrary<std::string>(),
                             *rc::gen::arbitrary<std::string>());
      break;
    }
    case Reply::Kind::kError:
      r.error = static_cast<Code>(*rc::gen::inRange<int>(1, 10));
      r.value = *rc::gen::arbitrary<std::string>();
      break;
  }
  return r;
}

}  // namespace maroon::kv::testing
