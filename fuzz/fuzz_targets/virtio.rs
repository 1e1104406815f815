//! The virtio-scsi descriptor-chain parser: whatever a guest puts in its descriptors and
//! its memory. The input's first byte is the segment count (up to 16); then each segment
//! is 8 bytes address, 4 length, 1 flags (bit 0: device-writable), addresses relative to
//! a guest memory of 64 KiB at 0x10000 made of the rest of the input. Each chain goes
//! through the request, control and event parsers and the answers are written back: no
//! panic, and nothing read or written outside the memory (FlatMem checks every range).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtgt_virtio::chain::FlatMem;
use rtgt_virtio::event::{self, Event};
use rtgt_virtio::request::{self, Response};
use rtgt_virtio::{ctrl, GuestMem, Seg};

const BASE: u64 = 0x10000;
const MEM: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let mut segs = Vec::new();
    for _ in 0..(n % 17) {
        if rest.len() < 13 {
            return;
        }
        let (s, r) = rest.split_at(13);
        rest = r;
        segs.push(Seg {
            addr: u64::from_le_bytes(s[..8].try_into().unwrap()),
            len: u32::from_le_bytes(s[8..12].try_into().unwrap()),
            write: s[12] & 1 != 0,
        });
    }
    let mem = FlatMem::new(BASE, MEM);
    let n = rest.len().min(MEM);
    assert!(mem.write(BASE, &rest[..n]));
    match request::parse(&mem, &segs, n % 2 == 0) {
        Ok(r) => {
            let data = vec![0x5a; (r.data_in_len as usize).min(1 << 16) + 7];
            let _ = request::complete(&mem, &r.writable, Response::default(), &data);
        }
        Err(rej) => {
            let _ = request::complete(&mem, &rej.writable, Response::code(9), &[]);
        }
    }
    if let Ok(c) = ctrl::parse(&mem, &segs) {
        let _ = ctrl::tmf_reply(&mem, &c.writable, 0);
        let _ = ctrl::an_reply(&mem, &c.writable, 0, 0);
    }
    let ev = Event {
        event: event::TRANSPORT_RESET,
        lun: [1, 0, 0x40, 1, 0, 0, 0, 0],
        reason: event::EVT_RESET_RESCAN,
    };
    let _ = event::deliver(&mem, &segs, &ev, true);
});
