#!/usr/bin/env bash
# rtgtd vs Debian's tgtd on loopback: builds release, then runs bench/bench.py.
#   bash bench/run.sh            quick mode (3 rounds x 3 s), for development
#   bash bench/run.sh --full     5 rounds x 10 s with the socket floor and the A/B variants
#                                (--coalesce-us auto / 100, --iscsi batch=0); writes bench/report/ (the README links it)
#   bash bench/run.sh --only QD32 --rounds 5   a subset (substring of workload names)
#   bash bench/run.sh --rbd      rbd store vs tgtd's bs_rbd on a throw-away Ceph cluster
#   bash bench/run.sh --glfs     glfs store vs tgtd's bs_glfs on a throw-away Gluster volume
#   bash bench/run.sh --scale    1000 LUNs / 100 targets through rtgtadm --batch; 500 idle sessions
#   bash bench/run.sh --handler  a LU served by rtgt-fileio vs the same file in-process
# RTGT_BENCH_PORTS=LOW-HIGH keeps the daemons' loopback ports in that range.
# Needs root (tgtd), libiscsi-bin, qemu-img with iSCSI, tgt and iperf3:
# scripts/install-deps.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--rbd" ]; then
  # rbd store vs tgtd's bs_rbd on one image of a throw-away Ceph cluster (bench/rbd.py).
  shift
  cargo build --release -q -p rtgtd -p rtgtadm --features rtgtd/rbd
  exec python3 bench/rbd.py "$@"
fi
if [ "${1:-}" = "--glfs" ]; then
  # glfs store vs tgtd's bs_glfs on one file of a throw-away Gluster volume (bench/glfs.py).
  shift
  cargo build --release -q -p rtgtd -p rtgtadm --features rtgtd/glfs
  exec python3 bench/glfs.py "$@"
fi
if [ "${1:-}" = "--handler" ]; then
  shift
  cargo build --release -q -p rtgtd -p rtgtadm -p rtgt-fileio
  exec python3 bench/handler.py "$@"
fi
cargo build --release -q -p rtgtd -p rtgtadm -p rtgt-floor
if [ "${1:-}" = "--scale" ]; then exec python3 bench/scale.py; fi
exec python3 bench/bench.py "$@"
