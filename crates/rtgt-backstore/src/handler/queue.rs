//! rtgtd's side of one queue: putting commands on the command ring and reaping the
//! completion ring (docs/handler-protocol.md).
//!
//! Every value read from shared memory is checked before it is used: the completion
//! tail may be at most `depth` entries past our head, a tag must name a slot that is in
//! flight with the same generation, and a READ or WRITE completion must account for
//! exactly the bytes asked. Anything else is a protocol error: the handler is detached.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rtgt_handler::layout::{self, Cmd, Cpl};
use rtgt_handler::shm::Region;
use rtgt_handler::sys;
use tokio::sync::{oneshot, Semaphore};

use super::attach::Conn;

/// What a slot holds.
enum Slot {
    Free,
    /// Sent to the handler. `tx` is None once its submitter gave up waiting (the
    /// command was aborted): the slot is freed when the completion arrives, as the
    /// handler may still use its arena bytes until then.
    Busy {
        gen: u16,
        op: u8,
        len: u64,
        tx: Option<oneshot::Sender<Cpl>>,
        /// When it went on the ring (the handler's timeout counts from here).
        since: Instant,
    },
    /// Completed, its submitter still copying data out. The tag and status are what
    /// a FREE notification names.
    Done {
        tag: u32,
        status: i32,
    },
}

struct State {
    cmd_tail: u32,
    /// The completion ring's head: whoever reaps holds the state lock.
    cpl_head: u32,
    slots: Vec<Slot>,
    gens: Vec<u16>,
    free: Vec<u32>,
}

pub(crate) struct QSide {
    pub region: Region,
    _memfd: OwnedFd,
    /// We kick it when the handler sleeps on its command ring.
    kick_fd: OwnedFd,
    /// The handler kicks it when we sleep on the completion ring.
    pub done_fd: OwnedFd,
    state: Mutex<State>,
    permits: Semaphore,
    /// FREE_NOTIFY was agreed: a slot is handed back only after the handler heard
    /// that its command is finished.
    free_notify: bool,
    /// The slot kept for TASK_MGMT entries (the last one), None at depth 1; one
    /// function at a time uses it.
    tmf_slot: Option<u32>,
    tmf_lock: tokio::sync::Mutex<()>,
    /// Who sleeps on the completion eventfd ([`reaping`]): decided at the first command.
    mode: AtomicU8,
    /// The async reaper task is alive (it clears this when its runtime drops it).
    async_alive: AtomicBool,
    /// The connection holding this queue and its index, for a reactor that holds the
    /// kick back until the end of its turn ([`defer_kicks`]); set once attached.
    owner: OnceLock<(Weak<Conn>, usize)>,
    /// A reactor holds a kick of this queue back (it is on that reactor's list).
    kick_held: AtomicBool,
}

/// The kicks a reactor holds back: since when, and which queues (connection, index).
type Held = (Option<Instant>, Vec<(Arc<Conn>, usize)>);

thread_local! {
    /// This thread is a reactor that calls [`end_of_turn`] before it goes idle.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The queues whose kick this reactor holds back, and since when.
    static HELD: RefCell<Held> = const { RefCell::new((None, Vec::new())) };
}

/// How long a reactor that never goes idle may hold a kick back: the next command it
/// sends after that kicks at once (the queue's watchdog thread kicks too, at its pace).
const MAX_HOLD: Duration = Duration::from_micros(200);

/// Makes the calling thread (a reactor) hold back the handlers' wake-ups until it calls
/// [`end_of_turn`], which it must do before it sleeps.
///
/// A handler thread woken in the middle of a reactor's turn runs for the one command
/// posted so far and sleeps again, or, on the reactor's CPU (where rtgt-fileio follows
/// it), preempts the reactor at the kick's `write`: either way one wake-up and two
/// context switches per command rather than per batch. Waking it when the turn is over
/// hands it every command the turn read off the network at once.
pub fn defer_kicks() {
    DEFERRING.with(|d| d.set(true));
}

/// Wakes the handlers whose kicks this reactor has held back for longer than
/// [`MAX_HOLD`]: for a reactor that stays busy with other work between its commands
/// to a handler, called at the end of each connection's turn.
pub fn send_overdue_kicks() {
    let overdue = HELD.with(|h| h.borrow().0.is_some_and(|t| t.elapsed() > MAX_HOLD));
    if overdue {
        end_of_turn();
    }
}

