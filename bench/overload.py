#!/usr/bin/env python3
"""A local attacker's floods against the exporter, beside blackbox_exporter on the same basic-auth web config.

Prints one Markdown table. Phases, one after the other in one run, on the same gateway stand-in:
- idle: 20 forwards probed every 100 ms (first byte), a tap in front of the stand-in, a good scraper (the
  right basic-auth credential, kept-alive, every 100 ms) on each exporter, and the raw-socket reference client
  (tests/src/bin/bench_reference.rs) on the stand-in beside them;
- burst: the same, while 16 threads send 10,000 never-seen wrong passwords to our /metrics and 16 more send
  2,000 never-seen tokens through our tap;
- peer burst: the same 16 wrong-password threads against blackbox_exporter for as long as our burst lasted
  (exporter-toolkit's basic auth: bcrypt on every request that misses its cache of successes), its good
  scraper timed the same way.

Rows: good-scrape latency p50/p99 (ms), our probe lag p99 (bucket bound), our first byte p50 (bucket bound)
and mean (histogram sum / count), the raw client's first byte p50 (ms, the machine's own noise floor), how the
wrong passwords were answered, and the ratios ours / blackbox. Numbers depend on the machine; the shape
(a good scrape is answered from the cache whatever the flood; probes are not held up) should not.

Usage: bash tests/install-deps.sh --bench && cargo build --release --workspace && python3 bench/overload.py
"""

import base64
import http.client
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


def flood_passwords(port, prefix, seconds=None):
    """WRONG_PASSWORDS never-seen passwords from WORKERS threads, or as many as they send in `seconds`;
    returns (threads, {status: count})."""
    answers = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds if seconds else None

    def worker(w):
        client = Client(port)
        for i in range(w, WRONG_PASSWORDS if deadline is None else 1 << 40, WORKERS):
            if deadline is not None and time.perf_counter() > deadline:
                break
            status, _ = client.get("/metrics", {"Authorization": basic(USER, f"{prefix}-{i}")})
            with lock:
                answers[status] = answers.get(status, 0) + 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    return threads, answers


def flood_tap(tap):
    def worker(w):
        for i in range(w, TAP_TOKENS, WORKERS):
            request = (f"POST /tools/invoke HTTP/1.1\r\nHost: 127.0.0.1:{tap}\r\nAuthorization: Bearer flood-{i}\r\n"
                       "Connection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
            with socket.create_connection(("127.0.0.1", tap)) as sock:
                sock.sendall(request)
                while sock.recv(65536):
                    pass

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    return threads


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


def p50_bound(before, after):
    deltas = sorted(((float("inf") if le == "+Inf" else float(le)), after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0
    for bound, count in deltas:
        if total and count >= 0.5 * total:
            return bound
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
        return lag, p50_bound(b0, b1), mean, after


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
        raw = RawLoop(gateway)
        ours, theirs = GoodScraper(web), GoodScraper(peer)
        window = Window(web)
        started = time.perf_counter()
        threads, answers = floods()
        for t in threads:
            t.join()
        if not threads:
            time.sleep(IDLE_SECONDS)
        seconds = time.perf_counter() - started
        lag, fb_p50, fb_mean, after = window.close()
        raw_samples = raw.stop()
        ours_samples, ours_statuses = ours.stop()
        theirs_samples, theirs_statuses = theirs.stop()
        rows[name] = dict(seconds=seconds, lag=lag, fb_p50=fb_p50, fb_mean=fb_mean, answers=answers,
                          ours=ours_samples, ours_ok=all(s == 200 for s in ours_statuses),
                          theirs=theirs_samples, theirs_ok=all(s == 200 for s in theirs_statuses),
                          raw=raw_samples, after=after)

    phase("idle", lambda: ([], {}))

    def our_burst():
        threads, answers = flood_passwords(web, "wrong")
        return threads + flood_tap(tap), answers

    phase("burst", our_burst)
    # The peer checks every miss with bcrypt (about 1,000 s of CPU for 10,000 here), so its flood is the same
    # 16 threads for as long as ours lasted; the row below says how many it absorbed.
    phase("peer burst", lambda: flood_passwords(peer, "wrong", seconds=rows["burst"]["seconds"]))

    ms = lambda s: f"{s * 1e3:.2f}"  # noqa: E731
    p = lambda xs, q: ms(quantile(xs, q)) if xs else "-"  # noqa: E731
    idle, burst, peer_burst = rows["idle"], rows["burst"], rows["peer burst"]
    print("| measure | idle | our burst | peer burst (flood on blackbox) |")
    print("|---|---|---|---|")
    print(f"| phase length (s) | {idle['seconds']:.1f} | {burst['seconds']:.1f} | {peer_burst['seconds']:.1f} |")
    print(f"| ours: good scrape p50 / p99 (ms) | {p(idle['ours'], .5)} / {p(idle['ours'], .99)} | "
          f"{p(burst['ours'], .5)} / {p(burst['ours'], .99)} | {p(peer_burst['ours'], .5)} / {p(peer_burst['ours'], .99)} |")
    print(f"| blackbox_exporter: good scrape p50 / p99 (ms) | {p(idle['theirs'], .5)} / {p(idle['theirs'], .99)} | "
          f"{p(burst['theirs'], .5)} / {p(burst['theirs'], .99)} | "
          f"{p(peer_burst['theirs'], .5)} / {p(peer_burst['theirs'], .99)} |")
    print(f"| every good scrape 200 (ours, blackbox) | {idle['ours_ok']}, {idle['theirs_ok']} | "
          f"{burst['ours_ok']}, {burst['theirs_ok']} | {peer_burst['ours_ok']}, {peer_burst['theirs_ok']} |")
    print(f"| ours: probe lag p99 (ms, bucket bound) | {ms(idle['lag'])} | {ms(burst['lag'])} | {ms(peer_burst['lag'])} |")
    print(f"| ours: first byte p50 (ms, bucket bound) / mean (ms) | {ms(idle['fb_p50'])} / {ms(idle['fb_mean'])} | "
          f"{ms(burst['fb_p50'])} / {ms(burst['fb_mean'])} | {ms(peer_burst['fb_p50'])} / {ms(peer_burst['fb_mean'])} |")
    print(f"| raw client first byte p50 (ms, beside) | {p(idle['raw'], .5)} | {p(burst['raw'], .5)} | "
          f"{p(peer_burst['raw'], .5)} |")
    fmt = lambda a: ", ".join(f"{n} x {s}" for s, n in sorted(a.items())) or "-"  # noqa: E731
    print(f"| wrong passwords answered | - | {fmt(burst['answers'])} | {fmt(peer_burst['answers'])} |")
    ratio = quantile(burst["ours"], .99) / quantile(peer_burst["theirs"], .99)
    print(f"| good scrape p99 under a 10,000-password flood, ours / blackbox | | {ratio:.3f} | |")
    flood_rate = (sum(burst["answers"].values()) / burst["seconds"],
                  sum(peer_burst["answers"].values()) / peer_burst["seconds"])
    print(f"| wrong passwords absorbed per second (ours, blackbox) | | {flood_rate[0]:.0f} | {flood_rate[1]:.0f} |")


if __name__ == "__main__":
    main()
