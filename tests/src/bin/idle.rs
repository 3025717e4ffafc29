//! A process that only idles, whatever its arguments: a stand-in whose command line a test wants seen (an
//! "ssh" with `-F` and `-L` for `init`).

fn main() {
    std::thread::sleep(std::time::Duration::from_secs(600));
}
