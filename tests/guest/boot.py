#!/usr/bin/env python3
"""Boots the interop guest (build.sh) under QEMU, attaches a target's LUNs, runs one
script in it as root and returns the script's exit status.

    python3 tests/guest/boot.py [options] SCRIPT [ARG...]

Two routes to a target on the host's loopback:
  -d iscsi://127.0.0.1:PORT/IQN/LUN   route A: QEMU's libiscsi logs in and passes every CDB
        through (scsi-generic) to the guest's virtio-scsi HBA, so the guest's sd / st / sr /
        ch drivers talk to the target's own device; each -d is a virtio-scsi target of its
        own (H:0:ID:0), in the order given. Repeatable.
  --hd FILE / --cd ISO   a local QEMU device on the same virtio-scsi HBA, after the -d ones:
        a scsi-hd on a raw image, a scsi-cd holding an ISO (QEMU emulates them; no target
        is involved). Their QEMU ids are hd0, hd1, ... and cd0, ...; the script can unplug
        one with `host-step device-del ID` (QMP device_del, as an operator pulls a device).
  -i 127.0.0.1:PORT,IQN   route B: the guest's own open-iscsi and iscsi_tcp log in over QEMU's
        user network (the guest is 10.0.2.15; the host's 127.0.0.1 is 10.0.2.2) and see the
        target's real LUN map. Give --ndev (the LUN count, LUN 0 included) so the guest waits
        for every device.

The script runs with /bin/sh (dash) in /root; /data holds it (/data/scenario), lib.sh from
tests/guest/scenarios and every -f FILE. Its output is streamed here as it runs. It can ask
the host to act in the middle of a run with `host-step NAME ARG...` (see host-step); this
command line serves such a step with --hook NAME=COMMAND (run by the host shell, ARGs
appended; its exit status and first output line are the answer).

Exit status: the script's; 124 when the timeout passed, 125 when the guest ended without
reporting one (kernel panic, QEMU failure: the console log is printed).
"""

import argparse
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import newc  # noqa: E402

DEFAULT_CACHE = os.environ.get("RTGT_GUEST_CACHE") or os.path.join(ROOT, "target", "guest")
ISCSI_URL = re.compile(r"^iscsi://([^/]+)/([^/]+)/(\d+)$")


def ensure_built(cache, rdma=False):
    """Builds (or checks) the guest (rdma: the RDMA flavour); returns False with a
    message if that failed."""
    env = dict(os.environ, RTGT_GUEST_RDMA="1" if rdma else "0")
    r = subprocess.run(["bash", os.path.join(HERE, "build.sh"), cache], stdin=subprocess.DEVNULL, env=env)
    return r.returncode == 0


