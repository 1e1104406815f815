#!/usr/bin/env python3
"""rtgt's conformance runner: libiscsi's iscsi-test-cu against a fresh rtgtd LUN.

Starts rtgtd in the foreground on a free loopback port with a private control socket,
configures one target with one 1 GiB sparse file LUN through rtgtadm (tgtadm syntax), runs

    iscsi-test-cu -d -v iscsi://127.0.0.1:PORT/IQN/1 iscsi://127.0.0.1:PORT/IQN/1

(the same URL twice so the two-initiator tests run; the rbd-gateways configuration runs
two rtgtd on one RBD image and gives one URL per gateway) under a timeout, classifies every test
pass / skip / fail (classify.py), writes results/<config>.txt and compares it with
expected/<config>.txt. Some configurations run iscsi-test-cu more than once (a "pass"
with its own flags, test selection and LUN; see CONFIGS), and the verdicts combine test by
test (fail over pass over skip). Exits non-zero on any regression: a test expected to pass
that doesn't, or a test that fails where failure isn't expected. Improvements are listed
with a hint to run --update, which rewrites the expected file from this run.

It also reports how many of the tests Debian's tgtd 1.0.85 passes on the same kind of LUN
(expected/tgtd-1.0.85-pass.txt) pass for rtgt.

Binaries: target/debug/rtgtd and rtgtadm (built first unless --no-build), or RTGT_BIN_DIR,
or RTGTD / RTGTADM. Only tgtd's command line is used (-f, -C, --iscsi portal=), so
RTGTD=/usr/sbin/tgtd RTGTADM=/usr/sbin/tgtadm runs the same suite against Debian's tgtd.
"""

import argparse
import fnmatch
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import classify  # noqa: E402

IQN = "iqn.2026-11.org.rtgt:conformance"
PEER = "tgtd-1.0.85-pass.txt"

