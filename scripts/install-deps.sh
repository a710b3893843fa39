#!/usr/bin/env bash
# Installs every build and test dependency of maroon: Debian packages, the
# source of Debian's Redis (for Redis's own test suite) and the npm packages
# of the client tests (tests/clients). Idempotent and quick when everything
# is already present; runs without a terminal (CI).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

packages=(
  build-essential cmake ninja-build g++ clang libclang-rt-14-dev
  libboost1.81-dev libboost-json1.81-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
  libcurl4-openssl-dev libjemalloc-dev
  libpugixml-dev  # S3 answers (XML), src/objstore
  libssl-dev  # OpenSSL 3: TLS on peer links, certificates
  redis-tools redis-server curl python3
  iproute2  # ip(8): the network namespaces of maroon-chaos --partitions
  # tests/clients: Redis's suite runner, redis-py, hiredis, `apt-get source`
  tcl python3-redis libhiredis-dev pkg-config dpkg-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() {
  if [ $apt_updated -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (with npm inside); only a
# machine without npm gets Debian's.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Redis's own test suite (tests/ of Debian's redis source package), for
# tests/clients/redis_suite.py. Needs deb-src entries for Debian's archive:
# if none are configured, a file of our own mirrors the deb entries.
redis_src="$root/build-deps/redis-src"
if ! ls "$redis_src"/redis-*/tests/test_helper.tcl >/dev/null 2>&1; then
  echo "install-deps: fetching Redis's source (apt-get source redis) into $redis_src"
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
        $SUDO tee /etc/apt/sources.list.d/maroon-deb-src.sources >/dev/null
    else
      grep -E '^deb .*debian' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
        $SUDO tee /etc/apt/sources.list.d/maroon-deb-src.list >/dev/null
    fi
    apt_updated=0
  fi
  apt_update
  mkdir -p "$root/build-deps"
  tmp="$(mktemp -d "$root/build-deps/redis-src.XXXXXX")"
  if ! out="$(cd "$tmp" && apt-get source -qq redis 2>&1)"; then
    echo "$out"
    echo "install-deps: apt-get source redis failed"
    rm -rf "$tmp"
    exit 1
  fi
  rm -rf "$redis_src"
  mv "$tmp" "$redis_src"
fi

# npm packages of the tests, at the versions of their committed lockfiles:
# node-redis and ioredis for the client tests, and the local S3-compatible
# server of the object store tests.
npm_ci() {  # folder
  local stamp="$1/node_modules/.installed-package-lock.json"
  if ! cmp -s "$1/package-lock.json" "$stamp"; then
    echo "install-deps: npm ci in ${1#"$root"/}"
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$1/package-lock.json" "$stamp"
  fi
}
npm_ci "$root/tests/clients"
npm_ci "$root/tests/objstore"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "install-deps: warning: node $node_major found; node-redis and ioredis need node >= 20"
fi
