#!/usr/bin/env bash
# maroon dev vs redis-server, both fsyncing every write, in one run on one
# machine: the same redis-benchmark SET load at -P 1 and -P 16 against each,
# then the time a restarted maroon takes to serve with >= 1M txs in its WAL.
#
#   bench/compare-redis.sh                     # N=500000 C=50 ROUNDS=3
#   N=100000 ROUNDS=1 bench/compare-redis.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-500000}
C=${C:-50}
ROUNDS=${ROUNDS:-3}
make -s build >/dev/null
MAROON=$PWD/build/src/cli/maroon
WORK=$(mktemp -d /tmp/maroon-bench.XXXXXX)
REDIS_PORT=${REDIS_PORT:-16379}
RESP_PORT=${RESP_PORT:-16380}
HTTP_PORT=${HTTP_PORT:-18080}
NATIVE_PORT=${NATIVE_PORT:-16390}
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {  # until maroon serves, or fail after 60 s
  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "maroon did not start"; cat "$WORK/maroon.log"; exit 1; }
    sleep 0.01
  done
}
start_maroon() {
  "$MAROON" dev --data-dir "$WORK/maroon" --http-port $HTTP_PORT --resp-port $RESP_PORT \
    --native-port $NATIVE_PORT >>"$WORK/maroon.log" 2>&1 &
  MAROON_PID=$!
  pids+=($MAROON_PID)
}

mkdir -p "$WORK/redis"
redis-server --port $REDIS_PORT --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
  --appendfsync always --save "" --daemonize no --logfile "$WORK/redis.log" &
pids+=($!)
start_maroon
wait_http
until redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; do sleep 0.01; done

# redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
run() {  # port pipeline -> "rps p50 p99"
  redis-benchmark -p "$1" -t set -n "$N" -c "$C" -P "$2" --csv 2>/dev/null |
    awk -F'"' '/^"SET"/ {print $4, $10, $14}'
}

echo "redis-benchmark -t set -n $N -c $C, $ROUNDS alternating rounds each, median by requests/s"
echo "redis-server --appendonly yes --appendfsync always  vs  maroon dev (fdatasync per group commit)"
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
median() {  # lines "rps p50 p99" -> the line with the median rps
  sort -n -k1,1 | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }'
}
printf "%-4s %-8s %12s %9s %9s   %s\n" "-P" "server" "requests/s" "p50 ms" "p99 ms" "(all rounds, requests/s)"
for P in 1 16; do
  redis_runs=""; maroon_runs=""
  for ((round = 1; round <= ROUNDS; round++)); do
    redis_runs+="$(run $REDIS_PORT $P)"$'\n'
    maroon_runs+="$(run $RESP_PORT $P)"$'\n'
  done
  read -r r_rps r_p50 r_p99 <<<"$(printf "%s" "$redis_runs" | median)"
  read -r m_rps m_p50 m_p99 <<<"$(printf "%s" "$maroon_runs" | median)"
  printf "%-4s %-8s %12s %9s %9s   %s\n" "$P" "redis" "$r_rps" "$r_p50" "$r_p99" "$(printf "%s" "$redis_runs" | awk '{printf "%s ", $1}')"
  printf "%-4s %-8s %12s %9s %9s   %s\n" "$P" "maroon" "$m_rps" "$m_p50" "$m_p99" "$(printf "%s" "$maroon_runs" | awk '{printf "%s ", $1}')"
  awk -v m="$m_rps" -v r="$r_rps" -v p="$P" 'BEGIN { printf "-P %s ratio maroon/redis: %.2fx\n", p, m / r }'
done

# Restart time: every SET above is a tx in the WAL (2 * ROUNDS * N of them).
txs=$(curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status" | sed -n 's/.*"applied_txs":\([0-9]*\).*/\1/p')
kill -9 $MAROON_PID
wait $MAROON_PID 2>/dev/null || true
t0=$(date +%s%N)
start_maroon
wait_http
t1=$(date +%s%N)
echo "restart after kill -9 with $txs txs in the WAL: $(( (t1 - t0) / 1000000 )) ms until serving"
grep -o "replayed .*" "$WORK/maroon.log" | tail -1
