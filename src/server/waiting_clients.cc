#include "server/waiting_clients.h"

namespace maroon::server {

uint64_t WaitingClients::add(ReplyFn done) {
  MAROON_ASSERT(done);
  uint64_t token;
  if (free_.empty()) {
    token = slots_.size();
    slots_.emplace_back();
  } else {
    token = free_.back();
    free_.pop_back();
  }
  slots_[token] = Waiting{std::move(done), std::chrono::steady_clock::now()};
  count_++;
  return token;
}

WaitingClients::Waiting WaitingClients::take(uint64_t token) {
  MAROON_ASSERT(token < slots_.size() && slots_[token].done);
  Waiting w = std::move(slots_[token]);
  slots_[token].done = nullptr;
  free_.push_back(token);
  count_--;
  return w;
}

void WaitingClients::refuse(uint64_t token, const Status& status) {
  MAROON_ASSERT(!status.is_ok());
  if (status.code() == Code::kNoQuorum) no_quorum_refused_++;
  take(token).done(status, {});
}

void WaitingClients::deliver(Delivery& d, std::chrono::steady_clock::time_point now,
                             Histogram& latency) {
  Waiting w = take(d.token);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now - w.submitted);
  latency.observe_us(static_cast<uint64_t>(micros.count()));
  if (d.timed_out) {
    timed_out_++;
    w.done(outcome_unknown(std::move(d.error)), {});
  } else if (d.expired) {
    w.done(unavailable("the tx was executed, but its result is no longer kept"), {});
  } else if (d.sealed) {
    w.done(unavailable("not executed: the gateway's range of tx ids was sealed (its lease "
                       "expired before the tx was ordered); retry"),
           {});
  } else {
    w.done(Status::ok(), d.reply);
  }
}

void WaitingClients::fail_all(const Status& status) {
  for (uint64_t token = 0; token < slots_.size(); token++) {
    if (slots_[token].done) take(token).done(status, {});
  }
}

}  // namespace maroon::server
