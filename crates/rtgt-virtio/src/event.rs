//! The event queue (§5.6.6.3): `event(le32) lun[8] reason(le32)`, bit 31 of `event`
//! saying that events were dropped for want of buffers.

use crate::chain::{inside, total, write_all, ChainError, GuestMem, Seg, Split};

pub const NO_EVENT: u32 = 0;
pub const TRANSPORT_RESET: u32 = 1;
pub const ASYNC_NOTIFY: u32 = 2;
pub const PARAM_CHANGE: u32 = 3;
pub const EVENTS_MISSED: u32 = 0x8000_0000;

/// TRANSPORT_RESET reasons.
pub const EVT_RESET_HARD: u32 = 0;
pub const EVT_RESET_RESCAN: u32 = 1;
pub const EVT_RESET_REMOVED: u32 = 2;

pub const EVENT_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub event: u32,
    pub lun: [u8; 8],
    pub reason: u32,
}

impl Event {
    pub fn encode(&self, missed: bool) -> [u8; EVENT_LEN] {
        let mut b = [0u8; EVENT_LEN];
        let e = self.event | if missed { EVENTS_MISSED } else { 0 };
        b[..4].copy_from_slice(&e.to_le_bytes());
        b[4..12].copy_from_slice(&self.lun);
        b[12..].copy_from_slice(&self.reason.to_le_bytes());
        b
    }
}

/// Writes an event into a buffer the driver posted (device-writable only).
pub fn deliver(
    mem: &dyn GuestMem,
    segs: &[Seg],
    ev: &Event,
    missed: bool,
) -> Result<u32, ChainError> {
    let split = Split::of(segs)?;
    if !split.readable.is_empty() {
        return Err(ChainError::WrongOrder);
    }
    if total(&split.writable) < EVENT_LEN as u64 {
        return Err(ChainError::ShortResponse);
    }
    if !inside(mem, &split.writable) {
        return Err(ChainError::OutsideMemory);
    }
    write_all(mem, &split.writable, &[&ev.encode(missed)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::FlatMem;
    use crate::VirtioLun;

    #[test]
    fn an_event_with_the_missed_bit() {
        let mem = FlatMem::new(0, 64);
        let ev = Event {
            event: TRANSPORT_RESET,
            lun: VirtioLun::encode(0, 3),
            reason: EVT_RESET_RESCAN,
        };
        let n = deliver(
            &mem,
            &[Seg {
                addr: 0,
                len: 16,
                write: true,
            }],
            &ev,
            true,
        )
        .unwrap();
        assert_eq!(n, 16);
        let mut b = [0u8; 16];
        assert!(mem.read(0, &mut b));
        assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), 0x8000_0001);
        assert_eq!(&b[4..12], &VirtioLun::encode(0, 3));
        assert_eq!(u32::from_le_bytes(b[12..].try_into().unwrap()), 1);
        assert_eq!(
            deliver(
                &mem,
                &[Seg {
                    addr: 0,
                    len: 8,
                    write: true
                }],
                &ev,
                false
            ),
            Err(ChainError::ShortResponse)
        );
    }
}
