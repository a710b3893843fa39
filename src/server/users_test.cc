#include "server/users.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace maroon::server {
namespace {

std::string entry(std::string_view name, std::string_view access, std::string_view password) {
  return user_entry_text({.name = std::string(name),
                          .access = access == "read-only" ? Access::kReadOnly : Access::kReadWrite,
                          .digest = secret_digest(password)});
}

TEST(Users, LoginChecksNameAndPassword) {
  const std::string text = entry("alice", "read-write", "alice-password-123456") +
                           entry("bob", "read-only", "bob-password-12345678");
  Result<UserTable> t = UserTable::parse(text, "users.toml");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  ASSERT_EQ(t->users().size(), 2u);
  const User* alice = t->login("alice", "alice-password-123456");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->access, Access::kReadWrite);
  const User* bob = t->login("bob", "bob-password-12345678");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->access, Access::kReadOnly);
  EXPECT_EQ(t->login("alice", "bob-password-12345678"), nullptr);  // someone else's password
  EXPECT_EQ(t->login("alice", "alice-password-12345"), nullptr);
  EXPECT_EQ(t->login("carol", "alice-password-123456"), nullptr);
  EXPECT_EQ(t->login("alice", ""), nullptr);
  EXPECT_EQ(t->login("alice", std::string(password_bytes_max + 1, 'a')), nullptr);
}

TEST(Users, BearerTokenNamesItsUser) {
  Result<UserTable> t = UserTable::parse(entry("alice", "read-write", "tok-a-0123456789abc") +
                                             entry("bob", "read-only", "tok-b-0123456789abc"),
                                         "users.toml");
  ASSERT_TRUE(t.is_ok());
  ASSERT_NE(t->by_secret("tok-b-0123456789abc"), nullptr);
  EXPECT_EQ(t->by_secret("tok-b-0123456789abc")->name, "bob");
  EXPECT_EQ(t->by_secret("tok-a-0123456789abc")->name, "alice");
  EXPECT_EQ(t->by_secret("tok-c-0123456789abc"), nullptr);
  EXPECT_EQ(t->by_secret(""), nullptr);
}

TEST(Users, EntryRoundTripsAndDigestIsSha256) {
  // SHA-256("abc"), FIPS 180-2's first example.
  EXPECT_EQ(digest_hex(secret_digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(entry("a.b@c-d_e", "read-only", "abc"),
            "[[user]]\nname = \"a.b@c-d_e\"\naccess = \"read-only\"\n"
            "password_sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n");
}

TEST(Users, GeneratedSecretsAreLongAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string s = generate_secret();
    EXPECT_EQ(s.size(), 44u);
    EXPECT_EQ(s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos);
    EXPECT_TRUE(seen.insert(s).second);
  }
}

TEST(Users, BadFilesAreRefusedNamingWhatIsWrong) {
  const std::string digest(64, 'a');
  struct Case {
    std::string text;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"[[user]]\nname = \"x\"\n", "user \"x\": no access"},
      {"[[user]]\nname = \"x\"\naccess = \"read-write\"\n", "user \"x\": no password_sha256"},
      {"[[user]]\naccess = \"read-write\"\n", "user 1: no name"},
      {"[[user]]\nname = \"x y\"\n", "user 1: name \"x y\" is not"},
      {"[[user]]\nname = \"x\"\naccess = \"admin\"\n", "access \"admin\": expected"},
      {"[[user]]\nname = \"x\"\npassword_sha256 = \"abc\"\n", "must be 64 hex digits"},
      {"[[user]]\nname = \"x\"\npassword = \"plain\"\n", "unknown key 'password'"},
      {"[[user]]\nname = \"x\"\naccess = \"read-only\"\npassword_sha256 = \"" +
           digest_hex(secret_digest("")) + "\"\n",
       "the digest of the empty password"},
      {"[[user]]\nname = 7\n", "name must be a string"},
      {"users = 1\n", "unknown key 'users'"},
      {"user = 1\n", "'user' must be [[user]] tables"},
      {"[[user]\n", "line 1"},
      {"[[user]]\nname = \"x\"\naccess = \"read-only\"\npassword_sha256 = \"" + digest +
           "\"\n[[user]]\nname = \"x\"\naccess = \"read-only\"\npassword_sha256 = \"" +
           std::string(64, 'b') + "\"\n",
       "user \"x\" appears twice"},
      {"[[user]]\nname = \"x\"\naccess = \"read-only\"\npassword_sha256 = \"" + digest +
           "\"\n[[user]]\nname = \"y\"\naccess = \"read-only\"\npassword_sha256 = \"" + digest +
           "\"\n",
       "user \"y\" has the same password as user \"x\""},
  };
  for (const Case& c : cases) {
    Result<UserTable> t = UserTable::parse(c.text, "u.toml");
    ASSERT_FALSE(t.is_ok()) << c.text;
    EXPECT_NE(t.status().message().find(c.error), std::string::npos)
        << c.text << " -> " << t.status().message();
    EXPECT_EQ(t.status().message().rfind("u.toml: ", 0), 0u) << t.status().message();
  }
  EXPECT_TRUE(UserTable::parse("", "u.toml").is_ok());  // nobody may log in
}

TEST(Users, LoadRefusesAFileOthersMayRead) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("users_test_" + std::to_string(::getpid()))).string();
  {
    std::ofstream out(path);
    out << entry("alice", "read-write", "alice-password-123456");
  }
  ::chmod(path.c_str(), 0644);
  auto open = UserTable::load(path);
  ASSERT_FALSE(open.is_ok());
  EXPECT_NE(open.status().message().find("chmod 600"), std::string::npos);
  ::chmod(path.c_str(), 0600);
  auto closed = UserTable::load(path);
  ASSERT_TRUE(closed.is_ok()) << closed.status().to_string();
  EXPECT_NE((*closed)->login("alice", "alice-password-123456"), nullptr);
  std::filesystem::remove(path);
  EXPECT_FALSE(UserTable::load(path).is_ok());
}

TEST(Users, AccessNames) {
  EXPECT_EQ(access_name(Access::kReadOnly), "read-only");
  EXPECT_EQ(access_name(Access::kReadWrite), "read-write");
  EXPECT_TRUE(valid_user_name(std::string(user_name_bytes_max, 'a')));
  EXPECT_FALSE(valid_user_name(std::string(user_name_bytes_max + 1, 'a')));
  EXPECT_FALSE(valid_user_name(""));
  EXPECT_FALSE(valid_user_name("a\"b"));
}

}  // namespace
}  // namespace maroon::server
