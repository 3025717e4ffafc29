mod clock;
mod config;
mod recorder;
mod uptime;
fn main() {}
