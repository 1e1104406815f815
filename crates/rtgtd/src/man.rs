//! `rtgtd --man`: the rtgtd(8) man page, generated from the same clap definitions as
//! `--help` (clap_mangen), with the sections a daemon's page needs. `scripts/gen-man.sh`
//! writes it to man/rtgtd.8; a test checks that the file is up to date.

use clap::CommandFactory;
use clap_mangen::roff::{roman, Roff};

use crate::cli::Options;

const DESCRIPTION: &str = "rtgtd serves SCSI logical units to initiators over iSCSI \
(RFC 7143), entirely in user space. Its command line is tgtd's; rtgtadm(8) configures \
it while it runs, and a TOML configuration file (rtgt.toml(5)) can be loaded at start.";

/// Extra sections: (title, paragraphs).
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "SIGNALS",
        &[
            "SIGHUP applies the --config file again, as rtgtadm config apply does.",
            "SIGTERM stops gracefully: listeners close; every logged-in connection gets an \
             iSCSI Asynchronous Message asking its initiator to log out within \
             --stop-timeout seconds; commands in flight finish; sessions still there are \
             closed; every backing store is flushed; then rtgtd exits.",
        ],
    ),
    (
        "FILES",
        &[
            "/run/rtgtd/socket.N (root) or $XDG_RUNTIME_DIR/rtgtd/socket.N: the control \
             socket of -C N; RTGT_RUN_DIR=DIR moves it to DIR/socket.N.",
            "/var/lib/rtgt (root) or $XDG_STATE_HOME/rtgt: the state directory \
             (persistent reservations under pr/, the demo image).",
            "/etc/rtgt/rtgt.toml: the configuration file of the systemd unit.",
        ],
    ),
    (
        "SEE ALSO",
        &["rtgtadm(8), rtgt.toml(5), tgtd(8), iscsiadm(8)"],
    ),
];

/// The page as roff.
pub fn page() -> String {
    let cmd = Options::command().long_about(DESCRIPTION);
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("rtgt")
        .source(format!("rtgt {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render(&mut out).expect("rendering to memory");
    let mut extra = Roff::new();
    for (title, paras) in SECTIONS {
        extra.control("SH", [*title]);
        for p in *paras {
            extra.control("PP", []).text([roman(*p)]);
        }
    }
    let mut s = String::from_utf8(out).expect("roff is UTF-8");
    s.push_str(&extra.to_roff());
    s
}
