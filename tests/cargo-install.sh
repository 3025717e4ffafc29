#!/usr/bin/env bash
# `cargo install --locked --path exporter` from a clean clone of the committed tree, as the README tells users,
# then the installed binary answers --version and validates its embedded config. A debug install into a
# temporary root, sharing this checkout's target directory so it rebuilds only the two crates.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-hardlinks "$PWD" "$work/clone"
(cd "$work/clone" && cargo install --quiet --locked --debug --path exporter --root "$work/root" --target-dir "$OLDPWD/target")
"$work/root/bin/openclaw-tunnel-exporter" --version
"$work/root/bin/openclaw-tunnel-exporter" check-config
