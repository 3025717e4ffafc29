#!/usr/bin/env python3
"""The status pages under load (issue 21): probe lag p99 and first-byte p50 of 100 forwards probed once a second,
idle and while wrk hammers /api/status and / for 30 s, for two builds side by side in one run (interleaved).

Usage: python3 bench/status_load.py BEFORE_RELEASE_DIR [AFTER_RELEASE_DIR]
  each directory holds a release `openclaw-tunnel-exporter` (AFTER defaults to target/release, whose
  `gateway-standin` is the target). Build the old one with e.g.
  git worktree add /tmp/before <commit> && cargo build --release --manifest-path /tmp/before/Cargo.toml
Prints a Markdown table.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared helpers: ports, processes, lag buckets)

SECONDS = 30
FORWARDS = 100


def first_byte_buckets(text):
    """Cumulative buckets of openclaw_gateway_first_byte_seconds summed over forwards: {le: count}."""
    return bench.histogram_buckets(text, "openclaw_gateway_first_byte_seconds")


def p50_interpolated(before, after):
    """The median between two scrapes, interpolated linearly inside its bucket (ms)."""
    rows = sorted(((float("inf") if le == "+Inf" else float(le)), after[le] - before.get(le, 0.0)) for le in after)
    total = rows[-1][1] if rows else 0
    if total <= 0:
        return float("nan")
    lower, below = 0.0, 0.0
    for bound, count in rows:
        if count >= 0.5 * total:
            if bound == float("inf"):
                return lower * 1000
            return (lower + (bound - lower) * (0.5 * total - below) / max(count - below, 1e-9)) * 1000
        lower, below = bound, count
    return float("nan")


def scrape(web):
    return bench.get(f"http://127.0.0.1:{web}/metrics")


def phase(web, loaded):
    """(probe lag p99 ms, first byte p50 ms, status requests/s) over SECONDS, with or without wrk."""
    text = scrape(web)
    lag0, fb0 = bench.lag_buckets(text), first_byte_buckets(text)
    rps = 0.0
    if loaded:
        outs = {}

        def hammer(path):
            outs[path] = subprocess.run(["wrk", "-t1", "-c16", f"-d{SECONDS}s", f"http://127.0.0.1:{web}{path}"],
                                        capture_output=True, text=True, check=True).stdout

        threads = [threading.Thread(target=hammer, args=(path,)) for path in ("/api/status", "/")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for out in outs.values():
            rps += float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec:")))
    else:
        time.sleep(SECONDS)
    text = scrape(web)
    lag = bench.lag_p99(lag0, bench.lag_buckets(text)) * 1000
    return lag, p50_interpolated(fb0, first_byte_buckets(text)), rps


def measure(release, tmp, target_port):
    bench.RELEASE = release
    proc, web = bench.run_ours(tmp, [(f"f{i}", target_port, "1s", "1s", "1s") for i in range(FORWARDS)])
    try:
        time.sleep(5)
        return phase(web, False), phase(web, True)
    finally:
        proc.stop()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    # Without wrk every "under load" row would be an idle one: refuse rather than print a table that says nothing.
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `bash tests/install-deps.sh --bench` first")
    before = os.path.abspath(sys.argv[1])
    after = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else os.path.join(bench.ROOT, "target", "release")
    tmp = tempfile.mkdtemp(prefix="oce-status-bench")
    port = bench.free_port()
    bench.Proc([os.path.join(after, "gateway-standin"), "--listen", f"127.0.0.1:{port}"])
    bench.wait_listening(port, "stand-in")
    results = {}
    # Interleaved: before, after, before, after, so a drift of the machine shows in both.
    for name, release in (("before", before), ("after", after), ("before", before), ("after", after)):
        results.setdefault(name, []).append(measure(release, tmp, port))
    print(f"{FORWARDS} forwards probed once a second (SYN round and first byte); wrk -t1 -c16 on /api/status and on / "
          f"together for {SECONDS} s; two runs per build, interleaved")
    print()
    print("| build | phase | probe lag p99 (ms, bucket bound) | first byte p50 (ms, interpolated) | status pages answered/s |")
    print("|---|---|---|---|---|")
    for name in ("before", "after"):
        for run in results[name]:
            for label, (lag, p50, rps) in (("idle", run[0]), ("wrk on /api/status and /", run[1])):
                print(f"| {name} | {label} | {lag:.1f} | {p50:.3f} | {rps:,.0f} |")


if __name__ == "__main__":
    main()
