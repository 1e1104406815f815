#!/usr/bin/env bash
# scripts/gluster-cluster.sh CMD DIR [ARGS] -- a throw-away one-node GlusterFS volume for
# rtgt's glfs tests, conformance run and bench: one glusterd and one brick process
# (glusterfsd) on a private loopback address, one distribute volume "rtgtvol" with one
# brick, DIR/brick. Everything lives in DIR; `down` kills only the processes whose pid
# files are under DIR (or whose command line names DIR/) and deletes DIR. Root only (a
# brick needs trusted.* extended attributes). Debian bookworm: glusterfs-server 11.1
# from bookworm-backports (scripts/install-deps.sh), the version of libgfapi0 there.
#
#   eval "$(scripts/gluster-cluster.sh up /tmp/g1)"   # GLUSTER_HOST, GLUSTER_VOL, ...
#   scripts/gluster-cluster.sh file /tmp/g1 disk.img 1G  # a sparse file on the volume
#   rtgtadm ... --bstype glfs -b "$GLUSTER_VOL@$GLUSTER_HOST:disk.img"
#   scripts/gluster-cluster.sh brick-kill /tmp/g1       # SIGKILL the brick process
#   scripts/gluster-cluster.sh brick-start /tmp/g1      # and start it again
#   scripts/gluster-cluster.sh down /tmp/g1
#
# Commands: up, down, file NAME SIZE, brick-kill, brick-start, brick-pid, stop-volume,
# start-volume, cli ARGS... (the gluster CLI of this glusterd).
#
# Why it is done this way:
# - gluster refuses localhost and 127.0.0.1 as a brick host, but takes any other
#   127.0.0.X and treats it as local; each DIR gets its own X (from a hash of DIR, the
#   first one whose port 24007 is free), so instances never share glusterd's port, which
#   tgt's bs_glfs fixes at 24007. Bricks get a private 64-port window per X.
# - glusterd runs from its own volfile (working, run and log directories under DIR, its
#   CLI socket DIR/run/glusterd.socket), never touching /var/lib/glusterd.
# - At start glusterd runs the geo-replication helper gsyncd about 14 times (Python,
#   about 3 s in all); glusterd runs in a private mount namespace with a no-op stand-in
#   bind-mounted over gsyncd, gone with glusterd.
# - The brick's file on a one-brick volume is an ordinary sparse file DIR/brick/NAME, so
#   a test can compare it with what it wrote through an initiator.
# - GLUSTER_BRICK_SIZE=64M puts the brick on a tmpfs of that size (a volume that fills
#   up: writes past it fail with ENOSPC).
# - A killed brick lingers as a zombie until PID 1 reaps it, and glusterd takes a pid
#   file naming a zombie for a running brick: brick-start removes the pid file first.
set -euo pipefail
die() { echo "gluster-cluster: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 up|down|file|brick-kill|brick-start|brick-pid|stop-volume|start-volume|cli DIR [ARGS]"
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
shift 2
VOL=rtgtvol
VOLFILE=$DIR/glusterd.vol
SOCK=$DIR/run/glusterd.socket
[ ${#SOCK} -le 100 ] || die "DIR too long for a unix socket path ($SOCK)"
CLI=(gluster --mode=script "--glusterd-sock=$SOCK" "--log-file=$DIR/log/cli.log")
G() { timeout 60 "${CLI[@]}" "$@"; }

cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null; }
# Still running and started from DIR (a zombie's command line is empty).
ours() { [[ $(cmdline "$1") == *"$DIR/"* ]]; }
brick_pidfile() { local f; for f in "$DIR"/run/vols/"$VOL"/*.pid; do [ -e "$f" ] && echo "$f"; break; done; return 0; }
brick_pid() { local pf; pf=$(brick_pidfile); [ -n "$pf" ] && [ -s "$pf" ] && ours "$(cat "$pf")" && cat "$pf"; }
host() { sed -n 's/^ *option transport.socket.bind-address *//p' "$VOLFILE"; }

down() {
  local pids=() p pid socks=()
  for p in "$DIR"/run/glusterd.pid "$DIR"/run/vols/*/*.pid; do
    [ -s "$p" ] && pid=$(cat "$p") && [[ $pid =~ ^[0-9]+$ ]] && ours "$pid" && pids+=("$pid")
  done
  for p in /proc/[0-9]*; do
    case $(cat "$p/comm" 2>/dev/null) in
      glusterd|glusterfsd|glusterfs) ours "${p#/proc/}" && pids+=("${p#/proc/}");;
    esac
  done
  # The bricks' unix sockets live in /var/run/gluster (compiled in), named from DIR.
  for pid in "${pids[@]}"; do
    p=$(cmdline "$pid" | sed -n 's/.* -S \([^ ]*\.socket\).*/\1/p')
    case $p in /var/run/gluster/*.socket|/run/gluster/*.socket) socks+=("$p");; esac
  done
  if [ -s "$DIR/run/brick-sockets" ]; then
    while read -r p; do socks+=("$p"); done <"$DIR/run/brick-sockets"
  fi
  # SIGKILL: the data is throw-away.
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local left=0
    for pid in "${pids[@]}"; do ours "$pid" && left=1; done
    [ $left = 0 ] && break
    sleep 0.05
  done
  for p in "${socks[@]}"; do
    case $p in /var/run/gluster/*.socket|/run/gluster/*.socket) rm -f "$p";; esac
  done
  if mountpoint -q "$DIR/brick" 2>/dev/null; then umount -l "$DIR/brick" || true; fi
  if [ -f "$VOLFILE" ] && grep -q 'rtgt gluster-cluster.sh' "$VOLFILE"; then rm -rf "$DIR"; fi
}

record_brick_socket() {
  local pid s
  pid=$(brick_pid) || return 0
  s=$(cmdline "$pid" | sed -n 's/.* -S \([^ ]*\.socket\).*/\1/p')
  [ -n "$s" ] && echo "$s" >>"$DIR/run/brick-sockets"
  return 0
}

brick_start() {
  local pf
  pf=$(brick_pidfile)
  [ -z "$pf" ] || rm -f "$pf"
  G volume start "$VOL" force >/dev/null
  for _ in $(seq 1 200); do brick_pid >/dev/null && break; sleep 0.05; done
  brick_pid >/dev/null || die "the brick did not start (see $DIR/log/bricks/)"
  record_brick_socket
}

# A sparse file on the volume, created through libgfapi (python3 ctypes, no build step);
# the process leaves with os._exit, skipping glfs_fini, which takes about 10 s
# (gluster issue 2606).
mkfile() {
  local name=$1 size=$2
  python3 - "$(host)" "$VOL" "$name" "$size" "$DIR/log/gfapi-file.log" <<'PY'
import ctypes, os, sys
host, vol, name, size, log = sys.argv[1:]
mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
size = int(size[:-1]) * mult[size[-1].upper()] if size[-1].upper() in mult else int(size)
g = ctypes.CDLL("libgfapi.so.0", use_errno=True)
g.glfs_new.restype = ctypes.c_void_p
g.glfs_creat.restype = ctypes.c_void_p
g.glfs_creat.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
g.glfs_set_volfile_server.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
g.glfs_set_logging.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
g.glfs_init.argtypes = [ctypes.c_void_p]
g.glfs_ftruncate.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
g.glfs_close.argtypes = [ctypes.c_void_p]
fs = g.glfs_new(vol.encode())
g.glfs_set_volfile_server(fs, b"tcp", host.encode(), 24007)
g.glfs_set_logging(fs, log.encode(), 7)
def fail(what):
    e = ctypes.get_errno()
    sys.stderr.write(f"gluster-cluster: {what}: {os.strerror(e)}\n")
    sys.stderr.flush()
    os._exit(1)
if g.glfs_init(fs) != 0:
    fail("glfs_init")
fd = g.glfs_creat(fs, name.encode(), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
if not fd:
    fail(f"glfs_creat {name}")
if g.glfs_ftruncate(fd, size, None, None) != 0:
    fail(f"glfs_ftruncate {name}")
g.glfs_close(fd)
sys.stdout.flush()
os._exit(0)
PY
}

case $cmd in
  down) down; exit 0;;
  file) [ $# -eq 2 ] || die "usage: $0 file DIR NAME SIZE"; mkfile "$1" "$2"; exit 0;;
  brick-kill)
    pid=$(brick_pid) || die "no brick running"
    kill -KILL "$pid"
    exit 0;;
  brick-start) brick_start; exit 0;;
  brick-pid) brick_pid || exit 1; exit 0;;
  stop-volume) G volume stop "$VOL" force >/dev/null; exit 0;;
  start-volume) brick_start; exit 0;;
  cli) G "$@"; exit $?;;
  up) ;;
  *) die "unknown command $cmd";;
