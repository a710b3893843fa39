#include "storage/data_dir.h"

#include <fmt/format.h>

#include "common/codec.h"

namespace maroon {

namespace {

constexpr size_t kStateBytesMax = 64 * 1024;

std::string encode_identity(uint64_t node_id, uint64_t data_id, std::string_view state) {
  std::string payload;
  ByteWriter w(payload);
  w.u8(DataDir::kDataFormat);
  w.u64(node_id);
  w.u64(data_id);
  w.bytes(state);
  return payload;
}

}  // namespace

Result<std::unique_ptr<DataDir>> DataDir::open(Env& env, const DataDirOptions& o,
                                               const StateFn& on_state,
                                               const RecordFn& on_record) {
  std::unique_ptr<DataDir> d(new DataDir());
  if (Status s = env.create_dirs(o.path); !s) return s;
  auto superblock = Superblock::open(env, o.path + "/superblock");
  if (!superblock) return superblock.status();
  d->superblock_ = std::move(superblock).value();
  if (!d->superblock_->current()) {
    d->node_id_ = o.node_id;
    d->data_id_ = o.fresh_data_id;
    if (Status s = d->superblock_->write(encode_identity(d->node_id_, d->data_id_, {})); !s) {
      return s;
    }
  } else {
    ByteReader r(*d->superblock_->current());
    uint8_t format = 0;
    if (!r.u8(format) || format != kDataFormat) {
      return corruption(fmt::format(
          "{}: data format {} is not one this build reads ({}){}", o.path, format, kDataFormat,
          format == 1   ? "; format 1 is from a build before VR: start with a fresh data directory"
          : format == 2 ? "; format 2 is from a build whose log entries lack their epoch: start "
                          "with a fresh data directory"
                        : ""));
    }
    std::string_view state;
    if (!r.u64(d->node_id_) || !r.u64(d->data_id_) || !r.bytes(state, kStateBytesMax) ||
        !r.at_end()) {
      return corruption(o.path + "/superblock: malformed identity");
    }
    if (d->node_id_ != o.node_id) {
      return invalid_argument(fmt::format(
          "{} holds the data of node {}, not of node {}: check --id and the config's data_dir",
          o.path, d->node_id_, o.node_id));
    }
    if (!state.empty()) {
      if (Status s = on_state(state); !s) {
        return Status(s.code(), o.path + "/superblock: " + s.message());
      }
    }
  }
  auto wal = Wal::open(env, o.path + "/wal", o.wal,
                       [&](Lsn, uint8_t type, std::string_view payload) {
                         return on_record(type, payload);
                       });
  if (!wal) return wal.status();
  d->wal_ = std::move(wal).value();
  return d;
}

Status DataDir::write(std::vector<WriteStep>& steps, size_t* steps_done) {
  if (steps_done != nullptr) *steps_done = 0;
  for (WriteStep& step : steps) {
    if (!step.batch->empty()) {
      Status s = wal_->write(*step.batch);
      // Batches are cut at wal_batch_bytes_max (host/durability_order.h),
      // which with one record more fits any segment (limits.h): a batch too
      // large is a bug of the caller, never a disk's failure.
      MAROON_ASSERT_MSG(s.code() != Code::kTooLarge, s.message().c_str());
      if (!s) return s;
    }
    if (step.state) {
      if (Status s = superblock_->write(encode_identity(node_id_, data_id_, *step.state)); !s) {
        return s;
      }
    }
    if (steps_done != nullptr) ++*steps_done;
  }
  return Status::ok();
}

}  // namespace maroon
