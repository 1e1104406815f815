//! Two targets (gateways) exporting one medium through a fake [`SharedState`], as the
//! rbd store shares it: the SPC-2 reservation, its release at I_T nexus loss and
//! logical unit resets are the LU's, whichever gateway they come through.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use parking_lot::Mutex;
use rtgt_backstore::{BackingStore, Capabilities, IoFuture, SharedState};

use crate::target_tests::{disk_cfg, sense_of, MemStore};
use crate::{status, ItNexus, ScsiCommand, ScsiResult, ScsiTarget, TaskAttr, TmFunction};

const IQN: &str = "iqn.2026-01.test:tgt";

/// The medium's shared blob, its update lock and every gateway's handle.
#[derive(Default)]
struct Medium {
    state: Mutex<(u64, Option<Vec<u8>>)>,
    lock: Arc<tokio::sync::Mutex<()>>,
    gateways: Mutex<Vec<Weak<FakeShared>>>,
}

/// One gateway's view, as rbd's SharedHandle: events from the others, numbered.
struct FakeShared {
    medium: Arc<Medium>,
    held: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
    events: Mutex<Vec<(u64, Vec<u8>)>>,
    seq: AtomicU64,
    /// Fail the next publication (the cluster unreachable).
    fail_publish: AtomicBool,
}

impl FakeShared {
    fn join(medium: &Arc<Medium>) -> Arc<Self> {
        let s = Arc::new(Self {
            medium: medium.clone(),
            held: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            fail_publish: AtomicBool::new(false),
        });
        medium.gateways.lock().push(Arc::downgrade(&s));
        s
    }
}

#[async_trait]
impl SharedState for FakeShared {
    fn latest(&self) -> (u64, Option<Vec<u8>>) {
        self.medium.state.lock().clone()
    }
    async fn lock(&self) -> io::Result<Option<Vec<u8>>> {
        let g = self.medium.lock.clone().lock_owned().await;
        *self.held.lock() = Some(g);
        Ok(self.medium.state.lock().1.clone())
    }
    async fn publish_unlock(&self, state: Vec<u8>, event: Vec<u8>) -> io::Result<()> {
        if self.fail_publish.swap(false, Ordering::AcqRel) {
            self.held.lock().take();
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        {
            let mut s = self.medium.state.lock();
            s.0 += 1;
            s.1 = Some(state);
        }
        if !event.is_empty() {
            for g in self.medium.gateways.lock().iter().filter_map(Weak::upgrade) {
                if !std::ptr::eq(Arc::as_ptr(&g), self) {
                    let n = g.seq.fetch_add(1, Ordering::AcqRel) + 1;
                    g.events.lock().push((n, event.clone()));
                }
            }
        }
        self.held.lock().take();
        Ok(())
    }
    fn events_since(&self, seen: u64) -> (u64, Vec<Vec<u8>>) {
        let q = self.events.lock();
        let newest = q.last().map_or(seen, |e| e.0);
        let v = q
            .iter()
            .filter(|e| e.0 > seen)
            .map(|e| e.1.clone())
            .collect();
        (newest, v)
    }
    async fn unlock(&self) {
        self.held.lock().take();
    }
}

/// A memory store that shares its state through `shared`.
struct SharedStore {
    inner: Arc<MemStore>,
    shared: Arc<FakeShared>,
}

#[async_trait]
impl BackingStore for SharedStore {
    fn kind(&self) -> &'static str {
        "mem"
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn read_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> IoFuture<'_, Vec<u8>> {
        self.inner.write_at(buf, offset)
    }
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn shared_state(&self) -> Option<Arc<dyn SharedState>> {
        Some(self.shared.clone())
    }
}

/// Two gateways of one target name, one medium.
fn gateways() -> (ScsiTarget, ScsiTarget) {
    gateways_on(&Arc::new(Medium::default()))
}

fn gateways_on(medium: &Arc<Medium>) -> (ScsiTarget, ScsiTarget) {
    let data = MemStore::new(1 << 20);
    let gw = || {
        let t = ScsiTarget::new(IQN);
        let store = Arc::new(SharedStore {
            inner: data.clone(),
            shared: FakeShared::join(medium),
        });
        t.add_lu(1, disk_cfg(store, &[])).unwrap();
        t
    };
    (gw(), gw())
}

/// I_T nexus `id` of initiator `init` through portal group `tpgt` (one per gateway).
fn nexus(id: u64, init: u8, tpgt: u16) -> Arc<ItNexus> {
    Arc::new(ItNexus {
        id,
        initiator_name: format!("iqn.2026-01.test:init{init}"),
        initiator_port: format!("iqn.2026-01.test:init{init},i,0x23d0000000{init:02x}"),
        target_port: format!("{IQN},t,0x{tpgt:x}"),
        relative_port_id: tpgt,
        target_port_group: tpgt,
    })
}

