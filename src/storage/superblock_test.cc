#include "storage/superblock.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "storage/fault_env.h"

namespace maroon {
namespace {

constexpr const char* kPath = "node/superblock";

class SuperblockTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(env_.create_dirs("node").is_ok()); }

  std::unique_ptr<Superblock> open() {
    auto sb = Superblock::open(env_, kPath);
    EXPECT_TRUE(sb.is_ok()) << sb.status().to_string();
    return sb.is_ok() ? std::move(sb.value()) : nullptr;
  }

  void flip(uint64_t offset) {
    auto file = *env_.open(kPath, false);
    std::string byte;
    ASSERT_TRUE(file->read_at(offset, 1, byte).is_ok());
    byte[0] = static_cast<char>(byte[0] ^ 0x20);
    ASSERT_TRUE(file->write_at(offset, byte).is_ok());
    ASSERT_TRUE(file->sync().is_ok());
  }

  FaultEnv env_;
  Prng prng_{3};
};

TEST_F(SuperblockTest, FreshFileHasNothing) {
  auto sb = open();
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->current(), std::nullopt);
  EXPECT_EQ(sb->sequence(), 0u);
  // Creation is durable: a crash right after open does not lose the file.
  env_.crash(prng_, false);
  sb = open();
  EXPECT_EQ(sb->current(), std::nullopt);
}

TEST_F(SuperblockTest, AlternatingWritesAlwaysReadTheNewest) {
  for (int i = 1; i <= 6; i++) {
    auto sb = open();
    ASSERT_TRUE(sb);
    EXPECT_EQ(sb->sequence(), uint64_t(i - 1));
    if (i > 1) {
      EXPECT_EQ(sb->current(), "state " + std::to_string(i - 1));
    }
    ASSERT_TRUE(sb->write("state " + std::to_string(i)).is_ok());
    EXPECT_EQ(sb->current(), "state " + std::to_string(i));
    env_.crash(prng_, true);  // synced: a crash changes nothing
  }
  auto sb = open();
  EXPECT_EQ(sb->current(), "state 6");
  ASSERT_TRUE(sb->write("").is_ok());
  sb = open();
  EXPECT_EQ(sb->current(), "");  // empty payload is not "nothing"
}

// A write whose fdatasync failed under Linux's semantics (the page marked
// clean, never written) and a killed process: the restart must read what
// the disk holds, the older copy, not the page cache's newer one, which a
// power failure would take away after the node had acted on it.
TEST_F(SuperblockTest, AfterAFailedSyncTheRestartReadsTheDiskNotTheCache) {
  {
    auto sb = open();
    ASSERT_TRUE(sb);
    ASSERT_TRUE(sb->write("durable").is_ok());
    env_.set_linux_failed_sync(true);
    env_.inject_sync_errors(1);
    EXPECT_FALSE(sb->write("never on disk").is_ok());
  }
  auto sb = open();  // the process was killed; the machine was not
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->current(), "durable");
  env_.crash(prng_, true);
  sb = open();
  EXPECT_EQ(sb->current(), "durable");
}

// Killed between write and fdatasync: the restart makes the newer copy
// durable before it uses it, so a power failure right after changes nothing.
TEST_F(SuperblockTest, WhatTheRestartReadsSurvivesAPowerFailureRightAfter) {
  {
    auto sb = open();
    ASSERT_TRUE(sb);
    ASSERT_TRUE(sb->write("durable").is_ok());
    env_.inject_sync_errors(1);  // the write lands in the cache, unsynced
    EXPECT_FALSE(sb->write("newer").is_ok());
  }
  std::optional<std::string> read;
  {
    auto sb = open();
    ASSERT_TRUE(sb);
    read = sb->current();
  }
  env_.crash(prng_, false);
  auto sb = open();
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->current(), read);
}

TEST_F(SuperblockTest, TornWriteFallsBackToTheOtherCopy) {
  bool saw_old = false;
  bool saw_new = false;
  for (uint64_t seed = 0; seed < 64; seed++) {
    FaultEnv env;
    ASSERT_TRUE(env.create_dirs("node").is_ok());
    {
      auto sb = *Superblock::open(env, kPath);
      ASSERT_TRUE(sb->write(std::string(600, 'o')).is_ok());
      ASSERT_TRUE(sb->write(std::string(1500, 'p')).is_ok());
      env.inject_sync_errors(1);
      EXPECT_EQ(sb->write(std::string(2000, 'n')).code(), Code::kIoError);
      EXPECT_EQ(sb->write("later").code(), Code::kIoError);  // failed for good
    }
    Prng prng(seed);
    env.crash(prng, /*tear=*/true);
    auto sb = Superblock::open(env, kPath);
    ASSERT_TRUE(sb.is_ok()) << sb.status().to_string();
    const std::string& got = *(*sb)->current();
    ASSERT_TRUE(got == std::string(1500, 'p') || got == std::string(2000, 'n')) << got.size();
    saw_old |= got[0] == 'p';
    saw_new |= got[0] == 'n';
  }
  EXPECT_TRUE(saw_old);
  EXPECT_TRUE(saw_new);
}

