#!/usr/bin/env python3
"""rtgtd's glfs store against tgtd's bs_glfs (Debian tgt-glusterfs), same file, side by side.

Starts a throw-away one-node GlusterFS volume (scripts/gluster-cluster.sh: glusterd and one
brick on a private loopback address), creates one file on it and fills it with random data
(written into the brick's copy, which on a one-brick volume is the file itself), exports it
through rtgtd (`--bstype glfs`, libgfapi's async calls) and through tgtd (`--bstype glfs`,
bs_glfs: synchronous gfapi calls on tgtd's 16 I/O threads), and runs each workload
alternately on one and the other for several rounds; prints the medians:

  4K randread QD16      iscsi-perf -r -m 16 -b 8 (libiscsi), random 4 KiB reads
  4K randwrite QD16     qemu-img bench -w -d 16 -s 4k -S 7919 x 4 KiB (libiscsi): 4 KiB
                        writes at a stride that wraps around the file, so successive writes
                        land far apart (qemu-img bench has no random mode)
  1M seqread QD8        iscsi-perf -m 8 -b 2048, sequential 1 MiB reads

Both daemons use gfapi's defaults (write-behind on). The volume runs on the same machine as
the targets and the initiator. tgtd is stopped with SIGKILL: deleting a glfs LUN (or
tgtd's own clean-up) crashes 1.0.85's bs_glfs, which closes the file and the volume twice.
Needs root, libiscsi-bin, qemu-img with iSCSI, glusterfs-server (bookworm-backports), tgt
and tgt-glusterfs: scripts/install-deps.sh installs them. Run through
`bash bench/run.sh --glfs` (builds rtgtd in release with the glfs feature).
"""

import argparse
import glob
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, ".."))
IQN = "iqn.2026-12.org.rtgt:bench-glfs"
FILE_MB = 1024


def setup(d, spec):
    d.adm(["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN])
    d.adm(["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
           "--bstype", "glfs", "-b", spec])
    d.adm(["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])


def url(d):
    return f"iscsi://127.0.0.1:{d.port}/{IQN}/1"


def randwrite(d, count):
    out = bench.run(["qemu-img", "bench", "-f", "raw", "-t", "none", "-n", "-w", "-d", "16",
                     "-s", "4k", "-S", str(7919 * 4096), "-c", str(count), url(d)], timeout=600)
    m = re.search(r"Run completed in ([\d.]+) seconds", out)
    if not m:
        raise RuntimeError(f"no result from qemu-img bench:\n{out}")
    return count / float(m.group(1))


def kill_tgtd(t):
    """SIGKILL, not tgtadm --op delete or SIGTERM: bs_glfs 1.0.85 crashes closing its LUN."""
    if t.proc.poll() is None:
        t.proc.send_signal(signal.SIGKILL)
        t.proc.wait()
    for f in glob.glob(f"/var/run/tgtd/socket.{t.control}*"):
        os.unlink(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rtgt-bench-glfs-")
    gdir = os.path.join(work, "gluster")
    cluster = os.path.join(ROOT, "scripts", "gluster-cluster.sh")
    rtgtd = tgtd = None
    try:
        t0 = time.time()
        out = bench.run(["bash", cluster, "up", gdir], timeout=120)
        env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
        bench.log(f"volume up in {time.time() - t0:.1f}s ({env['GLUSTER_HOST']})")
        bench.run(["bash", cluster, "file", gdir, "bench.img", f"{FILE_MB}M"])
        # Data everywhere, so reads read something; the brick's file is the file.
        bench.make_file(os.path.join(env["GLUSTER_BRICK"], "bench.img"), FILE_MB << 20)
        spec = f"{env['GLUSTER_VOL']}@{env['GLUSTER_HOST']}:bench.img"
        rtgtd = bench.Rtgtd(work, "glfs", [])
        tgtd = bench.Tgtd(work, "glfs")
        daemons = [rtgtd, tgtd]
        for d in daemons:
            setup(d, spec)
        secs = a.seconds
        rate = randwrite(rtgtd, 3000)
        count = max(3000, int(rate * secs))
        wl = [
            ("4K randread QD16", "IOPS", lambda d: bench.iscsi_perf(url(d), 16, 8, secs, True)[0]),
            ("4K randwrite QD16 (strided)", "IOPS", lambda d: randwrite(d, count)),
            ("1M seqread QD8", "MB/s",
             lambda d: bench.iscsi_perf(url(d), 8, 2048, secs, False)[0] * (1 << 20) / 1e6),
        ]
        bench.log(f"machine: {os.cpu_count()} CPUs, load {bench.loadavg()}; {a.rounds} rounds x ~{secs} s;"
                  f" file {FILE_MB} MiB on a one-brick volume")
        rows = []
        for name, unit, fn in wl:
            res = {d.name: [] for d in daemons}
            for r in range(a.rounds):
                order = daemons if r % 2 == 0 else daemons[::-1]
                for d in order:
                    res[d.name].append(round(fn(d)))
            m = {k: statistics.median(v) for k, v in res.items()}
            bench.log(f"{name}: rtgtd {m['rtgtd']:.0f} {unit} {res['rtgtd']}, tgtd {m['tgtd']:.0f} {unit} {res['tgtd']}")
            rows.append((name, unit, m["rtgtd"], m["tgtd"]))
        print(f"\nglfs: rtgtd vs tgtd bs_glfs, medians of {a.rounds} alternated rounds, load {bench.loadavg()}")
        print("| workload | rtgtd | tgtd | rtgtd/tgtd |")
        print("|---|---|---|---|")
        for name, unit, r, t in rows:
            print(f"| {name} | {r:.0f} {unit} | {t:.0f} {unit} | {r / t if t else float('nan'):.2f}x |")
    finally:
        if tgtd is not None:
            kill_tgtd(tgtd)
        if rtgtd is not None:
            rtgtd.stop()
        subprocess.run(["bash", cluster, "down", gdir], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