# name -> (rtgtadm logicalunit options, LUN size in bytes, passes, further LUNs). The LUN's
# backing store is a sparse file of that size; "loop" configs put a loop device (losetup)
# over the file, and "mem"/"null" ones have no file at all. A pass is (iscsi-test-cu flags,
# test selection or None for every test, LUN); a configuration's passes run one after
# another against the same daemon. Further LUNs ({lun: rtgtadm options}) get a sparse file
# of the same size. The verdicts of the passes combine test by test: a failure in any pass
# is a failure, else a pass in any pass is a pass, else a skip.
# The four issue-3 configurations (default-lun = thick, thin-lun, removable-lun,
# readonly-lun) together cover the suite: SANITIZE runs (-S) on the thin LUN, the only one
# where BLOCK ERASE exists; the readonly and removable LUNs are thin too, so UNMAP exists
# there and must answer WRITE PROTECTED / MEDIUM NOT PRESENT.
DESTRUCTIVE = [(["-d"], None, 1)]
# The tests that run only with LOGICAL BLOCKS PER PHYSICAL BLOCK > 1 (CHECK_FOR_LBPPB_GT_1),
# with the suites they belong to, for a thin 512e LUN (512-byte logical blocks on 4 KiB
# physical ones, the common case). Not GetLBAStatus.UnmapSingle: with LBPPB > 1 it asks for
# the status from an LBA inside a mapped physical block (i + 1) and wants the first LBA
# status descriptor to start at the next physical block (i + LBPPB), where SBC-4 5.8.2.3
# requires the first descriptor to start at the STARTING LOGICAL BLOCK ADDRESS; it runs
# (and passes) on the thin 512n LUN. The expectation is a slip in libiscsi's history:
# d6af861 (2014-07) had every GET LBA STATUS in the test checked against the LBA asked
# for; 9e75b10 (2014-09) moved the check into the test and gave the second loop the
# first loop's `i + lbppb`; with LBPPB 1 the two agree. No answer that follows SBC can
# pass it (a descriptor at i + LBPPB leaves LBAs i + 1 .. i + LBPPB - 1 unreported), and
# tracking mapping per logical block would not change that. The same sequence with the
# standard's answer is crates/rtgtd/tests/backstores.rs
# get_lba_status_on_thin_512e_starts_at_the_lba_asked_for.
LBPPB_SUITES = "ALL.CompareAndWrite,ALL.WriteSame10,ALL.WriteSame16,ALL.Unmap,ALL.GetLBAStatus.Simple"
# The Sanitize suite (-S), with Sanitize.Reset in a suite run of its own. Given a second
# URL, libiscsi's second initiator is one session for the whole suite run, and
# Sanitize.Reservations leaves its RESERVE(6) in place (mpath_sd2_put releases only a
# session it cloned), so in the same suite run Sanitize.Reset's SANITIZE from the first
# initiator meets RESERVATION CONFLICT, as SPC-2 requires. Each comma-separated selection
# is a suite run with its own logins and logouts (iscsi-test-cu registers them last first).
SANITIZE_SUITES = "ALL.Sanitize.[!R]*,ALL.Sanitize.Rea*,ALL.Sanitize.Reservations,ALL.Sanitize.Reset"
# Tests a write-protected LUN can't pass: each writes (WRITE, WRITE SAME, UNMAP, ORWRITE,
# COMPARE AND WRITE, WRITE AND VERIFY, WRITE ATOMIC, EXTENDED COPY into the LUN, the
# writes of the PR access checks and of the residual tests) and wants GOOD. libiscsi
# checks only -d before such a write, never the WP bit it reads from MODE SENSE at
# start-up (WriteVerify1x.Dpo not even -d), so on a write-protected LUN every one of them
# fails with DATA PROTECT / WRITE PROTECTED, the right answer. They run on the writable
# LUNs; on the read-only LUN they are recorded as skips, and the ReadOnly suite (every
# writing command must get WRITE PROTECTED) runs instead.
READONLY_EXCLUDED = [
    "CompareAndWrite.DpoFua", "CompareAndWrite.Miscompare", "CompareAndWrite.Simple",
    "CompareAndWrite.Unwritten", "ExtendedCopy.Simple", "ExtendedCopy.ValidTgtDescr",
    "GetLBAStatus.UnmapSingle", "MultipathIO.CompareAndWrite", "MultipathIO.CompareAndWriteAsync",
    "MultipathIO.Simple", "OrWrite.DpoFua", "OrWrite.Simple", "OrWrite.Verify", "OrWrite.ZeroBlocks",
    "ProutReserve.Access*", "ReceiveCopyResults.CopyStatus", "Unmap.Simple", "Unmap.VPD",
    "Unmap.ZeroBlocks", "Write10.Async", "Write1[026].DpoFua", "Write1[026].Simple",
    "Write1[026].ZeroBlocks", "WriteAtomic16.BeyondEol", "WriteAtomic16.DpoFua",
    "WriteAtomic16.Simple", "WriteAtomic16.WriteProtect", "WriteAtomic16.ZeroBlocks",
    "WriteSame1[06].Check", "WriteSame1[06].Simple", "WriteSame1[06].Unmap",
    "WriteSame1[06].UnmapUntilEnd", "WriteSame1[06].UnmapVPD", "WriteSame1[06].ZeroBlocks",
    "WriteVerify1[026].Dpo", "WriteVerify1[026].Flags", "WriteVerify1[026].Simple",
    "WriteVerify1[026].ZeroBlocks", "iSCSIResiduals.Write*Residuals",
    # Each sends a WRITE, then ABORT TASK / LOGICAL UNIT RESET, and fails if the WRITE ends
    # in CHECK CONDITION: on a read-only LUN they pass only when the TMF wins the race to
    # the WRITE (it failed once in ~10 loaded runs). LUNResetSimpleAsync also fails on its
    # own in libiscsi 1.19: it reads a flag its TMF callback has not set yet.
    "iSCSITMF.*",
]
EXCLUDED_WHY = {
    "readonly-lun": "it writes and expects GOOD; a write-protected LUN answers DATA PROTECT / WRITE PROTECTED",
    "readonly-thick-lun": "it writes and expects GOOD; a write-protected LUN answers DATA PROTECT / WRITE PROTECTED",
    "thin-512e-lun": "with LBPPB > 1 it wants the first LBA status descriptor past the STARTING LOGICAL BLOCK ADDRESS (SBC-4 5.8.2.3 requires it there); it passes on thin-lun's 512n LUN",
}
CONFIGS = {
    "default-lun": ([], 1 << 30, DESTRUCTIVE, {}),
    # sanitize_rate: Sanitize.Reset needs an OVERWRITE still running ~5 s after it
    # started; at 128 MiB/s one pass over 1 GiB takes 8 s on any machine. LUN 2 is the
    # same thin LUN with 4 KiB physical blocks, for the LBPPB > 1 tests.
    "thin-lun": (["--params", "thin_provisioning=1,sanitize_rate=128"], 1 << 30,
                 [(["-d"], None, 1), (["-d", "-S"], SANITIZE_SUITES, 1), (["-d"], LBPPB_SUITES, 2)],
                 {2: ["--params", "thin_provisioning=1,physical_blocksize=4096"]}),
    # Thin as well, so NoMedia.NoMediaSBC's UNMAP exists and answers MEDIUM NOT PRESENT.
    "removable-lun": (["--params", "removable=1,thin_provisioning=1"], 1 << 30, DESTRUCTIVE, {}),
    # Every test with -d but the ones that write and expect GOOD (READONLY_EXCLUDED).
    "readonly-lun": (["--params", "readonly=1,thin_provisioning=1"], 1 << 30,
                     [(["-d"], None, 1, READONLY_EXCLUDED)], {}),
    # The same on a fully provisioned LUN: WRITE SAME's UNMAP bit, which a thick LU does
    # not implement, still meets write protection first (ReadOnly.ReadOnlySBC).
    "readonly-thick-lun": (["--params", "readonly=1"], 1 << 30,
                           [(["-d"], None, 1, READONLY_EXCLUDED)], {}),
    # The whole suite on a thin 512e LUN (4 KiB physical blocks), but
    # GetLBAStatus.UnmapSingle (see LBPPB_SUITES and EXCLUDED_WHY), which passes on
    # thin-lun's 512n LUN.
    "thin-512e-lun": (["--params", "thin_provisioning=1,lbppbe=3"], 1 << 30,
                      [(["-d"], None, 1, ["GetLBAStatus.UnmapSingle"])], {}),
    "4k-lun": (["--blocksize", "4096"], 1 << 30, DESTRUCTIVE, {}),
    "direct-lun": (["--bsoflags", "direct"], 1 << 30, DESTRUCTIVE, {}),
    "sync-lun": (["--bsoflags", "sync"], 1 << 30, DESTRUCTIVE, {}),
    "io-uring-lun": (["--bstype", "io_uring"], 1 << 30, DESTRUCTIVE, {}),
    "io-uring-direct-lun": (["--bstype", "io_uring", "--bsoflags", "direct"], 1 << 30, DESTRUCTIVE, {}),
    "mem-lun": (["--bstype", "mem", "--bsopts", "size=1G"], None, DESTRUCTIVE, {}),
    "loop-lun": (["--loop"], 1 << 30, DESTRUCTIVE, {}),
    # A 1 GiB RBD image (layering only) on a throw-away single-node Ceph cluster
    # (scripts/ceph-cluster.sh), librbd's client cache on as the file LUN's page cache.
    "rbd-lun": (["--rbd"], 1 << 30, DESTRUCTIVE, {}),
    # A 1 GiB sparse file on a throw-away one-node GlusterFS volume
    # (scripts/gluster-cluster.sh), through libgfapi (bstype glfs).
    "glfs-lun": (["--glfs"], 1 << 30, DESTRUCTIVE, {}),
    # Two gateways on one RBD image, as multipath users run them (README: Gateways): two
    # rtgtd with the same target and LUN, portal groups 1 and 2, librbd's cache off, and
    # iscsi-test-cu given one URL per gateway, so its second initiator (the two-initiator
    # reservation tests, MultipathIO) comes in through the other gateway.
    "rbd-gateways": (["--rbd", "--gateways", "--bsopts-extra", "cache=off"], 1 << 30, DESTRUCTIVE, {}),
    # LUN 1 served by rtgt-fileio, a device handler in its own process (bstype handler,
    # docs/handler-protocol.md); run it with --expect default-lun: no regression against
    # the in-process rdwr LU.
    "handler-lun": (["--handler"], 1 << 30, DESTRUCTIVE, {}),
    # The same with the SCSI kind (--device-type handler, rtgt-fileio -p call): every
    # CDB but rtgtd's own (REPORT LUNS, reservations, ALUA) is parsed and answered by the
    # handler; run it with --expect default-lun too.
    "handler-call-lun": (["--handler", "--parse-call"], 1 << 30, DESTRUCTIVE, {}),
    "loop-io-uring-direct-lun": (["--loop", "--bstype", "io_uring", "--bsoflags", "direct"], 1 << 30, DESTRUCTIVE, {}),
}
# What `--config all` runs (and CI): the configurations issue 3 asks for.
ALL = ["default-lun", "thin-lun", "removable-lun", "readonly-lun"]


