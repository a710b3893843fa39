#!/usr/bin/env bash
# Snapshots and log compaction, measured (docs/snapshots.md):
#  1. history: maroon dev with its default snapshot settings takes SMALL_M
#     then BIG_M million SETs over KEYS keys; after each, the data
#     directory's size (snapshots, WAL) and the time a kill -9'd process
#     takes to serve again. With compaction the restart does not grow with
#     the history.
#  2. a snapshot of SNAP_KEYS keys: how long it takes and its size, and the
#     p50/p99 of single SETs (-P 1) while snapshots are being taken back to
#     back, against the same load without.
#  3. a wiped node of a 3-node cluster (`maroon cluster up`) holding
#     SNAP_KEYS keys: node 3 is killed, its data directory removed, and it is
#     restarted; the time until it has its peers' state again (a peer's
#     snapshot installed, its applied epoch at node 1's), and node 1's SET
#     throughput meanwhile against before. Also with node 3 started from a
#     snapshot node 1 uploaded just before (`--bootstrap-from`,
#     docs/backups.md).
#
#   bench/snapshots.sh                               # 10M and 50M SETs, 1M keys
#   PARTS=2 bench/snapshots.sh                       # only the second part
#   SMALL_M=1 BIG_M=3 SNAP_KEYS=200000 bench/snapshots.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL_M=${SMALL_M:-10}
BIG_M=${BIG_M:-50}
KEYS=${KEYS:-100000}
SNAP_KEYS=${SNAP_KEYS:-1000000}
LAT_N=${LAT_N:-200000}
PARTS=${PARTS:-"1 2 3"}
make -s build >/dev/null
MAROON=$PWD/build/src/cli/maroon
WORK=$(mktemp -d /tmp/maroon-snapbench.XXXXXX)
RESP_PORT=${RESP_PORT:-16480}
HTTP_PORT=${HTTP_PORT:-18180}
NATIVE_PORT=${NATIVE_PORT:-16490}
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_maroon() {  # data dir -> MAROON_PID, and the ms until it serves
  local t0 t1
  t0=$(date +%s%N)
  "$MAROON" dev --data-dir "$1" --http-port $HTTP_PORT --resp-port $RESP_PORT \
    --native-port $NATIVE_PORT >>"$WORK/maroon.log" 2>&1 &
  MAROON_PID=$!
  pids+=($MAROON_PID)
  local deadline=$((SECONDS + 120))
  until curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "maroon did not start"; tail "$WORK/maroon.log"; exit 1; }
    sleep 0.005
  done
  t1=$(date +%s%N)
  SERVE_MS=$(((t1 - t0) / 1000000))
}
status_field() {  # a numeric field of /v1/status's "snapshot" object
  curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['snapshot']['$1'])"
}
sizes() {  # dir -> "total snapshots wal" in MiB
  local total snaps wal
  total=$(du -sm "$1" | cut -f1)
  snaps=$(du -sm "$1/snapshots" 2>/dev/null | cut -f1 || echo 0)
  wal=$(du -sm "$1/wal" | cut -f1)
  echo "$total $snaps $wal"
}
sets() {  # millions of SETs over KEYS keys, pipelined
  redis-benchmark -p $RESP_PORT -t set -n $(($1 * 1000000)) -r "$KEYS" -c 50 -P 64 -d 16 -q \
    2>/dev/null | tr '\r' '\n' | grep -E "^SET: [0-9]" | tail -1
}

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
if [[ " $PARTS " == *" 1 "* ]]; then
echo
echo "== 1. history: SETs over $KEYS keys (16-byte values), default snapshot settings =="
printf "%-10s %-28s %10s %12s %10s %14s\n" "SETs" "throughput" "dir MiB" "snapshots MiB" "WAL MiB" "restart ms"
DIR="$WORK/history"
start_maroon "$DIR"
done_m=0
for M in $SMALL_M $BIG_M; do
  rate=$(sets $((M - done_m)))
  done_m=$M
  sleep 1  # a snapshot the last writes made due finishes
  read -r total snaps wal <<<"$(sizes "$DIR")"
  kill -9 $MAROON_PID
  wait $MAROON_PID 2>/dev/null || true
  start_maroon "$DIR"
  printf "%-10s %-28s %10s %12s %10s %14s\n" "${M}M" "$rate" "$total" "$snaps" "$wal" "$SERVE_MS"
