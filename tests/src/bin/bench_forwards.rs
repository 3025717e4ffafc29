//! Real ssh forwards for bench/cost.py's first-byte rows: the gateway stand-in answering after `--delay-ms`
//! (20 by default), sshd, and `--forwards N` ssh processes each holding one `-L` forward to it. Prints one JSON
//! object, {"gateway": PORT, "forwards": [PORT, ...]}, once every forward listens, then keeps them until its
//! standard input closes. Needs what the end-to-end tests need (sshd).
//!
//! Usage: bench-forwards [--forwards N] [--delay-ms MS]

use std::io::Read;
use std::time::Duration;

use e2e::{free_port, Gateway, Sshd};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut forwards, mut delay_ms) = (1usize, 20u64);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--forwards" => forwards = args.next().and_then(|n| n.parse().ok()).expect("--forwards N"),
            "--delay-ms" => delay_ms = args.next().and_then(|n| n.parse().ok()).expect("--delay-ms MS"),
            other => panic!("unknown argument {other}"),
        }
    }
    let gateway = Gateway::start(free_port(), Duration::from_millis(delay_ms));
    let sshd = Sshd::start(gateway.addr.port());
    let ports: Vec<u16> = (0..forwards).map(|_| free_port()).collect();
    let _ssh: Vec<_> = ports.iter().map(|port| sshd.forward(*port, gateway.addr.port())).collect();
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    println!("{{\"gateway\": {}, \"forwards\": [{}]}}", gateway.addr.port(), list.join(", "));
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