/// Wakes every handler whose kick this reactor held back ([`defer_kicks`]).
pub fn end_of_turn() {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.0 = None;
        // Drained in place, keeping the allocation: `kick_now` never touches the list, and
        // dropping a connection here runs no kick.
        for (conn, qi) in h.1.drain(..) {
            let q = &conn.queues[qi];
            q.kick_held.store(false, Ordering::Release);
            q.kick_now();
        }
    });
}

/// Who waits for completions (owns the wake flag `CPL_SLEEPING`), decided once per
/// queue, by the first command sent on it.
mod reaping {
    pub const UNDECIDED: u8 = 0;
    /// A task on the runtime of the queue's first submitter, with the completion
    /// eventfd in that runtime's epoll: a handler's kick wakes the reactor itself, and
    /// completions wake their commands on it without another thread in between.
    pub const ASYNC: u8 = 1;
    /// The queue's thread (no runtime with I/O where the first command came from).
    pub const THREAD: u8 = 2;
}

/// Why a command got no completion.
#[derive(Debug)]
pub(crate) struct Detached;

impl QSide {
    pub fn new(
        region: Region,
        memfd: OwnedFd,
        kick_fd: OwnedFd,
        done_fd: OwnedFd,
        free_notify: bool,
    ) -> QSide {
        let depth = region.geo.depth;
        let tmf_slot = (depth >= 2).then_some(depth - 1);
        let commands = depth - u32::from(tmf_slot.is_some());
        QSide {
            region,
            _memfd: memfd,
            kick_fd,
            done_fd,
            state: Mutex::new(State {
                cmd_tail: 0,
                cpl_head: 0,
                slots: (0..depth).map(|_| Slot::Free).collect(),
                gens: vec![0; depth as usize],
                free: (0..commands).rev().collect(),
            }),
            permits: Semaphore::new(commands as usize),
            free_notify,
            tmf_slot,
            tmf_lock: tokio::sync::Mutex::new(()),
            mode: AtomicU8::new(reaping::UNDECIDED),
            async_alive: AtomicBool::new(false),
            owner: OnceLock::new(),
            kick_held: AtomicBool::new(false),
        }
    }

    /// Names the connection holding this queue (needed to hold its kicks back).
    pub fn set_owner(&self, conn: &Arc<Conn>, qi: usize) {
        let _ = self.owner.set((Arc::downgrade(conn), qi));
    }

    /// The handler is gone: waiters for a slot or a completion learn it now.
    pub fn close(&self) {
        self.permits.close();
        let mut st = self.state.lock();
        for s in st.slots.iter_mut() {
            if let Slot::Busy { tx, .. } = s {
                tx.take();
            }
        }
    }

    /// Sends one command and waits for its completion. `write` is copied into the
    /// slot's arena bytes first; `read` receives them after a successful completion.
    pub async fn submit(
        &self,
        cmd: Cmd,
        write: Option<&[u8]>,
        read: Option<&mut [u8]>,
    ) -> Result<Cpl, Detached> {
        let (cpl, ()) = self
            .submit_with(cmd, write, &AtomicU32::new(0), |region, cmd, cpl| {
                if let Some(r) = read {
                    if cpl.status == 0 {
                        region.copy_out(cmd.data, r);
                    }
                }
            })
            .await?;
        Ok(cpl)
    }

    /// Sends one command, waits for its completion, and lets `out` read the slot
    /// (checked completion in hand) before the slot is handed back. `tag` receives the
    /// command's tag once it is on the ring (for an ABORT TASK naming it).
    pub async fn submit_with<R>(
        &self,
        mut cmd: Cmd,
        write: Option<&[u8]>,
        tag: &AtomicU32,
        out: impl FnOnce(&Region, &Cmd, &Cpl) -> R,
    ) -> Result<(Cpl, R), Detached> {
        let permit = self.permits.acquire().await.map_err(|_| Detached)?;
        permit.forget();
        let slot_size = u64::from(self.region.geo.slot_size);
        let (rx, idx) = {
            let mut st = self.state.lock();
            let idx = st.free.pop().expect("a permit means a free slot");
            let gen = st.gens[idx as usize].wrapping_add(1);
            st.gens[idx as usize] = gen;
            let (tx, rx) = oneshot::channel();
            cmd.tag = u32::from(gen) << 16 | idx;
            if matches!(
                cmd.op,
                layout::op::READ | layout::op::WRITE | layout::op::SCSI
            ) {
                cmd.data = u64::from(idx) * slot_size;
            }
            if let Some(w) = write {
                self.region.copy_in(cmd.data, w);
            }
            st.slots[idx as usize] = Slot::Busy {
                gen,
                op: cmd.op,
                len: cmd.len,
                tx: Some(tx),
                since: Instant::now(),
            };
            self.post(&mut st, &cmd);
            tag.store(cmd.tag, Ordering::Release);
            (rx, idx)
        };
        self.kick_handler();
        let guard = SlotGuard { q: self, idx };
        let cpl = rx.await.map_err(|_| Detached)?;
        let r = out(&self.region, &cmd, &cpl);
        drop(guard);
        Ok((cpl, r))
    }

