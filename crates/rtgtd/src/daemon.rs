//! Wiring: bind, detach, start the runtime, accept connections, serve the control socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use rtgt_target::Registry;
use tokio::sync::Notify;

use crate::cli::Options;
use crate::transport::{self, Transport};
use crate::{control, demo, listen};

/// A session as far as reinstatement cares: (target name, initiator port name). The
/// same initiator port logging in to the same target again is the same I_T nexus.
pub type SessionKey = (String, String);

/// Handle on a running session: ask it to close and wait until it has.
pub struct SessionHandle {
    pub id: u64,
    pub close: Arc<Notify>,
    pub closed: tokio::sync::watch::Receiver<bool>,
}

pub struct Daemon {
    pub registry: Arc<Registry>,
    pub sessions: Mutex<HashMap<SessionKey, SessionHandle>>,
    /// Logins in progress and failed-authentication rate limiting.
    pub guard: crate::guard::Guard,
    /// Set when the daemon stops: connections ask their initiators to log out.
    pub stop: tokio::sync::watch::Sender<bool>,
    /// Seconds initiators are given to log out on a stop (Async Message Parameter3).
    pub stop_timeout: u16,
    next_id: AtomicU64,
    next_tsih: AtomicU16,
}

impl Daemon {
    /// Ids for I_T nexuses and sessions: never reused while the daemon runs.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// TSIHs are 16 bits and never 0 (RFC 7143 §11.12.6).
    pub fn next_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }
}

