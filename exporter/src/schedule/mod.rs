//! The scheduler: one task per probe per subject, each on its own interval, all run by one generic
//! [`crate::driver`] (jittered ticker, permit, lag, hard timeout, span, log once per change) with the probe
//! kind's adapter from [`crate::kinds`].
//!
//! - A probe's timeout is capped at its interval, so rounds never overlap; a hard timeout past it ends a
//!   probe that hangs.
//! - A semaphore bounds how many probes run at once across all subjects.
//! - Gaps between tunnel rounds are measured on a clock that counts suspend (see [`crate::clock`]); a gap
//!   much longer than the interval is recorded as unobserved time, neither up nor down.
//!
//! A generation's tasks stop when its cancellation token fires: on shutdown, or on a reload, which
//! prepares the next generation first (binds its listeners, loads its CA files) and only then stops this
//! one, while the recorder carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use probes::gate::CredentialGate;
use probes::route::Route;
use probes::ssh_session;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::driver::TaskContext;
use crate::kinds;
use crate::record::Recorder;

/// Why a configuration's generation could not be prepared. Nothing of the running generation is touched
/// by a failed preparation. (A listen address that is taken is not one: the tap retries it while the
/// generation runs.)
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// What a kind loads before it starts does not load (a model host's CA file).
    #[error(transparent)]
    Kind(#[from] kinds::PrepareError),
}

/// A configuration ready to run: its tap listeners bound (or handed over from the running generation, or
/// left to retry when their address is taken) and its TLS settings loaded. Starting it cannot fail, so a reload prepares first and stops the running
/// generation only once the new one is sure to start.
pub struct Prepared {
    config: Config,
    /// Each tap and its socket (`None`: the address is taken, the tap retries it once started).
    taps: Vec<(crate::config::AuthTap, Option<std::net::TcpListener>)>,
    /// What the kinds loaded (a model host's CA file).
    kinds: kinds::Prepared,
    /// The remote-write queue, or why it did not open (remote write then retries; nothing else waits on it).
    remote_queue: Option<Result<Arc<crate::remote_write::OpenQueue>, crate::remote_write::queue::OpenError>>,
    /// The process's queue slot (kept across generations), where a started generation installs its queue.
    queues: Arc<crate::remote_write::QueueSlot>,
    /// The owner lookups' process walk, the running generation's when there is one (see [`Generation`]).
    owner_index: ssh_session::OwnerIndex,
    /// The running generation's tap gates, for the taps whose upstream and trust this config keeps.
    tap_gates: Vec<TapGate>,
}

/// A tap's credential gate, by what it checks: kept across a reload that checks the same (its remembered
/// owner makes the next connection one table read, not a walk of every process).
#[derive(Clone)]
struct TapGate {
    /// The upstream: a local address, or a direct route's URL.
    upstream: String,
    lookup: ssh_session::Lookup,
    also_trusted: Vec<String>,
    /// The upstream's WSL companion, when WSL's relay may hold it.
    wsl_companion: Option<SocketAddr>,
    gate: Arc<tokio::sync::Mutex<CredentialGate>>,
}

/// The running probe tasks of one configuration.
pub struct Generation {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// The taps' accept loops, on the taps' own thread ([`tap_thread`]).
    tap_accepts: Vec<tokio::task::JoinHandle<()>>,
    /// A second handle on each tap's listening socket, by address (empty while the tap waits for its
    /// address): a reload that keeps the address hands the same socket to the next generation, so the port
    /// never closes (no connection is refused).
    tap_sockets: Vec<(SocketAddr, TapSocket)>,
    /// Kept for the next generation (measured: with a fresh walk and gate each reload, a client requesting
    /// through the tap during 20 back-to-back reloads got 12 answers on the loaded CI machine, every first
    /// connection of a generation waiting for a walk of every process).
    owner_index: ssh_session::OwnerIndex,
    tap_gates: Vec<TapGate>,
}

/// A tap's listening socket, once it has one: the tap's retry loop fills it when the address frees up.
type TapSocket = Arc<std::sync::Mutex<Option<std::net::TcpListener>>>;

