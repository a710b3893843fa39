#include "node/node.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/codec.h"
#include "common/limits.h"

namespace maroon {

namespace {
constexpr uint8_t kTxRecordFormat = 1;
// System ops per epoch; further lease requests wait for the next epoch.
constexpr size_t kEpochSystemOpsMax = 64;
}  // namespace

void encode_tx_record(const TxMsg& tx, std::string& out) {
  ByteWriter w(out);
  w.u8(kTxRecordFormat);
  w.u64(tx.id.raw());
  w.u8(static_cast<uint8_t>(tx.app));
  w.bytes(tx.op);
}

Result<TxMsg> decode_tx_record(std::string_view payload) {
  ByteReader r(payload);
  uint8_t format = 0, app = 0;
  uint64_t id = 0;
  std::string_view op;
  if (!r.u8(format) || format != kTxRecordFormat || !r.u64(id) || !r.u8(app) ||
      !r.bytes(op, limits::op_bytes_max) || !r.at_end()) {
    return corruption("tx record: malformed");
  }
  TxId tx_id(id);
  if (tx_id.offset() == 0) return corruption("tx record: offset 0");
  return TxMsg{tx_id, static_cast<AppId>(app), std::string(op)};
}

Node::Node(NodeConfig config, Sequencer& sequencer) : config_(config), sequencer_(sequencer) {
  if (config_.result_table_txs_per_range_max == 0) {
    config_.result_table_txs_per_range_max = limits::result_table_txs_per_range_max;
  }
  if (config_.result_table_bytes_per_range_max == 0) {
    config_.result_table_bytes_per_range_max = limits::result_table_bytes_per_range_max;
  }
  if (config_.held_txs_per_range_max == 0) {
    config_.held_txs_per_range_max = 2 * limits::gateway_inflight_txs_max;
  }
}

void Node::register_app(AppId app, StateMachine& machine) {
  MAROON_ASSERT(app != AppId::kSystem);
  MAROON_ASSERT(apps_[static_cast<uint8_t>(app)] == nullptr);
  apps_[static_cast<uint8_t>(app)] = &machine;
}

Status Node::replay(RecordType type, std::string_view payload) {
  MAROON_ASSERT(replaying_);
  switch (type) {
    case RecordType::kTx: {
      Result<TxMsg> tx = decode_tx_record(payload);
      if (!tx) return tx.status();
      auto it = ranges_.find(tx->id.range());
      if (it == ranges_.end()) {
        return corruption(fmt::format("tx record for range {} that was never leased",
                                      tx->id.range().value()));
      }
      RangeState& range = it->second;
      if (tx->id.offset() <= range.applied || range.held.contains(tx->id.offset())) {
        return corruption(fmt::format("tx {} recorded twice", tx->id.raw()));
      }
      if (range.held.beyond(tx->id.offset())) {
        return corruption(fmt::format("tx {} is beyond the held window", tx->id.raw()));
      }
      if (apps_[static_cast<uint8_t>(tx->app)] == nullptr) {
        return corruption(fmt::format("tx {} names unknown app {}", tx->id.raw(),
                                      static_cast<int>(tx->app)));
      }
      hold(range, tx->id, tx->app, std::move(tx->op), /*durable=*/true);
      advance_durable(range);
      return Status::ok();
    }
    case RecordType::kLegacyEpoch:
    case RecordType::kVrLog:
    case RecordType::kVrCheckpoint:
    case RecordType::kVrState: {
      if (Status s = sequencer_.replay(type, payload); !s) return s;
      for (Epoch& epoch : sequencer_.take_committed()) {
        if (epoch.logical_time_ms < applied_time_ms_) {
          return corruption(fmt::format("epoch {} goes back in logical time", epoch.number.value()));
        }
        // An epoch only names txs that were durable before it was proposed,
        // so their records precede it in the WAL.
        for (const Interval& i : epoch.intervals) {
          auto it = ranges_.find(i.range);
          if (it == ranges_.end() || i.first != it->second.applied + 1 ||
              i.last > it->second.durable) {
            return corruption(fmt::format("epoch {} orders txs {}:{}..{} not held before it",
                                          epoch.number.value(), i.range.value(), i.first,
                                          i.last));
          }
          it->second.ordered = i.last;
        }
        apply_epoch(epoch, /*replaying=*/true);
      }
      return Status::ok();
    }
  }
  return corruption(fmt::format("unknown record type {}", static_cast<int>(type)));
}

void Node::finish_replay() {
  MAROON_ASSERT(replaying_);
  replaying_ = false;
  proposed_time_ms_ = applied_time_ms_;
  sequencer_.start(out_);
  if (config_.gateways_in_process) {
    for (auto& [id, range] : ranges_) range.results.clear();
  }
  // Txs durable before the crash but never ordered are ordered now; their
  // gateway is gone, so their results go nowhere, but no id is ever reused.
  propose_epochs();
}

void Node::hold(RangeState& range, TxId id, AppId app, std::string op, bool durable) {
  MAROON_ASSERT(id.offset() > range.applied);
  range.held.insert(id.offset(), app, std::move(op), durable);
  held_txs_++;
  while (range.held.contains(range.written + 1)) range.written++;
}

uint64_t Node::orderable(const RangeState& range) const {
  // k = 1: what this node holds durably may be ordered, or with
  // order_unsynced_txs what it has written ahead of the epoch in the same log.
  return config_.order_unsynced_txs ? range.written : range.durable;
}

void Node::advance_durable(RangeState& range) {
  while (true) {
    Held* h = range.held.find(range.durable + 1);
    if (h == nullptr || !h->durable) break;
    range.durable++;
  }
  check_invariants(range);
}

void Node::on_tx(GatewayId from, TxMsg msg) {
  MAROON_ASSERT(!replaying_);
  auto it = ranges_.find(msg.id.range());
  if (it == ranges_.end() || it->second.owner != from || msg.id.offset() == 0 ||
      apps_[static_cast<uint8_t>(msg.app)] == nullptr || msg.op.size() > limits::op_bytes_max ||
      it->second.held.beyond(msg.id.offset())) {
    counters_.txs_rejected++;
    return;
  }
  RangeState& range = it->second;
  const uint64_t offset = msg.id.offset();
  if (offset <= range.applied) {
    // Executed already: answer with the first result, never execute again.
    counters_.txs_duplicate++;
    std::optional<std::string_view> reply = range.results.find(offset);
    send(from, TxResult{msg.id, reply ? std::string(*reply) : std::string(), !reply},
         /*after_persist=*/false);
    return;
  }
  if (Held* held = range.held.find(offset)) {
    // The first payload wins; a durable copy is acknowledged again.
    counters_.txs_duplicate++;
    if (held->durable) send(from, TxAck{msg.id}, /*after_persist=*/false);
    return;
  }
  counters_.txs_received++;
  std::string payload;
  payload.reserve(msg.op.size() + 16);
  encode_tx_record(msg, payload);
  uint64_t seq = out_.add_record(RecordType::kTx, std::move(payload));
  pending_durable_.emplace_back(seq, msg.id);
  hold(range, msg.id, msg.app, std::move(msg.op), /*durable=*/false);
  send(from, TxAck{msg.id}, /*after_persist=*/true);
}

void Node::on_lease_request(const LeaseRequest& request) {
  MAROON_ASSERT(!replaying_);
  if (lease_requests_.size() >= config_.lease_requests_queued_max) return;  // it retries
  for (const LeaseRequest& queued : lease_requests_) {
    if (queued.gateway == request.gateway && queued.after == request.after) return;
  }
  lease_requests_.push_back(request);
  propose_epochs();
}

void Node::on_persisted(uint64_t durable_seq) {
  MAROON_ASSERT(!replaying_);
  MAROON_ASSERT(durable_seq >= durable_seq_);
  MAROON_ASSERT(durable_seq < out_.next_seq());
  durable_seq_ = durable_seq;
  while (!pending_durable_.empty() && pending_durable_.front().first <= durable_seq) {
    TxId id = pending_durable_.front().second;
    pending_durable_.pop_front();
    RangeState& range = ranges_.at(id.range());
    Held* held = range.held.find(id.offset());
    MAROON_ASSERT(held != nullptr);
    held->durable = true;
    if (id.offset() == range.durable + 1) advance_durable(range);
  }
  sequencer_.on_persisted(durable_seq, out_);
  apply_committed();
  propose_epochs();
}

void Node::on_flush() {
  MAROON_ASSERT(!replaying_);
  propose_epochs();
}

void Node::tick(uint64_t now_ms) {
  now_ms_ = std::max(now_ms_, now_ms);
  if (replaying_) return;
  sequencer_.tick(out_);
  apply_committed();
  propose_epochs();
}

void Node::propose_epochs() {
  if (replaying_) return;
  while (sequencer_.can_propose()) {
    Epoch epoch;
    epoch.number = sequencer_.last_proposed().next();
    // Logical time never goes backwards, whatever the clock does.
    epoch.logical_time_ms = std::max(proposed_time_ms_, now_ms_);
    uint64_t budget = limits::epoch_txs_max;
    for (auto& [id, range] : ranges_) {
      if (budget == 0 || epoch.intervals.size() == limits::epoch_intervals_max) break;
      uint64_t limit = orderable(range);
      if (limit <= range.ordered) continue;
      uint64_t last = std::min(limit, range.ordered + budget);
      epoch.intervals.push_back(Interval{id, range.ordered + 1, last});
      budget -= last - range.ordered;
    }
    while (!lease_requests_.empty() && epoch.system_ops.size() < kEpochSystemOpsMax) {
      const LeaseRequest& r = lease_requests_.front();
      epoch.system_ops.push_back(LeaseRange{r.gateway, r.after});
      lease_requests_.pop_front();
    }
    if (epoch.intervals.empty() && epoch.system_ops.empty()) return;
    for (const Interval& i : epoch.intervals) ranges_.at(i.range).ordered = i.last;
    proposed_time_ms_ = epoch.logical_time_ms;
    counters_.epochs_proposed++;
    sequencer_.propose(std::move(epoch), out_);
  }
}

void Node::apply_committed() {
  for (Epoch& epoch : sequencer_.take_committed()) apply_epoch(epoch, /*replaying=*/false);
}

void Node::apply_epoch(const Epoch& epoch, bool replaying) {
  // Committed epochs apply strictly in order, each exactly once.
  MAROON_ASSERT(epoch.number == applied_epoch_.next());
  MAROON_ASSERT(epoch.logical_time_ms >= applied_time_ms_);
  for (const Interval& interval : epoch.intervals) {
    RangeState& range = ranges_.at(interval.range);
    MAROON_ASSERT(interval.first == range.applied + 1);
    MAROON_ASSERT(interval.last <= range.ordered);
    for (uint64_t offset = interval.first; offset <= interval.last; offset++) {
      MAROON_ASSERT(range.held.base() == offset);
      MAROON_ASSERT_MSG(range.held.contains(offset), "a committed tx is not held locally");
      Held held = range.held.take_front();
      MAROON_ASSERT_MSG(held.durable, "a committed tx is not durable");
      TxId id = TxId::make(interval.range, offset);
      StateMachine* app = apps_[static_cast<uint8_t>(held.app)];
      MAROON_ASSERT(app != nullptr);
      TxContext ctx{.tx_id = id, .epoch = epoch.number, .logical_time_ms = epoch.logical_time_ms};
      std::string reply = app->apply(ctx, held.op);
      held_txs_--;
      range.applied = offset;
      counters_.txs_applied++;
      if (!replaying) send(range.owner, TxResult{id, reply, false}, /*after_persist=*/false);
      range.results.push(offset, std::move(reply));
    }
    check_invariants(range);
  }
  for (const SystemOp& op : epoch.system_ops) {
    const auto& lease = std::get<LeaseRange>(op);
    RangeId& newest = newest_range_[lease.gateway];
    if (newest == lease.after) {
      // Deterministic: every replica grants the same range to the same request.
      newest = next_range_;
      next_range_ = next_range_.next();
      ranges_.try_emplace(newest, lease.gateway, config_);
    }
    if (!replaying) send(lease.gateway, LeaseGranted{lease.gateway, newest}, false);
  }
  applied_epoch_ = epoch.number;
  applied_time_ms_ = epoch.logical_time_ms;
  counters_.epochs_applied++;
}

void Node::send(GatewayId to, NodeToGateway msg, bool after_persist) {
  MAROON_ASSERT(!replaying_);
  (after_persist ? out_.send_after_persist : out_.send_now).push_back({to, std::move(msg)});
}

Output Node::take_output() {
  uint64_t next = out_.next_seq();
  Output taken = std::exchange(out_, Output{});
  out_.first_seq = next;
  // Sized like the last one: under load outputs are alike, and growing the
  // vectors one push at a time shows up in profiles.
  out_.persist.reserve(taken.persist.size());
  out_.send_now.reserve(taken.send_now.size());
  out_.send_after_persist.reserve(taken.send_after_persist.size());
  return taken;
}

uint64_t Node::state_hash() const {
  uint64_t h = 0;
  for (size_t i = 0; i < apps_.size(); i++) {
    if (apps_[i] != nullptr) h = h * 0x100000001b3ULL ^ apps_[i]->state_hash();
  }
  return h;
}

RangeId Node::newest_range(GatewayId gateway) const {
  auto it = newest_range_.find(gateway);
  return it == newest_range_.end() ? RangeId(0) : it->second;
}

void Node::check_invariants(const RangeState& range) const {
  MAROON_ASSERT(range.applied <= range.ordered);
  MAROON_ASSERT(range.ordered <= orderable(range));
  MAROON_ASSERT(range.durable <= range.written);
  MAROON_ASSERT(range.results.size() == 0 || range.results.last_offset() <= range.applied);
}

}  // namespace maroon
