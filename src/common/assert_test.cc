// A broken invariant stops the process with its location, condition and the
// registered crash context.
#include "maroon/assert.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace maroon {
namespace {

struct FakeNode {
  unsigned id = 3, view = 7, op = 42;
};

void render_fake(const void* arg, char* buf, size_t size) {
  const auto* n = static_cast<const FakeNode*>(arg);
  std::snprintf(buf, size, "node %u, view %u, op %u", n->id, n->view, n->op);
}

TEST(AssertDeathTest, MessageHasConditionLocationAndNoContextWhenNoneIsSet) {
  set_assert_context(nullptr);
  const int ops = 1;
  EXPECT_DEATH(MAROON_ASSERT(ops == 2), "assertion failed: ops == 2 at .*assert_test.cc:[0-9]+\n");
}

TEST(AssertDeathTest, MessageCarriesTheRegisteredContext) {
  FakeNode node;
  const AssertContext context{&render_fake, &node};
  set_assert_context(&context);
  EXPECT_DEATH(MAROON_ASSERT_MSG(node.op < 10, "op beyond the log"),
               "assertion failed: node.op < 10 at .*assert_test.cc:[0-9]+: op beyond the log "
               "\\(node 3, view 7, op 42\\)");
  set_assert_context(nullptr);
}

TEST(AssertDeathTest, AnAssertionInsideTheRenderStopsWithoutRecursing) {
  const AssertContext context{[](const void*, char*, size_t) { MAROON_ASSERT(false); }, nullptr};
  set_assert_context(&context);
  EXPECT_DEATH(MAROON_UNREACHABLE(), "assertion failed: false");
  set_assert_context(nullptr);
}

TEST(AssertContext, RenderTruncatesToTheBuffer) {
  FakeNode node;
  const AssertContext context{&render_fake, &node};
  set_assert_context(&context);
  char buf[8];
  EXPECT_STREQ(render_assert_context(buf, sizeof buf), "node 3,");
  set_assert_context(nullptr);
  EXPECT_STREQ(render_assert_context(buf, sizeof buf), "");
}

}  // namespace
}  // namespace maroon
