#include "storage/snapshot_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "maroon/prng.h"
#include "storage/fault_env.h"

namespace maroon {
namespace {

// The layout, as docs/formats/snapshot.md gives it: the tests locate
// structures by offset, so a layout change must show up here too.
constexpr uint64_t kFileHeaderFixedBytes = 24;
constexpr uint64_t kChunkOverheadBytes = 16;  // 8-byte header, 8-byte checksum
constexpr uint64_t kTrailerBytes = 36;

struct Chunk {
  uint8_t kind = 0;
  std::string payload;
  bool operator==(const Chunk&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Chunk& c) {
  return os << "{" << int(c.kind) << "," << c.payload.size() << "B}";
}

std::string random_bytes(Prng& prng, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = prng.next();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return out;
}

std::vector<Chunk> chunks_of_sizes(Prng& prng, const std::vector<size_t>& sizes) {
  std::vector<Chunk> chunks;
  for (size_t n : sizes) {
    chunks.push_back({static_cast<uint8_t>(prng.below(256)), random_bytes(prng, n)});
  }
  return chunks;
}

// Empty payloads, sizes around the writer's 1 MiB write size, one larger
// than the reader's 4 MiB window, many small ones, and optionally one of the
// maximum size.
std::vector<Chunk> varied_chunks(Prng& prng, bool with_max) {
  constexpr size_t kMiB = 1024 * 1024;
  std::vector<size_t> sizes = {
      0, 1, 7, 0, 100, 4095, 4096, 65536, kMiB - 1, kMiB, kMiB + 1, 3 * kMiB + 5, 5 * kMiB, 0, 33};
  for (int i = 0; i < 200; i++) sizes.push_back(prng.below(300));
  if (with_max) sizes.insert(sizes.begin() + 9, snapshot_chunk_bytes_max);
  return chunks_of_sizes(prng, sizes);
}

// Writes a snapshot, finishing and (if publish) publishing it.
Status write_snapshot(Env& env, const std::string& dir, uint64_t number, std::string_view header,
                      const std::vector<Chunk>& chunks, bool publish = true) {
  auto w = SnapshotFileWriter::create(env, dir, number, header);
  if (!w) return w.status();
  for (const Chunk& c : chunks) {
    if (Status s = (*w)->add(c.kind, c.payload); !s) return s;
  }
  if (Status s = (*w)->finish(); !s) return s;
  return publish ? (*w)->publish() : Status::ok();
}

// Every chunk next() hands out, up to the trailer.
Result<std::vector<Chunk>> read_chunks(SnapshotFileReader& r) {
  std::vector<Chunk> out;
  while (true) {
    auto c = r.next();
    if (!c) return c.status();
    if (!*c) return out;
    out.push_back({(*c)->first, std::string((*c)->second)});
  }
}

std::string read_file(Env& env, const std::string& path) {
  auto file = env.open(path, false);
  EXPECT_TRUE(file.is_ok()) << path;
  std::string out;
  EXPECT_TRUE((*file)->read_at(0, *(*file)->size(), out).is_ok());
  return out;
}

// Replaces path's content with bytes, durably.
void put_file(Env& env, const std::string& path, std::string_view bytes) {
  auto file = env.open(path, true);
  ASSERT_TRUE(file.is_ok());
  ASSERT_TRUE((*file)->truncate(0).is_ok());
  ASSERT_TRUE((*file)->write_at(0, bytes).is_ok());
  ASSERT_TRUE((*file)->sync().is_ok());
  ASSERT_TRUE(env.sync_dir(parent_dir(path)).is_ok());
}

// Where each structure of a file written with these chunks starts: the file
// header (0), each chunk, then the trailer.
std::vector<uint64_t> structure_starts(std::string_view header, const std::vector<Chunk>& chunks) {
  std::vector<uint64_t> starts = {0};
  uint64_t at = kFileHeaderFixedBytes + header.size() + 8;
  for (const Chunk& c : chunks) {
    starts.push_back(at);
    at += kChunkOverheadBytes + c.payload.size();
  }
  starts.push_back(at);  // the trailer
  return starts;
}

std::string offset_prefix(const std::string& path, uint64_t offset) {
  return path + " offset " + std::to_string(offset) + ": ";
}

// Both ways of reading refuse the file with kCorruption naming path and
// offset, and with a message containing `what`. A refusal by open() counts
// for both (there is nothing to read from).
void expect_refused(Env& env, const std::string& path, uint64_t offset, std::string_view what,
                    bool refused_by_open = false) {
  SCOPED_TRACE("expected refusal at offset " + std::to_string(offset));
  auto r = SnapshotFileReader::open(env, path);
  if (refused_by_open || !r) {
    ASSERT_FALSE(r.is_ok()) << "open accepted it";
    EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
    EXPECT_TRUE(r.status().message().starts_with(offset_prefix(path, offset)))
        << r.status().message();
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
    EXPECT_TRUE(refused_by_open) << r.status().to_string();
    return;
  }
  const Status v = (*r)->verify();
  EXPECT_EQ(v.code(), Code::kCorruption) << v.to_string();
  EXPECT_TRUE(v.message().starts_with(offset_prefix(path, offset))) << v.message();
  EXPECT_NE(v.message().find(what), std::string::npos) << v.message();

  auto chunks = read_chunks(**r);
  ASSERT_FALSE(chunks.is_ok()) << "next() reached a valid trailer";
  EXPECT_EQ(chunks.status().code(), Code::kCorruption);
  EXPECT_EQ(chunks.status().message(), v.message());
  // Failed for good.
  auto again = (*r)->next();
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().message(), v.message());
}

class SnapshotFileTest : public ::testing::Test {
 protected:
  const std::string dir_ = "data/snapshots";
  FaultEnv env_;
  Prng prng_{7};
};

TEST(SnapshotFileName, RoundTripsAndRefusesAnythingElse) {
  EXPECT_EQ(snapshot_file_name(0), "snapshot-00000000000000000000.msnap");
  EXPECT_EQ(snapshot_file_name(42), "snapshot-00000000000000000042.msnap");
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{123456789}, UINT64_MAX}) {
    EXPECT_EQ(parse_snapshot_file_name(snapshot_file_name(n)), n);
  }
  EXPECT_EQ(parse_snapshot_file_name("snapshot-18446744073709551615.msnap"), UINT64_MAX);
  for (std::string_view bad :
       {"snapshot-18446744073709551616.msnap",  // UINT64_MAX + 1
        "snapshot-99999999999999999999.msnap", "snapshot-0000000000000000042.msnap",
        "snapshot-000000000000000000042.msnap", "snapshot-42.msnap",
        "snapshot-00000000000000000042.msnap.tmp", "snapshot-0000000000000000004x.msnap",
        "snapshot-+0000000000000000042.msnap", "Snapshot-00000000000000000042.msnap",
        "snapshot-00000000000000000042.msna", "", "wal-00000001.log"}) {
    EXPECT_EQ(parse_snapshot_file_name(bad), std::nullopt) << bad;
  }
}

