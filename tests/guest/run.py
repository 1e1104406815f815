#!/usr/bin/env python3
"""rtgt's guest-kernel interop suite: a real Linux kernel is the initiator.

For each scenario (disk, tape, changer, cd, jukebox, jukebox-toml) and route (A: QEMU's libiscsi with SCSI
pass-through; B: the guest's own open-iscsi and iscsi_tcp; V: vhost-user-scsi, QEMU's
vhost-user-scsi-pci on a socket the target is bound to, the guest's memory shared with rtgtd), this starts a fresh daemon on a
free loopback port, configures it with the tgtadm command line (images made with the
tgtimg command line), boots the guest (boot.py) and runs scenarios/<scenario>.sh in it, where
Linux's sd, st, ch and sr drivers, mkfs/fsck, mt, tar, dd, mtx and mount drive the LUNs.

    bash tests/guest/run.sh [--daemon rtgtd|tgtd] [--scenario disk,tape,...] [--route A,B,V] [--smp N --queues Q]
                            [--no-build] [-v]

--daemon tgtd runs the same scenarios against Debian's tgtd (tgtadm, tgtimg): the reference
that shows a scenario itself is right. Binaries: target/debug/{rtgtd,rtgtadm,rtgtimg} (built
first unless --no-build), or RTGT_BIN_DIR, or RTGTD / RTGTADM / RTGTIMG.

Device types rtgtd does not have yet are not failures: a scenario whose device type rtgtadm
(or rtgtimg) refuses is reported as N/A with the tool's message (see GATED).
Exits non-zero if any scenario fails. Logs: target/guest-results/ (or RTGT_GUEST_RESULTS).
"""

import argparse
import hashlib
import json
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
import boot  # noqa: E402

# Device types rtgtd may not implement yet. Before such a scenario runs against rtgtd, a
# scratch LU of each of its types is created (Daemon.supports); if rtgtadm or rtgtimg
# refuses, the scenario is "not available" rather than failed. Remove a type from here once
# it is in main, so a refusal becomes a failure. Every type the suite drives is in main now.
GATED = set()
SCENARIOS = ["disk", "tape", "changer", "cd", "jukebox", "jukebox-toml", "passthrough", "iser", "hotplug",
             "reconnect"]
DEVICE_TYPES = {"disk": ["disk"], "tape": ["tape"], "changer": ["tape", "changer"], "cd": ["cd"],
                "jukebox": ["cd", "changer"], "jukebox-toml": ["cd", "changer"],
                "passthrough": ["disk", "tape", "cd", "changer"], "iser": ["disk"], "hotplug": ["disk"],
                "reconnect": ["disk"]}
# Scenarios that run another one's guest script with a different host-side set-up.
SCRIPTS = {"jukebox-toml": "jukebox"}
ROUTES = ["A", "B", "V"]
# Routes run unless --route says otherwise (V, vhost-user-scsi, has its own step in
# scripts/test.sh).
DEFAULT_ROUTES = ["A", "B"]
# RTGT_GUEST_RESULTS: somewhere else (two runs at once must not share their logs).
RESULTS = os.environ.get("RTGT_GUEST_RESULTS") or os.path.join(ROOT, "target", "guest-results")


def say(msg):
    print(f"guest: {msg}", flush=True)


class NotAvailable(Exception):
    """rtgtd (or rtgtimg) refused a device type listed in GATED."""


class Failed(Exception):
    pass


