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
    """A free loopback port below the ephemeral range, so no client socket takes it.
    RTGT_BENCH_PORTS=LOW-HIGH keeps it in a range (a machine shared by several users)."""
    low, _, high = os.environ.get("RTGT_BENCH_PORTS", "11000-29000").partition("-")
    for _ in range(200):
        p = random.randint(int(low), int(high))
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


class Floor(Daemon):
    """bench/floor: the socket floor, which serves null-LUN reads and 4 KiB writes (immediate
    data, discarded) at any target name and LUN."""
    name = "floor"
    bstype = "-"

    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "target", "release", "rtgt-floor"), str(self.port)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "floor.log"), "w"))
        wait_port(self.port, self.proc, "rtgt-floor")

    def setup_luns(self, cached, direct):
        pass


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
    mode.add_argument("--full", action="store_true",
                      help="5 rounds of 10 s, with the A/B variants of FULL_AB (auto, c100, batch) and"
                           " the floor, and the report"
                           " in bench/report/")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--only", help="comma-separated workload names to run")
    ap.add_argument("--rtgt-bstype", default="rdwr", help="rtgtd's file store (rdwr, io_uring)")
    ap.add_argument("--tgt-bstype", default="rdwr", help="tgtd's file store (rdwr, aio)")
    ap.add_argument("--rtgtd-args", default="", help="extra rtgtd arguments")
    ap.add_argument("--dir", default="/var/tmp/rtgt-bench",
                    help="where the 1 GiB backing files live (not tmpfs: O_DIRECT)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--report", metavar="DIR",
                    help="write the Markdown report with its SVG plots here (bench/report.py;"
                         " default bench/report with --full)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also run the rtgtd and rtgtadm in DIR (an earlier build), as 'base':"
                         " A/B of a change, same rounds and table (tgtd then runs only with"
                         " --tgtd)")
    ap.add_argument("--baseline-args", metavar="ARGS",
                    help="extra arguments for the baseline rtgtd instead of --rtgtd-args "
                         "(with --baseline target/release: A/B of an option)")
    ap.add_argument("--ab", action="append", default=[], metavar="NAME=ARGS",
                    help="also run this build's rtgtd with ARGS, as NAME (repeatable): A/B of"
                         " options in the same rounds")
    ap.add_argument("--no-ab", action="store_true", help="--full without its A/B variants")
    ap.add_argument("--tgtd", action="store_true", help="run tgtd even with --baseline")
    ap.add_argument("--no-tgtd", action="store_true", help="don't run tgtd")
    ap.add_argument("--no-floor", action="store_true", help="don't run the socket floor")
    a = ap.parse_args()
    rounds = a.rounds or (5 if a.full else 3)
    secs = a.seconds or (10 if a.full else 3)
    ab = list(a.ab)
    if a.full and not a.no_ab and not ab:
        ab = list(FULL_AB)
    report = a.report or (os.path.join(ROOT, "bench", "report") if a.full else None)

    os.makedirs(a.dir, exist_ok=True)
    cached = os.path.join(a.dir, "cached.img")
    direct = os.path.join(a.dir, "direct.img")
    make_file(cached, 1 << 30)
    make_file(direct, 1 << 30)
    warm(cached)

    workdir = tempfile.mkdtemp(prefix="rtgt-bench-")
    daemons = []
    args_of = {"rtgtd": a.rtgtd_args}
    about = {"rtgtd": "this build", "tgtd": f"Debian's tgtd ({a.tgt_bstype})",
             "floor": "bench/floor, the socket floor (null-LUN reads, 4K writes discarded)"}
    try:
        daemons.append(Rtgtd(workdir, a.rtgt_bstype, a.rtgtd_args.split()))
        if a.baseline:
            base_args = a.rtgtd_args if a.baseline_args is None else a.baseline_args
            daemons.append(Rtgtd(workdir, a.rtgt_bstype, base_args.split(),
                                 bindir=os.path.abspath(a.baseline), name="base"))
            args_of["base"] = base_args
            about["base"] = f"the build in {a.baseline}"
        for spec in ab:
            name, _, extra = spec.partition("=")
            daemons.append(Rtgtd(workdir, a.rtgt_bstype, extra.split(), name=name))
            args_of[name] = extra
            about[name] = "this build"
        if not a.no_tgtd and (a.tgtd or not a.baseline):
            daemons.append(Tgtd(workdir, a.tgt_bstype))
        if not a.no_floor:
            daemons.append(Floor(workdir))
        for d in daemons:
            d.setup_luns(cached, direct)

        # name -> (unit, what to run against a daemon, returns (rate, ios), the floor
        # serves it too)
        wl = [
            ("4K randread QD1 cached", "IOPS",
             lambda d: iscsi_perf(d.url("cached"), 1, 8, secs, True), False),
            ("4K randread QD32 cached", "IOPS",
             lambda d: iscsi_perf(d.url("cached"), 32, 8, secs, True), False),
            ("4K randread QD32 null", "IOPS",
             lambda d: iscsi_perf(d.url("null"), 32, 8, secs, True), True),
            ("4K randread QD32 null 2 sessions", "IOPS",
             lambda d: iscsi_perf_sessions(d.url("null"), 2, 32, 8, secs, True), True),
            ("4K randread QD32 direct", "IOPS",
             lambda d: iscsi_perf(d.url("direct"), 32, 8, secs, True), False),
            ("4K write QD32 cached", "IOPS", None, True),
            ("64K write QD32 cached", "IOPS", None, False),
            ("1M seqread QD8 cached", "MB/s",
             lambda d: (lambda r: (r[0] * 2048 * 512 / 1e6, r[1]))(
                 iscsi_perf(d.url("cached"), 8, 2048, secs, False)), False),
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
               writes("64k", 65536) if n.startswith("64K write") else f, fl)
              for n, u, f, fl in wl]

        log(f"machine: {os.cpu_count()} CPUs, load {loadavg()}; "
            + ", ".join(f"{d.name} pid {d.proc.pid} ({d.bstype})" for d in daemons)
            + f"; {rounds} rounds x {secs} s")
        results = {}
        loads = [loadavg()]
        iperf = []
        for name, unit, fn, floor_too in wl:
            if only and not any(o in name for o in only):
                continue
            ds = [d for d in daemons if floor_too or d.name != "floor"]
            res = {d.name: {"rate": [], "cpu_per_mio": [], "client_busy": []} for d in ds}
            for r in range(rounds):
                # Each round starts with the next daemon in turn, so none is always first.
                k = r % len(ds)
                order = ds[k:] + ds[:k]
                for d in order:
                    c0 = d.cpu_seconds()
                    rate, ios = fn(d)
                    c1 = d.cpu_seconds()
                    res[d.name]["rate"].append(rate)
                    res[d.name]["cpu_per_mio"].append((c1 - c0) / ios * 1e6 if ios else 0)
                    busy = LAST_CLIENT["cpu"] / LAST_CLIENT["wall"] if LAST_CLIENT["wall"] else 0
                    res[d.name]["client_busy"].append(busy)
                    log(f"  {name:32} round {r + 1} {d.name:6} {rate:10.0f} {unit}"
                        f"  cpu {c1 - c0:.2f} s ({(c1 - c0) / ios * 1e6 if ios else 0:.2f} us/io)"
                        f"  initiator {busy * 100:.0f}% of a CPU")
                if "seqread" in name:
                    iperf.append(iperf3(secs))
                    log(f"  iperf3 loopback round {r + 1} {iperf[-1] / 1e6:.0f} MB/s")
            results[name] = (unit, res)
            loads.append(loadavg())

        names = [d.name for d in daemons]
        n0 = names[0]
        table = []
        table.append("| workload | " + " | ".join(names) + " | " + " | ".join(
            f"{n0}/{n}" for n in names[1:]) + " | " + " | ".join(
            f"CPU s per 10^6 I/O {n}" for n in names) + " |")
        table.append("|---|" + "---:|" * (3 * len(names) - 1))
        summary = {"daemons": names, "workloads": {}, "rounds": rounds, "seconds": secs,
                   "args": args_of, "about": about,
                   "command": "bench/run.sh " + " ".join(sys.argv[1:]),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "machine": f"{os.cpu_count()} CPUs, {platform_line()}"}
        for name, (unit, res) in results.items():
            m = {n: statistics.median(v["rate"]) for n, v in res.items()}
            c = {n: statistics.median(v["cpu_per_mio"]) for n, v in res.items()}
            cells = [f"{m[n]:.0f}" if n in m else "" for n in names]
            ratios = []
            for n in names[1:]:
                if n not in m:
                    ratios.append("")
                    continue
                extra = f" ({1e6 / m[n0]:.0f} / {1e6 / m[n]:.0f} us)" if "QD1 " in name else ""
                ratios.append(f"{m[n0] / m[n]:.2f}x{extra}" if m[n] else "")
            cpus = [f"{c[n]:.1f}" if n in c else "" for n in names]
            table.append(f"| {name} ({unit}) | " + " | ".join(cells + ratios + cpus) + " |")
            summary["workloads"][name] = {"unit": unit, "median": m, "cpu_per_mio": c,
                                          "raw": res}
        pad = " |" * (3 * len(names) - 2)
        if iperf:
            ip = statistics.median(iperf) / 1e6
            table.append(f"| iperf3 loopback, 1 stream (MB/s) | {ip:.0f} |{pad}")
            seq = [k for k in results if "seqread" in k][0]
            for n in names:
                if n in summary["workloads"][seq]["median"]:
                    table.append(f"| 1M seqread / iperf3, {n} | "
                                 f"{summary['workloads'][seq]['median'][n] / ip * 100:.0f}% |{pad}")
            summary["iperf3_MBps"] = ip
            summary["iperf3"] = iperf
        rss = {d.name: d.status("VmHWM") for d in daemons}
        thr = {d.name: d.threads() for d in daemons}
        table.append("| peak RSS (VmHWM, MiB) | " + " | ".join(
            f"{rss[n] / 1024:.1f}" for n in names) + " |" * (2 * len(names)))
        table.append("| threads at end | " + " | ".join(
            str(thr[n]) for n in names) + " |" * (2 * len(names)))
        # The initiator's own CPU use during each run (one CPU = 100%): a single-threaded
        # client at ~100% is the ceiling, whatever the target does.
        table.append("")
        table.append("| workload | " + " | ".join(f"initiator busy, {n} run" for n in names) + " |")
        table.append("|---|" + "---:|" * len(names))
        for name, (unit, res) in results.items():
            b = {n: statistics.median(v["client_busy"]) * 100 for n, v in res.items()}
            table.append(f"| {name} | " + " | ".join(
                f"{b[n]:.0f}%" if n in b else "" for n in names) + " |")
        summary["vmhwm_kb"] = rss
        summary["load"] = loads
        print()
        who = ", ".join(f"{n} ({about[n]}; {args_of.get(n) or 'defaults'})" for n in names)
        print(f"{who}:"
              f" medians of {rounds} alternated rounds of {secs} s; {os.cpu_count()} CPUs;"
              f" load average during the run: {loads[0]} .. {loads[-1]}")
        print("\n".join(table))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1)
        if report:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import report as report_page
            report_page.write(summary, report)
            print()
            for g, fig, ok in report_page.goals(summary):
                print(f"{'----' if ok is None else 'PASS' if ok else 'FAIL'}  {g}: {fig}")
            log(f"report: {os.path.join(report, 'README.md')}")
    finally:
        for d in daemons:
            d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def platform_line():
    """CPU model and kernel, for the report's first line."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, Linux {os.uname().release}"


# The same-build variants `--full` runs next to rtgtd's defaults (coalescing off,
# batching by the receive low-water mark off), so that whether `--coalesce-us auto`,
# `100` or `--iscsi batch=1` should be the default, and whether the
# default loses to any of them anywhere, is measured in the same run.
FULL_AB = ["auto=--coalesce-us auto", "c100=--coalesce-us 100", "batch=--iscsi batch=1"]


if __name__ == "__main__":
    main()