TEST_F(SuperblockTest, CorruptNewestCopyFallsBackAndIsOverwrittenNext) {
  {
    auto sb = open();
    ASSERT_TRUE(sb->write("one").is_ok());  // sequence 1, slot 1
    ASSERT_TRUE(sb->write("two").is_ok());  // sequence 2, slot 0
  }
  flip(Superblock::kHeaderBytes + 1);  // payload of slot 0
  auto sb = open();
  EXPECT_EQ(sb->current(), "one");
  EXPECT_EQ(sb->sequence(), 1u);
  ASSERT_TRUE(sb->write("three").is_ok());  // repairs slot 0
  sb = open();
  EXPECT_EQ(sb->current(), "three");
}

// Before: the file was read whole, so one unreadable sector anywhere failed
// the start, even in the older copy.
TEST_F(SuperblockTest, AnUnreadableCopyIsSkippedAsACorruptOneIs) {
  {
    auto sb = open();
    ASSERT_TRUE(sb->write("one").is_ok());  // sequence 1, slot 1
    ASSERT_TRUE(sb->write("two").is_ok());  // sequence 2, slot 0
  }
  env_.add_bad_sectors(kPath, Superblock::kSlotBytes, 512);  // the older copy
  auto sb = open();
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->current(), "two");
  sb.reset();
  env_.add_bad_sectors(kPath, 0, 512);  // the newest copy too
  auto both = Superblock::open(env_, kPath);
  ASSERT_FALSE(both.is_ok());
  EXPECT_EQ(both.status().code(), Code::kIoError) << both.status().to_string();
  EXPECT_NE(both.status().message().find("neither superblock copy is readable"),
            std::string::npos);
}

TEST_F(SuperblockTest, AnUnreadableNewestCopyFallsBackLikeATornOne) {
  {
    auto sb = open();
    ASSERT_TRUE(sb->write("one").is_ok());  // sequence 1, slot 1
    ASSERT_TRUE(sb->write("two").is_ok());  // sequence 2, slot 0
  }
  env_.add_bad_sectors(kPath, 0, 512);
  auto sb = open();
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->current(), "one");
  EXPECT_EQ(sb->sequence(), 1u);
}

TEST_F(SuperblockTest, BothCopiesCorruptIsAnError) {
  {
    auto sb = open();
    ASSERT_TRUE(sb->write("one").is_ok());
  }
  flip(3);                            // slot 0 magic
  flip(Superblock::kSlotBytes + 20);  // slot 1 sequence
  auto sb = Superblock::open(env_, kPath);
  ASSERT_FALSE(sb.is_ok());
  EXPECT_EQ(sb.status().code(), Code::kCorruption);
  EXPECT_NE(sb.status().message().find(kPath), std::string::npos);
}

// The disk acknowledged the write of the newest copy and dropped it: the
// restart reads the other copy (the state before), never the cached one.
TEST_F(SuperblockTest, LostWriteOfACopyFallsBackToTheOtherCopy) {
  {
    auto sb = open();
    ASSERT_TRUE(sb);
    ASSERT_TRUE(sb->write("one").is_ok());
    env_.lose_next_writes(1);
    ASSERT_TRUE(sb->write("two").is_ok());
    EXPECT_EQ(sb->current(), "two");
  }
  auto sb = open();  // killed; the cache still shows "two"
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->current(), "one");
  EXPECT_EQ(sb->sequence(), 1u);
  ASSERT_TRUE(sb->write("three").is_ok());
  env_.crash(prng_, /*tear=*/true);
  sb = open();
  EXPECT_EQ(sb->current(), "three");
}

