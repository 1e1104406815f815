//! The vrings the vhost-user library keeps for us: its `VringRwLock`, except that a
//! call notifier handed over with VHOST_USER_SET_VRING_CALL is notified once as soon
//! as it is in place.
//!
//! Why: QEMU's virtio-pci masks a queue's MSI-X vector by handing the backend a
//! "masked" notifier with SET_VRING_CALL, and on unmask hands back the guest notifier,
//! then tests the masked one for a notification it must forward. That message asks no
//! reply (QEMU's vhost-user.c, vhost_set_vring_file), so QEMU's test can run before
//! this backend has switched notifiers: a notification sent into that window lands on
//! the masked notifier after QEMU has looked, and is never delivered. Linux's
//! virtio_scsi never times a command out, so the guest waited forever (seen in the
//! SCSI scan under TCG: the answer on the used ring, the guest idle, an eventfd count
//! of 1 left on the request queue's masked notifier, and one notification written by
//! hand to the current call fd unblocking it). vhost-user-backend handles the message
//! itself and tells the backend nothing, but it sets the notifier through the vring
//! type, which is ours to choose: here. The notification to the new notifier comes
//! after every notification to the old one (both under the vring's lock), so none is
//! lost; the cost is an interrupt that finds nothing new at each notifier swap (virtio
//! 1.2 §2.7.10: the driver reads the used ring, the notification only says to look).

use std::fs::File;
use std::io;

use vhost_user_backend::{VringRwLock, VringStateGuard, VringStateMutGuard, VringT};
use virtio_queue::{Error as QueueError, QueueT};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;

#[derive(Clone)]
pub struct CallVring(pub VringRwLock<Mem>);

impl<'a> VringStateGuard<'a, Mem> for CallVring {
    type G = <VringRwLock<Mem> as VringStateGuard<'a, Mem>>::G;
}

impl<'a> VringStateMutGuard<'a, Mem> for CallVring {
    type G = <VringRwLock<Mem> as VringStateMutGuard<'a, Mem>>::G;
}

impl VringT<Mem> for CallVring {
    fn new(mem: Mem, max_queue_size: u16) -> Result<Self, QueueError> {
        VringRwLock::new(mem, max_queue_size).map(CallVring)
    }
    fn get_ref(&self) -> <Self as VringStateGuard<'_, Mem>>::G {
        self.0.get_ref()
    }
    fn get_mut(&self) -> <Self as VringStateMutGuard<'_, Mem>>::G {
        self.0.get_mut()
    }
    fn add_used(&self, desc_index: u16, len: u32) -> Result<(), QueueError> {
        self.0.add_used(desc_index, len)
    }
    fn signal_used_queue(&self) -> io::Result<()> {
        self.0.signal_used_queue()
    }
    fn enable_notification(&self) -> Result<bool, QueueError> {
        self.0.enable_notification()
    }
    fn disable_notification(&self) -> Result<(), QueueError> {
        self.0.disable_notification()
    }
    fn needs_notification(&self) -> Result<bool, QueueError> {
        self.0.needs_notification()
    }
    fn set_enabled(&self, enabled: bool) {
        self.0.set_enabled(enabled)
    }
    fn set_queue_info(
        &self,
        desc_table: u64,
        avail_ring: u64,
        used_ring: u64,
    ) -> Result<(), QueueError> {
        self.0.set_queue_info(desc_table, avail_ring, used_ring)
    }
    fn queue_next_avail(&self) -> u16 {
        self.0.queue_next_avail()
    }
    fn set_queue_next_avail(&self, base: u16) {
        self.0.set_queue_next_avail(base)
    }
    fn set_queue_next_used(&self, idx: u16) {
        self.0.set_queue_next_used(idx)
    }
    fn queue_used_idx(&self) -> Result<u16, QueueError> {
        self.0.queue_used_idx()
    }
    fn set_queue_size(&self, num: u16) {
        self.0.set_queue_size(num)
    }
    fn set_queue_event_idx(&self, enabled: bool) {
        self.0.set_queue_event_idx(enabled)
    }
    fn set_queue_ready(&self, ready: bool) {
        self.0.set_queue_ready(ready)
    }
    fn set_kick(&self, file: Option<File>) {
        self.0.set_kick(file)
    }
    fn read_kick(&self) -> io::Result<bool> {
        self.0.read_kick()
    }
    fn set_call(&self, file: Option<File>) {
        let has = file.is_some();
        self.0.set_call(file);
        // Only a running queue: at setup there is nothing to say yet.
        if has && self.0.get_ref().get_queue().ready() {
            tracing::debug!("vhost: call notifier replaced; notifying it once");
            let _ = self.0.signal_used_queue();
        }
    }
    fn set_err(&self, file: Option<File>) {
        self.0.set_err(file)
    }
}
