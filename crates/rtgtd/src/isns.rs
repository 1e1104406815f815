//! iSNS (RFC 4171): rtgtd registers its targets and portals with an iSNS server
//! (`--isns ADDR[:PORT]`), keeps the registration current (again after every change
//! to the configuration, and well within the server's registration period), and
//! deregisters on stop.
//!
//! One network entity (the daemon) with its portals, a Storage Node per target (iSCSI
//! Node Type: Target), and a Portal Group per target and portal carrying the portal
//! group tag. Messages are built and read here without I/O; the task below owns the
//! connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rtgt_target::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// IANA port of iSNS (RFC 4171 §6.1 / §5.1).
pub const ISNS_PORT: u16 = 3205;

// Function IDs (RFC 4171 §6.1).
pub const DEV_ATTR_REG: u16 = 0x0001;
pub const DEV_DEREG: u16 = 0x0004;
const RESPONSE: u16 = 0x8000;

// Flags (RFC 4171 §5.1.4): bit 16 is the most significant bit of the field.
const FLAG_CLIENT: u16 = 0x8000;
const FLAG_REPLACE: u16 = 0x1000;
const FLAG_LAST: u16 = 0x0800;
const FLAG_FIRST: u16 = 0x0400;

// Attribute tags (RFC 4171 §6.1).
const TAG_DELIMITER: u32 = 0;
const TAG_EID: u32 = 1;
const TAG_ENTITY_PROTOCOL: u32 = 2;
const TAG_REGISTRATION_PERIOD: u32 = 6;
const TAG_PORTAL_IP: u32 = 16;
const TAG_PORTAL_PORT: u32 = 17;
const TAG_ISCSI_NAME: u32 = 32;
const TAG_ISCSI_NODE_TYPE: u32 = 33;
const TAG_PG_ISCSI_NAME: u32 = 48;
const TAG_PG_PORTAL_IP: u32 = 49;
const TAG_PG_PORTAL_PORT: u32 = 50;
const TAG_PG_TAG: u32 = 51;

/// Entity Protocol value for iSCSI (RFC 4171 §6.2.2).
const PROTOCOL_ISCSI: u32 = 2;
/// iSCSI Node Type bit for a target (RFC 4171 §6.4.2).
const NODE_TARGET: u32 = 1;

/// What is registered: the entity, its portals (address, TPGT) and its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub eid: String,
    pub portals: Vec<(SocketAddr, u16)>,
    pub targets: Vec<String>,
}

fn attr(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// A string attribute: UTF-8, NUL-terminated, padded to a multiple of 4 (§5.1.5).
fn attr_str(out: &mut Vec<u8>, tag: u32, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v.resize(v.len().div_ceil(4) * 4, 0);
    attr(out, tag, &v);
}

fn attr_u32(out: &mut Vec<u8>, tag: u32, v: u32) {
    attr(out, tag, &v.to_be_bytes());
}

/// An IP address attribute: 16 bytes, IPv4 as IPv4-mapped IPv6 (§6.3.1).
fn attr_ip(out: &mut Vec<u8>, tag: u32, ip: IpAddr) {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    attr(out, tag, &v6.octets());
}

/// A port attribute: TCP (bit 16 clear) and the port in the low 16 bits (§6.3.2).
fn attr_port(out: &mut Vec<u8>, tag: u32, port: u16) {
    attr_u32(out, tag, u32::from(port));
}

fn message(function: u16, flags: u16, xid: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + payload.len());
    m.extend_from_slice(&1u16.to_be_bytes()); // iSNSP version 1
    m.extend_from_slice(&function.to_be_bytes());
    m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    m.extend_from_slice(&(flags | FLAG_CLIENT | FLAG_FIRST | FLAG_LAST).to_be_bytes());
    m.extend_from_slice(&xid.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes()); // sequence 0: one PDU
    m.extend_from_slice(payload);
    m
}

impl Registration {
    /// DevAttrReg with the Replace flag: the entity is exactly what is given (§5.6.5.1:
    /// source, message key = EID, delimiter, operating attributes).
    pub fn register(&self, xid: u16) -> Option<Vec<u8>> {
        let source = self.targets.first()?;
        let mut p = Vec::new();
        attr_str(&mut p, TAG_ISCSI_NAME, source);
        attr_str(&mut p, TAG_EID, &self.eid);
        attr(&mut p, TAG_DELIMITER, &[]);
        attr_str(&mut p, TAG_EID, &self.eid);
        attr_u32(&mut p, TAG_ENTITY_PROTOCOL, PROTOCOL_ISCSI);
        for (a, _) in &self.portals {
            attr_ip(&mut p, TAG_PORTAL_IP, a.ip());
            attr_port(&mut p, TAG_PORTAL_PORT, a.port());
        }
        for t in &self.targets {
            attr_str(&mut p, TAG_ISCSI_NAME, t);
            attr_u32(&mut p, TAG_ISCSI_NODE_TYPE, NODE_TARGET);
        }
        // Portal groups: each target is reachable through each portal, with its tag.
        for t in &self.targets {
            for (a, tpgt) in &self.portals {
                attr_str(&mut p, TAG_PG_ISCSI_NAME, t);
                attr_ip(&mut p, TAG_PG_PORTAL_IP, a.ip());
                attr_port(&mut p, TAG_PG_PORTAL_PORT, a.port());
                attr_u32(&mut p, TAG_PG_TAG, u32::from(*tpgt));
            }
        }
        Some(message(DEV_ATTR_REG, FLAG_REPLACE, xid, &p))
    }

