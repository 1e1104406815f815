#!/usr/bin/env python3
"""Load test for rtgtd: many sessions, steady I/O, and a login storm in the middle.

1000 sessions log in to one target (one initiator name, one ISID each). 200 of them
("active") each keep 4 commands in flight for the whole run: 4 KiB READ(10) and
WRITE(10) (immediate data) at random LBAs, half and half. In the middle third of the
run, other sessions ("churn", taken in turn from the 800 idle ones) log out and log in
again (same ISID) at 100 per second (from a second process, so the storm keeps its rate
while the first drives the I/O). Reports, for the active sessions, command latency
percentiles (p50 / p99 / p99.9) before, during and after the storm, the commands done,
every error (a status other than GOOD, a dropped or refused session), the storm's
achieved rate and login latency, and rtgtd's RSS at each stage. At the end every one of
the 1000 sessions sends a TEST UNIT READY, so a session dropped silently shows.

The initiator is this script (asyncio, raw iSCSI PDUs: one process for the active
sessions, one for the idle ones and the storm), its sessions spread over 50 loopback
source addresses (rtgtd bounds logins in progress per address, as against a flood; 1000
real sessions come from many hosts). Its own latency is part of every figure, and on a
loaded machine a large part: one Python thread drives the 200 active sessions. A session
whose reconnect failed is logged in afresh at its next turn; the error says which half
(logout or login) failed and after how long. The LUN is a `null` store
(no medium I/O): the figures are the target's and the initiator's, not a disk's.

    python3 bench/load.py [--bin target/release] [--seconds 300] [--sessions 1000]
        [--active 200] [--qd 4] [--storm-rate 100]
"""

import argparse
import asyncio
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

TARGET = "iqn.2026-01.org.rtgt.load:t1"
INITIATOR = "iqn.2026-01.org.rtgt.load:init"
BLOCKS = (1 << 30) // 512


def pdu(bhs, data=b""):
    return bytes(bhs) + data + b"\0" * (-len(data) % 4)


# Initiators come from this many loopback addresses (127.0.1.1, ...): real sessions come
# from many hosts, and rtgtd bounds logins in progress per address (guard.rs: 64).
ADDRESSES = 50


