// The data directory knows how far its log reaches: a log that lost files,
// lost records after a clean stop, or lost its superblock is refused loudly
// instead of being served as if it were whole; what recovery cuts is named.
#include "storage/data_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "maroon/prng.h"
#include "storage/fault_env.h"
#include "storage/wal_format.h"

namespace maroon {
namespace {

constexpr uint64_t kSegmentBytes = 4 * wal::kBlockBytes;

class DataDirTest : public ::testing::Test {
 protected:
  Result<std::unique_ptr<DataDir>> open_dir(bool cluster = false) {
    DataDirOptions o;
    o.recover_lost_log = cluster;
    o.path = "/d";
    o.node_id = 1;
    o.fresh_data_id = 42;
    o.wal.segment_bytes = kSegmentBytes;
    records_.clear();
    state_.reset();
    return DataDir::open(
        env_, o,
        [&](std::string_view s) {
          state_ = std::string(s);
          return Status::ok();
        },
        [&](uint8_t, std::string_view payload) {
          records_.emplace_back(payload);
          return Status::ok();
        });
  }

  std::unique_ptr<DataDir> open_ok() {
    auto d = open_dir();
    EXPECT_TRUE(d.is_ok()) << d.status().to_string();
    return d.is_ok() ? std::move(d.value()) : nullptr;
  }

  // One record per step, 3 KiB each: a segment of 3 record blocks rolls
  // every third write.
  void write_records(DataDir& d, int n, const std::string& tag) {
    for (int i = 0; i < n; i++) {
      std::vector<WriteStep> steps(1);
      steps[0].batch->add(1, tag + std::to_string(i) + std::string(3000, 'x'));
      if (i == n - 1) steps[0].state = "state after " + tag;
      ASSERT_TRUE(d.write(steps).is_ok());
    }
  }

  std::string error_of(const Result<std::unique_ptr<DataDir>>& d) {
    EXPECT_FALSE(d.is_ok());
    if (d.is_ok()) return "opened";
    EXPECT_EQ(d.status().code(), Code::kCorruption) << d.status().to_string();
    return d.status().message();
  }

  FaultEnv env_;
  Prng prng_{5};
  std::vector<std::string> records_;
  std::optional<std::string> state_;
};

TEST_F(DataDirTest, ReopensWithEverythingAndItsState) {
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 7, "a");
    EXPECT_GE(d->wal().segment_index(), 3u);
  }
  auto d = open_ok();
  ASSERT_TRUE(d);
  EXPECT_EQ(records_.size(), 7u);
  EXPECT_EQ(state_, "state after a");
  EXPECT_EQ(d->data_id(), 42u);
}

// Before: deleting the last segment lost the last acknowledged writes
// silently, and deleting wal/ made the node serve an empty store.
TEST_F(DataDirTest, AMissingLastSegmentOrLogIsRefused) {
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 7, "a");
    ASSERT_EQ(d->wal().segment_index(), 3u);
  }
  ASSERT_TRUE(env_.remove("/d/wal/wal-00000003.log").is_ok());
  std::string m = error_of(open_dir());
  EXPECT_NE(m.find("ends at wal-00000002.log, but the superblock says it reaches "
                   "wal-00000003.log"),
            std::string::npos)
      << m;
  ASSERT_TRUE(env_.remove("/d/wal/wal-00000002.log").is_ok());
  ASSERT_TRUE(env_.remove("/d/wal/wal-00000001.log").is_ok());
  m = error_of(open_dir());
  EXPECT_NE(m.find("the log is missing"), std::string::npos) << m;
}

