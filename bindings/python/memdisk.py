#!/usr/bin/env python3
"""An in-memory disk served to rtgtd from Python, and a fault injector: reads (and
writes) touching the LBAs given with --fail-lba fail with MEDIUM ERROR, the first bad
LBA reported in the sense data's INFORMATION field.

    rtgtadm --op new --mode logicalunit --tid 1 --lun 1 --bstype handler -b mem1
    python3 bindings/python/memdisk.py --size 64M mem1 --fail-lba 1000
"""

import argparse
import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rtgt_handler  # noqa: E402


def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1].upper()] if s[-1].upper() in mult else int(s)


class MemDisk(rtgt_handler.BlockHandler):
    features = rtgt_handler.F_FLUSH | rtgt_handler.F_UNMAP
    flags = rtgt_handler.UNMAP_ZEROES

    def __init__(self, size, block_size, bad):
        self.buf = bytearray(size)
        self.bs = block_size
        self.bad = sorted(bad)

    def check(self, offset, length):
        for lba in self.bad:
            at = lba * self.bs
            if offset <= at < offset + length:
                raise rtgt_handler.IOFailure(errno.EIO, at - offset)

    def read(self, offset, length):
        self.check(offset, length)
        return bytes(self.buf[offset:offset + length])

    def write(self, offset, data, fua):
        self.check(offset, len(data))
        self.buf[offset:offset + len(data)] = data

    def unmap(self, offset, length):
        self.buf[offset:offset + length] = bytes(length)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="the LU's handler socket name (or a path with a /)")
    ap.add_argument("--size", type=size_arg, default=64 << 20)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--fail-lba", type=int, action="append", default=[])
    a = ap.parse_args()
    path = a.name if "/" in a.name else os.path.join(
        os.environ.get("RTGT_RUN_DIR", "/run/rtgt"), "handlers", a.name + ".sock")
    disk = MemDisk(a.size, a.block, a.fail_lba)
    print(f"memdisk: serving {a.size} bytes on {path}", flush=True)
    rtgt_handler.serve(path, disk, a.size, a.block, name=f"memdisk:{a.name}")


if __name__ == "__main__":
    main()
