//! The raw-socket reference for bench/bench.py's first-byte accuracy rows: for `--seconds S`, connect to
//! `--target ADDR`, write `GET /healthz`, and time request written -> first byte, one request every 20 ms.
//! Prints the samples in seconds as a JSON array. A compiled client, so the reference adds as little of its
//! own time as the probes it is compared with.
//!
//! Usage: bench-reference --target 127.0.0.1:PORT --seconds S

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut target, mut seconds) = (String::new(), 10.0);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--target" => target = args.next().expect("--target ADDR"),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).expect("--seconds S"),
            other => panic!("unknown argument {other}"),
        }
    }
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let mut stream = TcpStream::connect(&target).expect("connect to the target");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.write_all(request.as_bytes()).expect("write the request");
        let written = Instant::now();
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).expect("read the first byte");
        samples.push(written.elapsed().as_secs_f64());
        drop(stream);
        std::thread::sleep(Duration::from_millis(20));
    }
    let list: Vec<String> = samples.iter().map(|s| format!("{s:.7}")).collect();
    println!("[{}]", list.join(","));
}
