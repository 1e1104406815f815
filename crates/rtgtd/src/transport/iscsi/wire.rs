//! The iSCSI connection's bytes: whole PDUs framed out of what the socket delivered
//! (RFC 7143 §11: BHS, AHS, header digest, data segment, padding, data digest), and the
//! PDUs of one loop turn written out in vectored writes, Data-In straight from the read
//! buffers.

use rtgt_iscsi::pdu::{segment_trailer, FrameError, Framer, Pdu, BHS_LEN};
use rtgt_iscsi::session::DataIn;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub(super) enum ReadEvent {
    Pdu(Pdu),
    DataDigestError(Pdu),
}

pub(super) async fn read_pdu(
    rd: &mut OwnedReadHalf,
    framer: &Framer,
) -> std::io::Result<Result<ReadEvent, String>> {
    let mut bhs = [0u8; BHS_LEN];
    rd.read_exact(&mut bhs).await?;
    let rest_len = match framer.rest_len(&bhs) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut rest = vec![0u8; rest_len];
    rd.read_exact(&mut rest).await?;
    Ok(match framer.parse(bhs, &rest) {
        Ok(p) => Ok(ReadEvent::Pdu(p)),
        Err((FrameError::DataDigest, pdu)) => Ok(ReadEvent::DataDigestError(*pdu)),
        Err((e, _)) => Err(e.to_string()),
    })
}

/// Received bytes not yet framed into PDUs. It starts small (idle sessions are cheap)
/// and grows while reads fill it, up to what the largest PDU needs.
pub(super) struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const INPUT_MIN: usize = 4 * 1024;
const INPUT_GROW_LIMIT: usize = 256 * 1024;

impl InputBuffer {
    pub(super) fn new() -> Self {
        Self {
            buf: vec![0; INPUT_MIN],
            start: 0,
            end: 0,
        }
    }

    /// Bytes received and not yet framed.
    pub(super) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads what the socket has without waiting. Ok(false) at end of stream.
    pub(super) fn fill(&mut self, rd: &OwnedReadHalf) -> std::io::Result<bool> {
        loop {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.end == self.buf.len() && self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // Full of unframed bytes: make room (next_pdu sizes it for a big PDU).
                if self.buf.len() >= INPUT_GROW_LIMIT {
                    return Ok(true);
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match rd.try_read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    if self.end < self.buf.len() {
                        // A short read emptied the socket: clear its readiness now, so
                        // the loop waits in epoll instead of making one more read only
                        // to get EAGAIN. Nothing is lost: the reactor has not polled
                        // epoll since the read (same thread), and data that arrived
                        // since is a new edge-triggered event that sets it again.
                        let _ = rd.as_ref().try_io(Interest::READABLE, || {
                            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                        });
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next whole PDU, or None until more bytes arrive.
    pub(super) fn next_pdu(&mut self, framer: &Framer) -> Option<Result<ReadEvent, String>> {
        let have = self.end - self.start;
        if have < BHS_LEN {
            return None;
        }
        let bhs: [u8; BHS_LEN] = self.buf[self.start..self.start + BHS_LEN]
            .try_into()
            .expect("BHS_LEN bytes");
        let rest = match framer.rest_len(&bhs) {
            Ok(n) => n,
            Err(e) => return Some(Err(e.to_string())),
        };
        let total = BHS_LEN + rest;
        if have < total {
            if self.buf.len() - self.start < total {
                // Make the whole PDU fit from the start of the buffer.
                self.buf.copy_within(self.start..self.end, 0);
                self.end = have;
                self.start = 0;
                if self.buf.len() < total {
                    self.buf.resize(total, 0);
                }
            }
            return None;
        }
        let body = &self.buf[self.start + BHS_LEN..self.start + total];
        // Data segments (a WRITE's immediate data) go into recycled buffers; the SCSI
        // layer hands them back once written.
        let pooled = |seg: &[u8]| {
            let mut v = rtgt_backstore::bufpool::take(seg.len());
            v.copy_from_slice(seg);
            v
        };
        let ev = match framer.parse_with(bhs, body, pooled) {
            Ok(p) => Ok(ReadEvent::Pdu(p)),
            Err((FrameError::DataDigest, pdu)) => Ok(ReadEvent::DataDigestError(*pdu)),
            Err((e, _)) => Err(e.to_string()),
        };
        self.start += total;
        Some(ev)
    }
}

/// PDUs to send in this loop turn: headers and small PDUs are encoded into one buffer,
/// Data-In data stays in its read buffers, and everything goes out in vectored writes.
#[derive(Default)]
pub(super) struct Output {
    wbuf: Vec<u8>,
    segs: Vec<Seg>,
    bufs: Vec<Vec<u8>>,
}

/// A piece of the output: a range of `wbuf`, or a range of one of `bufs`.
enum Seg {
    Encoded(usize, usize),
    Data(usize, usize, usize),
}

/// Largest number of buffers handed to one writev (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 256;

impl Output {
    fn encoded(&mut self, from: usize) {
        let to = self.wbuf.len();
        if to == from {
            return;
        }
        if let Some(Seg::Encoded(_, end)) = self.segs.last_mut() {
            if *end == from {
                *end = to;
                return;
            }
        }
        self.segs.push(Seg::Encoded(from, to));
    }

    pub(super) fn pdu(&mut self, p: &Pdu, hd: bool, dd: bool) {
        let from = self.wbuf.len();
        p.encode_into(&mut self.wbuf, hd, dd);
        self.encoded(from);
    }

    pub(super) fn data_in(&mut self, d: DataIn, hd: bool, dd: bool) {
        let idx = self.bufs.len();
        for p in &d.pdus {
            let seg = d.segment(p);
            let from = self.wbuf.len();
            p.encode_header_into(&mut self.wbuf, seg.len(), hd);
            self.encoded(from);
            if !seg.is_empty() {
                let off = p.buffer_offset() as usize;
                self.segs.push(Seg::Data(idx, off, off + seg.len()));
                let from = self.wbuf.len();
                segment_trailer(&mut self.wbuf, seg, dd);
                self.encoded(from);
            }
        }
        self.bufs.push(d.data);
    }

    /// Writes everything out, then forgets it (keeping the allocations).
    pub(super) async fn flush(&mut self, wr: &mut OwnedWriteHalf) -> std::io::Result<()> {
        let mut seg = 0;
        let mut skip = 0; // bytes of segs[seg] already written
        while seg < self.segs.len() {
            let mut iov = [std::io::IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (k, s) in self.segs[seg..].iter().take(MAX_IOV).enumerate() {
                let b = match *s {
                    Seg::Encoded(a, z) => &self.wbuf[a..z],
                    Seg::Data(i, a, z) => &self.bufs[i][a..z],
                };
                iov[k] = std::io::IoSlice::new(if k == 0 { &b[skip..] } else { b });
                n = k + 1;
            }
            let mut wrote = wr.write_vectored(&iov[..n]).await?;
            if wrote == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while wrote > 0 {
                let len = match self.segs[seg] {
                    Seg::Encoded(a, z) | Seg::Data(_, a, z) => z - a,
                } - skip;
                if wrote >= len {
                    wrote -= len;
                    seg += 1;
                    skip = 0;
                } else {
                    skip += wrote;
                    wrote = 0;
                }
            }
        }
        self.wbuf.clear();
        self.segs.clear();
        // Read buffers go back to the pool for the next large READ.
        for b in self.bufs.drain(..) {
            rtgt_backstore::bufpool::give(b);
        }
        Ok(())
    }
}