def free_port():
    # Below the ephemeral range, a slice per process (as tests/conformance/run.py does).
    base = 20000 + (os.getpid() % 500) * 20
    for i in range(20):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + i))
            except OSError:
                continue
            return base + i
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """rtgtd or tgtd in the foreground on a private portal and control port."""

    def __init__(self, flavor, bins, work, log, args=()):
        self.flavor = flavor
        self.daemon, self.adm_bin, self.img_bin = bins
        self.port = free_port()
        # tgtd keeps the control port in a 16-bit signed field: -C above 32767 is refused.
        self.ctl = str(random.randint(1000, 32000))
        rundir = os.path.join(work, "run")
        os.makedirs(rundir, exist_ok=True)
        self.env = dict(os.environ, RTGT_RUN_DIR=rundir)
        self.logf = open(log, "wb")
        cmd = [self.daemon, "-f", "-C", self.ctl, "--iscsi", f"portal=127.0.0.1:{self.port}", *args]
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                self.stop()
                with open(log, errors="replace") as f:
                    last = (f.read().strip().splitlines() or [""])[-1]
                raise Failed(f"{self.daemon} exited with status {self.proc.returncode} at start: {last}")
            if self.adm(["--op", "show", "--mode", "target"], check=False).returncode == 0:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    break
                except OSError:
                    pass
            if time.time() > deadline:
                self.stop()
                raise Failed(f"{self.daemon} did not come up within 30s (log {log})")
            time.sleep(0.1)

    def adm(self, args, check=True):
        cmd = [self.adm_bin, "-C", self.ctl, "--lld", "iscsi"] + [str(a) for a in args]
        return self._run(cmd, check)

    def img(self, args):
        return self._run([self.img_bin] + [str(a) for a in args], True)

    def _run(self, cmd, check):
        r = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and check:
            msg = f"`{' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}` " \
                  f"exited {r.returncode}: {(r.stderr or r.stdout).strip()}"
            raise Failed(msg)
        return r

    def target(self, tid, iqn):
        self.adm(["--op", "new", "--mode", "target", "--tid", tid, "-T", iqn])
        self.adm(["--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL"])

    def lu(self, tid, lun, device_type, *opts):
        self.adm(["--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", lun,
                  "--device-type", device_type, *opts])

    def lu_update(self, tid, lun, params):
        self.adm(["--op", "update", "--mode", "logicalunit", "--tid", tid, "--lun", lun, "--params", params])

    def supports(self, device_type, work):
        """Raises NotAvailable if this daemon refuses the simplest LU of device_type (on a
        scratch target, deleted again), or its image tool refuses to make the medium."""
        probe = os.path.join(work, f"probe-{device_type}")
        try:
            if device_type == "tape":
                tape_image(self, probe, "PROBE001", 1)
                opts = ["--bstype", "ssc", "-b", probe]
            else:
                # A changer's backing file is tgt's 1 KiB placeholder; a disc, any image.
                with open(probe, "wb") as f:
                    f.write(bytes(1024 if device_type == "changer" else 1 << 20))
                opts = ["-b", probe]
            self.adm(["--op", "new", "--mode", "target", "--tid", 99, "-T", "iqn.2026-11.org.rtgt:probe"])
            self.lu(99, 1, device_type, *opts)
        except Failed as e:
            raise NotAvailable(str(e)) from None
        finally:
            self.adm(["--op", "delete", "--mode", "target", "--tid", 99, "--force"], check=False)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)  # tgtd ignores SIGTERM
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()


class Setup:
    """What a scenario's guest gets: the target, its LUNs (LUN 0 not counted), the
    scenario's arguments and files, and the host steps it may ask for."""

    def __init__(self, iqn, luns, args=(), files=(), hooks=None, local=()):
        self.iqn, self.luns, self.args, self.files, self.hooks = iqn, luns, list(args), list(files), hooks or {}
        # QEMU's own devices beside route A's (boot.py local=): [("hd" | "cd", path)].
        self.local = list(local)


# --- scenario set-ups: tgtadm / tgtimg command lines, as a tgt user writes them ----------

def setup_disk(d, work, _route):
    iqn = "iqn.2026-11.org.rtgt:guest-disk"
    img = os.path.join(work, "disk.img")
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    d.target(1, iqn)
    d.lu(1, 1, "disk", "-b", img)
    return Setup(iqn, [1])


def tape_image(d, path, barcode, size_mb):
    d.img(["--op", "new", "--device-type", "tape", "--barcode", barcode, "--size", size_mb,
           "--type", "data", "--file", path])


def setup_tape(d, work, _route):
    iqn = "iqn.2026-11.org.rtgt:guest-tape"
    img = os.path.join(work, "TAPE0001")
    tape_image(d, img, "TAPE0001", 64)
    d.target(1, iqn)
    d.lu(1, 1, "tape", "--bstype", "ssc", "-b", img)
    return Setup(iqn, [1])


BARCODES = ["A0000001", "A0000002", "A0000003", "A0000004"]


def setup_changer(d, work, _route):
    """A drive (LUN 1, empty) and a changer (LUN 2): picker at 1, the drive at 2, six
    storage slots at 1000 (four cartridges), two import/export slots at 10 (tgt's
    --params syntax, doc/README.vtl). Against rtgtd, cartridges 3 and 4 are made by tgt's
    own tgtimg where it is installed, so the guest also writes and reads a tgt-made tape."""
    iqn = "iqn.2026-11.org.rtgt:guest-vtl"
    home = os.path.join(work, "tapes")
    os.makedirs(home)
    tgtimg = "/usr/sbin/tgtimg" if d.flavor == "rtgtd" and os.access("/usr/sbin/tgtimg", os.X_OK) else None
    for i, b in enumerate(BARCODES):
        path = os.path.join(home, b)
        if i >= 2 and tgtimg:
            r = subprocess.run([tgtimg, "--op", "new", "--device-type", "tape", "--barcode", b, "--size", "32",
                                "--type", "data", "--file", path], capture_output=True, text=True)
            if r.returncode != 0:
                raise Failed(f"tgtimg: {(r.stderr or r.stdout).strip()}")
        else:
            tape_image(d, path, b, 32)
    if tgtimg:
        say(f"cartridges {BARCODES[2]} and {BARCODES[3]} made by {tgtimg}")
    smc = os.path.join(work, "smc")
    with open(smc, "wb") as f:
        f.write(bytes(1024))
    d.target(1, iqn)
    d.lu(1, 1, "tape", "--bstype", "ssc")
    d.lu(1, 2, "changer", "-b", smc)
    for p in [f"media_home={home}",
              "element_type=1,start_address=1,quantity=1",
              "element_type=4,start_address=2,quantity=1",
              "element_type=4,address=2,tid=1,lun=1",
              "element_type=2,start_address=1000,quantity=6",
              *[f"element_type=2,address={1000 + i},barcode={b},sides=1" for i, b in enumerate(BARCODES)],
              "element_type=3,start_address=10,quantity=2"]:
        d.lu_update(1, 2, p)
    return Setup(iqn, [1, 2], args=BARCODES)


