// The simulated network both simulators send through: every message between
// two addresses (a replica, node, gateway or client; the simulator numbers
// them) is, on its own,
//   - lost with probability `loss`, or dropped at once if a partition blocks
//     its link;
//   - duplicated with probability `duplicate`, each copy delayed on its own;
//   - delayed uniformly in [delay_min_us, delay_max_us], so messages reorder;
//   - with probability `stale`, delayed long instead (up to
//     stale_delay_max_us): it may arrive after its sender crashed, restarted
//     and moved on;
//   - dropped on arrival if a partition that began meanwhile blocks its link;
//   - held while its destination is paused, and delivered when it wakes (it
//     waits in the stopped process's socket buffer).
// A partition is a set of blocked links, replaced by change_partition().
// stop_faults() begins the liveness phase: partitions heal and loss,
// duplication and stale delays end; delays go on.
//
// The network moves a message type of the simulator's choosing: the VR
// simulator moves the bytes of the real codecs, the cluster simulator its
// message variant (a share of it through the frame codecs first).
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sim/world.h"

namespace maroon::sim {

struct NetworkOptions {
  int64_t delay_min_us = 100;
  int64_t delay_max_us = 2000;  // uniform in between: messages reorder
  double loss = 0;              // probability a message is lost
  double duplicate = 0;         // probability a message is delivered twice
  double stale = 0;             // probability a message is delayed long
  int64_t stale_delay_max_us = 3'000'000;
  int64_t partition_every_us = 0;      // mean time between partition changes; 0: none
  bool asymmetric_partitions = false;  // some partitions block one way only

  // Swarm testing: what each simulator lets a seed draw.
  struct Bounds {
    uint64_t loss_percent_max = 30;
    double slow_chance = 0.2;  // seeds whose delays reach slow_delay_max_us
    int64_t slow_delay_max_us = 200'000;
    int64_t partition_every_min_us = 200'000;
    bool stale = true;  // seeds may delay messages long
  };
  // Each fault is left out entirely in some seeds.
  static NetworkOptions random(Prng& p, const Bounds& bounds);
  std::string describe() const;
};

struct NetworkCounters {
  uint64_t sent = 0;
  uint64_t dropped = 0;  // lost, or blocked by a partition (when sent or on arrival)
  uint64_t duplicated = 0;
  uint64_t stale = 0;       // copies delayed long
  uint64_t held = 0;        // arrivals that waited for their paused destination
  uint64_t partitions = 0;  // partitions begun (not heals)
};

// What every network does, whatever it moves.
class Links {
 public:
  using NameOf = std::function<std::string(uint64_t address)>;
  // When a process at `address` wakes, if it is paused now (0 or the past:
  // it is not).
  using PausedUntil = std::function<int64_t(uint64_t address)>;

  static constexpr size_t kCopiesMax = 2;

  Links(World& world, NetworkOptions options);

  bool blocked(uint64_t from, uint64_t to) const { return blocked_.contains({from, to}); }
  // Heals, with probability 0.4; otherwise puts each of `ends` on one side
  // with probability 1/2 and blocks the links between the sides: both ways,
  // or with asymmetric_partitions, half the time only the chosen side's
  // outbound links.
  void change_partition(const std::vector<uint64_t>& ends, const NameOf& name);
  void stop_faults();
  void set_paused_until(PausedUntil paused_until) { paused_until_ = std::move(paused_until); }
  const NetworkCounters& counters() const { return counters_; }
  const NetworkOptions& options() const { return options_; }

 protected:
  struct Plan {
    size_t copies = 0;
    int64_t when[kCopiesMax] = {};
  };
  // The fate of one message sent now: its arrival times (none: lost).
  Plan plan(uint64_t from, uint64_t to);
  // On arrival: false if dropped; *hold_until > 0 if it must wait.
  bool arrives(uint64_t from, uint64_t to, int64_t* hold_until);

  World& world_;
  NetworkCounters counters_;

 private:
  NetworkOptions options_;
  std::set<std::pair<uint64_t, uint64_t>> blocked_;
  PausedUntil paused_until_;
};

template <typename Msg>
class Network final : public Links {
 public:
  using Deliver = std::function<void(uint64_t from, uint64_t to, const Msg& msg)>;

  Network(World& world, NetworkOptions options, Deliver deliver)
      : Links(world, options), deliver_(std::move(deliver)) {}

  void send(uint64_t from, uint64_t to, Msg msg) {
    const Plan p = plan(from, to);
    for (size_t i = 0; i < p.copies; i++) {
      if (i + 1 < p.copies) {
        world_.at(p.when[i], [this, from, to, msg] { arrive(from, to, msg); });
      } else {
        world_.at(p.when[i], [this, from, to, msg = std::move(msg)] { arrive(from, to, msg); });
      }
    }
  }

 private:
  void arrive(uint64_t from, uint64_t to, const Msg& msg) {
    int64_t hold_until = 0;
    if (!arrives(from, to, &hold_until)) return;
    if (hold_until > 0) {
      world_.at(hold_until, [this, from, to, msg] { arrive(from, to, msg); });
      return;
    }
    deliver_(from, to, msg);
  }

  Deliver deliver_;
};

}  // namespace maroon::sim
