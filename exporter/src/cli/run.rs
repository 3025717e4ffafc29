//! `run` (the default subcommand): logging, the one-thread runtime, the web server, the scheduler's
//! generation, and the loop that reloads, saves state and stops.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::LogFormat;
use crate::config::{self, Config};
use crate::record::Recorder;
use crate::schedule::{Generation, Prepared};
use crate::{signals, state, web};

/// Run the exporter on the configuration at `config_path` (or the embedded default) until stopped.
pub fn main(config_path: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    // First, while this is the only thread: the service manager's sockets (socket activation).
    let inherited = crate::listen::adopt_inherited();
    let config = match Config::load(config_path.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let tracer_provider = match init_logging(log_format, config.otlp.as_ref()) {
        Ok(provider) => provider,
        Err(err) => {
            eprintln!("otlp.endpoint = \"{}\": {err}", config.otlp.as_ref().map_or("", |o| o.endpoint.as_str()));
            return ExitCode::FAILURE;
        }
    };
    if !inherited.is_empty() {
        let addresses: Vec<String> = inherited.iter().map(ToString::to_string).collect();
        tracing::info!(sockets = %addresses.join(" "), "listening sockets handed over by the service manager");
    }
    if let Some((before, after)) = crate::limits::raise_descriptor_limit() {
        if after > before {
            tracing::info!(before, after, "raised the open-descriptor soft limit to the hard limit");
        } else {
            tracing::info!(limit = after, "open-descriptor limit");
        }
    }
    // One thread runs every probe, the tap and the recorder (the web server has its own): probes spend their time in the kernel,
    // and a second worker only added cross-thread wakeups (16% more CPU per SYN round, measured with
    // bench/). Slow work (process scans, bcrypt) goes to the blocking pool.
    // The blocking pool is capped: a burst of owner lookups (a thousand forwards at start) then queues
    // instead of starting a thread (and a malloc arena) each.
    let runtime = match tokio::runtime::Builder::new_current_thread().max_blocking_threads(8).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, config_path));
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

/// The human log's writer: one event is one line. The formatter hands each event over whole, ending in a
/// newline; any newline or carriage return before that end came from a field (a receiver's answer, a gateway's
/// message, an error's text) and is written escaped (`\\n`), so text from outside can never start a line that
/// looks like the exporter's own.
struct OneLine<W>(W);

/// `event` with every line break but a final newline escaped.
fn one_line(event: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut line = Vec::with_capacity(event.len() + 8);
    for byte in body {
        match byte {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            other => line.push(*other),
        }
    }
    if body.len() < event.len() {
        line.push(b'\n');
    }
    std::borrow::Cow::Owned(line)
}

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&one_line(event))?;
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
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
    let fmt = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(|| OneLine(std::io::stderr()))
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).json().flatten_event(true).boxed()
        }
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

/// What a reload hands the running web server: its users and certificates, and its request policy.
struct WebControl {
    security: tokio::sync::watch::Sender<Option<Arc<crate::web_security::WebSecurity>>>,
    policy: tokio::sync::watch::Sender<config::WebPolicy>,
}

/// The web server's thread: what it returns when it ends.
type WebThread = std::thread::JoinHandle<std::io::Result<()>>;

