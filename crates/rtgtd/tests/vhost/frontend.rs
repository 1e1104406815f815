//! A vhost-user front end in the test, in QEMU's place: guest memory is a memfd this
//! process maps and shares with rtgtd (SET_MEM_TABLE), the split virtqueues (virtio 1.2
//! §2.7) are laid out and driven by hand in it, so a test can put any descriptor chain
//! on a queue, well formed or not, and read exactly what rtgtd wrote back.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

/// Guest-physical address of the memfd's first byte (nothing is mapped below it, so a
/// small address is "outside guest memory").
pub const GPA: u64 = 0x4000_0000;
const MEM: usize = 16 << 20;
/// Descriptors per queue.
pub const QSIZE: u16 = 64;
/// Each queue's rings take this much at the start of memory; buffers come after.
const RING_SPAN: usize = 0x4000;
const BUFS: usize = 0x10_0000;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;

/// One descriptor as the test wants it written.
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

impl Desc {
    pub fn r(addr: u64, len: u32) -> Desc {
        Desc {
            addr,
            len,
            write: false,
        }
    }
    pub fn w(addr: u64, len: u32) -> Desc {
        Desc {
            addr,
            len,
            write: true,
        }
    }
}

struct Vq {
    /// Offset of the descriptor table in the memfd; avail at +0x400, used at +0x800.
    off: usize,
    free: Vec<u16>,
    avail_idx: u16,
    used_seen: u16,
    /// Each chain's descriptors, by head, until it is used.
    chains: HashMap<u16, Vec<u16>>,
    kick: EventFd,
    _call: EventFd,
}

/// The front end: a vhost-user connection, guest memory and `n` queues.
pub struct Fake {
    pub fe: Frontend,
    mem: *mut u8,
    _memfd: std::fs::File,
    vqs: Vec<Vq>,
    next_buf: usize,
}

// The mapping is this struct's alone (rtgtd has its own mapping of the memfd).
unsafe impl Send for Fake {}

impl Drop for Fake {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.mem.cast(), MEM) };
    }
}

