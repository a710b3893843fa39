#!/usr/bin/env bash
# Sweeps simulator seeds 1..N (default 100000) in chunks, on every core, and
# prints each failing seed with its trace tail. A seed that stops the process
# on a broken invariant is reported by maroon-sim ("aborted; replay: ...") and
# the rest of its chunk is run again around it.
#   scripts/sim-sweep.sh 100000
#   FIRST=5000 scripts/sim-sweep.sh 10000      # seeds 5000..10000
#   scripts/sim-sweep.sh --cluster 20000       # the whole-cluster simulation
#   MINUTES=60 JOBS=1 scripts/sim-sweep.sh 10000000   # stop after the chunk that ends past 60 min
# Each chunk prints the faults it injected, by kind; the last line sums them.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=()
if [ "${1:-}" = "--cluster" ]; then
  MODE=(--cluster)
  shift
fi
N=${1:-100000}
FIRST=${FIRST:-1}
CHUNK=${CHUNK:-5000}
BUILD=${BUILD:-build}
MINUTES=${MINUTES:-0}
JOBS_ARGS=()
[ -n "${JOBS:-}" ] && JOBS_ARGS=(--jobs "$JOBS")
if [ ! -x "$BUILD/src/sim/maroon-sim" ]; then
  make build >/dev/null || exit 1
fi
SIM="$BUILD/src/sim/maroon-sim"
failed=0
aborted=0
sim_s=0
totals=()
kinds=(crashes "kept part of a write" partitions "messages dropped" "delivered stale" reconfigurations "power failures" "nodes lost" "gateway crashes" "fsync failures" "process pauses" "of them gateway pauses" "client evictions" "clock steps")
start=$(date +%s)
run_range() {  # a b
  local a=$1 b=$2 out rc
  [ "$a" -gt "$b" ] && return
  out=$("$SIM" "${MODE[@]}" "${JOBS_ARGS[@]}" --seeds "$a..$b" --trace-lines 60 2>&1)
  rc=$?
  printf '%s\n' "$out" | grep -v '^\.\.\. ' | grep -v ' seeds (' | grep -v '^faults: ' || true
  sim_s=$((sim_s + $(printf '%s\n' "$out" | sed -n 's/.* failed; \([0-9]*\) simulated s.*/\1/p' | head -1 | grep . || echo 0)))
  local line
  line=$(printf '%s\n' "$out" | grep '^faults: ' | head -1)
  if [ -n "$line" ]; then
    local i=0 n
    for n in $(printf '%s\n' "$line" | grep -o '[0-9][0-9]*'); do
      totals[i]=$(( ${totals[i]:-0} + n ))
      i=$((i + 1))
    done
  fi
  local f
  f=$(printf '%s\n' "$out" | grep -c '^FAIL' || true)
  failed=$((failed + f))
  if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
    local bad
    bad=$(printf '%s\n' "$out" | sed -n 's/.*aborted; replay: maroon-sim \(--cluster \)\{0,1\}--seed \([0-9]*\).*/\2/p' | head -1)
    if [ -z "$bad" ]; then
      echo "maroon-sim exited with $rc on seeds $a..$b without naming a seed"
      failed=$((failed + 1))
      return
    fi
    aborted=$((aborted + 1))
    failed=$((failed + 1))
    run_range "$a" $((bad - 1))
    run_range $((bad + 1)) "$b"
  fi
}
for ((a = FIRST; a <= N; a += CHUNK)); do
  b=$((a + CHUNK - 1))
  [ $b -gt "$N" ] && b=$N
  run_range "$a" "$b"
  echo "seeds $FIRST..$b done, $failed failed ($aborted aborted), $sim_s simulated s, $(( $(date +%s) - start )) s"
  last=$b
  if [ "$MINUTES" != 0 ] && [ $(( $(date +%s) - start )) -ge $(( MINUTES * 60 )) ]; then
    echo "time is up after $MINUTES minutes; resume with FIRST=$((b + 1))"
    break
  fi
done
summary=""
for i in "${!kinds[@]}"; do summary+="${totals[i]:-0} ${kinds[i]}, "; done
echo "faults injected: ${summary%, }"
echo "sweep $FIRST..${last:-$N}: $failed failed; $sim_s simulated s ($(( sim_s / 3600 )) h) in $(( $(date +%s) - start )) s"
[ "$failed" -eq 0 ]