class Session:
    """One iSCSI session on one connection, driven by asyncio."""

    def __init__(self, port, isid):
        self.port, self.isid = port, isid
        n = int.from_bytes(isid[2:], "big") % ADDRESSES
        self.local = f"127.0.{1 + n // 250}.{1 + n % 250}"
        self.itt = 0
        self.cmdsn = 0
        self.exp_statsn = 0
        self.waiting = {}
        self.reader_task = None
        self.dead = None

    async def _read_pdu(self):
        hdr = await self.r.readexactly(48)
        dlen = int.from_bytes(hdr[5:8], "big")
        data = await self.r.readexactly(dlen + (-dlen % 4)) if dlen else b""
        return hdr, data[:dlen]

    async def login(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.local, 0))
        keys = (f"InitiatorName={INITIATOR}\0TargetName={TARGET}\0SessionType=Normal\0"
                "AuthMethod=None\0HeaderDigest=None\0DataDigest=None\0"
                "MaxRecvDataSegmentLength=262144\0ImmediateData=Yes\0InitialR2T=No\0"
                "FirstBurstLength=65536\0MaxBurstLength=262144\0").encode()
        csg, tsih = 0, b"\0\0"
        for _ in range(3):
            bhs = bytearray(48)
            bhs[0] = 0x43
            bhs[1] = 0x80 | csg << 2 | 3
            bhs[5:8] = len(keys).to_bytes(3, "big")
            bhs[8:14] = self.isid
            bhs[14:16] = tsih
            bhs[24:28] = self.cmdsn.to_bytes(4, "big")
            bhs[28:32] = self.exp_statsn.to_bytes(4, "big")
            self.w.write(pdu(bhs, keys))
            hdr, _ = await self._read_pdu()
            if hdr[36] != 0:
                raise RuntimeError(f"login refused: class {hdr[36]} detail {hdr[37]}")
            self.exp_statsn = int.from_bytes(hdr[24:28], "big") + 1
            if hdr[1] & 0x83 == 0x83:
                self.cmdsn = int.from_bytes(hdr[28:32], "big")
                self.reader_task = asyncio.ensure_future(self._reader())
                return
            csg, tsih = hdr[1] & 0x03, hdr[14:16]
            keys = b"HeaderDigest=None\0DataDigest=None\0"
        raise RuntimeError("login did not reach the full feature phase")

    async def _reader(self):
        try:
            while True:
                hdr, data = await self._read_pdu()
                op = hdr[0] & 0x3f
                itt = int.from_bytes(hdr[16:20], "big")
                if op == 0x25:  # Data-In
                    if hdr[1] & 0x01:  # S bit: status in this PDU
                        self.exp_statsn = int.from_bytes(hdr[24:28], "big") + 1
                        self._done(itt, hdr[3])
                elif op in (0x21, 0x26):  # SCSI Response, Logout Response
                    self.exp_statsn = int.from_bytes(hdr[24:28], "big") + 1
                    self._done(itt, hdr[3] if op == 0x21 else hdr[2])
                elif op == 0x20:  # NOP-In
                    ttt = hdr[20:24]
                    if ttt != b"\xff\xff\xff\xff":
                        bhs = bytearray(48)
                        bhs[0] = 0x40
                        bhs[1] = 0x80
                        bhs[16:20] = b"\xff\xff\xff\xff"
                        bhs[20:24] = ttt
                        bhs[24:28] = self.cmdsn.to_bytes(4, "big")
                        bhs[28:32] = self.exp_statsn.to_bytes(4, "big")
                        self.w.write(pdu(bhs))
                elif op == 0x32:  # Async Message
                    self.dead = f"async message event {hdr[36]}"
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self.dead = self.dead or f"connection lost: {e!r}"
        except asyncio.CancelledError:
            return
        for f in self.waiting.values():
            if not f.done():
                f.set_exception(RuntimeError(self.dead))
        self.waiting.clear()

    def _done(self, itt, status):
        f = self.waiting.pop(itt, None)
        if f is not None and not f.done():
            f.set_result(status)

    def _send(self, op_byte, flags, cdb, edtl, data=b"", lun=1):
        if self.dead:
            raise RuntimeError(self.dead)
        self.itt = (self.itt + 1) & 0x7fffffff
        bhs = bytearray(48)
        bhs[0] = op_byte
        bhs[1] = flags
        bhs[5:8] = len(data).to_bytes(3, "big")
        bhs[8:16] = struct.pack(">HHI", lun, 0, 0)
        bhs[16:20] = self.itt.to_bytes(4, "big")
        if op_byte & 0x3f == 0x01:
            bhs[20:24] = edtl.to_bytes(4, "big")
            bhs[32:32 + len(cdb)] = cdb
        else:  # Logout: reason in byte 1, CID 0
            pass
        bhs[24:28] = self.cmdsn.to_bytes(4, "big")
        bhs[28:32] = self.exp_statsn.to_bytes(4, "big")
        if op_byte & 0x40 == 0:
            self.cmdsn = (self.cmdsn + 1) & 0xffffffff
        f = asyncio.get_running_loop().create_future()
        self.waiting[self.itt] = f
        self.w.write(pdu(bhs, data))
        return f

    async def command(self, cdb, read_len=0, data=b""):
        flags = 0x80 | (0x40 if read_len else 0) | (0x20 if data else 0) | 0x01  # F, R/W, SIMPLE
        return await self._send(0x01, flags, cdb, read_len or len(data), data)

    async def logout(self):
        try:
            await asyncio.wait_for(self._send(0x46, 0x80, b"", 0), 10)
        finally:
            self.close()

    def close(self):
        if self.reader_task:
            self.reader_task.cancel()
        try:
            self.w.close()
        except Exception:
            pass


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


class Stats:
    def __init__(self):
        self.lat = {"before": [], "storm": [], "after": []}
        self.errors = []
        self.phase = "warmup"