    /// Puts `cmd` on the command ring (the caller holds its slot, so there is room).
    fn post(&self, st: &mut State, cmd: &Cmd) {
        let tail = st.cmd_tail;
        self.region.write_cmd(tail, cmd);
        st.cmd_tail = tail.wrapping_add(1);
        self.region.store(layout::CMD_TAIL, st.cmd_tail);
    }

    /// Wakes the handler if it sleeps on the command ring: now, or at the end of the
    /// reactor's turn when it holds kicks back ([`defer_kicks`]).
    fn kick_handler(&self) {
        if DEFERRING.with(|d| d.get()) {
            if let Some((conn, qi)) = self.owner.get() {
                if let Some(overdue) = self.hold_kick(conn, *qi) {
                    // A reactor that has held kicks back too long sends them now.
                    if overdue {
                        end_of_turn();
                    }
                    return;
                }
            }
        }
        self.kick_now();
    }

    /// Puts this queue on the reactor's list of kicks held back, and says whether the
    /// reactor has held kicks longer than [`MAX_HOLD`] (one look at the list, not a
    /// second through [`send_overdue_kicks`]). None: kick now (its connection is gone).
    fn hold_kick(&self, conn: &Weak<Conn>, qi: usize) -> Option<bool> {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            let since = *h.0.get_or_insert_with(Instant::now);
            if !self.kick_held.load(Ordering::Acquire) {
                let conn = conn.upgrade()?;
                self.kick_held.store(true, Ordering::Release);
                h.1.push((conn, qi));
            }
            Some(since.elapsed() > MAX_HOLD)
        })
    }

    /// The watchdog's backstop for a kick a reactor holds back and never sends.
    fn kick_if_held(&self) {
        if self.kick_held.load(Ordering::Acquire) {
            self.kick_now();
        }
    }

    fn kick_now(&self) {
        if self.region.take_sleeping(layout::CMD_SLEEPING) {
            // Where we run, for a handler that follows its queue's reactor (layout::CMD_CPU).
            let cpu = unsafe { libc::sched_getcpu() };
            self.region
                .store(layout::CMD_CPU, u32::try_from(cpu + 1).unwrap_or(0));
            sys::kick(self.kick_fd.as_raw_fd());
        }
    }

    /// A command is finished: its slot is free again, or with FREE_NOTIFY it carries
    /// the FREE notification first (whose completion frees it).
    fn finished(&self, st: &mut State, idx: u32, tag: u32, status: i32, aborted: bool) {
        if !self.free_notify || self.permits.is_closed() || Some(idx) == self.tmf_slot {
            return self.free_slot(st, idx);
        }
        let gen = st.gens[idx as usize].wrapping_add(1);
        st.gens[idx as usize] = gen;
        let cmd = Cmd {
            op: layout::op::FREE,
            flags: if aborted {
                layout::cmd_flag::ABORTED
            } else {
                0
            },
            tag: u32::from(gen) << 16 | idx,
            offset: u64::from(tag),
            len: status as u32 as u64,
            ..Cmd::default()
        };
        st.slots[idx as usize] = Slot::Busy {
            gen,
            op: layout::op::FREE,
            len: 0,
            tx: None,
            since: Instant::now(),
        };
        self.post(st, &cmd);
        self.kick_handler();
    }

    /// Sends a task management function ([`layout::tmf`]) in the queue's own slot for
    /// them and waits until the handler completed it. Ok at once on a queue too shallow
    /// to have that slot: its commands end by completing or by the handler's timeout.
    pub async fn task_mgmt(&self, func: u8, tag: u32) -> Result<(), Detached> {
        let Some(idx) = self.tmf_slot else {
            return Ok(());
        };
        let _one = self.tmf_lock.lock().await;
        let rx = {
            let mut st = self.state.lock();
            if self.permits.is_closed() {
                return Err(Detached);
            }
            let gen = st.gens[idx as usize].wrapping_add(1);
            st.gens[idx as usize] = gen;
            let (tx, rx) = oneshot::channel();
            let cmd = Cmd {
                op: layout::op::TASK_MGMT,
                flags: func,
                tag: u32::from(gen) << 16 | idx,
                offset: u64::from(tag),
                ..Cmd::default()
            };
            st.slots[idx as usize] = Slot::Busy {
                gen,
                op: layout::op::TASK_MGMT,
                len: 0,
                tx: Some(tx),
                since: Instant::now(),
            };
            self.post(&mut st, &cmd);
            rx
        };
        self.kick_handler();
        let guard = SlotGuard { q: self, idx };
        let r = rx.await.map(|_| ()).map_err(|_| Detached);
        drop(guard);
        r
    }

    /// The command (or notification) the handler has held longest, and for how long.
    pub fn oldest(&self) -> Option<(u32, u8, Duration)> {
        let st = self.state.lock();
        st.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Busy { gen, op, since, .. } => {
                    Some((u32::from(*gen) << 16 | i as u32, *op, since.elapsed()))
                }
                _ => None,
            })
            .max_by_key(|x| x.2)
    }

    fn free_slot(&self, st: &mut State, idx: u32) {
        st.slots[idx as usize] = Slot::Free;
        if Some(idx) == self.tmf_slot {
            return;
        }
        st.free.push(idx);
        self.permits.add_permits(1);
    }

    /// Takes every completion posted so far. Err: the handler broke the protocol.
    pub fn reap(&self) -> Result<usize, String> {
        let depth = self.region.geo.depth;
        let mut st = self.state.lock();
        let head = st.cpl_head;
        let tail = self.region.load(layout::CPL_TAIL);
        let pending = tail.wrapping_sub(head);
        if pending > depth {
            return Err(format!(
                "completion tail {tail} is {pending} entries past head {head}; the ring holds {depth}"
            ));
        }
        for _ in 0..pending {
            let c = self.region.read_cpl(st.cpl_head);
            st.cpl_head = st.cpl_head.wrapping_add(1);
            let idx = c.tag & 0xffff;
            let gen = (c.tag >> 16) as u16;
            let slot = st.slots.get_mut(idx as usize);
            let (op, len, tx) = match slot {
                Some(Slot::Busy {
                    gen: g,
                    op,
                    len,
                    tx,
                    ..
                }) if *g == gen => (*op, *len, tx.take()),
                _ => {
                    return Err(format!(
                        "completion for tag {:#x}, which is not an outstanding command",
                        c.tag
                    ))
                }
            };
            if op == layout::op::SCSI {
                let max = if c.status == layout::CHECK_CONDITION {
                    layout::MAX_SENSE
                } else {
                    len
                };
                if c.status > 0xff || c.bytes > max {
                    return Err(format!(
                        "SCSI completion of tag {:#x} has status {} and {} bytes (at most {max})",
                        c.tag, c.status, c.bytes
                    ));
                }
            } else if matches!(op, layout::op::FREE | layout::op::TASK_MGMT) && c.status != 0 {
                return Err(format!(
                    "completion of notification tag {:#x} (op {op}) has status {}, not 0",
                    c.tag, c.status
                ));
            } else if c.status == 0
                && matches!(op, layout::op::READ | layout::op::WRITE)
                && c.bytes != len
            {
                return Err(format!(
                    "completion of tag {:#x} says {} bytes for a {len}-byte command",
                    c.tag, c.bytes
                ));
            }
            if c.status < 0 && c.bytes > len {
                return Err(format!(
                    "failed completion of tag {:#x} says {} bytes were done of a {len}-byte command",
                    c.tag, c.bytes
                ));
            }
            if c.status > 0 && op != layout::op::SCSI {
                return Err(format!(
                    "completion of tag {:#x} has status {}, not 0 or a negative errno",
                    c.tag, c.status
                ));
            }
            match tx {
                Some(tx) => {
                    st.slots[idx as usize] = Slot::Done {
                        tag: c.tag,
                        status: c.status,
                    };
                    // A submitter that went away meanwhile frees the slot on drop.
                    let _ = tx.send(c);
                }
                None if op == layout::op::FREE => self.free_slot(&mut st, idx),
                // Its submitter gave up (aborted): the handler is done with the slot.
                None => self.finished(&mut st, idx, c.tag, c.status, true),
            }
        }
        self.region.store(layout::CPL_HEAD, st.cpl_head);
        Ok(pending as usize)
    }

    /// Whether the handler posted completions not reaped yet.
    fn completions_waiting(&self) -> bool {
        self.region.load(layout::CPL_TAIL) != self.state.lock().cpl_head
    }

    /// A command could take a slot now.
    pub fn has_room(&self) -> bool {
        self.permits.available_permits() > 0
    }

    pub fn depth(&self) -> u32 {
        self.region.geo.depth
    }

    /// Commands sent and not yet completed.
    pub fn in_flight(&self) -> usize {
        let st = self.state.lock();
        st.slots
            .iter()
            .filter(|s| matches!(s, Slot::Busy { op, .. } if *op != layout::op::FREE))
            .count()
    }
}

