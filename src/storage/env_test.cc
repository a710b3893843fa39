#include "storage/env.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>

#include "storage/fault_env.h"

namespace maroon {
namespace {

std::string read_all(File& file) {
  auto size = file.size();
  EXPECT_TRUE(size.is_ok());
  std::string out;
  EXPECT_TRUE(file.read_at(0, *size, out).is_ok());
  return out;
}

std::string read_path(Env& env, const std::string& path) {
  auto file = env.open(path, false);
  EXPECT_TRUE(file.is_ok()) << file.status().to_string();
  return read_all(**file);
}

class PosixEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/maroon-env-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  PosixEnv env_;
  std::string dir_;
};

TEST_F(PosixEnvTest, WritesReadsAndSizesAFile) {
  const std::string path = join_path(dir_, "f");
  auto file = env_.open(path, true);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  ASSERT_TRUE((*file)->write_at(0, "hello").is_ok());
  ASSERT_TRUE((*file)->write_at(10, "world").is_ok());  // leaves a hole of zeros
  ASSERT_TRUE((*file)->sync().is_ok());
  EXPECT_EQ(read_all(**file), std::string("hello\0\0\0\0\0world", 15));

  std::string out;
  ASSERT_TRUE((*file)->read_at(12, 100, out).is_ok());
  EXPECT_EQ(out, "rld");  // short read at end of file
  ASSERT_TRUE((*file)->read_at(100, 5, out).is_ok());
  EXPECT_EQ(out, "");

  ASSERT_TRUE((*file)->allocate(4096).is_ok());
  EXPECT_EQ(*(*file)->size(), 4096u);
  ASSERT_TRUE((*file)->read_at(4000, 96, out).is_ok());
  EXPECT_EQ(out, std::string(96, '\0'));
  ASSERT_TRUE((*file)->truncate(3).is_ok());
  EXPECT_EQ(read_all(**file), "hel");
}

TEST_F(PosixEnvTest, MissingFileIsNotFoundWithErrnoText) {
  auto file = env_.open(join_path(dir_, "missing"), false);
  ASSERT_FALSE(file.is_ok());
  EXPECT_EQ(file.status().code(), Code::kNotFound);
  EXPECT_NE(file.status().message().find("No such file or directory"), std::string::npos)
      << file.status().message();
  EXPECT_NE(file.status().message().find("missing"), std::string::npos);
}

TEST_F(PosixEnvTest, DirectoryOperations) {
  const std::string sub = join_path(dir_, "a/b/c");
  ASSERT_TRUE(env_.create_dirs(sub).is_ok());
  ASSERT_TRUE(env_.create_dirs(sub).is_ok());  // idempotent
  EXPECT_TRUE(env_.exists(sub));
  for (const char* name : {"z", "x", "y"}) {
    ASSERT_TRUE(env_.open(join_path(sub, name), true).is_ok());
  }
  ASSERT_TRUE(env_.rename(join_path(sub, "z"), join_path(sub, "w")).is_ok());
  ASSERT_TRUE(env_.remove(join_path(sub, "x")).is_ok());
  ASSERT_TRUE(env_.sync_dir(sub).is_ok());
  auto names = env_.list_dir(sub);
  ASSERT_TRUE(names.is_ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"w", "y"}));
  EXPECT_FALSE(env_.exists(join_path(sub, "x")));
  EXPECT_EQ(env_.remove(join_path(sub, "x")).code(), Code::kNotFound);
  EXPECT_FALSE(env_.list_dir(join_path(dir_, "nope")).is_ok());
}

TEST(PathTest, ParentAndJoin) {
  EXPECT_EQ(parent_dir("a/b/c"), "a/b");
  EXPECT_EQ(parent_dir("c"), ".");
  EXPECT_EQ(parent_dir("/c"), "/");
  EXPECT_EQ(join_path("a", "b"), "a/b");
  EXPECT_EQ(join_path("a/", "b"), "a/b");
}

class FaultEnvTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(env_.create_dirs("d").is_ok()); }

  std::unique_ptr<File> create(const std::string& path) {
    auto file = env_.open(path, true);
    EXPECT_TRUE(file.is_ok());
    EXPECT_TRUE(env_.sync_dir(parent_dir(path)).is_ok());
    return std::move(*file);
  }

  FaultEnv env_;
  Prng prng_{42};
};

TEST_F(FaultEnvTest, CrashKeepsSyncedDataAndDropsTheRest) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, "durable").is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  ASSERT_TRUE(file->write_at(0, "VOLATILE-and-longer").is_ok());
  EXPECT_EQ(read_all(*file), "VOLATILE-and-longer");
  env_.crash(prng_, /*tear=*/false);
  EXPECT_EQ(read_path(env_, "d/f"), "durable");
  // The handle from before the crash is detached.
  ASSERT_TRUE(file->write_at(0, "ghost").is_ok());
  EXPECT_EQ(read_path(env_, "d/f"), "durable");
}

TEST_F(FaultEnvTest, DirectoryEntriesNeedSyncDir) {
  auto kept = create("d/kept");
  ASSERT_TRUE(kept->sync().is_ok());
  auto lost = env_.open("d/lost", true);
  ASSERT_TRUE(lost.is_ok());
  ASSERT_TRUE((*lost)->sync().is_ok());  // data synced, name not
  ASSERT_TRUE(env_.rename("d/kept", "d/renamed").is_ok());
  EXPECT_TRUE(env_.exists("d/renamed"));
  env_.crash(prng_, false);
  EXPECT_TRUE(env_.exists("d/kept"));
  EXPECT_FALSE(env_.exists("d/renamed"));
  EXPECT_FALSE(env_.exists("d/lost"));

  ASSERT_TRUE(env_.rename("d/kept", "d/renamed").is_ok());
  ASSERT_TRUE(env_.sync_dir("d").is_ok());
  env_.crash(prng_, false);
  EXPECT_EQ(*env_.list_dir("d"), std::vector<std::string>{"renamed"});
}

TEST_F(FaultEnvTest, TornCrashKeepsWholeSectorsFromEitherSide) {
  constexpr size_t kSectors = 64;
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, std::string(kSectors * 512, 'a')).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  ASSERT_TRUE(file->write_at(0, std::string(kSectors * 512 + 100, 'b')).is_ok());
  env_.crash(prng_, /*tear=*/true);
  const std::string after = read_path(env_, "d/f");
  ASSERT_GE(after.size(), kSectors * 512);
  size_t kept = 0;
  for (size_t s = 0; s < kSectors; s++) {
    const std::string sector = after.substr(s * 512, 512);
    ASSERT_TRUE(sector == std::string(512, 'a') || sector == std::string(512, 'b')) << s;
    kept += sector[0] == 'b';
  }
  // With p = 1/2 per sector, 64 sectors all kept or all lost means a broken tear.
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, kSectors);
}

TEST_F(FaultEnvTest, TornCrashIsDeterministicPerSeed) {
  auto run = [](uint64_t seed) {
    FaultEnv env;
    EXPECT_TRUE(env.create_dirs("d").is_ok());
    auto file = *env.open("d/f", true);
    EXPECT_TRUE(env.sync_dir("d").is_ok());
    EXPECT_TRUE(file->write_at(0, std::string(32 * 512, 'x')).is_ok());
    Prng prng(seed);
    env.crash(prng, true);
    return read_path(env, "d/f");
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST_F(FaultEnvTest, InjectedWriteErrorsFailThenClear) {
  auto file = create("d/f");
  env_.inject_write_errors(2, /*after=*/1);
  EXPECT_TRUE(file->write_at(0, "a").is_ok());
  Status s = file->write_at(1, "b");
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_NE(s.message().find("no space left on device"), std::string::npos);
  EXPECT_EQ(file->allocate(4096).code(), Code::kIoError);
  EXPECT_TRUE(file->write_at(1, "c").is_ok());
  EXPECT_EQ(read_all(*file), "ac");  // the failed write changed nothing
}

TEST_F(FaultEnvTest, FailedSyncMakesNothingDurable) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, "old").is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  ASSERT_TRUE(file->write_at(0, "new").is_ok());
  env_.inject_sync_errors(1);
  EXPECT_EQ(file->sync().code(), Code::kIoError);
  EXPECT_EQ(env_.sync_dir("d").code(), Code::kOk);
  env_.crash(prng_, false);
  EXPECT_EQ(read_path(env_, "d/f"), "old");
}