done
grep -E "restored snapshot" "$WORK/maroon.log" | tail -1
kill -9 $MAROON_PID
wait $MAROON_PID 2>/dev/null || true
fi

if [[ " $PARTS " == *" 2 "* ]]; then
echo
echo "== 2. a snapshot of $SNAP_KEYS keys, and single SETs (-P 1, -c 10) during it =="
DIR="$WORK/snap"
start_maroon "$DIR"
# Distinct keys key:0000000.. with 16-byte values, through redis-cli --pipe.
awk -v n="$SNAP_KEYS" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("key:%07d", i);
  printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\nvalue-%010d\r\n", length(k), k, i } }' |
  redis-cli -p $RESP_PORT --pipe >/dev/null
echo "keys: $(redis-cli -p $RESP_PORT dbsize)"
lat() {  # -> "rps p50 p99" of single SETs over the loaded keys
  redis-benchmark -p $RESP_PORT -t set -n "$LAT_N" -r "$SNAP_KEYS" -c 10 -P 1 -d 16 --csv \
    2>/dev/null | awk -F'"' '/^"SET"/ {print $4, $10, $14}'
}
t0=$(date +%s%N)
"$MAROON" snapshot create --http-port $HTTP_PORT >/dev/null
t1=$(date +%s%N)
echo "one snapshot, idle: $(((t1 - t0) / 1000000)) ms (request to written), $(status_field bytes) bytes"
read -r q_rps q_p50 q_p99 <<<"$(lat)"
# Snapshots back to back for as long as the load runs.
(while true; do "$MAROON" snapshot create --http-port $HTTP_PORT >/dev/null 2>&1 || true; done) &
LOOP=$!
pids+=($LOOP)
before=$(status_field taken)
read -r s_rps s_p50 s_p99 <<<"$(lat)"
after=$(status_field taken)
kill $LOOP 2>/dev/null || true
wait $LOOP 2>/dev/null || true
printf "%-26s %12s %9s %9s\n" "" "requests/s" "p50 ms" "p99 ms"
printf "%-26s %12s %9s %9s\n" "without a snapshot" "$q_rps" "$q_p50" "$q_p99"
printf "%-26s %12s %9s %9s\n" "snapshots back to back" "$s_rps" "$s_p50" "$s_p99"
echo "snapshots taken during the load: $((after - before))"
awk -v a="$s_p99" -v b="$q_p99" 'BEGIN { printf "p99 during / without: %.2fx\n", a / b }'
grep -E "snapshot of epoch [0-9]+ written" "$WORK/maroon.log" | tail -3
kill -9 $MAROON_PID
wait $MAROON_PID 2>/dev/null || true
fi