    /// DevDereg of the whole entity (§5.6.5.4): its nodes, portals and portal groups go.
    pub fn deregister(&self, source: &str, xid: u16) -> Vec<u8> {
        let mut p = Vec::new();
        attr_str(&mut p, TAG_ISCSI_NAME, source);
        attr(&mut p, TAG_DELIMITER, &[]);
        attr_str(&mut p, TAG_EID, &self.eid);
        message(DEV_DEREG, 0, xid, &p)
    }
}

/// A response: (function, transaction id, status code, registration period if given).
pub fn parse_response(m: &[u8]) -> Result<(u16, u16, u32, Option<u32>), String> {
    if m.len() < 16 {
        return Err("short iSNS response".into());
    }
    let function = u16::from_be_bytes([m[2], m[3]]);
    let xid = u16::from_be_bytes([m[8], m[9]]);
    let status = u32::from_be_bytes([m[12], m[13], m[14], m[15]]);
    let mut period = None;
    let mut at = 16;
    while at + 8 <= m.len() {
        let tag = u32::from_be_bytes(m[at..at + 4].try_into().unwrap());
        let len = u32::from_be_bytes(m[at + 4..at + 8].try_into().unwrap()) as usize;
        let v = m.get(at + 8..at + 8 + len).ok_or("truncated attribute")?;
        if tag == TAG_REGISTRATION_PERIOD && len == 4 {
            period = Some(u32::from_be_bytes(v.try_into().unwrap()));
        }
        at += 8 + len;
    }
    Ok((function, xid, status, period))
}

/// One request, one response, on a fresh connection. The local address is what a
/// wildcard portal is registered as (the address the server reaches us by).
async fn exchange(
    server: SocketAddr,
    build: impl FnOnce(IpAddr) -> Option<Vec<u8>>,
) -> Result<Option<u32>, String> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let local = s.local_addr().map_err(|e| e.to_string())?.ip();
    let Some(req) = build(local) else {
        return Ok(None);
    };
    let sent_xid = u16::from_be_bytes([req[8], req[9]]);
    let sent_fn = u16::from_be_bytes([req[2], req[3]]);
    s.write_all(&req).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    let read = async {
        s.read_exact(&mut head).await?;
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut body = vec![0; len];
        s.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| "no response".to_string())?
        .map_err(|e| e.to_string())?;
    let mut m = head.to_vec();
    m.extend_from_slice(&body);
    let (function, xid, status, period) = parse_response(&m)?;
    if function != sent_fn | RESPONSE || xid != sent_xid {
        return Err(format!("unexpected response {function:#06x}"));
    }
    if status != 0 {
        return Err(format!("status {status} (RFC 4171 §6.4.1)"));
    }
    Ok(period)
}

/// The registration of what runs now; wildcard portals as `local`.
fn current(reg: &Registry, eid: &str, local: IpAddr) -> Registration {
    Registration {
        eid: eid.to_string(),
        portals: reg
            .portal_groups()
            .into_iter()
            .map(|(a, t)| {
                let a = if a.ip().is_unspecified() {
                    SocketAddr::new(local, a.port())
                } else {
                    a
                };
                (a, t)
            })
            .collect(),
        targets: reg
            .targets()
            .iter()
            .filter(|t| t.online())
            .map(|t| t.name.clone())
            .collect(),
    }
}

/// The client: registers now, again on every configuration change and before the
/// registration period runs out, until `stop`, then deregisters.
pub struct Client {
    pub server: SocketAddr,
    pub eid: String,
}

