//! Admission control before and during login: how many connections may be logging in at
//! once (in total and per address), which idle ones make room for a new one,
//! failed-authentication rate limiting per address, and the TCP options that find dead
//! peers.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Connections in the login phase at once, over all addresses: each costs a socket and a
/// task until it logs in or its login times out.
pub const MAX_LOGINS: usize = 1024;
/// Connections in the login phase at once from one address, so one host cannot take all
/// of [`MAX_LOGINS`].
pub const MAX_LOGINS_PER_ADDRESS: usize = 64;
/// A connection logging in that has not completed a PDU for this long is idle: when the
/// bounds above are reached, the oldest idle one is closed to make room for a new
/// connection, so connections that never log in (or send half a header) can't lock real
/// initiators out. A real login sends its next PDU within milliseconds of an answer.
pub const LOGIN_IDLE: Duration = Duration::from_millis(500);
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
    logins: Mutex<Logins>,
    failures: Mutex<HashMap<IpAddr, FailRecord>>,
}

/// The connections logging in, per address, each with what it needs to be evicted.
#[derive(Default)]
struct Logins {
    by_ip: HashMap<IpAddr, Vec<(u64, Arc<SlotState>)>>,
    total: usize,
    next_id: u64,
}

/// Shared between a slot's connection and the guard.
struct SlotState {
    /// When the connection last completed a PDU (or connected).
    active: Mutex<Instant>,
    /// Told when the guard closes this connection for a new one.
    evict: tokio::sync::Notify,
    evicted: std::sync::atomic::AtomicBool,
}

/// A connection's place among the logins in progress; released on drop.
pub struct LoginSlot<'a> {
    guard: &'a Guard,
    ip: IpAddr,
    id: u64,
    state: Arc<SlotState>,
}

impl Drop for LoginSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.guard.logins.lock();
        m.remove(self.ip, self.id);
    }
}

impl LoginSlot<'_> {
    /// Runs one step of the login (reading a PDU): `None` when the guard closed this
    /// connection meanwhile to make room for a new one; a completed step makes it
    /// active again.
    pub async fn watch<F: Future>(&self, step: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.state.evict.notified() => None,
            r = step => {
                *self.state.active.lock() = Instant::now();
                Some(r)
            }
        }
    }
}

impl Logins {
    fn remove(&mut self, ip: IpAddr, id: u64) -> bool {
        let Some(v) = self.by_ip.get_mut(&ip) else {
            return false;
        };
        let Some(i) = v.iter().position(|(x, _)| *x == id) else {
            return false;
        };
        v.swap_remove(i);
        if v.is_empty() {
            self.by_ip.remove(&ip);
        }
        self.total -= 1;
        true
    }

    /// The longest-idle connection of `ip`, if it has been idle for [`LOGIN_IDLE`].
    fn idlest(&self, ip: IpAddr, now: Instant) -> Option<(Instant, u64)> {
        self.by_ip
            .get(&ip)?
            .iter()
            .map(|(id, s)| (*s.active.lock(), *id))
            .filter(|(t, _)| now.saturating_duration_since(*t) >= LOGIN_IDLE)
            .min()
    }

    /// Closes the connection `id` of `ip`: it leaves the count now, and its task ends
    /// at its next await (a permit is stored if it is not waiting).
    fn evict(&mut self, ip: IpAddr, id: u64) {
        let state = self
            .by_ip
            .get(&ip)
            .and_then(|v| v.iter().find(|(x, _)| *x == id))
            .map(|(_, s)| s.clone());
        if let Some(s) = state {
            self.remove(ip, id);
            s.evicted.store(true, std::sync::atomic::Ordering::Relaxed);
            s.evict.notify_one();
        }
    }
}

