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
# CEPH_PORT=N (mon port; default: a free 32-port window in 7000-9975 picked from a hash
# of DIR, the next one if its port is taken at bind time).
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
if [ -n "${CEPH_PORT:-}" ]; then
  [[ $CEPH_PORT =~ ^[0-9]+$ ]] && [ "$CEPH_PORT" -ge 1024 ] && [ "$CEPH_PORT" -le 65515 ] ||
    die "CEPH_PORT=$CEPH_PORT: not a port from 1024 to 65515 (the OSD takes the 20 above it)"
fi
[ -e "$CONF" ] && down
mkdir -p "$DIR"/{run,log,mon.a,osd.0}
# On failure: say where it stopped (the logs go with the directory), then clean up.
failed() {
  echo "ceph-cluster: start failed (rc=$1), logs in $DIR/log (removed):" >&2
  local f
  for f in "$DIR"/log/*; do
    [ -s "$f" ] || continue
    echo "--- ${f##*/}:" >&2
    case $f in
      *.err) grep -v '^$' "$f" | tail -n 8 >&2 || true;;
      *) grep -F -- ' -1 ' "$f" | tail -n 8 >&2 || true;;
    esac
  done
  down
}
trap 'rc=$?; [ $rc = 0 ] || failed $rc' EXIT

# The mon's port and the OSD's (PORT+1..PORT+20) come from a 32-port window between
# 7000 and 9975: below the kernel's ephemeral range (32768+ by default), where every
# outgoing connection takes its local port, and apart from the ranges the suite's own
# port probes use (Rust tests 20000-31999, conformance 10000-19999, bench.py
# 11000-29000). A window is free when no TCP socket in any state holds one of its ports:
# an established or TIME_WAIT connection blocks a bind as surely as a listener. Another
# program can still take a port between that look and the bind, so a mon that cannot
# bind makes the script try the next free window.
LO=7000 WINDOWS=93
in_window() { ss -Htan "( sport >= :$1 and sport <= :$(($1 + 31)) )" 2>/dev/null | grep -q .; }
next_window() { # $1: a window's first port; prints the next free window's
  local p=$1 _
  for _ in $(seq 1 $WINDOWS); do
    p=$((p + 32)); [ "$p" -lt $((LO + 32 * WINDOWS)) ] || p=$LO
    in_window "$p" || { echo "$p"; return 0; }
  done
  die "no free 32-port window between $LO and $((LO + 32 * WINDOWS - 1))"
}
if [ -n "${CEPH_PORT:-}" ]; then
  PORT=$CEPH_PORT TRIES=1
else
  PORT=$(next_window $((LO + 32 * ($(printf '%s' "$DIR" | cksum | cut -d' ' -f1) % WINDOWS) - 32)))
  TRIES=5
fi
write_conf() {
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
ms bind retry count = 2
ms bind retry delay = 1
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
}

C() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }
# ceph-mon binds before it daemonizes and exits 1 when it cannot (ms bind retry count
# tries, a second apart), so a clean exit means it is listening.
start_mon() {
  FSID=$(cat /proc/sys/kernel/random/uuid)
  write_conf || die "cannot write $CONF"
  rm -rf "$DIR/mon.a"; mkdir -p "$DIR/mon.a"
  # (called as `start_mon && break`, where set -e does not apply: each step checks)
  monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" "$DIR/monmap" >/dev/null ||
    die "monmaptool failed"
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" 2>>"$DIR/log/setup.err" ||
    die "ceph-mon --mkfs failed"
  echo "ceph-mon on port $PORT" >>"$DIR/log/setup.err"
  ceph-mon -c "$CONF" -i a 2>>"$DIR/log/setup.err"
}
for try in $(seq 1 "$TRIES"); do
  start_mon && break
  [ "$try" -lt "$TRIES" ] || die "ceph-mon did not start (last on port $PORT; $TRIES attempt(s))"
  echo "ceph-cluster: ceph-mon did not start on port $PORT (taken?); trying another window" >&2
  PORT=$(next_window "$PORT")
done
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
