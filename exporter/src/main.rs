//! openclaw-tunnel-exporter: measures the OpenClaw control plane reached through an ssh -L forward and
//! serves it to Prometheus.
//!
//! Layout: [`config`] (embedded default < file < environment) -> [`scheduler`] (a task per probe, jittered
//! ticks, hard timeouts, bounded concurrency) -> `probes::*` (typed outcomes) -> [`recorder`] (the only
//! writer of metrics, uptime buckets and hdrhistograms) -> [`web`] (`/metrics`, `/status.json`).
//! Shutdown is one cancellation token passed down; a reload replaces the scheduler's generation of tasks and
//! keeps the recorder. Errors are enums in the libraries and `anyhow` only here, at the edge.

mod clock;
mod config;
mod doctor;
mod record;
mod schedule;
mod signals;
mod state;
mod status_page;
mod token_sources;
mod uptime;
mod web;
mod web_security;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::record::Recorder;
use crate::schedule::{Generation, Prepared};

/// Prometheus exporter for an OpenClaw gateway reached through an ssh -L forward.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML config file layered over the embedded default (then OPENCLAW_EXPORTER__SECTION__KEY env).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr: human (default) or json (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exporter (the default).
    Run,
    /// Validate the configuration: exit 0, or print every problem and exit 1.
    CheckConfig,
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Check the tunnel layer by layer and say what to fix first. Exit 0 when all pass, 10+N for step N.
    Doctor {
        /// Check only this forward (default: every forward).
        #[arg(long)]
        forward: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the routing-table row of each forward (local port, jump host, remote, revision, owner).
    RoutingRow {
        /// Print the table header first.
        #[arg(long)]
        header: bool,
    },
    /// Read a token from stdin (or --file) and print its `hash = "..."` line for [[auth.revision]]: an
    /// argon2id hash with a random salt (a leaked config does not give the token away).
    Fingerprint {
        /// Read the token from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Tokens shorter than this get a warning from `fingerprint`.
const MIN_TOKEN_BYTES: usize = 16;

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::DefaultConfig => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Fingerprint { file } => {
            let token = match &file {
                Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
                None => {
                    let mut token = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut token)
                        .map(|_| token)
                        .map_err(|e| e.to_string())
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
        Command::Doctor { forward, json } => {
            let config = match Config::load(cli.config.as_deref()) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::from(2);
                }
            };
            let forwards: Vec<_> =
                config.forwards.iter().filter(|f| forward.as_ref().is_none_or(|n| *n == f.name)).collect();
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
        Command::RoutingRow { header } => match Config::load(cli.config.as_deref()) {
            Ok(config) => {
                if header {
                    println!(
                        "| forward | local port | jump host | remote host | remote port | token revision | owner |"
                    );
                    println!("|---|---|---|---|---|---|---|");
                }
                for forward in &config.forwards {
                    // Remote host = the ssh server (the Mac); remote port = the -L target's port on it.
                    let remote_host =
                        forward.ssh_host.as_deref().and_then(|h| h.rsplit_once(':')).map_or("-", |(h, _)| h);
                    let remote_port = forward.remote.rsplit_once(':').map_or("-", |(_, p)| p);
                    println!(
                        "| {} | {} | {} | {remote_host} | {remote_port} | {} | {} |",
                        forward.name,
                        forward.local.port(),
                        forward.jump_host.as_deref().unwrap_or("-"),
                        config.auth.current.as_deref().unwrap_or("-"),
                        forward.owner.as_deref().unwrap_or("-"),
                    );
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig => match Config::load(cli.config.as_deref()) {
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
        },
        Command::Run => {
            let config = match Config::load(cli.config.as_deref()) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::FAILURE;
                }
            };
            let tracer_provider = match init_logging(cli.log_format, config.otlp.as_ref()) {
                Ok(provider) => provider,
                Err(err) => {
                    eprintln!(
                        "otlp.endpoint = \"{}\": {err}",
                        config.otlp.as_ref().map_or("", |o| o.endpoint.as_str())
                    );
                    return ExitCode::FAILURE;
                }
            };
            // One thread runs every probe, the recorder and the server: probes spend their time in the kernel,
            // and a second worker only added cross-thread wakeups (16% more CPU per SYN round, measured with
            // bench/). Slow work (process scans, bcrypt) goes to the blocking pool.
            // The blocking pool is capped: a burst of owner lookups (a thousand forwards at start) then queues
            // instead of starting a thread (and a malloc arena) each.
            let runtime =
                match tokio::runtime::Builder::new_current_thread().max_blocking_threads(8).enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        eprintln!("cannot start the async runtime: {err}");
                        return ExitCode::FAILURE;
                    }
                };
            let result = runtime.block_on(run(config, cli.config));
            drop(runtime);
            // Flush the last batch of spans before exiting.
            if let Some(provider) = tracer_provider {
                if let Err(err) = provider.shutdown() {
                    eprintln!("flushing traces: {err}");
                }
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("{err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// How often the config file is checked for changes.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies a version of a file: inode (Unix), size and modification time.
fn file_identity(path: &std::path::Path) -> Option<(u64, u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    // Windows: an editor's replace-by-rename shows as a new modification time (std has no stable file index).
    #[cfg(not(unix))]
    let inode = 0;
    Some((inode, meta.len(), meta.modified().ok()?))
}

/// Logs to stderr (human or JSON, filtered by RUST_LOG, default info) and, when `[otlp]` is configured,
/// every probe span to an OTLP/HTTP collector. Returns the tracer provider to flush at exit.
fn init_logging(
    format: LogFormat,
    otlp: Option<&config::Otlp>,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Human => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let (otel, provider) = match otlp {
        None => (None, None),
        Some(otlp) => {
            use opentelemetry::trace::TracerProvider as _;
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(otlp.endpoint.as_str())
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(otlp.service_name.clone()).build();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("openclaw-tunnel-exporter");
            // Only the probe spans go to the collector, whatever RUST_LOG says about logs.
            let only_probes = tracing_subscriber::filter::filter_fn(|meta| meta.is_span() && meta.name() == "probe");
            (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_probes)), Some(provider))
        }
    };
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).init();
    Ok(provider)
}

/// glibc's allocator keeps what a daemon frees: per-thread arenas, and (after the first large free raises the
/// mmap threshold) multi-megabyte /metrics buffers on the heap. Two arenas and a fixed 256 KiB mmap threshold
/// give large buffers back at once; with 1,000 forwards RSS went from 66 to 43 MiB (bench/), CPU unchanged.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

async fn run(mut config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let recorder = Arc::new(Recorder::new());
    let state_file = config.state_file.clone();
    if let Some(path) = &state_file {
        state::load(path, &recorder);
    }
    let (reload_tx, mut reload_rx) = mpsc::channel::<web::ReloadRequest>(8);

    let listener = tokio::net::TcpListener::bind(config.web.listen)
        .await
        .with_context(|| format!("cannot listen on web.listen = \"{}\"", config.web.listen))?;
    let tls = config.web.security.as_ref().and_then(|security| security.tls.clone());
    let basic_auth = config.web.security.as_ref().is_some_and(|security| security.requires_auth());
    tracing::info!(listen = %config.web.listen, tls = tls.is_some(), basic_auth, forwards = config.forwards.len(), "serving /metrics");
    let (security_tx, security_rx) = tokio::sync::watch::channel(config.web.security.clone());
    let app = web::router(recorder.clone(), reload_tx, security_rx.clone());
    let server_shutdown = shutdown.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        match tls {
            Some(tls) => {
                let listener = web::TlsListener::new(listener, tls, security_rx);
                axum::serve(listener, app).with_graceful_shutdown(server_shutdown).await
            }
            None => axum::serve(listener, app).with_graceful_shutdown(server_shutdown).await,
        }
    });

    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let mut generation = Generation::start(Prepared::new(&config, None)?, recorder.clone(), &shutdown);
    let mut signals = signals::Signals::install()?;
    // Editors replace files rather than write them in place, so poll the file's identity instead of watching
    // an inode: a change of mtime, size or inode means a new config to load.
    let mut watch = tokio::time::interval(CONFIG_POLL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seen_file = config_path.as_deref().and_then(file_identity);
    let mut save_tick = tokio::time::interval(state::SAVE_EVERY);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let save = |recorder: &Recorder| {
        if let Some(path) = &state_file {
            if let Err(err) = state::save(path, recorder) {
                tracing::warn!(file = %path.display(), error = %err, "cannot save the state file");
            }
        }
    };
    loop {
        let reply = tokio::select! {
            signal = signals.recv() => match signal {
                signals::Signal::Shutdown(name) => { tracing::info!("{name}: shutting down"); break }
                signals::Signal::Reload(name) => { tracing::info!("{name}: reloading the configuration"); None }
            },
            Some(reply) = reload_rx.recv() => Some(reply),
            _ = save_tick.tick() => { save(&recorder); continue }
            _ = watch.tick() => {
                let now = config_path.as_deref().and_then(file_identity);
                if now == seen_file || now.is_none() {
                    continue;
                }
                tracing::info!("the configuration file changed: reloading");
                None
            }
        };
        seen_file = config_path.as_deref().and_then(file_identity);
        let result = match Config::load(config_path.as_deref()) {
            Ok(new_config) => {
                if new_config.web.listen != config.web.listen {
                    tracing::warn!(listen = %config.web.listen, wanted = %new_config.web.listen, "web.listen changes take effect on restart");
                }
                let tls_of =
                    |config: &Config| config.web.security.as_ref().is_some_and(|security| security.tls.is_some());
                if tls_of(&new_config) != tls_of(&config) {
                    tracing::warn!("turning TLS on or off takes effect on restart; certificates and users reload now");
                }
                // Transactional: the new generation binds and loads everything it needs while the running one
                // carries on; only a generation sure to start replaces it.
                match Prepared::new(&new_config, Some(&generation)) {
                    Ok(prepared) => {
                        generation.stop().await;
                        generation = Generation::start(prepared, recorder.clone(), &shutdown);
                        if new_config.web.security != config.web.security {
                            security_tx.send_replace(new_config.web.security.clone());
                        }
                        config = new_config;
                        for warning in config.warnings() {
                            tracing::warn!("{warning}");
                        }
                        recorder.record_reload(true);
                        tracing::info!(forwards = config.forwards.len(), "configuration reloaded");
                        Ok(())
                    }
                    Err(err) => {
                        recorder.record_reload(false);
                        tracing::error!("reload failed, keeping the running configuration: {err}");
                        Err(err.to_string())
                    }
                }
            }
            Err(err) => {
                recorder.record_reload(false);
                tracing::error!("reload failed, keeping the running configuration: {err}");
                Err(err.to_string())
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
    shutdown.cancel();
    generation.stop().await;
    save(&recorder);
    server.await.context("web server task")?.context("web server")?;
    tracing::info!("stopped");
    Ok(())
}