async def active_worker(s, stats, qd, stop):
    buf = os.urandom(4096)

    async def one():
        while not stop.is_set():
            lba = random.randrange(0, BLOCKS - 8) & ~7
            write = random.random() < 0.5
            cdb = struct.pack(">BBIBHB", 0x2a if write else 0x28, 0, lba, 0, 8, 0)
            t0 = time.perf_counter()
            try:
                st = await (s.command(cdb, data=buf) if write else s.command(cdb, read_len=4096))
            except Exception as e:
                stats.errors.append(f"isid {s.isid.hex()}: {e}")
                return
            dt = time.perf_counter() - t0
            if st != 0:
                stats.errors.append(f"isid {s.isid.hex()}: status {st:#x}")
            if stats.phase in stats.lat:
                stats.lat[stats.phase].append(dt)

    await asyncio.gather(*(one() for _ in range(qd)))


async def storm(port, idle, rate, seconds, result):
    """Logs out and back in `rate` idle sessions per second, in turn, for `seconds`."""
    t_end = time.monotonic() + seconds
    i, done, lat, errs = 0, 0, [], []
    tasks = set()

    async def reconnect(k):
        nonlocal done
        old = idle[k]
        t0 = time.perf_counter()
        step = "logout"
        try:
            if old.dead is None:
                await old.logout()
            else:
                old.close()  # an earlier reconnect of it failed: log in afresh
            step = "login"
            new = Session(port, old.isid)
            await new.login()
            idle[k] = new
            lat.append(time.perf_counter() - t0)
            done += 1
        except Exception as e:
            old.dead = old.dead or "reconnect failed"
            # Which half failed, and when: a failure is told apart from its neighbours.
            errs.append(f"isid {old.isid.hex()}: reconnect, {step} after "
                        f"{time.perf_counter() - t0:.2f} s: {e!r} ({old.dead})")

    next_t = time.monotonic()
    while time.monotonic() < t_end:
        t = asyncio.ensure_future(reconnect(i % len(idle)))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        i += 1
        next_t += 1.0 / rate
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)
    result.update(started=i, done=done, lat=lat, errors=errs)


def rss_mib(d):
    return d.status("VmRSS") / 1024


async def check_alive(sessions):
    """TEST UNIT READY on every session: (answering, [what the others said])."""
    tur = b"\0" * 6
    alive, dropped = 0, []
    for s in sessions:
        try:
            st = await asyncio.wait_for(s.command(tur), 10)
            if st == 0:
                alive += 1
            else:
                dropped.append(f"isid {s.isid.hex()}: TUR status {st:#x}")
        except Exception as e:
            dropped.append(f"isid {s.isid.hex()}: {e!r}")
    for s in sessions:
        s.close()
    return alive, dropped


async def idle_async(port, first, count, rate, seconds, conn):
    """The idle sessions and the storm, in a process of their own (see `idle_process`)."""
    loop = asyncio.get_running_loop()
    idle = []
    for i in range(first, first + count):
        s = Session(port, struct.pack(">BBI", 0x80, 1, i))
        await s.login()
        idle.append(s)
    conn.send("ready")
    await loop.run_in_executor(None, conn.recv)  # "storm"
    result = {}
    await storm(port, idle, rate, seconds, result)
    conn.send(result)
    await loop.run_in_executor(None, conn.recv)  # "check"
    conn.send(await check_alive(idle))


def idle_process(port, first, count, rate, seconds, conn):
    """One Python thread can't drive 200 sessions at QD4 and 100 reconnects a second at
    once on a loaded machine (a first run managed 37/s): the storm gets its own process."""
    asyncio.run(idle_async(port, first, count, rate, seconds, conn))


