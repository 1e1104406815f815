#!/usr/bin/env python3
"""Scale checks for rtgtd (and tgtd beside it where the same check applies).

1. 1000 LUNs over 100 targets configured through the admin tool: rtgtadm --batch (one
   control connection), rtgtadm one process per command, and tgtadm one process per
   command. Wall-clock seconds for the whole configuration.
2. 500 concurrent idle sessions: raw iSCSI logins held open; the daemon's RSS before and
   after, divided by the number of sessions.

Run it through bench/run.sh --scale, which builds the release binaries first.
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

TARGETS = 100
LUNS_PER_TARGET = 10
SESSIONS = 500


def config_lines():
    for t in range(1, TARGETS + 1):
        yield f"--op new --mode target --tid {t} -T iqn.2026-01.org.rtgt.scale:t{t}"
        for l in range(1, LUNS_PER_TARGET + 1):
            yield (f"--op new --mode logicalunit --tid {t} --lun {l} --bstype null -b /dev/null")
        yield f"--op bind --mode target --tid {t} -I ALL"


def per_process(adm):
    t0 = time.monotonic()
    for line in config_lines():
        adm(line.split())
    return time.monotonic() - t0


def login(port, target, isid):
    """Logs one session in (security straight to full feature phase) and returns its socket."""
    s = socket.create_connection(("127.0.0.1", port))
    keys = (f"InitiatorName=iqn.2026-01.org.rtgt.scale:init\0TargetName={target}\0"
            "SessionType=Normal\0AuthMethod=None\0HeaderDigest=None\0DataDigest=None\0"
            "MaxRecvDataSegmentLength=262144\0").encode()
    csg, tsih, exp_stat_sn = 0, b"\0\0", 0
    for _ in range(3):
        data = keys + b"\0" * (-len(keys) % 4)
        bhs = bytearray(48)
        bhs[0] = 0x43  # Login Request, immediate
        bhs[1] = 0x80 | csg << 2 | 3  # T, CSG, NSG 3 (full feature)
        bhs[5:8] = len(keys).to_bytes(3, "big")
        bhs[8:14] = isid
        bhs[14:16] = tsih
        bhs[28:32] = exp_stat_sn.to_bytes(4, "big")
        s.sendall(bytes(bhs) + data)
        hdr = b""
        while len(hdr) < 48:
            chunk = s.recv(48 - len(hdr))
            if not chunk:
                raise RuntimeError("connection closed during login")
            hdr += chunk
        dlen = int.from_bytes(hdr[5:8], "big")
        rest = dlen + (-dlen % 4)
        while rest:
            rest -= len(s.recv(rest))
        if hdr[36] != 0:
            raise RuntimeError(f"login refused: class {hdr[36]} detail {hdr[37]}")
        if hdr[1] & 0x83 == 0x83:
            return s
        # The target stops at the operational stage first (tgtd does): go on from there.
        csg, tsih = hdr[1] & 0x03, hdr[14:16]
        exp_stat_sn = int.from_bytes(hdr[24:28], "big") + 1
        keys = b"HeaderDigest=None\0DataDigest=None\0"
    raise RuntimeError("login did not reach the full feature phase")


def idle_sessions(d, target):
    socks = [login(d.port, target, struct.pack(">BBI", 0x80, 0, 0))]
    time.sleep(0.5)
    before = d.status("VmRSS")
    for i in range(1, SESSIONS):
        socks.append(login(d.port, target, struct.pack(">BBI", 0x80, 0, i)))
    time.sleep(1.0)
    after = d.status("VmRSS")
    alive = sum(1 for s in socks if s.fileno() >= 0)
    for s in socks:
        s.close()
    return before, after, alive


def main():
    workdir = tempfile.mkdtemp(prefix="rtgt-scale-")
    daemons = []
    try:
        r = bench.Rtgtd(workdir, "rdwr", [])
        t = bench.Tgtd(workdir, "rdwr")
        daemons = [r, t]
        batch = os.path.join(workdir, "config.batch")
        with open(batch, "w") as f:
            f.write("\n".join(config_lines()) + "\n")
        n = sum(1 for _ in config_lines())
        t0 = time.monotonic()
        bench.run([os.path.join(r.bin, "rtgtadm"), "-C", "1", "--batch", batch], env=r.env)
        t_batch = time.monotonic() - t0
        shown = bench.run([os.path.join(r.bin, "rtgtadm"), "-C", "1", "--lld", "iscsi",
                           "--op", "show", "--mode", "target"], env=r.env)
        luns = shown.count("Type: disk")
        t_proc_tgt = per_process(lambda a: t.adm(a))
        print(f"configuration: {TARGETS} targets, {TARGETS * LUNS_PER_TARGET} LUNs, {n} commands")
        print(f"  rtgtadm --batch (one connection): {t_batch:.3f} s ({luns} disk LUNs shown)")
        print(f"  tgtadm, one process per command:  {t_proc_tgt:.3f} s")

        print(f"{SESSIONS} idle sessions (load {bench.loadavg()}):")
        for d in daemons:
            target = "iqn.2026-01.org.rtgt.scale:t1"
            before, after, alive = idle_sessions(d, target)
            print(f"  {d.name:5}: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB with {alive}"
                  f" sessions: {(after - before) / (SESSIONS - 1):.1f} KiB per idle session")
    finally:
        for d in daemons:
            d.stop()
        subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    main()