def iso(work, name, files):
    """An ISO 9660 image (Rock Ridge, Joliet) of `files` {path: bytes}, and the manifest
    of what it holds, as the guest's sha256sum -c reads it."""
    src = os.path.join(work, name + ".src")
    lines = []
    for path, data in sorted(files.items()):
        full = os.path.join(src, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {path}\n")
    img = os.path.join(work, name + ".iso")
    r = subprocess.run(["genisoimage", "-quiet", "-R", "-J", "-V", name.upper(), "-o", img, src],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Failed(f"genisoimage: {r.stderr.strip()}")
    manifest = os.path.join(work, name + ".sha256")
    with open(manifest, "w") as f:
        f.writelines(lines)
    return img, manifest


# How each daemon is told to put a medium in a CD/DVD drive and to take it out: tgt takes
# the drive offline (`online=0`, no medium) and only then accepts another `path=`; rtgt's
# `media=` swaps in one step and `eject=1` ejects (issue 7 item 3).
LOAD_PARAMS = {"tgtd": ["online=0", "path={}"], "rtgtd": ["media={}"]}
EJECT_PARAMS = {"tgtd": ["online=0"], "rtgtd": ["eject=1"]}


def setup_cd(d, work, _route):
    """A DVD-ROM drive (LUN 1) with disc 1; the guest asks the host to load disc 1 or 2
    (host-step load-disc N) and to eject (host-step eject-disc), as an operator would."""
    iqn = "iqn.2026-11.org.rtgt:guest-cd"
    rnd = random.Random(7)
    discs = {
        1: {"README.TXT": b"disc one\n", "data/random.bin": rnd.randbytes(3 << 20),
            "data/odd-size.bin": rnd.randbytes(2048 * 5 + 7), "data/deep/er/tiny": b"x", "empty": b""},
        2: {"DISC2.TXT": b"disc two\n", "more/random.bin": rnd.randbytes(1 << 20)},
    }
    made = {n: iso(work, f"disc{n}", files) for n, files in discs.items()}
    d.target(1, iqn)
    d.lu(1, 1, "cd", "-b", made[1][0])

    def load(args):
        img = made[int(args[0])][0]
        for p in LOAD_PARAMS[d.flavor]:
            d.lu_update(1, 1, p.format(img))
        return True, f"loaded {os.path.basename(img)}"

    def eject(_args):
        for p in EJECT_PARAMS[d.flavor]:
            d.lu_update(1, 1, p)
        return True, "ejected"
    # tgtd 1.0.85 tells the initiator nothing when `path=` swaps the disc of a drive it
    # has taken offline and back (no unit attention, no media event), so Linux keeps the
    # old disc's capacity and fails reads past it; the swap behind the guest's back is
    # checked against rtgtd only.
    swap = "swap" if d.flavor == "rtgtd" else "no-swap"
    return Setup(iqn, [1], files=[m for _, m in made.values()], args=["disc1.sha256", "disc2.sha256", swap],
                 hooks={"load-disc": load, "eject-disc": eject})


def setup_hotplug(d, work, _route):
    """A disk (LUN 1); the guest asks the host to add LUN 2, grow it and remove it while it
    runs (host-step add-lun, grow-lun, del-lun), as an operator with rtgtadm would."""
    iqn = "iqn.2026-11.org.rtgt:guest-hotplug"
    img = os.path.join(work, "disk.img")
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    new = os.path.join(work, "new.img")
    with open(new, "wb") as f:
        f.truncate(64 << 20)
    d.target(1, iqn)
    d.lu(1, 1, "disk", "-b", img)

    def add(_args):
        d.lu(1, 2, "disk", "-b", new)
        return True, "LUN 2 added"

    def grow(_args):
        d.lu_update(1, 2, "size=96M")
        return True, "LUN 2 grown"

    def delete(_args):
        d.adm(["--op", "delete", "--mode", "logicalunit", "--tid", 1, "--lun", 2])
        return True, "LUN 2 deleted"
    return Setup(iqn, [1], hooks={"add-lun": add, "grow-lun": grow, "del-lun": delete})


def setup_reconnect(d, work, _route):
    """A disk; the guest asks the host, each in the middle of a dd, to kill rtgtd with
    SIGKILL and start it again with the configuration it had (`config dump`; host-step
    crash), to close the vhost session (host-step close-session: `rtgtadm session
    close`), and to stop rtgtd gracefully (SIGTERM) and start it again (host-step
    stop)."""
    iqn = "iqn.2026-11.org.rtgt:guest-reconnect"
    img = os.path.join(work, "disk.img")
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    d.target(1, iqn)
    d.lu(1, 1, "disk", "-b", img)

    def restart(sig):
        saved = os.path.join(work, "saved.toml")
        dump = d._run([d.adm_bin, "-C", d.ctl, "config", "dump"], True).stdout
        with open(saved, "w") as f:
            f.write(dump)
        t0 = time.time()
        d.proc.send_signal(sig)
        try:
            d.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            return False, "rtgtd did not stop within 15 s"
        took = time.time() - t0
        ctl_sock = os.path.join(d.env["RTGT_RUN_DIR"], f"socket.{d.ctl}")
        if os.path.exists(ctl_sock):
            os.unlink(ctl_sock)
        d.proc = subprocess.Popen([d.daemon, "-f", "-C", d.ctl, "--iscsi", f"portal=127.0.0.1:{d.port}",
                                   "--config", saved], env=d.env, stdin=subprocess.DEVNULL, stdout=d.logf,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 20
        while d.adm(["--op", "show", "--mode", "target"], check=False).returncode != 0:
            if time.time() > deadline or d.proc.poll() is not None:
                return False, "rtgtd did not come back"
            time.sleep(0.1)
        return True, f"rtgtd {sig.name} (gone in {took:.1f} s) and restarted (pid {d.proc.pid})"

    def close_session(_args):
        out = d._run([d.adm_bin, "-C", d.ctl, "sessions", "--json"], True).stdout
        sids = [s["sid"] for s in json.loads(out)]
        if len(sids) != 1:
            return False, f"sessions: {sids}"
        d._run([d.adm_bin, "-C", d.ctl, "session", "close", str(sids[0])], True)
        return True, f"session {sids[0]} closed"
    return Setup(iqn, [1], hooks={"crash": lambda _a: restart(signal.SIGKILL),
                                  "stop": lambda _a: restart(signal.SIGTERM),
                                  "close-session": close_session})


JUKEBOX_IQN = "iqn.2026-11.org.rtgt:guest-jukebox"
DISCS = ["DVD00001", "DVD00002", "DVD00003"]


def jukebox_media(work):
    """media_home with three ISO images named by their barcodes, and their manifests."""
    home = os.path.join(work, "discs")
    os.makedirs(home)
    rnd = random.Random(15)
    contents = [
        {"README.TXT": b"disc one\n", "data/random.bin": rnd.randbytes(2 << 20),
         "data/odd-size.bin": rnd.randbytes(2048 * 3 + 5), "data/deep/er/tiny": b"1", "empty": b""},
        {"DISC2.TXT": b"disc two\n", "more/random.bin": rnd.randbytes(1 << 20)},
        {"DISC3.TXT": b"disc three\n", "third/random.bin": rnd.randbytes(512 << 10 | 77)},
    ]
    manifests = []
    for barcode, files in zip(DISCS, contents):
        img, manifest = iso(work, barcode, files)
        os.rename(img, os.path.join(home, barcode))
        manifests.append(manifest)
    return home, manifests


def jukebox_inventory(home, loaded):
    """The changer's --params lines (tgt's syntax, doc/README.vtl): picker at 1, drives at 2
    and 3 mapped to LUNs 1 and 2 of tid 1, four slots at 1000 with the discs in the first
    three. `loaded` records disc 1 in drive 0 and disc 3 in drive 1 (from slots 1000 and
    1002) with rtgt's `barcode=,source=` on a data transfer element, as a saved
    configuration does (tgt has no syntax for a drive that holds a medium at start); the
    discs themselves are the drives' backing stores (jukebox_drives)."""
    params = [f"media_home={home}",
              "element_type=1,start_address=1,quantity=1",
              "element_type=4,start_address=2,quantity=2",
              "element_type=4,address=2,tid=1,lun=1",
              "element_type=4,address=3,tid=1,lun=2",
              "element_type=2,start_address=1000,quantity=4"]
    slots = {1000: DISCS[0], 1001: DISCS[1], 1002: DISCS[2]}
    if loaded:
        params += [f"element_type=4,address=2,barcode={DISCS[0]},source=1000",
                   f"element_type=4,address=3,barcode={DISCS[2]},source=1002"]
        del slots[1000], slots[1002]
    params += [f"element_type=2,address={a},barcode={b},sides=1" for a, b in slots.items()]
    return params


def jukebox_start(flavor, route):
    """How the drives start: route A must start with discs in them, as QEMU's iSCSI
    driver reads the capacity of a CD LUN when it opens it and refuses a drive without a
    medium ("failed to send readcapacity10/16 command")."""
    if route != "A":
        return "empty"
    if flavor == "tgtd":
        raise NotAvailable("route A needs a disc in each drive at start (QEMU's iSCSI driver refuses "
                           "to open an empty CD LUN), and tgt's changer syntax has no loaded drive")
    return "loaded"


def jukebox_drives(home, start):
    """The backing store of each drive (LUNs 1 and 2): none when they start empty."""
    return [os.path.join(home, DISCS[0]), os.path.join(home, DISCS[2])] if start == "loaded" else [None, None]


def jukebox_setup(start, exchange, manifests):
    """What the guest's jukebox.sh gets: both drives, then the changer."""
    return Setup(JUKEBOX_IQN, [1, 2, 3], files=manifests,
                 args=[start, "exchange" if exchange else "no-exchange", *DISCS])


def setup_jukebox(d, work, route):
    """A DVD jukebox with tgtadm's command line: two empty cd drives (LUNs 1 and 2) and a
    changer (LUN 3) that loads disc images from media_home into them."""
    start = jukebox_start(d.flavor, route)
    home, manifests = jukebox_media(work)
    smc = os.path.join(work, "smc")
    with open(smc, "wb") as f:
        f.write(bytes(1024))
    d.target(1, JUKEBOX_IQN)
    for lun, disc in enumerate(jukebox_drives(home, start), 1):
        d.lu(1, lun, "cd", *(["-b", disc] if disc else []))
    d.lu(1, 3, "changer", "-b", smc)
    for p in jukebox_inventory(home, start == "loaded"):
        d.lu_update(1, 3, p)
    # Not against tgtd: its changer has no EXCHANGE MEDIUM (its SMC opcode table), and it
    # signals no medium change when MOVE MEDIUM loads a drive, so the disc loaded first in
    # that step, right after another was unloaded, is read with the last one's capacity
    # ("attempt to access beyond end of device", tgtd 1.0.85).
    return jukebox_setup(start, d.flavor == "rtgtd", manifests)


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_jukebox(work, route):
    """The same jukebox as a configuration file rtgtd loads at start (--config)."""
    start = jukebox_start("rtgtd", route)
    home, manifests = jukebox_media(work)
    lines = ["[[target]]", "tid = 1", f"name = {toml_str(JUKEBOX_IQN)}", 'initiator_address = ["ALL"]', ""]
    for lun, disc in enumerate(jukebox_drives(home, start), 1):
        lines += ["[[target.lun]]", f"lun = {lun}", 'device_type = "cd"']
        lines += [f"backing_store = {toml_str(disc)}", ""] if disc else [""]
    lines += ["[[target.lun]]", "lun = 3", 'device_type = "changer"', "changer = ["]
    lines += [f"  {toml_str(p)}," for p in jukebox_inventory(home, start == "loaded")]
    lines += ["]", ""]
    path = os.path.join(work, "jukebox.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, jukebox_setup(start, True, manifests)


def guest_bin_dir(rdma=False):
    """Where the guest's rtgtd and rtgtadm come from: RTGT_GUEST_BIN_DIR, or a build
    without the optional cargo features (rbd, glfs) in target/guest, as the guest has
    none of their libraries (librbd, libgfapi); the host's binaries may have them. The
    iSER scenario's rtgtd has the rdma feature."""
    given = os.environ.get("RTGT_GUEST_RDMA_BIN_DIR" if rdma else "RTGT_GUEST_BIN_DIR")
    if given:
        return given
    # One target directory for both: only rtgtd itself (and the rdma binding) differ, and
    # each scenario copies the binary right after its build.
    tdir = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "guest")
    # The RDMA guest also gets iser_peer, the misbehaving iSER initiator (an example of
    # rtgtd's that needs the rdma feature).
    features = ["--features", "rtgtd/rdma", "--bins", "--example", "iser_peer"] if rdma else []
    r = subprocess.run(["cargo", "build", "-q", "-p", "rtgtd", "-p", "rtgtadm", "--target-dir", tdir,
                        *features], cwd=ROOT)
    if r.returncode != 0:
        raise Failed(f"cargo build of the guest's rtgtd ({'rdma' if rdma else 'default features'}) failed")
    return os.path.join(tdir, "debug")


def guest_rtgt(work, rdma=False):
    """rtgtd and rtgtadm to run inside the guest (its userland is Debian bookworm like the
    host's), stripped so the initramfs stays small. Always rtgt's, whichever daemon the
    host runs: the host's target only gives the guest devices to pass through."""
    bindir = guest_bin_dir(rdma)
    out = []
    for rel in ("rtgtd", "rtgtadm") + (("examples/iser_peer",) if rdma else ()):
        name = os.path.basename(rel)
        src = os.environ.get(name.upper()) or os.path.join(bindir, rel)
        dst = os.path.join(work, name)
        r = subprocess.run(["strip", "-o", dst, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise Failed(f"strip {src}: {r.stderr.strip()}")
        out.append(dst)
    return out


def setup_passthrough(d, work, _route):
    """What rtgtd inside the guest passes through (scenarios/passthrough.sh): QEMU's own
    scsi-hd (64 MiB, id hd0) and scsi-cd holding an ISO (id cd0) on the guest's
    virtio-scsi controller, and, from this target through route A, a tape drive with a
    cartridge (LUN 2) and a small library: an empty drive (LUN 4) and a changer (LUN 5)
    with two cartridges. Host steps: `device-del hd0` (boot.py, QMP) pulls the disk;
    `delete-lu 2` deletes the tape's LU on this target, from under route A."""
    iqn = "iqn.2026-11.org.rtgt:guest-pt-source"
    img = os.path.join(work, "disk.img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    tape = os.path.join(work, "TAPE0001")
    tape_image(d, tape, "TAPE0001", 32)
    disc, manifest = iso(work, "ptdisc", {"README.TXT": b"passed through\n",
                                          "data/random.bin": random.Random(9).randbytes(1 << 20)})
    home = os.path.join(work, "tapes")
    os.makedirs(home)
    for b in BARCODES[:2]:
        tape_image(d, os.path.join(home, b), b, 8)
    smc = os.path.join(work, "smc")
    with open(smc, "wb") as f:
        f.write(bytes(1024))
    d.target(1, iqn)
    d.lu(1, 2, "tape", "--bstype", "ssc", "-b", tape)
    d.lu(1, 4, "tape", "--bstype", "ssc")
    d.lu(1, 5, "changer", "-b", smc)
    for p in [f"media_home={home}",
              "element_type=1,start_address=1,quantity=1",
              "element_type=4,start_address=2,quantity=1",
              "element_type=4,address=2,tid=1,lun=4",
              "element_type=2,start_address=1000,quantity=4",
              *[f"element_type=2,address={1000 + i},barcode={b},sides=1" for i, b in enumerate(BARCODES[:2])]]:
        d.lu_update(1, 5, p)

    def delete_lu(args):
        d.adm(["--op", "delete", "--mode", "logicalunit", "--tid", 1, "--lun", int(args[0])])
        return True, f"the host target deleted LUN {int(args[0])}"
    # RTGT_GUEST_CU=1: also libiscsi's iscsi-test-cu over the passed-through disk (a
    # named subset; =all: every SCSI.* suite; =Inquiry,Read10,...: those SCSI.* suites);
    # minutes to hours under TCG.
    cu = os.environ.get("RTGT_GUEST_CU", "")
    args = ["cu-all"] if cu == "all" else ["cu"] if cu == "1" else ["cu", cu] if cu not in ("", "0") else []
    return Setup(iqn, [2, 4, 5], args=args, files=guest_rtgt(work) + [manifest],
                 hooks={"delete-lu": delete_lu}, local=[("hd", img), ("cd", disc)])


# The RDMA guest (build.sh with RTGT_GUEST_RDMA=1): its own cache, the address /init gives
# dummy0 and rxe0 (rtgt.rdma=), the RAM soft-RoCE and ib_iser want.
RDMA_CACHE = os.environ.get("RTGT_GUEST_RDMA_CACHE") or os.path.join(ROOT, "target", "guest-rdma")
RDMA_BOOT = dict(cache=RDMA_CACHE, kargs=["rtgt.rdma=198.51.100.1/24"], mem=1536)


def setup_iser(_d, work, _route):
    """Nothing on the host: rtgtd (with the rdma feature) runs inside the RDMA guest and
    serves one target over TCP and iSER; the guest's own initiator logs in over both
    (scenarios/iser.sh). RTGT_GUEST_CU=1: also libiscsi's iscsi-test-cu over iser://
    beside iscsi://, per test name (several minutes more under TCG); RTGT_GUEST_CU=all:
    the whole suite, suite by suite, over TCP and iSER against rtgtd and then over iSER
    against Debian's tgtd in the same guest (an hour under TCG); =rtgtd or =tgtd: one
    side of that (two runs at once halve the time); =suite:NAME: only that iscsi-test-cu
    name over iser:// against rtgtd."""
    cu = os.environ.get("RTGT_GUEST_CU", "")
    args = {"all": ["cu-all"], "rtgtd": ["cu-rtgtd"], "tgtd": ["cu-tgtd"], "iser": ["cu-iser"],
            "1": ["cu"]}.get(cu, [])
    if cu.startswith("suite:") or cu.startswith("suite+tgtd:"):
        # One iscsi-test-cu name (a suite such as SCSI.ProutReserve, or one test) over
        # iser:// against rtgtd (then tgtd), nothing else: a short run to chase one failure.
        kind, name = cu.split(":", 1)
        args = ["cu-suite", name] + (["tgtd"] if kind == "suite+tgtd" else [])
    if os.environ.get("RTGT_GUEST_ISER_BENCH") == "1" and not args:
        # The registered buffer pool against a registration per command (scenarios/iser.sh).
        args = ["bench"]
    # RTGT_GUEST_PRELOAD: files for /data, colon-separated (a .so is preloaded into
    # iscsi-test-cu, an iscsi-test-cu replaces bookworm's; scenarios/iser.sh, cu-suite).
    extra = [f for f in os.environ.get("RTGT_GUEST_PRELOAD", "").split(":") if f]
    return Setup("", [], args=args, files=guest_rtgt(work, rdma=True) + extra)


SETUPS = {"disk": setup_disk, "tape": setup_tape, "changer": setup_changer, "cd": setup_cd,
          "jukebox": setup_jukebox, "passthrough": setup_passthrough, "iser": setup_iser,
          "hotplug": setup_hotplug, "reconnect": setup_reconnect}
# Scenarios configured by a file the daemon loads at start (rtgtd --config) instead of
# rtgtadm: the function writes it and returns (path, Setup).
CONFIGS = {"jukebox-toml": config_jukebox}
# Scenarios that need one route: pass-through exports the guest's own SCSI devices, which
# only route A gives it (through B the guest's devices are the target's, over iSCSI).
# Hot-plug events are vhost-user-scsi's event queue (route V).
# iSER: the guest's kernel initiator logs in by itself, as through route B (but to the
# rtgtd inside the guest, over soft-RoCE).
ONLY_ROUTE = {"passthrough": "A", "iser": "B", "hotplug": "V", "reconnect": "V"}
# Scenarios whose target runs inside the guest: no daemon on the host, no LUNs attached.
GUEST_ONLY = {"iser": RDMA_BOOT}


def find_bins(flavor, no_build):
    if flavor == "tgtd":
        bins = ["/usr/sbin/tgtd", "/usr/sbin/tgtadm", "/usr/sbin/tgtimg"]
    else:
        bindir = os.environ.get("RTGT_BIN_DIR") or os.path.join(
            os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug")
        bins = [os.environ.get("RTGTD") or os.path.join(bindir, "rtgtd"),
                os.environ.get("RTGTADM") or os.path.join(bindir, "rtgtadm"),
                os.environ.get("RTGTIMG") or os.path.join(bindir, "rtgtimg")]
        overridden = any(os.environ.get(k) for k in ("RTGT_BIN_DIR", "RTGTD", "RTGTADM", "RTGTIMG"))
        if not no_build and not overridden:
            say("cargo build -p rtgtd -p rtgtadm -p rtgtimg")
            if subprocess.run(["cargo", "build", "-q", "-p", "rtgtd", "-p", "rtgtadm", "-p", "rtgtimg"],
                              cwd=ROOT).returncode != 0:
                raise SystemExit("guest: cargo build failed")
    for b in bins:
        if not os.access(b, os.X_OK):
            raise SystemExit(f"guest: {b} not found")
    return bins


def run_one(flavor, bins, scenario, route, verbose, smp=1, queues=None):
    """Returns (verdict, seconds, detail): verdict PASS, FAIL or N/A."""
    name = f"{flavor}-{scenario}-{route}"
    work = tempfile.mkdtemp(prefix=f"rtgt-guest-{name}-")
    daemon = None
    t0 = time.time()
    guest_log = os.path.join(RESULTS, name + ".guest.log")
    try:
        config, s = None, None
        if scenario in CONFIGS:
            if flavor != "rtgtd":
                raise NotAvailable(f"{flavor} has no configuration file of rtgt's form")
            config, s = CONFIGS[scenario](work, route)
        if scenario in GUEST_ONLY:
            if flavor != "rtgtd":
                raise NotAvailable(f"the {scenario} scenario runs rtgtd inside the guest")
            return run_in_guest(name, scenario, guest_log, work, verbose, t0)
        daemon = Daemon(flavor, bins, work, os.path.join(RESULTS, name + ".daemon.log"),
                        args=["--config", config] if config else [])
        if flavor == "rtgtd":
            for t in DEVICE_TYPES[scenario]:
                if t in GATED:
                    daemon.supports(t, work)
        if s is None:
            s = SETUPS[scenario](daemon, work, route)
        portal = f"127.0.0.1:{daemon.port}"
        if route == "V":
            if flavor != "rtgtd":
                raise NotAvailable(f"{flavor} has no vhost-user-scsi")
            # The target is bound to a vhost-user socket: the guest's virtio_scsi driver
            # reaches it through QEMU's vhost-user-scsi-pci, no network in between.
            sock = os.path.join(work, "vhost.sock")
            daemon._run([daemon.adm_bin, "-C", daemon.ctl, "--lld", "vhost", "--op", "bind", "--mode", "target",
                         "--tid", "1", "--params", f"socket={sock}"], True)
            deadline = time.time() + 10
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.05)
            where = dict(vhost=[sock], ndev=len(s.luns) + 1, queues=queues)
        elif route == "A":
            where = dict(devices=[f"iscsi://{portal}/{s.iqn}/{lun}" for lun in s.luns], local=s.local)
        else:
            where = dict(iscsi=[f"{portal},{s.iqn}"], ndev=len(s.luns) + 1)
        say(f"[{name}] {scenario} through route {route}: {where}")
        with open(guest_log, "w") as log:
            def echo(line):
                log.write(line + "\n")
                log.flush()
                # The scenario's steps and verdicts as they happen; all of it with -v.
                if verbose or line.startswith(("== ", "   ok: ", "FAIL")):
                    print("    | " + line, flush=True)
            script = os.path.join(HERE, "scenarios", SCRIPTS.get(scenario, scenario) + ".sh")
            status, out, secs = boot.boot(script, s.args,
                                          files=s.files, hooks=s.hooks, verbose=verbose,
                                          timeout=(3600 if s.args == ["cu-all"] else 2400 if s.args[:1] == ["cu"] else 600)
                                          if scenario == "passthrough" else 240,
                                          echo=echo, smp=smp, **where)
        if daemon.proc.poll() is not None:
            return "FAIL", time.time() - t0, f"the daemon died (status {daemon.proc.returncode})"
        if status == 0:
            return "PASS", time.time() - t0, f"guest {secs:.1f}s"
        if not verbose:
            print(f"    | (the last 60 lines of the guest's output; all of it in {guest_log}, "
                  f"the daemon's log beside it)")
            for line in out.splitlines()[-60:]:
                print("    | " + line)
        tail = [ln for ln in out.splitlines() if ln.startswith("FAIL")] or out.splitlines()[-3:]
        return "FAIL", time.time() - t0, f"guest exit {status}: " + " / ".join(tail)
    except NotAvailable as e:
        return "N/A", time.time() - t0, str(e)
    except Failed as e:
        return "FAIL", time.time() - t0, str(e)
    finally:
        if daemon:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_in_guest(name, scenario, guest_log, work, verbose, t0):
    """A scenario with nothing on the host (GUEST_ONLY): the guest runs the target too."""
    s = SETUPS[scenario](None, work, None)
    say(f"[{name}] {scenario}: target and initiator inside the guest")
    with open(guest_log, "w") as log:
        def echo(line):
            log.write(line + "\n")
            log.flush()
            if verbose or line.startswith(("== ", "   ok: ", "FAIL")):
                print("    | " + line, flush=True)
        script = os.path.join(HERE, "scenarios", scenario + ".sh")
        status, out, secs = boot.boot(script, s.args, files=s.files, verbose=verbose,
                                      timeout={"cu": 1800, "cu-all": 5400, "cu-rtgtd": 3600, "cu-tgtd": 3600, "cu-iser": 3600, "bench": 1800}.get(
                                          s.args[0] if s.args else "", 600),
                                      echo=echo, ndev=0, **GUEST_ONLY[scenario])
    if status == 0:
        return "PASS", time.time() - t0, f"guest {secs:.1f}s"
    if not verbose:
        print(f"    | (the last 60 lines of the guest's output; all of it in {guest_log})")
        for line in out.splitlines()[-60:]:
            print("    | " + line)
    tail = [ln for ln in out.splitlines() if ln.startswith("FAIL")] or out.splitlines()[-3:]
    return "FAIL", time.time() - t0, f"guest exit {status}: " + " / ".join(tail)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", choices=["rtgtd", "tgtd"], default="rtgtd")
    ap.add_argument("--scenario", default=",".join(SCENARIOS), help="comma-separated (default: all)")
    ap.add_argument("--route", default=",".join(DEFAULT_ROUTES),
                    help="A, B, V (vhost-user-scsi) or a list (default A,B)")
    ap.add_argument("--no-build", action="store_true", help="don't run cargo build first")
    ap.add_argument("--smp", type=int, default=1, help="the guest's vCPUs (default 1)")
    ap.add_argument("--queues", type=int, default=None,
                    help="route V: request queues (QEMU's num_queues; default one per vCPU)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print all the guests' output and console logs")
    a = ap.parse_args(argv)
    scenarios = a.scenario.split(",")
    routes = a.route.upper().split(",")
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"guest: unknown scenario {s} (have {', '.join(SCENARIOS)})")
    for r in routes:
        if r not in ROUTES:
            raise SystemExit(f"guest: unknown route {r} (A, B or V)")

    missing = [t for t in ("qemu-system-x86_64", "genisoimage") if shutil.which(t) is None]
    if missing or not os.path.exists("/usr/share/qemu/qboot.rom"):
        msg = f"{', '.join(missing) or 'qemu'} not installed; run scripts/install-deps.sh"
        if os.environ.get("CI"):
            raise SystemExit(f"guest: {msg}")
        say(f"SKIPPED: {msg}")
        return 0
    if a.daemon == "tgtd" and os.geteuid() != 0:
        raise SystemExit("guest: tgtd needs root (its control socket is in /var/run/tgtd)")
    bins = find_bins(a.daemon, a.no_build)
    if any(s not in GUEST_ONLY for s in scenarios) and not boot.ensure_built(boot.DEFAULT_CACHE):
        raise SystemExit("guest: building the guest failed")
    if any(s in GUEST_ONLY for s in scenarios) and not boot.ensure_built(RDMA_CACHE, rdma=True):
        raise SystemExit("guest: building the RDMA guest failed")
    os.makedirs(RESULTS, exist_ok=True)

    results = []
    t0 = time.time()
    for s in scenarios:
        for r in routes:
            if ONLY_ROUTE.get(s, r) != r:
                continue
            verdict, secs, detail = run_one(a.daemon, bins, s, r, a.verbose, a.smp, a.queues)
            say(f"[{a.daemon}-{s}-{r}] {verdict} ({secs:.1f}s) {detail}")
            results.append((s, r, verdict, secs, detail))
    say(f"summary ({a.daemon}, {time.time() - t0:.0f}s):")
    for s, r, verdict, secs, detail in results:
        extra = f"  {detail}" if verdict != "PASS" else ""
        print(f"  {verdict:<5} {s:<12} route {r}  {secs:5.1f}s{extra}")
    n = {v: sum(1 for x in results if x[2] == v) for v in ("PASS", "FAIL", "N/A")}
    say(f"{n['PASS']} passed, {n['FAIL']} failed, {n['N/A']} not available in {a.daemon} yet")
    return 1 if n["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