async fn exec(t: &ScsiTarget, n: &Arc<ItNexus>, cdb: &[u8]) -> ScsiResult {
    let mut c = cdb.to_vec();
    c.resize(16, 0);
    t.execute(ScsiCommand {
        nexus: n.clone(),
        lun: 1,
        cdb: c.into(),
        data_out: Vec::new(),
        expected_data_in: 65536,
        attr: TaskAttr::Simple,
        tag: 1,
    })
    .await
}

const TUR: [u8; 6] = [0x00, 0, 0, 0, 0, 0];
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

fn st(r: &ScsiResult) -> u8 {
    r.status
}

#[tokio::test]
async fn reserve6_through_one_gateway_conflicts_through_the_other() {
    let (a, b) = gateways();
    let (na, nb) = (nexus(1, 1, 1), nexus(1, 2, 2));
    assert_eq!(st(&exec(&a, &na, &RESERVE6).await), status::GOOD);
    // SPC-2 5.5.1: the LU is reserved to A's nexus, whatever port B comes through.
    assert_eq!(
        st(&exec(&b, &nb, &RESERVE6).await),
        status::RESERVATION_CONFLICT
    );
    assert_eq!(
        st(&exec(&b, &nb, &READ10).await),
        status::RESERVATION_CONFLICT
    );
    // B's RELEASE is not the holder's: GOOD, and the reservation stays (SPC-2 7.13.1).
    assert_eq!(st(&exec(&b, &nb, &RELEASE6).await), status::GOOD);
    assert_eq!(
        st(&exec(&b, &nb, &READ10).await),
        status::RESERVATION_CONFLICT
    );
    assert_eq!(st(&exec(&a, &na, &READ10).await), status::GOOD);
    // The same initiator port through gateway B is another I_T nexus: it conflicts too.
    let na_via_b = nexus(5, 1, 2);
    assert_eq!(
        st(&exec(&b, &na_via_b, &TUR).await),
        status::RESERVATION_CONFLICT
    );
    assert_eq!(st(&exec(&a, &na, &RELEASE6).await), status::GOOD);
    assert_eq!(st(&exec(&b, &nb, &RESERVE6).await), status::GOOD);
    assert_eq!(st(&exec(&a, &na, &TUR).await), status::RESERVATION_CONFLICT);
}

#[tokio::test]
async fn a_release_being_published_is_not_undone_by_the_next_change() {
    // libiscsi's Reserve6.Logout: the holder logs out of gateway A and another nexus
    // of A reserves at once, while the release is still being published. The state
    // that RESERVE reads under the lock may still name the lost holder; it must not
    // count, and publishing the RESERVE publishes the release with it.
    let medium = Arc::new(Medium::default());
    let (a, b) = gateways_on(&medium);
    let (na, na2, nb) = (nexus(1, 1, 1), nexus(2, 2, 1), nexus(1, 3, 2));
    assert_eq!(st(&exec(&a, &na, &RESERVE6).await), status::GOOD);
    // The release's publication fails (it could as well still be under way): the
    // stored state goes on naming the lost holder.
    let gw_a = medium.gateways.lock()[0].upgrade().unwrap();
    gw_a.fail_publish.store(true, Ordering::Release);
    a.nexus_loss(&na);
    crate::shared_pr::settle(std::time::Duration::from_secs(5)).await;
    assert_eq!(st(&exec(&b, &nb, &TUR).await), status::RESERVATION_CONFLICT);
    assert_eq!(st(&exec(&a, &na2, &RESERVE6).await), status::GOOD);
    assert_eq!(
        st(&exec(&b, &nb, &RESERVE6).await),
        status::RESERVATION_CONFLICT
    );
    assert_eq!(st(&exec(&a, &na2, &RELEASE6).await), status::GOOD);
    assert_eq!(st(&exec(&b, &nb, &RESERVE6).await), status::GOOD);
}

