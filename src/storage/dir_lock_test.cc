#include "storage/dir_lock.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace maroon {
namespace {

TEST(DirLock, SecondHolderIsRefusedUntilReleased) {
  char tmpl[] = "/tmp/maroon-lock-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  {
    auto first = DirLock::acquire(dir);
    ASSERT_TRUE(first.is_ok()) << first.status().to_string();
    auto second = DirLock::acquire(dir);
    ASSERT_FALSE(second.is_ok());
    EXPECT_EQ(second.status().code(), Code::kUnavailable);
    EXPECT_NE(second.status().message().find("in use"), std::string::npos);
  }
  EXPECT_TRUE(DirLock::acquire(dir).is_ok()) << "released when the holder goes";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace maroon
