#!/usr/bin/env bash
# A 3-node maroon cluster vs a 3-member etcd cluster (Debian's etcd-server
# 3.4), in one run on one machine, both on loopback and both fsyncing every
# write: writes/s and p50/p99 for each and the ratio maroon/etcd; maroon's p99
# at about half its peak rate; redis-benchmark -t set -P 16 against maroon's
# RESP port.
#
#   bench/compare-etcd.sh                          # C=500 SECONDS_PER_RUN=10 ROUNDS=1
#   C=64 SECONDS_PER_RUN=5 bench/compare-etcd.sh
#   ONLY=etcd bench/compare-etcd.sh                # the etcd half alone
#   CHECK_PERF=1 bench/compare-etcd.sh             # also `etcdctl check perf --load=l` (~60 s)
#   PEER_TLS=0 bench/compare-etcd.sh               # maroon's peer links in plaintext
#                                                  # (default 1: TLS, as `cluster up` makes it;
#                                                  # bench/peer-tls-cost.sh compares the two)
#
# etcd: maroon-etcd-bench (bench/etcd_bench.cc), closed loop, C keep-alive
# connections spread over the 3 members' client ports, one put in flight on
# each, through etcd's HTTP/JSON gateway (POST /v3/kv/put). EXTRA_C lists more
# connection counts to run as well (informative). maroon: `maroon bench` over
# the native protocol, connections spread over every node, a few connections x pipeline settings
# (MAROON_CONFIGS); the best is the peak. Each figure is the median of ROUNDS
# runs by writes/s. The ratio uses etcd's best figure of all its runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
C=${C:-500}
EXTRA_C=${EXTRA_C-64}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-1}
KEYS=${KEYS:-100000}
VALUE_BYTES=${VALUE_BYTES:-16}
MAROON_CONFIGS=${MAROON_CONFIGS:-"${C}x1 64x16 128x32 192x32"}
REDIS_N=${REDIS_N:-500000}
REDIS_C=${REDIS_C:-50}
CHECK_PERF=${CHECK_PERF:-0}
ONLY=${ONLY:-}  # etcd | maroon | empty for both
PEER_TLS=${PEER_TLS:-1}  # 1: maroon's peer links with TLS (the default of `cluster up`); 0: plaintext
BUILD=${BUILD:-build}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-23791}  # members use this and the next two
ETCD_PEER_PORT=${ETCD_PEER_PORT:-23801}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

MAROON=$BUILD/src/cli/maroon
ETCD_BENCH=$BUILD/bench/maroon-etcd-bench
if [ "${SKIP_BUILD:-0}" != 1 ] && ! make -s build BUILD="$BUILD" >/dev/null; then
  # Still measure etcd; the maroon half then reports what fails.
  echo "make build failed; building maroon-etcd-bench alone and going on"
  ninja -C "$BUILD" maroon-etcd-bench >/dev/null
