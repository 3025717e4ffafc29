#!/usr/bin/env bash
# The platforms CI cannot boot, built and linted here (../shared/CROSS-BUILD.md):
# 1. clippy -D warnings for macOS (arm64, x86_64) and Windows (x86_64), every target of the two crates that
#    ship (probes, the exporter), so cfg'd code is linted too. ring's build script compiles C for the target,
#    so the C compiler and archiver are zig's, through cargo-zigbuild's wrappers.
# 2. scripts/release.sh links the binary for all five platforms and packs the archives, sums and formula.
# The Windows binary then runs under wine in tests/tests/windows.rs; the macOS binaries cannot run here.
# Usage: tests/cross.sh [--profile dev|release]   (dev by default: a quicker build of the same code)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=dev
[ "${1:-}" = "--profile" ] && profile=$2

wrappers="$PWD/target/zig-wrappers"
mkdir -p "$wrappers"
printf '#!/bin/sh\nexec cargo-zigbuild zig ar -- "$@"\n' >"$wrappers/ar"
chmod +x "$wrappers/ar"
for pair in "aarch64-apple-darwin aarch64-macos-none" "x86_64-apple-darwin x86_64-macos-none" \
  "x86_64-pc-windows-gnu x86_64-windows-gnu"; do
  read -r target zig_target <<<"$pair"
  printf '#!/bin/sh\nexec cargo-zigbuild zig cc -- -target %s "$@"\n' "$zig_target" >"$wrappers/cc-$target"
  chmod +x "$wrappers/cc-$target"
  var=${target//-/_}
  echo "cross: clippy --target $target" >&2
  env "CC_$var=$wrappers/cc-$target" "AR_$var=$wrappers/ar" \
    cargo clippy --quiet --locked --target "$target" -p probes -p openclaw-tunnel-exporter --all-targets -- -D warnings
done

bash scripts/release.sh --profile "$profile" --out target/dist-ci
