// The gateway core (docs/architecture.md): gives every client request a unique tx id
// from its leased range, sends it to the nodes and retries (same id, same
// bytes) until k nodes acknowledged it, and hands each result back once.
// Pure: no I/O, no clocks; time is ticks.
//
// Quorum loss (docs/cluster.md, "When the cluster has no quorum"): the
// driver tells the gateway whether the cluster has a working quorum
// (set_quorum). Without one, submit() refuses at once with kNoQuorum: the
// request got no id and was sent nowhere, so it never executes. A request
// that was sent and has no result deadline_ticks after its submit is
// answered kOutcomeUnknown and forgotten (no more resends; a late result is
// dropped): it may still be ordered and executed later.
#pragma once

#include <bit>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/status.h"
#include "common/types.h"
#include "protocol/messages.h"

namespace maroon {

struct GatewayConfig {
  GatewayId id{1};
  size_t inflight_txs_max = 0;    // 0: limits::gateway_inflight_txs_max
  size_t inflight_bytes_max = 0;  // 0: limits::gateway_inflight_bytes_max
  size_t acks_needed = 1;       // k = f + 1
  uint64_t retry_ticks = 100;   // resend a tx not yet acknowledged by k nodes
  // False when delivery to the nodes cannot lose messages (a node in the same
  // process): then no op is kept for resending, saving a copy per tx.
  bool retries = true;
  uint64_t lease_retry_ticks = 100;
  // A tx acknowledged by k nodes but not answered is sent again this often:
  // a node that executed it answers from its result table (the first result
  // may have been lost with a connection).
  uint64_t result_retry_ticks = 300;
  // Renew the ranges in use this often (0: never; `maroon dev` has no lease
  // expiry). Must be well below the cluster's lease_ms.
  uint64_t renew_ticks = 0;
  // Offsets used per range before a fresh range is leased; kOffsetMax in
  // production, small in tests to exercise rollover.
  uint64_t offsets_per_range_max = kOffsetMax;
  // A tx with no result this many ticks after submit is answered "outcome
  // unknown" (0: never; `maroon dev`, where nothing can go missing).
  uint64_t deadline_ticks = 0;
  // One tick in milliseconds; only to word messages (0: they say ticks).
  uint64_t tick_ms = 0;
  // The apps the cluster's nodes run. A request for another app is refused
  // before it gets an id: an id the nodes never order would leave a gap in
  // the range, and every later tx of this gateway would wait behind it.
  std::vector<AppId> apps{AppId::kKv};
  // The group as the config file lists it, and its membership config
  // (docs/membership.md): only these nodes' acks count until set_members
  // tells of a newer group. Empty: every node's ack counts.
  std::vector<NodeId> members;
  uint64_t members_config = 0;
};

// A result for the client that submitted `token`.
struct Delivery {
  uint64_t token = 0;
  TxId id;
  std::string reply;
  bool expired = false;
  // The tx's range was sealed before it was ordered: it never executes.
  bool sealed = false;
  // No result within deadline_ticks: the outcome is unknown. `error` says so
  // for the client (and why, when the gateway knows the quorum is lost).
  bool timed_out = false;
  std::string error;
};

struct GatewayOutput {
  std::vector<GatewayToNode> to_nodes;  // broadcast to every node
  std::vector<Delivery> deliveries;
};

class Gateway {
 public:
  explicit Gateway(GatewayConfig config);

  // True once a range is leased and has free offsets.
  bool ready() const;
  // Assigns the next id and sends the tx. Errors: kNoQuorum (set_quorum said
  // there is none), kUnavailable (no range leased yet), kOverloaded (too many
  // txs or bytes in flight), kTooLarge. None of them sent anything.
  Result<TxId> submit(AppId app, std::string op, uint64_t token);
  void on_message(NodeToGateway msg);
  void tick();
  // Whether the cluster has a working quorum, as the driver knows it, and if
  // not why (for messages). True until told otherwise.
  void set_quorum(bool quorum, std::string_view reason);
  bool quorum() const { return quorum_; }
  // The group of membership `config` (docs/membership.md): from now on only
  // its members' acks count, and k is a majority of it. Ignored unless config
  // is newer than the last one set. A tx that had k acks of the old group
  // but lacks k among the new members is resent (its op is kept until
  // answered): nodes the change removed refuse new txs and may retire
  // before they order it.
  void set_members(uint64_t config, const std::vector<NodeId>& members);
  uint64_t members_config() const { return members_config_; }
  size_t acks_needed() const { return config_.acks_needed; }

  GatewayOutput take_output();

  RangeId range() const { return range_; }
  size_t inflight() const { return inflight_count_; }
  GatewayId id() const { return config_.id; }

 private:
  struct Inflight {
    TxId id;
    uint64_t token = 0;
    AppId app = AppId::kSystem;
    std::string op;  // kept for resending (empty without retries)
    size_t op_bytes = 0;
    uint64_t ack_mask = 0;  // bit n: node n acknowledged
    uint64_t sent_tick = 0;
    uint64_t submitted_tick = 0;
    bool answered = false;  // done: nothing more to send or answer
    // The client was answered "outcome unknown"; still resent until k acks.
    bool timed_out = false;
  };
  // Txs are numbered in submission order; ids run consecutively within a
  // range, so a tx id maps to its number through the range's first one.
  struct RangeStart {
    RangeId range;
    uint64_t first_number;  // number of offset 1
  };
  void request_lease();
  void renew_leases();
  Inflight* find(TxId id);
  // Hands `d` to the client (unless it timed out already) and finishes tx.
  void answer(Inflight& tx, Delivery d);
  void finish(Inflight& tx);
  void expire_overdue();
  std::string timeout_message() const;
  // k acks from members of the current group.
  bool acked(const Inflight& tx) const {
    return static_cast<size_t>(std::popcount(tx.ack_mask & member_mask_)) >= config_.acks_needed;
  }

  GatewayConfig config_;
  GatewayOutput out_;
  RangeId range_{0};
  uint64_t next_offset_ = 1;
  uint64_t now_ticks_ = 0;
  bool lease_requested_ = false;
  uint64_t lease_requested_tick_ = 0;
  // inflight_[i] is tx number inflight_base_ + i; answered ones are popped
  // from the front, so the deque spans the oldest unanswered tx onwards.
  std::deque<Inflight> inflight_;
  uint64_t inflight_base_ = 0;
  uint64_t next_number_ = 0;
  size_t inflight_count_ = 0;
  size_t inflight_bytes_ = 0;
  // No unacknowledged tx is due for a retry before this tick.
  uint64_t next_retry_tick_ = 0;
  uint64_t next_renew_tick_ = 0;
  // Txs numbered below this one are answered or timed out (deadlines follow
  // submission order).
  uint64_t expire_next_ = 0;
  std::deque<RangeStart> range_starts_;
  bool quorum_ = true;
  std::string no_quorum_reason_;
  // Bit n: node n's acks count (every node until set_members).
  uint64_t member_mask_ = ~uint64_t{0};
  uint64_t members_config_ = 0;
};

}  // namespace maroon
