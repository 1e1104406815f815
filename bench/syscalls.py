#!/usr/bin/env python3
"""System calls and wake-ups per command, per daemon variant, from the kernel's syscall
tracepoints (`perf stat -e syscalls:sys_enter_*`, counting only: far cheaper than
strace, so the daemon's timing barely changes).

    python3 bench/syscalls.py [--seconds S] [--rounds N] [--workloads null,cached]
                              [--variant NAME=ARGS ...] [--baseline DIR]

Starts one rtgtd per variant (this build's target/release unless --baseline gives the
directory of another build for the variant named `base`), each with a null LUN and a
page-cached 1 GiB file, runs iscsi-perf 4 KiB random reads at queue depth 32 against each
in turn (and qemu-img 4 KiB writes at QD32), and prints per I/O: reads/receives, writes/sends, epoll waits (wake-ups),
naps (clock_nanosleep), futex calls, and the daemon's CPU µs. Counts are machine-noise
tolerant where wall-clock rates are not: a loaded machine changes how many commands a
turn finds, but not what a turn costs. Needs root (perf) and bench/run.sh's release build.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

CALLS = {
    "recv": ["read", "recvfrom", "recvmsg", "readv"],
    "send": ["write", "writev", "sendto", "sendmsg"],
    "epoll_wait": ["epoll_wait", "epoll_pwait", "epoll_pwait2"],
    "nap": ["clock_nanosleep", "nanosleep"],
    "futex": ["futex"],
    "io_uring": ["io_uring_enter"],
    "file": ["pread64", "pwrite64", "preadv2", "pwritev2"],
}


def counted(pid, cmd):
    events = ",".join(f"syscalls:sys_enter_{c}" for cs in CALLS.values() for c in cs)
    out = tempfile.NamedTemporaryFile("r", suffix=".perf", delete=False)
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", out.name, "-e", events,
                             "-p", str(pid)], stderr=subprocess.DEVNULL)
    try:
        result = cmd()
    finally:
        perf.send_signal(2)
        perf.wait()
    n = {}
    for line in open(out.name):
        f = line.strip().split(",")
        if len(f) > 2 and f[2].startswith("syscalls:sys_enter_"):
            name = f[2][len("syscalls:sys_enter_"):]
            n[name] = int(f[0]) if f[0].isdigit() else 0
    os.unlink(out.name)
    return result, {k: sum(n.get(c, 0) for c in cs) for k, cs in CALLS.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default="null,cached,write",
                    help="null, cached (4 KiB random reads at QD32), write (4 KiB writes"
                         " at QD32, qemu-img)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS")
    ap.add_argument("--baseline", metavar="DIR", help="the build for the variant named base")
    ap.add_argument("--dir", default="/var/tmp/rtgt-bench")
    a = ap.parse_args()
    variants = a.variant or ["rtgtd="]
    os.makedirs(a.dir, exist_ok=True)
    cached = os.path.join(a.dir, "cached.img")
    direct = os.path.join(a.dir, "direct.img")
    bench.make_file(cached, 1 << 30)
    bench.make_file(direct, 1 << 30)
    bench.warm(cached)
    work = tempfile.mkdtemp(prefix="rtgt-syscalls-")
    daemons = []
    try:
        for v in variants:
            name, _, args = v.partition("=")
            bindir = os.path.abspath(a.baseline) if name == "base" and a.baseline else None
            d = bench.Rtgtd(work, "rdwr", args.split(), bindir=bindir, name=name)
            d.setup_luns(cached, direct)
            daemons.append(d)
        rows = {}
        for wl in a.workloads.split(","):
            for r in range(a.rounds):
                k = r % len(daemons)
                for d in daemons[k:] + daemons[:k]:
                    c0 = d.cpu_seconds()
                    if wl == "write":
                        # 4 KiB writes at queue depth 32 to the cached file (qemu-img).
                        def job(d=d):
                            return bench.qemu_bench(d.url("cached"), "4k", 32,
                                                    a.seconds * 8000)
                    else:
                        def job(d=d, wl=wl):
                            return bench.iscsi_perf(d.url(wl), 32, 8, a.seconds, True)
                    (iops, ios), n = counted(d.proc.pid, job)
                    cpu = (d.cpu_seconds() - c0) / ios * 1e6
                    per = {k2: v2 / ios for k2, v2 in n.items()}
                    per["cpu_us"] = cpu
                    per["iops"] = iops
                    rows.setdefault((wl, d.name), []).append(per)
                    bench.log(f"{wl:7} {d.name:8} {iops:7} IOPS " + " ".join(
                        f"{k2} {v2:.3f}" for k2, v2 in per.items() if k2 != "iops"))
        keys = list(CALLS) + ["cpu_us", "iops"]
        print("| workload | variant | " + " | ".join(
            f"{k} per I/O" if k not in ("cpu_us", "iops") else k for k in keys) + " |")
        print("|---|---|" + "---:|" * len(keys))
        for (wl, name), per in rows.items():
            what = "4K write QD32 cached" if wl == "write" else f"4K randread QD32 {wl}"
            print(f"| {what} | {name} | " + " | ".join(
                f"{statistics.median(p[k] for p in per):.3f}" if k != "iops" else
                f"{statistics.median(p[k] for p in per):.0f}" for k in keys) + " |")
    finally:
        for d in daemons:
            d.stop()


if __name__ == "__main__":
    main()
