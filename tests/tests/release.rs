//! What `scripts/release.sh` made (tests/cross.sh runs it into target/dist-ci before the tests): an archive
//! per platform holding a binary of that platform's format, SHA-256 sums that verify, and a Homebrew formula
//! pinned to the source tarball whose `test do` block passes against the Linux binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::*;

const PLATFORMS: [(&str, &str, &str); 5] = [
    ("linux-x86_64", "openclaw-tunnel-exporter", "ELF 64-bit LSB pie executable, x86-64"),
    ("linux-aarch64", "openclaw-tunnel-exporter", "ELF 64-bit LSB pie executable, ARM aarch64"),
    ("macos-arm64", "openclaw-tunnel-exporter", "Mach-O 64-bit arm64 executable"),
    ("macos-x86_64", "openclaw-tunnel-exporter", "Mach-O 64-bit x86_64 executable"),
    ("windows-x86_64", "openclaw-tunnel-exporter.exe", "PE32+ executable (console) x86-64"),
];

fn dist() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dist-ci");
    assert!(dir.join("SHA256SUMS").is_file(), "{} is missing: run tests/cross.sh", dir.display());
    dir
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(find_program(program)).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{program} {args:?}: {text}");
    text
}

/// Unpack every archive into a fresh directory.
fn unpack(dist: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    for (platform, ..) in PLATFORMS {
        let stem = format!("openclaw-tunnel-exporter-{}-{platform}", env!("CARGO_PKG_VERSION"));
        if platform.starts_with("windows") {
            let archive = dist.join(format!("{stem}.zip"));
            let script = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])";
            run("python3", &["-c", script, archive.to_str().unwrap(), out.path().to_str().unwrap()], dist);
        } else {
            let archive = dist.join(format!("{stem}.tar.gz"));
            run("tar", &["-xzf", archive.to_str().unwrap(), "-C", out.path().to_str().unwrap()], dist);
        }
    }
    out
}

#[test]
fn every_platform_has_an_archive_with_its_own_binary_and_the_sums_verify() {
    let dist = dist();
    run("sha256sum", &["--check", "--strict", "SHA256SUMS"], &dist);
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let unpacked = unpack(&dist);
    for (platform, binary, format) in PLATFORMS {
        let dir = unpacked.path().join(format!("openclaw-tunnel-exporter-{}-{platform}", env!("CARGO_PKG_VERSION")));
        let described = run("file", &["-b", binary], &dir);
        assert!(described.starts_with(format), "{platform}: {described}");
        assert!(
            dir.join("README.md").is_file() && dir.join("deploy/windows").is_dir(),
            "{platform}: docs and deploy files"
        );
        assert!(sums.contains(&format!("-{platform}.")), "{platform} is not in SHA256SUMS:\n{sums}");
    }
    // Linux binaries run on glibc 2.17 and later: no symbol version above it.
    let linux = unpacked.path().join(format!("openclaw-tunnel-exporter-{}-linux-x86_64", env!("CARGO_PKG_VERSION")));
    let symbols = run("objdump", &["-T", "openclaw-tunnel-exporter"], &linux);
    let newest = symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .max()
        .unwrap();
    assert!(newest <= (2, 17), "needs glibc {newest:?}");
    // The Linux release binary runs here.
    assert!(run(linux.join("openclaw-tunnel-exporter").to_str().unwrap(), &["--version"], &linux)
        .contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_homebrew_formula_pins_the_source_tarball_and_its_test_block_passes() {
    let dist = dist();
    let formula = std::fs::read_to_string(dist.join("openclaw-tunnel-exporter.rb")).unwrap();
    for field in ["@SOURCE_URL@", "@SOURCE_SHA256@", "@VERSION@"] {
        assert!(!formula.contains(field), "{field} filled in:\n{formula}");
    }
    let tarball = format!("openclaw-tunnel-exporter-{}-src.tar.gz", env!("CARGO_PKG_VERSION"));
    let sum = run("sha256sum", &[&tarball], &dist);
    let sum = sum.split_whitespace().next().unwrap();
    assert!(formula.contains(&format!("sha256 \"{sum}\"")), "the formula pins {tarball} ({sum}):\n{formula}");
    assert!(formula.contains(&format!("/{tarball}\"")), "{formula}");
    // The tarball is the source cargo builds: the workspace with its lock file.
    let listing = run("tar", &["-tzf", &tarball], &dist);
    assert!(listing.contains("/Cargo.lock") && listing.contains("/exporter/src/main.rs"), "{listing}");

    run("ruby", &["-c", "openclaw-tunnel-exporter.rb"], &dist);
    let harness = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("homebrew/run_formula_test.rb");
    let unpacked = unpack(&dist);
    let bin = unpacked.path().join(format!("openclaw-tunnel-exporter-{}-linux-x86_64", env!("CARGO_PKG_VERSION")));
    let passed = run("ruby", &[harness.to_str().unwrap(), "openclaw-tunnel-exporter.rb", bin.to_str().unwrap()], &dist);
    assert!(passed.contains("formula test passed"), "{passed}");
    // The harness fails when the block's expectation does not hold (a formula of another version).
    let other = tempfile::tempdir().unwrap();
    let wrong = formula.replace(&format!("version \"{}\"", env!("CARGO_PKG_VERSION")), "version \"9.9.9\"");
    std::fs::write(other.path().join("f.rb"), wrong).unwrap();
    let output = Command::new("ruby").arg(&harness).arg("f.rb").arg(&bin).current_dir(other.path()).output().unwrap();
    assert!(!output.status.success(), "a formula test for version 9.9.9 passed against {}", env!("CARGO_PKG_VERSION"));
}
