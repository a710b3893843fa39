#!/usr/bin/env bash
# The cost of TLS on the peer links of a 3-node cluster: bench/compare-etcd.sh's
# maroon half (`maroon cluster up`, `maroon bench` over the native protocol,
# connections spread over every node) with PEER_TLS=0 and PEER_TLS=1,
# alternating, ROUNDS times each; per run the peak writes/s of the
# MAROON_CONFIGS; then the median of each and the loss with TLS.
#
#   bench/peer-tls-cost.sh                               # ROUNDS=3 SECONDS_PER_RUN=10
#   ROUNDS=1 SECONDS_PER_RUN=5 MAROON_CONFIGS="64x16" bench/peer-tls-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
export SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
export MAROON_CONFIGS=${MAROON_CONFIGS:-"64x16 128x32"}
export ONLY=maroon REDIS_N=${REDIS_N:-10000}  # no etcd; a short redis-benchmark run
if [ "${SKIP_BUILD:-0}" != 1 ]; then make -s build >/dev/null; fi
export SKIP_BUILD=1

echo "peer TLS cost: 3-node maroon cluster, loopback, fsync on"
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "runs: ${SECONDS_PER_RUN}s each, configs $MAROON_CONFIGS (peak of them per run), $ROUNDS round(s) each way"
plain="" tls=""
for ((round = 1; round <= ROUNDS; round++)); do
  for mode in 0 1; do
    out=$(PEER_TLS=$mode bench/compare-etcd.sh 2>&1) || { echo "$out"; exit 1; }
    peak=$(awk '/^maroon-3x\(c=/ { if ($2 + 0 > best) { best = $2 + 0; row = $0 } } END { print row }' <<<"$out")
    [ -n "$peak" ] || { echo "no maroon figures:"; echo "$out"; exit 1; }
    echo "round $round, peer links $([ $mode = 1 ] && echo TLS || echo plaintext): $peak"
    if [ $mode = 1 ]; then tls+="$(awk '{print $2}' <<<"$peak")"$'\n'; else plain+="$(awk '{print $2}' <<<"$peak")"$'\n'; fi
  done
done
median() { sort -n | awk 'NF { v[++n] = $1 } END { print v[int((n + 1) / 2)] }'; }
mp=$(printf "%s" "$plain" | median) mt=$(printf "%s" "$tls" | median)
awk -v p="$mp" -v t="$mt" 'BEGIN {
  printf "median peak writes/s: plaintext %s, TLS %s: TLS costs %.1f%% (target <= 15%%)\n", p, t, (p - t) * 100 / p }'
