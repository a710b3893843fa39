#include "server/metrics.h"

#include <fmt/format.h>

#include <set>
#include <string_view>

namespace maroon::server {

void Histogram::observe_us(uint64_t us) {
  for (size_t i = 0; i < kBoundsUs.size(); i++) {
    if (us <= kBoundsUs[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

Counter& Registry::counter(std::string name, std::string help) {
  return counters_.emplace_back(std::move(name), std::move(help)).metric;
}
Counter& Registry::counter(std::string name, std::string help, std::string labels) {
  auto& e = counters_.emplace_back(std::move(name), std::move(help));
  e.labels = std::move(labels);
  return e.metric;
}
Gauge& Registry::gauge(std::string name, std::string help) {
  return gauges_.emplace_back(std::move(name), std::move(help)).metric;
}
Histogram& Registry::histogram(std::string name, std::string help) {
  return histograms_.emplace_back(std::move(name), std::move(help)).metric;
}

std::string Registry::render() const {
  std::string out;
  // A family's samples follow its one HELP and TYPE, wherever they were registered.
  std::set<std::string_view> families;
  for (const auto& c : counters_) {
    if (!families.insert(c.name).second) continue;
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n", c.name, c.help);
    for (const auto& m : counters_) {
      if (m.name != c.name) continue;
      if (m.labels.empty()) {
        out += fmt::format("{} {}\n", m.name, m.metric.value());
      } else {
        out += fmt::format("{}{{{}}} {}\n", m.name, m.labels, m.metric.value());
      }
    }
  }
  for (const auto& g : gauges_) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", g.name, g.help,
                       g.metric.value());
  }
  for (const auto& h : histograms_) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", h.name, h.help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < Histogram::kBoundsUs.size(); i++) {
      cumulative += h.metric.bucket(i);
      out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", h.name,
                         static_cast<double>(Histogram::kBoundsUs[i]) / 1e6, cumulative);
    }
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", h.name, h.metric.count());
    out += fmt::format("{}_sum {}\n{}_count {}\n", h.name,
                       static_cast<double>(h.metric.sum_us()) / 1e6, h.name, h.metric.count());
  }
  return out;
}

}  // namespace maroon::server
