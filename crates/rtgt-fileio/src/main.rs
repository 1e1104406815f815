//! rtgt-fileio: serves files to rtgtd over the device-handler protocol, with SCST
//! fileio_tgt's command line (`rtgt-fileio [OPTIONS] name path [name path ...]`).
//! See the README's "Device handlers" section for what each option does here.

mod device;
mod scsi;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rtgt_handler::client::{self, Attachment};
use rtgt_handler::wire::{self, device_flag, feature, Hello};

use device::{Device, Modes};

/// fileio_tgt's limit.
const MAX_DEVICES: usize = 10;

#[derive(Parser, Debug)]
#[command(
    name = "rtgt-fileio",
    version,
    about = "Serve files to rtgtd as logical units over rtgt's device-handler protocol (SCST fileio_tgt's options)"
)]
struct Args {
    /// Logical block size: 512 or 4096 (the LU's --blocksize must match).
    #[arg(short = 'b', long = "block", default_value_t = 512)]
    block: u32,
    /// Threads per device; each serves one queue of its own.
    #[arg(short = 'e', long = "threads", default_value_t = 1)]
    threads: u32,
    /// Write through: O_DSYNC, no volatile cache (WCE=0).
    #[arg(short = 't', long = "write_through")]
    write_through: bool,
    /// Read only: writes fail with DATA PROTECT.
    #[arg(short = 'r', long = "read_only")]
    read_only: bool,
    /// O_DIRECT (SYNCHRONIZE CACHE and FUA still flush the disk's cache).
    #[arg(short = 'o', long = "direct")]
    direct: bool,
    /// Null I/O: nothing is read or written, reads return zeroes.
    #[arg(short = 'n', long = "nullio")]
    nullio: bool,
    /// NV cache: SYNCHRONIZE CACHE and FUA are no-ops.
    #[arg(short = 'c', long = "nv_cache")]
    nv_cache: bool,
    /// Who parses CDBs: std (rtgtd; the block kind), call (the handler parses every
    /// CDB: the SCSI kind, for an LU of --device-type handler), excpt (the block kind,
    /// and CDBs whose opcode rtgtd does not know come to the handler).
    #[arg(short = 'p', long = "parse", default_value = "std")]
    parse: String,
    /// Free notifications: ignore, or call (rtgtd tells the handler when each command
    /// is finished and its arena slot handed back).
    #[arg(short = 'f', long = "on_free", default_value = "ignore")]
    on_free: String,
    /// Buffer reuse: all|read|write|none. rtgtd's arena slots are always reused.
    #[arg(short = 'm', long = "mem_reuse", default_value = "all")]
    mem_reuse: String,
    /// Non-blocking: poll the command ring instead of sleeping on the eventfd, so
    /// rtgtd never has to wake the handler (the wake flag stays "don't wake me").
    #[arg(short = 'l', long = "non_blocking")]
    non_blocking: bool,
    /// Let each queue's thread run on any CPU. By default it is bound to the CPU of
    /// the rtgtd thread that feeds it (the hint rtgtd leaves when it wakes it), and
    /// follows it when it moves: wake-ups each way are then local context switches.
    #[arg(long = "no-follow-cpu")]
    no_follow_cpu: bool,
    /// 1: complete a batch of commands, then one wake-up; 0: a wake-up per command.
    #[arg(short = 'M', long = "multi_cmd", default_value_t = 1)]
    multi_cmd: u8,
    /// fileio_tgt's vdisk id: accepted; rtgtd derives the LU's identity itself.
    #[arg(short = 'I', long = "vdisk_id")]
    vdisk_id: Option<u64>,
    /// Commands in flight per queue to ask for (0: rtgtd's default).
    #[arg(long = "depth", default_value_t = 0)]
    depth: u32,
    /// Testing aid: sleep this many microseconds before each command, so that a test
    /// can kill the handler while commands are in flight.
    #[arg(long = "delay-us", default_value_t = 0, hide = true)]
    delay_us: u64,
    /// Testing aid: never complete a raw CDB with this opcode (a hung handler).
    #[arg(long = "stall-opcode", hide = true, value_parser = parse_opcode)]
    stall_opcode: Option<u8>,
    /// Testing aid: never answer task management.
    #[arg(long = "ignore-tmf", hide = true)]
    ignore_tmf: bool,
    /// Seconds to keep trying to reach rtgtd's socket.
    #[arg(long = "wait", default_value_t = 30)]
    wait: u64,
    /// name path [name path ...]: a name is the LU's handler socket
    /// ($RTGT_RUN_DIR/handlers/NAME.sock, or a path with a /).
    #[arg(required = true, num_args = 2..)]
    devices: Vec<String>,
}

fn parse_opcode(s: &str) -> Result<u8, String> {
    let t = s.trim_start_matches("0x");
    u8::from_str_radix(t, 16).map_err(|e| format!("{s}: {e} (a hex opcode)"))
}

static CAPACITY_CHANGED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    CAPACITY_CHANGED.store(true, Ordering::Relaxed);
}