esac

for b in glusterd gluster glusterfsd python3; do
  command -v "$b" >/dev/null || die "missing $b (scripts/install-deps.sh: glusterfs-server from bookworm-backports)"
done
[ "$(id -u)" = 0 ] || die "must run as root (glusterd; trusted.* attributes on the brick)"
[ -e "$VOLFILE" ] && down
mkdir -p "$DIR"/{run,log,lib,brick}
trap 'rc=$?; [ $rc = 0 ] || { echo "gluster-cluster: start failed (rc=$rc), logs in $DIR/log" >&2; tail -5 "$DIR"/log/*.log >&2 2>/dev/null; down; }' EXIT

busy=$(ss -Htln 'sport = :24007' 2>/dev/null | awk '{print $4}')
if grep -qE '^(0\.0\.0\.0|\*|\[::\]):24007$' <<<"$busy"; then
  die "something listens on *:24007 (a system glusterd?), so no 127.0.0.X:24007 is free"
fi
X=$((2 + $(printf '%s' "$DIR" | cksum | cut -d' ' -f1) % 253))
for _ in $(seq 1 253); do
  grep -qxF "127.0.0.$X:24007" <<<"$busy" || break
  X=$((X + 1)); [ "$X" -le 254 ] || X=2
done
HOST=127.0.0.$X
BASE=$((49152 + 64 * (X % 180)))

