//! Persistent reservations of a logical unit whose medium several targets export (an
//! RBD image behind several gateways): SPC-4 5.13 reservations belong to the LU, so
//! every gateway must enforce what any of them granted.
//!
//! The store keeps the state ([`rtgt_backstore::SharedState`]); this module keeps the
//! LU's [`PrState`] in step with it. Before a command is checked against the
//! reservation the LU takes the newest state the store has seen (no I/O: the store is
//! told of changes as they happen), and a PERSISTENT RESERVE OUT runs under the
//! store's update lock on a freshly read state and publishes the result before it
//! completes, with the unit attentions it establishes (SPC-4 5.13.11: RESERVATIONS
//! PREEMPTED, RESERVATIONS RELEASED, REGISTRATIONS PREEMPTED), so that the other
//! targets establish them for their own I_T nexuses under the affected registrations.

use std::sync::atomic::Ordering;

use crate::cdb::Outcome;
use crate::lu::Lu;
use crate::pr::{NexusSet, PrState};
use crate::sense::asc;

/// The unit attentions a change establishes: for the I_T nexuses of each set.
pub(crate) type Uas = Vec<(NexusSet, asc::Code)>;

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

/// Replaces `pr` by the shared state, keeping what is this process's own (the APTPL
/// file). A state that does not parse is logged and ignored.
fn adopt(lu: &Lu, pr: &mut PrState, blob: Option<&[u8]>) {
    let new = match blob {
        None => PrState::default(),
        Some(b) => match serde_json::from_slice::<PrState>(b) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(lun = lu.lun, "shared reservation state unreadable: {e}");
                return;
            }
        },
    };
    pr.replace_shared(new);
}

/// Held from the start of a PERSISTENT RESERVE OUT to its end on a shared LU.
pub(crate) struct Update {
    before: Vec<u8>,
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
    let mut pr = lu.pr.lock();
    adopt(lu, &mut pr, blob.as_deref());
    let before = serde_json::to_vec(&*pr).expect("PrState serializes");
    Ok(Some(Update { before }))
}

/// Publishes the LU's state if the command changed it, with the unit attentions it
/// establishes (`uas`), and releases the lock. When the state cannot be published the
/// command fails and the LU goes back to the state before it.
pub(crate) async fn finish(lu: &Lu, update: Option<Update>, uas: &Uas) -> Outcome<()> {
    let (Some(shared), Some(u)) = (&lu.shared, update) else {
        return Ok(());
    };
    let now = serde_json::to_vec(&*lu.pr.lock()).expect("PrState serializes");
    if now == u.before {
        shared.unlock().await;
        return Ok(());
    }
    let event = if uas.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(uas).expect("unit attentions serialize")
    };
    if let Err(e) = shared.publish_unlock(now, event).await {
        tracing::error!(lun = lu.lun, "cannot publish reservation change: {e}");
        let mut pr = lu.pr.lock();
        adopt(lu, &mut pr, Some(&u.before));
        return Err(crate::store_error::io_fail(true, &e));
    }
    Ok(())
}

/// The unit attentions other targets' reservation changes established since this LU
/// last looked, to establish for this target's nexuses under each set. No I/O; one
/// atomic comparison when nothing happened.
pub(crate) fn remote_uas(lu: &Lu) -> Uas {
    let Some(shared) = &lu.shared else {
        return Vec::new();
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
        return Vec::new();
    }
    let mut uas = Vec::new();
    for e in events {
        match serde_json::from_slice::<Uas>(&e) {
            Ok(v) => uas.extend(v),
            Err(err) => tracing::error!(lun = lu.lun, "reservation event unreadable: {err}"),
        }
    }
    uas
}
