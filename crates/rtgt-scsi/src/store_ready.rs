//! A logical unit whose backing store exists before its medium can be reached (an RBD
//! image while its cluster is down): the LU answers INQUIRY, REPORT LUNS and the like,
//! and media access gets NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (SPC-4 table 28,
//! 08h/00h: the LU cannot talk to the storage behind it). When the store becomes ready
//! by itself, every I_T nexus is told CAPACITY DATA HAS CHANGED (SBC-4 4.6; SPC-4
//! table F.1): the capacity went from nothing to the image's size.

use std::sync::atomic::Ordering;

use crate::lu::Lu;
use crate::sense::{key, Sense};
use crate::spc::op;
use crate::store_error::LU_COMMUNICATION_FAILURE;

/// NOT READY while the LU's store is not ready.
pub(crate) fn not_ready(lu: &Lu) -> Option<Sense> {
    let waiting =
        lu.awaiting_store.load(Ordering::Acquire) && lu.store.as_ref().is_some_and(|s| !s.ready());
    waiting.then(|| Sense::of(key::NOT_READY, LU_COMMUNICATION_FAILURE))
}

/// Persistent reservations of a LU whose state lives with its medium cannot be read
/// or changed before the medium is reached.
pub(crate) fn refuse(lu: &Lu, opcode: u8) -> Option<Sense> {
    let pr = matches!(
        opcode,
        op::PERSISTENT_RESERVE_IN | op::PERSISTENT_RESERVE_OUT
    );
    if pr && lu.shared.is_some() {
        not_ready(lu)
    } else {
        None
    }
}

/// True once, when the store of a LU created not ready has become ready: the caller
/// raises CAPACITY DATA HAS CHANGED. One atomic load per command otherwise.
pub(crate) fn became_ready(lu: &Lu) -> bool {
    lu.awaiting_store.load(Ordering::Acquire)
        && lu.store.as_ref().is_some_and(|s| s.ready())
        && lu.awaiting_store.swap(false, Ordering::AcqRel)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use rtgt_backstore::{BackingStore, Capabilities, IoFuture};

    use crate::status;
    use crate::target_tests::{disk_cfg, exec, sense_of};
    use crate::ScsiTarget;

    /// A 1 MiB store of 0x5a bytes that is unreachable until `up` is set.
    struct Late {
        up: AtomicBool,
    }

    #[async_trait]
    impl BackingStore for Late {
        fn kind(&self) -> &'static str {
            "late"
        }
        fn size(&self) -> u64 {
            if self.ready() {
                1 << 20
            } else {
                0
            }
        }
        fn ready(&self) -> bool {
            self.up.load(Ordering::Acquire)
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn read_at(&self, mut buf: Vec<u8>, _offset: u64) -> IoFuture<'_, Vec<u8>> {
            IoFuture::pending(async move {
                buf.fill(0x5a);
                Ok(buf)
            })
        }
        fn write_at(&self, buf: Vec<u8>, _offset: u64) -> IoFuture<'_, Vec<u8>> {
            IoFuture::pending(async move { Ok(buf) })
        }
        async fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
    const READ_CAPACITY: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    #[tokio::test]
    async fn not_ready_until_the_store_is_then_capacity_changed() {
        let t = ScsiTarget::new("iqn.2026-01.test:tgt");
        let store = Arc::new(Late {
            up: AtomicBool::new(false),
        });
        t.add_lu(1, disk_cfg(store.clone(), &[])).unwrap();
        let r = exec(&t, 1, 1, &[0x12, 0, 0, 0, 96, 0], &[]).await;
        assert_eq!(r.status, status::GOOD, "INQUIRY while not ready");
        assert_eq!(r.data_in[0], 0x00, "a disk, connected");
        for cdb in [&TUR[..], &READ_CAPACITY[..], &READ10[..]] {
            let r = exec(&t, 1, 1, cdb, &[]).await;
            assert_eq!(sense_of(&r), (2, 0x08, 0x00), "{cdb:02x?}");
        }
        // REQUEST SENSE says why, PERSISTENT RESERVE IN on an unshared LU still works.
        let r = exec(&t, 1, 1, &[0x03, 0, 0, 0, 18, 0], &[]).await;
        assert_eq!(
            (r.data_in[2], r.data_in[12], r.data_in[13]),
            (2, 0x08, 0x00)
        );
        let r = exec(&t, 2, 1, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[]).await;
        assert_eq!(r.status, status::GOOD);

        store.up.store(true, Ordering::Release);
        for n in [1, 2] {
            let r = exec(&t, n, 1, &TUR, &[]).await;
            assert_eq!(
                sense_of(&r),
                (6, 0x2a, 0x09),
                "nexus {n}: CAPACITY DATA HAS CHANGED"
            );
            assert_eq!(exec(&t, n, 1, &TUR, &[]).await.status, status::GOOD);
        }
        let r = exec(&t, 1, 1, &READ_CAPACITY, &[]).await;
        assert_eq!(r.status, status::GOOD);
        assert_eq!(&r.data_in[..4], &2047u32.to_be_bytes());
        let r = exec(&t, 1, 1, &READ10, &[]).await;
        assert_eq!(r.data_in, vec![0x5a; 512]);
    }
}
