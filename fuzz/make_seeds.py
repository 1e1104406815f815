#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere; idempotent).
The seeds are well-formed inputs for each target's input format, so the fuzzer starts
from deep inside the state machines instead of from random bytes."""
import hashlib, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\xff\xfe"

def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def keys(*pairs):
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)

def pad4(b):
    return b + b"\0" * (-len(b) % 4)

def bhs(opcode, flags, data=b"", lun=0, itt=1, f20=0, f24=0, f28=0, f32=0, f36=0, f40=0, f44=0, cdb=b""):
    h = bytearray(48)
    h[0] = opcode
    h[1] = flags
    h[5:8] = struct.pack(">I", len(data))[1:]
    h[8:16] = struct.pack(">Q", lun)
    h[16:20] = struct.pack(">I", itt)
    h[20:24] = struct.pack(">I", f20)
    h[24:28] = struct.pack(">I", f24)
    h[28:32] = struct.pack(">I", f28)
    if cdb:
        h[32:32 + len(cdb)] = cdb
    else:
        h[32:36] = struct.pack(">I", f32)
        h[36:40] = struct.pack(">I", f36)
        h[40:44] = struct.pack(">I", f40)
        h[44:48] = struct.pack(">I", f44)
    return bytes(h) + pad4(data)

LUN1 = 1 << 48
# ---- pdu: mode byte, then a PDU stream ------------------------------------------------
read10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
write10 = bytes([0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0])
inquiry = bytes([0x12, 0, 0, 0, 96, 0])
nop = bhs(0x40 | 0x00, 0x80, b"ping", itt=9, f20=0xffffffff, f24=0)
cmd_read = bhs(0x01, 0xc1, lun=LUN1, itt=2, f20=4096, f24=0, cdb=read10)
cmd_inq = bhs(0x01, 0xc1, lun=0, itt=3, f20=96, f24=1, cdb=inquiry)
cmd_write_imm = bhs(0x01, 0xa1, b"\xab" * 512, lun=LUN1, itt=4, f20=1024, f24=2, cdb=write10)
data_out = bhs(0x05, 0x80, b"\xcd" * 512, lun=LUN1, itt=4, f20=0xffffffff, f40=512)
text = bhs(0x44, 0x80, keys(("SendTargets", "All")), itt=5, f20=0xffffffff, f24=3)
tmf = bhs(0x42, 0x81, lun=LUN1, itt=6, f20=2, f24=4)
logout = bhs(0x46, 0x80, itt=7, f24=5)
put("pdu", "read", b"\x00" + cmd_read)
put("pdu", "mixed", b"\x08" + nop + cmd_inq + cmd_write_imm + data_out + tmf + logout)
put("pdu", "text-discovery", b"\x04" + text + logout)
put("pdu", "write-r2t", b"\x10" + bhs(0x01, 0xa1, lun=LUN1, itt=4, f20=1024, f24=0, cdb=write10) + data_out)

# ---- login: mode byte, then FF FE-separated [flags, misc, text] ------------------------
I = ("InitiatorName", "iqn.2026-01.org.example:initiator")
T = ("TargetName", "iqn.2026-01.org.example:disk1")
OPS = [("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "262144"),
       ("ImmediateData", "Yes"), ("InitialR2T", "No"), ("MaxBurstLength", "1048576"),
       ("FirstBurstLength", "65536"), ("ErrorRecoveryLevel", "0")]
def login_seq(mode, reqs):
    return bytes([mode]) + b"".join(SEP + bytes([f, m]) + d for f, m, d in reqs)

put("login", "normal-no-auth", login_seq(0, [
    (0x81, 0, keys(I, T, ("SessionType", "Normal"), ("AuthMethod", "None"))),
    (0x87, 0, keys(*OPS)),
    (0x80, 0, keys(("SendTargets", "All"))),
]))
put("login", "discovery", login_seq(0, [
    (0x87, 0, keys(I, ("SessionType", "Discovery"), ("HeaderDigest", "None"))),
    (0x80, 0, keys(("SendTargets", "All"))),
]))
secret = b"0123456789ab"
chal = bytes(range(2, 18))  # the fuzz target's counter: CHAP_I=1, then CHAP_C=2..17
r = hashlib.md5(bytes([1]) + secret + chal).hexdigest()
put("login", "chap-md5", login_seq(1, [
    (0x01, 0, keys(I, T, ("SessionType", "Normal"), ("AuthMethod", "CHAP,None"))),
    (0x01, 0, keys(("CHAP_A", "7,5"))),
    (0x81, 0, keys(("CHAP_N", "alice"), ("CHAP_R", "0x" + r))),
    (0x87, 0, keys(*OPS)),
]))
chal7 = bytes(range(2, 34))
r7 = hashlib.sha256(bytes([1]) + secret + chal7).hexdigest()
put("login", "chap-sha256-mutual", login_seq(3, [
    (0x01, 0, keys(I, T, ("AuthMethod", "CHAP"))),
    (0x01, 0, keys(("CHAP_A", "7"))),
    (0x81, 0, keys(("CHAP_N", "alice"), ("CHAP_R", "0x" + r7), ("CHAP_I", "0x11"),
                   ("CHAP_C", "0b" + "QUJDREVGR0hJSktMTU5PUA=="))),
    (0x87, 0, keys(*OPS)),
]))

# ---- cdb: FF FE-separated [lun, edtl/16 (2 bytes), cdb length, cdb, data-out] ----------
def cmd(lun, edtl, cdb, data=b""):
    return bytes([lun]) + struct.pack(">H", edtl // 16) + bytes([len(cdb)]) + cdb + data
seq = [
    cmd(0, 512, bytes([0xa0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0])),  # REPORT LUNS
    cmd(1, 96, inquiry),
    cmd(1, 256, bytes([0x12, 1, 0x83, 1, 0, 0])),  # VPD 83h
    cmd(1, 32, bytes([0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])),  # RC16
    cmd(1, 0, write10, b"\x11" * 1024),
    cmd(1, 4096, read10),
    cmd(1, 0, bytes([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])),  # SYNCHRONIZE CACHE
    cmd(1, 192, bytes([0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 192, 0])),  # MODE SENSE(10)
    cmd(1, 0, bytes([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]),
        struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 4, 8)),  # UNMAP
    cmd(1, 0, bytes([0x89, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0]), b"\x11" * 512 + b"\x22" * 512),  # CAW
    cmd(1, 8, bytes([0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0])),  # PR IN
]
put("cdb", "mixed", SEP.join(seq))
put("cdb", "report-luns", seq[0])
