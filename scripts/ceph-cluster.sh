#!/usr/bin/env bash
# scripts/ceph-cluster.sh up|down DIR -- a throw-away single-node Ceph cluster for rtgt's
# rbd tests, conformance run and bench: one mon and one OSD (memstore: data in the OSD's
# RAM) on 127.0.0.1, no cephx, no mgr (RBD I/O needs none), pool "rbd" of size 1.
# Everything lives in DIR; `down` kills only the daemons whose command line names
# DIR/ceph.conf and deletes DIR. Debian bookworm: ceph-mon ceph-osd ceph-common.
#
#   eval "$(scripts/ceph-cluster.sh up /tmp/c1)"   # prints: export CEPH_CONF=DIR/ceph.conf
#   rbd create --size 1G --image-feature layering rbd/img
#   scripts/ceph-cluster.sh down /tmp/c1
#
# Environment: CEPH_MEM=4G (memstore capacity; writes past ~95% of it make the OSD full),
# CEPH_PORT=N (mon port; default: the first free 32-port window from a hash of DIR).
# Startup takes 1-3 s on two cores.
set -euo pipefail
die() { echo "ceph-cluster: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 up|down DIR"
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/ceph.conf

ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$CONF"; }
down() {
  local pids=() p
  for p in /proc/[0-9]*; do
    case $(cat "$p/comm" 2>/dev/null) in
      ceph-mon|ceph-osd) ours "${p#/proc/}" && pids+=("${p#/proc/}");;
    esac
  done
  # SIGKILL: the data is throw-away, and a memstore OSD asked to stop would first save
  # its whole store to disk.
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    local left=0
    for p in "${pids[@]}"; do ours "$p" && left=1; done
    [ $left = 0 ] && break
    sleep 0.05
  done
  if [ -f "$CONF" ] && grep -q 'rtgt ceph-cluster.sh' "$CONF"; then rm -rf "$DIR"; fi
}

case $cmd in
  down) down; exit 0;;
  up) ;;
  *) die "usage: $0 up|down DIR";;
esac

for b in ceph ceph-mon ceph-osd monmaptool rbd; do
  command -v "$b" >/dev/null || die "missing $b (apt-get install ceph-mon ceph-osd ceph-common)"
done
[ -e "$CONF" ] && down
mkdir -p "$DIR"/{run,log,mon.a,osd.0}
trap 'rc=$?; [ $rc = 0 ] || { echo "ceph-cluster: start failed (rc=$rc), logs in $DIR/log" >&2; tail -5 "$DIR"/log/* >&2 2>/dev/null; down; }' EXIT

free_window() { ! ss -Htln "( sport >= :$1 and sport <= :$(($1 + 31)) )" 2>/dev/null | grep -q .; }
PORT=${CEPH_PORT:-$((40000 + 32 * ($(printf '%s' "$DIR" | cksum | cut -d' ' -f1) % 600)))}
if [ -z "${CEPH_PORT:-}" ]; then
  for _ in $(seq 1 600); do
    free_window "$PORT" && break
    PORT=$((PORT + 32)); [ "$PORT" -lt 59200 ] || PORT=40000
  done
fi
FSID=$(cat /proc/sys/kernel/random/uuid)

cat >"$CONF" <<CONF
# throw-away cluster made by rtgt ceph-cluster.sh
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
mon initial members = a
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr1 = false
ms bind port min = $((PORT + 1))
ms bind port max = $((PORT + 20))
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
[mon]
mon data = $DIR/\$name
# commit map changes at once (the default batches them for a second)
paxos propose interval = 0.01
paxos min wait = 0.001
mon data avail crit = 0
[osd]
osd data = $DIR/\$name
osd objectstore = memstore
memstore device bytes = ${CEPH_MEM:-4G}
osd op num shards = 2
osd op num threads per shard = 1
osd max object name len = 256
osd max object namespace len = 64
# a client silent this long loses its watches (the rbd test checks that a gateway
# re-establishes its own at once); the default is 30 s
osd client watch timeout = 5
[client]
# many clients, one name: no per-client admin socket
admin socket =
rados osd op timeout = 30
rados mon op timeout = 30
client mount timeout = 30
CONF

C() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }
monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" 2>>"$DIR/log/setup.err"
ceph-mon -c "$CONF" -i a 2>>"$DIR/log/setup.err"
for _ in $(seq 1 100); do C mon stat >/dev/null 2>&1 && break; sleep 0.1; done
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
[ "$(C osd new "$OSD_UUID" 0)" = 0 ] || die "osd new failed"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/setup.err" 2>&1
ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/setup.err"
for _ in $(seq 1 300); do
  C osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break
  sleep 0.1
done
C osd stat -f json | grep -q '"num_up_osds":1' || die "the OSD did not come up"
C osd pool create rbd 8 8 replicated >/dev/null 2>>"$DIR/log/setup.err"
C osd pool application enable rbd rbd >/dev/null 2>>"$DIR/log/setup.err"
# The first client operation waits for the PGs to peer: make that happen now.
timeout 60 rbd -c "$CONF" ls rbd >/dev/null
echo "export CEPH_CONF=$CONF"