TEST_F(SnapshotFileTest, RoundTripsVariedChunksOnFaultEnv) {
  const std::vector<Chunk> chunks = varied_chunks(prng_, /*with_max=*/true);
  const std::string header = "epoch 17, node 3";
  auto w = SnapshotFileWriter::create(env_, dir_, 17, header);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  for (const Chunk& c : chunks) ASSERT_TRUE((*w)->add(c.kind, c.payload).is_ok());
  ASSERT_TRUE((*w)->finish().is_ok());
  ASSERT_TRUE((*w)->publish().is_ok());
  EXPECT_EQ((*w)->chunks(), chunks.size());
  const std::string path = dir_ + "/" + snapshot_file_name(17);
  EXPECT_EQ((*w)->path(), path);

  auto r = SnapshotFileReader::open(env_, path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)->header(), header);
  EXPECT_EQ((*r)->number(), 17u);
  EXPECT_EQ((*r)->size(), (*w)->bytes_written());
  EXPECT_EQ((*r)->size(), structure_starts(header, chunks).back() + kTrailerBytes);
  ASSERT_TRUE((*r)->verify().is_ok());

  // verify() neither moves next() nor invalidates what it handed out.
  auto first = (*r)->next();
  ASSERT_TRUE(first.is_ok() && first->has_value());
  EXPECT_EQ((Chunk{(*first)->first, std::string((*first)->second)}), chunks[0]);
  ASSERT_TRUE((*r)->verify().is_ok());
  EXPECT_EQ((*first)->second, chunks[0].payload);
  auto rest = read_chunks(**r);
  ASSERT_TRUE(rest.is_ok()) << rest.status().to_string();
  rest->insert(rest->begin(), chunks[0]);
  EXPECT_EQ(*rest, chunks);
  // At the trailer it stays there.
  auto end = (*r)->next();
  ASSERT_TRUE(end.is_ok());
  EXPECT_FALSE(end->has_value());
}