impl Guard {
    /// A slot for a connection from `ip` to log in, or `None` when too many are already
    /// logging in (from there, or in total) and none of them can make room.
    pub fn login_slot(&self, ip: IpAddr) -> Option<LoginSlot<'_>> {
        self.login_slot_at(ip, Instant::now())
    }

    /// [`login_slot`](Self::login_slot) as of `now`. The bounds stay; at a bound, an
    /// idle connection makes room: at the per-address bound, that address's idlest;
    /// at the total bound, the idlest of the address holding the largest share (so a
    /// flood from some addresses costs its own connections first, never a quiet
    /// address's), else of the next largest with an idle one.
    fn login_slot_at(&self, ip: IpAddr, now: Instant) -> Option<LoginSlot<'_>> {
        let mut m = self.logins.lock();
        let here = m.by_ip.get(&ip).map_or(0, Vec::len);
        if here >= MAX_LOGINS_PER_ADDRESS {
            let (_, id) = m.idlest(ip, now)?;
            m.evict(ip, id);
            tracing::info!(peer = %ip, "closing an idle login for a new connection from the same address");
        } else if m.total >= MAX_LOGINS {
            let mut shares: Vec<(usize, IpAddr)> =
                m.by_ip.iter().map(|(a, v)| (v.len(), *a)).collect();
            shares.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
            let (victim_ip, (_, id)) = shares
                .iter()
                .find_map(|&(_, a)| m.idlest(a, now).map(|v| (a, v)))?;
            m.evict(victim_ip, id);
            tracing::info!(peer = %victim_ip, "closing an idle login for a new connection");
        }
        let id = m.next_id;
        m.next_id += 1;
        let state = Arc::new(SlotState {
            active: Mutex::new(now),
            evict: tokio::sync::Notify::new(),
            evicted: Default::default(),
        });
        m.by_ip.entry(ip).or_default().push((id, state.clone()));
        m.total += 1;
        Some(LoginSlot {
            guard: self,
            ip,
            id,
            state,
        })
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Whether the guard closed `s` (and its watch ends at once).
    fn evicted(s: &LoginSlot<'_>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let woken = rt.block_on(async {
            let never = s.watch(std::future::pending::<()>());
            matches!(tokio::time::timeout(Duration::ZERO, never).await, Ok(None))
        });
        // The flag and the wake-up agree.
        assert_eq!(
            woken,
            s.state.evicted.load(std::sync::atomic::Ordering::Relaxed)
        );
        if woken {
            // The stored permit was used up: give it back for the next look.
            s.state.evict.notify_one();
        }
        woken
    }

    #[test]
    fn at_the_per_address_bound_the_idlest_of_that_address_makes_room() {
        let g = Guard::default();
        let t0 = Instant::now();
        let a = ip("127.0.0.1");
        let slots: Vec<_> = (0..MAX_LOGINS_PER_ADDRESS)
            .map(|i| {
                g.login_slot_at(a, t0 + Duration::from_millis(i as u64))
                    .unwrap()
            })
            .collect();
        // Nobody idle yet: refused, nothing evicted.
        assert!(g
            .login_slot_at(a, t0 + Duration::from_millis(100))
            .is_none());
        assert!(slots.iter().all(|s| !evicted(s)));
        // Later, the oldest (first) one goes.
        let later = t0 + LOGIN_IDLE + Duration::from_millis(1);
        let new = g.login_slot_at(a, later).expect("room made");
        assert!(evicted(&slots[0]));
        assert!(slots[1..].iter().all(|s| !evicted(s)));
        assert_eq!(g.logins.lock().total, MAX_LOGINS_PER_ADDRESS);
        // The evicted slot's drop does not count twice.
        drop(slots);
        assert_eq!(g.logins.lock().total, 1);
        drop(new);
        assert_eq!(g.logins.lock().total, 0);
    }

    #[test]
    fn at_the_total_bound_the_largest_share_pays() {
        let g = Guard::default();
        let t0 = Instant::now();
        // One address with the per-address maximum, the rest with less, filling the total.
        let big = ip("10.0.0.1");
        let mut held = Vec::new();
        for i in 0..MAX_LOGINS_PER_ADDRESS {
            held.push((
                big,
                g.login_slot_at(big, t0 + Duration::from_millis(10 + i as u64))
                    .unwrap(),
            ));
        }
        let mut n = 2;
        while g.logins.lock().total < MAX_LOGINS {
            let a = ip(&format!("10.0.{}.{}", n / 200, n % 200 + 1));
            let room = MAX_LOGINS - g.logins.lock().total;
            for _ in 0..(MAX_LOGINS_PER_ADDRESS - 4).min(room) {
                // Older than every slot of `big`: age alone would pick these.
                held.push((a, g.login_slot_at(a, t0).unwrap()));
            }
            n += 1;
        }
        let later = t0 + LOGIN_IDLE + Duration::from_secs(1);
        let quiet = ip("192.0.2.1");
        let s = g
            .login_slot_at(quiet, later)
            .expect("a quiet address gets in");
        let gone: Vec<_> = held.iter().filter(|(_, s)| evicted(s)).collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, big, "the largest share pays");
        assert!(evicted(&held[0].1), "its oldest connection");
        assert_eq!(g.logins.lock().total, MAX_LOGINS);
        drop(s);
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
