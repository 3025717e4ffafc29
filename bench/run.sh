#!/usr/bin/env bash
# Benchmark against blackbox_exporter (Debian's prometheus-blackbox-exporter), side by side in one run.
# Not a test: prints a table whose numbers depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh --bench
cargo build --release --workspace --locked -q
exec python3 bench/bench.py "$@"