TEST(SnapshotFilePosix, RoundTripsVariedChunksInATempDir) {
  char tmpl[] = "/tmp/maroon-snapshot-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = std::string(tmpl) + "/node/snapshots/";  // created, trailing slash
  PosixEnv env;
  Prng prng(3);
  const std::vector<Chunk> chunks = varied_chunks(prng, /*with_max=*/true);
  ASSERT_TRUE(write_snapshot(env, dir, 5, "meta", chunks).is_ok());
  ASSERT_TRUE(write_snapshot(env, dir, 9, "", {}).is_ok());

  auto numbers = list_snapshots(env, dir);
  ASSERT_TRUE(numbers.is_ok()) << numbers.status().to_string();
  EXPECT_EQ(*numbers, (std::vector<uint64_t>{5, 9}));
  {
    auto r = SnapshotFileReader::open(env, join_path(dir, snapshot_file_name(5)));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ((*r)->header(), "meta");
    ASSERT_TRUE((*r)->verify().is_ok());
    auto got = read_chunks(**r);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_EQ(*got, chunks);
  }
  {
    auto r = SnapshotFileReader::open(env, join_path(dir, snapshot_file_name(9)));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ((*r)->header(), "");
    auto got = read_chunks(**r);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_TRUE(got->empty());
  }
  // A flipped byte on the real disk is refused too.
  const std::string path = join_path(dir, snapshot_file_name(5));
  {
    auto file = env.open(path, false);
    ASSERT_TRUE(file.is_ok());
    std::string byte;
    ASSERT_TRUE((*file)->read_at(5000, 1, byte).is_ok());
    byte[0] ^= 0x10;
    ASSERT_TRUE((*file)->write_at(5000, byte).is_ok());
  }
  auto r = SnapshotFileReader::open(env, path);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ((*r)->verify().code(), Code::kCorruption);
  std::filesystem::remove_all(tmpl);
}

TEST_F(SnapshotFileTest, ListsPublishedSnapshotsInOrderAndDeletesTempFiles) {
  auto none = list_snapshots(env_, dir_);  // no directory yet
  ASSERT_TRUE(none.is_ok()) << none.status().to_string();
  EXPECT_TRUE(none->empty());

  for (uint64_t n : {30, 2, 1000, 7}) {
    ASSERT_TRUE(write_snapshot(env_, dir_, n, "h", chunks_of_sizes(prng_, {10, 20})).is_ok());
  }
  // A writer that was never published, a leftover temp file, and files that
  // are not snapshots.
  ASSERT_TRUE(write_snapshot(env_, dir_, 5000, "h", chunks_of_sizes(prng_, {10}), false).is_ok());
  put_file(env_, join_path(dir_, snapshot_file_name(8) + ".tmp"), "half a snapshot");
  put_file(env_, join_path(dir_, "notes.tmp"), "not ours");
  put_file(env_, join_path(dir_, "snapshot-7.msnap"), "not ours either");

  auto listed = list_snapshots(env_, dir_ + "/");
  ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
  EXPECT_EQ(*listed, (std::vector<uint64_t>{2, 7, 30, 1000}));
  auto names = env_.list_dir(dir_);
  ASSERT_TRUE(names.is_ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"notes.tmp", snapshot_file_name(2),
                                              snapshot_file_name(7), snapshot_file_name(30),
                                              snapshot_file_name(1000), "snapshot-7.msnap"}));
}

