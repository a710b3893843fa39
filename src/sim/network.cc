#include "sim/network.h"

#include <fmt/format.h>

#include "maroon/assert.h"

namespace maroon::sim {

NetworkOptions NetworkOptions::random(Prng& p, const Bounds& bounds) {
  NetworkOptions o;
  o.loss = p.chance(0.3) ? 0 : static_cast<double>(p.below(bounds.loss_percent_max + 1)) / 100.0;
  o.duplicate = p.chance(0.5) ? 0 : static_cast<double>(p.below(11)) / 100.0;
  o.delay_min_us = static_cast<int64_t>(50 + p.below(500));
  o.delay_max_us =
      o.delay_min_us +
      static_cast<int64_t>(p.below(
          p.chance(bounds.slow_chance) ? static_cast<uint64_t>(bounds.slow_delay_max_us) : 10'000));
  o.partition_every_us =
      p.chance(0.3) ? 0 : bounds.partition_every_min_us + static_cast<int64_t>(p.below(2'000'000));
  o.asymmetric_partitions = p.chance(0.5);
  if (bounds.stale) o.stale = p.chance(0.5) ? 0 : static_cast<double>(1 + p.below(50)) / 1000.0;
  return o;
}

std::string NetworkOptions::describe() const {
  return fmt::format(
      "loss {:.0f}%, dup {:.0f}%, delay {}..{} us, stale {:.1f}%; partitions every {} ms{}",
      loss * 100, duplicate * 100, delay_min_us, delay_max_us, stale * 100,
      partition_every_us / 1000, asymmetric_partitions ? " (some one-way)" : "");
}

Links::Links(World& world, NetworkOptions options) : world_(world), options_(options) {
  MAROON_ASSERT(options_.delay_min_us >= 0 && options_.delay_min_us <= options_.delay_max_us);
  MAROON_ASSERT(options_.stale == 0 || options_.delay_max_us <= options_.stale_delay_max_us);
}

Links::Plan Links::plan(uint64_t from, uint64_t to) {
  counters_.sent++;
  Plan p;
  if (blocked(from, to) || world_.chance(options_.loss)) {
    counters_.dropped++;
    return p;
  }
  p.copies = world_.chance(options_.duplicate) ? 2 : 1;
  if (p.copies > 1) counters_.duplicated++;
  for (size_t i = 0; i < p.copies; i++) {
    p.when[i] = world_.now() + world_.uniform(options_.delay_min_us, options_.delay_max_us);
    if (options_.stale > 0 && world_.chance(options_.stale)) {
      counters_.stale++;
      p.when[i] = world_.now() + world_.uniform(options_.delay_max_us, options_.stale_delay_max_us);
    }
  }
  return p;
}

bool Links::arrives(uint64_t from, uint64_t to, int64_t* hold_until) {
  *hold_until = 0;
  // A partition that began while the message was in flight also stops it.
  if (blocked(from, to)) {
    counters_.dropped++;
    return false;
  }
  if (paused_until_) {
    const int64_t until = paused_until_(to);
    if (until > world_.now()) {
      counters_.held++;
      // A process that wakes reads its sockets in no particular order: what
      // waited is delivered in a shuffled order just after it wakes (and
      // after the ticks it catches up).
      *hold_until = until + world_.uniform(0, 2'000);
    }
  }
  return true;
}

void Links::change_partition(const std::vector<uint64_t>& ends, const NameOf& name) {
  blocked_.clear();
  if (world_.chance(0.4)) {
    world_.trace("partition healed");
    return;
  }
  if (ends.size() < 2) return;
  std::set<uint64_t> side;
  for (uint64_t e : ends) {
    if (world_.chance(0.5)) side.insert(e);
  }
  const bool one_way = options_.asymmetric_partitions && world_.chance(0.5);
  for (uint64_t a : ends) {
    for (uint64_t b : ends) {
      if (side.contains(a) && !side.contains(b)) {
        blocked_.insert({a, b});
        if (!one_way) blocked_.insert({b, a});
      }
    }
  }
  counters_.partitions++;
  std::string desc;
  for (uint64_t e : side) desc += " " + name(e);
  world_.trace(
      fmt::format("partition{}: {{{} }} vs the rest", one_way ? " (one-way, outbound)" : "", desc));
}

void Links::stop_faults() {
  blocked_.clear();
  options_.loss = 0;
  options_.duplicate = 0;
  options_.stale = 0;
}

}  // namespace maroon::sim
