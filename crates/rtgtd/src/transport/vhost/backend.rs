//! The vhost-user device: what it offers QEMU (features, queues), the guest memory it is
//! given, and the kicks of its queues: 0 control, 1 events, 2.. requests (§5.6.2).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rtgt_virtio::ctrl::{self, Ctrl};
use rtgt_virtio::{feature, response, Seg, VirtioLun};
use tokio::sync::{mpsc, oneshot, watch, Notify, OnceCell};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::events::{self, EventQueue};
use super::memory::Guest;
use super::queue::{self, Work};
use super::vring::CallVring;
use crate::daemon::{Daemon, Reactors};
use crate::transport::nexus::{NewSession, Nexus};

/// Request queues offered: QEMU asks for as many as the guest has vCPUs by default
/// (`num_queues`) and refuses to start when the backend offers fewer.
pub const REQUEST_QUEUES: usize = 16;
const NUM_QUEUES: usize = 2 + REQUEST_QUEUES;
/// QEMU's `virtqueue_size` is 128 by default, up to 1024.
const QUEUE_SIZE: usize = 1024;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;

type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;

/// One frontend connection's device. Cloned into the vhost-user library's threads and
/// into the queue tasks; all of it goes when the frontend disconnects.
#[derive(Clone)]
pub struct ScsiBackend(Arc<Inner>);

pub struct Inner {
    daemon: Arc<Daemon>,
    reactors: Arc<Reactors>,
    rt: tokio::runtime::Handle,
    tid: u32,
    path: String,
    mem: Mutex<Mem>,
    acked: AtomicU64,
    /// Each request queue's task, started at its first kick.
    queues: Mutex<Vec<Option<mpsc::UnboundedSender<Work>>>>,
    /// The connection's I_T nexus, registered at the first request (None: the target
    /// is gone).
    nexus: OnceCell<Option<Arc<Nexus>>>,
    /// Buffers the driver posted on the event queue, events missed.
    events: Mutex<EventQueue>,
    /// The registry's change count, for the event queue's watcher.
    changes: watch::Receiver<u64>,
    /// The frontend disconnected (true), for the tasks that outlive a kick.
    gone: watch::Sender<bool>,
    /// The session is being closed (`rtgtadm --op delete --mode conn`, a graceful
    /// stop): no new requests are taken off the rings.
    closing: AtomicBool,
    /// Ends the connection from this side (vhost-user-backend's handle on its socket).
    shutdown: Mutex<Option<vhost_user_backend::ShutdownHandle>>,
    /// The event watcher runs.
    watching: AtomicBool,
    vrings: Mutex<Option<Vec<VringRwLock>>>,
}

impl ScsiBackend {
    pub fn new(
        daemon: Arc<Daemon>,
        reactors: Arc<Reactors>,
        rt: tokio::runtime::Handle,
        tid: u32,
        path: &str,
        changes: watch::Receiver<u64>,
    ) -> Self {
        Self(Arc::new(Inner {
            daemon,
            reactors,
            rt,
            tid,
            path: path.to_string(),
            mem: Mutex::new(GuestMemoryAtomic::new(GuestMemoryMmap::new())),
            acked: AtomicU64::new(0),
            queues: Mutex::new(vec![None; REQUEST_QUEUES]),
            nexus: OnceCell::new(),
            events: Mutex::new(EventQueue::default()),
            changes,
            gone: watch::channel(false).0,
            closing: AtomicBool::new(false),
            shutdown: Mutex::new(None),
            watching: AtomicBool::new(false),
            vrings: Mutex::new(None),
        }))
    }

    /// The frontend went away: the queue tasks end once their commands have, and with
    /// the last of them the I_T nexus (SAM-5 6.3.4).
    pub fn disconnected(&self) {
        self.0.gone.send_replace(true);
        self.0.queues.lock().iter_mut().for_each(|q| *q = None);
        *self.0.vrings.lock() = None;
    }

    pub fn guest(&self) -> vm_memory::GuestMemoryLoadGuard<GuestMemoryMmap<()>> {
        self.0.mem.lock().memory()
    }

    pub fn is_gone(&self) -> bool {
        *self.0.gone.borrow()
    }

    /// Completes once the frontend has disconnected.
    pub async fn until_gone(&self) {
        let mut rx = self.0.gone.subscribe();
        let _ = rx.wait_for(|g| *g).await;
    }

