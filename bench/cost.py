#!/usr/bin/env python3
"""What a laptop costs, in one run (issue 41): prints three Markdown tables.

1. Bytes on the wire per round and per day (at the default 15 s interval), remote write 1.0 with classic
   histograms, 1.0 with native ones, and 2.0 with native ones, on the embedded default config (its forward is not
   there) and on one with four forwards to a stand-in gateway. Read off the exporter's own
   `openclaw_exporter_remote_write_bytes_total` over the rounds it sent meanwhile (`rounds_total{result="sent"}`),
   past a warm-up, at the default `batch_rounds` (4). The receiver is this script's: it takes every request
   (and, as a 2.0 receiver, answers the written-headers), so the bytes are the exporter's alone.
2. RSS and CPU against blackbox_exporter + a Prometheus agent doing the same job side by side: one forward's
   SYN every second and first byte every 5 s against the same stand-in, remote written to the same receiver.
   Ratios are ours / theirs.
3. The first byte through a real ssh forward (a stand-in answering after 20 ms; tests/src/bin/bench_forwards.rs)
   against a raw client on the same forward in the same seconds at the same cadence
   (tests/src/bin/bench_reference.rs), p50, p90 and p99: idle; with 16 forwards probing at once; and while a backlog the size of a day's rounds is replayed to a
   receiver (filled by an exporter with 16 forwards taking a round every 100 ms against no receiver; replayed
   to one that takes at most 64 KiB a request, so the backlog goes in many batches, each decoded, re-encoded and
   compressed while the probes run).

Usage: bash bench/cost.sh (builds in release mode; needs sshd, Debian's prometheus and blackbox exporter).
"""

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

EXPORTER = os.path.join(bench.RELEASE, "openclaw-tunnel-exporter")
WARM_UP = 8
# First bytes per case (100 ms apart, the raw client at the same cadence): through ssh the first byte is bimodal
# (~22 ms, or ~40-60 ms when ssh's delayed ACK holds it), so a p99 of a few hundred samples moves by milliseconds
# between runs of the same build; 600 keeps a case near a minute.
SAMPLES = 600
WINDOW = 16
PER_DAY = 86400 / 15


class Receiver:
    """A remote-write receiver taking every request: `v2` answers a 2.0 request with the written-headers (it
    stores everything); otherwise it reads 1.0 only (a 2.0 body is an empty 1.0 request to it). `max_body`:
    bigger bodies are answered 413 (the sender halves its batch); `delay`: seconds before each answer."""

    def __init__(self, v2=False, max_body=None, delay=0.0):
        self.port = bench.free_port()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                time.sleep(owner.delay)
                if owner.max_body and len(body) > owner.max_body:
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(204)
                if owner.v2 and "io.prometheus.write.v2" in self.headers.get("Content-Type", ""):
                    for what in ("Samples", "Histograms", "Exemplars"):
                        self.send_header(f"X-Prometheus-Remote-Write-{what}-Written", "1000000")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.v2, self.max_body, self.delay = v2, max_body, delay
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def stop(self):
        self.server.shutdown()


def exporter(tmp, name, body):
    """Start the exporter on `body` (TOML merged over the embedded default) with its own web port."""
    web = bench.free_port()
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f'[web]\nlisten = "127.0.0.1:{web}"\n{body}')
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    proc = bench.Proc([EXPORTER, "--config", path], env=env)
    bench.wait_listening(web, f"exporter {name}")
    return proc, web


def scrape(web):
    return bench.get(f"http://127.0.0.1:{web}/metrics")


def remote_write(url, queue_dir, protocol, histograms, interval="1s"):
    return (f'[remote_write]\nurl = "{url}"\ninterval = "{interval}"\nqueue_dir = "{queue_dir}"\n'
            f'protocol = "{protocol}"\nhistograms = "{histograms}"\n')


def forwards(ports, first_byte="5s"):
    return "".join(f'[[forward]]\nname = "f{i}"\nlocal = "127.0.0.1:{port}"\nfirst_byte_interval = "{first_byte}"\n'
                   for i, port in enumerate(ports))


WIRES = [("1.0", "classic", False), ("1.0", "native", False), ("2.0", "native", True)]