async fn run(mut config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The remote-write queue slot outlives every generation; its account is served with the registry.
    let queues = Arc::new(crate::remote_write::QueueSlot::default());
    let recorder = Arc::new(Recorder::with_kinds(&crate::kinds::records(), vec![Box::new(queues.collector())]));
    let state_file = config.state_file.clone();
    if let Some(path) = &state_file {
        state::load(path, &recorder);
    }
    let (reload_tx, mut reload_rx) = mpsc::channel::<web::ReloadRequest>(8);
    let (server, web_control) = start_web_server(&config, &recorder, reload_tx, &shutdown)?;

    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let mut generation = Generation::start(Prepared::new(&config, None, &queues)?, recorder.clone(), &shutdown);
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
        let reloading = Reloading { recorder: &recorder, queues: &queues, web: &web_control, shutdown: &shutdown };
        let (next, result) = reloading.reload(&mut config, config_path.as_deref(), generation).await;
        generation = next;
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
    shutdown.cancel();
    generation.stop().await;
    save(&recorder);
    match tokio::task::spawn_blocking(move || server.join()).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => return Err(err).context("web server"),
        _ => anyhow::bail!("the web server's thread panicked"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Bind `web.listen` and start the web server on a thread and runtime of its own.
fn start_web_server(
    config: &Config,
    recorder: &Arc<Recorder>,
    reload_tx: mpsc::Sender<web::ReloadRequest>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(WebThread, WebControl)> {
    let listen = config.web.listen;
    let owner_lookup = config.scheduler.owner_lookup;
    let tls = config.web.security.as_ref().and_then(|security| security.tls.clone());
    let basic_auth = config.web.security.as_ref().is_some_and(|security| security.requires_auth());
    let forwards = config.forwards.len();
    let (security_tx, security_rx) = tokio::sync::watch::channel(config.web.security.clone());
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(config.web.policy.clone());
    let app = web::router(recorder.clone(), reload_tx, security_rx.clone(), policy_rx);
    let server_shutdown = shutdown.clone();
    let limits = config.web.limits;
    let server_recorder = recorder.clone();
    // The web server runs on a thread and runtime of its own (with its own blocking pool for /metrics renders and
    // bcrypt): a flood of requests from any local user then costs the probes' thread nothing. Measured with
    // bench/overload.py: 10,000 wrong passwords in 4.4 s took probe lag p99 from 2.5 to 25 ms and the first-byte
    // mean from 1.35 to 2.52 ms (raw client beside: 1.28 -> 1.35) while the server shared the probes' thread.
    let server = std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            // Below the probes' thread in the OS scheduler, with its blocking pool (renders, bcrypt): when a
            // flood saturates the CPU, the probes run first.
            let lowered = probes::background::lower_this_thread();
            tracing::debug!(lowered, "web server thread priority");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(4)
                .on_thread_start(|| {
                    probes::background::lower_this_thread();
                })
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                // A taken address never stops the exporter: the probes and remote write run while this retries.
                let Some(listener) = web_listener(listen, owner_lookup, &server_recorder, &server_shutdown).await
                else {
                    return Ok(());
                };
                tracing::info!(listen = %listen, tls = tls.is_some(), basic_auth, forwards, "serving /metrics");
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let listener = web::serve::LimitedListener::new(listener, &limits, server_recorder.clone());
                let header_read_timeout = limits.header_read_timeout;
                match tls {
                    Some(tls) => {
                        let listener = web::TlsListener::new(listener, tls, security_rx);
                        web::serve::serve(listener, app, header_read_timeout, server_recorder, server_shutdown).await
                    }
                    None => {
                        web::serve::serve(listener, app, header_read_timeout, server_recorder, server_shutdown).await
                    }
                }
                std::io::Result::Ok(())
            })
        })
        .context("cannot start the web server's thread")?;
    Ok((server, WebControl { security: security_tx, policy: policy_tx }))
}

