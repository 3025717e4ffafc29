#!/usr/bin/env python3
"""Two builds of this exporter side by side in one run, interleaved, so a machine that runs slower today than on
the day of the README's table cannot pass for a regression (or hide one).

    git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release \
        -p openclaw-tunnel-exporter)
    cargo build --release --workspace && python3 bench/ab.py /tmp/old-target/release

Prints, per build: CPU s per 1,000 SYN rounds and per 1,000 first-byte probes (4 x 5,000 each, sorted, and the
median), then for 1,000 forwards CPU, RSS and /metrics render, and wrk against /metrics with 100 forwards (twice).
Uses bench.py's own measurements; the gateway stand-in is this tree's."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/ab.py OLD_RELEASE_DIR (a target/release holding the old openclaw-tunnel-exporter)")
    new_release = bench.RELEASE
    standin = os.path.join(new_release, "gateway-standin")
    builds = {"old": sys.argv[1], "new": new_release}
    tmp = tempfile.mkdtemp(prefix="oce-ab")
    port = bench.free_port()
    bench.Proc([standin, "--listen", f"127.0.0.1:{port}"])
    bench.wait_listening(port, "stand-in")
    bench.PROBES = 5000
    per_probe = {name: {"syn": [], "first_byte": []} for name in builds}
    try:
        for _ in range(4):
            for name, release in builds.items():
                bench.RELEASE = release
                for kind in ("syn", "first_byte"):
                    cpu, n, _, _ = bench.measure_ours(tmp, port, kind)
                    per_probe[name][kind].append(cpu / n * 1000)
        for name in builds:
            for kind in ("syn", "first_byte"):
                v = sorted(per_probe[name][kind])
                print(f"{name} CPU s per 1,000 {kind}: {' '.join(f'{x:.3f}' for x in v)}, median {(v[1] + v[2]) / 2:.3f}")
        # The scale measure starts its own stand-in from RELEASE: point it at this tree's.
        real_proc = bench.Proc

        def proc(args, **kw):
            if os.path.basename(args[0]) == "gateway-standin":
                args = [standin] + args[1:]
            return real_proc(args, **kw)

        bench.Proc = proc
        for _ in range(2):
            for name, release in builds.items():
                bench.RELEASE = release
                s = bench.measure_scale(tmp, 1000, window=15)
                quiet, loaded, rps, p99 = bench.measure_wrk(tmp, port, seconds=10)
                print(f"{name} 1,000 forwards: CPU {s['cpu'] * 100:.1f}% RSS {s['rss']:.1f} MiB render {s['render_ms']:.1f} ms; "
                      f"wrk {rps:.0f} req/s p99 {p99}, probe lag p99 {quiet * 1e3:g}/{loaded * 1e3:g} ms", flush=True)
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