impl Fake {
    /// Connects to `path` and sets the device up as QEMU does: owner, features
    /// (`extra` virtio-scsi bits beside VERSION_1 and PROTOCOL_FEATURES), protocol
    /// features MQ and REPLY_ACK, the memory table, then each of `n` queues (0 control,
    /// 1 event, 2.. requests) sized, addressed, given notifiers and enabled.
    pub fn connect(path: &Path, n: usize, extra: u64) -> Fake {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut fe = loop {
            match Frontend::connect(path, n as u64) {
                Ok(f) => break f,
                Err(e) => {
                    assert!(Instant::now() < deadline, "connect {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        let want = VIRTIO_F_VERSION_1 | PROTOCOL_FEATURES | extra;
        assert_eq!(offered & want, want, "offered features {offered:#x}");
        fe.set_features(want).unwrap();
        let proto = fe.get_protocol_features().unwrap();
        let want = VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK;
        assert!(proto.contains(want), "{proto:?}");
        fe.set_protocol_features(want).unwrap();
        assert!(fe.get_queue_num().unwrap() >= n as u64);

        let fd = unsafe { libc::memfd_create(c"rtgt-test-guest".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create");
        let memfd = unsafe { std::fs::File::from_raw_fd(fd) };
        memfd.set_len(MEM as u64).unwrap();
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED, "mmap");
        let mem = mem.cast::<u8>();
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: GPA,
            memory_size: MEM as u64,
            userspace_addr: mem as u64,
            mmap_offset: 0,
            mmap_handle: memfd.as_raw_fd(),
        };
        fe.set_mem_table(&[region]).unwrap();

        let mut vqs = Vec::new();
        for q in 0..n {
            let off = q * RING_SPAN;
            let va = mem as u64 + off as u64;
            fe.set_vring_num(q, QSIZE).unwrap();
            fe.set_vring_addr(
                q,
                &VringConfigData {
                    queue_max_size: QSIZE,
                    queue_size: QSIZE,
                    flags: 0,
                    desc_table_addr: va,
                    avail_ring_addr: va + 0x400,
                    used_ring_addr: va + 0x800,
                    log_addr: None,
                },
            )
            .unwrap();
            fe.set_vring_base(q, 0).unwrap();
            let call = EventFd::new(libc::EFD_NONBLOCK).unwrap();
            let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
            fe.set_vring_call(q, &call).unwrap();
            fe.set_vring_kick(q, &kick).unwrap();
            fe.set_vring_enable(q, true).unwrap();
            vqs.push(Vq {
                off,
                free: (0..QSIZE).rev().collect(),
                avail_idx: 0,
                used_seen: 0,
                chains: HashMap::new(),
                kick,
                _call: call,
            });
        }
        Fake {
            fe,
            mem,
            _memfd: memfd,
            vqs,
            next_buf: BUFS,
        }
    }

    fn ptr(&self, gpa: u64, len: usize) -> *mut u8 {
        let off = (gpa - GPA) as usize;
        assert!(
            off + len <= MEM,
            "{gpa:#x}+{len} outside the test's guest memory"
        );
        unsafe { self.mem.add(off) }
    }

    /// Room for `len` bytes in guest memory, zeroed (never reused).
    pub fn alloc(&mut self, len: usize) -> u64 {
        let at = self.next_buf;
        self.next_buf = (at + len.max(1) + 63) & !63;
        assert!(self.next_buf <= MEM, "the test's guest memory is full");
        let gpa = GPA + at as u64;
        self.write(gpa, &vec![0; len]);
        gpa
    }

    pub fn write(&self, gpa: u64, data: &[u8]) {
        let p = self.ptr(gpa, data.len());
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let p = self.ptr(gpa, len);
        let mut v = vec![0u8; len];
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) };
        v
    }

    fn u16_at(&self, off: usize) -> &AtomicU16 {
        unsafe { &*(self.mem.add(off).cast::<AtomicU16>()) }
    }

    /// Puts a chain of `descs` on queue `q`, makes it available and kicks; returns its
    /// head. `bad_next`: the last descriptor says NEXT to an index past the table.
    pub fn push_with(&mut self, q: usize, descs: &[Desc], bad_next: bool) -> u16 {
        let vq = &mut self.vqs[q];
        assert!(vq.free.len() >= descs.len(), "queue {q} is full");
        let idx: Vec<u16> = (0..descs.len()).map(|_| vq.free.pop().unwrap()).collect();
        let off = vq.off;
        for (i, d) in descs.iter().enumerate() {
            let last = i + 1 == descs.len();
            let mut flags = if d.write { F_WRITE } else { 0 };
            let next = if !last {
                flags |= F_NEXT;
                idx[i + 1]
            } else if bad_next {
                flags |= F_NEXT;
                QSIZE + 7
            } else {
                0
            };
            let mut e = [0u8; 16];
            e[..8].copy_from_slice(&d.addr.to_le_bytes());
            e[8..12].copy_from_slice(&d.len.to_le_bytes());
            e[12..14].copy_from_slice(&flags.to_le_bytes());
            e[14..16].copy_from_slice(&next.to_le_bytes());
            unsafe {
                std::ptr::copy_nonoverlapping(
                    e.as_ptr(),
                    self.mem.add(off + 16 * idx[i] as usize),
                    16,
                )
            };
        }
        let head = idx[0];
        let vq = &mut self.vqs[q];
        let slot = vq.avail_idx % QSIZE;
        vq.avail_idx = vq.avail_idx.wrapping_add(1);
        vq.chains.insert(head, idx);
        let (avail_idx, kick_fd) = (vq.avail_idx, vq.kick.as_raw_fd());
        // avail: flags, idx, ring[QSIZE].
        let ring = off + 0x400 + 4 + 2 * slot as usize;
        unsafe {
            self.mem
                .add(ring)
                .cast::<u16>()
                .write_volatile(head.to_le())
        };
        // §2.7.13.2: the ring entry before the index that publishes it.
        fence(Ordering::SeqCst);
        self.u16_at(off + 0x400 + 2)
            .store(avail_idx.to_le(), Ordering::Release);
        fence(Ordering::SeqCst);
        let one = 1u64.to_ne_bytes();
        let n = unsafe { libc::write(kick_fd, one.as_ptr().cast(), 8) };
        assert_eq!(n, 8, "kick");
        head
    }

    pub fn push(&mut self, q: usize, descs: &[Desc]) -> u16 {
        self.push_with(q, descs, false)
    }

    /// Hands queue `q` a new call notifier (as QEMU does at an MSI-X mask or unmask)
    /// and returns it.
    pub fn new_call(&mut self, q: usize) -> EventFd {
        let call = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        self.fe.set_vring_call(q, &call).unwrap();
        call
    }

    /// The used ring's entries (head, length) added since the last call.
    pub fn used(&mut self, q: usize) -> Vec<(u16, u32)> {
        let off = self.vqs[q].off;
        let idx = u16::from_le(self.u16_at(off + 0x800 + 2).load(Ordering::Acquire));
        let mut out = Vec::new();
        while self.vqs[q].used_seen != idx {
            let slot = (self.vqs[q].used_seen % QSIZE) as usize;
            let e = off + 0x800 + 4 + 8 * slot;
            let b = unsafe { std::slice::from_raw_parts(self.mem.add(e), 8) };
            let id = u32::from_le_bytes(b[..4].try_into().unwrap()) as u16;
            let len = u32::from_le_bytes(b[4..].try_into().unwrap());
            let vq = &mut self.vqs[q];
            vq.used_seen = vq.used_seen.wrapping_add(1);
            if let Some(descs) = vq.chains.remove(&id) {
                vq.free.extend(descs);
            }
            out.push((id, len));
        }
        out
    }
}
