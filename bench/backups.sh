#!/usr/bin/env bash
# Backups to an object store, measured (docs/backups.md): maroon dev holding
# KEYS keys uploads a snapshot (`maroon backup`) to
#  - the local S3-compatible server of the tests (tests/objstore/s3_server.js:
#    s3rver behind a SigV4 check, on loopback), in PART_MB parts, and
#  - a directory store on the same disk;
# then `maroon restore` fetches and verifies it into a new data directory,
# and the restored node is started: the time until it serves, and that it
# holds every key.
#
#   bench/backups.sh                  # 1M keys
#   KEYS=200000 bench/backups.sh      # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
PART_MB=${PART_MB:-16}
make -s build >/dev/null
MAROON=$PWD/build/src/cli/maroon
WORK=$(mktemp -d /tmp/maroon-backupbench.XXXXXX)
RESP_PORT=${RESP_PORT:-16580}
HTTP_PORT=${HTTP_PORT:-18280}
NATIVE_PORT=${NATIVE_PORT:-16590}
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The local S3 server.
node tests/objstore/s3_server.js --dir "$WORK/s3" --bucket bench --access-key bench \
  --secret bench-secret --port-file "$WORK/s3.port" >"$WORK/s3.log" 2>&1 &
pids+=($!)
until [ -s "$WORK/s3.port" ]; do sleep 0.05; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$(cat "$WORK/s3.port")"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1

start_maroon() {  # data dir, extra args... -> MAROON_PID, SERVE_MS
  local dir=$1 t0 t1
  shift
  t0=$(date +%s%N)
  "$MAROON" dev --data-dir "$dir" --http-port $HTTP_PORT --resp-port $RESP_PORT \
    --native-port $NATIVE_PORT "$@" >>"$WORK/maroon.log" 2>&1 &
  MAROON_PID=$!
  pids+=($MAROON_PID)
  local deadline=$((SECONDS + 300))
  until curl -sf "http://127.0.0.1:$HTTP_PORT/v1/status" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "maroon did not start"; tail "$WORK/maroon.log"; exit 1; }
    sleep 0.005
  done
  t1=$(date +%s%N)
  SERVE_MS=$(((t1 - t0) / 1000000))
}
stop_maroon() {
  kill "$MAROON_PID"
  wait "$MAROON_PID" 2>/dev/null || true
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "== $KEYS keys (16-byte values); S3 parts of $PART_MB MiB =="
printf "%-34s %10s %10s %10s %14s\n" "store" "MiB" "upload ms" "MiB/s" "restore ms"
for store in "s3://bench/maroon" "$WORK/dir-store"; do
  name=$([[ $store == s3://* ]] && echo "local S3 server (s3rver, SigV4)" || echo "directory, same disk")
  start_maroon "$WORK/data" --backup-to "$store" --backup-interval-s 3600 \
    --backup-part-mb "$PART_MB"
  if [ "$(redis-cli -p $RESP_PORT dbsize)" -lt "$KEYS" ]; then
    awk -v n="$KEYS" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("key:%07d", i);
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\nvalue-%010d\r\n", length(k), k, i } }' |
      redis-cli -p $RESP_PORT --pipe >/dev/null
  fi
  out=$("$MAROON" backup --http-port $HTTP_PORT)
  bytes=$(echo "$out" | sed -E 's/.*\(([0-9]+) bytes\).*/\1/')
  up_ms=$(echo "$out" | sed -E 's/.* in ([0-9]+) ms.*/\1/')
  stop_maroon
  rm -rf "$WORK/restored"
  t0=$(date +%s%N)
  "$MAROON" restore --from "$store" --data-dir "$WORK/restored" >/dev/null 2>&1
  restore_ms=$(ms_since "$t0")
  printf "%-34s %10.1f %10d %10.1f %14d\n" "$name" "$(echo "$bytes / 1048576" | bc -l)" "$up_ms" \
    "$(echo "$bytes / 1048576 / ($up_ms / 1000)" | bc -l)" "$restore_ms"
  start_maroon "$WORK/restored"
  keys=$(redis-cli -p $RESP_PORT dbsize)
  echo "  restored node serves in $SERVE_MS ms with $keys keys"
  [ "$keys" -ge "$KEYS" ] || { echo "restored node lacks keys"; exit 1; }
  stop_maroon
done
