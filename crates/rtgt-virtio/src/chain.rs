//! A descriptor chain as segments, and guest memory behind a trait.

/// One descriptor of a chain: guest-physical address, length, direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (VIRTQ_DESC_F_WRITE).
    pub write: bool,
}

/// Guest memory as the device sees it. Both calls check the whole range first and move
/// nothing when any byte of it is outside the guest's memory regions.
pub trait GuestMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
    fn write(&self, addr: u64, data: &[u8]) -> bool;
    /// Whether every byte of `addr..addr + len` is guest memory.
    fn contains(&self, addr: u64, len: u64) -> bool;
}

/// Whether every segment lies in guest memory.
pub fn inside(mem: &dyn GuestMem, segs: &[Seg]) -> bool {
    segs.iter().all(|s| mem.contains(s.addr, u64::from(s.len)))
}

/// Why a chain can't be served as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// The device-readable part is shorter than the request header.
    ShortRequest,
    /// The device-writable part is shorter than the response header: no answer can be
    /// written, the device needs a reset (virtio 1.2 §2.1.2).
    ShortResponse,
    /// A device-readable segment after a device-writable one (§2.7.4.2: "the
    /// device-writable descriptors … after all device-readable ones").
    WrongOrder,
    /// A segment outside guest memory.
    OutsideMemory,
    /// Both data-out and data-in without VIRTIO_SCSI_F_INOUT (§5.6.6.1.1).
    Bidirectional,
    /// Longer than the device takes in one request.
    TooLong,
}

/// Most data one request may carry in either direction (QEMU's max_sectors of 0xFFFF
/// 512-byte sectors, rounded up).
pub const MAX_DATA: u64 = 32 << 20;

/// The readable and writable parts of a chain, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub readable: Vec<Seg>,
    pub writable: Vec<Seg>,
}

impl Split {
    /// Splits a chain, refusing a readable segment after a writable one.
    pub fn of(segs: &[Seg]) -> Result<Self, ChainError> {
        let mut s = Split::default();
        for seg in segs {
            if seg.write {
                s.writable.push(*seg);
            } else if !s.writable.is_empty() {
                return Err(ChainError::WrongOrder);
            } else {
                s.readable.push(*seg);
            }
        }
        Ok(s)
    }
}

/// Total length of segments.
pub fn total(segs: &[Seg]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Reads `n` bytes from the start of `segs`, then everything after them into a second
/// buffer (the header and the data-out of a request).
pub fn read_split(
    mem: &dyn GuestMem,
    segs: &[Seg],
    n: usize,
) -> Result<(Vec<u8>, Vec<u8>), ChainError> {
    let len = total(segs);
    if len < n as u64 {
        return Err(ChainError::ShortRequest);
    }
    if len - n as u64 > MAX_DATA {
        return Err(ChainError::TooLong);
    }
    let mut head = vec![0u8; n];
    let mut rest = vec![0u8; (len - n as u64) as usize];
    let mut at = 0usize;
    for s in segs {
        let l = s.len as usize;
        // The part of this segment in `head`, then the part in `rest`.
        let in_head = n.saturating_sub(at).min(l);
        if in_head > 0 && !mem.read(s.addr, &mut head[at..at + in_head]) {
            return Err(ChainError::OutsideMemory);
        }
        if l > in_head {
            let r0 = at + in_head - n;
            let addr = s
                .addr
                .checked_add(in_head as u64)
                .ok_or(ChainError::OutsideMemory)?;
            if !mem.read(addr, &mut rest[r0..r0 + l - in_head]) {
                return Err(ChainError::OutsideMemory);
            }
        }
        at += l;
    }
    Ok((head, rest))
}

/// Writes `parts` one after another into `segs`; returns the bytes written. Stops
/// quietly where the segments end (the caller reported the residual already).
pub fn write_all(mem: &dyn GuestMem, segs: &[Seg], parts: &[&[u8]]) -> Result<u32, ChainError> {
    let mut written = 0u32;
    let mut segs = segs.iter().copied();
    let mut cur: Option<Seg> = segs.next();
    for part in parts {
        let mut p = *part;
        while !p.is_empty() {
            let Some(s) = cur.as_mut() else {
                return Ok(written);
            };
            if s.len == 0 {
                cur = segs.next();
                continue;
            }
            let n = (s.len as usize).min(p.len());
            if !mem.write(s.addr, &p[..n]) {
                return Err(ChainError::OutsideMemory);
            }
            s.addr = s.addr.wrapping_add(n as u64);
            s.len -= n as u32;
            p = &p[n..];
            written += n as u32;
        }
    }
    Ok(written)
}

/// Flat memory starting at guest address `base`, for tests and the fuzzer.
pub struct FlatMem {
    pub base: u64,
    pub bytes: std::cell::RefCell<Vec<u8>>,
}

impl FlatMem {
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: std::cell::RefCell::new(vec![0; len]),
        }
    }
    fn range(&self, addr: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = off.checked_add(len)?;
        (end <= self.bytes.borrow().len()).then_some(off..end)
    }
}

impl GuestMem for FlatMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        match self.range(addr, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.bytes.borrow()[r]);
                true
            }
            None => false,
        }
    }
    fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.range(addr, data.len()) {
            Some(r) => {
                self.bytes.borrow_mut()[r].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
    fn contains(&self, addr: u64, len: u64) -> bool {
        usize::try_from(len).is_ok_and(|l| self.range(addr, l).is_some())
    }
}