def say(msg):
    print(f"conformance: {msg}", flush=True)


def free_port():
    # Below the kernel's ephemeral range (32768 and up), so no client socket takes the
    # port between this probe and rtgtd's bind; a slice per process (by pid) keeps
    # parallel runs apart (RTGT_PORT_BASE: twenty ports of one's own on a shared machine).
    base = int(os.environ.get("RTGT_PORT_BASE", 10000 + (os.getpid() % 500) * 20))
    for i in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", base + i))
            except OSError:
                continue
            return base + i
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def find_bins(args):
    bindir = os.environ.get("RTGT_BIN_DIR") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug"
    )
    rtgtd = os.environ.get("RTGTD") or os.path.join(bindir, "rtgtd")
    rtgtadm = os.environ.get("RTGTADM") or os.path.join(bindir, "rtgtadm")
    args.fileio = os.environ.get("RTGT_FILEIO") or os.path.join(bindir, "rtgt-fileio")
    overridden = any(os.environ.get(k) for k in ("RTGT_BIN_DIR", "RTGTD", "RTGTADM"))
    if not args.no_build and not overridden:
        # The networked stores are cargo features; the build scripts/test.sh makes has both.
        features = ["--features", "rtgtd/rbd,rtgtd/glfs"] if args.config in ("rbd-lun", "glfs-lun", "rbd-gateways") else []
        say(" ".join(["cargo build -p rtgtd -p rtgtadm -p rtgt-fileio"] + features))
        r = subprocess.run(["cargo", "build", "-q", "-p", "rtgtd", "-p", "rtgtadm", "-p", "rtgt-fileio"] + features, cwd=ROOT)
        if r.returncode != 0:
            raise SystemExit("conformance: cargo build failed")
    for b in (rtgtd, rtgtadm):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"conformance: {b} not found; build it (cargo build) or set RTGTD/RTGTADM/RTGT_BIN_DIR")
    return rtgtd, rtgtadm