TEST_F(SnapshotFileTest, ASnapshotIsInvisibleUntilPublished) {
  auto w = SnapshotFileWriter::create(env_, dir_, 4, "h");
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE((*w)->add(1, "payload").is_ok());
  ASSERT_TRUE((*w)->finish().is_ok());
  // Finished and synced, but only under its temp name.
  EXPECT_FALSE(env_.exists((*w)->path()));
  EXPECT_TRUE(env_.exists((*w)->path() + ".tmp"));
  EXPECT_EQ(SnapshotFileReader::open(env_, (*w)->path()).status().code(), Code::kNotFound);
  ASSERT_TRUE((*w)->publish().is_ok());
  EXPECT_FALSE(env_.exists((*w)->path() + ".tmp"));
  auto listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(*listed, std::vector<uint64_t>{4});
}

TEST_F(SnapshotFileTest, ListingWhileAWriterIsOpenDeletesItsTempFileAndPublishFails) {
  // The documented hazard: list_snapshots takes any temp file for a crashed
  // writer's. The writer's publish then fails; it never succeeds silently.
  auto w = SnapshotFileWriter::create(env_, dir_, 4, "h");
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE((*w)->add(1, "payload").is_ok());
  ASSERT_TRUE((*w)->finish().is_ok());
  auto listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty());
  EXPECT_FALSE((*w)->publish().is_ok());
  listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(SnapshotFileTest, AbandonRemovesTheTempFile) {
  auto w = SnapshotFileWriter::create(env_, dir_, 4, "h");
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE((*w)->add(1, "payload").is_ok());
  (*w)->abandon();
  auto names = env_.list_dir(dir_);
  ASSERT_TRUE(names.is_ok());
  EXPECT_TRUE(names->empty());
}

TEST_F(SnapshotFileTest, PublishReplacesASnapshotOfTheSameNumber) {
  ASSERT_TRUE(write_snapshot(env_, dir_, 3, "old", chunks_of_sizes(prng_, {5})).is_ok());
  ASSERT_TRUE(write_snapshot(env_, dir_, 3, "new", chunks_of_sizes(prng_, {6, 7})).is_ok());
  auto r = SnapshotFileReader::open(env_, join_path(dir_, snapshot_file_name(3)));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ((*r)->header(), "new");
  auto got = read_chunks(**r);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(got->size(), 2u);
}

TEST_F(SnapshotFileTest, TruncationAnywhereIsRefused) {
  const std::string header = "hdr";
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {0, 1, 100, 5000, 0, 70000, 3});
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, header, chunks).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(1));
  const std::string image = read_file(env_, path);
  const std::vector<uint64_t> starts = structure_starts(header, chunks);
  ASSERT_EQ(image.size(), starts.back() + kTrailerBytes);
  const uint64_t header_end = starts[1];

  // Every structure boundary (a cut there leaves whole chunks and no
  // trailer), and points inside each structure: its header, payload and
  // checksum.
  std::vector<uint64_t> cuts;
  for (size_t i = 0; i < starts.size(); i++) {
    const uint64_t end = i + 1 < starts.size() ? starts[i + 1] : image.size();
    for (uint64_t d : {0, 1, 4, 7, 8, 9, 12, 20, 35}) {
      if (starts[i] + d < end) cuts.push_back(starts[i] + d);
    }
    cuts.push_back(starts[i] + (end - starts[i]) / 2);
    cuts.push_back(end - 1);
  }
  for (uint64_t cut : cuts) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    put_file(env_, path, std::string_view(image).substr(0, cut));
    // The refusal names the structure the file ends in.
    const uint64_t at = *std::prev(std::upper_bound(starts.begin(), starts.end(), cut));
    expect_refused(env_, path, at, "truncated", /*refused_by_open=*/cut < header_end);
  }
  put_file(env_, path, image);
  auto r = SnapshotFileReader::open(env_, path);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE((*r)->verify().is_ok());
}

