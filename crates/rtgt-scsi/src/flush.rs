//! Making every LU's written data durable, for a stop (rtgtd's SIGTERM): what the
//! initiators were told was written is on stable storage before the daemon exits, as
//! SYNCHRONIZE CACHE would make it (SBC-4 5.26).

use crate::ScsiTarget;

impl ScsiTarget {
    /// Flushes the backing store of each LU; the outcome by LUN. First waits (bounded)
    /// for the shared-state changes still being published (an SPC-2 reservation
    /// released by the loss of its nexus, a reset; shared_pr.rs), so the other
    /// gateways of a medium learn of them before this daemon exits.
    pub async fn flush_stores(&self) -> Vec<(u64, std::io::Result<()>)> {
        crate::shared_pr::settle(std::time::Duration::from_secs(25)).await;
        let mut out = Vec::new();
        for lu in self.all_lus() {
            if let Some(store) = &lu.store {
                out.push((lu.lun, store.flush().await));
            }
        }
        out
    }
}