def measure_bytes(tmp, gateway_ports):
    """Bytes per round for each wire on each config, every run at once (bytes do not depend on the CPU)."""
    runs = []
    for config, ports in [("embedded default", None), ("four forwards", gateway_ports)]:
        for protocol, histograms, v2 in WIRES:
            receiver = Receiver(v2=v2)
            name = f"bytes-{len(runs)}"
            body = remote_write(receiver.url(), os.path.join(tmp, name), protocol, histograms)
            if ports:
                body += forwards(ports)
            proc, web = exporter(tmp, name, body)
            runs.append((config, protocol, histograms, receiver, proc, web))
    time.sleep(WARM_UP)
    start = {run[5]: scrape(run[5]) for run in runs}
    time.sleep(WINDOW)
    rows = []
    for config, protocol, histograms, receiver, proc, web in runs:
        before, after = start[web], scrape(web)
        sent = "openclaw_exporter_remote_write_rounds_total{result=\"sent\"}"
        rounds = bench.metric_sum(after, sent) - bench.metric_sum(before, sent)
        sent_bytes = (bench.metric_sum(after, "openclaw_exporter_remote_write_bytes_total")
                      - bench.metric_sum(before, "openclaw_exporter_remote_write_bytes_total"))
        info = [line for line in after.splitlines() if line.startswith("openclaw_exporter_remote_write_protocol_info")]
        series = sum(1 for line in after.splitlines() if line and not line.startswith("#"))
        rows.append((config, protocol, histograms, sent_bytes / max(rounds, 1), rounds, series, info))
        proc.stop()
        receiver.stop()
    return rows


