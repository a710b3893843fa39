// The directory store, the store URLs, the snapshot layout in a store, and
// the uploader (against a directory store). The S3 store is tested against
// a real S3-compatible server in tests/objstore/objstore_test.py.
#include "objstore/object_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "objstore/uploader.h"
#include "storage/snapshot_file.h"

namespace maroon::objstore {
namespace {

namespace fs = std::filesystem;

std::string temp_dir() {
  char tmpl[] = "/tmp/maroon-objstore-test-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  return tmpl;
}

void write_file(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::unique_ptr<ObjectStore> dir_store(const std::string& url) {
  auto s = open_store(StoreConfig{.url = url});
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

TEST(ObjectStoreUrl, RejectsWhatIsNotADirectoryOrBucket) {
  EXPECT_EQ(open_store(StoreConfig{.url = ""}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(open_store(StoreConfig{.url = "http://x/y"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(open_store(StoreConfig{.url = "s3://A_B/x", .access_key = "k", .secret_key = "s"})
                .status()
                .code(),
            Code::kInvalidArgument);
  // No credentials given, none in the environment.
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  auto none = open_store(StoreConfig{.url = "s3://bucket/prefix"});
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos);
  auto small_parts = open_store(
      StoreConfig{.url = "s3://bucket", .access_key = "k", .secret_key = "s", .part_bytes = 1024});
  EXPECT_EQ(small_parts.status().code(), Code::kInvalidArgument);
  // From the environment, as the AWS tools read it.
  setenv("AWS_ACCESS_KEY_ID", "k", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
  auto s3 = open_store(StoreConfig{.url = "s3://bucket/some/prefix"});
  ASSERT_TRUE(s3.is_ok()) << s3.status().to_string();
  EXPECT_NE((*s3)->describe().find("s3://bucket/some/prefix/"), std::string::npos);
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  EXPECT_TRUE(is_s3_url("s3://b"));
  EXPECT_FALSE(is_s3_url("/tmp/b"));
}

TEST(DirStore, PutsListsGetsAndRemovesWholeFiles) {
  const std::string root = temp_dir();
  auto store = dir_store("file://" + root + "/store");
  ASSERT_NE(store, nullptr);
  // Nothing stored yet: an empty list, and a clear not-found.
  auto empty = store->list("");
  ASSERT_TRUE(empty.is_ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(store->get_file("a/b", root + "/x", 0).code(), Code::kNotFound);

  const std::string big(3 * 1024 * 1024 + 17, 'z');
  write_file(root + "/src/big", big);
  write_file(root + "/src/small", "hello");
  uint64_t last_done = 0;
  ASSERT_TRUE(store
                  ->put_file("node-1/big", root + "/src/big",
                             [&](uint64_t done, uint64_t total) {
                               EXPECT_EQ(total, big.size());
                               EXPECT_GE(done, last_done);
                               last_done = done;
                             })
                  .is_ok());
  EXPECT_EQ(last_done, big.size());
  ASSERT_TRUE(store->put_file("node-2/small", root + "/src/small").is_ok());
  auto all = store->list("");
  ASSERT_TRUE(all.is_ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].key, "node-1/big");
  EXPECT_EQ((*all)[0].bytes, big.size());
  EXPECT_EQ((*all)[1].key, "node-2/small");
  auto two = store->list("node-2/");
  ASSERT_TRUE(two.is_ok());
  ASSERT_EQ(two->size(), 1u);

  ASSERT_TRUE(store->get_file("node-1/big", root + "/out/big", 0).is_ok());
  EXPECT_EQ(read_file(root + "/out/big"), big);
  EXPECT_FALSE(fs::exists(root + "/out/big.part"));
  // Of another size than listed: refused, nothing left behind.
  EXPECT_EQ(store->get_file("node-1/big", root + "/out/other", 17).code(), Code::kCorruption);
  EXPECT_FALSE(fs::exists(root + "/out/other"));
  EXPECT_FALSE(fs::exists(root + "/out/other.part"));
  // Replacing an object replaces it whole.
  ASSERT_TRUE(store->put_file("node-1/big", root + "/src/small").is_ok());
  ASSERT_TRUE(store->get_file("node-1/big", root + "/out/big", 0).is_ok());
  EXPECT_EQ(read_file(root + "/out/big"), "hello");

  ASSERT_TRUE(store->remove("node-1/big").is_ok());
  ASSERT_TRUE(store->remove("node-1/big").is_ok());  // gone already: no error
  auto left = store->list("");
  ASSERT_TRUE(left.is_ok());
  ASSERT_EQ(left->size(), 1u);
  // Keys that would leave the root are refused.
  EXPECT_EQ(store->put_file("../escape", root + "/src/small").code(), Code::kInvalidArgument);
  EXPECT_EQ(store->put_file("a//b", root + "/src/small").code(), Code::kInvalidArgument);
  EXPECT_EQ(store->get_file("/etc/passwd", root + "/p", 0).code(), Code::kInvalidArgument);
  // A missing source is an error naming it, and stores nothing.
  EXPECT_FALSE(store->put_file("node-3/x", root + "/src/none").is_ok());
  EXPECT_EQ(store->list("node-3/")->size(), 0u);
  fs::remove_all(root);
}

TEST(StoredSnapshots, AreListedByEpochAndNodeSkippingOtherObjects) {
  const std::string root = temp_dir();
  auto store = dir_store(root);
  write_file(root + "/f", "x");
  for (auto [node, epoch] : {std::pair{2, 30}, {1, 30}, {1, 7}, {3, 100}}) {
    ASSERT_TRUE(store->put_file(snapshot_key(node, epoch), root + "/f").is_ok());
  }
  ASSERT_TRUE(store->put_file("node-1/notes.txt", root + "/f").is_ok());
  ASSERT_TRUE(store->put_file("node-x/" + snapshot_file_name(5), root + "/f").is_ok());
  ASSERT_TRUE(store->put_file("other/" + snapshot_file_name(5), root + "/f").is_ok());
  auto all = list_snapshots(*store);
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].epoch, 7u);
  EXPECT_EQ((*all)[1].node_id, 1u);
  EXPECT_EQ((*all)[1].epoch, 30u);
  EXPECT_EQ((*all)[2].node_id, 2u);
  EXPECT_EQ((*all)[3].epoch, 100u);
  EXPECT_EQ((*all)[3].key, "node-3/" + snapshot_file_name(100));
  auto one = list_snapshots(*store, 1);
  ASSERT_TRUE(one.is_ok());
  EXPECT_EQ(one->size(), 2u);
  fs::remove_all(root);
}

// Waits until pred holds, up to 10 s.
template <typename Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 1000; i++) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

TEST(Uploader, UploadsTheNewestOfferAndPrunesBeyondKept) {
  const std::string root = temp_dir();
  auto store = dir_store(root + "/store");
  auto check = dir_store(root + "/store");
  Uploader up(std::move(store), UploaderOptions{.node_id = 4, .interval_ms = 0, .kept = 2});
  for (uint64_t e = 1; e <= 5; e++) {
    const std::string path = root + "/snaps/" + std::to_string(e);
    write_file(path, std::string(e * 10, 'a'));
    up.offer(e, path, e * 10);
    ASSERT_TRUE(eventually([&] { return up.status().last_epoch == e; })) << e;
  }
  ASSERT_TRUE(eventually([&] { return list_snapshots(*check, 4)->size() == 2; }));
  auto kept = list_snapshots(*check, 4);
  EXPECT_EQ((*kept)[0].epoch, 4u);
  EXPECT_EQ((*kept)[1].epoch, 5u);
  EXPECT_EQ((*kept)[1].bytes, 50u);
  const UploaderStatus st = up.status();
  EXPECT_EQ(st.uploads, 5u);
  EXPECT_EQ(st.pruned, 3u);
  EXPECT_EQ(st.failures, 0u);
  fs::remove_all(root);
}

TEST(Uploader, WaitsForTheIntervalUnlessForcedAndSkipsFilesAlreadyGone) {
  const std::string root = temp_dir();
  auto check = dir_store(root + "/store");
  Uploader up(dir_store(root + "/store"),
              UploaderOptions{.node_id = 1, .interval_ms = 3600 * 1000, .kept = 0});
  write_file(root + "/a", "first");
  up.offer(1, root + "/a", 5);
  ASSERT_TRUE(eventually([&] { return up.status().uploads == 1; }));
  // Within the interval: held (only the newest of several offers).
  write_file(root + "/b", "second");
  write_file(root + "/c", "third!");
  up.offer(2, root + "/b", 6);
  up.offer(3, root + "/c", 6);
  up.offer(2, root + "/b", 6);  // older than the pending one: ignored
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(up.status().uploads, 1u);
  EXPECT_EQ(up.status().pending_epoch, 3u);
  up.force_next(3);
  ASSERT_TRUE(eventually([&] { return up.status().uploads == 2; }));
  EXPECT_EQ(up.status().last_epoch, 3u);
  EXPECT_FALSE(up.status().forced);
  EXPECT_EQ(list_snapshots(*check, 1)->size(), 2u);  // 1 and 3; 2 never went
  // A file deleted (by compaction) before its upload began is skipped.
  up.force_next(9);
  up.offer(9, root + "/deleted", 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(up.status().failures, 0u);
  EXPECT_EQ(up.status().uploads, 2u);
  EXPECT_EQ(up.status().last_epoch, 3u);
  EXPECT_EQ(up.status().pending_epoch, 0u);
  EXPECT_EQ(list_snapshots(*check, 1)->size(), 2u);
  fs::remove_all(root);
}

TEST(Uploader, AForcedUploadWaitsForTheSnapshotAskedForNotAnOlderOne) {
  const std::string root = temp_dir();
  Uploader up(dir_store(root + "/store"),
              UploaderOptions{.node_id = 1, .interval_ms = 3600 * 1000, .kept = 0});
  for (int e : {1, 2, 5, 6}) write_file(root + "/" + std::to_string(e), "snap");
  up.offer(1, root + "/1", 4);  // the first goes at once
  ASSERT_TRUE(eventually([&] { return up.status().uploads == 1; }));
  up.offer(2, root + "/2", 4);  // held by the interval
  // `maroon backup` at epoch 5: the older pending one goes now, and the
  // upload stays forced until the one of epoch 5 went.
  up.force_next(5);
  ASSERT_TRUE(eventually([&] { return up.status().uploads == 2; }));
  EXPECT_EQ(up.status().last_epoch, 2u);
  EXPECT_TRUE(up.status().forced);
  EXPECT_EQ(up.status().forced_epoch, 5u);
  up.offer(5, root + "/5", 4);
  ASSERT_TRUE(eventually([&] { return up.status().uploads == 3; }));
  EXPECT_EQ(up.status().last_epoch, 5u);
  EXPECT_FALSE(up.status().forced);
  // Not forced any more: the next waits for the interval.
  up.offer(6, root + "/6", 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(up.status().uploads, 3u);
  EXPECT_EQ(up.status().pending_epoch, 6u);
  fs::remove_all(root);
}

TEST(Uploader, RefusesToMixTimelinesInOneFolder) {
  const std::string root = temp_dir();
  auto check = dir_store(root + "/store");
  write_file(root + "/s", "snap");
  // Another timeline of node 1 (a restore from an older snapshot, or
  // another cluster) reached epoch 10 in this folder.
  ASSERT_TRUE(check->put_file(snapshot_key(1, 10), root + "/s").is_ok());
  Uploader up(dir_store(root + "/store"),
              UploaderOptions{.node_id = 1, .interval_ms = 0, .kept = 1, .retry_min_ms = 10,
                              .retry_max_ms = 20});
  up.offer(5, root + "/s", 4);
  ASSERT_TRUE(eventually([&] { return up.status().failures >= 1; }));
  const UploaderStatus st = up.status();
  EXPECT_EQ(st.uploads, 0u);
  EXPECT_NE(st.last_error.find("another timeline"), std::string::npos) << st.last_error;
  // Nothing uploaded, nothing pruned.
  auto stored = list_snapshots(*check, 1);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].epoch, 10u);

  // A cluster node's epochs are its cluster's, one history: a newer one of
  // its own (from before it lost its disk) is no conflict, and stays.
  ASSERT_TRUE(check->put_file(snapshot_key(2, 10), root + "/s").is_ok());
  Uploader cluster_node(dir_store(root + "/store"),
                        UploaderOptions{.node_id = 2, .interval_ms = 0, .kept = 1,
                                        .one_timeline_check = false});
  cluster_node.offer(5, root + "/s", 4);
  ASSERT_TRUE(eventually([&] { return cluster_node.status().uploads == 1; }));
  EXPECT_EQ(cluster_node.status().failures, 0u);
  auto two = list_snapshots(*check, 2);
  ASSERT_EQ(two->size(), 2u);  // kept 1, but never the one just uploaded
  fs::remove_all(root);
}

TEST(Uploader, AFailedPutIsRetriedAndSaysWhy) {
  const std::string root = temp_dir();
  // The source cannot be read (a directory), though it exists: not "gone".
  fs::create_directories(root + "/unreadable");
  Uploader up(dir_store(root + "/store"),
              UploaderOptions{.node_id = 1, .interval_ms = 0, .retry_min_ms = 10,
                              .retry_max_ms = 20});
  up.offer(1, root + "/unreadable", 4);
  ASSERT_TRUE(eventually([&] { return up.status().failures >= 2; }));
  EXPECT_EQ(up.status().uploads, 0u);
  EXPECT_NE(up.status().last_error.find("unreadable"), std::string::npos)
      << up.status().last_error;
  fs::remove_all(root);
}

TEST(Uploader, RetriesAFailingStoreAndSaysWhy) {
  const std::string root = temp_dir();
  // A store root that is a file: every put fails.
  write_file(root + "/blocked", "not a directory");
  Uploader up(dir_store(root + "/blocked"),
              UploaderOptions{.node_id = 1, .interval_ms = 0, .retry_min_ms = 10,
                              .retry_max_ms = 20});
  write_file(root + "/s", "snap");
  up.offer(1, root + "/s", 4);
  ASSERT_TRUE(eventually([&] { return up.status().failures >= 3; }));
  UploaderStatus st = up.status();
  EXPECT_EQ(st.uploads, 0u);
  EXPECT_NE(st.last_error.find("blocked"), std::string::npos) << st.last_error;
  EXPECT_EQ(st.pending_epoch, 1u);  // still wanted
  fs::remove_all(root);
}

}  // namespace
}  // namespace maroon::objstore
