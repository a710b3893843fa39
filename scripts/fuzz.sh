#!/usr/bin/env bash
# Builds every libFuzzer target with clang (ASan + UBSan) and runs each for
# SECONDS (default 30). Corpora persist in build-fuzz/corpus/<target>.
# A crash stops the script with the fuzzer's report and a reproducer file.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-${FUZZ_SECONDS:-30}}
./scripts/install-deps.sh
BUILD=build-fuzz
if [ ! -f $BUILD/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAROON_FUZZ=ON >/dev/null
fi
ninja -C $BUILD fuzz_all
for bin in $BUILD/fuzz/*_fuzz; do
  name=$(basename "$bin")
  mkdir -p "$BUILD/corpus/$name" "$BUILD/artifacts/$name"
  echo "fuzz: $name for ${SECONDS_EACH}s"
  "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$name/" \
    "$BUILD/corpus/$name" 2>&1 | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" || true
  if ls "$BUILD/artifacts/$name"/* >/dev/null 2>&1; then
    echo "fuzz: $name found a failure: $(ls "$BUILD/artifacts/$name")"
    exit 1
  fi
done
echo "fuzz: all targets clean"
