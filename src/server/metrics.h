// A small metrics registry rendered in the Prometheus text format (0.0.4).
// Counters and gauges are atomics so the WAL thread may update them; every
// metric is registered once at startup and lives as long as the registry.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <string>

namespace maroon::server {

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Latency histogram in microseconds with fixed, exponential buckets.
class Histogram {
 public:
  static constexpr std::array<uint64_t, 16> kBoundsUs = {
      50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000,
      1000000, 2000000, 5000000};
  void observe_us(uint64_t us);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t sum_us() const { return sum_us_.load(std::memory_order_relaxed); }
  uint64_t bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBoundsUs.size()> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_us_{0};
};

class Registry {
 public:
  Counter& counter(std::string name, std::string help);
  // One counter of a family that shares `name` and `help`, told apart by
  // `labels` in the Prometheus text syntax, e.g. port="resp".
  Counter& counter(std::string name, std::string help, std::string labels);
  Gauge& gauge(std::string name, std::string help);
  // Rendered with the unit "seconds" as Prometheus expects.
  Histogram& histogram(std::string name, std::string help);
  std::string render() const;

 private:
  template <typename T>
  struct Entry {
    std::string name, help;
    T metric;
    std::string labels;  // empty: none
  };
  // deque: stable addresses for the references handed out.
  std::deque<Entry<Counter>> counters_;
  std::deque<Entry<Gauge>> gauges_;
  std::deque<Entry<Histogram>> histograms_;
};

}  // namespace maroon::server
