//! The reservation state and logical-unit events of a LU whose medium several targets
//! export (an RBD image behind several gateways). SAM-5 and SPC tie these to the
//! logical unit, not to the target port, so every gateway must enforce what any of them
//! granted: persistent reservations (SPC-4 5.13), the SPC-2 reservation (SPC-2 5.5.1:
//! the LU is reserved to one I_T nexus, named here by its port pair), and a logical
//! unit reset (SAM-5 6.3.3: every task of the LU ends, the SPC-2 reservation ends, and
//! every I_T nexus gets BUS DEVICE RESET FUNCTION OCCURRED).
//!
//! The store keeps the state ([`rtgt_backstore::SharedState`]); this module keeps the
//! LU's [`PrState`] and SPC-2 holder in step with it. Before a command is checked
//! against the reservations the LU takes the newest state the store has seen (no I/O:
//! the store is told of changes as they happen), and a PERSISTENT RESERVE OUT, RESERVE
//! or RELEASE runs under the store's update lock on a freshly read state and publishes
//! the result before it completes, with the event the other targets must act on: the
//! unit attentions it establishes (SPC-4 5.13.11: RESERVATIONS PREEMPTED, RESERVATIONS
//! RELEASED, REGISTRATIONS PREEMPTED) for the I_T nexuses under the affected
//! registrations, or a reset with its unit attention for all of them. The loss of the
//! nexus holding the SPC-2 reservation and a reset are published from a thread of their
//! own (their callers are synchronous and run on reactors); [`settle`] waits for those
//! still under way, so a stopping daemon does not lose a release.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cdb::Outcome;
use crate::lu::Lu;
use crate::pr::{NexusSet, PrState};
use crate::reserve::Spc2Holder;
use crate::sense::asc;
use crate::tasks::AbortAck;
use crate::{ItNexus, ScsiResult};

/// The unit attentions a change establishes: for the I_T nexuses of each set.
pub(crate) type Uas = Vec<(NexusSet, asc::Code)>;

/// What the other targets must act on after a change.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Unit attentions for the nexuses of each set.
    #[serde(default)]
    pub uas: Uas,
    /// A reset of the LU (SAM-5 6.3.3, or a hard reset's, 6.3.2), with the unit
    /// attention it establishes for every I_T nexus: each target ends its tasks on the
    /// LU and resets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<asc::Code>,
}

impl Event {
    fn is_empty(&self) -> bool {
        self.uas.is_empty() && self.reset.is_none()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        if self.is_empty() {
            Vec::new()
        } else {
            serde_json::to_vec(self).expect("events serialize")
        }
    }

    /// An event as published; a bare list of unit attentions is an older gateway's.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<Event>(b).or_else(|e| {
            serde_json::from_slice::<Uas>(b)
                .map(|uas| Event { uas, reset: None })
                .map_err(|_| e)
        })
    }
}

/// The shared blob: the persistent reservation state with the SPC-2 holder beside it
/// (a blob without one, an older gateway's, has none).
#[derive(Deserialize)]
struct Blob {
    #[serde(flatten)]
    pr: PrState,
    #[serde(default)]
    spc2: Option<Spc2Holder>,
}

#[derive(Serialize)]
struct BlobRef<'a> {
    #[serde(flatten)]
    pr: &'a PrState,
    #[serde(skip_serializing_if = "Option::is_none")]
    spc2: Option<&'a Spc2Holder>,
}

/// The LU's state as the blob the store keeps.
fn snapshot(lu: &Lu) -> Vec<u8> {
    let pr = lu.pr.lock();
    let spc2 = lu.spc2.holder();
    serde_json::to_vec(&BlobRef {
        pr: &pr,
        spc2: spc2.as_ref(),
    })
    .expect("the shared state serializes")
}

/// Brings the LU's reservation state up to the newest the store has seen.
pub(crate) fn refresh(lu: &Lu) {
    let Some(shared) = &lu.shared else { return };
    let (version, blob) = shared.latest();
    if lu.pr_version.load(Ordering::Acquire) == version {
        return;
    }
    let mut pr = lu.pr.lock();
    adopt(lu, &mut pr, blob.as_deref());
    lu.pr_version.store(version, Ordering::Release);
}

