#!/usr/bin/env python3
"""A LU served by rtgt-fileio (bstype handler) against the same file served in-process
(rdwr), in one rtgtd, same run.

One 1 GiB file in the page cache; target "inproc" serves it with bstype rdwr, target
"handler" with bstype handler and `rtgt-fileio -e N` on the same file. Each workload runs
alternately on one and the other for several rounds; the table gives medians, the
handler/in-process ratio and CPU seconds per million I/Os: rtgtd's for the in-process
LU, rtgtd's plus rtgt-fileio's for the handler LU (utime+stime deltas from /proc).

Workloads: 4 KiB random read QD32 (iscsi-perf -r) and 4 KiB random write QD32 (qemu-img
bench -w -S 7919 x 4 KiB: libiscsi's tools have no random writer and qemu-img bench no
random mode, so successive writes land a prime stride apart, wrapping around the file,
as bench/glfs.py does).

Run it through bench/run.sh --handler, which builds the release binaries first.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

IQN = {"inproc": "iqn.2026-12.org.rtgt.bench:inproc", "handler": "iqn.2026-12.org.rtgt.bench:handler"}


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / bench.CLK_TCK


def thread_cpu(pid):
    """CPU seconds per thread name (threads of one name summed), for where it goes."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / bench.CLK_TCK
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                cs = sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
        except OSError:
            continue
        # Context switches per I/O once divided like the CPU seconds ("NAME cs").
        out[name + " cs"] = out.get(name + " cs", 0) + cs / 1e6
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="rtgt-fileio -e (queues)")
    ap.add_argument("--dir", default="/var/tmp/rtgt-bench")
    ap.add_argument("--bindir", help="rtgtd, rtgtadm and rtgt-fileio from here (another build: a before/after)")
    ap.add_argument("--fileio-args", default="", help="more rtgt-fileio options (an A/B)")
    ap.add_argument("--per-thread", action="store_true", help="log CPU per thread name")
    ap.add_argument("--only", default="", help="only workloads whose name contains this")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    img = os.path.join(a.dir, "cached.img")
    bench.make_file(img, 1 << 30)
    bench.warm(img)
    workdir = tempfile.mkdtemp(prefix="rtgt-bench-handler-")
    d = None
    fileio = None
    try:
        d = bench.Rtgtd(workdir, "rdwr", [], bindir=a.bindir)
        for tid, name in ((1, "inproc"), (2, "handler")):
            d.adm(["--op", "new", "--mode", "target", "--tid", str(tid), "-T", IQN[name]])
            lu = ["-b", img] if name == "inproc" else ["--bstype", "handler", "-b", "bench"]
            d.adm(["--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1"] + lu)
            d.adm(["--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL"])
        fileio = subprocess.Popen([os.path.join(d.bin, "rtgt-fileio"), "-e", str(a.threads)]
                                 + a.fileio_args.split() + ["bench", img],
                                  env=d.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            out = subprocess.run([os.path.join(d.bin, "rtgtadm"), "-C", "1", "--op", "show", "--mode", "target"],
                                 env=d.env, capture_output=True, text=True).stdout
            if "Handler: attached" in out:
                break
            if time.time() > deadline:
                raise SystemExit("rtgt-fileio did not attach")
            time.sleep(0.1)

        def url(name):
            return f"iscsi://127.0.0.1:{d.port}/{IQN[name]}/1"

        count = {}

        def randwrite(name, n):
            out = bench.run(["qemu-img", "bench", "-f", "raw", "-w", "-d", "32", "-s", "4k",
                             "-S", str(7919 * 4096), "-c", str(n), url(name)], timeout=600)
            m = re.search(r"Run completed in ([\d.]+) seconds", out)
            if not m:
                raise RuntimeError(f"no result from qemu-img bench:\n{out}")
            return n / float(m.group(1)), n

        def writes(name):
            if "n" not in count:
                rate, _ = randwrite(name, 20000)
                count["n"] = max(20000, int(rate * a.seconds))
            return randwrite(name, count["n"])

        wl = [
            ("4K randread QD32", lambda n: bench.iscsi_perf(url(n), 32, 8, a.seconds, True)),
            ("4K randwrite QD32", writes),
        ]
        wl = [w for w in wl if a.only in w[0]]
        pids = {"inproc": [d.proc.pid], "handler": [d.proc.pid, fileio.pid]}
        results = {}
        for wname, fn in wl:
            res = {n: {"rate": [], "cpu": []} for n in IQN}
            for r in range(a.rounds):
                for n in (("inproc", "handler") if r % 2 == 0 else ("handler", "inproc")):
                    c0 = sum(cpu_of(p) for p in pids[n])
                    t0 = {p: thread_cpu(p) for p in pids[n]} if a.per_thread else {}
                    rate, ios = fn(n)
                    c1 = sum(cpu_of(p) for p in pids[n])
                    for p, before in t0.items():
                        after = thread_cpu(p)
                        per = {k: (v - before.get(k, 0)) / ios * 1e6 for k, v in after.items() if ios}
                        bench.log("    " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items()) if v > 0))
                    res[n]["rate"].append(rate)
                    res[n]["cpu"].append((c1 - c0) / ios * 1e6 if ios else 0)
                    bench.log(f"  {wname:18} round {r + 1} {n:8} {rate:9.0f} IOPS  cpu {c1 - c0:.2f} s"
                              f"  {(c1 - c0) / ios * 1e6 if ios else 0:.1f} s/10^6 I/O")
            results[wname] = res
        print()
        print(f"handler (rtgt-fileio -e {a.threads} {a.fileio_args}) vs in-process rdwr, one rtgtd, same file in the page cache;"
              f" medians of {a.rounds} alternated rounds of {a.seconds} s; {os.cpu_count()} CPUs")
        print("| workload | in-process IOPS | handler IOPS | handler/in-process | CPU s per 10^6 I/O in-process | handler (rtgtd + rtgt-fileio) |")
        print("|---|---:|---:|---:|---:|---:|")
        for wname, res in results.items():
            m = {n: statistics.median(res[n]["rate"]) for n in res}
            c = {n: statistics.median(res[n]["cpu"]) for n in res}
            ratios = sorted(h / i * 100 for h, i in zip(res["handler"]["rate"], res["inproc"]["rate"]))
            print(f"| {wname} | {m['inproc']:.0f} | {m['handler']:.0f} | {m['handler'] / m['inproc'] * 100:.0f}%"
                  f" (pairs {ratios[0]:.0f}-{ratios[-1]:.0f}%) | {c['inproc']:.1f} | {c['handler']:.1f} |")
    finally:
        if fileio is not None:
            fileio.kill()
            fileio.wait()
        if d is not None:
            d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
