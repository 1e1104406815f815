//! Shared harness for rtgtd's integration tests: finds the built binaries, picks a free
//! loopback port, starts `rtgtd -f` with a private control socket (killed on drop), runs
//! `rtgtadm` with tgtadm's syntax, and checks for the external initiators.
//!
//! Each test gets its own daemon, port, temp dir and control socket, so tests are
//! independent and may run in parallel.
#![allow(dead_code)]

pub mod raw;
pub mod scsi;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for rtgtd to listen and answer rtgtadm.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The rtgtd binary under test: env `RTGTD`, else `RTGT_BIN_DIR/rtgtd`, else the one cargo
/// built for this package.
pub fn rtgtd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RTGTD") {
        return p.into();
    }
    if let Some(d) = std::env::var_os("RTGT_BIN_DIR") {
        return Path::new(&d).join("rtgtd");
    }
    PathBuf::from(env!("CARGO_BIN_EXE_rtgtd"))
}

/// The rtgtadm binary: env `RTGTADM`, else `RTGT_BIN_DIR/rtgtadm`, else next to rtgtd in the
/// workspace target dir (cargo can't build another package's binary for a test, so
/// `cargo build --workspace` or `cargo test --workspace` must have built it).
pub fn rtgtadm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RTGTADM") {
        return p.into();
    }
    if let Some(d) = std::env::var_os("RTGT_BIN_DIR") {
        return Path::new(&d).join("rtgtadm");
    }
    let rtgtd = PathBuf::from(env!("CARGO_BIN_EXE_rtgtd"));
    let p = rtgtd.with_file_name(format!("rtgtadm{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} not found: build it first with `cargo build --workspace` (or set RTGTADM)",
        p.display()
    );
    p
}

/// A loopback port nobody listens on right now. Taken below the kernel's ephemeral range
/// (32768 and up), so no client socket of a parallel test can grab it between this probe
/// and rtgtd's bind; each test process gets its own slice of ports (by pid) and walks it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SLICE: u32 = 40;
    let base = 20_000 + (std::process::id() % 300) * SLICE;
    for _ in 0..4 * SLICE {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed) % SLICE) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

pub fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// A directory removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "rtgt-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command to completion, killing it (and failing the test) after `timeout`.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let so = t_out.join().unwrap();
            let se = t_err.join().unwrap();
            panic!(
                "{desc} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&so),
                String::from_utf8_lossy(&se)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

pub fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Panics with the command's output unless it exited 0; returns stdout.
pub fn check(what: &str, o: &Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Whether an external tool is usable. When it's missing: under CI (env `CI` set) the test
/// fails, telling to run scripts/install-deps.sh; otherwise it prints a skip note and the
/// caller returns early.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    tool_result(tool, found, "not found on PATH")
}

/// qemu-img with its iSCSI block driver (Debian: qemu-block-extra matching qemu-utils).
pub fn have_qemu_iscsi() -> bool {
    if !have_tool("qemu-img") {
        return false;
    }
    // With the driver, opening a closed port fails with an "iSCSI: ..." message; without it
    // qemu-img says "Unknown protocol 'iscsi'" (or that the module failed to load).
    let o = run_timeout(
        Command::new("qemu-img").args(["info", "iscsi://127.0.0.1:1/iqn.2026-11.org.rtgt:probe/0"]),
        Duration::from_secs(30),
    );
    let err = text(&o.stderr);
    let ok = err.contains("iSCSI") && !err.contains("Unknown protocol");
    tool_result("qemu-img iSCSI driver (qemu-block-extra)", ok, err.trim())
}

fn tool_result(tool: &str, ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required ({why}): run scripts/install-deps.sh");
    }
    eprintln!(
        "SKIPPED: {tool} unavailable ({why}); run scripts/install-deps.sh to enable this test"
    );
    false
}

/// Stops process `pid` (SIGSTOP) and returns once every one of its threads is stopped.
/// kill(2) only queues a stop: one thread is woken to begin the group stop, and on a
/// loaded machine the others can run on meanwhile (an OSD answered a write sent after
/// kill() had returned, and a test saw GOOD where a stalled cluster must time out).
pub fn stop_process(pid: i32) {
    // SAFETY: a signal to a process the calling test started.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGSTOP) },
        0,
        "SIGSTOP {pid}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                    // "tid (comm) S ...": the state follows the last ')' (comm may hold one).
                    .filter_map(|st| {
                        st.rsplit_once(')')
                            .and_then(|(_, r)| r.trim().chars().next())
                    })
                    .collect()
            })
            .unwrap_or_default();
        // T: stopped; Z / X: a thread that is exiting does not run either.
        if !tasks.is_empty() && tasks.iter().all(|s| matches!(s, 'T' | 't' | 'Z' | 'X')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} did not stop: {tasks:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lets a process stopped by [`stop_process`] run again.
pub fn continue_process(pid: i32) {
    // SAFETY: a signal to a process the calling test started.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGCONT) },
        0,
        "SIGCONT {pid}"
    );
}

/// A deterministic pseudo-random byte stream (SplitMix64), so a failing run can be repeated.
pub fn prng_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.extend_from_slice(&z.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Creates a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    let f = std::fs::File::create(path).expect("create image");
    f.set_len(size).expect("set image size");
}

pub const GIB: u64 = 1 << 30;

/// A running `rtgtd -f` on a private loopback port and control socket; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    /// The `-C` control port number (private because RTGT_RUN_DIR is private).
    pub ctl: u16,
    pub dir: TempDir,
    pub run_dir: PathBuf,
    pub log_path: PathBuf,
}

impl Daemon {
    /// `rtgtd -f -C 1 --iscsi portal=127.0.0.1:PORT` with `RTGT_RUN_DIR` in its own temp dir.
    pub fn start() -> Daemon {
        Self::start_args(&[])
    }

