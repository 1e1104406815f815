//! rtgtd's side of one queue: putting commands on the command ring and reaping the
//! completion ring (docs/handler-protocol.md).
//!
//! Every value read from shared memory is checked before it is used: the completion
//! tail may be at most `depth` entries past our head, a tag must name a slot that is in
//! flight with the same generation, and a READ or WRITE completion must account for
//! exactly the bytes asked. Anything else is a protocol error: the handler is detached.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

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
    },
    /// Completed, its submitter still copying data out.
    Done,
}

struct State {
    cmd_tail: u32,
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
}

/// Why a command got no completion.
#[derive(Debug)]
pub(crate) struct Detached;

impl QSide {
    pub fn new(region: Region, memfd: OwnedFd, kick_fd: OwnedFd, done_fd: OwnedFd) -> QSide {
        let depth = region.geo.depth;
        QSide {
            region,
            _memfd: memfd,
            kick_fd,
            done_fd,
            state: Mutex::new(State {
                cmd_tail: 0,
                slots: (0..depth).map(|_| Slot::Free).collect(),
                gens: vec![0; depth as usize],
                free: (0..depth).rev().collect(),
            }),
            permits: Semaphore::new(depth as usize),
        }
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
        mut cmd: Cmd,
        write: Option<&[u8]>,
        read: Option<&mut [u8]>,
    ) -> Result<Cpl, Detached> {
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
            if matches!(cmd.op, layout::op::READ | layout::op::WRITE) {
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
            };
            let tail = st.cmd_tail;
            self.region.write_cmd(tail, &cmd);
            st.cmd_tail = tail.wrapping_add(1);
            self.region.store(layout::CMD_TAIL, st.cmd_tail);
            (rx, idx)
        };
        if self.region.peer_sleeping(layout::CMD_SLEEPING) {
            sys::kick(self.kick_fd.as_raw_fd());
        }
        let guard = SlotGuard { q: self, idx };
        let cpl = rx.await.map_err(|_| Detached)?;
        if let Some(r) = read {
            if cpl.status == 0 {
                self.region.copy_out(cmd.data, r);
            }
        }
        drop(guard);
        Ok(cpl)
    }

    fn free_slot(&self, st: &mut State, idx: u32) {
        st.slots[idx as usize] = Slot::Free;
        st.free.push(idx);
        self.permits.add_permits(1);
    }

    /// Takes every completion posted so far. Err: the handler broke the protocol.
    pub fn reap(&self, head: &mut u32) -> Result<usize, String> {
        let depth = self.region.geo.depth;
        let tail = self.region.load(layout::CPL_TAIL);
        let pending = tail.wrapping_sub(*head);
        if pending > depth {
            return Err(format!(
                "completion tail {tail} is {pending} entries past head {head}; the ring holds {depth}"
            ));
        }
        let mut st = self.state.lock();
        for _ in 0..pending {
            let c = self.region.read_cpl(*head);
            *head = head.wrapping_add(1);
            let idx = c.tag & 0xffff;
            let gen = (c.tag >> 16) as u16;
            let slot = st.slots.get_mut(idx as usize);
            let (op, len, tx) = match slot {
                Some(Slot::Busy {
                    gen: g,
                    op,
                    len,
                    tx,
                }) if *g == gen => (*op, *len, tx.take()),
                _ => {
                    return Err(format!(
                        "completion for tag {:#x}, which is not an outstanding command",
                        c.tag
                    ))
                }
            };
            if c.status == 0 && matches!(op, layout::op::READ | layout::op::WRITE) && c.bytes != len
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
            if c.status > 0 {
                return Err(format!(
                    "completion of tag {:#x} has status {}, not 0 or a negative errno",
                    c.tag, c.status
                ));
            }
            match tx {
                Some(tx) => {
                    st.slots[idx as usize] = Slot::Done;
                    // A submitter that went away meanwhile frees the slot on drop.
                    let _ = tx.send(c);
                }
                None => self.free_slot(&mut st, idx),
            }
        }
        self.region.store(layout::CPL_HEAD, *head);
        Ok(pending as usize)
    }

    pub fn depth(&self) -> u32 {
        self.region.geo.depth
    }

    /// Commands sent and not yet completed.
    pub fn in_flight(&self) -> usize {
        let st = self.state.lock();
        st.slots
            .iter()
            .filter(|s| matches!(s, Slot::Busy { .. }))
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
            Slot::Done => self.q.free_slot(&mut st, self.idx),
            Slot::Free => {}
        }
    }
}

/// The reaper of one queue: sleeps on the completion eventfd (setting the wake flag
/// only while it sleeps) and delivers completions, until the connection dies.
pub(crate) fn reaper(conn: Arc<Conn>, qi: usize) {
    let q = &conn.queues[qi];
    let mut head = 0u32;
    while !conn.is_dead() {
        q.region.set_flag(layout::CPL_SLEEPING, 1);
        let mut woken = false;
        if q.region.load(layout::CPL_TAIL) == head {
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
        if let Err(e) = q.reap(&mut head) {
            conn.fail(&format!("queue {qi}: {e}"), true);
            break;
        }
    }
}
