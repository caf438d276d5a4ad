#!/usr/bin/env bash
# Installs whichever Debian packages the build and the test suites need and are missing.
# Usage: bash test/deps.sh [--build] [extra-package ...]   (the benchmarks pass their own extras)
set -euo pipefail
# --build: only what building ./node needs (make run); otherwise the test suites' packages too.
build=(g++ make pkg-config libuv1-dev libxxhash-dev node-llhttp libsodium-dev)
if [ "${1:-}" = "--build" ]; then
  shift
  need=("${build[@]}" "$@")
else
  need=("${build[@]}" doctest-dev python3 clang libclang-rt-14-dev "$@")
fi
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