    /// How to end the connection from this side, once it is up.
    pub fn set_shutdown(&self, h: Option<vhost_user_backend::ShutdownHandle>) {
        *self.0.shutdown.lock() = h;
    }

    /// Ends the session from this side, as a mature target does when a session is
    /// closed or the daemon stops: no new request is taken off the rings (they stay
    /// available, and QEMU offers them again after it reconnects, since it restarts
    /// each queue at its used index), the commands already running end and are
    /// answered (bounded by the stop's drain time), then the connection is shut. The
    /// I_T nexus ends with it (SAM-5 6.3.4); QEMU, with `reconnect-ms=`, connects
    /// again and gets a new one.
    async fn close_session(&self, why: &str) {
        tracing::info!(path = %self.0.path, "vhost: closing the session ({why})");
        let idle: Vec<_> = {
            let queues = self.0.queues.lock();
            self.0.closing.store(true, Ordering::Release);
            queues
                .iter()
                .flatten()
                .filter_map(|tx| {
                    let (otx, orx) = oneshot::channel();
                    tx.send(Work::Idle(otx)).ok().map(|()| orx)
                })
                .collect()
        };
        let drained = tokio::time::timeout(crate::stop::DRAIN, async {
            for w in idle {
                let _ = w.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(path = %self.0.path, "vhost: commands still running after {:?}; closing anyway", crate::stop::DRAIN);
        }
        if let Some(h) = self.0.shutdown.lock().take() {
            h.shutdown();
        }
    }

    pub fn events_queue(&self) -> parking_lot::MutexGuard<'_, EventQueue> {
        self.0.events.lock()
    }

    pub fn acked(&self) -> u64 {
        self.0.acked.load(Ordering::Acquire)
    }

    /// The connection's I_T nexus, registered on first use. The initiator port is the
    /// socket: virtio has no initiator names, and one socket is one VM's controller.
    pub async fn nexus(&self) -> Option<Arc<Nexus>> {
        self.0
            .nexus
            .get_or_init(|| async {
                let t = self.0.daemon.registry.target_by_tid(self.0.tid)?;
                let id = self.0.daemon.next_id();
                let initiator = format!("vhost:{}", self.0.path);
                let it = rtgt_scsi::ItNexus {
                    id,
                    initiator_name: initiator.clone(),
                    initiator_port: format!("{initiator},i,0x0"),
                    target_port: format!("{},t,vhost", t.name),
                    relative_port_id: 1,
                    target_port_group: 1,
                };
                let info = rtgt_target::SessionInfo {
                    sid: id,
                    initiator_name: initiator.clone(),
                    initiator_alias: None,
                    isid: [0; 6],
                    tsih: 0,
                    connections: Vec::new(),
                    transport: super::NAME,
                    close: Arc::new(|| {}),
                };
                // Aborts from other nexuses need nothing held here: every command is
                // in a queue's `Commands`, whose completion says it was aborted.
                let (tx, _rx) = mpsc::unbounded_channel();
                let close = Arc::new(Notify::new());
                // `rtgtadm --op delete --mode conn/session` notifies `close`; a graceful
                // stop says so on `daemon.stop`. A guest can't be asked to log out.
                let (me, c, mut stop) =
                    (self.clone(), close.clone(), self.0.daemon.stop.subscribe());
                self.spawn(async move {
                    tokio::select! {
                        () = c.notified() => me.close_session("closed by rtgtadm").await,
                        () = async { drop(stop.wait_for(|s| *s).await) } => {
                            me.close_session("stopping").await
                        }
                        () = me.until_gone() => {}
                    }
                });
                let s = NewSession {
                    target: t,
                    it,
                    info,
                    keys: Default::default(),
                    peer: initiator.into(),
                };
                Some(Arc::new(Nexus::attach(&self.0.daemon, s, tx, close).await))
            })
            .await
            .clone()
    }

    /// Runs `fut` on the next reactor (from a vhost-user library thread).
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let _g = self.0.rt.enter();
        self.0.reactors.spawn(fut);
    }