// A cluster node's log that lost its end opens, flagged: its replica must
// recover from peers. The flag is durable until a write step says the loss
// was recovered; the extent then matches the log as it is.
TEST_F(DataDirTest, InAClusterALostEndOfTheLogOpensFlaggedUntilRecovered) {
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 7, "a");
    ASSERT_EQ(d->wal().segment_index(), 3u);
  }
  ASSERT_TRUE(env_.remove("/d/wal/wal-00000003.log").is_ok());
  {
    auto d = open_dir(/*cluster=*/true);
    ASSERT_TRUE(d.is_ok()) << d.status().to_string();
    ASSERT_TRUE((*d)->log_lost().has_value());
    EXPECT_NE((*d)->log_lost()->find("its last writes are missing"), std::string::npos)
        << *(*d)->log_lost();
    EXPECT_EQ(records_.size(), 6u);
    EXPECT_EQ(state_, "state after a");
    write_records(**d, 1, "b");
  }
  {
    // Not yet recovered: flagged again, though the extent now matches.
    auto d = open_dir(/*cluster=*/true);
    ASSERT_TRUE(d.is_ok()) << d.status().to_string();
    ASSERT_TRUE((*d)->log_lost().has_value());
    EXPECT_NE((*d)->log_lost()->find("not yet recovered"), std::string::npos);
    std::vector<WriteStep> steps(1);
    steps[0].log_recovered = true;
    ASSERT_TRUE((*d)->write(steps).is_ok());
  }
  auto d = open_dir(/*cluster=*/false);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_FALSE((*d)->log_lost().has_value());
  EXPECT_EQ(records_.size(), 7u);
}

TEST_F(DataDirTest, InAClusterAMissingLogOrDamageAfterACleanStopOpensFlagged) {
  const std::string path = "/d/wal/wal-00000001.log";
  const uint64_t last_batch = wal::kSegmentHeaderBytes + wal::kBlockBytes;
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 2, "a");
    ASSERT_TRUE(d->mark_clean_shutdown().is_ok());
  }
  auto file = *env_.open(path, false);
  std::string batch;
  ASSERT_TRUE(file->read_at(last_batch, wal::kBlockBytes, batch).is_ok());
  batch[100] = static_cast<char>(batch[100] ^ 1);
  ASSERT_TRUE(file->write_at(last_batch, batch).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  {
    auto d = open_dir(/*cluster=*/true);
    ASSERT_TRUE(d.is_ok()) << d.status().to_string();
    ASSERT_TRUE((*d)->log_lost().has_value());
    EXPECT_NE((*d)->log_lost()->find("after a clean shutdown"), std::string::npos)
        << *(*d)->log_lost();
    EXPECT_EQ(records_.size(), 1u) << "the damaged batch is cut";
  }
  // The whole log gone.
  ASSERT_TRUE(env_.remove(path).is_ok());
  auto d = open_dir(/*cluster=*/true);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  ASSERT_TRUE((*d)->log_lost().has_value());
  EXPECT_TRUE(records_.empty());
  EXPECT_EQ(state_, "state after a") << "the superblock (the replica's vote) is kept";
}

TEST_F(DataDirTest, AMissingFirstSegmentIsRefused) {
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 7, "a");
  }
  ASSERT_TRUE(env_.remove("/d/wal/wal-00000001.log").is_ok());
  const std::string m = error_of(open_dir());
  EXPECT_NE(m.find("starts at wal-00000002.log"), std::string::npos) << m;
  // In a cluster too: a lost beginning needs a snapshot from a peer.
  EXPECT_NE(error_of(open_dir(/*cluster=*/true)).find("starts at"), std::string::npos);
}

// Before: deleting the superblock wrote a new identity over the old log.
TEST_F(DataDirTest, ANewIdentityIsNeverMadeOverAnExistingLog) {
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 2, "a");
  }
  ASSERT_TRUE(env_.remove("/d/superblock").is_ok());
  const std::string m = error_of(open_dir());
  EXPECT_NE(m.find("refusing to make a new identity over existing data"), std::string::npos) << m;
  // Still refused the next time: the log is never adopted by accident.
  EXPECT_NE(error_of(open_dir()).find("new identity"), std::string::npos);
}

