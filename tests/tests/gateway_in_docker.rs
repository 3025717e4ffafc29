//! A gateway in Docker, as the gateway host sees it (issue 39). Debian's real `docker-proxy` (unpacked from the
//! docker.io package by tests/install-docker-proxy.sh; it runs without dockerd, given fd 3 to report on)
//! publishes a port to a gateway stand-in listening in a network namespace that stands for the container. The
//! exporter names the endpoint (a published container port, with the container's address), pages a publish on
//! 0.0.0.0 as public exposure, names the container through the Docker Engine API when `docker_socket` is set
//! (a stand-in engine on a Unix socket: no dockerd runs here), and the doctor says `docker logs NAME`. A port
//! published by a NAT rule alone (nftables DNAT in a namespace of its own) is "no listener, yet it answers".

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(30);

/// Debian's docker-proxy: `$OCE_DOCKER_PROXY` (tests/run-all.sh sets it), else the install script's cache.
fn docker_proxy() -> PathBuf {
    if let Ok(path) = std::env::var("OCE_DOCKER_PROXY") {
        return PathBuf::from(path);
    }
    let output = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/install-docker-proxy.sh"))
        .output()
        .expect("tests/install-docker-proxy.sh");
    assert!(output.status.success(), "tests/install-docker-proxy.sh: {}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// docker-proxy publishing `host` to `container`, as dockerd starts it: its report pipe on fd 3, read until it
/// says `0` (listening) or why not.
fn publish(host: SocketAddr, container: SocketAddr) -> Proc {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read_end, write_end) = (fds[0], fds[1]);
    let mut command = Command::new(docker_proxy());
    command.args(["-proto", "tcp", "-host-ip", &host.ip().to_string(), "-host-port", &host.port().to_string()]);
    command.args(["-container-ip", &container.ip().to_string(), "-container-port", &container.port().to_string()]);
    // SAFETY: between fork and exec only dup2, which is async-signal-safe; fd 3 loses CLOEXEC, as dockerd's
    // ExtraFiles does.
    unsafe {
        command.pre_exec(move || match libc::dup2(write_end, 3) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let proc = Proc::spawn("docker-proxy", &mut command);
    // SAFETY: our copy of the write end is ours to close; the read end becomes a File that owns it.
    unsafe { libc::close(write_end) };
    let mut report = String::new();
    let mut pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_end) };
    pipe.read_to_string(&mut report).unwrap();
    assert_eq!(report.trim(), "0", "docker-proxy did not start: {report} {}", proc.output());
    proc
}

/// A Docker Engine stand-in on a Unix socket: `GET /containers/json` answers `name` for a `publish` filter
/// naming `port`, an empty list otherwise (what dockerd answers), and logs each request to `requests`.
fn engine(socket: &Path, port: u16, name: &str, requests: &Path) -> Proc {
    let script = r#"
import json, os, socket, sys, urllib.parse
path, port, name, log = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(16)
print("up", flush=True)
while True:
    conn, _ = server.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    line = head.split(b"\r\n")[0].decode()
    with open(log, "a") as f:
        f.write(line + "\n")
    target = line.split(" ")[1]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(target).query)
    filters = json.loads(query.get("filters", ["{}"])[0])
    found = []
    if port in filters.get("publish", []):
        found = [{"Id": "0123456789abcdef0123", "Names": ["/" + name], "Image": "ghcr.io/openclaw/openclaw:2026.9.6"}]
    body = json.dumps(found).encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    conn.close()
"#;
    let mut proc = Proc::spawn(
        "docker engine stand-in",
        Command::new(find_program("python3"))
            .arg("-c")
            .arg(script)
            .arg(socket)
            .arg(port.to_string())
            .arg(name)
            .arg(requests),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline && proc.is_running(), "the engine stand-in: {}", proc.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

fn endpoint(scrape: &Scrape, gateway: &str, kind: &str) -> Option<f64> {
    scrape.get(&format!("openclaw_gateway_endpoint{{gateway=\"{gateway}\",endpoint=\"{kind}\"}}"))
}

/// The doctor's bind-exposure step (8) on `config`, as JSON evidence.
fn doctor_step_8(config: &Path) -> String {
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .arg("--config")
        .arg(config)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("doctor --json: {}", String::from_utf8_lossy(&output.stderr)));
    let steps: Vec<serde_json::Value> = report[0]["steps"].as_array().cloned().unwrap_or_default();
    let step = steps.iter().find(|s| s["name"] == "gateway bound to loopback only");
    step.unwrap_or_else(|| panic!("no bind-exposure step in {report}"))["evidence"].as_str().unwrap().to_owned()
}

#[test]
fn a_port_docker_proxy_publishes_is_named_a_container_port_and_a_public_publish_pages() {
    if !root_or_skip("gateway_in_docker::docker_proxy", "a network namespace for the container; docker-proxy as root") {
        return;
    }
    let container = TestNet::create();
    let gateway_port = free_port();
    let in_container = SocketAddr::from((container.lan, gateway_port));
    let mut gateway = Proc::spawn(
        "gateway-standin in the container",
        container.command(workspace_binary("gateway-standin")).arg("--listen").arg(in_container.to_string()),
    );
    gateway.wait_listening(in_container, T);
    // docker run -p 127.0.0.1:P:18789, and docker run -p W:18789 (every address).
    let (loopback_port, wide_port, host_port) = (free_port(), free_port(), free_port());
    let _loopback = publish(SocketAddr::from(([127, 0, 0, 1], loopback_port)), in_container);
    let _wide = publish(SocketAddr::from(([0, 0, 0, 0], wide_port)), in_container);
    // The gateway run on the host itself, for contrast.
    let host_gateway = Gateway::start(host_port, Duration::ZERO);

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let requests = dir.path().join("requests");
    let _engine = engine(&socket, loopback_port, "openclaw-gateway", &requests);
    let gateways = format!(
        "[[gateway]]\nname = \"docker\"\nport = {loopback_port}\ninterval = \"200ms\"\ndocker_socket = \"{}\"\n\
         [[gateway]]\nname = \"wide\"\nport = {wide_port}\ninterval = \"200ms\"\n\
         [[gateway]]\nname = \"host\"\nport = {host_port}\ninterval = \"200ms\"\n",
        socket.display()
    );
    let config =
        format!("{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n{gateways}", forward_toml("t", free_port()));
    let exporter = Exporter::start(&config);
    let scrape = exporter.wait_for("every endpoint named", T, |m| {
        endpoint(m, "docker", "container_port") == Some(1.0)
            && endpoint(m, "wide", "container_port") == Some(1.0)
            && endpoint(m, "host", "host_process") == Some(1.0)
    });
    assert_eq!(endpoint(&scrape, "docker", "host_process"), Some(0.0));
    // Exposure stays measured on the real bind: 127.0.0.1 is loopback, 0.0.0.0 is public and pages, whatever
    // the gateway binds inside its container.
    let since = |g: &str| scrape.value(&format!("openclaw_gateway_exposed_since_timestamp_seconds{{gateway=\"{g}\"}}"));
    assert_eq!(since("docker"), 0.0);
    assert!(since("wide") > 1.7e9, "a publish on 0.0.0.0 pages");
    assert_eq!(scrape.value("openclaw_gateway_listen_sockets{gateway=\"wide\",scope=\"public\"}"), 1.0);

    let status = exporter.status();
    let of = |name: &str| {
        let gateways = status["gateways"].as_array().unwrap();
        gateways.iter().find(|g| g["gateway"] == name).unwrap()["endpoint"].clone()
    };
    let docker = of("docker");
    assert_eq!(docker["kind"], "container_port", "{docker}");
    assert_eq!(docker["publisher"], "docker-proxy", "{docker}");
    assert_eq!(docker["name"], "docker-proxy", "{docker}");
    assert_eq!(docker["container_address"], in_container.to_string(), "{docker}");
    assert_eq!(docker["containers"], serde_json::json!(["openclaw-gateway"]), "{docker}");
    assert!(docker["logs"].as_str().unwrap().contains("docker logs openclaw-gateway"), "{docker}");
    let asked = std::fs::read_to_string(&requests).unwrap();
    assert!(asked.contains("/containers/json?filters="), "the engine was asked with the publish filter: {asked}");
    let wide = of("wide");
    assert_eq!(
        (wide["kind"].as_str(), wide["container_address"].as_str()),
        (Some("container_port"), Some(&*in_container.to_string()))
    );
    assert!(wide["logs"].as_str().unwrap().contains(&format!("docker ps --filter publish={wide_port}")), "{wide}");
    let host = of("host");
    assert_eq!(
        (host["kind"].as_str(), host["pid"].as_u64()),
        (Some("host_process"), Some(u64::from(host_gateway.proc.pid())))
    );
    assert!(host["logs"].as_str().unwrap().contains("/tmp/openclaw"), "{host}");
    let (_, page) = exporter.get("/", Some("text/html"));
    assert!(page.contains("published container port") && page.contains("docker logs openclaw-gateway"), "{page}");

    // The gateway host's doctor (`forward = []`) names the endpoint and where its logs are.
    let file = dir.path().join("config.toml");
    std::fs::write(&file, format!("forward = []\n[web]\nlisten = \"127.0.0.1:{}\"\n{gateways}", free_port())).unwrap();
    let evidence = doctor_step_8(&file);
    assert!(evidence.contains("published container port: docker-proxy"), "{evidence}");
    assert!(evidence.contains(&in_container.to_string()), "{evidence}");
    assert!(evidence.contains("docker logs openclaw-gateway"), "{evidence}");
    assert!(evidence.contains("a host process: gateway-standin"), "{evidence}");
}

#[test]
fn a_port_only_a_nat_rule_publishes_answers_with_no_listener() {
    if !root_or_skip("gateway_in_docker::nat", "a network namespace with an nftables DNAT rule") {
        return;
    }
    // A namespace of its own for the rule (the host's tables are never touched): a connect to 127.0.0.1:P is
    // rewritten to 127.0.0.1:G, where the gateway listens; nothing listens on P.
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this thread's namespace membership.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "{}", std::io::Error::last_os_error());
        assert!(Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap().success());
        let (published, gateway_port) = (free_port(), free_port());
        let rules = format!(
            "table ip oce_nat {{\n chain output {{\n  type nat hook output priority -100; policy accept;\n  \
             ip daddr 127.0.0.1 tcp dport {published} dnat to 127.0.0.1:{gateway_port}\n }}\n}}\n"
        );
        let nft = run_with_stdin(&find_program("nft"), &["-f", "-"], rules.as_bytes());
        assert!(nft.status.success(), "nft: {}", String::from_utf8_lossy(&nft.stderr));
        let _gateway = Gateway::start(gateway_port, Duration::ZERO);
        let config = format!(
            "{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n[[gateway]]\nname = \"cni\"\nport = {published}\ninterval = \"200ms\"\n",
            forward_toml("t", free_port())
        );
        let exporter = Exporter::start(&config);
        let scrape = exporter.wait_for("the NAT publish named", T, |m| endpoint(m, "cni", "nat") == Some(1.0));
        assert_eq!(scrape.value("openclaw_gateway_listen_sockets{gateway=\"cni\",scope=\"loopback\"}"), 0.0);
        let status = exporter.status();
        let named = &status["gateways"][0]["endpoint"];
        assert!(named["described"].as_str().unwrap().contains("no listener, yet the port answers"), "{named}");
    })
    .join()
    .unwrap();
}
