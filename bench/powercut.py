#!/usr/bin/env python3
"""Power-cut test: does what a target acknowledged as durable survive the loss of power?

Killing the daemon proves little (the page cache outlives a process), so here the daemon
runs inside a QEMU guest (the guest suite's kernel and initramfs, tests/guest/build.sh)
whose disk is a host file opened without host caching (cache=none: O_DIRECT, so nothing
the guest has not written out sits in the host's page cache, and what QEMU completed is in
the file). The power cut is SIGKILL to QEMU: the guest's page cache, its file system's
uncommitted journal and every request in flight are lost, the disk keeps what reached it.

One run, per store mode:
  1. a fresh disk image (ext4 made on the host); the guest (bench/powercut-guest.sh) mounts
     it, starts the daemon on a sparse 256 MiB file there (or on the raw disk, --store raw)
     and exports it over iSCSI; QEMU forwards a host port to the guest's 3260;
  2. this script logs in from the host and writes tagged 4 KiB blocks at random in an
     8 MiB window, one command at a time: FUA writes, plain writes and SYNCHRONIZE CACHE
     at random. Every 512-byte sector carries its block number, the write's sequence
     number and a CRC, so a read shows exactly which write (if any) it holds;
  3. at a random moment, SIGKILL to QEMU; then the guest boots again on the same disk, the
     daemon starts on the same store, and the script reads back the window and one
     earlier one and checks every block:
       - it holds one write's data whole: all 8 sectors of one version (no torn block);
       - that version is no older than the last write the target acknowledged as durable:
         acknowledged with FUA, or acknowledged before a SYNCHRONIZE CACHE that completed,
         or acknowledged at all when the LU reports WCE=0 (SBC-4 4.15, 5.26);
       - blocks outside this round's writes hold exactly what they held before;
  4. the next round writes (in the same boot), and so on: N cuts need N+1 boots.

A cut "survives" when every block checks out. nv-cache (`nv_cache=1`: the store is trusted
to be non-volatile, so FUA and SYNCHRONIZE CACHE flush nothing) is the negative control:
on a volatile guest it may lose acknowledged-durable writes, and the report shows it.
`--daemon tgtd` runs Debian's tgtd (the host's /usr/sbin/tgtd and tgtadm, copied into the
guest) with its aio store, to show the test can fail.

    python3 bench/powercut.py [--modes rdwr,io_uring,direct,sync,wc-off,nv-cache]
        [--cuts 20] [--store file|raw] [--daemon rtgtd|tgtd] [--port N] [--seed N]

Modes (rtgtd): rdwr, io_uring, direct (--bsoflags direct), sync (--bsoflags sync),
wc-off (--params write_cache=off), nv-cache (--params nv_cache=1); tgtd: aio, rdwr.
Exit status 0 when every cut of every mode but nv-cache survived.
"""

import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "guest"))
import boot  # noqa: E402

IQN = "iqn.2026-12.org.rtgt:powercut"
INITIATOR = "iqn.2026-12.org.rtgt:powercut-host"
SECTOR = 512
BLOCK = 4096
SPB = BLOCK // SECTOR
STORE_BLOCKS = (256 << 20) // BLOCK
WINDOW = (8 << 20) // BLOCK
MAGIC = b"PWRCUT01"
# Modes whose LU reports WCE=0: every acknowledged write must survive.
WRITE_THROUGH = {"sync", "wc-off"}
NEGATIVE = {"nv-cache"}


# --- the tagged blocks ------------------------------------------------------------------

def sector_bytes(block, seq, i):
    head = MAGIC + struct.pack("<QQI", block, seq, i)
    fill = hashlib.sha256(head).digest() * 16
    body = head + fill[:SECTOR - 4 - len(head)]
    return body + struct.pack("<I", zlib.crc32(body))


def block_bytes(block, seq):
    return b"".join(sector_bytes(block, seq, i) for i in range(SPB))


def decode_block(block, data):
    """The write a 4 KiB block holds: its seq (0: never written, all zeros), or a string
    saying why it holds none (a torn or foreign block)."""
    if data == bytes(BLOCK):
        return 0
    seqs = set()
    for i in range(SPB):
        s = data[i * SECTOR:(i + 1) * SECTOR]
        if s == bytes(SECTOR):
            seqs.add(0)
            continue
        if s[:8] != MAGIC or zlib.crc32(s[:-4]) != struct.unpack("<I", s[-4:])[0]:
            return f"sector {i} is no write's data"
        b, seq, idx = struct.unpack("<QQI", s[8:28])
        if b != block or idx != i:
            return f"sector {i} holds block {b} sector {idx}'s data"
        seqs.add(seq)
    if len(seqs) != 1:
        return f"torn: sectors of writes {sorted(seqs)}"
    return seqs.pop()


