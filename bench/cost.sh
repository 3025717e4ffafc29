#!/usr/bin/env bash
# What a laptop costs (bytes per round and per day by protocol, RSS and CPU beside blackbox_exporter + a
# Prometheus agent, the first byte through ssh beside a raw client while the exporter works), in one run.
# Not a test: prints tables whose numbers depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh --bench
cargo build --release --workspace --locked -q
exec python3 bench/cost.py "$@"
