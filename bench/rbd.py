#!/usr/bin/env python3
"""rtgtd's rbd store against tgtd's bs_rbd (Debian tgt-rbd), same image, side by side.

Starts a throw-away single-node Ceph cluster (scripts/ceph-cluster.sh: one mon, one
memstore OSD on loopback), creates one RBD image and fills it, exports it through rtgtd
(`--bstype rbd`) and through tgtd (`--bstype rbd`, bs_rbd), and runs each workload
alternately on one and the other for several rounds; prints the medians:

  4K randread QD1 / QD32   iscsi-perf -r (libiscsi), random 4 KiB reads
  4K randwrite QD32        qemu-img bench -w -s 4k -S 4132864 (libiscsi): 4 KiB writes at a
                           stride of 1009 x 4 KiB that wraps around the image, so successive
                           writes land on different RADOS objects (qemu-img bench has no
                           random mode; for RBD, whose cost is per object, the stride is as
                           scattered as random)

Both daemons use librbd's defaults (client cache on). The cluster runs on the same
machine as the targets and the initiator, so the figures measure the targets' overhead
on top of librbd more than Ceph. Needs root (tgtd), libiscsi-bin, qemu-img with iSCSI,
ceph-mon ceph-osd ceph-common, tgt and tgt-rbd: scripts/install-deps.sh installs them.
Run through `bash bench/run.sh --rbd` (builds rtgtd in release with the rbd feature).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, ".."))
IQN = "iqn.2026-11.org.rtgt:bench-rbd"
IMAGE_MB = 512


def setup(d, conf):
    d.adm(["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN])
    d.adm(["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
           "--bstype", "rbd", "-b", "rbd/bench", "--bsopts", f"conf={conf}"])
    d.adm(["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])


def url(d):
    return f"iscsi://127.0.0.1:{d.port}/{IQN}/1"


def randwrite(d, count):
    out = bench.run(["qemu-img", "bench", "-f", "raw", "-w", "-d", "32", "-s", "4k",
                     "-S", str(1009 * 4096), "-c", str(count), url(d)], timeout=600)
    m = re.search(r"Run completed in ([\d.]+) seconds", out)
    if not m:
        raise RuntimeError(f"no result from qemu-img bench:\n{out}")
    return count / float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rtgt-bench-rbd-")
    ceph = os.path.join(work, "ceph")
    cluster = os.path.join(ROOT, "scripts", "ceph-cluster.sh")
    daemons = []
    try:
        t0 = time.time()
        env = os.path.join(ceph, "ceph.conf")
        bench.run(["bash", cluster, "up", ceph], timeout=120)
        bench.log(f"cluster up in {time.time() - t0:.1f}s")
        bench.run(["rbd", "-c", env, "create", "--size", str(IMAGE_MB), "--image-feature", "layering",
                   "rbd/bench"])
        # Every object exists, so reads go to the OSD rather than to a missing object.
        bench.run(["rbd", "-c", env, "bench", "--io-type", "write", "--io-size", "4M",
                   "--io-total", f"{IMAGE_MB}M", "--io-pattern", "seq", "rbd/bench"], timeout=300)
        os.environ["CEPH_CONF"] = env
        daemons.append(bench.Rtgtd(work, "rbd", []))
        daemons.append(bench.Tgtd(work, "rbd"))
        for d in daemons:
            setup(d, env)
        secs = a.seconds
        # Size the write count from a first short run so a round takes about `secs`.
        rate = randwrite(daemons[0], 5000)
        count = max(5000, int(rate * secs))
        wl = [
            ("4K randread QD1", lambda d: bench.iscsi_perf(url(d), 1, 8, secs, True)[0]),
            ("4K randread QD32", lambda d: bench.iscsi_perf(url(d), 32, 8, secs, True)[0]),
            ("4K randwrite QD32 (strided)", lambda d: randwrite(d, count)),
        ]
        bench.log(f"machine: {os.cpu_count()} CPUs, load {bench.loadavg()}; {a.rounds} rounds x ~{secs} s;"
                  f" image {IMAGE_MB} MiB on memstore")
        rows = []
        for name, fn in wl:
            res = {d.name: [] for d in daemons}
            for r in range(a.rounds):
                order = daemons if r % 2 == 0 else daemons[::-1]
                for d in order:
                    res[d.name].append(fn(d))
            m = {k: statistics.median(v) for k, v in res.items()}
            bench.log(f"{name}: rtgtd {m['rtgtd']:.0f} IOPS {res['rtgtd']}, tgtd {m['tgtd']:.0f} IOPS {res['tgtd']}")
            rows.append((name, m["rtgtd"], m["tgtd"]))
        print(f"\nrbd: rtgtd vs tgtd bs_rbd, medians of {a.rounds} alternated rounds, load {bench.loadavg()}")
        print("| workload | rtgtd IOPS | tgtd IOPS | rtgtd/tgtd |")
        print("|---|---|---|---|")
        for name, r, t in rows:
            print(f"| {name} | {r:.0f} | {t:.0f} | {r / t if t else float('nan'):.2f}x |")
    finally:
        for d in daemons:
            d.stop()
        subprocess.run(["bash", cluster, "down", ceph], capture_output=True)


if __name__ == "__main__":
    main()