    /// The chains the driver made available on `vring`, as segments.
    fn pop(&self, vring: &VringRwLock) -> Vec<(u16, Vec<Seg>)> {
        let mem = self.guest();
        let mut st = vring.get_mut();
        let q = st.get_queue_mut();
        let mut out = Vec::new();
        while let Some(chain) = q.pop_descriptor_chain(&*mem) {
            let head = chain.head_index();
            let segs = chain
                .map(|d| Seg {
                    addr: d.addr().0,
                    len: d.len(),
                    write: d.is_write_only(),
                })
                .collect();
            out.push((head, segs));
        }
        out
    }

    fn requests(&self, q: usize, vrings: &[VringRwLock]) {
        // Under the lock `close_session` sets the flag with, so no chain popped here
        // reaches a queue after its last `Idle`.
        let mut queues = self.0.queues.lock();
        if self.0.closing.load(Ordering::Acquire) {
            return;
        }
        let chains = self.pop(&vrings[q]);
        tracing::debug!(q, n = chains.len(), "vhost: requests");
        if chains.is_empty() {
            return;
        }
        let idx = q - 2;
        let tx = queues[idx].get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let (me, vring) = (self.clone(), vrings[q].clone());
            self.spawn(queue::run(me, vring, rx));
            tx
        });
        for (head, segs) in chains {
            let _ = tx.send(Work::Request(head, segs));
        }
    }

    /// Control queue (§5.6.6.2): task management and asynchronous notification.
    fn control(&self, vring: &VringRwLock) {
        if self.0.closing.load(Ordering::Acquire) {
            return;
        }
        for (head, segs) in self.pop(vring) {
            let parsed = ctrl::parse(&Guest(&self.guest()), &segs);
            let req = match parsed {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(path = %self.0.path, "vhost: bad control request: {e:?}");
                    let _ = vring.add_used(head, 0);
                    let _ = vring.signal_used_queue();
                    continue;
                }
            };
            let (me, vring) = (self.clone(), vring.clone());
            self.spawn(async move {
                let len = match req.ctrl {
                    Ctrl::Tmf { subtype, lun, tag } => {
                        let r = me.task_management(subtype, lun, tag).await;
                        tracing::debug!(subtype, tag, response = r, "vhost: task management");
                        ctrl::tmf_reply(&Guest(&me.guest()), &req.writable, r).unwrap_or(0)
                    }
                    // No asynchronous events are supported (MMC media events go as
                    // unit attentions): event_actual 0.
                    Ctrl::An { .. } => {
                        ctrl::an_reply(&Guest(&me.guest()), &req.writable, 0, response::OK)
                            .unwrap_or(0)
                    }
                };
                let _ = vring.add_used(head, len);
                let _ = vring.signal_used_queue();
            });
        }
    }

    /// A task management function on the SCSI core's task set; the commands it aborted
    /// are completed on their queues (ABORTED) before it answers (§5.6.6.2).
    async fn task_management(&self, subtype: u32, lun: VirtioLun, tag: u64) -> u8 {
        use rtgt_scsi::{TmFunction, TmResponse};
        let lun = match lun {
            VirtioLun::Lun { target: 0, lun } => lun,
            _ => return response::BAD_TARGET,
        };
        let Some(nexus) = self.nexus().await else {
            return response::BAD_TARGET;
        };
        // SAM-5 7.1: a function addressed to a LUN with no LU is answered INCORRECT
        // LOGICAL UNIT NUMBER (the core says so itself for the functions it runs).
        let lu_exists = || nexus.target().scsi.lu_info().iter().any(|i| i.lun == lun);
        let (function, referenced) = match subtype {
            ctrl::tmf::ABORT_TASK => (TmFunction::AbortTask, Some(tag)),
            ctrl::tmf::ABORT_TASK_SET => (TmFunction::AbortTaskSet, None),
            ctrl::tmf::CLEAR_TASK_SET => (TmFunction::ClearTaskSet, None),
            ctrl::tmf::CLEAR_ACA => (TmFunction::ClearAca, None),
            ctrl::tmf::LOGICAL_UNIT_RESET => (TmFunction::LogicalUnitReset, None),
            ctrl::tmf::I_T_NEXUS_RESET => {
                // SAM-5 7.6: the nexus's tasks on every LU aborted, then 6.3.4's I_T
                // nexus loss (29h/07h for it); FUNCTION COMPLETE.
                nexus.target().scsi.it_nexus_reset(nexus.it()).wait().await;
                self.flush().await;
                return response::OK;
            }
            // SAM-5 7.8, 7.9: FUNCTION SUCCEEDED when the task (any task) is in the
            // LU's task set for this nexus, FUNCTION COMPLETE when not.
            ctrl::tmf::QUERY_TASK | ctrl::tmf::QUERY_TASK_SET => {
                if !lu_exists() {
                    return response::INCORRECT_LUN;
                }
                let which = (subtype == ctrl::tmf::QUERY_TASK).then_some(tag);
                return if self.query(lun, which).await {
                    response::FUNCTION_SUCCEEDED
                } else {
                    response::OK
                };
            }
            _ => return response::FUNCTION_REJECTED,
        };
        let out = nexus
            .target()
            .scsi
            .task_management(nexus.it(), function, lun, referenced);
        out.wait.wait().await;
        self.flush().await;
        match out.response {
            TmResponse::FunctionComplete | TmResponse::TaskDoesNotExist => response::OK,
            TmResponse::FunctionRejected => response::FUNCTION_REJECTED,
            TmResponse::IncorrectLun => response::INCORRECT_LUN,
        }
    }

    /// Waits until every queue has written back the completions already sent to it.
    async fn flush(&self) {
        let waits: Vec<_> = self
            .0
            .queues
            .lock()
            .iter()
            .flatten()
            .filter_map(|tx| {
                let (otx, orx) = oneshot::channel();
                tx.send(Work::Flush(otx)).ok().map(|()| orx)
            })
            .collect();
        for w in waits {
            let _ = w.await;
        }
    }

    /// Whether a queue holds task `tag` (None: any task) of LUN `lun`.
    async fn query(&self, lun: u64, tag: Option<u64>) -> bool {
        let waits: Vec<_> = self
            .0
            .queues
            .lock()
            .iter()
            .flatten()
            .filter_map(|tx| {
                let (otx, orx) = oneshot::channel();
                tx.send(Work::Query(lun, tag, otx)).ok().map(|()| orx)
            })
            .collect();
        let mut found = false;
        for w in waits {
            found |= w.await.unwrap_or(false);
        }
        found
    }

    /// Event queue (§5.6.6.3): the driver posts buffers for events to come.
    fn events(&self, vring: &VringRwLock) {
        let bufs = self.pop(vring);
        let used = {
            let mut q = self.0.events.lock();
            q.bufs.extend(bufs);
            // An event was dropped for want of a buffer: say so now that there is one
            // (the driver rescans), rather than with whatever comes next.
            if q.missed() {
                let none = rtgt_virtio::event::Event {
                    event: rtgt_virtio::event::NO_EVENT,
                    lun: [0; 8],
                    reason: 0,
                };
                q.deliver(self, &none)
            } else {
                Vec::new()
            }
        };
        events::give_back(vring, &used);
        if !self.0.watching.swap(true, Ordering::AcqRel) {
            let (me, v, c) = (self.clone(), vring.clone(), self.0.changes.clone());
            self.spawn(events::watch(me, v, c));
        }
    }
}

impl VhostUserBackend for ScsiBackend {
    type Bitmap = ();
    type Vring = CallVring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_INDIRECT_DESC
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | feature::HOTPLUG
            // QEMU's param_change is on by default and passed through: without it
            // QEMU fails to start.
            | feature::CHANGE
    }

    fn acked_features(&self, features: u64) {
        self.0.acked.store(features, Ordering::Release);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        *self.0.mem.lock() = mem;
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One thread takes every kick; the work itself runs on the reactors.
        vec![(1u64 << NUM_QUEUES) - 1]
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[CallVring],
        _thread_id: usize,
    ) -> io::Result<()> {
        tracing::debug!(device_event, ?evset, "vhost: kick");
        if evset != EventSet::IN {
            return Ok(());
        }
        let q = device_event as usize;
        let vrings: Vec<VringRwLock> = self
            .0
            .vrings
            .lock()
            .get_or_insert_with(|| vrings.iter().map(|v| v.0.clone()).collect())
            .clone();
        match q {
            0 => self.control(&vrings[0]),
            1 => self.events(&vrings[1]),
            q if q < vrings.len() && q < NUM_QUEUES => self.requests(q, &vrings),
            _ => {}
        }
        Ok(())
    }
}
