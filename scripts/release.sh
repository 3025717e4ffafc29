#!/usr/bin/env bash
# Builds the release archives for every platform the exporter runs on, from this Linux machine:
#   linux-x86_64, linux-aarch64 (glibc 2.17 and later), macos-arm64, macos-x86_64 (.tar.gz), windows-x86_64 (.zip),
# plus the source tarball, a Homebrew formula pinned to that tarball's SHA-256, and SHA256SUMS for them all.
# zig is the C compiler and linker (ring's C code; no macOS SDK needed): tests/install-cross.sh installs it.
#
# Usage: scripts/release.sh [--profile release|dev] [--out DIR] [--base-url URL]
#   --base-url  where the files will be published (the formula's `url` is BASE_URL/<source tarball>);
#               default: a file:// URL to DIR, for `brew install --formula DIR/openclaw-tunnel-exporter.rb`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/dist
base_url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --base-url) base_url=$2; shift 2 ;;
    *) echo "usage: scripts/release.sh [--profile release|dev] [--out DIR] [--base-url URL]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "release: --profile must be release or dev, not '$profile'" >&2; exit 2 ;;
esac
command -v cargo-zigbuild >/dev/null || { echo "release: cargo-zigbuild missing: run tests/install-cross.sh" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
name=openclaw-tunnel-exporter
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -n "$base_url" ] || base_url="file://$out"

# platform name, cargo target (a .2.17 suffix asks cargo-zigbuild for that glibc), binary suffix
platforms=(
  "linux-x86_64 x86_64-unknown-linux-gnu.2.17"
  "linux-aarch64 aarch64-unknown-linux-gnu.2.17"
  "macos-arm64 aarch64-apple-darwin"
  "macos-x86_64 x86_64-apple-darwin"
  "windows-x86_64 x86_64-pc-windows-gnu .exe"
)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for platform in "${platforms[@]}"; do
  read -r os_arch target suffix <<<"$platform"
  echo "release: $os_arch ($target, $profile)" >&2
  cargo zigbuild --quiet --locked --profile "$profile" --target "$target" -p "$name"
  binary="target/${target%.2.17}/$profile_dir/$name${suffix:-}"
  dir="$stage/$name-$version-$os_arch"
  mkdir -p "$dir"
  cp "$binary" README.md "$dir/"
  cp -r deploy "$dir/deploy"
  if [ "$os_arch" = windows-x86_64 ]; then
    (cd "$stage" && python3 -c 'import shutil, sys; shutil.make_archive(sys.argv[1], "zip", ".", sys.argv[2])' \
      "$out/$name-$version-$os_arch" "$name-$version-$os_arch")
  else
    tar -C "$stage" -czf "$out/$name-$version-$os_arch.tar.gz" "$name-$version-$os_arch"
  fi
done

# The source as committed (what `cargo install --locked --path exporter` and the Homebrew formula build).
source_tarball="$name-$version-src.tar.gz"
git archive --format=tar.gz --prefix="$name-$version/" -o "$out/$source_tarball" HEAD
source_sha=$(sha256sum "$out/$source_tarball" | cut -d' ' -f1)
sed -e "s|@SOURCE_URL@|$base_url/$source_tarball|" -e "s|@SOURCE_SHA256@|$source_sha|" -e "s|@VERSION@|$version|" \
  deploy/homebrew/$name.rb >"$out/$name.rb"

(cd "$out" && sha256sum -- *.tar.gz *.zip "$name.rb" >SHA256SUMS)
echo "release: $(wc -l <"$out/SHA256SUMS") files in $out" >&2
