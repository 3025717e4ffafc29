#!/usr/bin/env bash
# A thousand laptops pushing to one VictoriaMetrics, simulated through the exporter's own remote-write code.
# Not a test: prints a table whose numbers depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cargo build --release --workspace --locked -q
exec python3 bench/fleet.py "$@"