class Daemon:
    """rtgtd -f on a private port and control socket; always killed at exit."""

    def __init__(self, rtgtd, rtgtadm, workdir, logpath, tpgt=None):
        self.rtgtadm = rtgtadm
        self.port = free_port()
        # A control port number nobody else uses; RTGT_RUN_DIR keeps rtgt's socket private
        # (tgtd, if run instead, uses /run/tgtd/socket.N, hence the random N).
        self.ctl = str(random.randint(1000, 60000))
        rundir = os.path.join(workdir, "run" if tpgt is None else f"run{tpgt}")
        os.makedirs(rundir, exist_ok=True)
        self.env = dict(os.environ, RTGT_RUN_DIR=rundir)
        self.log = open(logpath, "wb")
        portal = f"portal=127.0.0.1:{self.port}" + (f",tpgt={tpgt}" if tpgt is not None else "")
        cmd = [rtgtd, "-f", "-C", self.ctl, "--iscsi", portal]
        say("starting " + " ".join(cmd))
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"conformance: rtgtd exited with status {self.proc.returncode} before listening (see its log)")
            if port_open(self.port) and self.adm(["--op", "show", "--mode", "target"], check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit(f"conformance: rtgtd did not listen on 127.0.0.1:{self.port} / answer rtgtadm within {timeout}s")

    def adm(self, args, check=True):
        cmd = [self.rtgtadm, "-C", self.ctl, "--lld", "iscsi"] + args
        r = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise SystemExit(f"conformance: {' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
        return r

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()


def run_cu(url, logpath, timeout, stall, flags=("-d",), tests=None, url2=None):
    """Runs iscsi-test-cu with `flags` (and `-t tests`) on `url` and `url2` (default: `url`
    again); returns (seconds, problem or None).

    Killed after `timeout` seconds in all, or after `stall` seconds without new output (a
    hung test: libiscsi waits for a lost response forever).
    """
    cmd = ["iscsi-test-cu", *flags] + (["-t", tests] if tests else []) + ["-v", url, url2 or url]
    say(f"running {' '.join(cmd)}")
    say(f"  (timeout {timeout}s, {stall}s without output counts as a hang; log {os.path.relpath(logpath, ROOT)})")
    t0 = time.time()
    problem = None
    with open(logpath, "wb") as log:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        size, last_change = 0, time.time()
        while p.poll() is None:
            time.sleep(1)
            now = time.time()
            cur = os.path.getsize(logpath)
            if cur != size:
                size, last_change = cur, now
            if now - t0 > timeout:
                problem = f"TIMEOUT: iscsi-test-cu did not finish within {timeout}s"
            elif now - last_change > stall:
                problem = f"HANG: iscsi-test-cu printed nothing for {stall}s"
            if problem:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                break
    return time.time() - t0, problem


def select_passes(passes, tests):
    """The passes to run when only `tests` (an iscsi-test-cu -t selection) are wanted: a
    pass over every test runs just those; a pass with its own selection runs where the two
    overlap (one a prefix of the other), with the narrower of them."""
    passes = [p if len(p) == 4 else (*p, []) for p in passes]
    if not tests:
        return passes
    out = []
    for flags, sel, lun, excl in passes:
        if sel is None:
            out.append((flags, tests, lun, excl))
            continue
        parts = [max(p, tests, key=len) for p in sel.split(",") if p.startswith(tests) or tests.startswith(p)]
        if parts:
            out.append((flags, ",".join(parts), lun, excl))
    return out


def all_tests():
    """Every test of the installed iscsi-test-cu, as Suite.Test, in its order."""
    out = subprocess.run(["iscsi-test-cu", "-l"], capture_output=True, text=True).stdout
    return [ln.strip()[4:] for ln in out.splitlines() if ln.startswith("ALL.") and ln.count(".") == 2]


def matches(name, patterns):
    """Whether Suite.Test `name` matches one of the fnmatch patterns (Suite or Suite.Test)."""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, p + ".*") for p in patterns)