TEST_F(SnapshotFileTest, AFlippedBitAnywhereIsRefusedWithItsOffset) {
  const std::string header = "caller header";
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {40, 0, 300, 5});
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, header, chunks).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(1));
  const std::vector<uint64_t> starts = structure_starts(header, chunks);
  const uint64_t trailer = starts.back();

  struct Place {
    const char* what;
    uint64_t byte;
    uint64_t reported_at;  // the start of the structure holding it
  };
  std::vector<Place> places = {
      {"header magic", 0, 0},
      {"header version", 8, 0},
      {"header length", 12, 0},
      {"header length, high byte", 15, 0},
      {"header number", 16, 0},
      {"caller header", kFileHeaderFixedBytes + 3, 0},
      {"header checksum", kFileHeaderFixedBytes + header.size() + 2, 0},
      {"trailer magic", trailer, trailer},
      {"trailer magic, last byte", trailer + 7, trailer},
      {"trailer chunk count", trailer + 8, trailer},
      {"trailer file bytes", trailer + 16, trailer},
      {"trailer combined hash", trailer + 24, trailer},
      {"trailer checksum", trailer + 33, trailer},
  };
  for (size_t i = 0; i < chunks.size(); i++) {
    const uint64_t s = starts[i + 1];
    const uint64_t n = chunks[i].payload.size();
    places.push_back({"chunk length", s, s});
    places.push_back({"chunk length, high byte", s + 3, s});
    places.push_back({"chunk kind", s + 4, s});
    places.push_back({"chunk reserved", s + 6, s});
    if (n > 0) places.push_back({"chunk payload", s + 8 + n / 2, s});
    places.push_back({"chunk checksum", s + 8 + n, s});
    places.push_back({"chunk checksum, last byte", s + 8 + n + 7, s});
  }
  for (const Place& p : places) {
    for (uint64_t bit : {0, 5, 7}) {
      SCOPED_TRACE(std::string(p.what) + " at byte " + std::to_string(p.byte) + ", bit " +
                   std::to_string(bit));
      env_.flip_bit(path, p.byte * 8 + bit);
      expect_refused(env_, path, p.reported_at, "", /*refused_by_open=*/p.reported_at == 0);
      env_.flip_bit(path, p.byte * 8 + bit);
    }
  }
  auto r = SnapshotFileReader::open(env_, path);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE((*r)->verify().is_ok());
}

TEST_F(SnapshotFileTest, SwappedChunksOfEqualSizeAreRefused) {
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {10, 50, 20, 50, 5});
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, "", chunks).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(1));
  const std::vector<uint64_t> starts = structure_starts("", chunks);
  std::string image = read_file(env_, path);
  const uint64_t n = kChunkOverheadBytes + 50;
  const std::string a = image.substr(starts[2], n);
  const std::string b = image.substr(starts[4], n);
  ASSERT_NE(a, b);
  image.replace(starts[2], n, b);
  image.replace(starts[4], n, a);
  put_file(env_, path, image);
  expect_refused(env_, path, starts[2], "chunk 1: checksum mismatch");
  // next() hands out the chunk before, then stops.
  auto r = SnapshotFileReader::open(env_, path);
  ASSERT_TRUE(r.is_ok());
  auto first = (*r)->next();
  ASSERT_TRUE(first.is_ok() && first->has_value());
  EXPECT_EQ((*first)->second, chunks[0].payload);
  EXPECT_FALSE((*r)->next().is_ok());
}

TEST_F(SnapshotFileTest, AChunkFromAnotherSnapshotIsCaughtByTheTrailer) {
  // Each chunk's checksum is seeded with its index only, so the same chunk
  // at the same index of another file verifies on its own; the trailer's
  // combined hash is what refuses the mix.
  std::vector<Chunk> chunks = chunks_of_sizes(prng_, {10, 30, 20});
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, "", chunks).is_ok());
  chunks[1].payload = random_bytes(prng_, 30);
  ASSERT_TRUE(write_snapshot(env_, dir_, 2, "", chunks).is_ok());
  const std::vector<uint64_t> starts = structure_starts("", chunks);
  const std::string path = join_path(dir_, snapshot_file_name(1));
  std::string image = read_file(env_, path);
  const std::string other = read_file(env_, join_path(dir_, snapshot_file_name(2)));
  image.replace(starts[2], kChunkOverheadBytes + 30,
                other.substr(starts[2], kChunkOverheadBytes + 30));
  put_file(env_, path, image);
  expect_refused(env_, path, starts.back(), "combined hash");
}

TEST_F(SnapshotFileTest, BytesAfterTheTrailerAreRefused) {
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, "", chunks_of_sizes(prng_, {10})).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(1));
  const std::string image = read_file(env_, path);
  put_file(env_, path, image + std::string(1, '\0'));
  expect_refused(env_, path, image.size(), "1 bytes after the trailer");
}

