//! tgtd's command line: `-f`, `--iscsi portal=IP:PORT[,tpgt=N][,nop_interval=N,nop_count=M]`,
//! `-C N`, `-d`, plus `--control-socket`, `--demo` and `--state-dir`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

pub const ISCSI_PORT: u16 = 3260;

#[derive(Parser, Debug)]
#[command(
    name = "rtgtd",
    version,
    about = "rtgt daemon: SCSI targets over iSCSI"
)]
pub struct Options {
    /// Stay in the foreground (default: detach like tgtd).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// iSCSI driver options, comma separated: portal=IP:PORT (repeatable; IPv6 as
    /// [ADDR]:PORT), tpgt=N (the portal group tag of the portal before it, default 1;
    /// each portal group is an ALUA target port group), nop_interval=SECONDS (0 disables
    /// pings), nop_count=N, login_timeout=SECONDS (a login must be complete within this
    /// time of connecting, default 30), batch=1|0 (1: while an initiator keeps a deep
    /// queue, wake for a batch of its commands, not for each one; 0, the default).
    #[arg(long = "iscsi", value_name = "OPTIONS")]
    pub iscsi: Vec<String>,
    /// Serve iSCSI over RDMA too (iSER, RFC 7145; an rtgtd built with the rdma feature
    /// and an RDMA device), every target on both: --iser alone listens on all addresses,
    /// port 3260 of the RDMA connection manager's TCP port space; options, comma
    /// separated: portal=IP:PORT (repeatable), pool_mb=N (each connection's registered
    /// buffer pool for command data, MiB; default 16; 0: register each command's buffer).
    #[arg(long = "iser", value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "")]
    pub iser: Vec<String>,
    /// Control port: a private control socket per instance (`socket.N`).
    #[arg(short = 'C', long = "control-port", default_value_t = 0)]
    pub control_port: u16,
    /// Control socket path (overrides the one derived from -C).
    #[arg(long = "control-socket", value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Debug logging (tgtd takes a level; any value turns it on).
    #[arg(short = 'd', long = "debug", num_args = 0..=1, default_missing_value = "1")]
    pub debug: Option<u32>,
    /// Serve a demo disk: a sparse 1 GiB image in the state directory, as
    /// iqn.2026-11.org.rtgt:demo LUN 1 on 127.0.0.1:3260 (unless --iscsi portal= says otherwise).
    #[arg(long)]
    pub demo: bool,
    /// Where rtgtd keeps its files (the demo image, persistent reservations made with
    /// APTPL under pr/). Default /var/lib/rtgt for root,
    /// $XDG_STATE_HOME/rtgt (or ~/.local/state/rtgt) otherwise.
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Threads doing blocking backing-store I/O (rdwr's pread/pwrite/fdatasync), shared
    /// by every LUN (tgtd's option of the same name; default 16).
    #[arg(short = 't', long = "nr_iothreads", value_name = "N",
          default_value_t = rtgt_backstore::pool::DEFAULT_IO_THREADS,
          value_parser = parse_io_threads)]
    pub nr_iothreads: usize,
    /// Let members of this group (name or number) use the control socket too (mode 0660);
    /// without it only root and rtgtd's own user may (mode 0600).
    #[arg(long = "control-group", value_name = "GROUP")]
    pub control_group: Option<String>,
    /// Reactor threads serving iSCSI connections, each with its own event loop; new
    /// connections are dealt to them in turn. Default: one per CPU. 0 puts every
    /// connection on one work-stealing pool instead (tokio's multi-thread scheduler).
    #[arg(long = "reactors", value_name = "N")]
    pub reactors: Option<usize>,
    /// Wake-up coalescing, like a NIC's interrupt moderation: a reactor that has just
    /// answered a burst of commands (at least 4 since it was last idle) waits this many
    /// microseconds before sleeping, so what a deep-queued initiator sends meanwhile is
    /// served in one turn. Less CPU per command and fewer, larger TCP segments, at the
    /// price of latency under load, which costs IOPS when the initiator is the
    /// bottleneck (see the README's Performance section for measured trade-offs).
    /// Queue depth 1 is never delayed. `auto`: each reactor naps 100 µs only while its
    /// own probes (10 ms with naps, 10 ms without, every quarter second) measure that
    /// napping serves commands faster. 0 (the default) turns coalescing off; at most
    /// 10000.
    #[arg(long = "coalesce-us", value_name = "US|auto", value_parser = parse_coalesce)]
    pub coalesce_us: Option<CoalesceUs>,
    /// Load this configuration file (TOML) at start, through the same requests rtgtadm
    /// sends; SIGHUP applies it again (`rtgtadm config apply`). Its portals and
    /// state_dir apply when --iscsi portal= / --state-dir are not given.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the running configuration (TOML, as `rtgtadm config dump`) to this file at
    /// start and after every change, atomically, keeping the previous one as FILE.bak;
    /// `--config FILE` brings it back after a restart. It may hold CHAP secrets: it is
    /// written mode 0600.
    #[arg(long = "save-config", value_name = "FILE")]
    pub save_config: Option<PathBuf>,
    /// Serve the command counters (per LU and per session: commands, errors, bytes,
    /// latency histogram) in the OpenMetrics / Prometheus text format at
    /// http://ADDR:PORT/metrics. Off by default.
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// On SIGTERM, initiators are asked to log out (an iSCSI Async Message) and given
    /// this many seconds before their sessions are closed (commands in flight still
    /// finish, and every backing store is flushed, before rtgtd exits).
    #[arg(long = "stop-timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(0..=3600))]
    pub stop_timeout: u16,
    /// Register the targets and portals with this iSNS server (RFC 4171; port 3205
    /// unless given), keep the registration current, deregister on stop.
    #[arg(long = "isns", value_name = "ADDR[:PORT]", value_parser = crate::isns::parse_server)]
    pub isns: Option<std::net::SocketAddr>,
    /// Print the rtgtd(8) man page (roff) and exit.
    #[arg(long = "man", hide = true)]
    pub man: bool,
    /// Print the shell completion script (bash or zsh) and exit.
    #[arg(long = "completions", value_name = "SHELL", hide = true)]
    pub completions: Option<clap_complete::Shell>,
    /// Append logs to this file (when detached, logs otherwise go nowhere).
    #[arg(long = "log-file", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// The iSCSI driver settings from all `--iscsi` options.
