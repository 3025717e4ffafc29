#!/usr/bin/env python3
"""The remote-write append path, two builds side by side in one run, interleaved: CPU per round and queue bytes
per round, so the queue's format and accounting (issue 18) can be held to "unchanged within the noise".

    git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release \
        -p openclaw-tunnel-exporter)
    cargo build --release -p openclaw-tunnel-exporter && python3 bench/queue_ab.py /tmp/old-target/release

Each build runs the same config (one forward to a closed port, remote write every 100 ms to a receiver that is
not there, so every round is appended, fsynced and kept) for WINDOW seconds after a warm-up, and once more
without `[remote_write]`; the append path's CPU per round is the difference of the two runs' CPU
(utime+stime from /proc/PID/stat) divided by the rounds appended, read from the segment files themselves (both
the format before the record magic and the one after), with the series per round from the record headers: a
round that carries more series (new metrics) costs more for that reason alone, so the per-series columns are
the ones that compare the append path itself. Three rounds of that, interleaved; the table gives each run and
the median. The queue directory is on the disk under the system's temporary directory.
"""

import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
WINDOW = 20
WARMUP = 3
REPEATS = 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def queue_rounds_and_bytes(queue_dir):
    """Records, bytes and samples (series) in every segment, either format."""
    rounds = size = samples = 0
    if not os.path.isdir(queue_dir):
        return 0, 0, 0
    for name in os.listdir(queue_dir):
        if not name.endswith(".seg"):
            continue
        with open(os.path.join(queue_dir, name), "rb") as f:
            data = f.read()
        size += len(data)
        if data.startswith(b"OCRWQ002"):
            offset, header, at_len, at_samples = 8, 32, 4, 28
        else:
            offset, header, at_len, at_samples = 0, 28, 0, 24
        while offset + header <= len(data):
            (length,) = struct.unpack_from("<I", data, offset + at_len)
            if offset + header + length > len(data):
                break
            rounds += 1
            samples += struct.unpack_from("<I", data, offset + at_samples)[0]
            offset += header + length
    return rounds, size, samples


def run(binary, tmp, remote_write):
    web = free_port()
    closed = free_port()
    queue_dir = tempfile.mkdtemp(dir=tmp, prefix="queue")
    config = os.path.join(tmp, f"config-{web}.toml")
    text = (
        f'[web]\nlisten = "127.0.0.1:{web}"\n'
        f'[[forward]]\nname = "t"\nlocal = "127.0.0.1:{free_port()}"\nsyn_interval = "1s"\n'
        f'first_byte_interval = "1s"\nreadiness_interval = "1h"\n'
    )
    if remote_write:
        text += (
            f'[remote_write]\nurl = "http://127.0.0.1:{closed}/api/v1/write"\ninterval = "100ms"\n'
            f'queue_dir = "{queue_dir}"\nmax_bytes = "1GiB"\n'
        )
    with open(config, "w") as f:
        f.write(text)
    proc = subprocess.Popen([binary, "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", web), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"{binary} did not listen")
                time.sleep(0.05)
        time.sleep(WARMUP)
        cpu0, (rounds0, bytes0, samples0) = cpu_seconds(proc.pid), queue_rounds_and_bytes(queue_dir)
        time.sleep(WINDOW)
        cpu1, (rounds1, bytes1, samples1) = cpu_seconds(proc.pid), queue_rounds_and_bytes(queue_dir)
    finally:
        proc.kill()
        proc.wait()
    return cpu1 - cpu0, rounds1 - rounds0, bytes1 - bytes0, samples1 - samples0


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/queue_ab.py OLD_RELEASE_DIR (a target/release holding the old openclaw-tunnel-exporter)")
    builds = {
        "old": os.path.join(sys.argv[1], "openclaw-tunnel-exporter"),
        "new": os.path.join(ROOT, "target", "release", "openclaw-tunnel-exporter"),
    }
    tmp = tempfile.mkdtemp(prefix="oce-queue-ab")
    keys = ("cpu_ms", "bytes", "series", "cpu_us_per_series", "bytes_per_series")
    results = {name: {key: [] for key in keys} for name in builds}
    for _ in range(REPEATS):
        for name, binary in builds.items():
            base_cpu, _, _, _ = run(binary, tmp, remote_write=False)
            cpu, rounds, size, samples = run(binary, tmp, remote_write=True)
            if rounds == 0:
                sys.exit(f"{name}: no round appended")
            r = results[name]
            r["cpu_ms"].append((cpu - base_cpu) / rounds * 1000)
            r["bytes"].append(size / rounds)
            r["series"].append(samples / rounds)
            r["cpu_us_per_series"].append((cpu - base_cpu) / samples * 1e6)
            r["bytes_per_series"].append(size / samples)
    print("| build | CPU ms per round (3 runs) | median | bytes per round (3 runs) | median | series per round "
          "| CPU us per series (median) | bytes per series (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in builds:
        r = results[name]
        print(
            f"| {name} | {' '.join(f'{x:.3f}' for x in r['cpu_ms'])} | {statistics.median(r['cpu_ms']):.3f} | "
            f"{' '.join(f'{x:.0f}' for x in r['bytes'])} | {statistics.median(r['bytes']):.0f} | "
            f"{statistics.median(r['series']):.0f} | {statistics.median(r['cpu_us_per_series']):.2f} | "
            f"{statistics.median(r['bytes_per_series']):.2f} |"
        )
    med = {n: {k: statistics.median(results[n][k]) for k in keys} for n in builds}
    print(
        f"\nnew / old: CPU per round {med['new']['cpu_ms'] / med['old']['cpu_ms']:.2f}, bytes per round "
        f"{med['new']['bytes'] / med['old']['bytes']:.3f}, series per round "
        f"{med['new']['series'] / med['old']['series']:.3f}, CPU per series "
        f"{med['new']['cpu_us_per_series'] / med['old']['cpu_us_per_series']:.2f}, bytes per series "
        f"{med['new']['bytes_per_series'] / med['old']['bytes_per_series']:.3f}"
    )


if __name__ == "__main__":
    main()