fn connect(sock: &Path, hello: &Hello, wait: Duration) -> std::io::Result<Attachment> {
    let deadline = Instant::now() + wait;
    loop {
        match client::connect(sock, hello) {
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    )
                    && !e.to_string().contains("refused the handler") =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let fail = |m: String| {
        eprintln!("rtgt-fileio: {m}");
        ExitCode::FAILURE
    };
    if a.devices.len() % 2 != 0 {
        return fail("devices are given as name path pairs".into());
    }
    if a.devices.len() / 2 > MAX_DEVICES {
        return fail(format!("at most {MAX_DEVICES} devices per process"));
    }
    if !(a.block.is_power_of_two() && a.block >= 512) {
        return fail(format!("-b {}: a power of two of at least 512", a.block));
    }
    let parse = a.parse.as_str();
    if !matches!(parse, "std" | "call" | "excpt") {
        return fail(format!("-p {parse}: use std, call or excpt"));
    }
    let free_notify = match a.on_free.as_str() {
        "ignore" => false,
        "call" => true,
        f => return fail(format!("-f {f}: use ignore or call")),
    };
    if !matches!(a.mem_reuse.as_str(), "all" | "read" | "write" | "none") {
        return fail(format!("-m {}: use all, read, write or none", a.mem_reuse));
    }
    if a.threads == 0 || a.threads > 64 {
        return fail(format!("-e {}: 1 to 64 threads", a.threads));
    }
    let _ = a.vdisk_id;
    let modes = Modes {
        write_through: a.write_through,
        read_only: a.read_only,
        direct: a.direct,
        nullio: a.nullio,
        nv_cache: a.nv_cache,
    };
    unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as *const () as usize) };
    let stop = Arc::new(AtomicBool::new(false));
    let mut attached = Vec::new();
    let mut workers = Vec::new();
    for pair in a.devices.chunks(2) {
        let (name, path) = (pair[0].clone(), PathBuf::from(&pair[1]));
        let mut dev = match Device::open(name.clone(), path.clone(), modes) {
            Ok(d) => d,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        let size = match dev.size() {
            Ok(s) => s / u64::from(a.block) * u64::from(a.block),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        if size == 0 {
            return fail(format!("{}: smaller than one block", path.display()));
        }
        dev.ident = format!("rtgt-fileio {name} parse={parse}");
        dev.stall_opcode = a.stall_opcode;
        dev.ignore_tmf = a.ignore_tmf;
        if parse == "call" {
            match scsi::Emulated::open(&name, &path, modes, a.block, size) {
                Ok(e) => dev.emulated = Some(e),
                Err(e) => return fail(format!("{}: {e}", path.display())),
            }
        }
        let dev = Arc::new(dev);
        let mut features = feature::FLUSH | feature::FUA | feature::WRITE_ZEROES;
        if parse == "excpt" {
            features |= feature::SCSI_EXCEPT;
        }
        if free_notify {
            features |= feature::FREE_NOTIFY;
        }
        let mut flags = 0;
        if dev.can_unmap() {
            features |= feature::UNMAP;
            flags |= device_flag::UNMAP_ZEROES;
        }
        if a.read_only {
            flags |= device_flag::READ_ONLY;
        }
        if a.write_through {
            flags |= device_flag::WRITE_THROUGH;
        }
        let hello = Hello {
            major: wire::MAJOR,
            minor: wire::MINOR,
            kind: if parse == "call" {
                wire::kind::SCSI
            } else {
                wire::kind::BLOCK
            },
            features,
            capacity: size,
            block_size: a.block,
            queues: a.threads,
            depth: a.depth,
            flags,
            max_xfer: 0,
            name: name.clone(),
        };
        let sock = rtgt_handler::socket_path(Path::new(&name));
        let mut att = match connect(&sock, &hello, Duration::from_secs(a.wait)) {
            Ok(att) => att,
            Err(e) => return fail(format!("{name}: {}: {e}", sock.display())),
        };
        println!(
            "rtgt-fileio: {name}: {} ({size} bytes) attached to {} with {} queue(s) of depth {}",
            path.display(),
            sock.display(),
            att.accept.queues,
            att.accept.depth
        );
        for mut q in att.queues.drain(..) {
            q.batch = a.multi_cmd != 0;
            let (d, s) = (dev.clone(), stop.clone());
            let poll_only = a.non_blocking;
            let delay = Duration::from_micros(a.delay_us);
            let follow = !a.no_follow_cpu;
            workers.push(std::thread::spawn(move || {
                d.serve(q, s, poll_only, follow, delay)
            }));
        }
        attached.push((dev, att, u64::from(a.block)));
    }
    // Wait for rtgtd to close a connection (a deleted LU, or rtgtd gone), handling
    // SIGUSR1 (capacity changed) meanwhile.
    let fds: Vec<i32> = attached
        .iter()
        .map(|(_, at, _)| at.sock.as_raw_fd())
        .collect();
    loop {
        let ready = rtgt_handler::sys::poll_read(&fds, 200).unwrap_or_default();
        if let Some(i) = ready.iter().position(|&r| r) {
            eprintln!(
                "rtgt-fileio: {}: rtgtd closed the connection",
                attached[i].0.name
            );
            break;
        }
        if CAPACITY_CHANGED.swap(false, Ordering::Relaxed) {
            for (dev, att, bs) in attached.iter_mut() {
                if let Ok(s) = dev.size() {
                    let _ = att.notify_capacity(s / *bs * *bs);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    ExitCode::from(1)
}