TEST_F(FaultEnvTest, InjectedReadErrorsFailThenClear) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, "abc").is_ok());
  env_.inject_read_errors(1, /*after=*/1);
  std::string out;
  EXPECT_TRUE(file->read_at(0, 3, out).is_ok());
  const Status s = file->read_at(0, 3, out);
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_NE(s.message().find("input/output error"), std::string::npos) << s.message();
  EXPECT_EQ(read_all(*file), "abc");
}

// A latent sector error: reads of the sector fail, before and after a crash,
// until a write of the whole sector reaches the disk.
TEST_F(FaultEnvTest, BadSectorIsUnreadableUntilRewrittenOnDisk) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, std::string(4 * 512, 'a')).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  env_.add_bad_sectors("d/f", 600, 1);  // sector 1
  std::string out;
  EXPECT_TRUE(file->read_at(0, 512, out).is_ok());
  EXPECT_TRUE(file->read_at(1024, 1024, out).is_ok());
  EXPECT_EQ(file->read_at(1000, 30, out).code(), Code::kIoError);
  EXPECT_EQ(file->write_at(700, "x").code(), Code::kIoError);  // read-modify-write
  env_.crash(prng_, /*tear=*/false);
  file = *env_.open("d/f", false);
  EXPECT_EQ(file->read_at(0, 4 * 512, out).code(), Code::kIoError);

  // Rewritten in the cache only: readable from there, bad again after a crash.
  ASSERT_TRUE(file->write_at(512, std::string(512, 'b')).is_ok());
  EXPECT_EQ(read_all(*file).substr(512, 512), std::string(512, 'b'));
  env_.crash(prng_, /*tear=*/false);
  file = *env_.open("d/f", false);
  EXPECT_EQ(file->read_at(512, 1, out).code(), Code::kIoError);

  ASSERT_TRUE(file->write_at(512, std::string(512, 'b')).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  env_.crash(prng_, /*tear=*/false);
  EXPECT_EQ(read_path(env_, "d/f"),
            std::string(512, 'a') + std::string(512, 'b') + std::string(1024, 'a'));
}

TEST_F(FaultEnvTest, BitFlipChangesTheDiskAndWhatReadsSee) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, std::string(1024, '\0')).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  env_.flip_bit("d/f", 8 * 700 + 3);
  std::string expected(1024, '\0');
  expected[700] = 1 << 3;
  EXPECT_EQ(read_all(*file), expected);
  env_.crash(prng_, /*tear=*/false);
  EXPECT_EQ(read_path(env_, "d/f"), expected);

  // Prng-chosen: inside the range asked for, the same bit for the same seed.
  Prng a(9), b(9);
  const uint64_t bit = env_.flip_random_bit("d/f", a, 100, 10);
  EXPECT_GE(bit, 800u);
  EXPECT_LT(bit, 880u);
  EXPECT_EQ(env_.flip_random_bit("d/f", b, 100, 10), bit);  // flipped back
  EXPECT_EQ(read_path(env_, "d/f"), expected);
}

