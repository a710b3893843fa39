#include <fmt/format.h>
#include <gtest/gtest.h>

#include "app/kv/kv_app.h"
#include "maroon/app.h"

namespace maroon {
namespace {

AppFactory kv_factory() {
  return [] { return std::make_unique<kv::KvApp>(); };
}

TEST(AppId, IsTheNamesFnv1aHash) {
  // Fixed for ever: every tx in every log names its app by this number.
  EXPECT_EQ(AppId::of("kv").value(), 0x593d1d94u);
  EXPECT_EQ(AppId::kKv, AppId::of("kv"));
  EXPECT_NE(AppId::of("kv"), AppId::of("vk"));
}

TEST(AppId, NamesAreValidated) {
  EXPECT_TRUE(is_valid_app_name("kv"));
  EXPECT_TRUE(is_valid_app_name("order-book_2"));
  EXPECT_TRUE(is_valid_app_name(std::string(kAppNameBytesMax, 'a')));
  EXPECT_FALSE(is_valid_app_name(""));
  EXPECT_FALSE(is_valid_app_name(std::string(kAppNameBytesMax + 1, 'a')));
  EXPECT_FALSE(is_valid_app_name("Hello"));
  EXPECT_FALSE(is_valid_app_name("2fast"));
  EXPECT_FALSE(is_valid_app_name("a b"));
  EXPECT_FALSE(is_valid_app_name("a/b"));
}

TEST(AppRegistry, BuiltinsHoldKv) {
  AppRegistry apps = builtin_apps();
  const AppInfo* kv = apps.find("kv");
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->id, AppId::kKv);
  EXPECT_EQ(apps.find(AppId::kKv), kv);
  EXPECT_EQ(apps.find("nope"), nullptr);
  EXPECT_EQ(apps.find(AppId::of("nope")), nullptr);
  std::unique_ptr<StateMachine> a = kv->make();
  std::unique_ptr<StateMachine> b = kv->make();
  ASSERT_NE(a, nullptr);
  EXPECT_NE(a.get(), b.get());  // each call makes a fresh app
  EXPECT_EQ(a->state_hash(), b->state_hash());
}

TEST(AppRegistry, RefusesBadRegistrations) {
  AppRegistry apps = builtin_apps();
  Status twice = apps.add("kv", kv_factory());
  EXPECT_EQ(twice.code(), Code::kInvalidArgument);
  EXPECT_NE(twice.message().find("twice"), std::string::npos);
  Status bad = apps.add("Bad Name", kv_factory());
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("Bad Name"), std::string::npos);
  EXPECT_EQ(apps.add("empty", AppFactory{}).code(), Code::kInvalidArgument);
  EXPECT_EQ(apps.apps().size(), 1u);  // nothing refused was added
  EXPECT_TRUE(apps.add("second", kv_factory(), "a second kv").is_ok());
  EXPECT_EQ(apps.apps().size(), 2u);
  EXPECT_EQ(apps.apps()[1].summary, "a second kv");
}

TEST(AppRegistry, RefusesTwoNamesWithOneId) {
  // A known pair of words that FNV-1a 32 hashes alike.
  ASSERT_EQ(AppId::of("costarring"), AppId::of("liquid"));
  AppRegistry apps;
  ASSERT_TRUE(apps.add("costarring", kv_factory()).is_ok());
  Status s = apps.add("liquid", kv_factory());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("rename one"), std::string::npos);
}

TEST(AppRegistry, HoldsAtMostAppsMax) {
  AppRegistry apps;
  for (size_t i = 0; i < AppRegistry::kAppsMax; i++) {
    ASSERT_TRUE(apps.add(fmt::format("app{}", i), kv_factory()).is_ok()) << i;
  }
  EXPECT_EQ(apps.add("onemore", kv_factory()).code(), Code::kTooLarge);
}

}  // namespace
}  // namespace maroon