// Silent corruption of the newest copy, anywhere its checksum covers.
TEST_F(SuperblockTest, BitFlipInTheNewestCopyFallsBackToTheOtherCopy) {
  const std::string one(300, '1'), two(300, '2');
  for (uint64_t seed = 0; seed < 32; seed++) {
    SCOPED_TRACE(seed);
    FaultEnv env;
    ASSERT_TRUE(env.create_dirs("node").is_ok());
    {
      auto sb = *Superblock::open(env, kPath);
      ASSERT_TRUE(sb->write(one).is_ok());  // slot 1
      ASSERT_TRUE(sb->write(two).is_ok());  // slot 0
    }
    Prng prng(seed);
    env.flip_random_bit(kPath, prng, 0, Superblock::kHeaderBytes + two.size());
    auto sb = Superblock::open(env, kPath);
    ASSERT_TRUE(sb.is_ok()) << sb.status().to_string();
    EXPECT_EQ((*sb)->current(), one);
    EXPECT_EQ((*sb)->sequence(), 1u);
  }
}

// A write of one copy that lands at another sector offset of the file. It
// leaves the copy where it belongs as it was, and damages what it lands on.
// Recovery returns a copy that was written, with its own sequence, or
// refuses; in particular when the new copy lands whole on the other slot
// (whose copy it destroys) it refuses rather than fall back to the copy
// from two writes ago. (When it lands partly over the other slot's header,
// the copy from two writes ago is all there is, and it is returned: two
// slots cannot tell that from a torn write of the other slot.)
TEST_F(SuperblockTest, MisdirectedWriteOfACopyNeverYieldsAWrongState) {
  int refused = 0, fell_back = 0;
  for (uint64_t seed = 0; seed < 64; seed++) {
    SCOPED_TRACE(seed);
    FaultEnv env;
    ASSERT_TRUE(env.create_dirs("node").is_ok());
    Prng prng(seed);
    const uint64_t writes = 2 + prng.below(2);
    std::vector<std::string> payloads = {""};  // sequence 0: nothing
    std::string newest_slot;
    {
      auto sb = *Superblock::open(env, kPath);
      for (uint64_t i = 1; i <= writes; i++) {
        payloads.push_back(std::string(1 + prng.below(2000), static_cast<char>('a' + i)));
        if (i == writes) env.misdirect_next_writes(1, prng);
        ASSERT_TRUE(sb->write(payloads.back()).is_ok());
      }
      auto file = *env.open(kPath, false);  // the cache shows the copy where it belongs
      ASSERT_TRUE(
          file->read_at((writes % 2) * Superblock::kSlotBytes, Superblock::kSlotBytes, newest_slot)
              .is_ok());
    }
    if (prng.chance(0.5)) env.crash(prng, /*tear=*/false);  // else killed
    std::string disk;
    {
      auto file = *env.open(kPath, false);
      ASSERT_TRUE(file->sync_and_drop_cache().is_ok());
      ASSERT_TRUE(file->read_at(0, 2 * Superblock::kSlotBytes, disk).is_ok());
    }
    const bool landed_on_other_slot = disk.substr(((writes + 1) % 2) * Superblock::kSlotBytes,
                                                  Superblock::kSlotBytes) == newest_slot;
    auto sb = Superblock::open(env, kPath);
    if (!sb.is_ok()) {
      EXPECT_EQ(sb.status().code(), Code::kCorruption);
      refused++;
      continue;
    }
    EXPECT_FALSE(landed_on_other_slot) << "fell back to copy " << (*sb)->sequence()
                                       << " though copy " << writes << " is whole on disk";
    ASSERT_LT((*sb)->sequence(), writes);  // the misdirected copy is not where it belongs
    EXPECT_EQ((*sb)->current().value_or(""), payloads[(*sb)->sequence()]);
    fell_back++;
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(fell_back, 0);
}

TEST_F(SuperblockTest, PayloadLimit) {
  auto sb = open();
  EXPECT_EQ(sb->write(std::string(Superblock::payload_bytes_max + 1, 'x')).code(), Code::kTooLarge);
  ASSERT_TRUE(sb->write(std::string(Superblock::payload_bytes_max, 'x')).is_ok());
  sb = open();
  EXPECT_EQ(sb->current()->size(), Superblock::payload_bytes_max);
}

TEST(SuperblockPosix, WritesAndReadsInATempDir) {
  char tmpl[] = "/tmp/maroon-sb-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/superblock";
  PosixEnv env;
  {
    auto sb = Superblock::open(env, path);
    ASSERT_TRUE(sb.is_ok()) << sb.status().to_string();
    ASSERT_TRUE((*sb)->write("view 3").is_ok());
    ASSERT_TRUE((*sb)->write("view 4").is_ok());
  }
  auto sb = Superblock::open(env, path);
  ASSERT_TRUE(sb.is_ok());
  EXPECT_EQ((*sb)->current(), "view 4");
  EXPECT_EQ((*sb)->sequence(), 2u);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace maroon
