//! The event queue (§5.6.6.3): the registry's changes as virtio-scsi events. A LUN added
//! is TRANSPORT_RESET/RESCAN, one removed TRANSPORT_RESET/REMOVED (VIRTIO_SCSI_F_HOTPLUG),
//! a disk grown or shrunk PARAM_CHANGE with CAPACITY DATA HAS CHANGED, 2Ah/09h
//! (VIRTIO_SCSI_F_CHANGE; never for MMC devices). The SCSI core has already
//! established the matching unit attentions (3Fh/0Eh REPORTED LUNS DATA HAS CHANGED,
//! 2Ah/09h). An event with no buffer posted is dropped, and the next one delivered
//! carries VIRTIO_SCSI_T_EVENTS_MISSED, after which Linux rescans the whole host.

use std::collections::{BTreeMap, VecDeque};

use rtgt_virtio::event::{self, Event};
use rtgt_virtio::{feature, Seg, VirtioLun};
use tokio::sync::watch;
use vhost_user_backend::{VringRwLock, VringT};

use super::backend::ScsiBackend;
use super::memory::Guest;

/// What the guest can see of a LUN: its device type and capacity.
pub type Inventory = BTreeMap<u64, (String, u64)>;

/// Events waiting for buffers, and whether one was dropped.
#[derive(Default)]
pub struct EventQueue {
    pub bufs: VecDeque<(u16, Vec<Seg>)>,
    missed: bool,
}

/// The events between two inventories, in LUN order.
pub fn diff(old: &Inventory, new: &Inventory, acked: u64) -> Vec<Event> {
    let mut v = Vec::new();
    let hotplug = acked & feature::HOTPLUG != 0;
    let change = acked & feature::CHANGE != 0;
    for (lun, (ty, size)) in new {
        match old.get(lun) {
            None if hotplug => v.push(Event {
                event: event::TRANSPORT_RESET,
                lun: VirtioLun::encode_event(0, *lun),
                reason: event::EVT_RESET_RESCAN,
            }),
            Some((_, was)) if change && was != size && ty == "disk" => v.push(Event {
                event: event::PARAM_CHANGE,
                lun: VirtioLun::encode_event(0, *lun),
                // ASC | ASCQ << 8: CAPACITY DATA HAS CHANGED.
                reason: 0x2a | (0x09 << 8),
            }),
            _ => {}
        }
    }
    if hotplug {
        for lun in old.keys().filter(|l| !new.contains_key(l)) {
            v.push(Event {
                event: event::TRANSPORT_RESET,
                lun: VirtioLun::encode_event(0, *lun),
                reason: event::EVT_RESET_REMOVED,
            });
        }
    }
    v
}

impl EventQueue {
    /// Delivers `ev` into the oldest posted buffer. Returns the buffers to put on the
    /// used ring: the one that took it, after any too small to (given back empty).
    /// With none posted it is dropped and remembered as missed.
    pub fn deliver(&mut self, backend: &ScsiBackend, ev: &Event) -> Vec<(u16, u32)> {
        let mut used = Vec::new();
        while let Some((head, segs)) = self.bufs.pop_front() {
            let mem = backend.guest();
            match event::deliver(&Guest(&mem), &segs, ev, self.missed) {
                Ok(n) => {
                    self.missed = false;
                    used.push((head, n));
                    return used;
                }
                Err(e) => {
                    tracing::warn!("vhost: bad event buffer: {e:?}");
                    used.push((head, 0));
                }
            }
        }
        self.missed = true;
        used
    }

    /// Whether an event was dropped and not yet reported.
    pub fn missed(&self) -> bool {
        self.missed
    }
}

/// Puts delivered event buffers on the used ring.
pub fn give_back(vring: &VringRwLock, used: &[(u16, u32)]) {
    for &(head, n) in used {
        let _ = vring.add_used(head, n);
    }
    if !used.is_empty() {
        let _ = vring.signal_used_queue();
    }
}

/// Follows the target's LUNs for as long as the connection lasts.
pub async fn watch(backend: ScsiBackend, vring: VringRwLock, mut changes: watch::Receiver<u64>) {
    let Some(nexus) = backend.nexus().await else {
        return;
    };
    let inventory = || -> Inventory {
        nexus
            .target()
            .scsi
            .lu_info()
            .into_iter()
            .map(|i| (i.lun, (i.device_type, i.size_bytes)))
            .collect()
    };
    let mut known = inventory();
    loop {
        // Ends with the connection, not at the next registry change: this task holds
        // the backend, and with it the session's I_T nexus.
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = backend.until_gone() => return,
        }
        if backend.is_gone() {
            return;
        }
        let now = inventory();
        let events = diff(&known, &now, backend.acked());
        known = now;
        if events.is_empty() {
            continue;
        }
        for ev in &events {
            tracing::info!(?ev, "vhost: event");
            let used = backend.events_queue().deliver(&backend, ev);
            give_back(&vring, &used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_changes_become_events() {
        let all = feature::HOTPLUG | feature::CHANGE;
        let old: Inventory = [(0, ("controller".into(), 0)), (1, ("disk".into(), 1 << 20))].into();
        let mut new = old.clone();
        new.insert(2, ("disk".into(), 4096));
        new.insert(1, ("disk".into(), 2 << 20));
        let ev = diff(&old, &new, all);
        assert_eq!(
            ev,
            vec![
                Event {
                    event: event::PARAM_CHANGE,
                    lun: VirtioLun::encode_event(0, 1),
                    reason: 0x092a
                },
                Event {
                    event: event::TRANSPORT_RESET,
                    lun: VirtioLun::encode_event(0, 2),
                    reason: event::EVT_RESET_RESCAN
                },
            ]
        );
        let ev = diff(&new, &old, all);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].reason, event::EVT_RESET_REMOVED);
        // Without the features negotiated, nothing.
        assert!(diff(&old, &new, 0).is_empty());
        // No PARAM_CHANGE for a CD (§5.6.6.3.3: not for MMC devices).
        let cd_old: Inventory = [(1, ("cd".into(), 100))].into();
        let cd_new: Inventory = [(1, ("cd".into(), 200))].into();
        assert!(diff(&cd_old, &cd_new, all).is_empty());
    }
}
