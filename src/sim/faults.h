// Process and disk faults both simulators inject: crashes (with part of the
// write in flight kept, maybe torn), restarts, process pauses, and each
// process's own clock (a skewed tick period; after a pause, every tick it
// missed is run at once, as the real drivers' TickClock does). The
// simulators decide whom a fault strikes; this file is how it strikes.
// docs/simulator.md, "Layout".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/tick_clock.h"
#include "host/durability_order.h"
#include "sim/world.h"
#include "storage/data_dir.h"
#include "storage/fault_env.h"

namespace maroon::sim {

// How a seed's processes and their disks behave and fail.
struct ProcessFaults {
  int64_t disk_min_us = 50;
  int64_t disk_max_us = 1000;  // a write's latency, uniform in between
  int64_t crash_every_us = 0;  // mean time between crashes; 0: none
  int64_t restart_min_us = 100'000;
  int64_t restart_max_us = 2'000'000;
  int64_t tick_us = 10'000;
  double tick_skew = 0;  // each process's tick period within tick_us * (1 ± skew)
  // Process pauses (SIGSTOP, a VM pause): mean time between them (0: none)
  // and the longest. A paused process handles nothing; it wakes with every
  // tick it missed run at once, as the real drivers do.
  int64_t pause_every_us = 0;
  int64_t pause_max_us = 500'000;

  // Swarm testing: crashes and pauses are left out in some seeds.
  static ProcessFaults random(Prng& p, int64_t crash_every_min_us);
  std::string describe() const;
  // A process's tick period, skewed.
  int64_t skewed_tick_us(World& world) const;
};

struct FaultCounters {
  uint64_t crashes = 0;
  uint64_t partial_writes = 0;  // crashes that kept part of a write in flight
  uint64_t pauses = 0;
};

// When faults happen: the safety phase has them, the liveness phase none.
class FaultSchedule {
 public:
  explicit FaultSchedule(World& world) : world_(world) {}

  bool on() const { return on_; }
  void stop() { on_ = false; }
  // Runs `fault` at exponentially distributed intervals of mean mean_us
  // (never, if 0) for as long as faults are on.
  void every(int64_t mean_us, std::function<void()> fault);

  FaultCounters& counters() { return counters_; }
  const FaultCounters& counters() const { return counters_; }

 private:
  World& world_;
  bool on_ = true;
  FaultCounters counters_;
};

// A process's clock: its tick period (skewed per process), whether it is
// paused (SIGSTOP, a VM pause, a stalled loop: it runs nothing), and the
// ticks due by its monotonic clock (TickClock, as the real drivers).
class ProcessClock {
 public:
  explicit ProcessClock(int64_t tick_us);

  int64_t tick_us() const { return tick_us_; }
  // A new incarnation: ticks count from now; it is not paused.
  void restart(int64_t now_us);
  void pause_until(int64_t until_us) { paused_until_ = until_us; }
  bool paused(int64_t now_us) const { return now_us < paused_until_; }
  int64_t paused_until() const { return paused_until_; }  // 0: never paused
  uint64_t due(int64_t now_us);

 private:
  int64_t tick_us_;
  int64_t paused_until_ = 0;
  std::optional<TickClock> ticks_;
};

// A process's disk: the real DataDir on a FaultEnv that outlives the
// process's crashes, one write in flight at a time.
struct Disk {
  std::unique_ptr<FaultEnv> env = std::make_unique<FaultEnv>();
  std::unique_ptr<DataDir> dir;
  std::optional<host::PendingWrite> in_flight;
  bool crash_in_next_write = false;  // a crash waits for the next write to start
};

// What a simulator keeps for each of its processes (a replica, a node, a
// gateway) besides its cores: whether it runs, which incarnation, its
// clock. Events scheduled for an incarnation check it is still the running
// one (running()), so a crash voids them.
struct Process {
  bool up = false;
  uint64_t incarnation = 0;
  ProcessClock clock{1};

  // Up, as a new incarnation: ticks count from now, not paused.
  void start(int64_t now_us);
  // Down: this incarnation's events are void.
  void stop();
  bool running(uint64_t incarnation_now) const { return up && incarnation == incarnation_now; }
};

// Runs `due` ticks of the process (it is running when called).
using RunTicks = std::function<void(uint64_t due)>;

// Ticks the process every tick_us until this incarnation ends (or the run
// fails). A paused process ticks nothing; when it wakes it runs every tick
// its clock says it missed. `process` must stay where it is.
void start_ticks(World& world, Process& process, RunTicks run);

// Pauses a running process for 10 ms up to options.pause_max_us; traces it as
// `name` and counts it.
void pause_process(World& world, FaultSchedule& faults, ProcessClock& clock,
                   const ProcessFaults& options, const std::string& name);

// Writes steps, returning how many became durable (fails the run on an error).
using WriteDurable = std::function<size_t(std::vector<WriteStep>& steps)>;

// Puts `write` in flight on the process's disk. After a latency in
// [disk_min_us, disk_max_us] `complete` gets it back to write it, if this
// incarnation still runs (and the run has not failed); a paused process gets
// it when it wakes. A crash armed for this write (while faults are on) runs
// `crash` at a random time before, if this incarnation still runs.
// `process` and `disk` must stay where they are.
void start_write(World& world, const FaultSchedule& faults, const ProcessFaults& options,
                 Process& process, Disk& disk, host::PendingWrite write,
                 std::function<void(host::PendingWrite)> complete, std::function<void()> crash);

// Arms a crash for the process's next write instead of now, with
// probability p, if no write is in flight; returns whether it did.
bool arm_crash_in_next_write(World& world, Disk& disk, double p);

struct CrashedWrite {
  size_t kept = 0;    // whole steps of the write in flight that reached the disk
  bool torn = false;  // and the torn sectors of the next
  bool kill_only = false;  // the machine ran on: its page cache survived
};

// The disk side of a crash. With keep_part and a write in flight, a random
// number of its whole steps reach the disk (through `write`), then maybe
// the torn sectors of the next (its sync never returned): none of it was
// reported durable, so keeping it is as legal as losing it. Then everything
// not durable is lost. The disk's dir and write are closed.
//
// With kill_only the process dies but the machine runs on (kill -9): nothing
// is lost, the page cache keeps what was written and not synced (and, with
// the disk's Linux failed-fsync semantics, pages a failed sync marked clean
// without writing them), and the restart's recovery must make what it reads
// durable first (docs/formats/wal.md, "Recovery", step 0).
CrashedWrite crash_disk(World& world, FaultSchedule& faults, Disk& disk, bool keep_part,
                        const WriteDurable& write, bool kill_only = false);

// Removes the end of a stopped process's log in `wal_dir`, synced records
// and all, as a faulty disk or an operator's mistake may: the last segment,
// or (half the time, and always when there is one) every segment (a lost
// beginning alone is refused at start: it needs a snapshot from a peer).
// Returns what it removed, e.g. "wal-00000003.log (1 of 3 segments)", or
// nothing if there was no segment; a removal that fails fails the world.
std::optional<std::string> lose_log_end(World& world, Env& env, const std::string& wal_dir);

}  // namespace maroon::sim
