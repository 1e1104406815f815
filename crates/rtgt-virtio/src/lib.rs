//! virtio-scsi, sans I/O: the layouts of OASIS virtio 1.2 §5.6 ("SCSI Host Device") read
//! from and written into a descriptor chain, with guest memory behind a trait.
//!
//! Nothing here trusts the guest: a chain is a list of [`Seg`]ments the driver wrote,
//! each checked against guest memory ([`GuestMem`]) before a byte moves; a chain that is
//! too short, has its segments in the wrong order or direction, or points outside guest
//! memory becomes a [`ChainError`], and the transport answers it as the spec prescribes
//! (VIRTIO_SCSI_S_FAILURE when the response can be written, the device marked as
//! needing reset when not). No panic on any input: `fuzz/fuzz_targets/virtio.rs`.

pub mod chain;
pub mod ctrl;
pub mod event;
pub mod lun;
pub mod request;

pub use chain::{ChainError, GuestMem, Seg};
pub use lun::VirtioLun;

/// virtio-scsi feature bits (§5.6.3).
pub mod feature {
    /// A single request may carry both data-in and data-out.
    pub const INOUT: u64 = 1 << 0;
    /// Hot-plug events (TRANSPORT_RESET RESCAN / REMOVED) on the event queue.
    pub const HOTPLUG: u64 = 1 << 1;
    /// PARAM_CHANGE events (capacity changed, …).
    pub const CHANGE: u64 = 1 << 2;
}

/// The `response` byte of a request or task management reply (§5.6.6.1, §5.6.6.2).
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const BUSY: u8 = 5;
    pub const TRANSPORT_FAILURE: u8 = 6;
    pub const TARGET_FAILURE: u8 = 7;
    pub const NEXUS_FAILURE: u8 = 8;
    pub const FAILURE: u8 = 9;
    pub const FUNCTION_SUCCEEDED: u8 = 10;
    pub const FUNCTION_REJECTED: u8 = 11;
    pub const INCORRECT_LUN: u8 = 12;
}

/// The default CDB and sense sizes of the configuration space (§5.6.4); QEMU's
/// vhost-user-scsi refuses to let the driver change them, so they are fixed here.
pub const CDB_SIZE: usize = 32;
pub const SENSE_SIZE: usize = 96;

#[cfg(test)]
mod tests {
    use crate::chain::FlatMem;
    use crate::{ctrl, event, request, GuestMem, Seg};

    /// The fuzz target's loop, on a fixed pseudo-random sequence: random chains over a
    /// small memory never panic, and whatever parses lies inside the memory.
    #[test]
    fn random_chains_never_panic_nor_escape_memory() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = 0x1000u64;
        for _ in 0..20_000 {
            let mem = FlatMem::new(base, 4096);
            let n = next() % 6;
            let segs: Vec<Seg> = (0..n)
                .map(|_| {
                    let r = next();
                    Seg {
                        // Mostly inside, sometimes at the edges or far away.
                        addr: match r % 8 {
                            0 => u64::MAX - (r >> 60),
                            1 => base + 4096 - (r >> 58) % 64,
                            _ => base + (r >> 20) % 4096,
                        },
                        len: ((r >> 8) % 300) as u32,
                        write: r & 0x10 != 0,
                    }
                })
                .collect();
            for s in &segs {
                let mut b = vec![0u8; s.len as usize];
                let _ = mem.read(s.addr, &mut b);
            }
            match request::parse(&mem, &segs, next() & 1 == 0) {
                Ok(r) => {
                    assert!(r.writable.iter().all(|s| s.write));
                    let data = vec![1u8; r.data_in_len as usize + 3];
                    let w =
                        request::complete(&mem, &r.writable, request::Response::default(), &data)
                            .unwrap();
                    assert!(u64::from(w) <= crate::chain::total(&r.writable));
                }
                Err(rej) => {
                    let _ = request::complete(
                        &mem,
                        &rej.writable,
                        request::Response::code(crate::response::FAILURE),
                        &[],
                    );
                }
            }
            if let Ok(c) = ctrl::parse(&mem, &segs) {
                let _ = ctrl::tmf_reply(&mem, &c.writable, 0);
            }
            let ev = event::Event {
                event: event::PARAM_CHANGE,
                lun: [1, 0, 0x40, 0, 0, 0, 0, 0],
                reason: 0x092a,
            };
            let _ = event::deliver(&mem, &segs, &ev, false);
        }
    }
}
