#!/usr/bin/env python3
"""Writes a directory tree as an initramfs archive: cpio "newc" (SVR4 without CRC), the
format the kernel unpacks (Documentation/driver-api/early-userspace/buffer-format.rst).

    python3 newc.py DIR > archive.cpio

Every entry is owned by root. Hard links are stored as separate files (simpler than the
format's link groups, and the guest's few hard links cost a few hundred KiB). The kernel
unpacks concatenated archives one after another, which is how boot.py adds a run's files
to the cached image.
"""

import os
import stat
import sys


def _entry(out, ino, name, mode, data=b"", mtime=0, nlink=1):
    name_b = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0, len(name_b), 0]
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
    out.write(name_b)
    out.write(b"\0" * (-(110 + len(name_b)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def write_tree(root, out):
    """Archives every file, directory and symlink under root, paths relative to it."""
    ino = 1
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            paths.append(os.path.join(dirpath, n))
    for path in paths:
        name = os.path.relpath(path, root)
        st = os.lstat(path)
        perm = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            _entry(out, ino, name, stat.S_IFLNK | 0o777, os.readlink(path).encode(), int(st.st_mtime))
        elif stat.S_ISDIR(st.st_mode):
            _entry(out, ino, name, stat.S_IFDIR | perm, mtime=int(st.st_mtime), nlink=2)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                _entry(out, ino, name, stat.S_IFREG | perm, f.read(), int(st.st_mtime))
        else:
            continue  # devices, fifos, sockets: /dev is devtmpfs in the guest
        ino += 1
    _entry(out, 0, "TRAILER!!!", 0)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: newc.py DIR > archive.cpio")
    write_tree(sys.argv[1], sys.stdout.buffer)
