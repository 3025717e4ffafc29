#!/usr/bin/env python3
"""Two builds of the exporter on one config and one stand-in gateway, at the same time: do they say the same
things? A refactor must not change what users read (issue 31's constraint): the series a scrape holds (names and
label sets; values move with time and are not compared), the shape of `/api/status` (every key, and the type of
every value), the status page's outline (its headings and rows, in order), and the doctor's `--json` report (each step's name, status and next step; its evidence with the
figures masked), twice: on the exporter's config (its token is refused: it fails at step 7, with the refusal's
reason) and on one whose token a second stand-in takes, so every layer passes (`doctor, all`).

The config has every kind: the forward's probes, a model host, a gateway's exposure, and the auth kind (a
revision registry, the auth probe with an old revision's token, an auth tap a request goes through), the
stand-in trusted as the forward's owner so the token is sent.

    git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build \
        -p openclaw-tunnel-exporter)
    cargo build --workspace && python3 bench/same_outputs.py /tmp/old-target/debug target/debug

Prints a table (part, series or keys in each, differences) and the differences; exits 1 when there are any.
The stand-in gateway (this tree's `gateway-standin`) answers `/healthz`, `/startupz`, `/readyz`, the Control UI
and WebSocket connects; the forward points straight at it (no ssh: the session is `not_ssh`, the same for both)."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

RUN_SECONDS = 8


OLD_TOKEN = "same-outputs-old-revision-token-0123456789"
CURRENT_TOKEN = "same-outputs-current-revision-token-0123456789"


def config(gateway_port, web_port, tap_port, hashes):
    return (
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n\n'
        f'[[forward]]\nname = "mac"\nlocal = "127.0.0.1:{gateway_port}"\nsyn_interval = "200ms"\n'
        f'first_byte_interval = "300ms"\nreadiness_interval = "1s"\nws_handshake_interval = "1s"\n'
        f'hygiene_interval = "1s"\ntimeout = "1s"\ntrusted_owners = ["gateway-standin"]\n\n'
        f'[[model_host]]\nname = "api"\nurl = "http://127.0.0.1:{gateway_port}/healthz"\ninterval = "1s"\n\n'
        f'[[gateway]]\nname = "mac"\nport = {gateway_port}\ninterval = "1s"\n\n'
        f'[auth]\ncurrent = "r2"\n\n[[auth.revision]]\nname = "r1"\nhash = "{hashes[0]}"\n\n'
        f'[[auth.revision]]\nname = "r2"\nhash = "{hashes[1]}"\n\n'
        f'[auth_probe]\nenabled = true\ninterval = "1s"\nforwards = ["mac"]\n\n'
        f'[[auth_tap]]\nforward = "mac"\nlisten = "127.0.0.1:{tap_port}"\nupstream = "127.0.0.1:{gateway_port}"\n'
    )


def fingerprint(binary, token):
    out = subprocess.run([binary, "fingerprint"], input=token, capture_output=True, text=True, check=True)
    return out.stdout.strip().split('"')[1]


def through_tap(tap_port, token):
    """One request through the tap with `token`: the stand-in refuses it (401), the tap counts it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{tap_port}/tools/invoke", data=b"{}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        urllib.request.urlopen(request, timeout=5).read()
    except urllib.error.HTTPError as answer:
        answer.read()


def series(text):
    """Each sample's name and labels, values dropped; the exporter's own version and timestamps are the same for
    both or move with time, so only label values from fixed sets or the config remain."""
    found = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels = line.rsplit(" ", 1)[0] if "}" not in line else line[: line.rindex("}") + 1]
        found.add(name_labels)
    return found


def shape(value, path="$"):
    """Every key path of a JSON value with the type of its value (lists: the union of their items' shapes)."""
    out = set()
    if isinstance(value, dict):
        out.add((path, "object"))
        for key, item in value.items():
            out |= shape(item, f"{path}.{key}")
    elif isinstance(value, list):
        out.add((path, "array"))
        for item in value:
            out |= shape(item, f"{path}[]")
    else:
        out.add((path, type(value).__name__ if value is not None else "null"))
    return out


def masked(text):
    """Figures masked, and a duration's unit with them (the doctor prints µs below a millisecond)."""
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"\d+(\.\d+)? (µs|ms)", "T", text or ""))


def page_outline(html):
    """The status page's outline in order: each heading and each table row's first cell, figures masked (the
    kinds' rows are put in the page's order by their places: a row that moved shows here)."""
    cells = re.findall(r"<h2[^>]*>(.*?)</h2>|<tr[^>]*>\s*<t[dh][^>]*>(.*?)</t[dh]>", html)
    outline = [masked(re.sub(r"<[^>]+>", "", heading or cell)) for heading, cell in cells]
    return {(index, text) for index, text in enumerate(outline)}