#[derive(Debug, Clone)]
pub struct IscsiOptions {
    pub portals: Vec<SocketAddr>,
    /// The target portal group tag of each portal (RFC 7143 §10.1.1.1), same order.
    pub tpgts: Vec<u16>,
    /// Interval between target NOP-In pings on an idle connection; None disables them.
    pub nop_interval: Option<Duration>,
    /// Unanswered pings before the connection is declared dead.
    pub nop_count: u32,
    /// A connection must finish its login within this time of connecting.
    pub login_timeout: Duration,
    /// Batching by the receive low-water mark (`transport/iscsi/lowat.rs`).
    pub batch: bool,
}

/// `--coalesce-us`: a nap in microseconds, or none for `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalesceUs(pub Option<u64>);

/// `--coalesce-us` when not given: off. `auto` measured 20% below off on 4 KiB page-cache
/// reads at QD32 on a heavily loaded 2-CPU machine (its probes were mostly scheduler
/// noise there); make it the default only once a quiet `bench/run.sh --full` shows it
/// worse than off and than `100` nowhere (the run has both as variants). On a 2-vCPU
/// Xeon it was level with off (4K writes 1.00x over 10 rounds) and on an EPYC it lost
/// 64 KiB writes (0.79x): nothing yet pays for the change.
pub const DEFAULT_COALESCE: CoalesceUs = CoalesceUs(Some(0));

fn parse_coalesce(s: &str) -> Result<CoalesceUs, String> {
    match s {
        "auto" => Ok(CoalesceUs(None)),
        _ => match s.parse::<u64>() {
            Ok(n) if n <= 10_000 => Ok(CoalesceUs(Some(n))),
            _ => Err(format!(
                "'{s}' is not 'auto' or microseconds from 0 to 10000"
            )),
        },
    }
}

fn parse_io_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a thread count from 1 to 1024")),
    }
}

pub fn parse_portal(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // An address without a port means the iSCSI port.
    let host = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, ISCSI_PORT));
    }
    bail!("bad portal '{s}': expected IP:PORT, [IPv6]:PORT or IP")
}