/// Frees a slot when its submitter is done with it or gives up.
struct SlotGuard<'a> {
    q: &'a QSide,
    idx: u32,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.q.state.lock();
        match &mut st.slots[self.idx as usize] {
            Slot::Busy { tx, .. } => {
                tx.take();
            }
            &mut Slot::Done { tag, status } => {
                self.q.finished(&mut st, self.idx, tag, status, false)
            }
            Slot::Free => {}
        }
    }
}

/// Makes sure someone waits for queue `qi`'s completions before a command goes on it:
/// the first command decides who (an async task on its runtime when it has I/O, else
/// the queue's thread); a task whose runtime went away is started again on the caller's.
pub(crate) fn ensure_reaper(conn: &Arc<Conn>, qi: usize) {
    let q = &conn.queues[qi];
    let mode = q.mode.load(Ordering::Acquire);
    if mode == reaping::THREAD || (mode == reaping::ASYNC && q.async_alive.load(Ordering::Acquire))
    {
        return;
    }
    if q.async_alive
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // Every runtime of rtgtd's has I/O enabled (registering on one without panics).
    let afd = tokio::runtime::Handle::try_current().ok().and_then(|rt| {
        let fd = q.done_fd.try_clone().ok()?;
        let _in = rt.enter();
        // SAFETY: the AsyncFd owns `fd`, a descriptor of its own, open until it drops.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .ok()
        .map(|afd| (rt, afd))
    });
    match afd {
        Some((rt, afd)) => {
            q.mode.store(reaping::ASYNC, Ordering::Release);
            rt.spawn(reap_async(conn.clone(), qi, afd));
        }
        None => {
            q.async_alive.store(false, Ordering::Release);
            // Only the first command decides: a queue never changes from a task to
            // the thread (both would handle the wake flag).
            let _ = q.mode.compare_exchange(
                reaping::UNDECIDED,
                reaping::THREAD,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// Clears `async_alive` when the task ends, or its runtime drops it.
struct Alive<'a>(&'a AtomicBool);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The async reaper of one queue: sleeps in its runtime's epoll on the completion
/// eventfd (setting the wake flag only while it sleeps) and delivers completions, until
/// the connection dies.
async fn reap_async(conn: Arc<Conn>, qi: usize, afd: tokio::io::unix::AsyncFd<OwnedFd>) {
    let q = &conn.queues[qi];
    let _alive = Alive(&q.async_alive);
    while !conn.is_dead() {
        q.region.set_flag(layout::CPL_SLEEPING, 1);
        if !q.completions_waiting() {
            match afd.readable().await {
                Ok(mut ready) => {
                    let _ = sys::drain(q.done_fd.as_raw_fd());
                    ready.clear_ready();
                }
                Err(_) => break,
            }
        }
        q.region.set_flag(layout::CPL_SLEEPING, 0);
        if conn.is_dead() {
            break;
        }
        if let Err(e) = q.reap() {
            conn.fail(&format!("queue {qi}: {e}"), true);
            break;
        }
    }
}

/// The thread of one queue: the watchdog, and the reaper when no async task is (it
/// sleeps on the completion eventfd, setting the wake flag only while it sleeps), until
/// the connection dies.
pub(crate) fn reaper(conn: Arc<Conn>, qi: usize) {
    let q = &conn.queues[qi];
    let mut checked = Instant::now();
    while !conn.is_dead() {
        // A handler that holds a command past `timeout=` is hung (or ignores task
        // management): it is disconnected, and what it held fails with NOT READY,
        // LOGICAL UNIT COMMUNICATION FAILURE rather than going to the next handler,
        // since the hung one may still write.
        if checked.elapsed() >= Duration::from_millis(250) {
            checked = Instant::now();
            q.kick_if_held();
            if let Some((tag, op, age)) = q.oldest().filter(|o| o.2 > conn.timeout) {
                conn.time_out(&format!(
                    "queue {qi}: it held command {tag:#x} (op {op}) for {:.1} s, past timeout={}",
                    age.as_secs_f64(),
                    conn.timeout.as_secs()
                ));
                break;
            }
        }
        if q.mode.load(Ordering::Acquire) != reaping::THREAD {
            // An async task reaps (or none yet: no command was sent). Should its
            // runtime have gone away, completions are still delivered, at this pace,
            // until a command from a live runtime starts a new task. The wake flag is
            // the task's alone.
            std::thread::sleep(Duration::from_millis(250));
            if !q.async_alive.load(Ordering::Acquire) && q.completions_waiting() {
                if let Err(e) = q.reap() {
                    conn.fail(&format!("queue {qi}: {e}"), true);
                    break;
                }
            }
            continue;
        }
        q.region.set_flag(layout::CPL_SLEEPING, 1);
        let mut woken = false;
        if !q.completions_waiting() {
            woken = matches!(
                sys::poll_read(&[q.done_fd.as_raw_fd()], 250).as_deref(),
                Ok([true])
            );
        }
        q.region.set_flag(layout::CPL_SLEEPING, 0);
        // Read the (non-blocking) eventfd only when poll said so; a count left from a
        // kick we did not sleep for makes the next poll return at once, harmlessly.
        if woken {
            let _ = sys::drain(q.done_fd.as_raw_fd());
        }
        if conn.is_dead() {
            break;
        }
        if let Err(e) = q.reap() {
            conn.fail(&format!("queue {qi}: {e}"), true);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reactor_holds_kicks_back_until_its_turn_ends() {
        let (conn, kick) = Conn::for_test();
        let q = &conn.queues[0];
        let kicked = || {
            let r = sys::poll_read(&[kick.as_raw_fd()], 0).unwrap()[0];
            if r {
                sys::drain(kick.as_raw_fd()).unwrap();
            }
            r
        };
        // Not a reactor: a sleeping handler is woken at once, an awake one not at all.
        q.region.set_flag(layout::CMD_SLEEPING, 1);
        q.kick_handler();
        assert!(kicked());
        q.kick_handler();
        assert!(!kicked(), "the kick cleared the wake flag");

        defer_kicks();
        q.region.set_flag(layout::CMD_SLEEPING, 1);
        q.kick_handler();
        q.kick_handler();
        assert!(!kicked(), "held back during the turn");
        end_of_turn();
        assert!(kicked(), "sent when the turn ends");
        end_of_turn();
        assert!(!kicked(), "once");

        // A handler awake when the turn ends is not woken.
        q.kick_handler();
        end_of_turn();
        assert!(!kicked());

        // A reactor that never goes idle: the first command after MAX_HOLD kicks.
        q.region.set_flag(layout::CMD_SLEEPING, 1);
        q.kick_handler();
        assert!(!kicked());
        std::thread::sleep(MAX_HOLD * 2);
        q.kick_handler();
        assert!(kicked(), "held no longer than MAX_HOLD");

        // Nor another command: the end of a connection's turn sends it once overdue.
        q.region.set_flag(layout::CMD_SLEEPING, 1);
        q.kick_handler();
        send_overdue_kicks();
        assert!(!kicked(), "not overdue yet");
        std::thread::sleep(MAX_HOLD * 2);
        send_overdue_kicks();
        assert!(kicked(), "overdue");

        // Nor that: the queue's watchdog thread sends a held kick.
        q.region.set_flag(layout::CMD_SLEEPING, 1);
        q.kick_handler();
        assert!(!kicked());
        q.kick_if_held();
        assert!(kicked(), "the watchdog's backstop");
        end_of_turn();
        assert!(!q.kick_held.load(Ordering::Acquire));
    }
}