TEST_F(SnapshotFileTest, AFileUnderAnotherSnapshotsNameIsRefused) {
  ASSERT_TRUE(write_snapshot(env_, dir_, 5, "", chunks_of_sizes(prng_, {10})).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(6));
  put_file(env_, path, read_file(env_, join_path(dir_, snapshot_file_name(5))));
  expect_refused(env_, path, 0, "named for snapshot 6 but holds snapshot 5", true);
  // Under a name that is not a snapshot name, nothing is checked against it.
  put_file(env_, "data/received", read_file(env_, join_path(dir_, snapshot_file_name(5))));
  auto r = SnapshotFileReader::open(env_, "data/received");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ((*r)->number(), 5u);
  EXPECT_TRUE((*r)->verify().is_ok());
}

TEST_F(SnapshotFileTest, OversizeChunksAndHeadersAreErrorsNotCrashes) {
  auto big_header =
      SnapshotFileWriter::create(env_, dir_, 1, std::string(snapshot_header_bytes_max + 1, 'h'));
  ASSERT_FALSE(big_header.is_ok());
  EXPECT_EQ(big_header.status().code(), Code::kTooLarge);

  auto w = SnapshotFileWriter::create(env_, dir_, 1, std::string(snapshot_header_bytes_max, 'h'));
  ASSERT_TRUE(w.is_ok());
  const Status s = (*w)->add(1, std::string(snapshot_chunk_bytes_max + 1, 'x'));
  EXPECT_EQ(s.code(), Code::kTooLarge) << s.to_string();
  // Nothing was written and the writer carries on.
  ASSERT_TRUE((*w)->add(2, "fine").is_ok());
  ASSERT_TRUE((*w)->finish().is_ok());
  ASSERT_TRUE((*w)->publish().is_ok());
  auto r = SnapshotFileReader::open(env_, (*w)->path());
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ((*r)->header().size(), snapshot_header_bytes_max);
  auto got = read_chunks(**r);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, (std::vector<Chunk>{{2, "fine"}}));
}

// Forwards to another Env and records the largest read asked of any file.
class ReadRecordingEnv final : public Env {
 public:
  explicit ReadRecordingEnv(Env& inner) : inner_(inner) {}

  Result<std::unique_ptr<File>> open(const std::string& path, bool create) override {
    auto file = inner_.open(path, create);
    if (!file) return file.status();
    return std::unique_ptr<File>(std::make_unique<RecordingFile>(std::move(*file), largest_read_));
  }
  Result<std::vector<std::string>> list_dir(const std::string& dir) override {
    return inner_.list_dir(dir);
  }
  Status remove(const std::string& path) override { return inner_.remove(path); }
  Status rename(const std::string& from, const std::string& to) override {
    return inner_.rename(from, to);
  }
  Status sync_dir(const std::string& dir) override { return inner_.sync_dir(dir); }
  Status create_dirs(const std::string& dir) override { return inner_.create_dirs(dir); }
  bool exists(const std::string& path) override { return inner_.exists(path); }
  uint64_t random64() override { return inner_.random64(); }

  uint64_t largest_read() const { return largest_read_; }

 private:
  class RecordingFile final : public File {
   public:
    RecordingFile(std::unique_ptr<File> inner, uint64_t& largest_read)
        : inner_(std::move(inner)), largest_read_(largest_read) {}
    Status write_at(uint64_t offset, std::string_view data) override {
      return inner_->write_at(offset, data);
    }
    Status read_at(uint64_t offset, size_t n, std::string& out) override {
      largest_read_ = std::max<uint64_t>(largest_read_, n);
      return inner_->read_at(offset, n, out);
    }
    Status sync() override { return inner_->sync(); }
    Status sync_and_drop_cache() override { return inner_->sync_and_drop_cache(); }
    Status allocate(uint64_t size_bytes) override { return inner_->allocate(size_bytes); }
    Status truncate(uint64_t size_bytes) override { return inner_->truncate(size_bytes); }
    Result<uint64_t> size() override { return inner_->size(); }

   private:
    std::unique_ptr<File> inner_;
    uint64_t& largest_read_;
  };

