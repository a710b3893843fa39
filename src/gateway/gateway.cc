#include "gateway/gateway.h"

#include <utility>

#include "common/limits.h"

namespace maroon {

Gateway::Gateway(GatewayConfig config) : config_(config) {
  if (config_.inflight_txs_max == 0) config_.inflight_txs_max = limits::gateway_inflight_txs_max;
  MAROON_ASSERT(config_.acks_needed >= 1);
  MAROON_ASSERT(config_.offsets_per_range_max >= 1 && config_.offsets_per_range_max <= kOffsetMax);
  MAROON_ASSERT(config_.retry_ticks >= 1);
  request_lease();
}

bool Gateway::ready() const {
  return range_.value() != 0 && next_offset_ <= config_.offsets_per_range_max;
}

Result<TxId> Gateway::submit(AppId app, std::string op, uint64_t token) {
  if (!ready()) {
    request_lease();
    return unavailable("the gateway is leasing a range of tx ids; retry shortly");
  }
  if (inflight_.size() >= config_.inflight_txs_max) {
    return overloaded("too many requests in flight; retry shortly");
  }
  TxId id = TxId::make(range_, next_offset_++);
  // Lease the next range before this one runs out.
  if (next_offset_ > config_.offsets_per_range_max) request_lease();
  out_.to_nodes.push_back(TxMsg{id, app, op});
  auto [it, inserted] =
      inflight_.try_emplace(id, Inflight{token, app, std::move(op), 0, now_ticks_});
  MAROON_ASSERT(inserted);
  return id;
}

void Gateway::on_message(const NodeToGateway& msg) {
  if (const auto* ack = std::get_if<TxAck>(&msg)) {
    auto it = inflight_.find(ack->id);
    if (it != inflight_.end()) it->second.acks++;
  } else if (const auto* result = std::get_if<TxResult>(&msg)) {
    // Several nodes answer; the first result wins and later ones are dropped.
    auto it = inflight_.find(result->id);
    if (it == inflight_.end()) return;
    out_.deliveries.push_back(Delivery{it->second.token, result->id, result->reply, result->expired});
    inflight_.erase(it);
  } else if (const auto* lease = std::get_if<LeaseGranted>(&msg)) {
    if (lease->gateway != config_.id || !(range_ < lease->range)) return;
    range_ = lease->range;
    next_offset_ = 1;
    lease_requested_ = false;
  }
}

void Gateway::tick() {
  now_ticks_++;
  if (lease_requested_ && now_ticks_ - lease_requested_tick_ >= config_.lease_retry_ticks) {
    lease_requested_ = false;
    request_lease();
  }
  for (auto& [id, tx] : inflight_) {
    if (tx.acks < config_.acks_needed && now_ticks_ - tx.sent_tick >= config_.retry_ticks) {
      tx.sent_tick = now_ticks_;
      out_.to_nodes.push_back(TxMsg{id, tx.app, tx.op});
    }
  }
}

void Gateway::request_lease() {
  if (lease_requested_) return;
  lease_requested_ = true;
  lease_requested_tick_ = now_ticks_;
  out_.to_nodes.push_back(LeaseRequest{config_.id, range_});
}

GatewayOutput Gateway::take_output() { return std::exchange(out_, GatewayOutput{}); }

}  // namespace maroon
