// For tests: a server over an engine on its own event-loop thread. Anything
// that touches the server or the engine runs on that thread via on_loop().
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <future>
#include <thread>
#include <utility>

#include "maroon/assert.h"
#include "maroon/status.h"
#include "server/client_resources.h"
#include "server/client_security.h"

namespace maroon::server {

template <typename Server, typename EngineT>
class LoopHarness {
 public:
  explicit LoopHarness(ClientLimits limits = {}, ClientSecurity security = {})
      : resources_(limits, &engine_.metrics()),
        server_(io_, engine_, "127.0.0.1", 0, resources_, std::move(security)) {
    Status s = server_.start();
    MAROON_ASSERT_MSG(s.is_ok(), s.to_string().c_str());
    thread_ = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io_);
      io_.run();
    });
  }
  LoopHarness(const LoopHarness&) = delete;
  LoopHarness& operator=(const LoopHarness&) = delete;
  ~LoopHarness() {
    on_loop([this] { server_.stop(); });
    io_.stop();
    thread_.join();
  }

  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

  // Waits until pred() (run on the loop) holds, up to a deadline.
  template <typename F>
  bool wait_until(F pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!on_loop(pred)) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  uint16_t port() const { return server_.port(); }
  EngineT& engine() { return engine_; }
  Server& server() { return server_; }
  // Read on the loop thread (on_loop).
  ClientResources& resources() { return resources_; }

 private:
  boost::asio::io_context io_;
  EngineT engine_;
  ClientResources resources_;
  Server server_;
  std::thread thread_;
};

}  // namespace maroon::server
