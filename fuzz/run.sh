#!/usr/bin/env bash
# Fuzz the auth tap's readers with cargo fuzz (libFuzzer + AddressSanitizer): every target for SECONDS each.
#   bash fuzz/run.sh 20      # the short bounded run CI does
#   bash fuzz/run.sh 3600    # a longer run; crashes land in fuzz/artifacts/<target>/
# The corpus starts from the committed seeds in fuzz/seeds/<target>/ and grows in fuzz/corpus/<target>/
# (not committed). A single allocation over 64 MiB, or RSS over 1 GiB, counts as a crash: "no unbounded
# allocation" is part of what a run checks. cargo-fuzz is installed from crates.io when missing. The project's
# stable toolchain builds it with RUSTC_BOOTSTRAP=1 (cargo fuzz passes -Zsanitizer).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  log="$(mktemp)"
  status=0
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$seconds" -timeout=5 \
    -malloc_limit_mb=64 -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|ERROR|panicked|SUMMARY|Test unit written" "$log" >&2 || true
  rm -f "$log"
  [ "$status" -eq 0 ] || { echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2; exit 1; }
done