    /// As [`start`](Self::start), with extra rtgtd arguments.
    pub fn start_args(extra: &[&str]) -> Daemon {
        let dir = TempDir::new("rtgtd");
        let port = free_port();
        let portal = format!("portal=127.0.0.1:{port}");
        let mut args = vec!["-f", "-C", "1", "--iscsi", &portal];
        args.extend_from_slice(extra);
        Self::spawn(dir, port, &args)
    }

    /// Starts rtgtd with exactly `args` (the caller supplies `-f` and portals), waiting
    /// until `port` accepts and the control socket answers.
    pub fn spawn(dir: TempDir, port: u16, args: &[&str]) -> Daemon {
        Self::spawn_env(dir, port, args, &[])
    }

    /// As [`start_args`](Self::start_args), with extra environment variables for rtgtd.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new("rtgtd");
        let port = free_port();
        let portal = format!("portal=127.0.0.1:{port}");
        let mut args = vec!["-f", "-C", "1", "--iscsi", &portal];
        args.extend_from_slice(extra);
        Self::spawn_env(dir, port, &args, env)
    }

    /// As [`spawn`](Self::spawn), with extra environment variables for rtgtd.
    pub fn spawn_env(dir: TempDir, port: u16, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let log_path = dir.join("rtgtd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(rtgtd_bin())
            .args(args)
            .env("RTGT_RUN_DIR", &run_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", rtgtd_bin().display()));
        let mut d = Daemon {
            child: Some(child),
            port,
            ctl: 1,
            dir,
            run_dir,
            log_path,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rtgtd exited ({st}) before it was ready; its log:\n{}",
                    self.log()
                );
            }
            // Our own control socket must exist too: a port that accepts could belong to
            // another daemon (a parallel test's), while the socket in our private run
            // directory can only be this daemon's, bound after its portals.
            // Connecting (not just seeing the file) proves the socket listens: between
            // bind(2) and listen(2) a connect is refused.
            let control_up = std::fs::read_dir(&self.run_dir).is_ok_and(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with("socket.")
                        && std::os::unix::net::UnixStream::connect(e.path()).is_ok()
                })
            });
            if control_up && port_accepts(self.port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "rtgtd did not listen on 127.0.0.1:{} within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The daemon's process id (for /proc and strace).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `rtgtadm -C N --lld iscsi ARGS...` against this daemon.
    pub fn adm(&self, args: &[&str]) -> Output {
        let ctl = self.ctl.to_string();
        run_timeout(
            Command::new(rtgtadm_bin())
                .args(["-C", &ctl, "--lld", "iscsi"])
                .args(args)
                .env("RTGT_RUN_DIR", &self.run_dir),
            Duration::from_secs(30),
        )
    }

    /// As [`adm`](Self::adm), failing the test unless it succeeds; returns stdout.
    pub fn adm_ok(&self, args: &[&str]) -> String {
        let o = self.adm(args);
        if !o.status.success() {
            // The daemon's side of the story, for a failure that only shows under load.
            eprintln!("rtgtd log:\n{}", self.log());
        }
        check(&format!("rtgtadm {}", args.join(" ")), &o)
    }

    /// `tgtadm --op new --mode target --tid TID -T IQN`.
    pub fn new_target(&self, tid: &str, iqn: &str) {
        self.adm_ok(&["--op", "new", "--mode", "target", "--tid", tid, "-T", iqn]);
    }

    /// `tgtadm --op bind --mode target --tid TID -I ALL`.
    pub fn bind_all(&self, tid: &str) {
        self.adm_ok(&[
            "--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL",
        ]);
    }

    /// `tgtadm --op update --mode logicalunit --tid TID --lun LUN --params PARAMS`.
    pub fn update_lu(&self, tid: &str, lun: &str, params: &str) {
        self.adm_ok(&[
            "--op",
            "update",
            "--mode",
            "logicalunit",
            "--tid",
            tid,
            "--lun",
            lun,
            "--params",
            params,
        ]);
    }

    /// Target `tid` named `iqn` with a sparse file LUN 1 of `size` bytes, bound to ALL,
    /// configured with tgtadm's syntax. Returns the image path.
    pub fn add_disk(&self, tid: u32, iqn: &str, size: u64, lun_opts: &[&str]) -> PathBuf {
        let tid = tid.to_string();
        let img = self.dir.join(&format!("tid{tid}-lun1.img"));
        sparse_file(&img, size);
        self.new_target(&tid, iqn);
        let mut lu = vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            "1",
            "-b",
            img.to_str().unwrap(),
        ];
        lu.extend_from_slice(lun_opts);
        self.adm_ok(&lu);
        self.bind_all(&tid);
        img
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN`
    pub fn url(&self, iqn: &str, lun: u32) -> String {
        format!("iscsi://127.0.0.1:{}/{iqn}/{lun}", self.port)
    }

    pub fn portal_url(&self) -> String {
        format!("iscsi://127.0.0.1:{}", self.port)
    }

    /// Kills the daemon with SIGKILL, as a crash or power loss would end it: nothing
    /// gets a chance to be written on the way out.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the daemon (SIGTERM, then SIGKILL) and returns how it exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- rtgtd log ({}) ---\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Runs a libiscsi (or other) tool with a generous timeout; returns its output.
pub fn tool(cmd: &str, args: &[&str]) -> Output {
    run_timeout(Command::new(cmd).args(args), Duration::from_secs(120))
}

/// Runs a tool and fails the test unless it exits 0; returns stdout.
pub fn tool_ok(cmd: &str, args: &[&str]) -> String {
    let o = tool(cmd, args);
    check(&format!("{cmd} {}", args.join(" ")), &o)
}
