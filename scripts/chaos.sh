#!/usr/bin/env bash
# Real-process chaos for M minutes: runs maroon-chaos in rounds (a new cluster
# each round, seeds base, base+1, ...), prints each round's result and the
# totals. A failing round's directory is kept and printed; passing ones are
# removed unless --keep. --partitions runs every round in partition mode
# (maroon-chaos --partitions: network namespaces, needs root). See docs/chaos.md.
#
#   scripts/chaos.sh --minutes M [--nodes N] [--round-minutes R] [--clients C]
#                    [--keys K] [--seed S] [--dir D] [--keep] [--stop-on-failure]
#                    [--partitions]
set -euo pipefail

cd "$(dirname "$0")/.."

minutes=""
nodes=3
round_minutes=2
clients=8
keys=32
seed=$(( $(date +%s) % 1000000 ))
dir=""
keep=0
stop_on_failure=0
partitions=0
build=${BUILD:-build}

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --round-minutes) round_minutes=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --stop-on-failure) stop_on_failure=1; shift ;;
    --partitions) partitions=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$minutes" ]; then
  echo "chaos.sh: --minutes is required" >&2
  usage >&2
  exit 2
fi

chaos=$build/tests/chaos/maroon-chaos
maroon=$build/src/cli/maroon
if [ ! -x "$chaos" ] || [ ! -x "$maroon" ]; then
  echo "chaos.sh: building ($build)"
  make -s build
fi
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/maroon-chaos.XXXXXX")
mkdir -p "$dir"

total_seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
round_seconds=$(awk -v m="$round_minutes" 'BEGIN { printf "%d", m * 60 }')
[ "$round_seconds" -ge 10 ] || round_seconds=10
start=$(date +%s)
round=0
passed=0
failed=0
skipped=0
failed_dirs=()
sum_ok=0 sum_unknown=0 sum_failed=0 sum_lost=0
fault_kinds="kill stop kill_primary stop_primary partition_symmetric partition_oneway partition_bridge"
for k in $fault_kinds; do eval "sum_$k=0"; done

# The number after "name=" on the summary line that starts with `prefix`.
field() { # file prefix name
  grep -m1 "^$2" "$1" | grep -o "$3=[0-9]*" | head -1 | cut -d= -f2 || true
}

interrupted=0
trap 'interrupted=1' INT TERM

mode=""
[ "$partitions" -eq 0 ] || mode=", partitions"
echo "chaos.sh: $minutes min in rounds of $round_seconds s, $nodes nodes, $clients clients, $keys keys, seeds from $seed$mode, dir $dir"
while [ "$interrupted" -eq 0 ]; do
  elapsed=$(( $(date +%s) - start ))
  left=$(( total_seconds - elapsed ))
  [ "$left" -ge 10 ] || break
  secs=$(( left < round_seconds ? left : round_seconds ))
  round=$(( round + 1 ))
  s=$(( seed + round - 1 ))
  rdir="$dir/round-$round"
  out="$dir/round-$round.out"
  echo "--- round $round: seed $s, $secs s ($(( elapsed / 60 ))m$(( elapsed % 60 ))s elapsed)"
  set +e
  "$chaos" --maroon "$maroon" --dir "$rdir" --seconds "$secs" --nodes "$nodes" \
    --clients "$clients" --keys "$keys" --seed "$s" $([ "$keep" -eq 0 ] || echo --keep-data) \
    $([ "$partitions" -eq 0 ] || echo --partitions) > "$out" 2>&1 &
  pid=$!
  # Forward a Ctrl-C to maroon-chaos (it stops its nodes), then wait for it.
  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break
    [ "$interrupted" -eq 0 ] || kill -INT "$pid"
  done
  set -e
  grep -E '^(ops|faults|network checked|converged|lost|linearizable|result|problem|skipped):?' "$out" |
    sed 's/^/    /' || true
  if [ "$rc" -eq 77 ]; then
    # Partition mode where network namespaces cannot be made: every round would skip.
    skipped=1
    rm -rf "$rdir" "$out"
    round=$(( round - 1 ))
    break
  fi
  sum_ok=$(( sum_ok + $(field "$out" "ops:" ok || echo 0) ))
  sum_unknown=$(( sum_unknown + $(field "$out" "ops:" unknown || echo 0) ))
  sum_failed=$(( sum_failed + $(field "$out" "ops:" failed || echo 0) ))
  lost=$(grep -m1 '^lost=' "$out" | grep -o '^lost=[0-9]*' | cut -d= -f2 || true)
  sum_lost=$(( sum_lost + ${lost:-0} ))
  for k in $fault_kinds; do
    v=$(grep -m1 '^faults:' "$out" | grep -o "[ (]$k=[0-9]*" | cut -d= -f2 || true)
    eval "sum_$k=\$(( sum_$k + ${v:-0} ))"
  done
  if [ "$rc" -eq 0 ]; then
    passed=$(( passed + 1 ))
    [ "$keep" -eq 1 ] || rm -rf "$rdir" "$out"
  else
    failed=$(( failed + 1 ))
    failed_dirs+=("$rdir (seed $s, output $out)")
    echo "    FAILED (exit $rc): kept $rdir, output $out"
    [ "$stop_on_failure" -eq 0 ] || break
  fi
done

echo "=== chaos.sh totals: $round rounds, $passed passed, $failed failed, $(( ($(date +%s) - start) / 60 )) min"
echo "ops ok=$sum_ok unknown=$sum_unknown failed=$sum_failed"
faults_line="faults"
for k in $fault_kinds; do eval "faults_line=\"\$faults_line $k=\$sum_$k\""; done
echo "$faults_line"
echo "lost=$sum_lost"
for d in "${failed_dirs[@]+"${failed_dirs[@]}"}"; do echo "failed: $d"; done
if [ "$skipped" -eq 1 ]; then
  echo "chaos.sh: skipped: maroon-chaos --partitions cannot make network namespaces here"
  rmdir "$dir" 2>/dev/null || true
  exit 77
fi
[ "$failed" -eq 0 ] && [ "$interrupted" -eq 0 ] && [ "$round" -gt 0 ] && rmdir "$dir" 2>/dev/null || true
[ "$failed" -eq 0 ] && [ "$interrupted" -eq 0 ]
