#!/usr/bin/env python3
"""Side-by-side benchmark: openclaw-tunnel-exporter against blackbox_exporter, one run, same loopback targets.

Prints one Markdown table: RSS idle and after 10,000 probes, CPU seconds per 1,000 SYN (tcp_connect) and per
1,000 first-byte (http_2xx) probes, and first-byte accuracy against a raw-socket client on a target that answers
after a fixed 20 ms (median and p99 error). Ratios are ours / blackbox's.

How each tool is driven, so the numbers are read right:
- this exporter probes on its own schedule: 50 forwards at a 100 ms interval. Its "SYN probe" is a tunnel
  round: a TCP connect AND the /proc listener-owner lookup, so it does more per probe than blackbox's tcp_connect.
- blackbox_exporter probes when asked: 8 client threads GET /probe back to back; its CPU includes serving
  those requests, which is how it is always used (Prometheus asks for every probe).
CPU is utime+stime from /proc/PID/stat; RSS is VmRSS from /proc/PID/status.

Usage: bench/run.sh (builds in release mode, installs blackbox_exporter from Debian if missing).
"""

import atexit
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
PROBES = 10_000
FORWARDS = 50
ACCURACY_SAMPLES = 300
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def raw_first_byte(port, samples):
    """The reference: a plain socket, request written -> first byte, in seconds."""
    out = []
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    for _ in range(samples):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
        t0 = time.perf_counter()
        s.recv(1)
        out.append(time.perf_counter() - t0)
        s.close()
    return out


RUNNING = []


@atexit.register
def stop_all():
    for proc in RUNNING:
        proc.stop()


class Proc:
    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        RUNNING.append(self)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is not None:
            return
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()


def start_ours(tmp, fast_port, slow_port, syn_interval, fb_interval, accuracy=False):
    web = free_port()
    lines = [f'[web]\nlisten = "127.0.0.1:{web}"\n[scheduler]\nmax_concurrent_probes = 256\n']
    if accuracy:
        lines.append(f'[[forward]]\nname = "acc"\nlocal = "127.0.0.1:{slow_port}"\nsyn_interval = "1h"\n'
                     f'first_byte_interval = "50ms"\ntimeout = "1s"\n')
    else:
        for i in range(FORWARDS):
            lines.append(f'[[forward]]\nname = "f{i}"\nlocal = "127.0.0.1:{fast_port}"\n'
                         f'syn_interval = "{syn_interval}"\nfirst_byte_interval = "{fb_interval}"\ntimeout = "1s"\n')
    path = os.path.join(tmp, f"ours-{web}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    proc = Proc([os.path.join(RELEASE, "openclaw-tunnel-exporter"), "--config", path],
                env={**os.environ, "RUST_LOG": "warn"})
    wait_listening(web, "openclaw-tunnel-exporter")
    return proc, web


def ours_count(web, metric):
    return metric_sum(get(f"http://127.0.0.1:{web}/metrics"), metric)


def measure_ours(tmp, fast_port, kind):
    """Run `kind` probes only until PROBES are done; returns (cpu seconds, probes, rss idle, rss after)."""
    syn, fb = ("100ms", "1h") if kind == "syn" else ("1h", "100ms")
    metric = "openclaw_tunnel_syn_attempts_total" if kind == "syn" else "openclaw_gateway_probe_attempts_total"
    proc, web = start_ours(tmp, fast_port, None, syn, fb)
    time.sleep(0.5)
    idle = rss_mib(proc.pid)
    start_count, start_cpu = ours_count(web, metric), cpu_seconds(proc.pid)
    while ours_count(web, metric) - start_count < PROBES:
        time.sleep(0.25)
    cpu = cpu_seconds(proc.pid) - start_cpu
    probes = ours_count(web, metric) - start_count
    after = rss_mib(proc.pid)
    proc.stop()
    return cpu, probes, idle, after


