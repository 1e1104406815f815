#!/usr/bin/env python3
"""rtgtd against Debian's tgtd, side by side, on loopback.

Starts both daemons on free loopback ports with identical LUNs (null; a file kept in the
page cache; a file opened with O_DIRECT), then runs each workload alternately on one and
the other for several rounds, and prints medians, the rtgtd/tgtd ratio, CPU seconds per
million I/Os (utime+stime deltas of the daemon from /proc/PID/stat) and peak RSS (VmHWM).
iperf3 over loopback is the ceiling for the sequential read. It also reports how busy the
initiator itself was (its CPU seconds per wall second): iscsi-perf and qemu-img are
single-threaded, so one near 100% sets the rate whatever the target does (the two-session
workload runs two of them: 200% is both CPUs).

Run it through bench/run.sh, which builds the release binaries first.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {
    "null": "iqn.2026-01.org.rtgt.bench:null",
    "cached": "iqn.2026-01.org.rtgt.bench:cached",
    "direct": "iqn.2026-01.org.rtgt.bench:direct",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    """A free loopback port below the ephemeral range, so no client socket takes it."""
    for _ in range(200):
        p = random.randint(11000, 29000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port")


def free_tgtd_control_port():
    for _ in range(200):
        n = random.randint(100, 9999)
        if not os.path.exists(f"/var/run/tgtd/socket.{n}"):
            return n
    raise RuntimeError("no free tgtd control port")


def wait_port(port, proc, what):
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on {port}")


# CPU seconds and wall seconds of the last initiator run (iscsi-perf, qemu-img): how
# busy the client was shows when it, not the target, sets the rate.
LAST_CLIENT = {"cpu": 0.0, "wall": 0.0}


class client_run:
    """Records in LAST_CLIENT the CPU and wall time of the child processes waited for
    inside the block."""

    def __enter__(self):
        self.t0, self.w0 = os.times(), time.monotonic()

    def __exit__(self, *exc):
        t1 = os.times()
        LAST_CLIENT["cpu"] = (t1.children_user - self.t0.children_user
                              + t1.children_system - self.t0.children_system)
        LAST_CLIENT["wall"] = time.monotonic() - self.w0


def run(cmd, **kw):
    with client_run():
        r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


class Daemon:
    name = "?"

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 (1-based); after the ')' they are 12, 13.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
        return 0

    def threads(self):
        return self.status("Threads")

    def url(self, lun):
        return f"iscsi://127.0.0.1:{self.port}/{TARGETS[lun]}/1"

    def setup_luns(self, cached, direct):
        tid = 1
        for lun, path, extra in (
            ("null", None, []),
            ("cached", cached, []),
            ("direct", direct, ["--bsoflags", "direct"]),
        ):
            self.adm(["--op", "new", "--mode", "target", "--tid", str(tid), "-T", TARGETS[lun]])
            if path is None:
                lu = ["--bstype", "null", "-b", "/dev/null"]
            else:
                lu = ["--bstype", self.bstype, "-b", path] + extra
            self.adm(["--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1"] + lu)
            self.adm(["--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL"])
            tid += 1

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Rtgtd(Daemon):
    name = "rtgtd"

    def __init__(self, workdir, bstype, extra, bindir=None, name="rtgtd"):
        self.name = name
        workdir = os.path.join(workdir, name)
        os.makedirs(workdir, exist_ok=True)
        self.bstype = bstype
        self.port = free_port()
        self.env = dict(os.environ, RTGT_RUN_DIR=os.path.join(workdir, "run"))
        self.bin = bindir or os.path.join(ROOT, "target", "release")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "rtgtd"), "-f", "-C", "1",
             "--iscsi", f"portal=127.0.0.1:{self.port}",
             "--state-dir", os.path.join(workdir, "state")] + extra,
            env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(workdir, "rtgtd.log"), "w"))
        wait_port(self.port, self.proc, "rtgtd")

    def adm(self, args):
        run([os.path.join(self.bin, "rtgtadm"), "-C", "1", "--lld", "iscsi"] + args, env=self.env)


class Tgtd(Daemon):
    name = "tgtd"

    def __init__(self, workdir, bstype):
        self.bstype = bstype
        self.port = free_port()
        self.control = free_tgtd_control_port()
        self.proc = subprocess.Popen(
            ["tgtd", "-f", "-C", str(self.control), "--iscsi", f"portal=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "tgtd.log"), "w"))
        wait_port(self.port, self.proc, "tgtd")

    def adm(self, args):
        run(["tgtadm", "-C", str(self.control), "--lld", "iscsi"] + args)


def make_file(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    log(f"writing {size >> 20} MiB to {path}")
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def warm(path):
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


IOPS_RE = re.compile(r"iops average (\d+)")


def perf_cmd(url, qd, blocks, seconds, rand):
    return (["iscsi-perf", "-m", str(qd), "-b", str(blocks), "-t", str(seconds)]
            + (["-r"] if rand else []) + [url])


def iscsi_perf(url, qd, blocks, seconds, rand):
    out = run(perf_cmd(url, qd, blocks, seconds, rand), timeout=seconds + 30)
    m = IOPS_RE.findall(out.replace("\r", "\n"))
    if not m:
        raise RuntimeError(f"no result from iscsi-perf:\n{out}")
    iops = int(m[-1])
    return iops, iops * seconds


def iscsi_perf_sessions(url, sessions, qd, blocks, seconds, rand):
    """`sessions` iscsi-perf processes at once (one session each): total IOPS. One
    iscsi-perf saturates a CPU near 150,000 IOPS here; two show whether the target
    spreads sessions over its CPUs."""
    cmd = perf_cmd(url, qd, blocks, seconds, rand)
    with client_run():
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(sessions)]
        outs = [p.communicate(timeout=seconds + 30)[0] for p in procs]
    total = 0
    for p, out in zip(procs, outs):
        m = IOPS_RE.findall(out.replace("\r", "\n"))
        if p.returncode != 0 or not m:
            raise RuntimeError(f"no result from iscsi-perf (exit {p.returncode}):\n{out}")
        total += int(m[-1])
    return total, total * seconds


def qemu_bench(url, size, qd, count):
    out = run(["qemu-img", "bench", "-f", "raw", "-w", "-d", str(qd), "-s", size,
               "-c", str(count), url], timeout=600)
    m = re.search(r"Run completed in ([\d.]+) seconds", out)
    if not m:
        raise RuntimeError(f"no result from qemu-img bench:\n{out}")
    return count / float(m.group(1)), count


def iperf3(seconds):
    """One TCP stream over loopback: the ceiling for an iSCSI connection."""
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                  timeout=seconds + 30)
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 8
    finally:
        srv.kill()
        srv.wait()


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="3 rounds of 3 s (default)")
    mode.add_argument("--full", action="store_true", help="5 rounds of 10 s, for the README")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--only", help="comma-separated workload names to run")
    ap.add_argument("--rtgt-bstype", default="rdwr", help="rtgtd's file store (rdwr, io_uring)")
    ap.add_argument("--tgt-bstype", default="rdwr", help="tgtd's file store (rdwr, aio)")
    ap.add_argument("--rtgtd-args", default="", help="extra rtgtd arguments")
    ap.add_argument("--dir", default="/var/tmp/rtgt-bench",
                    help="where the 1 GiB backing files live (not tmpfs: O_DIRECT)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--baseline", metavar="DIR",
                    help="compare against the rtgtd and rtgtadm in DIR (an earlier build) "
                         "instead of tgtd: A/B of a change, same rounds and table")
    ap.add_argument("--baseline-args", metavar="ARGS",
                    help="extra arguments for the baseline rtgtd instead of --rtgtd-args "
                         "(with --baseline target/release: A/B of an option)")
    a = ap.parse_args()
    rounds = a.rounds or (5 if a.full else 3)
    secs = a.seconds or (10 if a.full else 3)

    os.makedirs(a.dir, exist_ok=True)
    cached = os.path.join(a.dir, "cached.img")
    direct = os.path.join(a.dir, "direct.img")
    make_file(cached, 1 << 30)
    make_file(direct, 1 << 30)
    warm(cached)

    workdir = tempfile.mkdtemp(prefix="rtgt-bench-")
    daemons = []
    try:
        daemons.append(Rtgtd(workdir, a.rtgt_bstype, a.rtgtd_args.split()))
        if a.baseline:
            base_args = a.rtgtd_args if a.baseline_args is None else a.baseline_args
            daemons.append(Rtgtd(workdir, a.rtgt_bstype, base_args.split(),
                                 bindir=os.path.abspath(a.baseline), name="base"))
        else:
            daemons.append(Tgtd(workdir, a.tgt_bstype))
        for d in daemons:
            d.setup_luns(cached, direct)

        # name -> (unit, what to run against a daemon, returns (rate, ios))
        wl = [
            ("4K randread QD1 cached", "IOPS",
             lambda d: iscsi_perf(d.url("cached"), 1, 8, secs, True)),
            ("4K randread QD32 cached", "IOPS",
             lambda d: iscsi_perf(d.url("cached"), 32, 8, secs, True)),
            ("4K randread QD32 null", "IOPS",
             lambda d: iscsi_perf(d.url("null"), 32, 8, secs, True)),
            ("4K randread QD32 null 2 sessions", "IOPS",
             lambda d: iscsi_perf_sessions(d.url("null"), 2, 32, 8, secs, True)),
            ("4K randread QD32 direct", "IOPS",
             lambda d: iscsi_perf(d.url("direct"), 32, 8, secs, True)),
            ("4K write QD32 cached", "IOPS", None),
            ("64K write QD32 cached", "IOPS", None),
            ("1M seqread QD8 cached", "MB/s",
             lambda d: (lambda r: (r[0] * 2048 * 512 / 1e6, r[1]))(
                 iscsi_perf(d.url("cached"), 8, 2048, secs, False))),
        ]
        only = set(a.only.split(",")) if a.only else None

        # Writes run a fixed count; size it so a run takes about `secs` on the faster one.
        def writes(size, nbytes):
            state = {}

            def f(d):
                if "count" not in state:
                    rate, _ = qemu_bench(d.url("cached"), size, 32, 20000)
                    state["count"] = max(20000, int(rate * secs))
                return qemu_bench(d.url("cached"), size, 32, state["count"])
            return f

        wl = [(n, u, writes("4k", 4096) if n.startswith("4K write") else
               writes("64k", 65536) if n.startswith("64K write") else f) for n, u, f in wl]

        log(f"machine: {os.cpu_count()} CPUs, load {loadavg()}; rtgtd pid {daemons[0].proc.pid}"
            f" ({a.rtgt_bstype}), {daemons[1].name} pid {daemons[1].proc.pid} ({daemons[1].bstype});"
            f" {rounds} rounds x {secs} s")
        results = {}
        loads = [loadavg()]
        iperf = []
        for name, unit, fn in wl:
            if only and not any(o in name for o in only):
                continue
            res = {d.name: {"rate": [], "cpu_per_mio": [], "client_busy": []} for d in daemons}
            for r in range(rounds):
                order = daemons if r % 2 == 0 else daemons[::-1]
                for d in order:
                    c0 = d.cpu_seconds()
                    rate, ios = fn(d)
                    c1 = d.cpu_seconds()
                    res[d.name]["rate"].append(rate)
                    res[d.name]["cpu_per_mio"].append((c1 - c0) / ios * 1e6 if ios else 0)
                    busy = LAST_CLIENT["cpu"] / LAST_CLIENT["wall"] if LAST_CLIENT["wall"] else 0
                    res[d.name]["client_busy"].append(busy)
                    log(f"  {name:26} round {r + 1} {d.name:5} {rate:10.0f} {unit}"
                        f"  cpu {c1 - c0:.2f} s  initiator {busy * 100:.0f}% of a CPU")
                if "seqread" in name:
                    iperf.append(iperf3(secs))
                    log(f"  iperf3 loopback round {r + 1} {iperf[-1] / 1e6:.0f} MB/s")
            results[name] = (unit, res)
            loads.append(loadavg())

        n0, n1 = daemons[0].name, daemons[1].name
        table = []
        table.append(f"| workload | {n0} | {n1} | {n0}/{n1} | CPU s per 10^6 I/O {n0} | {n1} | ratio |")
        table.append("|---|---:|---:|---:|---:|---:|---:|")
        summary = {}
        for name, (unit, res) in results.items():
            m = {n: statistics.median(v["rate"]) for n, v in res.items()}
            c = {n: statistics.median(v["cpu_per_mio"]) for n, v in res.items()}
            ratio = m[n0] / m[n1] if m[n1] else float("nan")
            cr = c[n0] / c[n1] if c[n1] else float("nan")
            extra = ""
            if "QD1 " in name:
                extra = f" ({1e6 / m[n0]:.0f} / {1e6 / m[n1]:.0f} us)"
            table.append(f"| {name} ({unit}) | {m[n0]:.0f} | {m[n1]:.0f} | {ratio:.2f}x{extra}"
                         f" | {c[n0]:.1f} | {c[n1]:.1f} | {cr:.2f} |")
            summary[name] = {"unit": unit, "median": m, "ratio": ratio, "cpu_per_mio": c,
                             "cpu_ratio": cr, "raw": res}
        if iperf:
            ip = statistics.median(iperf) / 1e6
            table.append(f"| iperf3 loopback, 1 stream (MB/s) | {ip:.0f} | | | | | |")
            seq = [k for k in results if "seqread" in k][0]
            for n in (n0, n1):
                table.append(f"| 1M seqread / iperf3, {n} | {summary[seq]['median'][n] / ip * 100:.0f}% | | | | | |")
            summary["iperf3_MBps"] = ip
        rss = {d.name: d.status("VmHWM") for d in daemons}
        thr = {d.name: d.threads() for d in daemons}
        table.append(f"| peak RSS (VmHWM, MiB) | {rss[n0] / 1024:.1f} | {rss[n1] / 1024:.1f} | | | | |")
        table.append(f"| threads at end | {thr[n0]} | {thr[n1]} | | | | |")
        # The initiator's own CPU use during each run (one CPU = 100%): a single-threaded
        # client at ~100% is the ceiling, whatever the target does.
        table.append("")
        table.append(f"| workload | initiator busy, {n0} run | {n1} run |")
        table.append("|---|---:|---:|")
        for name, (unit, res) in results.items():
            b = {n: statistics.median(v["client_busy"]) * 100 for n, v in res.items()}
            table.append(f"| {name} | {b[n0]:.0f}% | {b[n1]:.0f}% |")
        summary["vmhwm_kb"] = rss
        summary["load"] = loads
        print()
        print(f"rtgtd ({a.rtgt_bstype}) vs tgtd ({a.tgt_bstype}): medians of {rounds} alternated"
              f" rounds of {secs} s; {os.cpu_count()} CPUs;"
              f" load average during the run: {loads[0]} .. {loads[-1]}")
        print("\n".join(table))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1)
    finally:
        for d in daemons:
            d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
