#include "storage/data_dir.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/codec.h"
#include "storage/wal_format.h"

namespace maroon {

namespace {

constexpr size_t kStateBytesMax = 64 * 1024;

// The indexes of the WAL segments in wal_dir, ascending (none if it is absent).
Result<std::vector<uint64_t>> segment_indexes(Env& env, const std::string& wal_dir) {
  std::vector<uint64_t> indexes;
  if (!env.exists(wal_dir)) return indexes;
  auto names = env.list_dir(wal_dir);
  if (!names) return names.status();
  for (const std::string& name : *names) {
    if (auto index = wal::parse_segment_file_name(name)) indexes.push_back(*index);
  }
  std::sort(indexes.begin(), indexes.end());
  return indexes;
}

}  // namespace

std::string DataDir::encode_identity() const {
  std::string payload;
  ByteWriter w(payload);
  w.u8(kDataFormat);
  w.u64(node_id_);
  w.u64(data_id_);
  w.u64(wal_first_segment_);
  w.u64(wal_last_segment_);
  w.u64(clean_last_lsn_);
  w.bytes(state_);
  w.u8(log_lost_ ? 1 : 0);
  return payload;
}

Status DataDir::write_identity() { return superblock_->write(encode_identity()); }

Result<std::unique_ptr<DataDir>> DataDir::open(Env& env, const DataDirOptions& o,
                                               const StateFn& on_state,
                                               const RecordFn& on_record) {
  std::unique_ptr<DataDir> d(new DataDir());
  d->path_ = o.path;
  d->env_ = &env;
  if (Status s = env.create_dirs(o.path); !s) return s;
  const std::string wal_dir = o.path + "/wal";
  auto superblock = Superblock::open(env, o.path + "/superblock");
  if (!superblock) return superblock.status();
  d->superblock_ = std::move(superblock).value();
  const bool fresh = !d->superblock_->current();
  // A new directory prepared from a snapshot: restored once its identity
  // is durable (a crash before that finds it new again, and prepared).
  bool restore_pending = false;
  if (fresh) {
    // A new directory. Rule: never over an existing log (its superblock was
    // lost or replaced): a new identity would make it someone else's data,
    // and what the lost superblock said (views, votes, how far the log
    // reached) would be forgotten.
    auto existing = segment_indexes(env, wal_dir);
    if (!existing) return existing.status();
    if (!existing->empty()) {
      return corruption(fmt::format(
          "{}: the superblock is missing or empty but {} holds WAL segments; refusing to make "
          "a new identity over existing data (restore the superblock, or move the directory "
          "away to start fresh)",
          o.path, wal_dir));
    }
    // Snapshots without a superblock are refused the same way (before_log
    // says so), before the new identity is written.
    if (o.before_log) {
      auto cover = o.before_log(/*fresh_directory=*/true);
      if (!cover) return cover.status();
      MAROON_ASSERT(cover->covered == 0 && cover->reached == 0);
      restore_pending = cover->restore_after_identity;
    }
    d->node_id_ = o.node_id;
    d->data_id_ = o.fresh_data_id;
    d->wal_first_segment_ = 1;
    // Durable with the identity: a crash before the sequencer recovered
    // finds the flag, never a directory that looks like a new member's.
    if (o.fresh_log_lost) d->log_lost_ = *o.fresh_log_lost;
    d->created_ = true;
    if (Status s = d->write_identity(); !s) return s;
  } else {
    ByteReader r(*d->superblock_->current());
    uint8_t format = 0;
    if (!r.u8(format) || (format != kDataFormat && format != 3)) {
      return corruption(fmt::format(
          "{}: data format {} is not one this build reads ({}){}", o.path, format, kDataFormat,
          format == 1   ? "; format 1 is from a build before VR: start with a fresh data directory"
          : format == 2 ? "; format 2 is from a build whose log entries lack their epoch: start "
                          "with a fresh data directory"
                        : ""));
    }
    std::string_view state;
    uint8_t lost = 0;
    if (!r.u64(d->node_id_) || !r.u64(d->data_id_) || !r.u64(d->wal_first_segment_) ||
        !r.u64(d->wal_last_segment_) || !r.u64(d->clean_last_lsn_) ||
        !r.bytes(state, kStateBytesMax) || (format >= 4 && !r.u8(lost)) || !r.at_end() ||
        d->wal_first_segment_ == 0 || lost > 1) {
      return corruption(o.path + "/superblock: malformed identity");
    }
    if (lost == 1) {
      d->log_lost_ = "an earlier start found records of the log lost, and they were not yet "
                     "recovered from peers";
    }
    d->state_ = std::string(state);
    if (d->node_id_ != o.node_id) {
      return invalid_argument(fmt::format(
          "{} holds the data of node {}, not of node {}: check --id and the config's data_dir",
          o.path, d->node_id_, o.node_id));
    }
    if (Status s = d->check_log_extent(env, wal_dir, o.recover_lost_log); !s) return s;
    if (!state.empty()) {
      if (Status s = on_state(state); !s) {
        return Status(s.code(), o.path + "/superblock: " + s.message());
      }
    }
  }
  uint64_t covered_lsn = 0;
  uint64_t reached_lsn = 0;
  if (o.before_log && (!fresh || restore_pending)) {
    auto cover = o.before_log(/*fresh_directory=*/false);
    if (!cover) return cover.status();
    covered_lsn = cover->covered;
    reached_lsn = std::max(cover->reached, covered_lsn);
  }
  if (d->wal_first_segment_ > 1 && covered_lsn == 0) {
    return corruption(fmt::format(
        "{}: the log was compacted (it starts at {}), but no snapshot restores the state before "
        "it; restore the snapshots directory from a backup, or (in a cluster) start this node "
        "with an empty data directory to take a snapshot from a peer",
        wal_dir, wal::segment_file_name(d->wal_first_segment_)));
  }
  WalOptions wal_options = o.wal;
  wal_options.first_segment = d->wal_first_segment_;
  // A log with no segment (never made, or all lost) continues after what
  // the snapshots say it reached, so no new record takes an LSN they cover.
  wal_options.empty_log_last_lsn = reached_lsn;
  wal_options.clean_last_lsn = d->clean_last_lsn_;
  wal_options.recover_lost_records = o.recover_lost_log;
  if (!o.on_covered_record) wal_options.skip_through_lsn = covered_lsn;
  DataDir* raw = d.get();
  wal_options.on_roll = [raw](uint64_t index) {
    // The superblock learns of a segment before any record goes into it, so
    // a log that lost it is caught at the next start.
    raw->wal_last_segment_ = std::max(raw->wal_last_segment_, index);
    return raw->write_identity();
  };
  auto wal = Wal::open(env, wal_dir, wal_options,
                       [&](Lsn lsn, uint8_t type, std::string_view payload) {
                         if (lsn.value() <= covered_lsn) {
                           return o.on_covered_record ? o.on_covered_record(type, payload)
                                                      : Status::ok();
                         }
                         return on_record(type, payload);
                       });
  if (!wal) return wal.status();
  d->wal_ = std::move(wal).value();
  // The snapshot and the log must meet: every record after the snapshot's
  // point is in the log.
  if (d->wal_->first_lsn().value() > covered_lsn + 1) {
    return corruption(fmt::format(
        "{}: the log starts at lsn {} ({}), but {}; the records in between are gone. Restore "
        "the snapshots directory from a backup, or (in a cluster) start this node with an "
        "empty data directory to take a snapshot from a peer",
        wal_dir, d->wal_->first_lsn().value(), wal::segment_file_name(d->wal_->first_segment()),
        covered_lsn == 0 ? std::string("no snapshot covers the records before it")
                         : fmt::format("the snapshot restored covers the log only through lsn {}",
                                       covered_lsn)));
  }
  if (d->wal_->last_lsn().value() < reached_lsn) {
    const std::string what = fmt::format(
        "{}: the log ends at lsn {}, but a snapshot says it reached lsn {} (the restored one "
        "covers it through {}): the log lost records it had made durable",
        wal_dir, d->wal_->last_lsn().value(), reached_lsn, covered_lsn);
    if (!o.recover_lost_log) return corruption(what);
    // What the log still holds, the restored snapshot covers (or a newer one
    // did): the log continues after `reached` in a new segment, so no new
    // record takes an LSN a snapshot covers; what followed is recovered from
    // peers, as for any lost end. The new start is durable first: a crash
    // before the new segment exists leaves a log the next open starts
    // afresh at the same point (WalOptions::first_segment, empty_log_last_lsn).
    d->wal_first_segment_ = d->wal_->segment_index() + 1;
    d->log_lost_ = what;
    if (Status s = d->write_identity(); !s) return s;
    if (Status s = d->wal_->continue_after(Lsn(reached_lsn)); !s) return s;
    MAROON_ASSERT(d->wal_->segment_index() == d->wal_first_segment_);
    if (Status s = d->wal_->remove_segments_below(d->wal_first_segment_); !s) return s;
  }
  if (d->wal_->lost()) d->log_lost_ = *d->wal_->lost();
  if (d->log_lost_) {
    // Said durably before anything else is written, in the same superblock
    // write that makes the extent match the log as it now is: a crash
    // before the loss is recovered finds the flag, not a log that looks whole.
    d->wal_last_segment_ = d->wal_->segment_index();
    d->clean_last_lsn_ = 0;
    if (Status s = d->write_identity(); !s) return s;
  }
  if (d->clean_last_lsn_ != 0) {
    // From now on a stop is not clean until it says so again.
    d->clean_last_lsn_ = 0;
    if (Status s = d->write_identity(); !s) return s;
  }
  return d;
}

Status DataDir::check_log_extent(Env& env, const std::string& wal_dir, bool recover_lost) {
  if (wal_last_segment_ == 0) return Status::ok();  // no segment was ever made
  auto found = segment_indexes(env, wal_dir);
  if (!found) return found.status();
  const std::vector<uint64_t>& indexes = *found;
  const std::string remedy =
      "refusing to start rather than serve a truncated state: restore the missing files from "
      "a backup of this directory (a cluster node recovers a lost end of its log from its "
      "peers, but not a lost beginning: that needs snapshot transfer, which is not built yet)";
  if (indexes.empty()) {
    const std::string what = fmt::format("{}: the log is missing (the superblock says it reaches "
                                         "segment {})",
                                         wal_dir, wal_last_segment_);
    if (!recover_lost) return corruption(what + "; " + remedy);
    log_lost_ = what;
    return Status::ok();
  }
  if (indexes.front() > wal_first_segment_) {
    return corruption(fmt::format("{}: the log starts at {}, but the superblock says it starts "
                                  "at {}; {}",
                                  wal_dir, wal::segment_file_name(indexes.front()),
                                  wal::segment_file_name(wal_first_segment_), remedy));
  }
  if (indexes.back() < wal_last_segment_) {
    const std::string what = fmt::format("{}: the log ends at {}, but the superblock says it "
                                         "reaches {}: its last writes are missing",
                                         wal_dir, wal::segment_file_name(indexes.back()),
                                         wal::segment_file_name(wal_last_segment_));
    if (!recover_lost) return corruption(what + "; " + remedy);
    log_lost_ = what;
  }
  return Status::ok();
}

Status DataDir::mark_clean_shutdown() {
  MAROON_ASSERT(wal_ && !wal_->failed());
  clean_last_lsn_ = wal_->last_lsn().value();
  if (clean_last_lsn_ == 0) return Status::ok();  // nothing to vouch for
  return write_identity();
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
    if (step.state || (step.log_recovered && log_lost_)) {
      if (step.state) state_ = *step.state;
      if (step.log_recovered) log_lost_.reset();
      if (Status s = write_identity(); !s) return s;
    }
    if (step.compact_through_lsn) {
      const std::vector<uint64_t> covered = wal_->segments_through(Lsn(*step.compact_through_lsn));
      if (!covered.empty()) {
        // The superblock says where the log starts before any segment goes:
        // a crash in between leaves files the next open removes, never a log
        // that seems to have lost its beginning.
        wal_first_segment_ = covered.back() + 1;
        if (Status s = write_identity(); !s) return s;
        (void)wal_->remove_segments_below(wal_first_segment_);
      }
    }
    if (!step.remove_files.empty()) {
      std::vector<std::string> dirs;
      for (const std::string& f : step.remove_files) {
        if (env_->exists(f) && env_->remove(f).is_ok()) dirs.push_back(parent_dir(f));
      }
      std::sort(dirs.begin(), dirs.end());
      dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
      for (const std::string& dir : dirs) (void)env_->sync_dir(dir);
    }
    if (steps_done != nullptr) ++*steps_done;
  }
  return Status::ok();
}

}  // namespace maroon