// The disk acknowledges the write and drops it: reads see it until the cache
// is dropped, a sync "succeeds", and a crash shows the old content.
TEST_F(FaultEnvTest, LostWriteReportsSuccessButNeverReachesTheDisk) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, std::string(1024, 'o')).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  env_.lose_next_writes(1);
  ASSERT_TRUE(file->write_at(0, std::string(600, 'n')).is_ok());
  EXPECT_EQ(read_all(*file), std::string(600, 'n') + std::string(424, 'o'));
  ASSERT_TRUE(file->sync().is_ok());
  ASSERT_TRUE(file->sync_and_drop_cache().is_ok());
  EXPECT_EQ(read_all(*file), std::string(1024, 'o'));
  ASSERT_TRUE(file->write_at(0, "n").is_ok());  // the next write is not lost
  ASSERT_TRUE(file->sync().is_ok());
  env_.crash(prng_, /*tear=*/false);
  EXPECT_EQ(read_path(env_, "d/f"), "n" + std::string(1023, 'o'));
}

// The disk writes the sectors at another offset of the same file: the cache
// shows them where they belong, the disk elsewhere.
TEST_F(FaultEnvTest, MisdirectedWriteLandsAtAnotherSectorOfTheFile) {
  auto run = [](uint64_t seed) {
    FaultEnv env;
    EXPECT_TRUE(env.create_dirs("d").is_ok());
    auto file = *env.open("d/f", true);
    EXPECT_TRUE(env.sync_dir("d").is_ok());
    EXPECT_TRUE(file->write_at(0, std::string(16 * 512, 'a')).is_ok());
    EXPECT_TRUE(file->sync().is_ok());
    Prng prng(seed);
    env.misdirect_next_writes(1, prng);
    EXPECT_TRUE(file->write_at(3 * 512 + 10, std::string(502, 'b')).is_ok());
    std::string image = read_all(*file);
    EXPECT_EQ(image.substr(3 * 512 + 10, 502), std::string(502, 'b'));
    EXPECT_TRUE(file->sync().is_ok());
    EXPECT_EQ(read_all(*file), image);  // the cache does not know
    EXPECT_TRUE(file->sync_and_drop_cache().is_ok());
    image = read_all(*file);
    Prng crash(seed);
    env.crash(crash, /*tear=*/true);
    EXPECT_EQ(read_path(env, "d/f"), image);  // it was synced
    return image;
  };
  for (uint64_t seed = 0; seed < 8; seed++) {
    const std::string image = run(seed);
    ASSERT_EQ(image.size(), 16 * 512u);
    EXPECT_EQ(image.substr(3 * 512, 512), std::string(512, 'a')) << "written where it belongs";
    // Exactly one other sector holds the write (its first 10 bytes as they were).
    int landed = 0;
    for (uint64_t s = 0; s < 16; s++) {
      const std::string sector = image.substr(s * 512, 512);
      if (sector == std::string(10, 'a') + std::string(502, 'b')) {
        landed++;
      } else {
        EXPECT_EQ(sector, std::string(512, 'a')) << s;
      }
    }
    EXPECT_EQ(landed, 1);
    EXPECT_EQ(run(seed), image);
  }
}

