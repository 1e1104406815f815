#!/usr/bin/env bash
# vhost-user-scsi against iSCSI to the same LUN, in the same guest, in the same run: one
# rtgtd serves a 256 MiB disk (LUN 1) both through a vhost-user socket and through its
# iSCSI portal; the guest (tests/guest, QEMU TCG) sees it once over virtio (vhost) and
# once over its own open-iscsi, and dd's O_DIRECT 4 KiB and 1 MiB reads and writes on
# each, sequential, then random 4 KiB reads and writes with bench/randio.c (built static
# here and copied in: the guest has no fio) (bench/vhost-guest.sh). Prints each figure and
# the vhost/iSCSI ratio. Under TCG the absolute figures mean little; the ratio does.
#   bash bench/vhost.sh [PORT]   (default 13150; PORT+1 is the control port)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-13150}
CTL=$((PORT + 1))
WORK=$(mktemp -d /tmp/rtgt-vhost-bench.XXXXXX)
export RTGT_RUN_DIR=$WORK
cargo build -q -p rtgtd -p rtgtadm
gcc -O2 -static -Wall -o "$WORK/randio" bench/randio.c
truncate -s 256M "$WORK/disk.img"
cat >"$WORK/c.toml" <<EOT
[[target]]
tid = 1
name = "iqn.2026-12.org.rtgt:bench-vhost"
initiator_address = ["ALL"]
vhost_socket = ["$WORK/vm.sock"]
[[target.lun]]
lun = 1
backing_store = "$WORK/disk.img"
EOT
target/debug/rtgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PORT" --config "$WORK/c.toml" >"$WORK/rtgtd.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [ -S "$WORK/vm.sock" ] && break; sleep 0.1; done
python3 tests/guest/boot.py -V "$WORK/vm.sock" -i "127.0.0.1:$PORT,iqn.2026-12.org.rtgt:bench-vhost" \
  --ndev 4 -t 900 -f "$WORK/randio" bench/vhost-guest.sh | tee "$WORK/out.txt"
python3 - "$WORK/out.txt" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    w = line.split()
    if len(w) == 5 and w[0] == "RESULT":
        r[(w[1], w[2], w[3])] = float(w[4])
print(f"{'op':<9} {'bs':<4} {'vhost MB/s':>11} {'iSCSI MB/s':>11} {'ratio':>6}")
for op, bs in (("read", "4k"), ("write", "4k"), ("read", "1M"), ("write", "1M"),
               ("randread", "4k"), ("randwrite", "4k")):
    v, i = r.get(("vhost", op, bs)), r.get(("iscsi", op, bs))
    if v and i:
        print(f"{op:<9} {bs:<4} {v:>11.2f} {i:>11.2f} {v / i:>6.2f}")
PY
