//! A web page in the user's browser against the exporter on loopback (issue 19): a page from another origin
//! posts a form and a no-cors `fetch` to `/-/reload` in real headless Chromium, and a DNS-rebinding page's
//! `Host` reaches `/api/status`. Neither moves anything; each refusal is counted by reason.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(30);

/// Serve `html` to every request on a free loopback port (the attacker's page), in a thread.
fn serve_page(html: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    port
}

/// A raw HTTP/1.1 request with the given `Host`; returns the status line.
fn request_with_host(addr: std::net::SocketAddr, method: &str, path: &str, host: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn refused(scrape: &Scrape, reason: &str) -> f64 {
    scrape.value(&format!("openclaw_exporter_web_requests_refused_total{{reason=\"{reason}\"}}"))
}

fn reloads(scrape: &Scrape) -> f64 {
    ["success", "failure"]
        .iter()
        .map(|result| scrape.value(&format!("openclaw_exporter_config_reloads_total{{result=\"{result}\"}}")))
        .sum()
}

/// Lifecycle on, as a user who reloads with curl would set it: a page on `localhost:<other port>` posts a
/// form and a no-cors fetch to `http://127.0.0.1:<exporter>/-/reload`. Both reach the exporter (counted as
/// refused cross-site) and no reload happens; `curl -X POST` from the same machine still reloads.
#[test]
fn a_page_from_another_origin_cannot_reload_the_exporter() {
    let exporter = Exporter::start_with_lifecycle(&forward_toml("t", free_port()));
    let target = format!("http://127.0.0.1:{}/-/reload", exporter.web.port());
    let page = serve_page(format!(
        "<!doctype html><html><body><form id=f method=POST action=\"{target}\"><input name=a value=b></form>\
         <script>fetch(\"{target}\", {{method: \"POST\", mode: \"no-cors\"}}).finally(() => \
         document.getElementById(\"f\").submit());</script></body></html>"
    ));
    chromium(&["--virtual-time-budget=5000".into(), "--dump-dom".into(), format!("http://localhost:{page}/")]);
    let after =
        exporter.wait_for("the page's two requests refused as cross-site", T, |m| refused(m, "cross_site") >= 2.0);
    assert_eq!(reloads(&after), 0.0, "a page in the browser reloaded the exporter");

    let curl = std::process::Command::new(find_program("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &target])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200", "curl -X POST is not a browser");
    let reloaded = exporter.wait_for("curl's reload counted", T, |m| reloads(m) == 1.0);
    assert_eq!(refused(&reloaded, "cross_site"), refused(&after, "cross_site"));
}

/// By default (no `enable_lifecycle`) the reload endpoint answers 403 to everyone, SIGHUP still reloads, and
/// a request whose `Host` is a DNS-rebinding page's name is refused on every path.
#[test]
fn lifecycle_is_off_by_default_and_a_foreign_host_is_refused() {
    let exporter = Exporter::start(&forward_toml("t", free_port()));
    let status = request_with_host(exporter.web, "POST", "/-/reload", &exporter.web.to_string());
    assert!(status.contains(" 403 "), "{status}");
    exporter.proc.signal(libc::SIGHUP);
    let scrape = exporter.wait_for("SIGHUP reloads", T, |m| reloads(m) == 1.0);
    assert_eq!(refused(&scrape, "lifecycle_off"), 1.0);

    let port = exporter.web.port();
    for path in ["/api/status", "/metrics", "/"] {
        let status = request_with_host(exporter.web, "GET", path, &format!("rebind.example:{port}"));
        assert!(status.contains(" 403 "), "{path} with a foreign Host: {status}");
    }
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let status = request_with_host(exporter.web, "GET", "/api/status", &host);
        assert!(status.contains(" 200 "), "{host}: {status}");
    }
    let scrape = exporter.scrape();
    assert_eq!(refused(&scrape, "foreign_host"), 3.0);
}