/// `web.listen`'s socket ([`crate::listen::open_when_free`]): each failed bind counted, and logged with who
/// holds the address when that changes (a squatter there can serve its own `/metrics` to a plain-HTTP
/// scraper). `None` when shut down first.
async fn web_listener(
    listen: std::net::SocketAddr,
    lookup: probes::ssh_session::Lookup,
    recorder: &Recorder,
    shutdown: &CancellationToken,
) -> Option<std::net::TcpListener> {
    let holder_of = move |addr| probes::ssh_session::holder_now(addr, lookup).holder();
    let mut logged: Option<(crate::listen::BindFailure, Option<String>)> = None;
    let mut held_since = None;
    let listener = crate::listen::open_when_free(listen, shutdown, holder_of, |failed| {
        recorder.count_listen_failure("web", failed.reason);
        held_since.get_or_insert_with(std::time::Instant::now);
        let now = (failed.reason, failed.holder.cloned());
        if logged.as_ref() != Some(&now) {
            let holder = now.1.as_deref().unwrap_or("unknown");
            tracing::warn!(
                listen = %listen, error = %failed.error, holder,
                "cannot listen on web.listen: retrying every 2 s while the probes and remote write run \
                 (whoever holds it answers scrapes in the exporter's place)"
            );
            logged = Some(now);
        }
    })
    .await?;
    if let Some(since) = held_since {
        tracing::info!(listen = %listen, waited_seconds = since.elapsed().as_secs(), "web.listen is free again");
    }
    Some(listener)
}

/// What a reload needs besides the config and the generation it replaces.
struct Reloading<'a> {
    recorder: &'a Arc<Recorder>,
    queues: &'a Arc<crate::remote_write::QueueSlot>,
    web: &'a WebControl,
    shutdown: &'a CancellationToken,
}

impl Reloading<'_> {
    /// Load the file again and, when it is good and its generation can be prepared, replace the running
    /// generation (returned) and `config`; otherwise keep both, count the failure and say why.
    async fn reload(
        &self,
        config: &mut Config,
        config_path: Option<&std::path::Path>,
        generation: Generation,
    ) -> (Generation, Result<(), String>) {
        let recorder = self.recorder;
        let new_config = match Config::load(config_path) {
            Ok(new_config) => new_config,
            Err(err) => {
                recorder.record_reload(false);
                tracing::error!("reload failed, keeping the running configuration: {err}");
                return (generation, Err(err.to_string()));
            }
        };
        if new_config.web.listen != config.web.listen {
            tracing::warn!(listen = %config.web.listen, wanted = %new_config.web.listen, "web.listen changes take effect on restart");
        }
        if new_config.web.limits != config.web.limits {
            tracing::warn!(
                "web.max_connections, web.header_read_timeout and web.idle_timeout changes take effect on restart"
            );
        }
        let tls_of = |config: &Config| config.web.security.as_ref().is_some_and(|security| security.tls.is_some());
        if tls_of(&new_config) != tls_of(config) {
            tracing::warn!("turning TLS on or off takes effect on restart; certificates and users reload now");
        }
        // Transactional: the new generation binds and loads everything it needs while the running one
        // carries on; only a generation sure to start replaces it.
        match Prepared::new(&new_config, Some(&generation), self.queues) {
            Ok(prepared) => {
                generation.stop().await;
                let generation = Generation::start(prepared, recorder.clone(), self.shutdown);
                if new_config.web.security != config.web.security {
                    if let (Some(new), Some(old)) = (&new_config.web.security, &config.web.security) {
                        new.keep_accepted_from(old);
                    }
                    self.web.security.send_replace(new_config.web.security.clone());
                }
                self.web.policy.send_replace(new_config.web.policy.clone());
                *config = new_config;
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
                recorder.record_reload(true);
                tracing::info!(forwards = config.forwards.len(), "configuration reloaded");
                (generation, Ok(()))
            }
            Err(err) => {
                recorder.record_reload(false);
                tracing::error!("reload failed, keeping the running configuration: {err}");
                (generation, Err(err.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_field_with_a_newline_never_starts_a_line_of_its_own() {
        let event = b"2026-12-04T00:00:00Z  WARN remote write: detail=busy\n2026-12-04T00:00:01Z ERROR forged\n";
        let line = one_line(event);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(line.ends_with(b"\\n2026-12-04T00:00:01Z ERROR forged\n"));
        assert_eq!(&*one_line(b"plain\n"), b"plain\n");
        assert_eq!(&*one_line(b"a\rb"), b"a\\rb");
    }
}
