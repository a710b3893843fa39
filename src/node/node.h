// The node core (DESIGN.md §2): holds txs durably, proposes epochs through the
// sequencer, and applies committed epochs in order. Pure: no I/O, no clocks,
// no threads. Inputs are messages, ticks and durability reports; everything it
// wants done comes out of take_output().
//
// Single node for now: a range's orderable offset is this node's own durable
// offset (k = 1). In a cluster it becomes the k-th largest advertised offset.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "app/state_machine.h"
#include "common/status.h"
#include "common/types.h"
#include "node/held_window.h"
#include "node/result_table.h"
#include "protocol/messages.h"
#include "protocol/output.h"
#include "sequencer/sequencer.h"

namespace maroon {

struct NodeConfig {
  NodeId id{1};
  // Single node, one WAL: order a tx in the same WAL batch that first makes
  // it durable. Safe because the WAL recovers a batch whole or not at all and
  // an epoch record always follows the records of its txs, so an epoch can
  // never be durable without them; it saves one fdatasync round per write.
  // In a cluster (k > 1) a tx is ordered only once k nodes hold it durably.
  bool order_unsynced_txs = false;
  size_t result_table_txs_per_range_max = 0;    // 0: limits::result_table_txs_per_range_max
  size_t result_table_bytes_per_range_max = 0;  // 0: limits::result_table_bytes_per_range_max
  // The gateways live in this node's process (`maroon dev`): none from before
  // a restart can retry, so their result tables are dropped after replay.
  // In a cluster, a dead gateway's range is sealed instead (SealRange).
  bool gateways_in_process = false;
  size_t lease_requests_queued_max = 1024;
  // How far past the last executed offset of a range a tx may arrive; later
  // ones are dropped and retried by their gateway.
  size_t held_txs_per_range_max = 0;  // 0: 2 * limits::gateway_inflight_txs_max
};

struct NodeCounters {
  uint64_t txs_received = 0;    // first copies accepted
  uint64_t txs_duplicate = 0;   // retries of held or executed txs
  uint64_t txs_rejected = 0;    // unknown range, wrong gateway, unknown app
  uint64_t txs_applied = 0;
  uint64_t epochs_proposed = 0;
  uint64_t epochs_applied = 0;
};

class Node {
 public:
  Node(NodeConfig config, Sequencer& sequencer);
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Registers the state machine that executes txs of `app`.
  void register_app(AppId app, StateMachine& machine);

  // Startup: feed every WAL record in order, then finish_replay(). Replay
  // re-executes committed epochs and produces no messages.
  Status replay(RecordType type, std::string_view payload);
  void finish_replay();

  void on_tx(GatewayId from, TxMsg msg);
  void on_lease_request(const LeaseRequest& request);
  // Every record this node emitted with seq <= durable_seq is on disk.
  void on_persisted(uint64_t durable_seq);
  // The driver is about to persist everything emitted so far: the last
  // chance to add records (an epoch) to the same batch.
  void on_flush();
  void tick(uint64_t now_ms);

  Output take_output();

  EpochNumber applied_epoch() const { return applied_epoch_; }
  uint64_t applied_time_ms() const { return applied_time_ms_; }
  const NodeCounters& counters() const { return counters_; }
  // Txs held but not yet executed.
  size_t held_txs() const { return held_txs_; }
  // Combined hash of every app's state, compared across replicas per epoch.
  uint64_t state_hash() const;
  // The newest range leased to `gateway`, or RangeId(0).
  RangeId newest_range(GatewayId gateway) const;

 private:
  struct RangeState {
    RangeState(GatewayId owner_, const NodeConfig& c)
        : owner(owner_),
          held(c.held_txs_per_range_max),
          results(c.result_table_txs_per_range_max, c.result_table_bytes_per_range_max) {}
    GatewayId owner;
    uint64_t written = 0;  // every offset <= written is held (its record emitted) or executed
    uint64_t durable = 0;  // every offset <= durable is held durably or executed
    uint64_t ordered = 0;  // every offset <= ordered is in a proposed epoch
    uint64_t applied = 0;  // every offset <= applied is executed
    HeldWindow held;  // offsets > applied
    ResultTable results;
  };

  void hold(RangeState& range, TxId id, AppId app, std::string op, bool durable);
  void advance_durable(RangeState& range);
  uint64_t orderable(const RangeState& range) const;
  void propose_epochs();
  void apply_committed();
  void apply_epoch(const Epoch& epoch, bool replaying);
  void send(GatewayId to, NodeToGateway msg, bool after_persist);
  void check_invariants(const RangeState& range) const;

  NodeConfig config_;
  Sequencer& sequencer_;
  std::array<StateMachine*, 256> apps_{};
  Output out_;
  bool replaying_ = true;
  uint64_t now_ms_ = 0;
  uint64_t durable_seq_ = 0;

  std::map<RangeId, RangeState> ranges_;  // ordered: epochs list ranges ascending
  RangeId next_range_{1};
  std::unordered_map<GatewayId, RangeId> newest_range_;
  std::deque<LeaseRequest> lease_requests_;
  // Tx records emitted and not yet durable, in seq order.
  std::deque<std::pair<uint64_t, TxId>> pending_durable_;
  size_t held_txs_ = 0;

  EpochNumber applied_epoch_{0};
  uint64_t applied_time_ms_ = 0;
  uint64_t proposed_time_ms_ = 0;
  NodeCounters counters_;
};

// WAL payload of a RecordType::kTx record.
void encode_tx_record(const TxMsg& tx, std::string& out);
Result<TxMsg> decode_tx_record(std::string_view payload);

}  // namespace maroon
