#!/usr/bin/env python3
"""A fleet of laptops pushing to one VictoriaMetrics (Debian's), simulated by one process through the
exporter's own remote-write code (`openclaw-tunnel-exporter simulate-fleet`, hidden).

Each simulated laptop sends the series a running exporter of the default config really has (its probes run
against a gateway stand-in for a few seconds first), with its own `laptop` label, rounds of 15 s ending now.
Prints one table: samples/s achieved, the receiver's CPU and RSS, and the sender's CPU per sample; and what a
real fleet costs (each laptop sends one round per 15 s). Not a test: the numbers depend on the machine.

Usage: bench/fleet.sh [--laptops 100,1000] [--rounds 20]
"""
import argparse, json, os, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "target/release/openclaw-tunnel-exporter")
STANDIN = os.path.join(ROOT, "target/release/gateway-standin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} never answered")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--laptops", default="100,1000")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="oce-fleet")
    gateway_port = free_port()
    standin = subprocess.Popen([STANDIN, "--listen", f"127.0.0.1:{gateway_port}", "--readiness", "2026.9.6-standin",
                                "--token", "tok"], stderr=subprocess.DEVNULL)
    config = os.path.join(work, "laptop.toml")
    with open(config, "w") as f:
        # The default config's one forward, pointed at the stand-in, every probe fast enough to populate in 3 s.
        f.write(f'[[forward]]\nname = "default"\nlocal = "127.0.0.1:{gateway_port}"\nsyn_interval = "200ms"\n'
                'first_byte_interval = "200ms"\nreadiness_interval = "200ms"\nws_handshake_interval = "200ms"\n')
    rows = []
    try:
        for laptops in [int(n) for n in args.laptops.split(",")]:
            port = free_port()
            vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={work}/vm-{laptops}",
                                   f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_http(f"http://127.0.0.1:{port}/health")
                before = cpu_seconds(vm.pid)
                out = subprocess.run([EXPORTER, "--config", config, "simulate-fleet",
                                      "--url", f"http://127.0.0.1:{port}/api/v1/write",
                                      "--laptops", str(laptops), "--rounds", str(args.rounds)],
                                     check=True, capture_output=True, text=True).stdout
                report = json.loads(out.strip().splitlines()[-1])
                vm_cpu = cpu_seconds(vm.pid) - before
                rows.append((report, vm_cpu, rss_kib(vm.pid, "VmHWM"), rss_kib(vm.pid, "VmRSS")))
            finally:
                vm.terminate()
                vm.wait()
    finally:
        standin.terminate()
        subprocess.run(["rm", "-rf", work])
    print(f"series per round (one laptop, default config, healthy): {rows[0][0]['series_per_round']}; "
          f"one round on disk: {rows[0][0]['bytes_per_round']} bytes")
    print()
    print("| laptops | rounds each | samples | samples/s achieved | receiver CPU s | receiver CPU per sample | "
          "receiver peak RSS | sender CPU per sample | a real fleet (1 round / 15 s): samples/s, receiver cores |")
    print("|---|---|---|---|---|---|---|---|---|")
    for report, vm_cpu, hwm, rss in rows:
        samples = report["samples"]
        real_rate = report["laptops"] * report["series_per_round"] / 15
        print(f"| {report['laptops']} | {report['rounds']} | {samples:,} | {samples / report['seconds']:,.0f} | "
              f"{vm_cpu:.1f} | {vm_cpu / samples * 1e6:.2f} us | {hwm / 1024:.0f} MiB | "
              f"{report['cpu_seconds'] / samples * 1e6:.2f} us | {real_rate:,.0f}, {real_rate * vm_cpu / samples:.3f} |")


if __name__ == "__main__":
    main()
