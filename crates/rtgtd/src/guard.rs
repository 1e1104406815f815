//! Admission control before and during login: how many connections may be logging in at
//! once (in total and per address), failed-authentication rate limiting per address, and
//! the TCP options that find dead peers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Connections in the login phase at once, over all addresses: each costs a socket and a
/// task until it logs in or its login times out.
pub const MAX_LOGINS: usize = 1024;
/// Connections in the login phase at once from one address, so one host cannot take all
/// of [`MAX_LOGINS`].
pub const MAX_LOGINS_PER_ADDRESS: usize = 64;
/// Failed authentications are counted over this window.
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// How long an address that reached the limit is refused.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Delay before answering a failed authentication, so one connection can't try secrets
/// quickly.
pub const FAIL_DELAY: Duration = Duration::from_millis(500);
/// Addresses remembered at most (the oldest records are dropped first).
const MAX_RECORDS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct FailRecord {
    since: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Guard {
    logins: Mutex<HashMap<IpAddr, usize>>,
    failures: Mutex<HashMap<IpAddr, FailRecord>>,
}

/// A connection's place among the logins in progress; released on drop.
pub struct LoginSlot<'a> {
    guard: &'a Guard,
    ip: IpAddr,
}

impl Drop for LoginSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.guard.logins.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Guard {
    /// A slot for a connection from `ip` to log in, or `None` when too many are already
    /// logging in (from there, or in total).
    pub fn login_slot(&self, ip: IpAddr) -> Option<LoginSlot<'_>> {
        let mut m = self.logins.lock();
        let total: usize = m.values().sum();
        let here = m.get(&ip).copied().unwrap_or(0);
        if total >= MAX_LOGINS || here >= MAX_LOGINS_PER_ADDRESS {
            return None;
        }
        *m.entry(ip).or_insert(0) += 1;
        Some(LoginSlot { guard: self, ip })
    }

    /// Whether `ip` is locked out after too many failed authentications.
    pub fn locked_out(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.failures
            .lock()
            .get(&ip)
            .and_then(|r| r.locked_until)
            .is_some_and(|t| t > now)
    }

    /// Records a failed authentication from `ip`; true when this one locks it out
    /// (`limit` failures within [`FAIL_WINDOW`]; 0 = no limit).
    pub fn auth_failed(&self, ip: IpAddr, limit: u32) -> bool {
        let now = Instant::now();
        let mut m = self.failures.lock();
        if m.len() >= MAX_RECORDS && !m.contains_key(&ip) {
            // Forget stale records first, then the oldest, so the map stays bounded.
            m.retain(|_, r| {
                now.duration_since(r.since) < FAIL_WINDOW || r.locked_until.is_some_and(|t| t > now)
            });
            if m.len() >= MAX_RECORDS {
                if let Some(oldest) = m.iter().min_by_key(|(_, r)| r.since).map(|(k, _)| *k) {
                    m.remove(&oldest);
                }
            }
        }
        let r = m.entry(ip).or_insert(FailRecord {
            since: now,
            count: 0,
            locked_until: None,
        });
        if now.duration_since(r.since) >= FAIL_WINDOW {
            r.since = now;
            r.count = 0;
        }
        r.count += 1;
        if limit != 0 && r.count >= limit && r.locked_until.is_none_or(|t| t <= now) {
            r.locked_until = Some(now + LOCKOUT);
            r.since = now;
            r.count = 0;
            return true;
        }
        false
    }
}

/// TCP keepalive (a silent, half-open peer is found within about a minute and a half) and
/// TCP_USER_TIMEOUT (data we sent that stays unacknowledged for a minute drops the
/// connection, so a peer that stops reading can't pin a connection's buffers forever).
pub fn tune_socket(stream: &tokio::net::TcpStream) {
    let fd = stream.as_raw_fd();
    let set = |level: libc::c_int, opt: libc::c_int, v: libc::c_int| {
        // SAFETY: a valid socket fd and a properly sized int option.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 60_000);
}

/// Raises the open-file limit to its hard maximum, so many connections don't run out of
/// descriptors before [`MAX_LOGINS`] and the session limits apply.
pub fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_slots_are_bounded_per_address() {
        let g = Guard::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let slots: Vec<_> = (0..MAX_LOGINS_PER_ADDRESS)
            .map(|_| g.login_slot(a).unwrap())
            .collect();
        assert!(g.login_slot(a).is_none());
        assert!(g.login_slot(b).is_some(), "another address still gets in");
        drop(slots);
        assert!(g.login_slot(a).is_some());
    }

    #[test]
    fn lockout_after_limit() {
        let g = Guard::default();
        let a: IpAddr = "::1".parse().unwrap();
        assert!(!g.auth_failed(a, 3));
        assert!(!g.auth_failed(a, 3));
        assert!(!g.locked_out(a));
        assert!(g.auth_failed(a, 3));
        assert!(g.locked_out(a));
        let b: IpAddr = "::2".parse().unwrap();
        assert!(!g.locked_out(b));
        for _ in 0..10 {
            assert!(!g.auth_failed(b, 0), "0 = no limit");
        }
    }
}
