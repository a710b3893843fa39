// Invariant checks that stay on in every build. A broken invariant is a
// programmer error: the process stops with the location and condition, and
// with the process's crash context if one is registered (which node, in
// which view, at which op: a stop in a cluster names where it happened).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace maroon {

// What a process is doing, for the message it stops with: render writes a
// NUL-terminated line of at most `size` bytes into buf (snprintf; it must not
// allocate, lock or assert: it runs on the abort path). The registrant owns
// the AssertContext and clears it before it or `arg` goes away.
struct AssertContext {
  void (*render)(const void* arg, char* buf, size_t size);
  const void* arg;
};

namespace detail {
inline std::atomic<const AssertContext*> assert_context{nullptr};
// Set while an assertion renders the context: an assertion inside render
// stops without it instead of recursing.
inline std::atomic<bool> assert_rendering{false};
}  // namespace detail

// One per process (the node driver's); nullptr clears it.
inline void set_assert_context(const AssertContext* context) {
  detail::assert_context.store(context, std::memory_order_release);
}

// The registered context rendered into buf ("" if none); returns buf. For
// fatal stops other than assertions, so they name the same context.
inline const char* render_assert_context(char* buf, size_t size) {
  if (size == 0) return buf;
  buf[0] = '\0';
  const AssertContext* c = detail::assert_context.load(std::memory_order_acquire);
  if (c == nullptr || c->render == nullptr) return buf;
  if (detail::assert_rendering.exchange(true)) return buf;
  c->render(c->arg, buf, size);
  buf[size - 1] = '\0';
  detail::assert_rendering.store(false);
  return buf;
}

namespace detail {
[[noreturn]] inline void assert_failed(const char* cond, const char* file, int line,
                                       const char* msg) {
  // Static: no allocation on the way out (one failing thread gets to print
  // it whole; the process is about to abort anyway).
  static char context[256];
  render_assert_context(context, sizeof context);
  const bool has_context = context[0] != '\0';
  std::fprintf(stderr, "maroon: assertion failed: %s at %s:%d%s%s%s%s%s\n", cond, file, line,
               msg ? ": " : "", msg ? msg : "", has_context ? " (" : "", context,
               has_context ? ")" : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail
}  // namespace maroon

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
