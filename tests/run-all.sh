#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real components the end-to-end tests use, checks
# formatting and lints, builds every binary (for Linux, macOS and Windows), then runs unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Disk is the scarce resource on a CI machine (a run once died of "No space left on device"): say what there
# is up front, build without incremental state in CI (a clean clone never reuses it), and say what the run
# used at the end.
df -h . | tail -1 | awk '{print "disk: " $4 " free before the run"}'
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

bash tests/install-deps.sh
# Cross-building for macOS and Windows: rustup targets, zig (PyPI) + cargo-zigbuild (crates.io), wine, ruby.
bash tests/install-cross.sh
# The real OpenClaw gateway (npm) for tests/tests/openclaw_gateway.rs; cached across runs.
export OPENCLAW_E2E_DIR="${OPENCLAW_E2E_DIR:-$HOME/.cache/openclaw-tunnel-exporter/openclaw-2026.9.6}"
bash tests/install-openclaw.sh >/dev/null
# Debian's real docker-proxy (unpacked from the docker.io package; no dockerd) for the gateway-in-Docker tests.
OCE_DOCKER_PROXY="$(bash tests/install-docker-proxy.sh)"
export OCE_DOCKER_PROXY
# The alert rules: syntax, then the unit tests of every alert (fires / must not fire).
promtool check rules alerts/openclaw.rules.yml
promtool test rules alerts/openclaw.rules.test.yml
# The GitHub Actions workflow for macOS and Windows (no runner here): actionlint and zizmor, so it cannot rot.
bash tests/lint-workflows.sh
# The uptime outage patterns: five days of one-minute samples, about 3 minutes of promtool; in the background
# while everything else builds and runs, checked at the end.
mkdir -p target
(cd alerts && promtool test rules uptime-patterns.test.yml) > target/uptime-patterns.log 2>&1 &
patterns=$!
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
# `cargo install --locked --path exporter` from a clean clone, as the README's install section says.
bash tests/cargo-install.sh
# macOS (arm64, x86_64) and Windows linted with clippy -D warnings; all five release platforms linked and
# packed by scripts/release.sh into target/dist-ci (checked by tests/tests/release.rs; the Windows binary
# runs under wine in tests/tests/windows.rs).
bash tests/cross.sh
# A short bounded fuzz run of the auth tap's readers (20 s per target; longer runs: README.md#fuzzing).
bash fuzz/run.sh 20
# Tests that need root (a network namespace, another user) fail rather than skip when CI or root runs
# the suite; elsewhere each skip is recorded and printed below.
if [ "$(id -u)" = 0 ] || [ "${CI:-}" = true ]; then export OCE_REQUIRE_ROOT=1; fi
rm -f target/skipped-tests.txt
# Two threads: each end-to-end test runs its own sshd, ssh, gateway and exporter; CI has two cores.
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
if ! wait "$patterns"; then
  cat target/uptime-patterns.log >&2
  echo "FAILED: promtool test rules alerts/uptime-patterns.test.yml" >&2
  exit 1
fi
if [ -s target/skipped-tests.txt ]; then
  echo "SKIPPED (not root; run as root to include them):" >&2
  cat target/skipped-tests.txt >&2
fi
du -sh target | awk '{print "disk: target/ holds " $1 " after the run"}'
