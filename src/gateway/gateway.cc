#include "common/unknown_app.h"
#include "gateway/gateway.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <utility>

#include <fmt/format.h>

#include "maroon/limits.h"

namespace maroon {

Gateway::Gateway(GatewayConfig config) : config_(config) {
  if (config_.inflight_txs_max == 0) config_.inflight_txs_max = limits::gateway_inflight_txs_max;
  if (config_.inflight_bytes_max == 0) config_.inflight_bytes_max = limits::gateway_inflight_bytes_max;
  MAROON_ASSERT(config_.inflight_bytes_max >= limits::op_bytes_max);
  MAROON_ASSERT(config_.acks_needed >= 1);
  MAROON_ASSERT(config_.offsets_per_range_max >= 1 && config_.offsets_per_range_max <= kOffsetMax);
  MAROON_ASSERT(config_.retry_ticks >= 1);
  if (!config_.members.empty()) {
    member_mask_ = 0;
    for (NodeId id : config_.members) {
      MAROON_ASSERT(id.value() >= 1 && id.value() < 64);
      member_mask_ |= uint64_t{1} << id.value();
    }
    members_config_ = config_.members_config;
  }
  request_lease();
}

bool Gateway::ready() const {
  return range_.value() != 0 && next_offset_ <= config_.offsets_per_range_max;
}

Result<TxId> Gateway::submit(AppId app, std::string op, uint64_t token) {
  if (app == AppId::kSystem ||
      std::find(config_.apps.begin(), config_.apps.end(), app) == config_.apps.end()) {
    return unknown_app(app);
  }
  if (!quorum_) {
    return no_quorum(fmt::format("no quorum; not executed: {}; retry later", no_quorum_reason_));
  }
  if (!ready()) {
    request_lease();
    return unavailable("the gateway is leasing a range of tx ids; retry shortly");
  }
  if (op.size() > limits::op_bytes_max) {
    return too_large(fmt::format("op is {} bytes; the limit is {}", op.size(), limits::op_bytes_max));
  }
  if (inflight_count_ >= config_.inflight_txs_max || inflight_.size() >= 2 * config_.inflight_txs_max ||
      inflight_bytes_ + op.size() > config_.inflight_bytes_max) {
    return overloaded("too many requests in flight; retry shortly");
  }
  TxId id = TxId::make(range_, next_offset_++);
  // Lease the next range before this one runs out.
  if (next_offset_ > config_.offsets_per_range_max) request_lease();
  MAROON_ASSERT(inflight_base_ + inflight_.size() == next_number_);
  const size_t op_bytes = op.size();
  inflight_bytes_ += op_bytes;
  if (config_.retries) {
    out_.to_nodes.push_back(TxMsg{id, app, op});
    next_retry_tick_ = std::min(next_retry_tick_, now_ticks_ + config_.retry_ticks);
    inflight_.push_back(
        Inflight{id, token, app, std::move(op), op_bytes, 0, now_ticks_, now_ticks_, false});
  } else {
    out_.to_nodes.push_back(TxMsg{id, app, std::move(op)});
    inflight_.push_back(
        Inflight{id, token, app, std::string(), op_bytes, 0, now_ticks_, now_ticks_, false});
  }
  next_number_++;
  inflight_count_++;
  return id;
}

void Gateway::on_message(NodeToGateway msg) {
  if (auto* ack = std::get_if<TxAck>(&msg)) {
    // Node ids are 1..63 (cluster config); an ack naming another is not
    // one we can count, and comes from outside our control: drop it.
    if (ack->node.value() >= 64) return;
    if (Inflight* tx = find(ack->id)) {
      tx->ack_mask |= uint64_t{1} << ack->node.value();
      // k nodes hold a timed-out tx: it will be ordered; nobody awaits it.
      if (tx->timed_out && acked(*tx)) finish(*tx);
    }
  } else if (auto* result = std::get_if<TxResult>(&msg)) {
    // Several nodes answer; the first result wins and later ones are dropped.
    Inflight* tx = find(result->id);
    if (tx == nullptr) return;
    answer(*tx, Delivery{tx->token, result->id, std::move(result->reply), result->expired, false});
  } else if (auto* lease = std::get_if<LeaseGranted>(&msg)) {
    if (lease->gateway != config_.id || !(range_ < lease->range)) return;
    range_ = lease->range;
    next_offset_ = 1;
    lease_requested_ = false;
    range_starts_.push_back(RangeStart{range_, next_number_});
  } else {
    const auto& sealed = std::get<RangeSealed>(msg);
    // Txs beyond the seal never execute: tell their clients, who may retry
    // (through any gateway, under a new id).
    for (auto it = range_starts_.begin(); it != range_starts_.end(); ++it) {
      if (it->range != sealed.range) continue;
      for (uint64_t number = std::max(inflight_base_, it->first_number + sealed.last);
           number < inflight_base_ + inflight_.size(); number++) {
        Inflight& tx = inflight_[number - inflight_base_];
        if (tx.id.range() != sealed.range) break;
        if (!tx.answered) answer(tx, Delivery{tx.token, tx.id, {}, false, true});
      }
    }
    if (sealed.range == range_) {
      next_offset_ = config_.offsets_per_range_max + 1;  // not ready until a new range
      request_lease();
    }
  }
}

void Gateway::answer(Inflight& tx, Delivery d) {
  MAROON_ASSERT(!tx.answered);
  // A timed-out tx's client already has its answer ("outcome unknown").
  if (!tx.timed_out) out_.deliveries.push_back(std::move(d));
  finish(tx);
}

void Gateway::finish(Inflight& tx) {
  MAROON_ASSERT(!tx.answered);
  tx.answered = true;
  inflight_bytes_ -= tx.op_bytes;
  tx.op = std::string();
  inflight_count_--;
  while (!inflight_.empty() && inflight_.front().answered) {
    inflight_.pop_front();
    inflight_base_++;
  }
  while (range_starts_.size() > 1 && range_starts_[1].first_number <= inflight_base_) {
    range_starts_.pop_front();
  }
}

void Gateway::set_members(uint64_t config, const std::vector<NodeId>& members) {
  if (config <= members_config_) return;
  MAROON_ASSERT(!members.empty());
  uint64_t mask = 0;
  for (NodeId id : members) {
    MAROON_ASSERT(id.value() >= 1 && id.value() < 64);
    mask |= uint64_t{1} << id.value();
  }
  members_config_ = config;
  member_mask_ = mask;
  config_.acks_needed = static_cast<size_t>(std::popcount(mask)) / 2 + 1;
  // Txs that lost their k acks with the change go out again at the next tick.
  if (config_.retries) next_retry_tick_ = now_ticks_;
}

void Gateway::set_quorum(bool quorum, std::string_view reason) {
  quorum_ = quorum;
  if (quorum) {
    no_quorum_reason_.clear();
  } else {
    no_quorum_reason_ =
        reason.empty() ? std::string_view("the cluster has no working quorum") : reason;
  }
}

std::string Gateway::timeout_message() const {
  const std::string within = config_.tick_ms != 0
                                 ? fmt::format("{} ms", config_.deadline_ticks * config_.tick_ms)
                                 : fmt::format("{} ticks", config_.deadline_ticks);
  if (!quorum_) {
    return fmt::format(
        "outcome unknown (no quorum): no result within {} ({}); the request was sent to the nodes "
        "and may still take effect",
        within, no_quorum_reason_);
  }
  return fmt::format(
      "outcome unknown (timed out): no result within {}; the request was sent to the nodes and "
      "may still take effect",
      within);
}

void Gateway::expire_overdue() {
  // Deadlines follow submission order: only txs from expire_next_ on can be
  // newly overdue, so each tx is visited once.
  expire_next_ = std::max(expire_next_, inflight_base_);
  while (expire_next_ < inflight_base_ + inflight_.size()) {
    Inflight& tx = inflight_[expire_next_ - inflight_base_];
    if (now_ticks_ - tx.submitted_tick < config_.deadline_ticks) break;
    expire_next_++;
    if (tx.answered || tx.timed_out) continue;
    out_.deliveries.push_back(Delivery{tx.token, tx.id, {}, false, false, true, timeout_message()});
    tx.timed_out = true;
    // Already held by k nodes: it will be ordered without more resends.
    if (acked(tx)) finish(tx);
  }
}

void Gateway::tick() {
  now_ticks_++;
  if (config_.deadline_ticks != 0) expire_overdue();
  if (lease_requested_ && now_ticks_ - lease_requested_tick_ >= config_.lease_retry_ticks) {
    lease_requested_ = false;
    request_lease();
  }
  if (config_.renew_ticks != 0 && now_ticks_ >= next_renew_tick_) {
    next_renew_tick_ = now_ticks_ + config_.renew_ticks;
    renew_leases();
  }
  if (!config_.retries || now_ticks_ < next_retry_tick_) return;
  // Retries are rare; the scan runs only when one is due.
  next_retry_tick_ = UINT64_MAX;
  for (Inflight& tx : inflight_) {
    if (tx.answered) continue;
    const uint64_t period = acked(tx) ? config_.result_retry_ticks : config_.retry_ticks;
    if (now_ticks_ - tx.sent_tick >= period) {
      tx.sent_tick = now_ticks_;
      out_.to_nodes.push_back(TxMsg{tx.id, tx.app, tx.op});
    }
    next_retry_tick_ = std::min(next_retry_tick_, tx.sent_tick + period);
  }
}

void Gateway::renew_leases() {
  // The current range, and older ones while they have txs in flight.
  for (const RangeStart& r : range_starts_) {
    out_.to_nodes.push_back(RenewLease{config_.id, r.range});
  }
}

void Gateway::request_lease() {
  if (lease_requested_) return;
  lease_requested_ = true;
  lease_requested_tick_ = now_ticks_;
  out_.to_nodes.push_back(LeaseRequest{config_.id, range_});
}

Gateway::Inflight* Gateway::find(TxId id) {
  for (auto it = range_starts_.rbegin(); it != range_starts_.rend(); ++it) {
    if (it->range != id.range()) continue;
    uint64_t number = it->first_number + id.offset() - 1;
    if (number < inflight_base_ || number - inflight_base_ >= inflight_.size()) return nullptr;
    Inflight& tx = inflight_[number - inflight_base_];
    // A bogus id (an offset this gateway never issued in that range) can map
    // onto a tx of the next range: not ours.
    if (tx.id != id) return nullptr;
    return tx.answered ? nullptr : &tx;
  }
  return nullptr;
}

GatewayOutput Gateway::take_output() { return std::exchange(out_, GatewayOutput{}); }

}  // namespace maroon
