#!/usr/bin/env python3
"""A local attacker's floods against the exporter, beside blackbox_exporter on the same basic-auth web config.

Prints two Markdown tables. Phases, one after the other in one run, on the same gateway stand-in; in each, 20
forwards are probed every 100 ms (first byte), a tap sits in front of the stand-in, a good scraper (the right
basic-auth credential, kept alive, every 100 ms) scrapes each exporter, and the raw-socket reference client
(tests/src/bin/bench_reference.rs) times the stand-in beside them:
- idle: nothing else, 20 s;
- 16 threads send 10,000 never-seen wrong passwords to our /metrics;
- 16 threads send 2,000 never-seen tokens through our tap (argon2id);
- both at once (issue 19's burst);
- the same wrong-password threads against blackbox_exporter (exporter-toolkit's basic auth: bcrypt on every
  request that misses its cache of successes) for 30 s: it absorbs about a dozen a second, so 10,000 would take
  a quarter of an hour.
Floods run in processes of their own, so their threads do not hold the GIL the timing threads need.

Rows: good-scrape latency p50/p99 (ms), our probe lag p99 (bucket bound), our first byte p50 (interpolated)
and mean (histogram sum / count), the raw client's first byte p50 (ms, the machine's own noise floor), how the
wrong passwords were answered, and the ratios ours / blackbox. Numbers depend on the machine; the shape
(a good scrape is answered from the cache whatever the flood; probes are not held up) should not.

Usage: bash tests/install-deps.sh --bench && cargo build --release --workspace && python3 bench/overload.py
"""

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (RELEASE, Proc, RawReference, free_port, get, lag_buckets, lag_p99,  # noqa: E402
                   quantile, wait_listening)

USER, PASSWORD = "prom", "right-horse-71c"
TOKEN = "bench-overload-token-0123456789"
FORWARDS = 20
IDLE_SECONDS = 20
WRONG_PASSWORDS = 10_000
TAP_TOKENS = 2_000
WORKERS = 16
PEER_SECONDS = 30


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Client:
    """A kept-alive HTTP/1.1 connection (http.client: Content-Length and chunked answers alike)."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path, headers):
        """(status, seconds to the full answer); reconnects once if the server closed the connection."""
        for attempt in range(2):
            t0 = time.perf_counter()
            try:
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
                response.read()
                return response.status, time.perf_counter() - t0
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


class GoodScraper:
    """Scrapes `port` with the right credential every 100 ms on a kept-alive connection until stopped."""

    def __init__(self, port):
        self.port, self.samples, self.statuses, self.stopped = port, [], [], threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        client = Client(self.port)
        while not self.stopped.is_set():
            status, seconds = client.get("/metrics", {"Authorization": basic(USER, PASSWORD)})
            self.statuses.append(status)
            self.samples.append(seconds)
            time.sleep(0.1)

    def stop(self):
        self.stopped.set()
        self.thread.join()
        return self.samples, self.statuses


def tally(count, send):
    """Call `send(i)` for i in 0..count from WORKERS threads (worker w takes w, w + WORKERS, ...; `send` returns
    the answer's status, or None to stop that worker); {status: how many}."""
    answers = {}
    lock = threading.Lock()

    def worker(w):
        for i in range(w, count, WORKERS):
            status = send(i)
            if status is None:
                break
            with lock:
                answers[status] = answers.get(status, 0) + 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def flood_passwords(port, count, seconds):
    """`count` never-seen wrong passwords from WORKERS threads, stopping after `seconds`; {status: count}."""
    deadline = time.perf_counter() + seconds
    clients = threading.local()

    def send(i):
        if time.perf_counter() > deadline:
            return None
        if not hasattr(clients, "client"):
            clients.client = Client(port)
        return clients.client.get("/metrics", {"Authorization": basic(USER, f"wrong-{port}-{i}")})[0]

    return tally(count, send)


def flood_tap(port, count):
    """`count` never-seen tokens through the tap, one connection each, from WORKERS threads; {status: count}."""

    def send(i):
        request = (f"POST /tools/invoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer flood-{i}\r\n"
                   "Connection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
        data = b""
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1]) if data else 0

    return tally(count, send)


class Flood:
    """A flood in a process of its own (this script with --flood), so its threads do not hold the GIL the
    good scrapers' timing threads need."""

    def __init__(self, *args):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--flood", *map(str, args)],
                                  stdout=subprocess.PIPE, text=True)

    def wait(self):
        out, _ = self.p.communicate()
        return {int(k): v for k, v in json.loads(out).items()}


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics", headers={"Authorization": basic(USER, PASSWORD)})
    text = conn.getresponse().read().decode()
    conn.close()
    return text


