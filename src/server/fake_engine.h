// An Engine for front-end tests: executes ops directly on a KvApp. With
// `defer_writes`, write replies are held until complete_writes(), which lets
// tests check pipelining order and in-flight limits.
#pragma once

#include <deque>
#include <string>
#include <utility>

#include "app/kv/kv_app.h"
#include "common/unknown_app.h"
#include "server/engine.h"

namespace maroon::server {

class FakeEngine final : public Engine {
 public:
  void submit(AppId app, std::string op, ReplyFn done) override {
    submitted++;
    if (app != AppId::kKv) {
      done(unknown_app(app), {});
      return;
    }
    if (refuse_writes) {
      done(refusal, {});
      return;
    }
    pending_.emplace_back(std::move(op), std::move(done));
    if (!defer_writes) complete_writes();
  }
  Result<std::string> read(AppId app, std::string_view op) override {
    if (app != AppId::kKv) return unknown_app(app);
    return app_.read(op);
  }
  const AppRegistry& apps() const override { return apps_; }
  EngineStatus status() const override {
    EngineStatus s;
    s.serving = true;
    s.quorum = quorum;
    s.unavailable_reason = unavailable_reason;
    s.applied_txs = next_tx_;
    s.state_hash = app_.state_hash();
    return s;
  }
  Registry& metrics() override { return registry_; }

  void complete_writes() {
    while (!pending_.empty()) {
      auto [op, done] = std::move(pending_.front());
      pending_.pop_front();
      TxContext ctx{.tx_id = TxId::make(RangeId(1), ++next_tx_).raw(), .epoch = next_tx_};
      std::string reply = app_.apply(ctx, op);
      done(Status::ok(), reply);
    }
  }
  size_t pending() const { return pending_.size(); }
  kv::KvApp& app() { return app_; }

  bool defer_writes = false;
  bool refuse_writes = false;
  Status refusal = unavailable("writes refused by test");  // with refuse_writes
  bool quorum = true;
  std::string unavailable_reason;
  uint64_t submitted = 0;

 private:
  kv::KvApp app_;
  AppRegistry apps_ = builtin_apps();
  std::deque<std::pair<std::string, ReplyFn>> pending_;
  uint64_t next_tx_ = 0;
  Registry registry_;
};

}  // namespace maroon::server