impl Prepared {
    /// Bind what `config` listens on and load what it reads, reusing the sockets of `running` for
    /// addresses it already listens on, and open (lock) its remote-write queue through `queues`. Fails, having
    /// changed nothing, when a CA file does not load. A tap whose address is taken starts without a socket and
    /// retries it.
    pub fn new(
        config: &Config,
        running: Option<&Generation>,
        queues: &Arc<crate::remote_write::QueueSlot>,
    ) -> Result<Prepared, StartError> {
        let mut taps = Vec::new();
        for tap in &config.auth_taps {
            let handed_over = running
                .and_then(|generation| generation.tap_sockets.iter().find(|(addr, _)| *addr == tap.listen))
                .and_then(|(_, socket)| lock(socket).as_ref().and_then(|socket| socket.try_clone().ok()));
            // Taken (or out of descriptors): the started tap retries, reporting who holds it.
            let listener = handed_over.or_else(|| crate::listen::open(tap.listen).ok());
            taps.push((tap.clone(), listener));
        }
        let prepared_kinds = kinds::prepare(config)?;
        let remote_queue = config.remote_write.as_ref().map(|settings| queues.prepare(settings));
        let owner_index = running.map(|generation| generation.owner_index.clone()).unwrap_or_default();
        let tap_gates = running.map(|generation| generation.tap_gates.clone()).unwrap_or_default();
        Ok(Prepared {
            config: config.clone(),
            taps,
            kinds: prepared_kinds,
            remote_queue,
            queues: queues.clone(),
            owner_index,
            tap_gates,
        })
    }
}

impl Generation {
    /// Start every probe task and auth tap of `prepared`, recording into `recorder`. Tasks stop when
    /// `parent` is cancelled or [`Generation::stop`] is called.
    pub fn start(prepared: Prepared, recorder: Arc<Recorder>, parent: &CancellationToken) -> Generation {
        let Prepared {
            config,
            taps,
            kinds: prepared_kinds,
            remote_queue,
            queues,
            owner_index,
            tap_gates: running_gates,
        } = prepared;
        recorder.apply_config(&config);
        let routes = prepared_kinds.routes();
        let cancel = parent.child_token();
        let permits = Arc::new(Semaphore::new(config.scheduler.max_concurrent_probes));
        let ctx = TaskContext { recorder: recorder.clone(), permits, cancel: cancel.clone() };
        let mut tasks = JoinSet::new();
        // One read of this user's ssh processes a second, shared by every forward's orphan check.
        let process_table = probes::ssh_hygiene::ProcessTable::default();
        let mut start =
            kinds::Start::new(&config, &recorder, &owner_index, &process_table, prepared_kinds, &mut tasks, ctx);
        kinds::start_all(&mut start);
        if let (Some(settings), Some(queue)) = (&config.remote_write, remote_queue) {
            if let Ok(queue) = &queue {
                queues.install(queue);
            }
            tasks.spawn(crate::remote_write::run(settings.clone(), recorder.clone(), queue, queues, cancel.clone()));
        }
        let taps = start_taps(&config, &routes, taps, &running_gates, &owner_index, &recorder, &mut tasks, &cancel);
        Generation {
            cancel,
            tasks,
            tap_accepts: taps.accepts,
            tap_sockets: taps.sockets,
            owner_index,
            tap_gates: taps.gates,
        }
    }

    /// Stop every task now. A probe in flight is dropped; the recorder is written only between awaits, so
    /// no round is ever half-recorded. Connections a tap already accepted carry on to their end.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        self.tasks.abort_all();
        for accept in &self.tap_accepts {
            accept.abort();
        }
        while self.tasks.join_next().await.is_some() {}
        for accept in self.tap_accepts {
            let _ = accept.await;
        }
    }
}

/// A generation's taps, started: their accept loops, a second handle on each socket, and their gates.
struct StartedTaps {
    accepts: Vec<tokio::task::JoinHandle<()>>,
    sockets: Vec<(SocketAddr, TapSocket)>,
    gates: Vec<TapGate>,
}