def histogram(text, name):
    """(cumulative buckets {le: count}, sum, count) of histogram `name`, summed over label sets."""
    buckets, total, count = {}, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count += float(line.rsplit(" ", 1)[1])
    return buckets, total, count


def p50_interpolated(before, after):
    """The median between two scrapes as Prometheus's histogram_quantile computes it: linear within the bucket."""
    deltas = sorted(((float("inf") if le == "+Inf" else float(le)), after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0
    lower, below = 0.0, 0.0
    for bound, count in deltas:
        if total and count >= 0.5 * total:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (0.5 * total - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return float("nan")


class RawLoop:
    """The raw-socket reference client on the stand-in, in 2 s runs back to back until stopped."""

    def __init__(self, port):
        self.port, self.samples, self.stopped = port, [], threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stopped.is_set():
            self.samples += RawReference(self.port, 2).stop()

    def stop(self):
        self.stopped.set()
        self.thread.join()
        return self.samples


class Window:
    """What our exporter's histograms say between two scrapes."""

    def __init__(self, port):
        self.port = port
        self.before = scrape(port)

    def close(self):
        after = scrape(self.port)
        lag = lag_p99(lag_buckets(self.before), lag_buckets(after))
        b0, s0, c0 = histogram(self.before, "openclaw_gateway_first_byte_seconds")
        b1, s1, c1 = histogram(after, "openclaw_gateway_first_byte_seconds")
        mean = (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")
        return lag, p50_interpolated(b0, b1), mean, after


def main():
    for exe in ("openclaw-tunnel-exporter", "gateway-standin", "bench-reference"):
        if not os.path.exists(os.path.join(RELEASE, exe)):
            sys.exit(f"build first: cargo build --release --workspace ({exe} missing)")
    blackbox = "/usr/bin/prometheus-blackbox-exporter"
    if not os.path.exists(blackbox):
        sys.exit("install the peer first: bash tests/install-deps.sh --bench")
    tmp = tempfile.mkdtemp(prefix="oce-overload-")
    line = subprocess.run(["htpasswd", "-nbBC", "10", USER, PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()
    web_yml = os.path.join(tmp, "web.yml")
    with open(web_yml, "w") as f:
        f.write(f"basic_auth_users:\n  {USER}: '{line.split(':', 1)[1]}'\n")
    fingerprint = subprocess.run([os.path.join(RELEASE, "openclaw-tunnel-exporter"), "fingerprint"], input=TOKEN,
                                 capture_output=True, text=True, check=True).stdout.strip()

    gateway = free_port()
    Proc([os.path.join(RELEASE, "gateway-standin"), "--listen", f"127.0.0.1:{gateway}", "--token", TOKEN])
    wait_listening(gateway, "gateway-standin")
    web, tap = free_port(), free_port()
    config = os.path.join(tmp, "ours.toml")
    with open(config, "w") as f:
        f.write(f'[web]\nlisten = "127.0.0.1:{web}"\nconfig_file = "{web_yml}"\n'
                '[auth_probe]\nenabled = false\ninterval = "1m"\n'
                f'[auth]\ncurrent = "r1"\n[[auth.revision]]\nname = "r1"\n{fingerprint}\n'
                f'[[auth_tap]]\nforward = "f0"\nlisten = "127.0.0.1:{tap}"\nupstream = "127.0.0.1:{gateway}"\n')
        for i in range(FORWARDS):
            f.write(f'[[forward]]\nname = "f{i}"\nlocal = "127.0.0.1:{gateway}"\nsyn_interval = "1s"\n'
                    'first_byte_interval = "100ms"\nreadiness_interval = "1h"\nws_handshake_interval = "off"\n'
                    'timeout = "1s"\n')
    Proc([os.path.join(RELEASE, "openclaw-tunnel-exporter"), "--config", config],
         env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
    wait_listening(web, "openclaw-tunnel-exporter")
    wait_listening(tap, "auth tap")
    peer_cfg = os.path.join(tmp, "blackbox.yml")
    with open(peer_cfg, "w") as f:
        f.write("modules:\n  tcp_connect:\n    prober: tcp\n")
    peer = free_port()
    Proc([blackbox, f"--config.file={peer_cfg}", f"--web.listen-address=127.0.0.1:{peer}",
          f"--web.config.file={web_yml}"])
    wait_listening(peer, "blackbox_exporter")
    time.sleep(2)  # the forwards' first rounds

    rows = {}

    def phase(name, floods):
        """Good scrapers on both exporters, our histograms and the raw client, while `floods` run (or
        IDLE_SECONDS when there are none)."""
        raw = RawLoop(gateway)
        ours, theirs = GoodScraper(web), GoodScraper(peer)
        window = Window(web)
        started = time.perf_counter()
        running = [Flood(*args) for args in floods]
        answers = [flood.wait() for flood in running]
        if not running:
            time.sleep(IDLE_SECONDS)
        seconds = time.perf_counter() - started
        lag, fb_p50, fb_mean, _ = window.close()
        ours_samples, ours_statuses = ours.stop()
        theirs_samples, theirs_statuses = theirs.stop()
        rows[name] = dict(seconds=seconds, lag=lag, fb_p50=fb_p50, fb_mean=fb_mean, answers=answers,
                          ours=ours_samples, ours_ok=all(s == 200 for s in ours_statuses),
                          theirs=theirs_samples, theirs_ok=all(s == 200 for s in theirs_statuses),
                          raw=raw.stop())

    phase("idle", [])
    phase("10,000 wrong passwords", [("passwords", web, WRONG_PASSWORDS, 600)])
    phase("2,000 new tap tokens", [("tap", tap, TAP_TOKENS)])
    phase("both at once", [("passwords", web, WRONG_PASSWORDS, 600), ("tap", tap, TAP_TOKENS)])
    # The peer checks every miss with bcrypt (about 1,000 s of CPU for 10,000 here): the same 16 threads for
    # PEER_SECONDS, and the table says how many it absorbed.
    phase("blackbox: wrong passwords", [("passwords", peer, WRONG_PASSWORDS, PEER_SECONDS)])

    ms = lambda s: f"{s * 1e3:.2f}"  # noqa: E731
    p = lambda xs, q: ms(quantile(xs, q)) if xs else "-"  # noqa: E731
    fmt = lambda answers: "; ".join(", ".join(f"{n} x {s}" for s, n in sorted(a.items())) for a in answers) or "-"  # noqa: E731,E501
    names = list(rows)
    print("| measure | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")

    def row(label, cell):
        print(f"| {label} | " + " | ".join(cell(rows[n]) for n in names) + " |")

    row("phase length (s)", lambda r: f"{r['seconds']:.1f}")
    row("flood answers (status x count)", lambda r: fmt(r["answers"]))
    row("ours: good scrape p50 / p99 (ms)", lambda r: f"{p(r['ours'], .5)} / {p(r['ours'], .99)}")
    row("blackbox_exporter: good scrape p50 / p99 (ms)", lambda r: f"{p(r['theirs'], .5)} / {p(r['theirs'], .99)}")
    row("every good scrape 200 (ours, blackbox)", lambda r: f"{r['ours_ok']}, {r['theirs_ok']}")
    row("ours: probe lag p99 (ms, bucket bound)", lambda r: ms(r["lag"]))
    row("ours: first byte p50 (ms, interpolated as histogram_quantile) / mean (ms)", lambda r: f"{ms(r['fb_p50'])} / {ms(r['fb_mean'])}")
    row("raw client beside: first byte p50 (ms)", lambda r: p(r["raw"], .5))
    ours_flooded, peer_flooded = rows["10,000 wrong passwords"], rows["blackbox: wrong passwords"]
    ratio = quantile(ours_flooded["ours"], .99) / quantile(peer_flooded["theirs"], .99)
    rate = lambda r: sum(r["answers"][0].values()) / r["seconds"]  # noqa: E731
    print()
    print("| wrong-password flood, each exporter on its own | ours | blackbox_exporter | ratio |")
    print("|---|---|---|---|")
    print(f"| good scrape p99 during the flood (ms) | {p(ours_flooded['ours'], .99)} | "
          f"{p(peer_flooded['theirs'], .99)} | {ratio:.3f} |")
    print(f"| wrong passwords answered per second | {rate(ours_flooded):.0f} | {rate(peer_flooded):.0f} | "
          f"{rate(ours_flooded) / rate(peer_flooded):.0f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:
        kind, port, *rest = sys.argv[2:]
        if kind == "passwords":
            print(json.dumps(flood_passwords(int(port), int(rest[0]), float(rest[1]))))
        else:
            print(json.dumps(flood_tap(int(port), int(rest[0]))))
    else:
        main()
