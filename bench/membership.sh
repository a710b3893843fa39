#!/usr/bin/env bash
# Membership changes, measured (docs/membership.md): a 3-node cluster
# (`maroon cluster up`, peer TLS on) holding KEYS keys.
#  1. add-node while node 1 takes pipelined SETs: how long the command
#     takes, when the new node has the group's state (within 50 epochs of
#     node 1), and node 1's SET/s meanwhile against before.
#  2. replace-node of node 3 while a client sends single SETs to node 1 one
#     after another: how long the command takes, and the longest a SET waited
#     (the pause of the change) against the client's p99.
#
#   bench/membership.sh                  # 1M keys
#   KEYS=200000 bench/membership.sh      # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
make -s build >/dev/null
MAROON=$PWD/build/src/cli/maroon
WORK=$(mktemp -d /tmp/maroon-membench.XXXXXX)
C="$WORK/cluster"
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  "$MAROON" cluster down --dir "$C" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"

"$MAROON" cluster up --dir "$C" --nodes 3 >"$WORK/cluster-up.log" 2>&1 ||
  { cat "$WORK/cluster-up.log"; exit 1; }
port() {  # node id, field -> port from cluster.toml
  python3 -c "import tomllib; c=tomllib.load(open('$C/cluster.toml','rb'));
print([n for n in c['nodes'] if n['id']==$1][0]['$2'])"
}
node_status() {  # http port, python expression over the status object s
  curl -s "http://127.0.0.1:$1/v1/status" 2>/dev/null |
    python3 -c "import json,sys; s=json.load(sys.stdin); print($2)" 2>/dev/null || echo "-"
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
R1=$(port 1 resp_port); H1=$(port 1 http_port)
awk -v n="$KEYS" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("key:%012d", i);
  printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\nvalue-%010d\r\n", length(k), k, i } }' |
  redis-cli -p "$R1" --pipe >/dev/null
echo "loaded $(redis-cli -p "$R1" dbsize) keys through node 1"
load() {  # SETs/s through node 1 (redis-benchmark stops at an error reply: shown)
  redis-benchmark -p "$R1" -t set -n "$1" -r "$KEYS" -c 20 -P 16 -d 16 --csv 2>"$WORK/load.err" |
    awk -F'"' '/^"SET"/ {print $4}'
  tr '\r' '\n' <"$WORK/load.err" | grep -i error | head -3 >&2 || true
}

echo
echo "== 1. add-node under pipelined SETs =="
before=$(load 400000)
(load 1000000 >"$WORK/during") &
LOADER=$!
pids+=($LOADER)
sleep 1
t0=$(date +%s%N)
"$MAROON" cluster add-node --dir "$C" --timeout 300 >"$WORK/add.log" 2>&1 ||
  { cat "$WORK/add.log"; exit 1; }
add_ms=$(ms_since "$t0")
H4=$(port 4 http_port)
until [ "$(node_status "$H4" "int(s['serving'] and not s['snapshot']['transfer']['needed'] and s['applied_epoch'] + 50 >= $(node_status "$H1" "s['applied_epoch']"))")" = "1" ]; do
  sleep 0.05
done
state_ms=$(ms_since "$t0")
wait $LOADER || true
echo "add-node returned after $add_ms ms; node 4 had the group's state after $state_ms ms" \
  "(received $(node_status "$H4" "s['snapshot']['transfer']['bytes_received']") bytes of snapshot)"
printf "%-46s %12s\n" "node 1 SET/s before" "$before"
printf "%-46s %12s\n" "node 1 SET/s during the add (1M SETs, -P 16)" "$(cat "$WORK/during")"

echo
echo "== 2. replace-node 3 under single SETs =="
python3 - "$R1" "$WORK/stop" >"$WORK/latency" <<'PY' &
import os, socket, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
lat = []
i = 0
while not os.path.exists(stop):
    i += 1
    key = b"lat:%d" % i
    cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key)
    t = time.monotonic()
    s.sendall(cmd)
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(64)
    lat.append(time.monotonic() - t)
lat.sort()
print("%d %.2f %.2f %.1f" % (len(lat), lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3,
                             lat[-1] * 1e3))
PY
PROBE=$!
pids+=($PROBE)
sleep 2
t0=$(date +%s%N)
"$MAROON" cluster replace-node --dir "$C" --id 3 --timeout 300 >"$WORK/replace.log" 2>&1 ||
  { cat "$WORK/replace.log"; exit 1; }
replace_ms=$(ms_since "$t0")
sleep 2
touch "$WORK/stop"
wait $PROBE
read -r n p50 p99 max <"$WORK/latency"
echo "replace-node returned after $replace_ms ms ($(grep -c retired "$WORK/replace.log") retired)"
echo "single SETs to node 1 across it: $n, p50 $p50 ms, p99 $p99 ms, longest $max ms"
"$MAROON" status --config "$C/cluster.toml" | tail -5