/// Replaces `pr` and the SPC-2 holder by the shared state, keeping what is this
/// process's own (the APTPL file). A state that does not parse is logged and ignored.
/// Returns whether the state names an SPC-2 holder whose nexus was lost here (the
/// release not published yet), which is then left out.
fn adopt(lu: &Lu, pr: &mut PrState, blob: Option<&[u8]>) -> bool {
    let new = match blob {
        None => Blob {
            pr: PrState::default(),
            spc2: None,
        },
        Some(b) => match serde_json::from_slice::<Blob>(b) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(lun = lu.lun, "shared reservation state unreadable: {e}");
                return false;
            }
        },
    };
    pr.replace_shared(new.pr);
    lu.spc2.set_holder(new.spc2)
}

/// Held from the start of a change (PERSISTENT RESERVE OUT, RESERVE, RELEASE, a
/// release at nexus loss, a reset) to its end on a shared LU.
pub(crate) struct Update {
    before: Vec<u8>,
    /// The state read differs from `before` (it named a lost holder): publish even
    /// if the change alters nothing.
    stale: bool,
}

/// Takes the store's update lock and loads the current state into the LU.
pub(crate) async fn begin(lu: &Lu) -> Outcome<Option<Update>> {
    let Some(shared) = &lu.shared else {
        return Ok(None);
    };
    let blob = shared
        .lock()
        .await
        .map_err(|e| crate::store_error::io_fail(true, &e))?;
    let stale = {
        let mut pr = lu.pr.lock();
        adopt(lu, &mut pr, blob.as_deref())
    };
    Ok(Some(Update {
        before: snapshot(lu),
        stale,
    }))
}

/// Publishes the LU's state if the change altered it or has an event for the others
/// (`event`), and releases the lock. When it cannot be published the command fails
/// and the LU goes back to the state before it.
pub(crate) async fn finish(lu: &Lu, update: Option<Update>, event: &Event) -> Outcome<()> {
    let (Some(shared), Some(u)) = (&lu.shared, update) else {
        return Ok(());
    };
    let now = snapshot(lu);
    if now == u.before && event.is_empty() && !u.stale {
        shared.unlock().await;
        return Ok(());
    }
    if let Err(e) = shared.publish_unlock(now, event.encode()).await {
        tracing::error!(lun = lu.lun, "cannot publish reservation change: {e}");
        let mut pr = lu.pr.lock();
        adopt(lu, &mut pr, Some(&u.before));
        return Err(crate::store_error::io_fail(true, &e));
    }
    Ok(())
}

/// What other targets sharing the medium published since this LU last looked, for
/// this target to apply to its own nexuses. No I/O; one atomic comparison when nothing
/// happened.
pub(crate) fn remote_events(lu: &Lu) -> Event {
    let mut out = Event::default();
    let Some(shared) = &lu.shared else {
        return out;
    };
    let seen = lu.pr_event_seq.load(Ordering::Acquire);
    let (newest, events) = shared.events_since(seen);
    if newest == seen
        || lu
            .pr_event_seq
            .compare_exchange(seen, newest, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        // Nothing new, or a concurrent command of this LU took these events.
        return out;
    }
    for e in events {
        match Event::decode(&e) {
            Ok(ev) => {
                out.uas.extend(ev.uas);
                // Several resets read as one: the last one's unit attention.
                out.reset = ev.reset.or(out.reset);
            }
            Err(err) => tracing::error!(lun = lu.lun, "reservation event unreadable: {err}"),
        }
    }
    out
}

/// RESERVE (6) / (10) (SPC-2 7.21): on a shared LU under the update lock, so two
/// gateways can't both grant it, and published before it completes.
pub(crate) async fn reserve(lu: &Lu, nexus: &ItNexus, cdb: &[u8]) -> Outcome<ScsiResult> {
    let update = begin(lu).await?;
    let r = crate::spc::reserve(lu, nexus, cdb);
    finish(lu, update, &Event::default()).await?;
    r
}