if [ -n "${GLUSTER_BRICK_SIZE:-}" ]; then
  mount -t tmpfs -o "size=$GLUSTER_BRICK_SIZE" rtgt-brick "$DIR/brick"
fi

cat >"$VOLFILE" <<EOF
# throw-away glusterd made by rtgt gluster-cluster.sh; host $HOST
volume management
    type mgmt/glusterd
    option working-directory $DIR/lib
    option run-directory $DIR/run
    option logging-directory $DIR/log
    option glusterd-sockfile $SOCK
    option transport-type socket
    option transport.socket.bind-address $HOST
    option transport.socket.listen-port 24007
    option transport.address-family inet
    option rpc-auth-allow-insecure on
    option ping-timeout 0
    option event-threads 1
    option base-port $BASE
    option max-port $((BASE + 63))
end-volume
EOF

GD=(glusterd -N -f "$VOLFILE" -p "$DIR/run/glusterd.pid" -l "$DIR/log/glusterd.log")
GSYNCD=$(glusterd --print-libexecdir 2>/dev/null)/gsyncd
if [ -e "$GSYNCD" ] && unshare -m --propagation private true 2>/dev/null; then
  printf '#!/bin/sh\n# rtgt gluster-cluster.sh: no geo-replication here\n[ "$1" = --version ] && echo "gsyncd (stub)"\nexit 0\n' >"$DIR/gsyncd-stub"
  chmod 755 "$DIR/gsyncd-stub"
  setsid unshare -m --propagation private \
    sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$DIR/gsyncd-stub" "$GSYNCD" "${GD[@]}" \
    </dev/null >>"$DIR/log/glusterd.out" 2>&1 &
else
  setsid "${GD[@]}" </dev/null >>"$DIR/log/glusterd.out" 2>&1 &
fi
GD_PID=$!
# The CLI must not connect between glusterd's bind() and listen(): refused, it would wait
# 3 s (its reconnect interval) before trying again.
for _ in $(seq 1 300); do
  ss -Hxl 2>/dev/null | awk -v s="$SOCK" '$5 == s {f = 1} END {exit !f}' && break
  kill -0 "$GD_PID" 2>/dev/null || die "glusterd exited (see $DIR/log/glusterd.log)"
  sleep 0.02
done
for _ in $(seq 1 300); do
  G volume list >/dev/null 2>&1 && break
  sleep 0.05
done
G volume list >/dev/null 2>&1 || die "glusterd does not answer (see $DIR/log/glusterd.log)"
# `force`: the brick is on the root file system, which gluster would rather not use.
G volume create "$VOL" "$HOST:$DIR/brick" force >>"$DIR/log/setup.out" 2>>"$DIR/log/setup.err"
for kv in ${GLUSTER_VOLSET:-}; do
  G volume set "$VOL" "${kv%%=*}" "${kv#*=}" >>"$DIR/log/setup.out" 2>>"$DIR/log/setup.err"
done
G volume start "$VOL" >>"$DIR/log/setup.out" 2>>"$DIR/log/setup.err"
for _ in $(seq 1 200); do brick_pid >/dev/null && break; sleep 0.05; done
brick_pid >/dev/null || die "the brick did not start (see $DIR/log/bricks/)"
record_brick_socket
echo "export GLUSTER_HOST=$HOST"
echo "export GLUSTER_VOL=$VOL"
echo "export GLUSTER_BRICK=$DIR/brick"
