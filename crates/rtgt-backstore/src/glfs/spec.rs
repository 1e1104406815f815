//! What `-b volume@host:path` and `--bsopts` say about a glfs LU's file and volume.

/// Operation timeout when `timeout=` is not given, in seconds: below the usual initiator
/// command timeout (Linux sd: 30 s), so the initiator sees our sense data rather than
/// timing the command out itself (as the rbd store's).
pub const DEFAULT_TIMEOUT_SECS: u32 = 20;

/// The `--bsopts` keys the glfs store takes.
pub const BSOPTS: &str = "logfile, loglevel, timeout";

/// What `-b` and `--bsopts` say about the file and the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlfsSpec {
    pub volume: String,
    /// The volfile server: a host name or address (IPv6 in brackets in `-b`).
    pub host: String,
    /// The file's path from the volume's root, with a leading `/`.
    pub path: String,
    /// `logfile=`: where libgfapi logs (its default: nowhere).
    pub logfile: Option<String>,
    /// `loglevel=`: libgfapi's level, 0 (none) to 9 (trace); 4 errors, 5 warnings,
    /// 7 info.
    pub loglevel: Option<u8>,
    /// `timeout=`: seconds an operation may take before the command fails with LOGICAL
    /// UNIT COMMUNICATION TIME-OUT; also the client's ping timeout, after which gfapi
    /// gives up on a brick that stopped answering.
    pub timeout: u32,
}

impl GlfsSpec {
    /// Parses `volume@host:path` and the `key=value` pairs of `--bsopts`.
    pub fn parse(spec: &str, bsopts: &[(String, String)]) -> Result<Self, String> {
        let syntax = || format!("{spec}: a glfs backing store is named volume@host:path");
        let (volume, rest) = spec.split_once('@').ok_or_else(syntax)?;
        let (host, path) = match rest.strip_prefix('[') {
            Some(r) => {
                let (h, p) = r.split_once(']').ok_or_else(syntax)?;
                (h, p.strip_prefix(':').ok_or_else(syntax)?)
            }
            None => rest.split_once(':').ok_or_else(syntax)?,
        };
        let path = path.trim_start_matches('/');
        if volume.is_empty() || host.is_empty() || path.is_empty() || volume.contains('/') {
            return Err(syntax());
        }
        let mut s = Self {
            volume: volume.into(),
            host: host.into(),
            path: format!("/{path}"),
            logfile: None,
            loglevel: None,
            timeout: DEFAULT_TIMEOUT_SECS,
        };
        for (k, v) in bsopts {
            match k.as_str() {
                "logfile" if !v.is_empty() => s.logfile = Some(v.clone()),
                "loglevel" => {
                    s.loglevel = Some(parse_loglevel(v).ok_or_else(|| {
                        format!("loglevel={v}: use 0-9 or none, error, warning, info, debug, trace")
                    })?)
                }
                "timeout" => {
                    s.timeout = v
                        .parse()
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or_else(|| format!("timeout={v}: use a number of seconds > 0"))?
                }
                _ => {
                    return Err(format!(
                        "unknown --bsopts '{k}' for bstype glfs (known: {BSOPTS})"
                    ))
                }
            }
        }
        Ok(s)
    }

    /// `volume@host:path`, as `-b` gives it.
    pub fn name(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}@{host}:{}", self.volume, &self.path[1..])
    }
}

/// libgfapi's log levels (gf_loglevel_t): a number, or the name of one.
fn parse_loglevel(v: &str) -> Option<u8> {
    Some(match v.to_ascii_lowercase().as_str() {
        "none" => 0,
        "critical" => 3,
        "error" => 4,
        "warning" => 5,
        "info" => 7,
        "debug" => 8,
        "trace" => 9,
        n => n.parse().ok().filter(|l| *l <= 9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_bsopts;

    #[test]
    fn spec_parsing() {
        let s = GlfsSpec::parse("vol@127.0.0.2:dir/disk.img", &[]).unwrap();
        assert_eq!(
            (s.volume.as_str(), s.host.as_str(), s.path.as_str()),
            ("vol", "127.0.0.2", "/dir/disk.img")
        );
        assert_eq!(s.timeout, DEFAULT_TIMEOUT_SECS);
        assert_eq!(s.name(), "vol@127.0.0.2:dir/disk.img");
        let o = parse_bsopts("logfile=/var/log/g.log;loglevel=warning;timeout=5").unwrap();
        let s = GlfsSpec::parse("v@[::1]:/a", &o).unwrap();
        assert_eq!(s.host, "::1");
        assert_eq!(s.path, "/a");
        assert_eq!(s.name(), "v@[::1]:a");
        assert_eq!(s.logfile.as_deref(), Some("/var/log/g.log"));
        assert_eq!(s.loglevel, Some(5));
        assert_eq!(s.timeout, 5);
        for bad in [
            "vol", "vol@host", "@h:f", "v@:f", "v@h:", "v@h:/", "v/x@h:f", "v@[::1:f",
        ] {
            assert!(GlfsSpec::parse(bad, &[]).is_err(), "{bad}");
        }
        let unknown = parse_bsopts("conf=/etc/ceph/ceph.conf").unwrap();
        assert!(GlfsSpec::parse("v@h:f", &unknown)
            .unwrap_err()
            .contains("unknown --bsopts 'conf'"));
        for v in ["loglevel=10", "loglevel=loud", "timeout=0", "timeout=x"] {
            let o = parse_bsopts(v).unwrap();
            assert!(GlfsSpec::parse("v@h:f", &o).is_err(), "{v}");
        }
    }
}