  Env& inner_;
  uint64_t largest_read_ = 0;
};

TEST_F(SnapshotFileTest, AHugeLengthInADamagedFileIsNeverAllocated) {
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {10, 20});
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, "", chunks).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(1));
  const std::string image = read_file(env_, path);
  const std::vector<uint64_t> starts = structure_starts("", chunks);

  struct Case {
    uint32_t length;
    const char* what;
  };
  for (const Case& c : {Case{UINT32_MAX, "more than the maximum"},
                        Case{uint32_t{snapshot_chunk_bytes_max} + 1, "more than the maximum"},
                        Case{uint32_t{snapshot_chunk_bytes_max}, "runs past the end"}}) {
    SCOPED_TRACE(c.length);
    std::string damaged = image;
    for (int i = 0; i < 4; i++) damaged[starts[2] + i] = static_cast<char>(c.length >> (8 * i));
    put_file(env_, path, damaged);
    ReadRecordingEnv env(env_);
    expect_refused(env, path, starts[2], c.what);
    EXPECT_LE(env.largest_read(), image.size());
  }
  // So is a huge caller-header length.
  std::string damaged = image;
  for (int i = 0; i < 4; i++) damaged[12 + i] = '\xff';
  put_file(env_, path, damaged);
  ReadRecordingEnv env(env_);
  expect_refused(env, path, 0, "header length", true);
  EXPECT_LE(env.largest_read(), image.size());
}

TEST_F(SnapshotFileTest, ACrashAtAnyPointListsTheSnapshotIffPublishSucceeded) {
  // Large enough for several writes of the file.
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {0, 700 * 1024, 5, 1536 * 1024, 30});
  bool completed = false;
  for (uint64_t ops = 0; !completed; ops++) {
    SCOPED_TRACE("crash after " + std::to_string(ops) + " mutating ops");
    ASSERT_LT(ops, 100u);
    FaultEnv env(ops);
    // An older snapshot, published before: a crash must never touch it.
    ASSERT_TRUE(write_snapshot(env, dir_, 1, "old", chunks).is_ok());
    env.crash_after_ops(ops);
    const Status published = write_snapshot(env, dir_, 2, "new", chunks);
    completed = !env.crash_point().has_value();
    EXPECT_EQ(published.is_ok(), completed) << published.to_string();
    Prng prng(ops);
    env.crash(prng, /*tear=*/ops % 2 == 1);

    auto listed = list_snapshots(env, dir_);
    ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
    EXPECT_EQ(*listed, (completed ? std::vector<uint64_t>{1, 2} : std::vector<uint64_t>{1}));
    for (uint64_t n : *listed) {
      auto r = SnapshotFileReader::open(env, join_path(dir_, snapshot_file_name(n)));
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      EXPECT_EQ((*r)->header(), n == 1 ? "old" : "new");
      ASSERT_TRUE((*r)->verify().is_ok());
      auto got = read_chunks(**r);
      ASSERT_TRUE(got.is_ok());
      EXPECT_EQ(*got, chunks);
    }
    // No temp file survives the listing.
    auto names = env.list_dir(dir_);
    ASSERT_TRUE(names.is_ok());
    for (const std::string& name : *names) EXPECT_FALSE(name.ends_with(".tmp")) << name;
  }
}

TEST_F(SnapshotFileTest, APublishedSnapshotSurvivesATornCrashIntact) {
  const std::vector<Chunk> chunks = varied_chunks(prng_, /*with_max=*/false);
  ASSERT_TRUE(write_snapshot(env_, dir_, 8, "h", chunks).is_ok());
  env_.crash(prng_, /*tear=*/true);
  auto listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(*listed, std::vector<uint64_t>{8});
  auto r = SnapshotFileReader::open(env_, join_path(dir_, snapshot_file_name(8)));
  ASSERT_TRUE(r.is_ok());
  ASSERT_TRUE((*r)->verify().is_ok());
  auto got = read_chunks(**r);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, chunks);
}

