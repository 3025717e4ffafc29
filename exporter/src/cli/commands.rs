//! The subcommands that check rather than run: `fingerprint`, `doctor`, `routing-row`, `check-config`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;
use crate::doctor;

/// Tokens shorter than this get a warning from `fingerprint`.
const MIN_TOKEN_BYTES: usize = 16;

/// `fingerprint`: read a token (stdin or `file`) and print its registry line.
pub fn fingerprint(file: Option<PathBuf>) -> ExitCode {
    let token = match &file {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            let mut token = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut token).map(|_| token).map_err(|e| e.to_string())
        }
    };
    match token {
        Ok(token) if !token.trim_ascii().is_empty() => {
            let token = token.trim_ascii();
            // Below 16 bytes of a generated token's alphabet a guesser with the hash gets far enough
            // even at tens of milliseconds a guess; the gateway's own tokens are 48 hex digits.
            if token.len() < MIN_TOKEN_BYTES {
                eprintln!(
                    "fingerprint: warning: this token is {} bytes; a token this short can be guessed from its \
                     hash: rotate to a long random one (openssl rand -hex 24)",
                    token.len()
                );
            }
            println!("hash = \"{}\"", probes::auth_tap::credential::hash(token));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("fingerprint: no token on input");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("fingerprint: cannot read the token: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `doctor`: the layer-by-layer check of one forward (or all), as text or JSON.
pub fn doctor(config_path: Option<&Path>, forward: Option<String>, json: bool) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let forwards: Vec<_> = config.forwards.iter().filter(|f| forward.as_ref().is_none_or(|n| *n == f.name)).collect();
    let gateway_host_only = config.forwards.is_empty() && !config.gateways.is_empty() && forward.is_none();
    if forwards.is_empty() && !gateway_host_only {
        eprintln!("doctor: no forward named {:?} in the configuration", forward.unwrap_or_default());
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let reports: Vec<_> = if gateway_host_only {
        vec![runtime.block_on(doctor::run_gateway_host(&config))]
    } else {
        forwards.iter().map(|f| runtime.block_on(doctor::run(&config, f))).collect()
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
    } else {
        for report in &reports {
            print!("{}", report.render());
        }
    }
    ExitCode::from(reports.iter().map(doctor::Report::exit_code).find(|c| *c != 0).unwrap_or(0))
}

/// `routing-row`: each forward's row of the team's routing table.
pub fn routing_row(config_path: Option<&Path>, header: bool) -> ExitCode {
    match Config::load(config_path) {
        Ok(config) => {
            print!("{}", config.routing_rows(header));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// `evidence`: see [`crate::evidence`].
pub fn evidence(config_path: Option<&Path>, out: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let out = out.unwrap_or_else(|| {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "");
        PathBuf::from(format!("openclaw-evidence-{stamp}.tar.gz"))
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::evidence::collect(&config, &out)) {
        Ok(first_failure) => {
            println!("wrote {}: {first_failure}", out.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{}: {err}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: every problem at once, or OK with the warnings.
pub fn check_config(config_path: Option<&Path>) -> ExitCode {
    match Config::load(config_path) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            println!("configuration OK: {} forward(s), metrics on {}", config.forwards.len(), config.web.listen);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// `simulate-fleet`: see [`crate::cli::fleet`].
pub fn simulate_fleet(config_path: Option<&Path>, fleet: crate::cli::fleet::Fleet) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // One worker thread, as the exporter itself runs: the CPU per sample is the exporter's.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let report = runtime.block_on(crate::cli::fleet::simulate(&config, &fleet));
    println!("{}", serde_json::to_string(&report).expect("a report serializes"));
    if report.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `init`: see [`crate::init`].
pub fn init(remote_port: u16, write: Option<PathBuf>, ssh_config: Option<PathBuf>) -> ExitCode {
    let ssh_config = ssh_config.unwrap_or_else(crate::init::default_ssh_config);
    let found = crate::init::discover(&ssh_config, remote_port);
    let locations = crate::token_sources::Locations::from_env(None, None);
    let cli = crate::openclaw_cli_url::read(&locations);
    if let Err(why) = &cli {
        eprintln!("init: the openclaw CLI's gateway URL is unknown: {why}");
    }
    // The CLI's own direct road (gateway.remote.transport "direct", its url and tlsFingerprint).
    let direct = match crate::openclaw_cli_url::read_remote(&locations) {
        Ok(remote) => remote.as_ref().and_then(crate::init::direct_route),
        Err(why) => {
            eprintln!("init: the openclaw CLI's remote settings are unknown: {why}");
            None
        }
    };
    let text = crate::init::render(&found, direct.as_ref(), remote_port, cli.as_ref().ok());
    match write {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => {
            use std::io::Write;
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => match file.write_all(text.as_bytes()) {
                    Ok(()) => {
                        let count = found.len() + usize::from(direct.is_some());
                        eprintln!("wrote {count} forward(s) to {}", path.display());
                        ExitCode::SUCCESS
                    }
                    Err(err) => {
                        eprintln!("{}: {err}", path.display());
                        ExitCode::FAILURE
                    }
                },
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    eprintln!("{} exists: not overwritten (remove it, or pick another file)", path.display());
                    ExitCode::FAILURE
                }
                Err(err) => {
                    eprintln!("{}: {err}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}