async def main_async(args, d):
    import multiprocessing
    stats = Stats()
    loop = asyncio.get_running_loop()
    third = args.seconds / 3
    t0 = time.monotonic()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=idle_process, args=(
        d.port, args.active, args.sessions - args.active, args.storm_rate, third, child))
    proc.start()
    active = []
    for i in range(args.active):
        s = Session(d.port, struct.pack(">BBI", 0x80, 1, i))
        await s.login()
        active.append(s)
    if await loop.run_in_executor(None, parent.recv) != "ready":
        raise RuntimeError("the idle sessions' process failed")
    t_login = time.monotonic() - t0
    print(f"{args.sessions} sessions logged in in {t_login:.1f} s; RSS {rss_mib(d):.1f} MiB "
          f"(load {bench.loadavg()})", flush=True)
    rss = {"sessions up": rss_mib(d)}
    stop = asyncio.Event()
    workers = [asyncio.ensure_future(active_worker(s, stats, args.qd, stop)) for s in active]
    await asyncio.sleep(5)
    stats.phase = "before"
    t_start = time.monotonic()
    await asyncio.sleep(third - 5)
    rss["before storm"] = rss_mib(d)
    print(f"storm: {args.storm_rate} reconnects/s for {third:.0f} s (load {bench.loadavg()})", flush=True)
    stats.phase = "storm"
    parent.send("storm")
    await asyncio.sleep(third / 2)
    rss["mid storm"] = rss_mib(d)
    storm_result = await loop.run_in_executor(None, parent.recv)
    rss["after storm"] = rss_mib(d)
    stats.phase = "after"
    await asyncio.sleep(max(0.0, t_start + args.seconds - 5 - time.monotonic()))
    stats.phase = "done"
    stop.set()
    await asyncio.gather(*workers)
    rss["end"] = rss_mib(d)
    # Every session still answers.
    alive, dropped = await check_alive(active)
    parent.send("check")
    a2, d2 = await loop.run_in_executor(None, parent.recv)
    proc.join()
    return stats, storm_result, rss, alive + a2, dropped + d2, t_login


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(bench.ROOT, "target", "release"))
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--active", type=int, default=200)
    ap.add_argument("--qd", type=int, default=4)
    ap.add_argument("--storm-rate", type=float, default=100)
    ap.add_argument("--port", type=int, help="rtgtd's portal port (default: a free one)")
    ap.add_argument("--log", help="keep rtgtd's log here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="rtgt-load-")
    d = None
    try:
        if args.port:
            bench.free_port = lambda: args.port
        d = bench.Rtgtd(workdir, "null", [], bindir=args.bin)
        d.adm(["--op", "new", "--mode", "target", "--tid", "1", "-T", TARGET])
        d.adm(["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
               "--bstype", "null", "-b", "/dev/null"])
        d.adm(["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])
        rss0 = rss_mib(d)
        print(f"rtgtd {args.bin}: RSS {rss0:.1f} MiB idle; {os.cpu_count()} CPUs, "
              f"load {bench.loadavg()}", flush=True)
        stats, storm_r, rss, alive, dropped, t_login = asyncio.run(main_async(args, d))
        print(f"\nactive sessions: {args.active} x QD{args.qd}, 4 KiB random READ(10)/WRITE(10) 50/50")
        print("phase    commands   IOPS    p50 ms   p99 ms  p99.9 ms")
        spans = {"before": args.seconds / 3 - 5, "storm": args.seconds / 3, "after": args.seconds / 3}
        for ph, v in stats.lat.items():
            print(f"{ph:7} {len(v):9d} {len(v) / spans[ph]:7.0f} {pct(v, .5) * 1e3:8.2f} "
                  f"{pct(v, .99) * 1e3:8.2f} {pct(v, .999) * 1e3:9.2f}")
        sl = storm_r.get("lat", [])
        print(f"storm: {storm_r.get('done')} of {storm_r.get('started')} reconnects "
              f"({storm_r.get('done', 0) / (args.seconds / 3):.0f}/s); logout+login p50 "
              f"{pct(sl, .5) * 1e3:.1f} ms, p99 {pct(sl, .99) * 1e3:.1f} ms, max {max(sl, default=0) * 1e3:.1f} ms")
        print("RSS MiB: idle %.1f, " % rss0 + ", ".join(f"{k} {v:.1f}" for k, v in rss.items()))
        errors = stats.errors + storm_r.get("errors", [])
        print(f"I/O and reconnect errors: {len(errors)}")
        for e in errors[:20]:
            print("  " + e)
        print(f"sessions answering TEST UNIT READY at the end: {alive} of {args.sessions}")
        for e in dropped[:20]:
            print("  " + e)
        print(f"load average at the end: {bench.loadavg()}")
        return 0 if not errors and not dropped and d.proc.poll() is None else 1
    finally:
        if d is not None:
            d.stop()
            if args.log:
                subprocess.run(["cp", os.path.join(workdir, "rtgtd", "rtgtd.log"), args.log])
        subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    sys.exit(main())
