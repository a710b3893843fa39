#!/usr/bin/env bash
# The cost of TLS on the client ports of one node: `maroon dev` plaintext and
# `maroon dev --tls`, the same redis-benchmark SET and GET load at -P 1 and
# -P 16 against each; redis-server without and with TLS (--tls-port, same
# certificate) as a reference. Both servers fsync every write (as
# bench/compare-redis.sh runs them). ROUNDS alternating rounds; the median
# requests/s of each, and TLS / plaintext.
#
#   bench/client-tls-cost.sh                    # N=100000 C=50 ROUNDS=3
#   N=20000 ROUNDS=1 bench/client-tls-cost.sh   # quicker
#   SKIP_BUILD=1 JOBS=2 ...                     # use build/ as it is
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
C=${C:-50}
ROUNDS=${ROUNDS:-3}
if [ "${SKIP_BUILD:-0}" != 1 ]; then make -s build >/dev/null; fi
MAROON=$PWD/build/src/cli/maroon
WORK=$(mktemp -d /tmp/maroon-client-tls-bench.XXXXXX)
BASE=${BASE_PORT:-17400}
PLAIN_HTTP=$BASE PLAIN_RESP=$((BASE + 1)) PLAIN_NATIVE=$((BASE + 2))
TLS_HTTP=$((BASE + 3)) TLS_RESP=$((BASE + 4)) TLS_NATIVE=$((BASE + 5))
REDIS_PORT=$((BASE + 6)) REDIS_TLS_PORT=$((BASE + 7))
CA=$WORK/tls/client-tls/ca.crt
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_until() {  # command... : until it succeeds, or fail after 60 s
  local deadline=$((SECONDS + 60))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "not serving: $*"; cat "$WORK"/*.log; exit 1; }
    sleep 0.01
  done
}

"$MAROON" dev --data-dir "$WORK/plain" --http-port $PLAIN_HTTP --resp-port $PLAIN_RESP \
  --native-port $PLAIN_NATIVE >>"$WORK/maroon-plain.log" 2>&1 &
pids+=($!)
"$MAROON" dev --tls --data-dir "$WORK/tls" --http-port $TLS_HTTP --resp-port $TLS_RESP \
  --native-port $TLS_NATIVE >>"$WORK/maroon-tls.log" 2>&1 &
pids+=($!)
wait_until curl -sf "http://127.0.0.1:$PLAIN_HTTP/v1/status"
wait_until curl -sf --cacert "$CA" "https://localhost:$TLS_HTTP/v1/status"

# redis-server, plaintext and (if built with TLS, as Debian's is) TLS with
# the certificate maroon dev made.
redis_tls=0
# (grep reads all of ldd's output: with -q, ldd could die of SIGPIPE under pipefail)
if ldd "$(command -v redis-server)" 2>/dev/null | grep libssl >/dev/null; then redis_tls=1; fi
mkdir -p "$WORK/redis" "$WORK/redis-tls"
redis_args=(--bind 127.0.0.1 --appendonly yes --appendfsync always --save "" --daemonize no)
redis-server --port $REDIS_PORT --dir "$WORK/redis" --logfile "$WORK/redis.log" "${redis_args[@]}" &
pids+=($!)
wait_until redis-cli -p $REDIS_PORT ping
if [ $redis_tls = 1 ]; then
  redis-server --port 0 --tls-port $REDIS_TLS_PORT --tls-cert-file "$WORK/tls/client-tls/server.crt" \
    --tls-key-file "$WORK/tls/client-tls/server.key" --tls-ca-cert-file "$CA" --tls-auth-clients no \
    --dir "$WORK/redis-tls" --logfile "$WORK/redis-tls.log" "${redis_args[@]}" &
  pids+=($!)
  wait_until redis-cli -p $REDIS_TLS_PORT --tls --cacert "$CA" ping
else
  echo "redis-server is built without TLS here: no redis rows"
fi

# redis-benchmark --csv: "test","rps",...
run() {  # port pipeline test [tls args...] -> requests/s
  local port=$1 pipeline=$2 test=$3
  shift 3
  redis-benchmark -h 127.0.0.1 -p "$port" "$@" -t "$test" -n "$N" -c "$C" -P "$pipeline" --csv 2>/dev/null |
    awk -F'"' -v t="$(tr a-z A-Z <<<"$test")" '$2 == t {print $4}'
}
median() { sort -n | awk 'NF { v[++n] = $1 } END { print v[int((n + 1) / 2)] }'; }

echo "client TLS cost: redis-benchmark -n $N -c $C, $ROUNDS alternating round(s), median requests/s"
echo "maroon dev vs maroon dev --tls (TLS 1.3, ECDSA P-256); redis-server (appendfsync always) without/with --tls-port"
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-5s %-4s %-7s %12s %12s %10s   %s\n" "test" "-P" "server" "plain rps" "TLS rps" "TLS/plain" "(all rounds: plain / TLS)"
servers=(maroon)
[ $redis_tls = 1 ] && servers+=(redis)
for test in set get; do
  for P in 1 16; do
    for server in "${servers[@]}"; do
      plain_runs="" tls_runs=""
      for ((round = 1; round <= ROUNDS; round++)); do
        if [ $server = maroon ]; then
          plain_runs+="$(run $PLAIN_RESP $P $test)"$'\n'
          tls_runs+="$(run $TLS_RESP $P $test --tls --cacert "$CA")"$'\n'
        else
          plain_runs+="$(run $REDIS_PORT $P $test)"$'\n'
          tls_runs+="$(run $REDIS_TLS_PORT $P $test --tls --cacert "$CA")"$'\n'
        fi
      done
      p=$(printf "%s" "$plain_runs" | median) t=$(printf "%s" "$tls_runs" | median)
      [ -n "$p" ] && [ -n "$t" ] || { echo "no figures for $server $test -P $P"; cat "$WORK"/*.log; exit 1; }
      printf "%-5s %-4s %-7s %12s %12s %9.2fx   %s/ %s\n" "$(tr a-z A-Z <<<"$test")" "$P" "$server" "$p" "$t" \
        "$(awk -v p="$p" -v t="$t" 'BEGIN { print t / p }')" \
        "$(printf "%s" "$plain_runs" | awk '{printf "%s ", $1}')" "$(printf "%s" "$tls_runs" | awk '{printf "%s ", $1}')"
    done
  done
done
grep -h "tls_handshake_failures_total" <(curl -s --cacert "$CA" "https://localhost:$TLS_HTTP/metrics") || true