def qemu_command(cache, work, initrd, devices, iscsi, ndev, mem, initiator, vhost=(), smp=1, queues=None,
                 local=(), kargs=()):
    append = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4", "no_timer_check", "tsc=reliable",
              *kargs]
    q = [
        "qemu-system-x86_64", "-M", "pc", "-m", str(mem), "-smp", str(smp), "-nodefaults",
        "-display", "none", "-no-reboot",
        # TCG: KVM is not usable on the machines this runs on. One vCPU boots fastest, and
        # two made iSCSI over the user network much slower.
        "-accel", "tcg,thread=multi", "-cpu", "max",
        "-bios", "/usr/share/qemu/qboot.rom",
        "-kernel", os.path.join(cache, "vmlinuz"), "-initrd", initrd,
        "-serial", f"file:{work}/console.log",
        "-device", "virtio-serial-pci,id=vser",
        "-chardev", f"file,id=out,path={work}/out.log",
        "-device", "virtserialport,chardev=out,name=rtgt.out",
        "-chardev", f"socket,id=ctl,path={work}/ctl.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=ctl,name=rtgt.ctl",
        "-device", "virtio-scsi-pci,id=hba",
        # QMP, for host steps that act on QEMU itself (device-del).
        "-qmp", f"unix:{work}/qmp.sock,server=on,wait=off",
    ]
    for i, url in enumerate(devices):
        m = ISCSI_URL.match(url)
        if not m:
            raise SystemExit(f"boot: bad iSCSI URL {url} (want iscsi://HOST:PORT/IQN/LUN)")
        portal = m.group(1) if ":" in m.group(1) else m.group(1) + ":3260"
        q += [
            "-drive", f"driver=iscsi,transport=tcp,portal={portal},target={m.group(2)},lun={m.group(3)},"
                      f"initiator-name={initiator},if=none,id=lun{i},cache.direct=on",
            "-device", f"scsi-generic,drive=lun{i},bus=hba.0,channel=0,scsi-id={i},lun=0",
        ]
    if vhost:
        # vhost-user needs every byte of guest RAM in a shared, fd-backed region.
        q += ["-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on", "-machine", "memory-backend=mem"]
        for i, sock in enumerate(vhost):
            nq = f",num_queues={queues}" if queues else ""
            q += ["-chardev", f"socket,id=vhost{i},path={sock},reconnect-ms=1000",
                  "-device", f"vhost-user-scsi-pci,id=vscsi{i},chardev=vhost{i}{nq}"]
    counts = {"hd": 0, "cd": 0}
    for j, (kind, path) in enumerate(local):
        qid = f"{kind}{counts[kind]}"
        counts[kind] += 1
        media = ",media=cdrom,readonly=on" if kind == "cd" else ""
        q += [
            "-drive", f"file={path},format=raw,if=none,id=drv-{qid},cache=writeback{media}",
            "-device", f"scsi-{kind},drive=drv-{qid},bus=hba.0,channel=0,scsi-id={len(devices) + j},lun=0,id={qid}",
        ]
    if iscsi:
        q += ["-netdev", "user,id=n0,net=10.0.2.0/24", "-device", "virtio-net-pci,netdev=n0"]
        for t in iscsi:
            append.append("rtgt.iscsi=" + t.replace("127.0.0.1", "10.0.2.2").replace("localhost", "10.0.2.2"))
    append.append(f"rtgt.ndev={ndev if ndev is not None else len(devices) + len(local)}")
    q += ["-append", " ".join(append)]
    return q


def run_archive(work, script, args, files):
    """The run's own files, as an archive the kernel unpacks over the cached initramfs."""
    d = os.path.join(work, "extra", "data")
    os.makedirs(d)
    shutil.copy(script, os.path.join(d, "scenario"))
    shutil.copy(os.path.join(HERE, "scenarios", "lib.sh"), os.path.join(d, "lib.sh"))
    for f in files:
        shutil.copy(f, os.path.join(d, os.path.basename(f)))
    with open(os.path.join(d, "main"), "w") as f:
        f.write("#!/bin/sh\nexec /bin/sh /data/scenario " + " ".join(shlex.quote(a) for a in args) + "\n")
    os.chmod(os.path.join(d, "main"), 0o755)
    path = os.path.join(work, "extra.cpio")
    with open(path, "wb") as out:
        newc.write_tree(os.path.join(work, "extra"), out)
    return path


