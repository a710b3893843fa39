// Invariant checks that stay on in every build. A broken invariant is a
// programmer error: the process stops with the location and condition.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace maroon::detail {
[[noreturn]] inline void assert_failed(const char* cond, const char* file, int line,
                                       const char* msg) {
  std::fprintf(stderr, "maroon: assertion failed: %s at %s:%d%s%s\n", cond, file, line,
               msg ? ": " : "", msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace maroon::detail

#define MAROON_ASSERT(cond)                                                      \
  do {                                                                           \
    if (__builtin_expect(!(cond), 0))                                            \
      ::maroon::detail::assert_failed(#cond, __FILE__, __LINE__, nullptr);       \
  } while (0)

#define MAROON_ASSERT_MSG(cond, msg)                                             \
  do {                                                                           \
    if (__builtin_expect(!(cond), 0))                                            \
      ::maroon::detail::assert_failed(#cond, __FILE__, __LINE__, (msg));         \
  } while (0)

#define MAROON_UNREACHABLE() ::maroon::detail::assert_failed("unreachable", __FILE__, __LINE__, nullptr)