fi
WORK=$(mktemp -d /tmp/maroon-etcd-bench.XXXXXX)
pids=()
cluster_started=0
cleanup() {
  set +e
  if [ $cluster_started = 1 ]; then
    timeout 60 "$MAROON" cluster down --dir "$WORK/maroon" >>"$WORK/maroon-cluster.log" 2>&1
  fi
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() {  # lines "writes/s p50 p99" -> the line with the median writes/s
  sort -n -k1,1 | awk '{ line[NR] = $0 } END { print line[int((NR + 1) / 2)] }'
}
kv() {  # kv KEY LINE -> the value of KEY=value in LINE
  tr ' ' '\n' <<<"$2" | awk -v k="$1=" 'index($0, k) == 1 { print substr($0, length(k) + 1) }'
}

echo "maroon 3-node cluster vs etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}') 3-member cluster, loopback, fsync on"
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "runs: ${SECONDS_PER_RUN}s each, $ROUNDS round(s), median by writes/s; keys=$KEYS value=${VALUE_BYTES}B"

# ---------------------------------------------------------------- etcd half
etcd_best=""  # "writes/s p50 p99 connections"
etcd_headline=""
etcd_rows=()
if [ "$ONLY" != maroon ]; then
  if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "installing etcd-server etcd-client"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      etcd-server etcd-client >/dev/null
  fi
  export ETCDCTL_API=3
  cluster="" endpoints=""
  for i in 1 2 3; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((ETCD_PEER_PORT + i - 1))"
    endpoints+="${endpoints:+,}127.0.0.1:$((ETCD_CLIENT_PORT + i - 1))"
  done
  for i in 1 2 3; do
    cport=$((ETCD_CLIENT_PORT + i - 1)) pport=$((ETCD_PEER_PORT + i - 1))
    mkdir -p "$WORK/etcd/e$i"
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token maroon-bench \
      --quota-backend-bytes $((8 << 30)) --logger zap --log-outputs stderr --log-level warn \
      >"$WORK/etcd-e$i.log" 2>&1 &
    pids+=($!)
  done
  etcd_pids=("${pids[@]}")
  deadline=$((SECONDS + 60))
  until etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "etcd did not become healthy in 60 s:"
      etcdctl --endpoints "$endpoints" endpoint health 2>&1 || true
      tail -n 20 "$WORK"/etcd-e*.log
      exit 1
    fi
    sleep 0.2
  done
  echo "etcd: 3 members healthy, client endpoints $endpoints"

  run_etcd() {  # connections -> "writes/s p50 p99"; prints the bench's line
    local out line
    # It exits 1 on any error; a few errors in a long run still give figures.
    out=$(timeout $((${SECONDS_PER_RUN%.*} + 40)) "$ETCD_BENCH" --endpoints "$endpoints" \
      --connections "$1" --seconds "$SECONDS_PER_RUN" --keys "$KEYS" --value-bytes "$VALUE_BYTES") || true
    echo "$out" | sed 's/^/  /' >&2
    line=$(grep -m1 'writes/s=' <<<"$out") || true
    if [ -z "$line" ] || [ "$(kv ok "$line")" = 0 ]; then
      echo "maroon-etcd-bench failed" >&2
      return 1
    fi
    echo "$(kv 'writes/s' "$line") $(kv p50_ms "$line") $(kv p99_ms "$line")"
  }
  for conns in $C $EXTRA_C; do
    runs=""
    for ((round = 1; round <= ROUNDS; round++)); do
      runs+="$(run_etcd "$conns")"$'\n'
    done
    read -r w p50 p99 <<<"$(printf "%s" "$runs" | median)"
    etcd_line="$w $p50 $p99 $conns"
    etcd_rows+=("$etcd_line")
    [ -n "$etcd_headline" ] || etcd_headline=$etcd_line
    if [ -z "$etcd_best" ] || awk -v a="$w" -v b="${etcd_best%% *}" 'BEGIN { exit !(a > b) }'; then
      etcd_best=$etcd_line
    fi
  done

  if [ "$CHECK_PERF" = 1 ]; then
    echo "etcdctl check perf --load=l (informative):"
    out=$(timeout 120 etcdctl --endpoints "$endpoints" --command-timeout 30s check perf --load=l 2>&1) ||
      out+=$'\n'"(did not complete)"
    tr '\r' '\n' <<<"$out" | grep -v -e ' / 60 ' -e '^ *$' | sed 's/^/  /' || true
  fi

  for p in "${etcd_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${etcd_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  read -r w p50 p99 conns <<<"$etcd_headline"
  echo "etcd (C=$conns): writes/s=$w p50_ms=$p50 p99_ms=$p99"
fi

print_summary() {
  echo
  printf "%-34s %12s %9s %9s %14s\n" "system" "writes/s" "p50 ms" "p99 ms" "ratio m/etcd"
  local ew="" w p50 p99 conns
  if [ -n "$etcd_best" ]; then
    read -r ew _ _ _ <<<"$etcd_best"
    for line in "${etcd_rows[@]}"; do
      read -r w p50 p99 conns <<<"$line"
      printf "%-34s %12s %9s %9s %14s\n" "etcd-3x(c=${conns}x1)" "$w" "$p50" "$p99" "-"
    done
  fi
  for line in "${maroon_rows[@]}"; do
    read -r name w p50 p99 <<<"$line"
    local ratio="-"
    if [ -n "$ew" ] && [[ $name != redis-benchmark* ]]; then
      ratio=$(awk -v m="$w" -v e="$ew" 'BEGIN { if (e > 0) printf "%.1fx", m / e; else print "-" }')
    fi
    printf "%-34s %12s %9s %9s %14s\n" "$name" "$w" "$p50" "$p99" "$ratio"
  done
  [ -z "$ew" ] || echo "ratio: maroon writes/s / etcd's best writes/s (C=${etcd_best##* })"
}
maroon_rows=()

if [ "$ONLY" = etcd ]; then
  print_summary
  exit 0
fi

# -------------------------------------------------------------- maroon half
if [ ! -x "$MAROON" ]; then
  echo "no $MAROON"
  print_summary
  exit 1
fi
cluster_started=1
up_args=(cluster up --nodes 3 --dir "$WORK/maroon")
[ "$PEER_TLS" = 1 ] || up_args+=(--no-peer-tls)
echo "maroon peer links: $([ "$PEER_TLS" = 1 ] && echo "TLS 1.3 (cluster up's default)" || echo plaintext)"
"$MAROON" "${up_args[@]}" >"$WORK/maroon-cluster.log" 2>&1 &
up_pid=$!
pids+=($up_pid)
# `cluster up` may return once the nodes serve, or stay in the foreground: go
# on when it exited 0, or when cluster.toml exists and node 1's native port
# answers while it still runs.
ports() {  # -> "native resp" of node 1 (or of the first gateway if nodes have none)
  python3 - "$WORK/maroon/cluster.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    c = tomllib.load(f)
for e in c.get("nodes", []) + c.get("gateways", []):
    if e.get("native_port"):
        print(e["native_port"], e.get("resp_port", 0))
        break
EOF
}
deadline=$((SECONDS + 90))
native="" resp="" up_exited=0
while :; do
  if [ $up_exited = 0 ] && ! kill -0 $up_pid 2>/dev/null; then
    rc=0
    wait $up_pid || rc=$?
    up_exited=1
    if [ $rc -ne 0 ]; then
      echo "maroon cluster up failed (exit $rc):"
      cat "$WORK/maroon-cluster.log"
      print_summary
      exit 1
    fi
    # It returned 0: the nodes should serve within a few seconds.
    deadline=$((SECONDS + 15))
  fi
  if [ -f "$WORK/maroon/cluster.toml" ]; then
    read -r native resp <<<"$(ports 2>/dev/null || true)"
    if [ -n "$native" ] && (exec 3<>"/dev/tcp/127.0.0.1/$native") 2>/dev/null; then
      [ $up_exited = 1 ] || sleep 1  # still running: give the other nodes a moment
      break
    fi
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "maroon cluster did not serve (node 1 native port ${native:-unknown}):"
    cat "$WORK/maroon-cluster.log"
    [ ! -f "$WORK/maroon/cluster.toml" ] || cat "$WORK/maroon/cluster.toml"
    print_summary
    exit 1
  fi
  sleep 0.2
done
all_native=$(python3 -c 'import sys, tomllib; c = tomllib.load(open(sys.argv[1], "rb")); print(",".join(str(e["native_port"]) for e in c.get("nodes", []) if e.get("native_port")))' "$WORK/maroon/cluster.toml")
echo "maroon cluster up: native ports $all_native (clients spread over every node), resp port $resp"
sed 's/^/  /' "$WORK/maroon-cluster.log" | head -n 20

run_maroon() {  # extra bench args... -> "writes/s p50_ms p99_ms"
  local out
  out=$(timeout $((${SECONDS_PER_RUN%.*} + 40)) "$MAROON" bench --host 127.0.0.1 --native-ports "$all_native" \
    --seconds "$SECONDS_PER_RUN" --keys "$KEYS" --value-bytes "$VALUE_BYTES" --mix set "$@" 2>&1) || {
    echo "maroon bench $* failed:" >&2
    echo "$out" >&2
    return 1
  }
  echo "$out" | sed 's/^/  /' >&2
  echo "$out" | awk '/^throughput:/ { w = $2 }
    /^latency:/ { gsub(",", ""); p50 = $3 / 1000; p99 = $6 / 1000 }
    END { printf "%s %.2f %.2f\n", w, p50, p99 }'
}
run_maroon_median() {  # extra bench args... -> "writes/s p50 p99"
  local runs="" round
  for ((round = 1; round <= ROUNDS; round++)); do
    runs+="$(run_maroon "$@")"$'\n'
  done
  printf "%s" "$runs" | median
}

peak="" peak_cfg="" half_msg=""
failed=0
for cfg in $MAROON_CONFIGS; do
  c=${cfg%x*} p=${cfg#*x}
  if ! r=$(run_maroon_median -c "$c" -P "$p"); then failed=1; continue; fi
  read -r w p50 p99 <<<"$r"
  maroon_rows+=("maroon-3x(c=${c}xP=$p) $w $p50 $p99")
  if [ -z "$peak" ] || awk -v a="$w" -v b="${peak%% *}" 'BEGIN { exit !(a > b) }'; then
    peak=$r peak_cfg=$cfg
  fi
done

if [ -n "$peak" ]; then
  read -r pw _ _ <<<"$peak"
  half=$(awk -v w="$pw" 'BEGIN { printf "%.0f", w / 2 }')
  if "$MAROON" bench --help 2>&1 | grep -q -- '--rate'; then
    if r=$(run_maroon_median -c "${peak_cfg%x*}" -P "${peak_cfg#*x}" --rate "$half"); then
      read -r w p50 p99 <<<"$r"
      maroon_rows+=("maroon-3x@rate=$half $w $p50 $p99")
    fi
  else
    # No --rate in `maroon bench`: lower the concurrency (pipeline first, then
    # connections) until throughput falls to ~half the peak; report the run
    # nearest half. Closed loop, so its p99 is that of a lighter load, not of
    # an open-loop load at exactly half the rate.
    echo "maroon bench has no --rate: approximating half the peak ($half writes/s) with less concurrency"
    c=${peak_cfg%x*} p=${peak_cfg#*x}
    best_half="" best_dist=""
    for _ in 1 2 3 4 5 6 7 8; do
      if [ "$p" -gt 1 ]; then p=$((p / 2)); elif [ "$c" -gt 1 ]; then c=$((c / 2)); else break; fi
      r=$(run_maroon_median -c "$c" -P "$p") || break
      read -r w p50 p99 <<<"$r"
      dist=$(awk -v w="$w" -v h="$half" 'BEGIN { d = w - h; print (d < 0 ? -d : d) }')
      if [ -z "$best_dist" ] || awk -v a="$dist" -v b="$best_dist" 'BEGIN { exit !(a < b) }'; then
        best_dist=$dist best_half="maroon-3x~half(c=${c}xP=$p) $w $p50 $p99"
      fi
      awk -v w="$w" -v h="$half" 'BEGIN { exit !(w <= h * 1.1) }' && break
    done
    [ -z "$best_half" ] || maroon_rows+=("$best_half")
  fi
  half_row=${maroon_rows[-1]}
  case $half_row in
    *half*|*@rate*)
      read -r _ hw _ hp99 <<<"$half_row"
      half_msg=$(awk -v p="$hp99" -v w="$hw" 'BEGIN {
        printf "maroon p99 at ~half peak (%s writes/s): %s ms (target <= 20 ms): %s", w, p, (p <= 20 ? "met" : "NOT met") }') ;;
  esac
fi

if [ -n "$resp" ] && [ "$resp" != 0 ]; then
  # --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  echo "redis-benchmark -p $resp -t set -P 16 -n $REDIS_N -c $REDIS_C"
  r=$(timeout 120 redis-benchmark -p "$resp" -t set -P 16 -n "$REDIS_N" -c "$REDIS_C" --csv 2>/dev/null |
    awk -F'"' '/^"SET"/ {print $4, $10, $14}') || true
  if [ -n "$r" ]; then
    maroon_rows+=("redis-benchmark-set-P16-c$REDIS_C $r")
  else
    echo "redis-benchmark against the RESP port failed"
    failed=1
  fi
fi

timeout 60 "$MAROON" cluster down --dir "$WORK/maroon" >>"$WORK/maroon-cluster.log" 2>&1 || {
  echo "maroon cluster down failed:"
  tail -n 20 "$WORK/maroon-cluster.log"
}
cluster_started=0
print_summary
if [ -n "$peak" ] && [ -n "$etcd_best" ]; then
  awk -v m="${peak%% *}" -v e="${etcd_best%% *}" 'BEGIN {
    r = m / e; printf "peak ratio maroon/etcd: %.1fx (target >= 50x): %s\n", r, (r >= 50 ? "met" : "NOT met") }'
fi
[ -z "$half_msg" ] || echo "$half_msg"
[ -n "$peak" ] || failed=1
exit $failed
