#!/usr/bin/env bash
# Runs the benchmarks in tests/bench and prints their figures and ratios.
#   scripts/bench.sh                     every benchmark
#   scripts/bench.sh scan [--seconds 4] [--concurrency 2] [--sizes 2048,51200,1048576]
#   scripts/bench.sh smtpd [--seconds 5] [--concurrency 4] [--size 10240]
#   scripts/bench.sh milter [...]
#   scripts/bench.sh policy [--seconds 5] [--connections 8] [--rate 2000] [--delay 1]
#   scripts/bench.sh stats [--seconds 3] [--rounds 3] [--concurrency 4] [--size 20000]
#   scripts/bench.sh quarantine [--seconds 5] [--concurrency 8] [--items 1000000] [--backends postgresql,sqlite]
#   scripts/bench.sh catalogue [--seconds 10] [--concurrency 4] [--rounds 2]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
which=all
case "${1:-}" in scan|smtpd|milter|policy|stats|quarantine|catalogue) which=$1; shift ;; esac
run() {
  local name=$1; shift
  bazel build "//tests/bench:${name}_bench"
  ( cd "bazel-bin/tests/bench/${name}_bench.runfiles/sagator" &&
    TEST_SRCDIR="$PWD/.." TEST_TMPDIR="$(mktemp -d)" "../../${name}_bench" "$@" )
}
for b in scan smtpd milter policy stats quarantine catalogue; do
  if [ "$which" = all ] || [ "$which" = "$b" ]; then
    if [ -f "tests/bench/${b}_bench.cc" ]; then run "$b" "$@"; fi
  fi
done