def exclude(selection, excluded, tests):
    """The -t selection for `selection` (None: every test) without the `excluded`
    tests: whole suites where nothing is left out, else the suite's remaining tests one
    by one (each is then a suite run of its own). Also returns the excluded tests."""
    want = [t for t in tests if selection is None
            or matches(t, [p[4:] if p.startswith("ALL.") else p for p in selection.split(",")])]
    dropped = [t for t in want if matches(t, excluded)]
    parts = []
    for suite in dict.fromkeys(t.split(".")[0] for t in want):
        mine = [t for t in want if t.split(".")[0] == suite]
        keep = [t for t in mine if t not in dropped]
        if len(keep) == len(mine) and len(mine) == sum(1 for t in tests if t.split(".")[0] == suite):
            parts.append(f"ALL.{suite}")
        else:
            parts += [f"ALL.{t}" for t in keep]
    # iscsi-test-cu registers the comma-separated selections last first.
    return ",".join(reversed(parts)), dropped


def merge(runs):
    """Combines the verdicts of several passes test by test: fail over pass over skip."""
    rank = {"skip": 0, "pass": 1, "fail": 2}
    out = {}
    for res in runs:
        for name, v in res.items():
            if name not in out or rank[v[0]] > rank[out[name][0]]:
                out[name] = v
    return dict(sorted(out.items()))


def compare(results, expected):
    """Returns (regressions, improvements, other changes) as lists of text lines.

    Regression: expected pass and not passing now, or failing where fail isn't expected
    (including tests missing from the log and failing tests the file doesn't list).
    """
    regressions, improvements, changes, new = [], [], [], []
    for name in sorted(set(results) | set(expected)):
        got = results.get(name, ("fail", "not run (missing from the log)"))
        want = expected.get(name)
        if want is None:
            line = f"{name}: not in the expectations, {got[0]}" + (f" ({got[1]})" if got[1] else "")
            (regressions if got[0] == "fail" else new).append(line)
            continue
        if got[0] == want[0]:
            continue
        line = f"{name}: expected {want[0]}, got {got[0]}" + (f" ({got[1]})" if got[1] else "")
        if (want[0] == "pass") or (got[0] == "fail"):
            regressions.append(line)
        elif got[0] == "pass":
            improvements.append(line)
        else:
            changes.append(line)  # fail -> skip
    if new:
        changes.append(f"{len(new)} test(s) not in the expectations passed or skipped "
                       "(--update records them)")
    return regressions, improvements, changes


