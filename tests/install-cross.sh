#!/usr/bin/env bash
# Installs what the cross-platform half of the test suite needs, when it is missing (measured in
# ../shared/CROSS-BUILD.md):
# - the Rust standard libraries for macOS (arm64, x86_64), Windows (x86_64, GNU ABI) and Linux aarch64 (rustup);
# - zig as the C compiler and linker for those targets, so ring's C code builds without a macOS SDK
#   (PyPI's `ziglang`, driven by crates.io's `cargo-zigbuild`);
# - wine (Debian's `wine64` and `wine`) to run the Windows binary, `file` to tell binary formats apart,
#   xmllint for the Task Scheduler files, ruby for the Homebrew formula.
# Versions are pinned: a new zig has broken cargo-zigbuild's wrapper before.
set -euo pipefail

ZIGLANG_VERSION=0.14.1
CARGO_ZIGBUILD_VERSION=0.21.8
TARGETS=(aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-gnu aarch64-unknown-linux-gnu)

installed_targets=$(rustup target list --installed)
missing=()
for target in "${TARGETS[@]}"; do
  grep -qx "$target" <<<"$installed_targets" || missing+=("$target")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-cross: rustup target add ${missing[*]}" >&2
  rustup target add "${missing[@]}" >/dev/null
fi

if ! python3 -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"; then
  echo "install-cross: pip install ziglang==$ZIGLANG_VERSION" >&2
  python3 -m pip install -q --disable-pip-version-check "ziglang==$ZIGLANG_VERSION"
fi

if ! cargo-zigbuild --version 2>/dev/null | grep -qF "$CARGO_ZIGBUILD_VERSION"; then
  echo "install-cross: cargo install cargo-zigbuild@$CARGO_ZIGBUILD_VERSION" >&2
  cargo install -q --locked "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION"
fi

# wine, file, xmllint and ruby come from Debian, through the same installer as the other test dependencies.
bash "$(dirname "$0")/install-deps.sh" --cross
