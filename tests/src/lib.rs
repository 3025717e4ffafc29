//! The end-to-end harness: real sshd, ssh, autossh and Prometheus processes on free loopback ports, the
//! gateway stand-in, and the exporter binary, each a child process stopped when its handle drops.
//!
//! `tests/install-deps.sh` installs what this needs (openssh-server, openssh-client, autossh, prometheus).
//! As root, sshd runs as the `daemon` user (sshd as root wants /run/sshd and a privileged setup); as any
//! other user it runs as that user and accepts only that user, which is all a forward needs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod browser;
mod exporter;
mod gateway;
mod http_sink;
mod netns;
mod process;
mod prometheus;
mod remote_receiver;
mod sshd;

pub use browser::*;
pub use exporter::*;
pub use gateway::*;
pub use http_sink::*;
pub use netns::*;
pub use process::*;
pub use prometheus::*;
pub use remote_receiver::*;
pub use sshd::*;