/// Start each tap's accept loop on the taps' thread ([`tap_thread`], else in `tasks`), its upstream gated like
/// the probes' forwards, reusing a running generation's gate for the same upstream. A tap without a socket
/// first waits for its address ([`tap_listener`]).
#[allow(clippy::too_many_arguments)]
fn start_taps(
    config: &Config,
    routes: &std::collections::HashMap<String, Route>,
    taps: Vec<(crate::config::AuthTap, Option<std::net::TcpListener>)>,
    running_gates: &[TapGate],
    owner_index: &ssh_session::OwnerIndex,
    recorder: &Arc<Recorder>,
    tasks: &mut JoinSet<()>,
    cancel: &CancellationToken,
) -> StartedTaps {
    let registry = Arc::new(config.auth.registry.clone());
    let mut tap_sockets = Vec::new();
    let mut tap_accepts = Vec::new();
    let mut tap_gates = Vec::new();
    for (tap, listener) in taps {
        let socket: TapSocket = Arc::new(std::sync::Mutex::new(None));
        tap_sockets.push((tap.listen, socket.clone()));
        // The tap relays the CLI's token: its upstream is gated like the probes' forwards, trusting what
        // the forward it reports for trusts. Its upstream is a local address, or the forward's own route.
        let fronted = config.forwards.iter().find(|forward| forward.name == tap.forward);
        let also_trusted = fronted.map(|forward| forward.trusted_owners.clone()).unwrap_or_default();
        let upstream = match tap.upstream {
            Some(addr) => Route::Local(addr),
            None => match routes.get(&tap.forward) {
                Some(route) => route.clone(),
                None => {
                    // Validated: a tap names a configured forward, and prepare built its route.
                    tracing::error!(listen = %tap.listen, forward = %tap.forward, "auth tap has no upstream route");
                    *lock(&socket) = listener;
                    continue;
                }
            },
        };
        let lookup = config.scheduler.owner_lookup;
        let upstream_key = upstream.ws_url();
        let wsl_companion = upstream.local().and_then(|local| config.wsl_companion_for(local));
        let same = |kept: &&TapGate| {
            kept.upstream == upstream_key
                && kept.lookup == lookup
                && kept.also_trusted == also_trusted
                && kept.wsl_companion == wsl_companion
        };
        let gate = match running_gates.iter().find(same) {
            Some(kept) => kept.gate.clone(),
            None => {
                let session = |addr| crate::kinds::tunnel::session_target(addr, config, owner_index);
                Arc::new(tokio::sync::Mutex::new(CredentialGate::for_route(&upstream, session, also_trusted.clone())))
            }
        };
        tap_gates.push(TapGate {
            upstream: upstream_key.clone(),
            lookup,
            also_trusted,
            wsl_companion,
            gate: gate.clone(),
        });
        let tap_config = probes::auth_tap::TapConfig {
            forward: tap.forward.clone(),
            upstream,
            registry: registry.clone(),
            connect_timeout: Duration::from_secs(10),
            max_connections: tap.max_connections,
            header_read_timeout: tap.header_read_timeout,
            idle_timeout: tap.idle_timeout,
            gate: Some(gate),
        };
        let sink = kinds::tap_sink(recorder, &tap.forward);
        // Only the accept loop belongs to the generation: a relayed connection runs to its end. The socket
        // is registered with the reactor of the runtime that accepts on it, so inside the task.
        let (listen, forward, cancel) = (tap.listen, tap.forward.clone(), cancel.clone());
        let serve = async move {
            let listener = match listener {
                Some(listener) => listener,
                None => match tap_listener(listen, lookup, &sink, &cancel).await {
                    Some(listener) => listener,
                    None => return,
                },
            };
            let accepting = listener.try_clone();
            *lock(&socket) = Some(listener);
            let accepting = accepting.and_then(tokio::net::TcpListener::from_std);
            match accepting {
                Ok(accepting) => {
                    sink.listening(listen);
                    tracing::info!(listen = %listen, upstream = %upstream_key, forward = %forward, "auth tap listening");
                    let sink: Arc<dyn probes::auth_tap::AuthSink> = sink;
                    probes::auth_tap::serve(accepting, tap_config, sink).await;
                }
                // Out of descriptors: the tap's socket stays bound (kept in its slot), so clients queue rather
                // than get refused, and the next reload retries.
                Err(err) => tracing::error!(listen = %listen, error = %err, "auth tap cannot accept"),
            }
        };
        match tap_thread() {
            Some(thread) => tap_accepts.push(thread.spawn(serve)),
            None => drop(tasks.spawn(serve)),
        }
    }
    StartedTaps { accepts: tap_accepts, sockets: tap_sockets, gates: tap_gates }
}

/// A tap's socket once its address is free ([`crate::listen::open_when_free`]), each failed bind reported to
/// its sink with who holds the address. `None` when the generation stops first.
async fn tap_listener(
    listen: SocketAddr,
    lookup: ssh_session::Lookup,
    sink: &kinds::auth::TapSink,
    cancel: &CancellationToken,
) -> Option<std::net::TcpListener> {
    let holder_of = move |addr| kinds::auth::TapHolder::look_up(addr, lookup);
    crate::listen::open_when_free(listen, cancel, holder_of, |failed| {
        sink.listen_failed(listen, failed.reason, failed.error, failed.holder);
    })
    .await
}

/// A mutex's guard, through a poisoning (what it guards stays consistent: one assignment).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The taps' own thread and runtime, started on first use (None if the OS refuses a thread: the taps then run
/// on the probes' thread, as they did before). A tap relays the user's own traffic at the rate the user makes
/// it, so on the probes' thread a burst of it delayed probes (bench/overload.py, 2,000 new connections in a
/// second: probe lag p99 2.5 -> 10 ms, first-byte mean 1.35 -> 2.24 ms, the raw client beside unchanged). At
/// normal priority: it is in the user's path.
fn tap_thread() -> Option<&'static tokio::runtime::Handle> {
    static THREAD: std::sync::OnceLock<Option<tokio::runtime::Handle>> = std::sync::OnceLock::new();
    THREAD
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("auth-tap".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}
