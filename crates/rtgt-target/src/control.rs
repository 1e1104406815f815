//! The control protocol between rtgtadm and rtgtd: one JSON request per line over a Unix
//! socket, one JSON response back. Field names follow tgtadm's long options.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Request {
    pub lld: String,
    pub mode: String,
    pub op: String,
    pub tid: Option<u32>,
    pub lun: Option<u64>,
    pub targetname: Option<String>,
    pub backing_store: Option<String>,
    pub bstype: Option<String>,
    pub bsoflags: Option<String>,
    pub bsopts: Option<String>,
    pub blocksize: Option<u32>,
    pub device_type: Option<String>,
    pub params: Option<String>,
    pub initiator_address: Option<String>,
    pub initiator_name: Option<String>,
    pub name: Option<String>,
    pub value: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub outgoing: bool,
    pub sid: Option<u64>,
    pub cid: Option<u16>,
    pub force: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    /// 0 on success; otherwise the exit status rtgtadm returns.
    pub code: i32,
    /// `show` output, or the error message.
    pub message: String,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            code: 0,
            message: message.into(),
        }
    }
    pub fn error(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The canonical name of a `--mode` value, accepting tgtadm's aliases
/// (`sys`, `tgt`, `lu`, `conn`, `sess`, `pt`).
pub fn canonical_mode(mode: &str) -> Option<&'static str> {
    Some(match mode {
        "system" | "sys" => "system",
        "target" | "tgt" => "target",
        "logicalunit" | "lu" => "logicalunit",
        "portal" | "pt" => "portal",
        "session" | "sess" => "session",
        "connection" | "conn" => "connection",
        "account" => "account",
        "lld" => "lld",
        _ => return None,
    })
}

/// The canonical name of an `--op` value (tgtadm's names).
pub fn canonical_op(op: &str) -> Option<&'static str> {
    Some(match op {
        "new" => "new",
        "delete" => "delete",
        "bind" => "bind",
        "unbind" => "unbind",
        "show" => "show",
        "update" => "update",
        "stat" => "stat",
        "start" => "start",
        "stop" => "stop",
        _ => return None,
    })
}

/// The control socket for control port `n` (tgtd's `-C N`): `/run/rtgtd/socket.N` for
/// root, `$XDG_RUNTIME_DIR/rtgtd/socket.N` (or `/tmp/rtgtd-UID/socket.N`) otherwise.
/// `RTGT_RUN_DIR` overrides the directory. rtgtd and rtgtadm resolve it the same way.
pub fn default_socket_path(control_port: u16) -> std::path::PathBuf {
    let dir = if let Some(d) = std::env::var_os("RTGT_RUN_DIR") {
        std::path::PathBuf::from(d)
    } else if is_root() {
        std::path::PathBuf::from("/run/rtgtd")
    } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        std::path::PathBuf::from(x).join("rtgtd")
    } else {
        std::path::PathBuf::from(format!("/tmp/rtgtd-{}", uid()))
    };
    dir.join(format!("socket.{control_port}"))
}

fn uid() -> u32 {
    // Effective uid from /proc avoids a libc dependency here.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn is_root() -> bool {
    uid() == 0
}