// After a clean stop the log must end exactly where it ended: a lost last
// batch is refused, and so is damage in it (no write was in flight, so it
// cannot be a torn write). Without the clean stop the same damage is a
// torn tail: cut, and named.
TEST_F(DataDirTest, AfterACleanStopAShortOrDamagedLogIsRefused) {
  const std::string path = "/d/wal/wal-00000001.log";
  const uint64_t last_batch = wal::kSegmentHeaderBytes + wal::kBlockBytes;
  std::string original;
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    write_records(*d, 2, "a");
    ASSERT_EQ(d->wal().segment_index(), 1u);
    ASSERT_TRUE(d->mark_clean_shutdown().is_ok());
  }
  auto file = *env_.open(path, false);
  ASSERT_TRUE(file->read_at(last_batch, wal::kBlockBytes, original).is_ok());

  // Damaged: one byte of the last batch's payload.
  std::string damaged = original;
  damaged[100] = static_cast<char>(damaged[100] ^ 1);
  ASSERT_TRUE(file->write_at(last_batch, damaged).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  std::string m = error_of(open_dir());
  EXPECT_NE(m.find("after a clean shutdown"), std::string::npos) << m;

  // Lost: the whole last batch.
  ASSERT_TRUE(file->write_at(last_batch, std::string(wal::kBlockBytes, '\0')).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  m = error_of(open_dir());
  EXPECT_NE(m.find("records are missing"), std::string::npos) << m;

  // Whole again: it opens, and the flag is cleared at once, so the same
  // damage after a stop that was not clean is a torn tail.
  ASSERT_TRUE(file->write_at(last_batch, original).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  {
    auto d = open_ok();
    ASSERT_TRUE(d);
    EXPECT_EQ(records_.size(), 2u);
    EXPECT_FALSE(d->wal().cut().has_value());
  }
  ASSERT_TRUE(file->write_at(last_batch, damaged).is_ok());
  ASSERT_TRUE(file->sync().is_ok());
  auto d = open_ok();
  ASSERT_TRUE(d);
  EXPECT_EQ(records_.size(), 1u);
  ASSERT_TRUE(d->wal().cut().has_value());
  EXPECT_EQ(d->wal().cut()->segment, "wal-00000001.log");
  EXPECT_EQ(d->wal().cut()->offset, last_batch);
  EXPECT_GT(d->wal().cut()->bytes, 3000u);
  EXPECT_NE(d->wal().cut()->damage.find("checksum"), std::string::npos) << d->wal().cut()->damage;
}

// Faults of the medium in the last batch: a flipped bit (the checksum fails)
// or an unreadable sector. After a clean stop no write was in flight, so
// either is damage to acknowledged data and refused (corruption, or an I/O
// error for unknown bytes); after a stop that was not clean either looks
// like a torn write: cut, and the cut reported.
TEST_F(DataDirTest, MediumFaultInTheLastBatchIsRefusedAfterACleanStopAndCutOtherwise) {
  const std::string path = "/d/wal/wal-00000001.log";
  const uint64_t last_batch = wal::kSegmentHeaderBytes + wal::kBlockBytes;
  for (const bool unreadable : {false, true}) {
    for (const bool clean : {true, false}) {
      SCOPED_TRACE(std::string(unreadable ? "unreadable" : "bit flip") +
                   (clean ? ", clean stop" : ", killed"));
      if (auto names = env_.list_dir("/d/wal")) {
        for (const std::string& n : *names) ASSERT_TRUE(env_.remove("/d/wal/" + n).is_ok());
      }
      if (env_.exists("/d/superblock")) {
        ASSERT_TRUE(env_.remove("/d/superblock").is_ok());
      }
      {
        auto d = open_ok();
        ASSERT_TRUE(d);
        write_records(*d, 2, "a");
        ASSERT_EQ(d->wal().segment_index(), 1u);
        if (clean) {
          ASSERT_TRUE(d->mark_clean_shutdown().is_ok());
        }
      }
      if (unreadable) {
        env_.add_bad_sectors(path, last_batch + 1000, 1);
      } else {
        env_.flip_random_bit(path, prng_, last_batch, 3000);
      }
      auto d = open_dir();
      if (clean) {
        ASSERT_FALSE(d.is_ok());
        EXPECT_EQ(d.status().code(), unreadable ? Code::kIoError : Code::kCorruption);
        EXPECT_NE(d.status().message().find("after a clean shutdown"), std::string::npos)
            << d.status().message();
        continue;
      }
      ASSERT_TRUE(d.is_ok()) << d.status().to_string();
      EXPECT_EQ(records_.size(), 1u);
      ASSERT_TRUE((*d)->wal().cut().has_value());
      EXPECT_EQ((*d)->wal().cut()->offset, last_batch);
    }
  }
}

// The superblock learns of a segment before any record goes into it: a
// crash at any point of a roll leaves a directory that opens whole.
TEST_F(DataDirTest, ACrashAnywhereInARollLeavesADirectoryThatOpens) {
  for (uint64_t syncs_before_crash = 0; syncs_before_crash < 8; syncs_before_crash++) {
    SCOPED_TRACE(syncs_before_crash);
    if (auto names = env_.list_dir("/d/wal")) {
      for (const std::string& n : *names) ASSERT_TRUE(env_.remove("/d/wal/" + n).is_ok());
    }
    if (env_.exists("/d/superblock")) {
      ASSERT_TRUE(env_.remove("/d/superblock").is_ok());
    }
    size_t acknowledged = 0;
    {
      auto d = open_ok();
      ASSERT_TRUE(d);
      write_records(*d, 3, "a");  // fills segment 1
      acknowledged = 3;
      env_.inject_sync_errors(1, syncs_before_crash);
      for (int i = 0; i < 4; i++) {
        std::vector<WriteStep> steps(1);
        steps[0].batch->add(1, "b" + std::to_string(i) + std::string(3000, 'y'));
        if (!d->write(steps).is_ok()) break;
        acknowledged++;
      }
    }
    env_.inject_sync_errors(0);
    env_.crash(prng_, /*tear=*/true);
    auto d = open_ok();
    ASSERT_TRUE(d);
    EXPECT_GE(records_.size(), acknowledged);
  }
}

// Data is nobody else's business: whatever the umask, every directory the
// data dir makes is 0700 and every file in it 0600 (WAL segments,
// superblock, their temporary files).
TEST(DataDirPosix, EveryDirectoryAndFileIsPrivate) {
  char tmpl[] = "/tmp/maroon-data-modes-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/a/node-1";
  const mode_t old_umask = ::umask(0);
  PosixEnv env;
  DataDirOptions o;
  o.path = path;
  o.node_id = 1;
  o.fresh_data_id = 42;
  o.wal.segment_bytes = kSegmentBytes;
  ASSERT_TRUE(env.create_dirs(path).is_ok());
  auto d = DataDir::open(
      env, o, [](std::string_view) { return Status::ok(); },
      [](uint8_t, std::string_view) { return Status::ok(); });
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  for (int i = 0; i < 8; i++) {  // past a few segments
    std::vector<WriteStep> steps(1);
    steps[0].batch->add(1, std::string(3000, 'x'));
    steps[0].state = "state " + std::to_string(i);
    ASSERT_TRUE((*d)->write(steps).is_ok());
  }
  ::umask(old_umask);
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(std::string(tmpl) + "/a")) {
    struct stat st {};
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    const unsigned mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      EXPECT_EQ(mode, 0700u) << e.path();
    } else {
      EXPECT_EQ(mode, 0600u) << e.path();
      files++;
    }
  }
  struct stat top {};
  ASSERT_EQ(::stat(path.c_str(), &top), 0);
  EXPECT_EQ(top.st_mode & 07777, 0700u);
  EXPECT_GE(files, 3u);  // the superblock and segments
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace maroon