# --- a minimal iSCSI initiator (RFC 7143), one command at a time ------------------------

class Lost(Exception):
    """The connection went away (the power cut, usually)."""


class Iscsi:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.itt = 0
        self.cmdsn = 1
        self.exp_statsn = 0
        self.isid = os.urandom(6)
        self.isid = bytes([0x80]) + self.isid[1:]
        self.mrdsl = 8192
        self.sense = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            try:
                d = self.s.recv(n - len(buf))
            except (ConnectionError, socket.timeout, OSError) as e:
                raise Lost(repr(e))
            if not d:
                raise Lost("connection closed")
            buf += d
        return buf

    def _pdu(self):
        hdr = self._recv(48)
        ahs = hdr[4] * 4
        dlen = int.from_bytes(hdr[5:8], "big")
        if ahs:
            self._recv(ahs)
        data = self._recv(dlen + (-dlen % 4))[:dlen] if dlen else b""
        return hdr, data

    def _send(self, bhs, data=b""):
        try:
            self.s.sendall(bytes(bhs) + data + b"\0" * (-len(data) % 4))
        except OSError as e:
            raise Lost(repr(e))

    def login(self):
        keys = {"InitiatorName": INITIATOR, "TargetName": IQN, "SessionType": "Normal",
                "AuthMethod": "None"}
        op_keys = {"HeaderDigest": "None", "DataDigest": "None", "ImmediateData": "Yes",
                   "InitialR2T": "No", "FirstBurstLength": "65536", "MaxBurstLength": "262144",
                   "MaxRecvDataSegmentLength": "262144", "MaxOutstandingR2T": "1"}
        csg, tsih = 0, b"\0\0"
        text = keys
        for _ in range(6):
            body = "".join(f"{k}={v}\0" for k, v in text.items()).encode()
            bhs = bytearray(48)
            bhs[0] = 0x43
            bhs[1] = 0x80 | csg << 2 | (1 if csg == 0 else 3)
            bhs[5:8] = len(body).to_bytes(3, "big")
            bhs[8:14] = self.isid
            bhs[14:16] = tsih
            bhs[24:28] = self.cmdsn.to_bytes(4, "big")
            bhs[28:32] = self.exp_statsn.to_bytes(4, "big")
            self._send(bhs, body)
            hdr, data = self._pdu()
            if hdr[0] & 0x3f != 0x23 or hdr[36] != 0:
                raise RuntimeError(f"login refused: class {hdr[36]} detail {hdr[37]}")
            self.exp_statsn = int.from_bytes(hdr[24:28], "big") + 1
            for kv in data.split(b"\0"):
                k, _, v = kv.decode().partition("=")
                if k == "MaxRecvDataSegmentLength":
                    self.mrdsl = int(v)
            tsih = hdr[14:16]
            if hdr[1] & 0x80:
                nsg = hdr[1] & 0x03
                if nsg == 3:
                    self.cmdsn = int.from_bytes(hdr[28:32], "big")
                    return
                csg, text = nsg, op_keys
            else:
                text = op_keys if csg == 1 else {}
        raise RuntimeError("login did not reach the full feature phase")

    def command(self, cdb, read_len=0, data=b""):
        """Sends one SCSI command and waits for its status; returns (status, data in)."""
        self.itt = (self.itt + 1) & 0x7fffffff
        itt = self.itt
        imm = data[:min(len(data), 65536, self.mrdsl)]
        bhs = bytearray(48)
        bhs[0] = 0x01
        bhs[1] = 0x80 | (0x40 if read_len else 0) | (0x20 if data else 0) | 0x01
        bhs[5:8] = len(imm).to_bytes(3, "big")
        bhs[8:16] = struct.pack(">HHI", 1, 0, 0)
        bhs[16:20] = itt.to_bytes(4, "big")
        bhs[20:24] = (read_len or len(data)).to_bytes(4, "big")
        bhs[24:28] = self.cmdsn.to_bytes(4, "big")
        bhs[28:32] = self.exp_statsn.to_bytes(4, "big")
        bhs[32:32 + len(cdb)] = cdb
        self.cmdsn = (self.cmdsn + 1) & 0xffffffff
        self._send(bhs, imm)
        got = bytearray(read_len)
        datasn = 0
        while True:
            hdr, d = self._pdu()
            op = hdr[0] & 0x3f
            if op == 0x25:  # Data-In
                off = int.from_bytes(hdr[40:44], "big")
                got[off:off + len(d)] = d
                if hdr[1] & 0x01:
                    self.exp_statsn = int.from_bytes(hdr[24:28], "big") + 1
                    return hdr[3], bytes(got)
            elif op == 0x21:  # SCSI Response
                self.exp_statsn = int.from_bytes(hdr[24:28], "big") + 1
                self.sense = d[2:2 + int.from_bytes(d[:2], "big")] if len(d) >= 2 else b""
                return hdr[3], bytes(got)
            elif op == 0x31:  # R2T: send what it asks for, in MRDSL pieces
                ttt = hdr[20:24]
                off = int.from_bytes(hdr[40:44], "big")
                want = int.from_bytes(hdr[44:48], "big")
                end = off + want
                while off < end:
                    piece = data[off:min(end, off + self.mrdsl)]
                    o = bytearray(48)
                    o[0] = 0x05
                    o[1] = 0x80 if off + len(piece) >= end else 0
                    o[5:8] = len(piece).to_bytes(3, "big")
                    o[8:16] = bhs[8:16]
                    o[16:20] = itt.to_bytes(4, "big")
                    o[20:24] = ttt
                    o[28:32] = self.exp_statsn.to_bytes(4, "big")
                    o[36:40] = datasn.to_bytes(4, "big")
                    o[40:44] = off.to_bytes(4, "big")
                    self._send(o, piece)
                    datasn += 1
                    off += len(piece)
            elif op == 0x20:  # NOP-In: answer a target's ping
                if hdr[20:24] != b"\xff\xff\xff\xff":
                    o = bytearray(48)
                    o[0] = 0x40
                    o[1] = 0x80
                    o[16:20] = b"\xff\xff\xff\xff"
                    o[20:24] = hdr[20:24]
                    o[24:28] = self.cmdsn.to_bytes(4, "big")
                    o[28:32] = self.exp_statsn.to_bytes(4, "big")
                    self._send(o)
            elif op == 0x32:
                raise Lost(f"async message event {hdr[36]}")

    def clear_unit_attentions(self):
        """TEST UNIT READY until GOOD: a fresh daemon reports POWER ON, RESET (SPC-4 6.5)."""
        for _ in range(8):
            if self.command(bytes(6))[0] == 0:
                return
        raise RuntimeError(f"TEST UNIT READY: still CHECK CONDITION, sense {self.sense.hex()}")

    def write(self, lba_block, payload, fua):
        cdb = struct.pack(">BBIBHB", 0x2A, 0x08 if fua else 0, lba_block * SPB, 0, len(payload) // SECTOR, 0)
        return self.command(cdb, data=payload)[0]

    def sync(self):
        return self.command(bytes([0x35]) + bytes(9))[0]

    def read(self, block, nblocks):
        cdb = struct.pack(">BBIBHB", 0x28, 0, block * SPB, 0, nblocks * SPB, 0)
        st, d = self.command(cdb, read_len=nblocks * BLOCK)
        if st != 0:
            raise RuntimeError(f"READ(10) at block {block}: status {st:#x}")
        return d


# --- the guest --------------------------------------------------------------------------

class Guest:
    """One mode's guest: its disk image, its initramfs, QEMU started and killed."""

    def __init__(self, work, daemon, mode, store, port, files, mem):
        self.work, self.port, self.mem = work, port, mem
        self.disk = os.path.join(work, "disk.img")
        with open(self.disk, "wb") as f:
            f.truncate(512 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-L", "powercut", self.disk], check=True)
        self.initrd = os.path.join(work, "initrd")
        with open(self.initrd, "wb") as out:
            with open(os.path.join(boot.DEFAULT_CACHE, "initrd.cpio"), "rb") as base:
                shutil.copyfileobj(base, out)
            with open(boot.run_archive(work, os.path.join(HERE, "powercut-guest.sh"), [daemon, mode, store], files),
                      "rb") as extra:
                shutil.copyfileobj(extra, out)
        self.qemu = None
        self.boots = 0

    def start(self, timeout=240):
        w = self.work
        for f in ("out.log", "console.log"):
            open(os.path.join(w, f), "wb").close()
        append = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4", "no_timer_check", "tsc=reliable", "rtgt.ndev=1"]
        cmd = [
            "qemu-system-x86_64", "-M", "pc", "-m", str(self.mem), "-smp", "1", "-nodefaults",
            "-display", "none", "-no-reboot", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-bios", "/usr/share/qemu/qboot.rom",
            "-kernel", os.path.join(boot.DEFAULT_CACHE, "vmlinuz"), "-initrd", self.initrd,
            "-serial", f"file:{w}/console.log",
            "-device", "virtio-serial-pci,id=vser",
            "-chardev", f"file,id=out,path={w}/out.log",
            "-device", "virtserialport,chardev=out,name=rtgt.out",
            "-chardev", f"socket,id=ctl,path={w}/ctl.sock,server=on,wait=off",
            "-device", "virtserialport,chardev=ctl,name=rtgt.ctl",
            "-device", "virtio-scsi-pci,id=hba",
            # The disk: O_DIRECT on the host (cache=none), so what QEMU completed is in the
            # file and nothing else is; the guest sees a volatile write cache (WCE=1) and
            # its flushes become fdatasync of the file.
            "-drive", f"file={self.disk},format=raw,if=none,id=d0,cache=none,aio=threads",
            "-device", "scsi-hd,drive=d0,bus=hba.0,channel=0,scsi-id=0,lun=0",
            "-netdev", f"user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:{self.port}-10.0.2.15:3260",
            "-device", "virtio-net-pci,netdev=n0",
            "-append", " ".join(append),
        ]
        self.qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(os.path.join(w, "qemu.log"), "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.boots += 1
        t0 = time.time()
        while time.time() - t0 < timeout:
            out = open(os.path.join(w, "out.log"), "rb").read().decode(errors="replace")
            if "POWERCUT READY" in out:
                if self.boots == 1:
                    for ln in out.splitlines():
                        if ln.startswith("POWERCUT SHOW "):
                            print("  daemon: " + ln[len("POWERCUT SHOW "):], flush=True)
                return time.time() - t0
            if "POWERCUT FAIL" in out or self.qemu.poll() is not None:
                break
            time.sleep(0.2)
        self.cut()
        raise RuntimeError("the guest did not come up:\n" + self.logs())

    def logs(self):
        w = self.work
        text = ""
        for f in ("out.log", "console.log", "qemu.log"):
            p = os.path.join(w, f)
            if os.path.exists(p):
                t = open(p, "rb").read().decode(errors="replace").replace("\r", "")
                text += f"--- {f} ---\n" + "\n".join(t.splitlines()[-40:]) + "\n"
        return text

    def cut(self):
        """The power cut: SIGKILL to QEMU (its process group)."""
        if self.qemu is not None and self.qemu.poll() is None:
            try:
                os.killpg(self.qemu.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.qemu is not None:
            self.qemu.wait()


# --- one mode ---------------------------------------------------------------------------

class Ledger:
    """What the host knows about every block: the version each held at the last check
    (`known`), and this round's writes to it in order, with the index of the last one the
    target acknowledged as durable."""

    def __init__(self):
        self.known = {}          # block -> seq it held when last read (absent: 0)
        self.round = {}          # block -> [seq, ...] sent this round, in order
        self.floor = {}          # block -> index into round[block] that must survive
        self.unsynced = {}       # block -> index of its last acked, not yet durable write
        self.seq = 0
        self.stats = {"writes": 0, "fua": 0, "syncs": 0, "durable": 0}

    def new_round(self):
        self.round, self.floor, self.unsynced = {}, {}, {}


def write_round(sess, ledger, window, mode, rng, deadline):
    """Writes until the connection dies (the cut) or `deadline`."""
    through = mode in WRITE_THROUGH
    while time.time() < deadline:
        r = rng.random()
        if r < 0.1:
            targets = list(ledger.unsynced.items())
            ledger.stats["syncs"] += 1
            st = sess.sync()
            if st != 0:
                raise RuntimeError(f"SYNCHRONIZE CACHE: status {st:#x}, sense {sess.sense.hex()}")
            for b, idx in targets:
                ledger.floor[b] = max(ledger.floor.get(b, -1), idx)
                if ledger.unsynced.get(b) == idx:
                    del ledger.unsynced[b]
            continue
        fua = r < 0.4
        b = window + rng.randrange(WINDOW)
        ledger.seq += 1
        seq = ledger.seq
        hist = ledger.round.setdefault(b, [])
        hist.append(seq)  # sent: its data may be on the disk from now on
        idx = len(hist) - 1
        ledger.stats["writes"] += 1
        st = sess.write(b, block_bytes(b, seq), fua)
        if st != 0:
            raise RuntimeError(f"WRITE(10) of block {b}: status {st:#x}, sense {sess.sense.hex()}")
        if fua or through:
            ledger.stats["fua" if fua else "durable"] += 1
            ledger.floor[b] = max(ledger.floor.get(b, -1), idx)
            ledger.unsynced.pop(b, None)
        else:
            ledger.unsynced[b] = idx


def check(sess, ledger, windows):
    """Reads the windows back after a cut; returns (blocks checked, [problems], lost)."""
    problems = []
    lost = 0
    checked = 0
    ledger.rolled_back = 0
    for w in windows:
        for off in range(0, WINDOW, 64):
            data = sess.read(w + off, 64)
            for i in range(64):
                b = w + off + i
                checked += 1
                got = decode_block(b, data[i * BLOCK:(i + 1) * BLOCK])
                before = ledger.known.get(b, 0)
                if isinstance(got, str):
                    problems.append(f"block {b}: {got}")
                    continue
                allowed = [before] + ledger.round.get(b, [])
                floor = ledger.floor.get(b, -1) + 1  # index into `allowed`
                if got not in allowed:
                    problems.append(f"block {b}: holds write {got}, never written there "
                                    f"(expected one of {allowed[:4]}...)")
                else:
                    at = allowed.index(got)
                    if at < floor:
                        lost += 1
                        problems.append(f"block {b}: holds write {got} but write {allowed[floor]} "
                                        f"was acknowledged as durable")
                    elif at < len(allowed) - 1:
                        # An older version than the last write sent: allowed, and the
                        # proof that the cut did lose volatile data.
                        ledger.rolled_back += 1
                ledger.known[b] = got
    return checked, problems, lost


def run_mode(args, daemon, mode, files, rng):
    work = tempfile.mkdtemp(prefix=f"powercut-{mode}-", dir=args.workdir)
    g = Guest(work, daemon, mode, args.store, args.port, files, args.mem)
    ledger = Ledger()
    windows_done = []
    survived = 0
    cuts = []
    boot_times = []
    try:
        boot_times.append(g.start())
        window = None
        for cut in range(args.cuts + 1):
            sess = Iscsi(args.port)
            sess.login()
            sess.clear_unit_attentions()
            if window is not None:
                extra = [w for w in windows_done if w != window]
                windows = [window] + ([rng.choice(extra)] if extra else [])
                try:
                    checked, problems, lost = check(sess, ledger, windows)
                except Lost as e:
                    # Nothing cut the power this time: the target went away while the
                    # data was read back. The cut fails and the mode stops here.
                    cuts[-1].update(checked=0, problems=1, lost=0, ok=False, rolled_back=0)
                    print(f"  cut {cut}/{args.cuts}: FAILED, the read-back lost its connection ({e})\n"
                          + g.logs(), flush=True)
                    sess.close()
                    break
                ok = not problems
                survived += ok
                cuts[-1].update(checked=checked, problems=len(problems), lost=lost, ok=ok,
                                rolled_back=ledger.rolled_back)
                print(f"  cut {cut}/{args.cuts}: {'survived' if ok else 'FAILED'} "
                      f"({cuts[-1]['writes']} writes, {cuts[-1]['at']:.1f}s into the round, "
                      f"{checked} blocks checked, {ledger.rolled_back} rolled back to an older version"
                      + (f", {lost} acknowledged-durable writes lost, {len(problems) - lost} other" if problems else "")
                      + ")", flush=True)
                for p in problems[:5]:
                    print("     " + p, flush=True)
                windows_done.append(window)
            if cut == args.cuts:
                sess.close()
                break
            window = rng.randrange(STORE_BLOCKS // WINDOW) * WINDOW
            ledger.new_round()
            at = rng.uniform(args.min_write, args.max_write)
            w0 = ledger.stats["writes"]
            t0 = time.time()
            timer = threading.Timer(at, g.cut)
            timer.start()
            try:
                write_round(sess, ledger, window, mode, rng, t0 + at + 30)
                raise RuntimeError("the cut did not happen")
            except Lost:
                pass
            finally:
                timer.cancel()
                sess.close()
            g.cut()
            cuts.append({"writes": ledger.stats["writes"] - w0, "at": at})
            boot_times.append(g.start())
    finally:
        g.cut()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {"mode": mode, "daemon": daemon, "cuts": len([c for c in cuts if "ok" in c]), "survived": survived,
            "lost": sum(c.get("lost", 0) for c in cuts),
            "rolled_back": sum(c.get("rolled_back", 0) for c in cuts), "problems": sum(c.get("problems", 0) for c in cuts),
            "stats": dict(ledger.stats), "boot": sum(boot_times) / len(boot_times)}


def guest_files(daemon, work):
    if daemon == "tgtd":
        files = []
        for src in ("/usr/sbin/tgtd", "/usr/sbin/tgtadm"):
            if not os.access(src, os.X_OK):
                raise SystemExit(f"powercut: {src} not found (Debian's tgt package)")
            files.append(src)
        lib = subprocess.run(["sh", "-c", "ldd /usr/sbin/tgtd | awk '/libaio/ {print $3}'"],
                             capture_output=True, text=True).stdout.strip()
        dst = os.path.join(work, "libaio.so.1")
        shutil.copy(lib, dst)
        return files + [dst]
    return boot_rtgt(work)


def boot_rtgt(work):
    """rtgtd and rtgtadm for the guest, as the guest suite builds them (run.py)."""
    import run  # tests/guest/run.py
    return run.guest_rtgt(work)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", default="rtgtd", choices=["rtgtd", "tgtd"])
    ap.add_argument("--modes", help="comma-separated (default: every mode of the daemon)")
    ap.add_argument("--cuts", type=int, default=20)
    ap.add_argument("--store", default="file", choices=["file", "raw"])
    ap.add_argument("--port", type=int, default=0,
                    help="host port forwarded to the guest's 3260 (default: a free one)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--min-write", type=float, default=1.0, help="seconds of writing before a cut, at least")
    ap.add_argument("--max-write", type=float, default=6.0, help="... and at most")
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--workdir", default=os.path.join(ROOT, "target", "powercut"),
                    help="where disk images go (a file system that supports O_DIRECT, not tmpfs)")
    ap.add_argument("--keep", action="store_true", help="keep each mode's disk image and logs")
    a = ap.parse_args()
    modes = a.modes.split(",") if a.modes else (
        ["rdwr", "io_uring", "direct", "sync", "wc-off", "nv-cache"] if a.daemon == "rtgtd" else ["aio"])
    if not a.port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            a.port = s.getsockname()[1]
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    print(f"powercut: {a.daemon}, modes {','.join(modes)}, {a.cuts} cuts each, store {a.store}, seed {seed}",
          flush=True)
    if not boot.ensure_built(boot.DEFAULT_CACHE):
        raise SystemExit(2)
    os.makedirs(a.workdir, exist_ok=True)
    bins = tempfile.mkdtemp(prefix="powercut-bin-", dir=a.workdir)
    results = []
    try:
        files = guest_files(a.daemon, bins)
        for m in modes:
            print(f"{a.daemon} {m}:", flush=True)
            t0 = time.time()
            r = run_mode(a, a.daemon, m, files, random.Random(f"{seed}:{m}"))
            r["secs"] = time.time() - t0
            results.append(r)
            print(f"  => {m}: {r['survived']}/{r['cuts']} cuts survived, {r['lost']} acknowledged-durable "
                  f"writes lost, {r['problems'] - r['lost']} other problems, {r['rolled_back']} blocks rolled back "
                  f"(not durable, allowed); {r['stats']['writes']} writes "
                  f"({r['stats']['fua']} FUA), {r['stats']['syncs']} SYNCHRONIZE CACHE; "
                  f"boot {r['boot']:.1f}s; {r['secs']:.0f}s", flush=True)
    finally:
        shutil.rmtree(bins, ignore_errors=True)
    print("\nmode          cuts survived  lost  other  rolled-back")
    bad = False
    for r in results:
        print(f"{r['daemon'] + ' ' + r['mode']:<14}{r['cuts']:>4}{r['survived']:>9}{r['lost']:>6}"
              f"{r['problems'] - r['lost']:>7}{r['rolled_back']:>13}")
        if r["mode"] not in NEGATIVE and (r["survived"] != r["cuts"] or r["cuts"] < a.cuts):
            bad = True
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
