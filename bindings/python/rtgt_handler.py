"""rtgt device handlers in pure Python (3.10+: os.eventfd, socket.recv_fds).

Written from docs/handler-protocol.md: connect to rtgtd's socket for a LU, say HELLO,
map the queues rtgtd passes, then serve commands:

    class MyDisk(rtgt_handler.BlockHandler):
        def read(self, offset, length): return bytes(length)
        def write(self, offset, data, fua): ...
    rtgt_handler.serve("/run/rtgt/handlers/disk1.sock", MyDisk(), capacity=64 << 20)

One thread serves all queues (a selector over their eventfds).
"""

import mmap
import os
import select
import socket
import struct

MAJOR, MINOR = 1, 0
KIND_BLOCK = 1

F_FLUSH, F_UNMAP, F_WRITE_ZEROES, F_FUA = 1, 2, 4, 8
READ_ONLY, WRITE_THROUGH, UNMAP_ZEROES = 1, 2, 4

OP_READ, OP_WRITE, OP_FLUSH, OP_UNMAP, OP_WRITE_ZEROES = 1, 2, 3, 4, 5
CMD_FUA = 1

HEADER = 512
CMD_TAIL, CMD_HEAD, CMD_SLEEPING = 64, 128, 132
CPL_TAIL, CPL_HEAD, CPL_SLEEPING = 192, 256, 260
CMD_ENTRY, CPL_ENTRY, PAGE = 64, 16, 4096

REJECTS = {
    1: "bad magic or unsupported major version",
    2: "handler kind not supported",
    3: "block size differs from the logical unit's",
    4: "bad capacity, queue count or depth",
    5: "another handler is attached",
    6: "reserved fields not zero",
    7: "the logical unit is write-through and the handler is not",
}


class IOFailure(Exception):
    """Raise from a handler method to fail a command: `errno` (EIO: MEDIUM ERROR, EROFS:
    DATA PROTECT, ENOSPC: out of space) and `done`, the bytes transferred before the
    bad one (rtgtd reports the LBA at offset + done in the sense INFORMATION field)."""

    def __init__(self, errno, done=0):
        super().__init__(os.strerror(errno))
        self.errno = errno
        self.done = done


class BlockHandler:
    """Override read and write (and flush, unmap, write_zeroes if offered)."""

    features = F_FLUSH | F_FUA
    flags = 0

    def read(self, offset, length):
        raise IOFailure(5)

    def write(self, offset, data, fua):
        raise IOFailure(5)

    def flush(self):
        pass

    def unmap(self, offset, length):
        raise IOFailure(95)

    def write_zeroes(self, offset, length):
        self.write(offset, bytes(length), False)


def hello(capacity, block_size, queues, features, flags, name, depth=0):
    h = struct.pack("<8sHHIQQIIIII", b"RTGTHELO", MAJOR, MINOR, KIND_BLOCK, features,
                    capacity, block_size, queues, depth, flags, 0)
    h += bytes(64 - len(h))
    n = name.encode()[:64]
    return h + n + bytes(64 - len(n))


class Queue:
    def __init__(self, memfd, cmd_efd, cpl_efd, depth, slot_size, region_size):
        self.m = mmap.mmap(memfd, region_size)
        os.close(memfd)
        self.cmd_efd, self.cpl_efd = cmd_efd, cpl_efd
        os.set_blocking(cmd_efd, False)
        self.depth, self.slot = depth, slot_size
        self.cpl_ring = HEADER + depth * CMD_ENTRY
        self.arena = -(-(self.cpl_ring + depth * CPL_ENTRY) // PAGE) * PAGE
        self.head = 0
        self.cpl_tail = 0

    def u32(self, off):
        # mmap reads of 4 aligned bytes are single loads on the platforms rtgt runs on;
        # Python offers no fences, so a handler in Python relies on x86-64 ordering or
        # on the GIL's syscalls; use the Rust or C binding where that matters.
        return struct.unpack_from("<I", self.m, off)[0]

    def set_u32(self, off, v):
        struct.pack_into("<I", self.m, off, v & 0xFFFFFFFF)

    def take(self):
        if self.u32(CMD_TAIL) == self.head:
            return None
        off = HEADER + (self.head % self.depth) * CMD_ENTRY
        op, flags, tag, offset, length, data = struct.unpack_from("<BBxxIQQQ", self.m, off)
        self.head = (self.head + 1) & 0xFFFFFFFF
        self.set_u32(CMD_HEAD, self.head)
        return op, flags, tag, offset, length, data

    def complete(self, tag, status, nbytes):
        off = self.cpl_ring + (self.cpl_tail % self.depth) * CPL_ENTRY
        struct.pack_into("<IiQ", self.m, off, tag, status, nbytes)
        self.cpl_tail = (self.cpl_tail + 1) & 0xFFFFFFFF
        self.set_u32(CPL_TAIL, self.cpl_tail)

    def kick(self):
        if self.u32(CPL_SLEEPING):
            os.eventfd_write(self.cpl_efd, 1)

    def run_one(self, h, op, flags, tag, offset, length, data):
        try:
            if op == OP_READ:
                b = h.read(offset, length)
                if len(b) != length:
                    raise IOFailure(5)
                a = self.arena + data
                self.m[a:a + length] = b
                return 0, length
            if op == OP_WRITE:
                a = self.arena + data
                h.write(offset, bytes(self.m[a:a + length]), bool(flags & CMD_FUA))
                return 0, length
            if op == OP_FLUSH:
                h.flush()
            elif op == OP_UNMAP:
                h.unmap(offset, length)
            elif op == OP_WRITE_ZEROES:
                h.write_zeroes(offset, length)
            else:
                return -95, 0
            return 0, 0
        except IOFailure as e:
            return -e.errno, e.done

    def drain(self, h):
        n = 0
        while (c := self.take()) is not None:
            status, nbytes = self.run_one(h, *c)
            self.complete(c[2], status, nbytes)
            n += 1
        if n:
            self.kick()
        return n


def connect(path, handler, capacity, block_size=512, queues=1, name="python"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(hello(capacity, block_size, queues, handler.features, handler.flags, name))
    msg, fds, _, _ = socket.recv_fds(s, 64, 3 * 64)
    magic, _major, _minor, status, _features, nq, depth, slot, _gen, region = struct.unpack_from(
        "<8sHHIQIIIIQ", msg)
    if magic != b"RTGTACPT" or status != 0:
        raise ConnectionRefusedError(f"rtgtd refused the handler: {REJECTS.get(status, status)}")
    qs = [Queue(fds[3 * i], fds[3 * i + 1], fds[3 * i + 2], depth, slot, region) for i in range(nq)]
    return s, qs


def serve(path, handler, capacity, block_size=512, queues=1, name="python"):
    """Serves until rtgtd closes the socket."""
    s, qs = connect(path, handler, capacity, block_size, queues, name)
    by_fd = {q.cmd_efd: q for q in qs}
    while True:
        busy = sum(q.drain(handler) for q in qs)
        if busy:
            continue
        for q in qs:
            q.set_u32(CMD_SLEEPING, 1)
        if any(q.u32(CMD_TAIL) != q.head for q in qs):
            for q in qs:
                q.set_u32(CMD_SLEEPING, 0)
            continue
        r, _, _ = select.select([s.fileno()] + list(by_fd), [], [], 1.0)
        for q in qs:
            q.set_u32(CMD_SLEEPING, 0)
        for fd in r:
            if fd == s.fileno():
                if not s.recv(64):
                    return
            else:
                try:
                    os.eventfd_read(fd)
                except BlockingIOError:
                    pass