TEST_F(SnapshotFileTest, AProcessKilledBetweenRenameAndDirectorySyncIsMadeDurableByListing) {
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {10, 20});
  ASSERT_TRUE(write_snapshot(env_, dir_, 3, "h", chunks, /*publish=*/false).is_ok());
  // publish() got as far as the rename; the process died (the machine ran on).
  const std::string path = join_path(dir_, snapshot_file_name(3));
  ASSERT_TRUE(env_.rename(path + ".tmp", path).is_ok());
  // The next process lists it; from then on a power cut must not take it
  // away (the node may trim its log on the strength of it).
  auto listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(*listed, std::vector<uint64_t>{3});
  env_.crash(prng_, /*tear=*/true);
  listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(*listed, std::vector<uint64_t>{3});
  auto r = SnapshotFileReader::open(env_, path);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE((*r)->verify().is_ok());
}

TEST_F(SnapshotFileTest, ALostWriteIsFoundBeforeTheCacheCanHideIt) {
  // The disk drops a write silently: the page cache shows it, syncs
  // succeed. The reader reads the disk, so the snapshot is refused now,
  // not after the next power cut.
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {1024 * 1024 - 1, 2 * 1024 * 1024, 10});
  auto w = SnapshotFileWriter::create(env_, dir_, 1, "h");
  ASSERT_TRUE(w.is_ok());
  // Fills the 1 MiB buffer: the file header and chunk 0 are written.
  ASSERT_TRUE((*w)->add(chunks[0].kind, chunks[0].payload).is_ok());
  // Chunk 1 is large: its header is written from the buffer, then its
  // payload from the caller's memory. Both writes are lost (and with them
  // the sector they share with the end of chunk 0).
  env_.lose_next_writes(2);
  for (size_t i = 1; i < chunks.size(); i++) {
    ASSERT_TRUE((*w)->add(chunks[i].kind, chunks[i].payload).is_ok());
  }
  ASSERT_TRUE((*w)->finish().is_ok());
  ASSERT_TRUE((*w)->publish().is_ok());
  auto r = SnapshotFileReader::open(env_, (*w)->path());
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Status s = (*r)->verify();
  EXPECT_EQ(s.code(), Code::kCorruption) << s.to_string();
  EXPECT_NE(s.message().find("checksum mismatch"), std::string::npos) << s.message();
}

TEST_F(SnapshotFileTest, AFailedSyncFailsTheWriterForGood) {
  auto w = SnapshotFileWriter::create(env_, dir_, 1, "h");
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE((*w)->add(1, "payload").is_ok());
  env_.inject_sync_errors(1);
  const Status finished = (*w)->finish();
  ASSERT_EQ(finished.code(), Code::kIoError);
  // Never retried: publish reports the same failure.
  EXPECT_EQ((*w)->publish().message(), finished.message());
  (*w)->abandon();
  auto listed = list_snapshots(env_, dir_);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty());
  auto names = env_.list_dir(dir_);
  ASSERT_TRUE(names.is_ok());
  EXPECT_TRUE(names->empty());
}

TEST_F(SnapshotFileTest, AFailedWriteFailsTheWriterForGood) {
  auto w = SnapshotFileWriter::create(env_, dir_, 1, "h");
  ASSERT_TRUE(w.is_ok());
  env_.inject_write_errors(1);
  const Status s = (*w)->add(1, std::string(2 * 1024 * 1024, 'x'));  // written at once
  ASSERT_EQ(s.code(), Code::kIoError);
  EXPECT_EQ((*w)->add(2, "small").message(), s.message());
  EXPECT_EQ((*w)->finish().message(), s.message());
}

TEST_F(SnapshotFileTest, AReadErrorNamesTheFileAndOffset) {
  const std::vector<Chunk> chunks = chunks_of_sizes(prng_, {10, 20});
  ASSERT_TRUE(write_snapshot(env_, dir_, 1, "", chunks).is_ok());
  const std::string path = join_path(dir_, snapshot_file_name(1));
  auto r = SnapshotFileReader::open(env_, path);
  ASSERT_TRUE(r.is_ok());
  env_.inject_read_errors(1);
  const Status s = (*r)->verify();
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_TRUE(s.message().starts_with(offset_prefix(path, structure_starts("", chunks)[1])))
      << s.message();
  EXPECT_TRUE((*r)->verify().is_ok());  // verify() starts afresh
}

}  // namespace
}  // namespace maroon
