// NodeHost: the one place where a node core meets storage and the network
// (docs/architecture.md, "One host"). The real driver (server/driver.cc),
// the cluster simulator (sim/cluster_sim.cc), the node cluster tests and the
// benches all run their nodes through it, so what the simulator proves is a
// property of the code the node process runs.
//
// It owns, for one node:
//   - replay on restart, through DataDir: the superblock's state first, then
//     every WAL record in order, then finish_replay;
//   - routing the node's output: records into the durability order,
//     messages to the sink at once or once their records are durable;
//   - group commit: take_write() gives the caller everything emitted since
//     the previous write (the node first gets its on_flush() chance to add
//     an epoch ordering the txs of this very write); written() reports it
//     durable, releases the messages it held, lets the caller start the next
//     write, and only then tells the node (so executing this write's txs
//     overlaps the next fdatasync).
//
// It does no I/O itself: the caller writes the steps with DataDir::write (on
// a thread in the node process, inline on FaultEnv in the simulator).
#pragma once

#include <functional>
#include <string>
#include <variant>

#include "host/durability_order.h"
#include "node/node.h"
#include "storage/data_dir.h"

namespace maroon::host {

// Where a node's messages go. The host calls it in the order the node
// emitted them (after-persist ones when their records are durable).
class NodeSink {
 public:
  virtual ~NodeSink() = default;
  virtual void to_peer(PeerEnvelope e) = 0;
  virtual void to_gateway(GatewayEnvelope e) = 0;
};

struct ReplayCounts {
  uint64_t records = 0;
  uint64_t epochs = 0;  // VR log records
  uint64_t txs = 0;
};

class NodeHost {
 public:
  NodeHost(Node& node, NodeSink& sink, size_t batch_bytes_max = limits::wal_batch_bytes_max)
      : node_(node), sink_(sink), order_(batch_bytes_max) {}
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // Opens the data directory and replays it into the node, then finishes
  // the replay; drain() then routes what finishing said. `after_record`, if set, runs after each replayed record
  // (progress output, checkers).
  Result<std::unique_ptr<DataDir>> open(Env& env, const DataDirOptions& options,
                                        ReplayCounts& counts,
                                        const std::function<void()>& after_record = {});

  // Routes everything the node has to say; returns whether there was
  // anything. Call after every input to the node.
  bool drain();

  // Group commit. Gives the node its on_flush() chance, then returns
  // everything emitted since the last write, or nothing if there is nothing
  // or a write is in flight.
  std::optional<PendingWrite> take_write();
  // The write taken last is durable. start_next runs after the held messages
  // are released and before the node hears of it (see the header).
  void written(uint64_t last_seq, const std::function<void()>& start_next = {});
  // The write taken last failed: nothing more is ever written.
  void write_failed();

  // The data directory's log had lost records (DataDir::log_lost) and the
  // sequencer has not yet recovered them from peers.
  bool log_lost() const { return log_lost_; }
  bool writing() const { return order_.writing(); }
  uint64_t durable_seq() const { return order_.durable_seq(); }
  size_t pending_bytes() const { return order_.pending_bytes(); }
  size_t held_messages() const { return order_.held(); }

 private:
  using HeldMessage = std::variant<PeerEnvelope, GatewayEnvelope>;
  void route(Output out);
  void send(HeldMessage m);

  Node& node_;
  NodeSink& sink_;
  DurabilityOrder<HeldMessage> order_;
  bool failed_ = false;
  bool log_lost_ = false;
};

}  // namespace maroon::host