#[tokio::test]
async fn nexus_loss_releases_for_every_gateway() {
    let (a, b) = gateways();
    let (na, nb) = (nexus(1, 1, 1), nexus(1, 2, 2));
    assert_eq!(st(&exec(&a, &na, &RESERVE6).await), status::GOOD);
    assert_eq!(
        st(&exec(&b, &nb, &RESERVE6).await),
        status::RESERVATION_CONFLICT
    );
    // A nexus that does not hold it (same id, other port pair) releases nothing.
    a.nexus_loss(&nexus(1, 3, 1));
    crate::shared_pr::settle(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        st(&exec(&b, &nb, &RESERVE6).await),
        status::RESERVATION_CONFLICT
    );
    // SPC-2 5.5.1: the holder's I_T nexus loss ends it, published from its own thread
    // (nexus_loss is synchronous); what it returns says when the other gateways have
    // it (a Logout Response waits for that).
    let wait = a.nexus_loss(&na);
    assert!(!wait.is_empty());
    wait.wait().await;
    assert_eq!(st(&exec(&b, &nb, &RESERVE6).await), status::GOOD);
    // A nexus holding nothing has nothing to wait for.
    assert!(b.nexus_loss(&nexus(9, 9, 2)).is_empty());
}

async fn reset(t: &ScsiTarget, n: &Arc<ItNexus>, f: TmFunction) {
    let out = t.task_management(n, f, 1, None);
    assert_eq!(out.response, crate::TmResponse::FunctionComplete);
    // Completes once the other gateways have the event.
    out.wait.wait().await;
}

#[tokio::test]
async fn lun_reset_reaches_the_other_gateways_nexuses() {
    let (a, b) = gateways();
    let (na, nb, nb2) = (nexus(1, 1, 1), nexus(1, 2, 2), nexus(2, 3, 2));
    for (t, n) in [(&a, &na), (&b, &nb), (&b, &nb2)] {
        assert_eq!(st(&exec(t, n, &TUR).await), status::GOOD);
    }
    assert_eq!(st(&exec(&b, &nb, &RESERVE6).await), status::GOOD);
    reset(&a, &na, TmFunction::LogicalUnitReset).await;
    // SAM-5 6.3.3: BUS DEVICE RESET FUNCTION OCCURRED for every I_T nexus of the LU,
    // through either gateway, once each.
    for (t, n) in [(&a, &na), (&b, &nb), (&b, &nb2)] {
        assert_eq!(sense_of(&exec(t, n, &TUR).await), (0x6, 0x29, 0x03));
        assert_eq!(st(&exec(t, n, &TUR).await), status::GOOD);
    }
    // SPC-2 5.5.1: the reset ended B's SPC-2 reservation for both gateways.
    assert_eq!(st(&exec(&a, &na, &RESERVE6).await), status::GOOD);
    assert_eq!(st(&exec(&b, &nb, &TUR).await), status::RESERVATION_CONFLICT);
}

#[tokio::test]
async fn hard_reset_reaches_the_other_gateways_nexuses() {
    let (a, b) = gateways();
    let (na, nb) = (nexus(1, 1, 1), nexus(1, 2, 2));
    assert_eq!(st(&exec(&b, &nb, &TUR).await), status::GOOD);
    assert_eq!(st(&exec(&a, &na, &RESERVE6).await), status::GOOD);
    reset(&a, &na, TmFunction::TargetWarmReset).await;
    // SAM-5 6.3.2: POWER ON, RESET, OR BUS DEVICE RESET OCCURRED, and no reservation.
    assert_eq!(sense_of(&exec(&b, &nb, &TUR).await), (0x6, 0x29, 0x00));
    assert_eq!(st(&exec(&b, &nb, &RESERVE6).await), status::GOOD);
}

#[tokio::test]
async fn a_reset_on_one_medium_leaves_an_unshared_lu_alone() {
    // Without a shared state nothing is published and nothing waits for it.
    let (t, _s) = crate::target_tests::target_with(&[]);
    let n = nexus(1, 1, 1);
    assert_eq!(st(&exec(&t, &n, &RESERVE6).await), status::GOOD);
    let out = t.task_management(&n, TmFunction::LogicalUnitReset, 1, None);
    assert!(out.wait.is_empty());
    assert_eq!(sense_of(&exec(&t, &n, &TUR).await), (0x6, 0x29, 0x03));
    assert_eq!(
        st(&exec(&t, &nexus(2, 2, 1), &RESERVE6).await),
        status::GOOD
    );
}

#[test]
fn an_older_gateways_event_is_a_list_of_unit_attentions() {
    let old = br#"[[{"initiator":"iqn.x:i","target_port":null},[42,3]]]"#;
    let e = crate::shared_pr::Event::decode(old).unwrap();
    assert_eq!(e.uas.len(), 1);
    assert_eq!(e.reset, None);
    let e = crate::shared_pr::Event {
        uas: Vec::new(),
        reset: Some((0x29, 0x03)),
    };
    assert_eq!(crate::shared_pr::Event::decode(&e.encode()).unwrap(), e);
}
