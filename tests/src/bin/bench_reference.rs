//! The raw-socket reference for bench/bench.py's first-byte accuracy rows: for `--seconds S`, connect to
//! `--target ADDR`, write `GET /healthz`, and time request written -> first byte, one request every 20 ms.
//! Prints the samples in seconds as a JSON array. A compiled client, so the reference adds as little of its
//! own time as the probes it is compared with.
//!
//! `--until-stdin-closes` runs until its standard input closes instead (a window the caller ends);
//! `--interval-ms MS` waits MS between requests instead of 20 (the cadence of the probes it is compared with).
//!
//! Usage: bench-reference --target 127.0.0.1:PORT (--seconds S | --until-stdin-closes) [--interval-ms MS]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut target, mut seconds, mut pause) = (String::new(), 10.0, Duration::from_millis(20));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--target" => target = args.next().expect("--target ADDR"),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds S"),
            "--interval-ms" => {
                pause = Duration::from_millis(args.next().and_then(|s| s.parse().ok()).expect("--interval-ms MS"))
            }
            "--until-stdin-closes" => {
                seconds = f64::MAX / 4.0;
                let done = done.clone();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    done.store(true, std::sync::atomic::Ordering::SeqCst);
                });
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    let mut samples = Vec::new();
    while Instant::now() < deadline && !done.load(std::sync::atomic::Ordering::SeqCst) {
        let mut stream = TcpStream::connect(&target).expect("connect to the target");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.write_all(request.as_bytes()).expect("write the request");
        let written = Instant::now();
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).expect("read the first byte");
        samples.push(written.elapsed().as_secs_f64());
        drop(stream);
        std::thread::sleep(pause);
    }
    let list: Vec<String> = samples.iter().map(|s| format!("{s:.7}")).collect();
    println!("[{}]", list.join(","));
}
