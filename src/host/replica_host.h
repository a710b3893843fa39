// ReplicaHost: NodeHost's counterpart for a bare VR replica, for the VR
// simulator (sim/simulator.cc) and the VR bench, which run a replicated
// service without the node layer. The durability order is the same class
// (DurabilityOrder); the records go through the real VR codecs into the real
// WAL and superblock (DataDir), exactly as VrSequencer puts them there in a
// node: log suffixes and checkpoints as kVrLog and kVrCheckpoint records,
// the replica's DurableState as the superblock's state.
//
// The caller passes out() to every call into the replica and then calls
// drain(); take_write() and written() work as in NodeHost.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "host/durability_order.h"
#include "storage/data_dir.h"
#include "vr/replica.h"

namespace maroon::host {

class ReplicaSink {
 public:
  virtual ~ReplicaSink() = default;
  virtual void to_replica(vr::Envelope e) = 0;
  virtual void to_client(vr::ClientReply r) = 0;
};

class ReplicaHost {
 public:
  ReplicaHost(vr::Replica& replica, ReplicaSink& sink,
              size_t batch_bytes_max = limits::wal_batch_bytes_max)
      : replica_(replica), sink_(sink), order_(batch_bytes_max) {}
  ReplicaHost(const ReplicaHost&) = delete;
  ReplicaHost& operator=(const ReplicaHost&) = delete;

  // Opens the data directory and replays every durable record into the
  // replica (the superblock's DurableState first). Sets `replayed` to
  // whether there was anything: the caller then calls finish_replay, or
  // bootstrap or join for a replica with an empty disk.
  Result<std::unique_ptr<DataDir>> open(Env& env, const DataDirOptions& options, bool& replayed);

  vr::Output& out() { return out_; }
  // Routes what the replica put in out(): records into the durability order,
  // messages and replies to the sink (after-persist ones once durable).
  void drain();

  std::optional<PendingWrite> take_write();
  // As NodeHost::written: held messages leave, start_next runs, then the
  // replica hears that every record up to last_seq is durable.
  void written(uint64_t last_seq, const std::function<void()>& start_next = {});
  void write_failed();

  bool writing() const { return order_.writing(); }
  size_t held_messages() const { return order_.held(); }

 private:
  vr::Replica& replica_;
  ReplicaSink& sink_;
  vr::Output out_;
  DurabilityOrder<vr::Envelope> order_;
  bool failed_ = false;
  bool log_lost_ = false;  // as NodeHost::log_lost
};

}  // namespace maroon::host