/// RELEASE (6) / (10) (SPC-2 7.13), as [`reserve`].
pub(crate) async fn release(lu: &Lu, nexus: &ItNexus, cdb: &[u8]) -> Outcome<ScsiResult> {
    let update = begin(lu).await?;
    let r = crate::spc::release(lu, nexus, cdb);
    finish(lu, update, &Event::default()).await?;
    r
}

/// Shared changes published from threads of their own and not yet done.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` to its end on a thread of its own, counted in [`PENDING`]: the callers
/// (I_T nexus loss, task management) are synchronous and run on reactors, and the
/// change must not die with a reactor that stops.
fn spawn_update(what: &'static str, f: impl Future<Output = ()> + Send + 'static) {
    PENDING.fetch_add(1, Ordering::AcqRel);
    let run = move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(f),
            Err(e) => tracing::error!("{what}: no runtime for the shared update: {e}"),
        }
        PENDING.fetch_sub(1, Ordering::AcqRel);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("rtgt-shared".into())
        .spawn(run)
    {
        tracing::error!("{what}: cannot start the shared update: {e}");
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits (at most `limit`) for the shared changes still under way: a stopping daemon
/// calls it before it exits.
pub(crate) async fn settle(limit: Duration) {
    let until = Instant::now() + limit;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// I_T nexus loss on a shared LU (SPC-2 5.5.1): if `nexus` holds the SPC-2
/// reservation, it ends here at once and for the other targets as soon as the release
/// is published (under the update lock, on a thread of its own). Returns what says
/// when it is published, for a transport that can hold the Logout Response until then.
pub(crate) fn nexus_loss(
    lu: &Arc<Lu>,
    nexus: &ItNexus,
) -> Option<tokio::sync::watch::Receiver<bool>> {
    if lu.shared.is_none() {
        lu.spc2.release_lost(nexus);
        return None;
    }
    refresh(lu);
    let holder = lu.spc2.holder()?;
    if !lu.spc2.release_lost(nexus) {
        return None;
    }
    // Until the release is published, a state read from the store that still names
    // this holder (another change's `begin`) must not bring the reservation back.
    lu.spc2.lost(holder.clone());
    let (ack, acked) = AbortAck::new();
    let lu = lu.clone();
    spawn_update("I_T nexus loss", async move {
        let _ack = ack;
        // `begin` loads the shared state without the lost holder: publishing it is
        // the release.
        let published = match begin(&lu).await {
            Ok(update) => finish(&lu, update, &Event::default()).await.is_ok(),
            Err(_) => false,
        };
        if published {
            tracing::debug!(lun = lu.lun, "SPC-2 release of a lost I_T nexus published");
            lu.spc2.released(&holder);
        } else {
            // Kept as lost: this gateway goes on ignoring it; the others see it until
            // a reset or the next change published here.
            tracing::error!(
                lun = lu.lun,
                "cannot publish the release of the SPC-2 reservation of a lost I_T nexus"
            );
        }
    });
    Some(acked)
}

/// A reset of a shared LU made here (`code`: the unit attention it establishes) is
/// published for the other targets, with the SPC-2 reservation ended in the shared
/// state. Returns what the task management function waits for before it answers, so
/// that once it has, every live gateway has the event.
pub(crate) fn publish_reset(
    lu: &Arc<Lu>,
    code: asc::Code,
) -> Option<tokio::sync::watch::Receiver<bool>> {
    lu.shared.as_ref()?;
    let (ack, acked) = AbortAck::new();
    let lu = lu.clone();
    spawn_update("logical unit reset", async move {
        let _ack = ack;
        let update = match begin(&lu).await {
            Ok(u) => u,
            Err(_) => {
                tracing::error!(lun = lu.lun, "cannot publish a logical unit reset");
                return;
            }
        };
        lu.spc2.clear();
        let event = Event {
            uas: Vec::new(),
            reset: Some(code),
        };
        let _ = finish(&lu, update, &event).await;
    });
    Some(acked)
}