def measure_peers(tmp, gateway_port, seconds=60):
    """RSS and CPU of ours beside blackbox_exporter + a Prometheus agent, the same job, the same receiver."""
    receiver = Receiver()
    ours, _ = exporter(tmp, "ours-peer", forwards([gateway_port]) + remote_write(
        receiver.url(), os.path.join(tmp, "ours-peer-queue"), "1.0", "classic", interval="15s"))
    bb, bb_port = bench.start_blackbox(tmp)
    agent_dir = os.path.join(tmp, "agent")
    os.makedirs(agent_dir)
    target = f"127.0.0.1:{gateway_port}"
    with open(os.path.join(agent_dir, "agent.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 15s\nscrape_configs:\n"
                f"  - job_name: syn\n    scrape_interval: 1s\n    metrics_path: /probe\n"
                f"    params: {{module: [tcp_connect], target: ['{target}']}}\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{bb_port}']}}]\n"
                f"  - job_name: first_byte\n    scrape_interval: 5s\n    metrics_path: /probe\n"
                f"    params: {{module: [http_2xx], target: ['http://{target}/healthz']}}\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{bb_port}']}}]\n"
                f"remote_write:\n  - url: {receiver.url()}\n")
    agent_port = bench.free_port()
    agent = bench.Proc(["prometheus", "--enable-feature=agent", f"--config.file={agent_dir}/agent.yml",
                        f"--storage.agent.path={agent_dir}/data", f"--web.listen-address=127.0.0.1:{agent_port}"])
    bench.wait_listening(agent_port, "prometheus agent")
    time.sleep(5)
    start = {p.pid: bench.cpu_seconds(p.pid) for p in (ours, bb, agent)}
    time.sleep(seconds)
    cpu = {p.pid: bench.cpu_seconds(p.pid) - start[p.pid] for p in (ours, bb, agent)}
    rss = {p.pid: bench.rss_mib(p.pid) for p in (ours, bb, agent)}
    result = {
        "ours_cpu": cpu[ours.pid], "ours_rss": rss[ours.pid],
        "bb_cpu": cpu[bb.pid], "bb_rss": rss[bb.pid], "agent_cpu": cpu[agent.pid], "agent_rss": rss[agent.pid],
        "seconds": seconds,
    }
    for p in (ours, bb, agent):
        p.stop()
    receiver.stop()
    return result


def first_bytes(web, forward):
    status = json.loads(bench.get(f"http://127.0.0.1:{web}/status.json"))
    entry = next(f for f in status["forwards"] if f["forward"] == forward)
    return entry["first_byte_seconds"]


def compare(web, port, until, what, interval_ms=100):
    """Ours (the exporter's exact quantiles of forward f0) beside the raw client on the same forward, from now
    until `until()` holds."""
    raw = subprocess.Popen([os.path.join(bench.RELEASE, "bench-reference"), "--target", f"127.0.0.1:{port}",
                            "--until-stdin-closes", "--interval-ms", str(interval_ms)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    started = time.time()
    while not until():
        if time.time() - started > 300:
            sys.exit(f"{what}: did not finish")
        time.sleep(0.5)
    out, _ = raw.communicate(input="")
    samples = json.loads(out)
    ours = first_bytes(web, "f0")
    return what, ours, samples, time.time() - started


def measure_first_byte(tmp):
    helper = subprocess.Popen([os.path.join(bench.RELEASE, "bench-forwards"), "--forwards", "16"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = json.loads(helper.stdout.readline())["forwards"]
    rows = []
    try:
        count = lambda web: first_bytes(web, "f0")["count"]  # noqa: E731
        # Idle: one forward.
        proc, web = exporter(tmp, "fb-idle", forwards(ports[:1], first_byte="100ms"))
        rows.append(compare(web, ports[0], lambda: count(web) >= SAMPLES, "idle, one forward"))
        proc.stop()
        # Sixteen forwards probing at once.
        proc, web = exporter(tmp, "fb-16", forwards(ports, first_byte="100ms"))
        rows.append(compare(web, ports[0], lambda: count(web) >= SAMPLES, "16 forwards probing at once"))
        proc.stop()
        # A day's backlog replayed: fill a queue with no receiver, then measure while it drains.
        queue = os.path.join(tmp, "backlog-queue")
        dead = f"http://127.0.0.1:{bench.free_port()}/api/v1/write"
        filler, filler_web = exporter(tmp, "fb-fill", forwards(ports, first_byte="1h")
                                      + remote_write(dead, queue, "1.0", "classic", interval="100ms"))
        time.sleep(40)
        backlog = bench.metric_sum(scrape(filler_web), "openclaw_exporter_remote_write_queue_bytes")
        filler.stop()
        receiver = Receiver(max_body=64 * 1024, delay=0.01)
        proc, web = exporter(tmp, "fb-replay", forwards(ports[:1], first_byte="50ms")
                             + remote_write(receiver.url(), queue, "1.0", "classic", interval="15s"))
        drained = lambda: bench.metric_sum(scrape(web), "openclaw_exporter_remote_write_rounds_queued") == 0  # noqa: E731
        what = f"while {backlog / 1e6:.1f} MB of queued rounds are replayed"
        rows.append(compare(web, ports[0], lambda: drained() and count(web) >= 200, what, interval_ms=50))
        proc.stop()
        receiver.stop()
    finally:
        helper.stdin.close()
        helper.wait(30)
    return rows


def main():
    tmp = tempfile.mkdtemp(prefix="oce-cost-")
    gateway_ports = [bench.free_port() for _ in range(4)]
    listens = [arg for port in gateway_ports for arg in ("--listen", f"127.0.0.1:{port}")]
    gateway = bench.Proc([os.path.join(bench.RELEASE, "gateway-standin"), *listens])
    for port in gateway_ports:
        bench.wait_listening(port, "gateway stand-in")
    gateway_port = gateway_ports[0]
    try:
        bytes_rows = measure_bytes(tmp, gateway_ports)
        peers = measure_peers(tmp, gateway_port)
        fb_rows = measure_first_byte(tmp)
    finally:
        gateway.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print("### Bytes on the wire (batch_rounds = 4)\n")
    print("| config | protocol | histograms | series on /metrics | bytes per round | KB per day at 15 s |")
    print("|---|---|---|---|---|---|")
    for config, protocol, histograms, per_round, rounds, series, info in bytes_rows:
        print(f"| {config} | {protocol} | {histograms} | {series} | {per_round:,.0f} | "
              f"{per_round * PER_DAY / 1e3:,.0f} |")
        if not any(f'protocol="{protocol}"' in line and f'histograms="{histograms}"' in line for line in info):
            print(f"|   (negotiated otherwise: {info}) | | | | | |")

    t = peers
    theirs_cpu, theirs_rss = t["bb_cpu"] + t["agent_cpu"], t["bb_rss"] + t["agent_rss"]
    print(f"\n### Beside blackbox_exporter + a Prometheus agent ({t['seconds']} s, one forward: SYN every second, "
          "first byte every 5 s, remote written every 15 s)\n")
    print("| measure | openclaw-tunnel-exporter | blackbox_exporter + Prometheus agent | ratio |")
    print("|---|---|---|---|")
    print(f"| CPU seconds | {t['ours_cpu']:.2f} | {t['bb_cpu']:.2f} + {t['agent_cpu']:.2f} = {theirs_cpu:.2f} | "
          f"{t['ours_cpu'] / theirs_cpu:.2f}x |")
    print(f"| RSS (MiB) | {t['ours_rss']:.1f} | {t['bb_rss']:.1f} + {t['agent_rss']:.1f} = {theirs_rss:.1f} | "
          f"{t['ours_rss'] / theirs_rss:.2f}x |")

    print("\n### First byte through a real ssh forward (20 ms gateway) beside a raw client, the same seconds\n")
    print("| case | samples ours / raw | p50 ours / raw (ms) | p90 ours / raw (ms) | p99 ours / raw (ms) | "
          "p50 diff (ms) | p99 diff (ms) |")
    print("|---|---|---|---|---|---|---|")
    for what, ours, raw, seconds in fb_rows:
        r50, r90, r99 = (bench.quantile(raw, q) for q in (0.5, 0.9, 0.99))
        print(f"| {what} ({seconds:.0f} s) | {ours['count']} / {len(raw)} | {ours['p50'] * 1e3:.2f} / {r50 * 1e3:.2f} | "
              f"{ours['p90'] * 1e3:.2f} / {r90 * 1e3:.2f} | {ours['p99'] * 1e3:.2f} / {r99 * 1e3:.2f} | "
              f"{(ours['p50'] - r50) * 1e3:+.2f} | {(ours['p99'] - r99) * 1e3:+.2f} |")


if __name__ == "__main__":
    main()