impl Options {
    pub fn iscsi_options(&self) -> Result<IscsiOptions> {
        let mut portals = Vec::new();
        let mut tpgts: Vec<u16> = Vec::new();
        let mut nop_interval = Some(Duration::from_secs(10));
        let mut nop_count = 3;
        let mut login_timeout = Duration::from_secs(30);
        // Off by default: on a quiet machine it cost page-cached 4 KiB reads at QD32 a
        // fifth of their rate (README, Performance).
        let mut batch = false;
        for group in &self.iscsi {
            for item in group.split(',').filter(|s| !s.is_empty()) {
                let (k, v) = item
                    .split_once('=')
                    .with_context(|| format!("bad --iscsi option '{item}': expected KEY=VALUE"))?;
                match k {
                    "portal" => {
                        portals.push(parse_portal(v)?);
                        tpgts.push(1);
                    }
                    "tpgt" => {
                        // Relative target port identifiers and target port group ids
                        // are the TPGT, and 0 is reserved for those (SPC-4 7.8.6.5).
                        let n: u16 = v.parse().ok().filter(|&n| n > 0).with_context(|| {
                            format!("bad tpgt '{v}': a portal group tag from 1 to 65535")
                        })?;
                        let last = tpgts.last_mut().with_context(|| {
                            format!("tpgt={v} must follow the portal it applies to: portal=IP:PORT,tpgt={v}")
                        })?;
                        *last = n;
                    }
                    "nop_interval" => {
                        let n: u64 = v
                            .parse()
                            .with_context(|| format!("bad nop_interval '{v}': seconds expected"))?;
                        nop_interval = (n > 0).then(|| Duration::from_secs(n));
                    }
                    "login_timeout" => {
                        let n: u64 = v.parse().ok().filter(|n| (1..=3600).contains(n)).with_context(|| {
                            format!("bad login_timeout '{v}': seconds from 1 to 3600 expected")
                        })?;
                        login_timeout = Duration::from_secs(n);
                    }
                    "nop_count" => {
                        nop_count = v.parse().ok().filter(|&n| n > 0).with_context(|| {
                            format!("bad nop_count '{v}': a positive count expected")
                        })?;
                    }
                    "batch" => {
                        batch = match v {
                            "1" => true,
                            "0" => false,
                            _ => bail!("bad batch '{v}': 1 or 0 expected"),
                        };
                    }
                    other => bail!(
                        "unknown --iscsi option '{other}' (known: portal, tpgt, nop_interval, nop_count, login_timeout, batch)"
                    ),
                }
            }
        }
        if portals.is_empty() {
            portals.push(if self.demo {
                SocketAddr::from(([127, 0, 0, 1], ISCSI_PORT))
            } else {
                // All addresses, like tgtd: a dual-stack IPv6 wildcard.
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), ISCSI_PORT)
            });
            tpgts.push(1);
        }
        Ok(IscsiOptions {
            portals,
            tpgts,
            nop_interval,
            nop_count,
            login_timeout,
            batch,
        })
    }

    /// The iSER listeners of all `--iser` options; None without `--iser`.
    pub fn iser_portals(&self) -> Result<Option<Vec<SocketAddr>>> {
        if self.iser.is_empty() {
            return Ok(None);
        }
        let mut portals = Vec::new();
        for item in self.iser.iter().flat_map(|g| g.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match item.split_once('=') {
                Some(("portal", v)) => portals.push(parse_portal(v)?),
                Some(("pool_mb", _)) => {}
                _ => bail!("unknown --iser option '{item}' (known: portal=IP:PORT, pool_mb=N)"),
            }
        }
        if portals.is_empty() {
            portals.push(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                ISCSI_PORT,
            ));
        }
        Ok(Some(portals))
    }

    /// `--iser pool_mb=N`: each iSER connection's registered buffer pool, MiB (the last
    /// one given); None: the default. (Read only by the iSER transport, feature rdma.)
    #[cfg_attr(not(feature = "rdma"), allow(dead_code))]
    pub fn iser_pool_mb(&self) -> Result<Option<usize>> {
        let mut mb = None;
        for item in self.iser.iter().flat_map(|g| g.split(',')) {
            if let Some(("pool_mb", v)) = item.trim().split_once('=') {
                let n: usize = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--iser pool_mb={v}: not a number of MiB"))?;
                anyhow::ensure!(n <= 4096, "--iser pool_mb={n}: at most 4096");
                mb = Some(n);
            }
        }
        Ok(mb)
    }

    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = &self.state_dir {
            return d.clone();
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/rtgt");
        }
        if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(x).join("rtgt");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".local/state/rtgt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("rtgtd").chain(args.iter().copied()))
    }

    #[test]
    fn coalesce_us_off_by_default_auto_or_a_nap() {
        assert_eq!(opts(&[]).coalesce_us, None);
        assert_eq!(
            DEFAULT_COALESCE,
            CoalesceUs(Some(0)),
            "off unless asked for"
        );
        assert_eq!(
            opts(&["--coalesce-us", "auto"]).coalesce_us,
            Some(CoalesceUs(None))
        );
        assert_eq!(
            opts(&["--coalesce-us", "0"]).coalesce_us,
            Some(CoalesceUs(Some(0)))
        );
        assert_eq!(
            opts(&["--coalesce-us", "100"]).coalesce_us,
            Some(CoalesceUs(Some(100)))
        );
        for bad in ["10001", "-1", "fast"] {
            assert!(
                Options::try_parse_from(["rtgtd", "--coalesce-us", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn portals_v4_v6_and_default() {
        let o = opts(&[
            "--iscsi",
            "portal=127.0.0.1:3261",
            "--iscsi",
            "portal=[::1]:3262",
        ]);
        let i = o.iscsi_options().unwrap();
        assert_eq!(i.portals[0], "127.0.0.1:3261".parse().unwrap());
        assert_eq!(i.portals[1], "[::1]:3262".parse().unwrap());
        let i = opts(&[]).iscsi_options().unwrap();
        assert_eq!(i.portals[0].port(), 3260);
        assert!(i.portals[0].ip().is_unspecified());
    }

    #[test]
    fn iser_portals() {
        assert!(opts(&[]).iser_portals().unwrap().is_none());
        let p = opts(&["--iser"]).iser_portals().unwrap().unwrap();
        assert_eq!(p, vec!["[::]:3260".parse().unwrap()]);
        let p = opts(&["--iser", "portal=198.51.100.1:3260"])
            .iser_portals()
            .unwrap()
            .unwrap();
        assert_eq!(p, vec!["198.51.100.1:3260".parse().unwrap()]);
        assert!(opts(&["--iser", "pool_sz_mb=128"]).iser_portals().is_err());
        let o = opts(&["--iser", "portal=198.51.100.1:3260,pool_mb=0"]);
        assert!(o.iser_portals().is_ok());
        assert_eq!(o.iser_pool_mb().unwrap(), Some(0));
        assert_eq!(opts(&["--iser"]).iser_pool_mb().unwrap(), None);
        assert!(opts(&["--iser", "pool_mb=lots"]).iser_pool_mb().is_err());
    }

    #[test]
    fn portal_group_tags() {
        let i = opts(&[
            "--iscsi",
            "portal=127.0.0.1:3261,tpgt=2",
            "--iscsi",
            "portal=127.0.0.1:3262",
        ])
        .iscsi_options()
        .unwrap();
        assert_eq!(i.tpgts, vec![2, 1]);
        assert!(opts(&["--iscsi", "tpgt=2"]).iscsi_options().is_err());
        assert!(opts(&["--iscsi", "portal=127.0.0.1:1,tpgt=0"])
            .iscsi_options()
            .is_err());
    }

    #[test]
    fn bad_portal_and_options() {
        assert!(opts(&["--iscsi", "portal=notanip:1"])
            .iscsi_options()
            .is_err());
        assert!(opts(&["--iscsi", "bogus=1"]).iscsi_options().is_err());
        let i = opts(&["--iscsi", "portal=127.0.0.1:1,nop_interval=0"])
            .iscsi_options()
            .unwrap();
        assert!(i.nop_interval.is_none());
    }

    #[test]
    fn nr_iothreads() {
        assert_eq!(opts(&[]).nr_iothreads, 16);
        assert_eq!(opts(&["-t", "4"]).nr_iothreads, 4);
        assert_eq!(opts(&["--nr_iothreads", "32"]).nr_iothreads, 32);
        let bad = |a: &[&str]| {
            Options::try_parse_from(std::iter::once("rtgtd").chain(a.iter().copied())).is_err()
        };
        assert!(bad(&["-t", "0"]) && bad(&["-t", "x"]));
    }

    #[test]
    fn debug_flag_without_value() {
        assert_eq!(opts(&["-d"]).debug, Some(1));
        assert_eq!(opts(&["-f"]).debug, None);
    }
}
