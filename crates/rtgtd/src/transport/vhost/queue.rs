//! A request queue (§5.6.6.1) on a reactor: each chain the driver made available is read
//! (header, data-out), run on the SCSI core through `exec::Commands`, and answered in
//! its own buffers (response header, sense, data-in), then put on the used ring.

use std::collections::HashMap;

use rtgt_scsi::{Cdb, ScsiCommand, TaskAttr};
use rtgt_virtio::request::{self, Response};
use rtgt_virtio::{response, Seg, VirtioLun};
use tokio::sync::{mpsc, oneshot};
use vhost_user_backend::{VringRwLock, VringT};

use super::backend::ScsiBackend;
use super::memory::Guest;
use crate::transport::exec::{Commands, Completion};
use crate::transport::nexus::Nexus;

/// What the device thread and the control queue send a queue's task.
pub enum Work {
    /// A chain: its head index and segments.
    Request(u16, Vec<Seg>),
    /// Answer once the completions already received are written back (a task
    /// management function's answer waits for that).
    Flush(oneshot::Sender<()>),
    /// Whether task `tag` (None: any task) of a LUN is still held (QUERY TASK, QUERY
    /// TASK SET).
    Query(u64, Option<u64>, oneshot::Sender<bool>),
    /// Answer once no command is running (the session is being closed).
    Idle(oneshot::Sender<()>),
}

/// A command running on the core: where its answer goes.
struct Pending {
    head: u16,
    lun: u64,
    writable: Vec<Seg>,
}

struct Queue {
    backend: ScsiBackend,
    vring: VringRwLock,
    pending: HashMap<u64, Pending>,
    signal: bool,
    /// Waiting for no command to be running.
    idle: Vec<oneshot::Sender<()>>,
}

pub async fn run(backend: ScsiBackend, vring: VringRwLock, mut rx: mpsc::UnboundedReceiver<Work>) {
    let nexus = backend.nexus().await;
    let mut cmds = Commands::new();
    let mut q = Queue {
        backend,
        vring,
        pending: HashMap::new(),
        signal: false,
        idle: Vec::new(),
    };
    loop {
        tokio::select! {
            w = rx.recv() => match w {
                None => break,
                Some(Work::Request(head, segs)) => {
                    let mut done = None;
                    if let (Some(n), Some((cmd, writable))) = (&nexus, q.parse(head, &segs, nexus.as_deref())) {
                        q.pending.insert(cmd.tag, Pending { head, lun: cmd.lun, writable });
                        cmds.submit(n, cmd, |c| done = Some(c));
                    }
                    if let Some(c) = done {
                        q.apply(c);
                    }
                }
                Some(Work::Flush(tx)) => {
                    while let Some(c) = cmds.try_next() {
                        q.apply(c);
                    }
                    q.flush_signal();
                    let _ = tx.send(());
                }
                Some(Work::Query(lun, tag, tx)) => {
                    let held = match tag {
                        Some(t) => q.pending.get(&t).is_some_and(|p| p.lun == lun),
                        None => q.pending.values().any(|p| p.lun == lun),
                    };
                    let _ = tx.send(held);
                }
                Some(Work::Idle(tx)) => q.idle.push(tx),
            },
            c = cmds.next() => q.apply(c),
        }
        while let Some(c) = cmds.try_next() {
            q.apply(c);
        }
        q.flush_signal();
        if q.pending.is_empty() {
            for tx in q.idle.drain(..) {
                let _ = tx.send(());
            }
        }
    }
    // The frontend is gone: let the commands still running end before the nexus does.
    cmds.drain(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
        .await;
}

impl Queue {
    /// Reads a chain; a bad one is answered here (FAILURE, BAD_TARGET) or, when not even
    /// a response fits, put back empty.
    fn parse(
        &mut self,
        head: u16,
        segs: &[Seg],
        nexus: Option<&Nexus>,
    ) -> Option<(ScsiCommand, Vec<Seg>)> {
        let inout = self.backend.acked() & rtgt_virtio::feature::INOUT != 0;
        let mem = self.backend.guest();
        let r = match request::parse(&Guest(&mem), segs, inout) {
            Ok(r) => r,
            Err(rej) => {
                tracing::warn!("vhost: bad request chain: {:?}", rej.error);
                self.answer(head, &rej.writable, Response::code(response::FAILURE), &[]);
                return None;
            }
        };
        let lun = match r.lun {
            VirtioLun::Lun { target: 0, lun } => lun,
            // SPC-4 8.2: REPORT LUNS to the well-known LU lists the same inventory as
            // through LUN 0; anything else there is an unsupported LU.
            VirtioLun::ReportLuns if r.cdb[0] == 0xa0 => 0,
            VirtioLun::ReportLuns => u64::MAX,
            // One target per socket: the others don't exist.
            _ => {
                self.answer(head, &r.writable, Response::code(response::BAD_TARGET), &[]);
                return None;
            }
        };
        let Some(nexus) = nexus else {
            // The target was deleted before the first command.
            self.answer(head, &r.writable, Response::code(response::BAD_TARGET), &[]);
            return None;
        };
        if self.pending.contains_key(&r.tag) {
            // A tag still in use: an overlapped command (SAM-5 5.9.2), refused.
            self.answer(head, &r.writable, Response::code(response::FAILURE), &[]);
            return None;
        }
        // Variable-length CDBs (7Fh) use all 32 bytes; the rest fit in 16.
        let cdb_len = if r.cdb[0] == 0x7f { 32 } else { 16 };
        let attr = match r.task_attr {
            1 => TaskAttr::Ordered,
            2 => TaskAttr::HeadOfQueue,
            3 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        let cmd = ScsiCommand {
            nexus: nexus.it().clone(),
            lun,
            cdb: Cdb::from_slice(&r.cdb[..cdb_len]),
            data_out: r.data_out,
            expected_data_in: r.data_in_len,
            attr,
            tag: r.tag,
        };
        Some((cmd, r.writable))
    }

    fn apply(&mut self, c: Completion) {
        match c {
            Completion::Command { tag, result } => {
                let Some(p) = self.pending.remove(&tag) else {
                    return;
                };
                if result.aborted {
                    // §5.6.6.2: commands a task management function aborted are
                    // completed ABORTED, before the function's answer.
                    self.answer(p.head, &p.writable, Response::code(response::ABORTED), &[]);
                    return;
                }
                let resp = Response {
                    status: result.status,
                    sense: result.sense,
                    ..Response::default()
                };
                self.answer(p.head, &p.writable, resp, &result.data_in);
            }
            Completion::Abort(a) => drop(a),
            Completion::TaskManagement { .. } => {}
        }
    }

    fn answer(&mut self, head: u16, writable: &[Seg], resp: Response, data_in: &[u8]) {
        let mem = self.backend.guest();
        tracing::debug!(
            head,
            response = resp.response,
            status = resp.status,
            n = data_in.len(),
            "vhost: answer"
        );
        let len = request::complete(&Guest(&mem), writable, resp, data_in).unwrap_or(0);
        if let Err(e) = self.vring.add_used(head, len) {
            tracing::warn!("vhost: used ring: {e}");
        }
        self.signal = true;
    }

    fn flush_signal(&mut self) {
        if std::mem::take(&mut self.signal) {
            let _ = self.vring.signal_used_queue();
        }
    }
}
