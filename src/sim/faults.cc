#include "sim/faults.h"

#include <fmt/format.h>

#include <algorithm>

#include "maroon/assert.h"
#include "storage/wal_format.h"

namespace maroon::sim {

ProcessFaults ProcessFaults::random(Prng& p, int64_t crash_every_min_us) {
  ProcessFaults f;
  f.disk_min_us = static_cast<int64_t>(20 + p.below(200));
  f.disk_max_us = f.disk_min_us + static_cast<int64_t>(p.below(5'000));
  f.crash_every_us =
      p.chance(0.3) ? 0 : crash_every_min_us + static_cast<int64_t>(p.below(2'000'000));
  f.restart_min_us = static_cast<int64_t>(10'000 + p.below(300'000));
  f.restart_max_us = f.restart_min_us + static_cast<int64_t>(p.below(2'000'000));
  // Within the factor of 1.5 the lease rule tolerates (docs/vr.md, "Leases").
  f.tick_skew = static_cast<double>(p.below(16)) / 100.0;
  f.pause_every_us = p.chance(0.5) ? 0 : static_cast<int64_t>(300'000 + p.below(3'000'000));
  f.pause_max_us = static_cast<int64_t>(20'000 + p.below(p.chance(0.3) ? 2'000'000 : 300'000));
  return f;
}

std::string ProcessFaults::describe() const {
  return fmt::format(
      "disk {}..{} us; crashes every {} ms (restart {}..{} ms); tick skew {:.0f}%; pauses every {} "
      "ms up to {} ms",
      disk_min_us, disk_max_us, crash_every_us / 1000, restart_min_us / 1000, restart_max_us / 1000,
      tick_skew * 100, pause_every_us / 1000, pause_max_us / 1000);
}

int64_t ProcessFaults::skewed_tick_us(World& world) const {
  return std::max<int64_t>(
      1, static_cast<int64_t>(static_cast<double>(tick_us) * world.skew(tick_skew)));
}

void FaultSchedule::every(int64_t mean_us, std::function<void()> fault) {
  if (mean_us <= 0) return;
  world_.after(world_.exponential(mean_us), [this, mean_us, fault = std::move(fault)] {
    if (!on_) return;
    every(mean_us, fault);
    fault();
  });
}

ProcessClock::ProcessClock(int64_t tick_us) : tick_us_(tick_us) { MAROON_ASSERT(tick_us_ > 0); }

void ProcessClock::restart(int64_t now_us) {
  MAROON_ASSERT(now_us >= 0);
  paused_until_ = 0;
  ticks_.emplace(static_cast<uint64_t>(tick_us_), kTickCatchUpMax, static_cast<uint64_t>(now_us));
}

uint64_t ProcessClock::due(int64_t now_us) {
  MAROON_ASSERT(ticks_ && !paused(now_us));
  return ticks_->due(static_cast<uint64_t>(now_us));
}

void Process::start(int64_t now_us) {
  MAROON_ASSERT(!up);
  up = true;
  incarnation++;
  clock.restart(now_us);
}

void Process::stop() {
  MAROON_ASSERT(up);
  up = false;
  incarnation++;
}

namespace {

void tick_after(World& world, Process& p, uint64_t inc, RunTicks run);

void tick_now(World& world, Process& p, uint64_t inc, RunTicks run) {
  if (!p.running(inc) || world.failed()) return;
  if (p.clock.paused(world.now())) {
    // It runs nothing now; when it wakes, its driver runs every tick its
    // monotonic clock says it missed.
    world.at(p.clock.paused_until(),
             [&world, &p, inc, run = std::move(run)] { tick_now(world, p, inc, run); });
    return;
  }
  run(p.clock.due(world.now()));
  if (p.running(inc)) tick_after(world, p, inc, std::move(run));  // the ticks may crash it
}

void tick_after(World& world, Process& p, uint64_t inc, RunTicks run) {
  world.after(p.clock.tick_us(),
              [&world, &p, inc, run = std::move(run)] { tick_now(world, p, inc, run); });
}

}  // namespace

void start_ticks(World& world, Process& process, RunTicks run) {
  MAROON_ASSERT(process.up);
  tick_after(world, process, process.incarnation, std::move(run));
}

void pause_process(World& world, FaultSchedule& faults, ProcessClock& clock,
                   const ProcessFaults& options, const std::string& name) {
  constexpr int64_t kPauseMinUs = 10'000;
  MAROON_ASSERT(!clock.paused(world.now()));
  const int64_t length = world.uniform(kPauseMinUs, std::max(kPauseMinUs, options.pause_max_us));
  clock.pause_until(world.now() + length);
  faults.counters().pauses++;
  world.trace(fmt::format("{} PAUSED for {} ms", name, length / 1000));
}

namespace {

void finish_write(World& world, Process& p, Disk& disk, uint64_t inc,
                  std::function<void(host::PendingWrite)> complete) {
  if (!p.running(inc) || world.failed()) return;
  if (p.clock.paused(world.now())) {
    // Disk completions, like messages, wait for a paused process.
    world.at(p.clock.paused_until(), [&world, &p, &disk, inc, complete = std::move(complete)] {
      finish_write(world, p, disk, inc, complete);
    });
    return;
  }
  MAROON_ASSERT(disk.in_flight);
  host::PendingWrite w = std::move(*disk.in_flight);
  disk.in_flight.reset();
  complete(std::move(w));
}

}  // namespace

void start_write(World& world, const FaultSchedule& faults, const ProcessFaults& options,
                 Process& process, Disk& disk, host::PendingWrite write,
                 std::function<void(host::PendingWrite)> complete, std::function<void()> crash) {
  MAROON_ASSERT(process.up && !disk.in_flight);
  disk.in_flight = std::move(write);
  const uint64_t inc = process.incarnation;
  const int64_t done = world.now() + world.uniform(options.disk_min_us, options.disk_max_us);
  world.at(done, [&world, &process, &disk, inc, complete = std::move(complete)] {
    finish_write(world, process, disk, inc, complete);
  });
  if (disk.crash_in_next_write && faults.on()) {
    world.at(world.uniform(world.now(), done - 1),
             [&world, &faults, &process, inc, crash = std::move(crash)] {
               if (process.running(inc) && faults.on() && !world.failed()) crash();
             });
  }
}

bool arm_crash_in_next_write(World& world, Disk& disk, double p) {
  if (disk.in_flight || !world.chance(p)) return false;
  // A crash in the middle of a write is where a wrong record order shows.
  disk.crash_in_next_write = true;
  return true;
}

CrashedWrite crash_disk(World& world, FaultSchedule& faults, Disk& disk, bool keep_part,
                        const WriteDurable& write, bool kill_only) {
  CrashedWrite c;
  c.kill_only = kill_only;
  if (keep_part && disk.in_flight) {
    MAROON_ASSERT(disk.dir);
    std::vector<WriteStep>& steps = disk.in_flight->steps;
    const size_t k = world.below(steps.size() + 1);
    std::vector<WriteStep> prefix;
    for (size_t i = 0; i < k; i++) prefix.push_back(std::move(steps[i]));
    c.kept = write(prefix);
    if (c.kept == k && k < steps.size() && world.chance(0.5)) {
      // The next step's bytes were handed to the disk; its sync never came.
      // (Its state, if any, is not durable: the superblock keeps its
      // previous copy unless the torn write happened to land whole.)
      c.torn = true;
      std::vector<WriteStep> next;
      next.push_back(std::move(steps[k]));
      disk.env->inject_sync_errors(1);
      (void)disk.dir->write(next);
    }
    if (c.kept > 0 || c.torn) faults.counters().partial_writes++;
  }
  faults.counters().crashes++;
  if (!kill_only) disk.env->crash(world.prng(), /*tear=*/true);
  disk.in_flight.reset();
  disk.crash_in_next_write = false;
  disk.dir.reset();
  return c;
}

std::optional<std::string> lose_log_end(World& world, Env& env, const std::string& wal_dir) {
  auto names = env.list_dir(wal_dir);
  if (!names) return std::nullopt;
  std::vector<std::string> segments;
  for (const std::string& name : *names) {
    if (wal::parse_segment_file_name(name)) segments.push_back(name);
  }
  if (segments.empty()) return std::nullopt;
  std::sort(segments.begin(), segments.end());
  const size_t keep = segments.size() > 1 && world.chance(0.5) ? segments.size() - 1 : 0;
  for (size_t i = keep; i < segments.size(); i++) {
    if (Status st = env.remove(wal_dir + "/" + segments[i]); !st) {
      world.fail(fmt::format("removing {}: {}", segments[i], st.to_string()));
      return std::nullopt;
    }
  }
  return fmt::format("{} ({} of {} segments)", segments[keep], segments.size() - keep,
                     segments.size());
}

}  // namespace maroon::sim