fn init_logging(opts: &Options) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let default = if opts.debug.is_some() {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("RTGT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if let Some(path) = &opts.log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("log file {}", path.display()))?;
        builder.with_ansi(false).with_writer(Arc::new(file)).init();
    } else {
        use std::io::IsTerminal;
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
    Ok(())
}

/// Detaches like tgtd: fork, the parent exits, the child starts a new session with its
/// standard streams on /dev/null. Must run before any thread is started.
fn detach() -> Result<()> {
    // SAFETY: single-threaded here (no runtime yet); fork/setsid/dup2 are async-signal-safe.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()).context("fork"),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// Reads and parses `--config FILE`, and takes its daemon settings where the command
/// line gives none.
fn read_config(opts: &mut Options) -> Result<Option<(String, String)>> {
    let Some(path) = opts.config.clone() else {
        return Ok(None);
    };
    let file = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("config file {file}: can't read it"))?;
    let cfg = rtgt_target::config::parse(&file, &text)?;
    let has_portal = opts
        .iscsi
        .iter()
        .any(|g| g.split(',').any(|i| i.starts_with("portal=")));
    if !has_portal {
        for p in &cfg.daemon.portals {
            opts.iscsi.push(format!("portal={p}"));
        }
    }
    if opts.state_dir.is_none() {
        opts.state_dir = cfg.daemon.state_dir.as_ref().map(Into::into);
    }
    if opts.isns.is_none() {
        if let Some(s) = &cfg.daemon.isns {
            opts.isns = Some(
                crate::isns::parse_server(s)
                    .map_err(|e| anyhow::anyhow!("config file {file}: key `isns`: {e}"))?,
            );
        }
    }
    Ok(Some((file, text)))
}

pub fn run(mut opts: Options) -> Result<()> {
    let config = read_config(&mut opts)?;
    let socket_path = opts
        .control_socket
        .clone()
        .unwrap_or_else(|| rtgt_target::control::default_socket_path(opts.control_port));
    let registry = Registry::new();
    // Listening before the control socket and before detaching: a port in use is
    // reported to whoever started rtgtd.
    let transports = transport::open_all(&opts, &registry)?;
    let control_group = opts
        .control_group
        .as_deref()
        .map(listen::resolve_group)
        .transpose()?;
    let control = listen::bind_control(&socket_path, control_group)?;
    control.set_nonblocking(true)?;
    let metrics = match opts.metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| {
                let _ = std::fs::remove_file(&socket_path);
                anyhow::anyhow!("--metrics {addr}: {e}")
            })?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    registry.set_state_dir(Some(opts.state_dir()));
    registry.set_daemon_version(crate::build_info::version());
    registry.set_isns(opts.isns.map(|a| a.to_string()));
    if opts.demo {
        let dir = opts.state_dir();
        let r = demo::setup(&registry, &dir);
        if r.is_err() {
            let _ = std::fs::remove_file(&socket_path);
        }
        r?;
    }
    // Loaded before detaching, so a bad file is reported on stderr and rtgtd exits
    // non-zero instead of guessing.
    let mut loaded = None;
    if let Some((file, text)) = &config {
        // rbd LUs connect after the fork below (start_connections).
        rtgt_backstore::defer_connections();
        let start = std::time::Instant::now();
        let r = rtgt_target::config::load(&registry, file, text);
        if r.is_err() {
            let _ = std::fs::remove_file(&socket_path);
        }
        let steps = r?;
        loaded = Some((file.clone(), steps, start.elapsed()));
    }
    // Written once before detaching, so a file that can't be written stops rtgtd here.
    if let Some(path) = &opts.save_config {
        if let Err(e) = crate::save::save(&registry, path) {
            let _ = std::fs::remove_file(&socket_path);
            bail!("--save-config {}: {e}", path.display());
        }
    }
    if !opts.foreground {
        detach()?;
    }
    init_logging(&opts)?;
    let saver = match &opts.save_config {
        Some(p) => Some(crate::save::Saver::start(&registry, p.clone())?),
        None => None,
    };
    crate::guard::raise_nofile();
    // After detaching (threads don't survive fork) and before any LUN does I/O.
    rtgt_backstore::pool::init(opts.nr_iothreads);
    rtgt_backstore::uring::warn_if_unavailable();
    rtgt_backstore::start_connections(std::time::Duration::from_secs(5));
    if let Some((file, steps, took)) = loaded {
        let luns: usize = registry
            .targets()
            .iter()
            .map(|t| t.scsi.lu_info().len() - 1)
            .sum();
        tracing::info!(
            "configuration {file} loaded: {} targets, {luns} LUNs ({steps} requests) in {:.1} ms",
            registry.targets().len(),
            took.as_secs_f64() * 1e3
        );
    }
    if registry.targets().is_empty() {
        // A first start (the packaged /etc/rtgt/rtgt.toml serves nothing until edited)
        // should say what to do next, in one line.
        let file = match &opts.config {
            Some(f) => format!("a [[target]] to {} and reload (SIGHUP)", f.display()),
            None => "a [[target]] to a file given with --config FILE".to_string(),
        };
        tracing::info!(
            "no targets configured: add {file}, or one live with `rtgtadm --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.org.example:disk1` (see rtgtadm --help)"
        );
    }
    let n = opts.reactors.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let (rt, reactors) = if n == 0 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("rtgtd")
            .build()
            .context("starting the runtime")?;
        (rt, Reactors::default())
    } else {
        // The main thread is reactor 0 and also runs the listeners and control socket.
        let policy = crate::coalesce::Policy::new(
            opts.coalesce_us.unwrap_or(crate::cli::DEFAULT_COALESCE).0,
        );
        let rt = reactor_runtime(policy).context("starting the runtime")?;
        let mut handles = vec![rt.handle().clone()];
        for i in 1..n {
            handles.push(start_reactor(i, policy)?);
        }
        (
            rt,
            Reactors {
                handles,
                next: AtomicUsize::new(0),
            },
        )
    };
    if let Some(l) = metrics {
        let _in = rt.enter();
        let l = tokio::net::TcpListener::from_std(l)?;
        tracing::info!("metrics on http://{}/metrics", l.local_addr()?);
        rt.spawn(crate::metrics::serve(l, registry.clone()));
    }
    let result = rt.block_on(serve(
        registry,
        transports,
        control,
        control_group,
        reactors,
        Lifecycle {
            config: opts.config.clone(),
            stop_timeout: opts.stop_timeout,
            isns: opts.isns,
        },
    ));
    let _ = std::fs::remove_file(&socket_path);
    if let Some(s) = saver {
        s.finish();
    }
    // Don't wait for blocked I/O threads of dead connections.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Event loops that own connections: each connection lives on one reactor thread with
/// the tasks of its commands, so a command's completion wakes the thread that sends its
/// response and nothing migrates between CPUs. Empty: one work-stealing runtime.
#[derive(Default)]
pub struct Reactors {
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

impl Reactors {
    /// Runs a connection's future on the next reactor in turn (or on the work-stealing
    /// pool when there are none). Whatever the future registers with an event loop
    /// (its socket) it must register inside, on its reactor.
    pub fn spawn(&self, conn: impl std::future::Future<Output = ()> + Send + 'static) {
        if self.handles.is_empty() {
            tokio::spawn(conn);
            return;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(conn);
    }
}

/// A reactor's event loop, on the calling thread: single-threaded, napping before it
/// sleeps as `policy` says (see [`crate::coalesce`]).
fn reactor_runtime(policy: crate::coalesce::Policy) -> std::io::Result<tokio::runtime::Runtime> {
    policy.prepare_thread();
    // Device handlers are woken once per turn, when the reactor has nothing else to do.
    rtgt_backstore::handler::defer_kicks();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            rtgt_backstore::handler::end_of_turn();
            policy.before_idle()
        })
        .build()
}