def start_blackbox(tmp):
    port = free_port()
    cfg = os.path.join(tmp, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 1s\n"
                "  http_2xx:\n    prober: http\n    timeout: 1s\n    http:\n      preferred_ip_protocol: ip4\n")
    exe = "/usr/bin/prometheus-blackbox-exporter"
    proc = Proc([exe, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"])
    wait_listening(port, "blackbox_exporter")
    return proc, port


def drive_blackbox(port, module, target, count, threads=8, collect=None):
    path = f"/probe?module={module}&target={target}"
    per_thread = count // threads

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(per_thread):
            conn.request("GET", path)
            body = conn.getresponse().read().decode()
            if collect is not None:
                collect(body)
            elif "probe_success 1" not in body:
                sys.exit(f"blackbox probe failed: {body[-300:]}")
        conn.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per_thread * threads


def bulk_server(size):
    """A server that sends `size` bytes to each client, then closes."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    chunk = b"x" * (1 << 20)

    def serve():
        while True:
            conn, _ = srv.accept()
            left = size
            while left > 0:
                n = conn.send(chunk[:min(len(chunk), left)])
                left -= n
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def first_byte_samples(port, samples):
    """connect + GET + time to first byte, new connection each time (as the CLI does), in seconds."""
    out = []
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    for _ in range(samples):
        t0 = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
        s.recv(1)
        out.append(time.perf_counter() - t0)
        s.close()
    return out


def throughput_mib_s(port, size):
    best = 0.0
    buf = bytearray(1 << 20)
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", port))
        t0 = time.perf_counter()
        got = 0
        while True:
            n = s.recv_into(buf)
            if n == 0:
                break
            got += n
        elapsed = time.perf_counter() - t0
        s.close()
        if got != size:
            sys.exit(f"bulk transfer got {got} of {size} bytes")
        best = max(best, size / elapsed / (1 << 20))
    return best


def measure_tap(tmp, fast_port):
    """The auth tap against a direct connection: added first-byte latency and 100 MiB throughput."""
    size = 100 << 20
    bulk_port = bulk_server(size)
    web, tap_fast, tap_bulk = free_port(), free_port(), free_port()
    path = os.path.join(tmp, "tap.toml")
    with open(path, "w") as f:
        f.write(f'[web]\nlisten = "127.0.0.1:{web}"\n[auth_probe]\nenabled = false\ninterval = "1m"\n'
                f'[[forward]]\nname = "t"\nlocal = "127.0.0.1:{fast_port}"\nsyn_interval = "1h"\nfirst_byte_interval = "1h"\n'
                f'[[auth_tap]]\nforward = "t"\nlisten = "127.0.0.1:{tap_fast}"\nupstream = "127.0.0.1:{fast_port}"\n'
                f'[[auth_tap]]\nforward = "t"\nlisten = "127.0.0.1:{tap_bulk}"\nupstream = "127.0.0.1:{bulk_port}"\n')
    proc = Proc([os.path.join(RELEASE, "openclaw-tunnel-exporter"), "--config", path],
                env={**os.environ, "RUST_LOG": "warn"})
    wait_listening(tap_fast, "auth tap")
    first_byte_samples(fast_port, 200)  # warm up
    first_byte_samples(tap_fast, 200)
    direct, tapped = [], []
    for _ in range(10):  # interleaved, so drift hits both alike
        direct += first_byte_samples(fast_port, 200)
        tapped += first_byte_samples(tap_fast, 200)
    direct_mib, tapped_mib = throughput_mib_s(bulk_port, size), throughput_mib_s(tap_bulk, size)
    rss = rss_mib(proc.pid)
    proc.stop()
    return direct, tapped, direct_mib, tapped_mib, rss


def main():
    tmp = tempfile.mkdtemp(prefix="oce-bench")
    standin = os.path.join(RELEASE, "gateway-standin")
    fast_port, slow_port = free_port(), free_port()
    fast = Proc([standin, "--listen", f"127.0.0.1:{fast_port}"])
    slow = Proc([standin, "--listen", f"127.0.0.1:{slow_port}", "--delay-ms", "20"])
    wait_listening(fast_port, "stand-in")
    wait_listening(slow_port, "slow stand-in")
    rows = []
    try:
        # This exporter: SYN rounds, then first-byte probes, each in a fresh process.
        o_syn_cpu, o_syn_n, o_idle, o_after_syn = measure_ours(tmp, fast_port, "syn")
        o_fb_cpu, o_fb_n, _, o_after_fb = measure_ours(tmp, fast_port, "first_byte")

        # blackbox_exporter: the same counts against the same targets.
        bb, bb_port = start_blackbox(tmp)
        time.sleep(0.5)
        b_idle = rss_mib(bb.pid)
        c0 = cpu_seconds(bb.pid)
        b_syn_n = drive_blackbox(bb_port, "tcp_connect", f"127.0.0.1:{fast_port}", PROBES)
        b_syn_cpu = cpu_seconds(bb.pid) - c0
        b_after_syn = rss_mib(bb.pid)
        c0 = cpu_seconds(bb.pid)
        b_fb_n = drive_blackbox(bb_port, "http_2xx", f"http://127.0.0.1:{fast_port}/healthz", PROBES)
        b_fb_cpu = cpu_seconds(bb.pid) - c0
        b_after_fb = rss_mib(bb.pid)

        # Accuracy on the 20 ms target: raw socket reference, blackbox per probe, ours from hdrhistogram.
        raw = raw_first_byte(slow_port, ACCURACY_SAMPLES)
        bb_values = []
        lock = threading.Lock()

        def keep(body):
            for line in body.splitlines():
                if line.startswith('probe_http_duration_seconds{phase="processing"}'):
                    with lock:
                        bb_values.append(float(line.rsplit(" ", 1)[1]))

        drive_blackbox(bb_port, "http_2xx", f"http://127.0.0.1:{slow_port}/healthz", ACCURACY_SAMPLES, threads=1,
                       collect=keep)
        bb.stop()
        acc, acc_web = start_ours(tmp, fast_port, slow_port, "1h", "50ms", accuracy=True)
        while True:
            status = json.loads(get(f"http://127.0.0.1:{acc_web}/status.json"))
            fb = status["forwards"][0]["first_byte_seconds"]
            if fb["count"] >= ACCURACY_SAMPLES:
                break
            time.sleep(0.5)
        acc.stop()
        ref50, ref99 = quantile(raw, 0.5), quantile(raw, 0.99)
        o_err50, o_err99 = fb["p50"] - ref50, fb["p99"] - ref99
        b_err50, b_err99 = quantile(bb_values, 0.5) - ref50, quantile(bb_values, 0.99) - ref99
        tap_direct, tap_tapped, direct_mib, tapped_mib, tap_rss = measure_tap(tmp, fast_port)
    finally:
        fast.stop()
        slow.stop()

    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "n/a"

    per_k = lambda cpu, n: cpu / n * 1000  # noqa: E731
    rows = [
        ("RSS idle (MiB)", o_idle, b_idle, "{:.1f}"),
        (f"RSS after {PROBES:,} SYN probes (MiB)", o_after_syn, b_after_syn, "{:.1f}"),
        (f"RSS after {PROBES:,} first-byte probes (MiB)", o_after_fb, b_after_fb, "{:.1f}"),
        ("CPU s per 1,000 SYN probes", per_k(o_syn_cpu, o_syn_n), per_k(b_syn_cpu, b_syn_n), "{:.3f}"),
        ("CPU s per 1,000 first-byte probes", per_k(o_fb_cpu, o_fb_n), per_k(b_fb_cpu, b_fb_n), "{:.3f}"),
        ("first-byte error vs raw socket, median (us)", o_err50 * 1e6, b_err50 * 1e6, "{:+.0f}"),
        ("first-byte error vs raw socket, p99 (us)", o_err99 * 1e6, b_err99 * 1e6, "{:+.0f}"),
    ]
    print(f"raw-socket reference on the 20 ms target: p50 {ref50 * 1e3:.3f} ms, p99 {ref99 * 1e3:.3f} ms "
          f"({ACCURACY_SAMPLES} samples); {FORWARDS} forwards at 100 ms for ours; blackbox driven by 8 threads")
    print()
    print("| measure | openclaw-tunnel-exporter | blackbox_exporter | ratio |")
    print("|---|---|---|---|")
    for name, ours, theirs, fmt in rows:
        r = ratio(abs(ours), abs(theirs)) if "error" in name else ratio(ours, theirs)
        print(f"| {name} | {fmt.format(ours)} | {fmt.format(theirs)} | {r} |")

    print()
    print(f"auth tap: {len(tap_direct)} requests each way (new connection, GET /healthz, time to first byte), "
          "interleaved; 100 MiB stream, best of 3")
    print()
    print("| measure | direct | through the tap | added |")
    print("|---|---|---|---|")
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        d, t = quantile(tap_direct, q) * 1e6, quantile(tap_tapped, q) * 1e6
        print(f"| connect + first byte {label} (us) | {d:.0f} | {t:.0f} | {t - d:+.0f} |")
    print(f"| 100 MiB stream (MiB/s) | {direct_mib:.0f} | {tapped_mib:.0f} | {tapped_mib / direct_mib:.2f}x |")
    print(f"| exporter RSS with 2 taps after the runs (MiB) | | {tap_rss:.1f} | |")


if __name__ == "__main__":
    main()
