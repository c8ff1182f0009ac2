#!/usr/bin/env bash
# Runs the benchmarks in tests/bench and prints their figures and ratios.
#   scripts/bench.sh [--seconds 4] [--concurrency 2] [--sizes 2048,51200,1048576]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bazel build //tests/bench:scan_bench
cd bazel-bin/tests/bench/scan_bench.runfiles/sagator
TEST_SRCDIR="$PWD/.." TEST_TMPDIR="$(mktemp -d)" ../../scan_bench "$@"