[[ " $PARTS " == *" 3 "* ]] || exit 0
echo
echo "== 3. a wiped node of a 3-node cluster holding $SNAP_KEYS keys =="
# Twice: with the default retention of executed txs (256 MiB: the peers
# still hold every tx, which the wiped node pulls), and with 16 MiB (it
# takes a peer's snapshot).
wiped_node() {  # retention bytes, label[, "store": node 3 bootstraps from a backup]
C="$WORK/cluster-$1-${3:-peers}"
"$MAROON" cluster up --dir "$C" --nodes 3 >"$WORK/cluster-up.log" 2>&1 ||
  { cat "$WORK/cluster-up.log"; exit 1; }
"$MAROON" cluster down --dir "$C" >/dev/null 2>&1
python3 - "$C/cluster.toml" "$1" <<'PY'
import re, sys
path, retention = sys.argv[1], sys.argv[2]
text = open(path).read()
if re.search(r"(?m)^tx_retention_bytes_max", text):
    text = re.sub(r"(?m)^tx_retention_bytes_max.*$", f"tx_retention_bytes_max = {retention}", text)
else:
    text = re.sub(r"(?m)^\[settings\]$", f"[settings]\ntx_retention_bytes_max = {retention}", text)
open(path, "w").write(text)
PY
if [ "${3:-}" = store ]; then
  printf '\n[backup]\nstore = "backups"\ninterval_s = 3600\n' >>"$C/cluster.toml"
fi
"$MAROON" cluster up --dir "$C" >"$WORK/cluster-up.log" 2>&1 ||
  { cat "$WORK/cluster-up.log"; exit 1; }
trap '"$MAROON" cluster down --dir "$C" >/dev/null 2>&1 || true; cleanup' EXIT
port() {  # node id, field -> port from cluster.toml
  python3 -c "import tomllib,sys; c=tomllib.load(open('$C/cluster.toml','rb'));
print([n for n in c['nodes'] if n['id']==$1][0]['$2'])"
}
R1=$(port 1 resp_port); H1=$(port 1 http_port); H3=$(port 3 http_port)
node_status() {  # http port, python expression over the status object s
  curl -s "http://127.0.0.1:$1/v1/status" 2>/dev/null |
    python3 -c "import json,sys; s=json.load(sys.stdin); print($2)" 2>/dev/null || echo "-"
}
awk -v n="$SNAP_KEYS" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("key:%012d", i);
  printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\nvalue-%010d\r\n", length(k), k, i } }' |
  redis-cli -p "$R1" --pipe >/dev/null
load() {  # SETs/s through node 1
  redis-benchmark -p "$R1" -t set -n "$1" -r "$SNAP_KEYS" -c 20 -P 16 -d 16 --csv 2>/dev/null |
    awk -F'"' '/^"SET"/ {print $4}'
}
before=$(load 400000)
bootstrap=()
if [ "${3:-}" = store ]; then
  "$MAROON" backup --http-port "$H1" | sed 's/^/backup: /'
  bootstrap=(--bootstrap-from "$C/backups")
fi
P3=$(cat "$C/node-3.pid")
kill -9 "$P3"
while kill -0 "$P3" 2>/dev/null; do sleep 0.01; done
DATA3=$(python3 -c "import tomllib, os; c=tomllib.load(open('$C/cluster.toml','rb'));
print(os.path.join('$C', [n for n in c['nodes'] if n['id']==3][0]['data_dir']))")
[ -d "$DATA3/wal" ] || { echo "no data directory at $DATA3"; exit 1; }
rm -rf "$DATA3"
t0=$(date +%s%N)
"$MAROON" node --config "$C/cluster.toml" --id 3 "${bootstrap[@]}" >>"$C/node-3.log" 2>&1 &
N3=$!
pids+=($N3)
(load 1000000 >"$WORK/during") &
LOADER=$!
pids+=($LOADER)
deadline=$((SECONDS + 300))
until [ "$(node_status "$H3" "int(s['serving'] and not s['snapshot']['transfer']['needed'] and s['applied_epoch'] + 50 >= $(node_status "$H1" "s['applied_epoch']"))")" = "1" ]; do
  [ $SECONDS -lt $deadline ] || { echo "node 3 did not catch up"; tail "$C/node-3.log"; exit 1; }
  sleep 0.05
done
t1=$(date +%s%N)
wait $LOADER || true
during=$(cat "$WORK/during")
echo "-- $2: keys $(redis-cli -p "$R1" dbsize)"
echo "node 3 wiped and restarted: it serves with its peers' state (within 50 epochs of node 1) after $(((t1 - t0) / 1000000)) ms;" \
  "snapshots installed: $(node_status "$H3" "s['snapshot']['transfer']['installed']")," \
  "received $(node_status "$H3" "s['snapshot']['transfer']['bytes_received']") bytes"
grep -E "lags beyond|installed a|rejoins|fetching" "$C/node-3.log" | tail -4 | cut -c1-160 || true
printf "%-44s %12s\n" "" "SET/s"
printf "%-44s %12s\n" "node 1 before" "$before"
printf "%-44s %12s\n" "node 1 while node 3 rejoins (1M SETs, -P 16)" "$during"
kill -9 $N3 2>/dev/null || true
wait $N3 2>/dev/null || true
"$MAROON" cluster down --dir "$C" >/dev/null 2>&1 || true
}
wiped_node 268435456 "retention 256 MiB (default)"
wiped_node 16777216 "retention 16 MiB"
wiped_node 268435456 "retention 256 MiB, node 3 --bootstrap-from a directory store" store