/// A reactor thread: a single-threaded runtime that runs until the process exits.
fn start_reactor(i: usize, policy: crate::coalesce::Policy) -> Result<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("rtgtd-r{i}"))
        .spawn(move || {
            let rt = match reactor_runtime(policy) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(std::future::pending::<()>());
        })
        .context("starting a reactor thread")?;
    rx.recv()
        .context("starting a reactor thread")?
        .context("starting a reactor runtime")
}

/// What reload and stop need: the `--config` file and the logout time on a stop.
struct Lifecycle {
    config: Option<std::path::PathBuf>,
    stop_timeout: u16,
    isns: Option<SocketAddr>,
}

async fn serve(
    registry: Arc<Registry>,
    transports: Vec<Box<dyn Transport>>,
    control: std::os::unix::net::UnixListener,
    control_group: Option<u32>,
    reactors: Reactors,
    life: Lifecycle,
) -> Result<()> {
    let Lifecycle {
        config,
        stop_timeout,
        isns,
    } = life;
    let reactors = Arc::new(reactors);
    // `--op delete --mode sys` asks for shutdown; the control server signals it only
    // after the reply has reached rtgtadm (tgtadm reports success here).
    let shutdown = Arc::new(Notify::new());
    let daemon = Arc::new(Daemon {
        registry: registry.clone(),
        sessions: Mutex::new(HashMap::new()),
        guard: crate::guard::Guard::default(),
        stop: tokio::sync::watch::channel(false).0,
        stop_timeout,
        next_id: AtomicU64::new(1),
        next_tsih: AtomicU16::new(1),
    });
    let mut accepts = Vec::new();
    for t in transports {
        accepts.extend(t.start(&daemon, &reactors)?);
    }
    let isns_task = isns.map(|server| {
        let changed = Arc::new(Notify::new());
        let c = changed.clone();
        registry.add_change_hook(Box::new(move || c.notify_one()));
        let first = registry.portals().first().copied();
        let eid = format!(
            "rtgtd@{}",
            first.map_or_else(|| "-".to_string(), |a| a.to_string())
        );
        let client = crate::isns::Client { server, eid };
        tokio::spawn(client.run(registry.clone(), changed, daemon.stop.subscribe()))
    });
    let control = tokio::net::UnixListener::from_std(control)?;
    tokio::spawn(control::serve(
        control,
        registry.clone(),
        shutdown.clone(),
        control_group,
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Portals listen, the control socket answers, the configuration is loaded.
    crate::notify::notify("READY=1");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, exiting"),
            _ = term.recv() => tracing::info!("SIGTERM, exiting"),
            _ = shutdown.notified() => tracing::info!("shutdown requested by rtgtadm"),
            _ = hup.recv() => {
                crate::notify::notify("RELOADING=1");
                reload(&registry, config.as_deref()).await;
                crate::notify::notify("READY=1");
                continue;
            }
        }
        break;
    }
    crate::notify::notify("STOPPING=1");
    crate::stop::graceful(&daemon, accepts).await;
    if let Some(t) = isns_task {
        // It deregisters once the stop is signalled (bounded by its own timeouts).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(12), t).await;
    }
    Ok(())
}

/// SIGHUP: applies the `--config` file again, as `rtgtadm config apply` would (without
/// --force: a change that would cut sessions off is refused and logged).
async fn reload(registry: &Arc<Registry>, config: Option<&std::path::Path>) {
    let Some(path) = config else {
        tracing::info!("SIGHUP without --config: nothing to reload");
        return;
    };
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("SIGHUP: config file {file}: {e}; nothing changed");
            return;
        }
    };
    let reg = registry.clone();
    let f = file.clone();
    let r = tokio::task::spawn_blocking(move || {
        rtgt_target::config::apply(&reg, &f, &text, false, false)
    })
    .await;
    match r {
        Ok(Ok(plan)) => {
            for line in plan.lines() {
                tracing::info!("SIGHUP: {file}: {line}");
            }
        }
        Ok(Err((_, msg))) => tracing::error!("SIGHUP: {msg}"),
        Err(e) => tracing::error!("SIGHUP: applying {file} failed: {e}"),
    }
}