def walk_config(gateway_port):
    """Every layer passes: the stand-in trusted as the forward's owner, the ssh host its port, a gateway entry."""
    return (
        f'[[forward]]\nname = "mac"\nlocal = "127.0.0.1:{gateway_port}"\ntrusted_owners = ["gateway-standin"]\n'
        f'ssh_host = "127.0.0.1:{gateway_port}"\n\n[[gateway]]\nname = "mac"\nport = {gateway_port}\nallowed = ["private", "public"]\n'
    )


def doctor(binary, config_path, env=None):
    out = subprocess.run(
        [binary, "doctor", "--config", config_path, "--json"], capture_output=True, text=True, env=env
    )
    steps = json.loads(out.stdout)[0]["steps"]
    return out.returncode, [(s["name"], s["status"], masked(s["evidence"]), s.get("next"), tuple(masked(n) for n in s.get("notes", []))) for s in steps]


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench/same_outputs.py OLD_DIR NEW_DIR (each holding openclaw-tunnel-exporter)")
    builds = {"old": sys.argv[1], "new": sys.argv[2]}
    standin = os.path.join(sys.argv[2], "gateway-standin")
    tmp = tempfile.mkdtemp(prefix="oce-same")
    gateway_port = bench.free_port()
    bench.Proc([standin, "--listen", f"127.0.0.1:{gateway_port}", "--readiness", "2026.9.6"])
    bench.wait_listening(gateway_port, "stand-in")
    token_port = bench.free_port()
    bench.Proc([standin, "--listen", f"127.0.0.1:{token_port}", "--readiness", "2026.9.6", "--token", CURRENT_TOKEN])
    bench.wait_listening(token_port, "stand-in with a token")
    walk = os.path.join(tmp, "walk.toml")
    with open(walk, "w") as f:
        f.write(walk_config(token_port))
    walk_env = dict(os.environ, OPENCLAW_GATEWAY_TOKEN=CURRENT_TOKEN, HOME=tmp)
    new_binary = os.path.join(sys.argv[2], "openclaw-tunnel-exporter")
    hashes = [fingerprint(new_binary, OLD_TOKEN), fingerprint(new_binary, CURRENT_TOKEN)]
    exporter_env = dict(os.environ, OPENCLAW_GATEWAY_TOKEN=OLD_TOKEN, HOME=tmp)
    procs, ports, configs, taps = {}, {}, {}, {}
    for name, directory in builds.items():
        ports[name], taps[name] = bench.free_port(), bench.free_port()
        configs[name] = os.path.join(tmp, f"{name}.toml")
        with open(configs[name], "w") as f:
            f.write(config(gateway_port, ports[name], taps[name], hashes))
        binary = os.path.join(directory, "openclaw-tunnel-exporter")
        procs[name] = bench.Proc([binary, "--config", configs[name]], env=exporter_env)
    for name in builds:
        bench.wait_listening(ports[name], f"{name} exporter")
        bench.wait_listening(taps[name], f"{name} exporter's auth tap")
        through_tap(taps[name], OLD_TOKEN)
    time.sleep(RUN_SECONDS)
    parts = {}
    for name, directory in builds.items():
        scrape = series(get(ports[name], "/metrics"))
        status = shape(json.loads(get(ports[name], "/api/status")))
        code, steps = doctor(os.path.join(directory, "openclaw-tunnel-exporter"), configs[name], exporter_env)
        walk_code, walk_steps = doctor(os.path.join(directory, "openclaw-tunnel-exporter"), walk, walk_env)
        parts[name] = {
            "scrape": scrape,
            "/api/status": status,
            "page": page_outline(get(ports[name], "/")),
            "doctor": set(steps) | {("exit", code)},
            "doctor, all": set(walk_steps) | {("exit", walk_code)},
        }
    failed = False
    print(f"{'part':<12} {'old':>6} {'new':>6} {'only old':>9} {'only new':>9}")
    for part in ["scrape", "/api/status", "page", "doctor", "doctor, all"]:
        old, new = parts["old"][part], parts["new"][part]
        print(f"{part:<12} {len(old):>6} {len(new):>6} {len(old - new):>9} {len(new - old):>9}")
        for item in sorted(map(str, old - new))[:20]:
            print(f"  only old: {item}")
        for item in sorted(map(str, new - old))[:20]:
            print(f"  only new: {item}")
        failed |= old != new
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