impl Client {
    pub async fn run(
        self,
        reg: Arc<Registry>,
        changed: Arc<tokio::sync::Notify>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut xid: u16 = 0;
        let mut refresh = Duration::from_secs(300);
        // The last source name registered (needed to deregister after the last target
        // is gone).
        let mut registered: Option<String> = None;
        loop {
            xid = xid.wrapping_add(1);
            let (eid, r) = (self.eid.clone(), reg.clone());
            let mut source = None;
            let res = exchange(self.server, |local| {
                let now = current(&r, &eid, local);
                source = now.targets.first().cloned();
                now.register(xid)
            })
            .await;
            match (&res, &source) {
                (Ok(period), Some(s)) => {
                    if registered.is_none() {
                        tracing::info!("iSNS: registered with {} as {}", self.server, self.eid);
                    }
                    registered = Some(s.clone());
                    if let Some(p) = period.filter(|p| *p > 0) {
                        refresh = Duration::from_secs(u64::from(p).div_ceil(2).max(1));
                    }
                }
                (Ok(_), None) => {
                    // No target left: the entity goes.
                    if let Some(s) = registered.take() {
                        xid = xid.wrapping_add(1);
                        let d = Registration {
                            eid: self.eid.clone(),
                            portals: vec![],
                            targets: vec![],
                        };
                        if let Err(e) = exchange(self.server, |_| Some(d.deregister(&s, xid))).await
                        {
                            tracing::warn!("iSNS: deregistering from {}: {e}", self.server);
                        }
                    }
                }
                (Err(e), _) => {
                    tracing::warn!("iSNS: registering with {}: {e}; retrying", self.server);
                    refresh = Duration::from_secs(10);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(refresh) => {}
                _ = changed.notified() => {
                    // Let a burst of changes settle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
            }
        }
        if let Some(s) = registered {
            xid = xid.wrapping_add(1);
            let d = Registration {
                eid: self.eid.clone(),
                portals: vec![],
                targets: vec![],
            };
            match exchange(self.server, |_| Some(d.deregister(&s, xid))).await {
                Ok(_) => tracing::info!("iSNS: deregistered from {}", self.server),
                Err(e) => tracing::warn!("iSNS: deregistering from {}: {e}", self.server),
            }
        }
    }
}

/// `ADDR[:PORT]` of `--isns` (port 3205 when omitted).
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let host = s.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, ISNS_PORT))
        .map_err(|_| format!("bad iSNS server '{s}': expected ADDR or ADDR:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_layout() {
        let r = Registration {
            eid: "rtgtd:127.0.0.1:3260".into(),
            portals: vec![("127.0.0.1:3260".parse().unwrap(), 1)],
            targets: vec!["iqn.2026-11.a:b".into()],
        };
        let m = r.register(7).unwrap();
        assert_eq!(&m[0..4], &[0, 1, 0, 1], "version 1, DevAttrReg");
        assert_eq!(u16::from_be_bytes([m[4], m[5]]) as usize, m.len() - 12);
        let flags = u16::from_be_bytes([m[6], m[7]]);
        assert_eq!(flags, FLAG_CLIENT | FLAG_REPLACE | FLAG_FIRST | FLAG_LAST);
        assert_eq!(u16::from_be_bytes([m[8], m[9]]), 7);
        // Source: iSCSI Name "iqn.2026-11.a:b\0" padded to 16.
        assert_eq!(&m[12..16], &32u32.to_be_bytes());
        assert_eq!(&m[16..20], &16u32.to_be_bytes());
        assert_eq!(&m[20..36], b"iqn.2026-11.a:b\0");
        // Every attribute is a multiple of 4 long; the walk ends exactly at the end.
        let mut at = 12;
        let mut tags = Vec::new();
        while at < m.len() {
            let tag = u32::from_be_bytes(m[at..at + 4].try_into().unwrap());
            let len = u32::from_be_bytes(m[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(len & 3, 0);
            tags.push(tag);
            at += 8 + len;
        }
        assert_eq!(at, m.len());
        assert_eq!(tags, vec![32, 1, 0, 1, 2, 16, 17, 32, 33, 48, 49, 50, 51]);
        assert!(Registration {
            targets: vec![],
            ..r.clone()
        }
        .register(1)
        .is_none());
        let d = r.deregister("iqn.2026-11.a:b", 8);
        assert_eq!(u16::from_be_bytes([d[2], d[3]]), DEV_DEREG);
    }

    #[test]
    fn responses() {
        let mut m = vec![0, 1, 0x80, 0x01, 0, 16, 0x4c, 0, 0, 7, 0, 0];
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&6u32.to_be_bytes());
        m.extend_from_slice(&4u32.to_be_bytes());
        m.extend_from_slice(&900u32.to_be_bytes());
        assert_eq!(parse_response(&m).unwrap(), (0x8001, 7, 0, Some(900)));
        assert!(parse_response(&m[..10]).is_err());
        assert_eq!(parse_server("10.0.0.1").unwrap().port(), 3205);
        assert_eq!(parse_server("10.0.0.1:4000").unwrap().port(), 4000);
        assert!(parse_server("isns.example").is_err());
    }
}