// A power cut at a chosen point: the call that hits the limit and every
// later mutating call fail and change nothing; reads still see the cache;
// crash() loses what was not durable and lifts the freeze.
TEST_F(FaultEnvTest, CrashAfterOpsFreezesTheDiskUntilTheCrash) {
  auto file = create("d/f");
  ASSERT_TRUE(file->write_at(0, "durable").is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  env_.crash_after_ops(1);
  ASSERT_TRUE(file->write_at(0, "written").is_ok());
  EXPECT_EQ(env_.crash_point(), std::nullopt);
  const Status s = file->sync();  // between pwrite and fdatasync
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_NE(s.message().find("machine crashed"), std::string::npos) << s.message();
  EXPECT_EQ(env_.crash_point(), "sync d/f");
  EXPECT_EQ(file->write_at(0, "later").code(), Code::kIoError);
  EXPECT_EQ(file->sync().code(), Code::kIoError);
  auto created = env_.open("d/new", true);
  ASSERT_FALSE(created.is_ok());
  EXPECT_EQ(created.status().code(), Code::kIoError);
  EXPECT_FALSE(env_.exists("d/new"));
  EXPECT_EQ(env_.rename("d/f", "d/g").code(), Code::kIoError);
  EXPECT_EQ(env_.remove("d/f").code(), Code::kIoError);
  EXPECT_EQ(env_.sync_dir("d").code(), Code::kIoError);
  EXPECT_EQ(env_.create_dirs("d/sub").code(), Code::kIoError);
  EXPECT_EQ(env_.crash_point(), "sync d/f") << "the first refusal is the crash point";
  EXPECT_EQ(read_all(*file), "written") << "reads see the page cache";

  env_.crash(prng_, /*tear=*/false);
  EXPECT_EQ(env_.crash_point(), std::nullopt);
  EXPECT_EQ(read_path(env_, "d/f"), "durable");
  file = *env_.open("d/f", false);
  ASSERT_TRUE(file->write_at(0, "rebooted").is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  EXPECT_EQ(read_path(env_, "d/f"), "rebooted");
}

// Every kind of mutating call counts once, reads none, so crash_after_ops(n)
// strikes exactly the (n+1)-th mutating call of a fixed sequence.
TEST_F(FaultEnvTest, CrashAfterOpsStrikesTheNthMutatingCall) {
  struct Step {
    std::string name;  // what crash_point() says when this step is struck
    std::function<Status(FaultEnv&, File&)> run;
  };
  const std::vector<Step> steps = {
      {"create_dirs d/e", [](FaultEnv& e, File&) { return e.create_dirs("d/e"); }},
      {"open(create) d/e/h",
       [](FaultEnv& e, File&) {
         auto file = e.open("d/e/h", true);
         return file ? Status::ok() : file.status();
       }},
      {"truncate d/f", [](FaultEnv&, File& f) { return f.truncate(0); }},
      {"allocate d/f", [](FaultEnv&, File& f) { return f.allocate(4096); }},
      {"write_at d/f", [](FaultEnv&, File& f) { return f.write_at(0, "x"); }},
      {"sync d/f", [](FaultEnv&, File& f) { return f.sync(); }},
      {"rename d/f -> d/g", [](FaultEnv& e, File&) { return e.rename("d/f", "d/g"); }},
      {"sync_dir d", [](FaultEnv& e, File&) { return e.sync_dir("d"); }},
      {"write_at d/g", [](FaultEnv&, File& f) { return f.write_at(1, "y"); }},
      {"sync_and_drop_cache d/g", [](FaultEnv&, File& f) { return f.sync_and_drop_cache(); }},
      {"remove d/g", [](FaultEnv& e, File&) { return e.remove("d/g"); }},
  };
  for (size_t n = 0; n <= steps.size(); n++) {
    FaultEnv env;
    ASSERT_TRUE(env.create_dirs("d").is_ok());
    auto file = *env.open("d/f", true);
    const uint64_t ops_before = env.mutating_ops();
    env.crash_after_ops(n);
    for (size_t i = 0; i < steps.size(); i++) {
      std::string out;
      ASSERT_TRUE(file->read_at(0, 10, out).is_ok()) << "reads never count";
      EXPECT_TRUE(file->size().is_ok());
      EXPECT_TRUE(env.list_dir("d").is_ok());
      const Status s = steps[i].run(env, *file);
      EXPECT_EQ(s.code(), i < n ? Code::kOk : Code::kIoError) << n << " " << steps[i].name;
    }
    EXPECT_EQ(env.mutating_ops() - ops_before, std::min(n, steps.size()));
    if (n < steps.size()) {
      EXPECT_EQ(env.crash_point(), steps[n].name);
    } else {
      EXPECT_EQ(env.crash_point(), std::nullopt);
    }
  }
}

}  // namespace
}  // namespace maroon