def main(argv):
    ap = argparse.ArgumentParser(description="Run libiscsi's iscsi-test-cu against rtgtd and compare with the expected results.")
    ap.add_argument("--config", default="default-lun", choices=sorted(CONFIGS) + ["all"],
                    help="LUN configuration (default: default-lun); 'all' runs " + ", ".join(ALL))
    ap.add_argument("--expect", metavar="CONFIG",
                    help="compare with expected/CONFIG.txt instead of the config's own file "
                         "(e.g. --config io-uring-lun --expect default-lun: no regression against rdwr)")
    ap.add_argument("--update", action="store_true", help="rewrite expected/<config>.txt from this run")
    ap.add_argument("--no-build", action="store_true", help="don't run cargo build first")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("RTGT_CU_TIMEOUT", "900")),
                    help="seconds before the iscsi-test-cu run is killed (default 900, env RTGT_CU_TIMEOUT)")
    ap.add_argument("--stall", type=int, default=int(os.environ.get("RTGT_CU_STALL", "300")),
                    help="seconds without new output before the run counts as hung (default 300, env RTGT_CU_STALL)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"), help="results directory")
    ap.add_argument("--tests", metavar="SELECTION",
                    help="run only these tests (iscsi-test-cu -t syntax, FAMILY[.SUITE[.TEST]], "
                         "e.g. ALL.Sanitize.Reset) in every pass, and compare only them")
    ap.add_argument("--log", help="classify and compare this existing iscsi-test-cu -v log instead of running")
    args = ap.parse_args(argv)
    if args.config == "all":
        if args.log:
            raise SystemExit("conformance: --log takes one --config")
        rc = 0
        for i, name in enumerate(ALL):
            sub = [a for a in argv if a != "all" and a != "--config" and not a.startswith("--config=")]
            sub += ["--config", name] + (["--no-build"] if i > 0 else [])
            say(f"=== configuration {name}")
            rc |= main(sub)
        say("all configurations OK" if rc == 0 else "FAILED in at least one configuration")
        return rc

    os.makedirs(args.results, exist_ok=True)
    logpath = os.path.join(args.results, f"{args.config}.log")
    passes = select_passes(CONFIGS[args.config][2], args.tests)
    # One log per pass: <config>.log, then <config>.pass2.log, ...
    logpaths = [logpath] + [os.path.join(args.results, f"{args.config}.pass{i}.log") for i in range(2, len(passes) + 1)]
    outpath = os.path.join(args.results, f"{args.config}.txt")
    expected_path = os.path.join(HERE, "expected", f"{args.expect or args.config}.txt")
    if args.update and args.expect:
        raise SystemExit("conformance: --update writes the config's own expectations; drop --expect")
    if args.update and args.tests:
        raise SystemExit("conformance: --update needs a run of every test; drop --tests")
    problems = []
    not_run = {}  # tests a pass leaves out on purpose (see READONLY_EXCLUDED)

    if args.log:
        shutil.copyfile(args.log, logpath) if os.path.abspath(args.log) != os.path.abspath(logpath) else None
        logpaths = [logpath]
    else:
        if shutil.which("iscsi-test-cu") is None:
            raise SystemExit("conformance: iscsi-test-cu not found; run scripts/install-deps.sh (package libiscsi-bin)")
        lun_opts, size, _, more_luns = CONFIGS[args.config]
        more_luns = dict(more_luns)
        loop = "--loop" in lun_opts
        if loop and (not os.path.exists("/dev/loop-control") or shutil.which("losetup") is None):
            # Loop devices absent (a container without them): nothing to run. Present but
            # failing is an error below.
            say(f"SKIPPED {args.config}: loop devices are unavailable here (no /dev/loop-control or losetup)")
            return 0
        rbd = "--rbd" in lun_opts
        if rbd and shutil.which("ceph-mon") is None:
            raise SystemExit("conformance: rbd-lun needs ceph-mon, ceph-osd and rbd; run scripts/install-deps.sh")
        glfs = "--glfs" in lun_opts
        if glfs and shutil.which("glusterd") is None:
            raise SystemExit("conformance: glfs-lun needs glusterd (glusterfs-server); run scripts/install-deps.sh")
        gateways = "--gateways" in lun_opts
        bsopts_extra = lun_opts[lun_opts.index("--bsopts-extra") + 1] if "--bsopts-extra" in lun_opts else None
        rtgtd, rtgtadm = find_bins(args)
        handler = "--handler" in lun_opts
        parse_call = "--parse-call" in lun_opts
        lun_opts = [o for o in lun_opts
                    if o not in ("--loop", "--rbd", "--glfs", "--handler", "--parse-call", "--gateways",
                                 "--bsopts-extra", bsopts_extra)]
        fileio = None
        work = tempfile.mkdtemp(prefix="rtgt-conformance-")
        daemon = None
        daemons = []
        loopdev = None
        ceph_dir = os.path.join(work, "ceph")
        cluster = os.path.join(ROOT, "scripts", "ceph-cluster.sh")
        gluster_dir = os.path.join(work, "gluster")
        gluster = os.path.join(ROOT, "scripts", "gluster-cluster.sh")
        try:
            daemon = Daemon(rtgtd, rtgtadm, work, os.path.join(args.results, f"{args.config}.rtgtd.log"),
                            tpgt=1 if gateways else None)
            daemons.append(daemon)
            daemon.wait_ready()
            if gateways:
                # Started once the first listens, so the two never probe the same port.
                gw2 = Daemon(rtgtd, rtgtadm, work, os.path.join(args.results, f"{args.config}.rtgtd2.log"), tpgt=2)
                daemons.append(gw2)
                gw2.wait_ready()
            backing = []
            if rbd:
                t0 = time.time()
                r = subprocess.run(["bash", cluster, "up", ceph_dir], capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    raise SystemExit(f"conformance: starting the Ceph cluster failed: {r.stderr.strip()}")
                conf = os.path.join(ceph_dir, "ceph.conf")
                subprocess.run(["rbd", "-c", conf, "create", "--size", str(size >> 20), "--image-feature",
                                "layering", "rbd/lun1"], check=True, timeout=60)
                say(f"backing store: rbd/lun1 on a throw-away Ceph cluster (up in {time.time() - t0:.1f}s)")
                backing = ["--bstype", "rbd", "-b", "rbd/lun1", "--bsopts",
                           f"conf={conf}" + (f";{bsopts_extra}" if bsopts_extra else "")]
            elif glfs:
                t0 = time.time()
                r = subprocess.run(["bash", gluster, "up", gluster_dir], capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    raise SystemExit(f"conformance: starting the Gluster volume failed: {r.stderr.strip()}")
                env = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.split("\n") if "=" in line)
                subprocess.run(["bash", gluster, "file", gluster_dir, "lun1.img", str(size)], check=True, timeout=60)
                spec = f"{env['GLUSTER_VOL']}@{env['GLUSTER_HOST']}:lun1.img"
                say(f"backing store: {spec} on a throw-away GlusterFS volume (up in {time.time() - t0:.1f}s)")
                backing = ["--bstype", "glfs", "-b", spec]
            elif size is not None:
                img = os.path.join(work, "lun1.img")
                with open(img, "wb") as f:
                    f.truncate(size)
                backing = ["-b", img]
                if loop:
                    r = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True)
                    if r.returncode != 0:
                        raise SystemExit(f"conformance: losetup -f --show {img} failed: {r.stderr.strip()} "
                                         "(loop devices need root and /dev/loop-control)")
                    loopdev = r.stdout.strip()
                    say(f"backing store: loop device {loopdev} over {img}")
                    backing = ["-b", loopdev]
                if handler:
                    backing = ["--bstype", "handler", "-b", "lun1"]
                    if parse_call:
                        backing = ["--device-type", "handler"] + backing
            for i, d in enumerate(daemons):
                d.adm(["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN])
                d.adm(["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1"] + backing + lun_opts)
                if handler:
                    parse = ["-p", "call"] if parse_call else []
                    fileio = subprocess.Popen([args.fileio, "-e", "2"] + parse + ["lun1", img], env=d.env,
                                              stdin=subprocess.DEVNULL, stdout=d.log, stderr=subprocess.STDOUT)
                    deadline = time.time() + 30
                    while "Handler: attached" not in d.adm(["--op", "show", "--mode", "target"]).stdout:
                        if time.time() > deadline or fileio.poll() is not None:
                            raise SystemExit("conformance: rtgt-fileio did not attach; see the rtgtd log")
                        time.sleep(0.1)
                    say(f"backing store: {img} served by rtgt-fileio (pid {fileio.pid})")
                say("LUN: " + " ".join(line.strip() for line in d.adm(["--op", "show", "--mode", "target"]).stdout.splitlines()
                                       if line.strip().startswith(("Backing store type", "Backing store flags", "Block size", "Size"))))
                d.adm(["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])
                if gateways:
                    # Active/active: each gateway reports its own group and the other's.
                    me, peer = i + 1, 2 - i
                    d.adm(["--op", "update", "--mode", "target", "--tid", "1", "--name", f"alua_state.{me}", "--value", "active"])
                    d.adm(["--op", "update", "--mode", "target", "--tid", "1", "--name", f"alua_peer.{peer}", "--value", "active"])
            if gateways:
                say(f"gateways: tpgt 1 on 127.0.0.1:{daemons[0].port}, tpgt 2 on 127.0.0.1:{daemons[1].port}, one image")
            for (flags, sel, lun, excl), path in zip(passes, logpaths):
                if excl:
                    sel, dropped = exclude(sel, excl, all_tests())
                    for t in dropped:
                        not_run[t] = ("skip", "not run on this LUN: " + EXCLUDED_WHY[args.config])
                    if not sel:
                        open(path, "w").close()
                        continue
                if lun != 1 and lun in more_luns:
                    # Created before the pass that uses it, so the passes before see one LUN.
                    img = os.path.join(work, f"lun{lun}.img")
                    with open(img, "wb") as f:
                        f.truncate(size)
                    daemon.adm(["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", str(lun), "-b", img]
                               + more_luns.pop(lun))
                    say(f"LUN {lun}: {' '.join(CONFIGS[args.config][3][lun])}")
                url = f"iscsi://127.0.0.1:{daemon.port}/{IQN}/{lun}"
                url2 = f"iscsi://127.0.0.1:{daemons[1].port}/{IQN}/{lun}" if gateways else None
                secs, problem = run_cu(url, path, args.timeout, args.stall, flags, sel, url2)
                say(f"iscsi-test-cu ran for {secs:.0f}s")
                if problem:
                    with open(path, errors="replace") as f:
                        last = classify.last_test(f.read()) or "(before the first test)"
                    problems.append(f"{problem}; killed in {last} (classified fail, later tests not run)")
            for i, d in enumerate(daemons):
                if not d.alive():
                    log = f"{args.config}.rtgtd{'' if i == 0 else i + 1}.log"
                    problems.append(f"rtgtd died during the run (exit status {d.proc.returncode}); see {log}")
        finally:
            if fileio is not None:
                fileio.kill()
                fileio.wait()
            for d in daemons:
                d.stop()
            if loopdev:
                subprocess.run(["losetup", "-d", loopdev], capture_output=True)
            if rbd:
                subprocess.run(["bash", cluster, "down", ceph_dir], capture_output=True)
            if glfs:
                subprocess.run(["bash", gluster, "down", gluster_dir], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)

    runs = [not_run]
    for path in logpaths:
        with open(path, errors="replace") as f:
            runs.append(classify.parse(f.read()))
    results = merge(runs)
    with open(outpath, "w", encoding="utf-8") as f:
        f.write(classify.format_results(results))
    say(f"results: {os.path.relpath(outpath, ROOT)}")
    print(classify.counts(results), flush=True)
    if not results:
        problems.append("no tests found in the log")

    # The peer baseline: what Debian's tgtd passes on the same kind of LUN.
    peer_path = os.path.join(HERE, "expected", PEER)
    if args.config == "default-lun" and not args.tests and os.path.exists(peer_path):
        with open(peer_path) as f:
            peer = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        missing = [t for t in peer if results.get(t, ("fail",))[0] != "pass"]
        say(f"tgtd 1.0.85 baseline: {len(peer) - len(missing)}/{len(peer)} of the tests tgtd passes pass in this run")
        for t in missing:
            st = results.get(t, ("fail", "not run"))
            print(f"  not passing (tgtd passes): {t}: {st[0]}" + (f" ({classify.clean(st[1])})" if st[1] else ""))

    if args.update:
        if problems:
            for p in problems:
                say(p)
            say("not updating the expectations from a broken run")
            return 1
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "unknown"
        c = {s: sum(1 for v in results.values() if v[0] == s) for s in classify.STATUSES}
        with open(expected_path, "w", encoding="utf-8") as f:
            f.write(f"# Expected iscsi-test-cu results for the {args.config} configuration: Suite.Test<TAB>status<TAB>reason.\n"
                    f"# Written by `tests/conformance/run.sh --config {args.config} --update` (HEAD {rev}):\n"
                    f"# tests={len(results)} pass={c['pass']} skip={c['skip']} fail={c['fail']}. "
                    "A test listed pass must keep passing; only fail entries may fail.\n")
            f.write(classify.format_results(results))
        say(f"wrote {os.path.relpath(expected_path, ROOT)}")
        return 0

    if not os.path.exists(expected_path):
        problems.append(f"no expectations for {args.config}: run with --update to create {os.path.relpath(expected_path, ROOT)}")
        expected = {}
        regressions, improvements, changes = [], [], []
    else:
        expected = classify.read_results(expected_path)
        if args.tests:
            # A partial run answers for the tests it ran.
            expected = {k: v for k, v in expected.items() if k in results}
        regressions, improvements, changes = compare(results, expected)
    c = {s: sum(1 for v in expected.values() if v[0] == s) for s in classify.STATUSES}
    if expected:
        say(f"expected: tests={len(expected)} pass={c['pass']} skip={c['skip']} fail={c['fail']}")
    if improvements:
        say(f"{len(improvements)} improvement(s):")
        for line in improvements:
            print("  + " + line)
        say("update the expectations with: bash tests/conformance/run.sh --update")
    if changes:
        say(f"{len(changes)} other change(s):")
        for line in changes:
            print("  ~ " + line)
    if regressions:
        say(f"{len(regressions)} REGRESSION(S):")
        for line in regressions:
            print("  - " + line)
    for p in problems:
        say(p)
    ok = not regressions and not problems
    say("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