def qmp(sock_path, command, arguments, wait_event=None, timeout=20):
    """One QMP command on QEMU's monitor socket; returns its "return" value. With
    wait_event (name, device id), also waits for that event (device_del only asks the
    guest; DEVICE_DELETED says the device is gone)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        f = s.makefile("rwb")

        def message():
            line = f.readline()
            if not line:
                raise RuntimeError("QMP: QEMU closed the monitor")
            return json.loads(line)

        def call(name, args=None):
            f.write(json.dumps({"execute": name, **({"arguments": args} if args else {})}).encode() + b"\n")
            f.flush()
            while True:
                m = message()
                if "return" in m:
                    return m["return"]
                if "error" in m:
                    raise RuntimeError(f"QMP {name}: {m['error'].get('desc', m['error'])}")
                if m.get("event") == (wait_event or ("", ""))[0]:
                    events.append(m)

        events = []
        message()  # the greeting
        call("qmp_capabilities")
        ret = call(command, arguments)
        if wait_event:
            name, dev = wait_event
            while not any(e.get("data", {}).get("device") == dev for e in events):
                m = message()
                if m.get("event") == name:
                    events.append(m)
        return ret


def boot(script, args=(), devices=(), iscsi=(), ndev=None, files=(), hooks=None, timeout=300,
         mem=768, initiator="iqn.2026-11.org.rtgt:qemu-guest", cache=DEFAULT_CACHE, verbose=False,
         echo=None, vhost=(), smp=1, queues=None, local=(), kargs=()):
    """Runs `script` in a fresh guest; returns (status, output text, seconds).

    hooks: {name: callable(args) -> (ok, text)} serving the script's host-step calls.
    echo: called with each line of the script's output as it arrives (None: quiet).
    local: [("hd" | "cd", path)], QEMU's own scsi-hd / scsi-cd devices (ids hd0, cd0, ...).
    """
    hooks = dict(hooks or {})
    work = tempfile.mkdtemp(prefix="rtgt-guest-")

    def device_del(hargs):
        # QMP device_del of a local device; done when QEMU reports DEVICE_DELETED.
        qmp(os.path.join(work, "qmp.sock"), "device_del", {"id": hargs[0]},
            wait_event=("DEVICE_DELETED", hargs[0]))
        return True, f"QEMU deleted device {hargs[0]}"
    hooks.setdefault("device-del", device_del)
    qemu = None
    try:
        initrd = os.path.join(work, "initrd")
        with open(initrd, "wb") as out:
            with open(os.path.join(cache, "initrd.cpio"), "rb") as base:
                shutil.copyfileobj(base, out)
            with open(run_archive(work, script, args, files), "rb") as extra:
                shutil.copyfileobj(extra, out)
        open(os.path.join(work, "out.log"), "wb").close()
        cmd = qemu_command(cache, work, initrd, list(devices), list(iscsi), ndev, mem, initiator,
                           list(vhost), smp, queues, list(local), kargs)
        t0 = time.time()
        qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(os.path.join(work, "qemu.log"), "wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        ctl = None
        status = None
        inbuf = b""
        pending = b""
        output = []
        outf = open(os.path.join(work, "out.log"), "rb")

        def drain():
            nonlocal pending
            data = outf.read()
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            for ln in lines:
                text = ln.decode(errors="replace")
                output.append(text)
                if echo:
                    echo(text)

        while True:
            drain()
            if time.time() - t0 > timeout:
                status = 124
                break
            if qemu.poll() is not None:
                break
            if ctl is None:
                try:
                    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    ctl.connect(os.path.join(work, "ctl.sock"))
                except OSError:
                    ctl = None
                    time.sleep(0.05)
                    continue
            r, _, _ = select.select([ctl], [], [], 0.2)
            if not r:
                continue
            try:
                data = ctl.recv(4096)
            except OSError:  # QEMU went away (it failed at start, or the guest powered off)
                data = b""
            if not data:
                ctl.close()
                ctl = None
                continue
            inbuf += data
            while b"\n" in inbuf:
                line, inbuf = inbuf.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                if not words:
                    continue
                if words[0] == "exit":
                    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 125
                    reply = "ok"
                elif words[0] in hooks:
                    drain()
                    try:
                        ok, text = hooks[words[0]](words[1:])
                    except Exception as e:  # a hook's failure is the scenario's failure
                        ok, text = False, f"{type(e).__name__}: {e}"
                    reply = ("ok " if ok else "error ") + " ".join(str(text).split())
                else:
                    reply = f"error the runner has no step {words[0]!r}"
                ctl.sendall(reply.strip().encode() + b"\n")
            if status is not None:
                break
        # The guest powers off right after reporting; give it a moment, then make sure.
        if status != 124:
            try:
                qemu.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        if qemu.poll() is None:
            os.killpg(qemu.pid, 9)
            qemu.wait()
        drain()
        if pending:
            output.append(pending.decode(errors="replace"))
            if echo:
                echo(output[-1])
        elapsed = time.time() - t0
        if status is None:
            status = 125
        if verbose or status in (124, 125):
            # QEMU that failed at start (a drive it could not open) made no console log.
            con_path = os.path.join(work, "console.log")
            con = open(con_path, "rb").read().decode(errors="replace").replace("\r", "") \
                if os.path.exists(con_path) else "(no console log)"
            qlog = open(os.path.join(work, "qemu.log"), "rb").read().decode(errors="replace")
            why = "timeout" if status == 124 else "no exit status from the guest" if status == 125 else "verbose"
            sys.stderr.write(f"----- guest console ({why}, qemu exit {qemu.returncode}) -----\n")
            sys.stderr.write("\n".join(con.splitlines()[-80:]) + "\n" + qlog + "-----\n")
        return status, "\n".join(output), elapsed
    finally:
        if qemu is not None and qemu.poll() is None:
            os.killpg(qemu.pid, 9)
            qemu.wait()
        shutil.rmtree(work, ignore_errors=True)


def shell_hook(command):
    def hook(args):
        r = subprocess.run(command + " " + " ".join(shlex.quote(a) for a in args), shell=True,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        text = (r.stdout or r.stderr).strip().splitlines()
        return r.returncode == 0, text[0] if text else ""
    return hook


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", dest="devices", action="append", default=[], metavar="URL",
                    help="route A: pass this LUN through (iscsi://127.0.0.1:PORT/IQN/LUN)")
    ap.add_argument("-i", dest="iscsi", action="append", default=[], metavar="PORTAL,IQN",
                    help="route B: log in to this target with the guest's open-iscsi")
    ap.add_argument("-V", dest="vhost", action="append", default=[], metavar="SOCKET",
                    help="route V: a vhost-user-scsi controller on rtgtd's socket")
    ap.add_argument("--smp", type=int, default=1, help="vCPUs (default 1)")
    ap.add_argument("--queues", type=int, help="route V: request queues (QEMU's default: one per vCPU)")
    ap.add_argument("--hd", dest="local", action="append", type=lambda p: ("hd", p), default=[],
                    metavar="FILE", help="a local QEMU scsi-hd on this raw image (id hd0, hd1, ...)")
    ap.add_argument("--cd", dest="local", action="append", type=lambda p: ("cd", p), metavar="ISO",
                    help="a local QEMU scsi-cd holding this ISO (id cd0, ...)")
    ap.add_argument("--ndev", type=int, help="SCSI devices to wait for (default: the number of -d)")
    ap.add_argument("-f", dest="files", action="append", default=[], metavar="FILE", help="copy FILE to /data/")
    ap.add_argument("--hook", action="append", default=[], metavar="NAME=COMMAND",
                    help="serve the script's `host-step NAME ARG...` with COMMAND ARG...")
    ap.add_argument("-t", "--timeout", type=int, default=300, help="seconds (default 300)")
    ap.add_argument("-m", "--mem", type=int, default=768, help="guest RAM in MiB (default 768)")
    ap.add_argument("-I", "--initiator", default="iqn.2026-11.org.rtgt:qemu-guest",
                    help="initiator name of route A")
    ap.add_argument("-C", "--cache", default=DEFAULT_CACHE, help="guest build directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the guest's console log at the end")
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        raise SystemExit("boot: qemu-system-x86_64 not found (scripts/install-deps.sh installs it)")
    if not ensure_built(a.cache):
        raise SystemExit(2)
    hooks = {}
    for h in a.hook:
        name, _, cmd = h.partition("=")
        hooks[name] = shell_hook(cmd)
    status, _, secs = boot(a.script, a.args, a.devices, a.iscsi, a.ndev, a.files, hooks, a.timeout, a.mem,
                           a.initiator, a.cache, a.verbose, echo=print, vhost=a.vhost, smp=a.smp,
                           queues=a.queues, local=a.local)
    print(f"boot: exit status {status} after {secs:.1f}s", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
