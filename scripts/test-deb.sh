#!/usr/bin/env bash
# The Debian package, end to end (a step of scripts/test.sh; README.md "Debian package"):
#   1. builds rtgt_*.deb with cargo-deb (release profile) and, unless SKIP_DEB_RBD=1, the
#      rbd variant rtgt-rbd_*.deb; checks their control fields (the base package depends
#      on no Ceph library, rtgt-rbd on librbd and librados, and replaces rtgt);
#   2. runs lintian on both: any error (E:) fails; the warnings are printed (and the
#      ones expected are listed in README.md);
#   3. starts Debian's tgtd (when installed) on a loopback port, installs rtgt on this
#      machine with apt-get (as root; CI's machine is thrown away after the run, and the
#      package is purged again below), and checks that installing started no daemon and
#      enabled no unit, and that tgtd still serves;
#   4. runs the INSTALLED /usr/sbin/rtgtd --demo -f on a free loopback port with its own
#      run and state directories, reads the demo LUN with iscsi-inq, lists it with the
#      installed rtgtadm, and stops it; checks rtgtd refuses tgtd's portal; runs
#      the installed bash completion for `rtgtadm --mode ` and `--op `; checks
#      --version's features, a typo's suggestion, and `rtgtadm import-targets-conf
#      ... --write`;
#   5. purges the package and checks that no file of it, nor anything named rtgt, is left
#      (a before/after listing of /etc, /usr, /var/lib and /run).
# Installing on the machine itself (rather than into a `dpkg --root` tree) is what makes
# the test real: the unit, the tmpfiles, the maintainer scripts run as they would for an
# administrator, and the binary that serves the LUN is /usr/sbin/rtgtd. It refuses to
# run when not root, and refuses to replace an rtgt package it did not install.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

fail() {
  echo "test-deb: FAIL: $*" >&2
  exit 1
}
log() { printf 'test-deb: %s\n' "$*"; }
if [ "$(id -u)" -ne 0 ]; then
  # Like the integration tests whose initiator is missing: a note outside CI, a failure in it.
  [ -n "${CI:-}" ] && fail "must run as root (it installs and purges the package)"
  log "skipped: must run as root (it installs and purges the package)"
  exit 0
fi
for t in cargo-deb lintian iscsi-inq dpkg-deb apt-get; do
  command -v "$t" >/dev/null 2>&1 || fail "$t missing: run scripts/install-deps.sh"
done

version=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="rtgtd"))')
arch=$(dpkg --print-architecture)
deb=target/debian/rtgt_${version}-1_${arch}.deb
deb_rbd=target/debian/rtgt-rbd_${version}-1_${arch}.deb
work=$(mktemp -d /tmp/rtgt-deb-test.XXXXXX)
demo_pid=""
tgtd_pid=""
# tgtd ignores SIGTERM: it stops on tgtadm's `--op delete --mode system` (SIGKILL after 5 s).
stop_tgtd() {
  [ -n "$tgtd_pid" ] || return 0
  tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1 || true
  for _ in $(seq 50); do kill -0 "$tgtd_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$tgtd_pid" 2>/dev/null || true
  wait "$tgtd_pid" 2>/dev/null || true
  # tgtd leaves its control socket and lock behind.
  rm -f "/run/tgtd/socket.$tgt_ctl" "/run/tgtd/socket.$tgt_ctl.lock"
  tgtd_pid=""
}
cleanup() {
  [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
  stop_tgtd
  if [ -e "$work/installed-by-test" ] && dpkg-query -W -f='${Status}' rtgt 2>/dev/null | grep -q installed; then
    dpkg --purge rtgt >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The debian/changelog's version is the package's.
head -1 contrib/debian/changelog | grep -q "^rtgt ($version-1)" ||
  fail "contrib/debian/changelog's first entry is not $version-1: add one"

# --- 1. build -------------------------------------------------------------------------
t0=$(date +%s)
rm -f target/debian/rtgt*_"${version}"-1_"${arch}".*deb
# --fast: lighter compression, the same files.
cargo deb -p rtgtd --fast >"$work/cargo-deb.log" 2>&1 || { cat "$work/cargo-deb.log"; fail "cargo deb"; }
debs=("$deb")
if [ "${SKIP_DEB_RBD:-0}" != 1 ]; then
  cargo deb -p rtgtd --variant rbd --fast >"$work/cargo-deb-rbd.log" 2>&1 ||
    { cat "$work/cargo-deb-rbd.log"; fail "cargo deb --variant rbd"; }
  debs+=("$deb_rbd")
fi
log "built ${debs[*]} in $(($(date +%s) - t0))s"

field() { dpkg-deb -f "$1" "$2"; }
[ "$(field "$deb" Package)" = rtgt ] || fail "package name"
if field "$deb" Depends | grep -Eq 'librbd|librados|ceph'; then
  fail "rtgt depends on Ceph libraries: $(field "$deb" Depends)"
fi
files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for f in /usr/sbin/rtgtd /usr/sbin/rtgtadm /usr/sbin/rtgtimg /etc/rtgt/rtgt.toml \
  /usr/lib/systemd/system/rtgtd.service /usr/lib/tmpfiles.d/rtgtd.conf \
  /usr/share/man/man8/rtgtd.8.gz /usr/share/man/man8/rtgtadm.8.gz /usr/share/man/man8/rtgtimg.8.gz \
  /usr/share/man/man5/rtgt.toml.5.gz /usr/share/doc/rtgt/README.md /usr/share/doc/rtgt/copyright \
  /usr/share/doc/rtgt/LICENSE-MIT /usr/share/doc/rtgt/LICENSE-APACHE \
  /usr/share/bash-completion/completions/rtgtadm /usr/share/zsh/vendor-completions/_rtgtadm; do
  grep -qx "$f" <<<"$files" || fail "$f not in $deb"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/rtgt/rtgt.toml || fail "/etc/rtgt/rtgt.toml is not a conffile"
if [ "${SKIP_DEB_RBD:-0}" != 1 ]; then
  dep=$(field "$deb_rbd" Depends)
  grep -q librbd1 <<<"$dep" && grep -q librados2 <<<"$dep" || fail "rtgt-rbd's Depends lack librbd1/librados2: $dep"
  for k in Provides Conflicts Replaces; do
    [ "$(field "$deb_rbd" $k)" = rtgt ] || fail "rtgt-rbd's $k is '$(field "$deb_rbd" $k)', not rtgt"
  done
  diff <(dpkg-deb -c "$deb" | awk '{print $6}' | sort) <(dpkg-deb -c "$deb_rbd" | awk '{print $6}' | sed 's|/doc/rtgt-rbd|/doc/rtgt|' | sort) ||
    fail "rtgt and rtgt-rbd do not install the same files"
fi

# --- 2. lintian -----------------------------------------------------------------------
# Expected warnings (README.md, Debian package): initial-upload-closes-no-bugs (no ITP:
# the package is not uploaded to Debian) and non-standard-file-perm 0600 for
# /etc/rtgt/rtgt.toml (it holds CHAP secrets once edited).
for d in "${debs[@]}"; do
  out=$(lintian "$d" 2>&1 | grep -v 'running with root privileges' || true)
  [ -n "$out" ] && printf '%s\n' "$out"
  if grep -q '^E:' <<<"$out"; then
    fail "lintian errors on $d"
  fi
done
log "lintian: no errors"

# --- 3. install -----------------------------------------------------------------------
if dpkg-query -W -f='${Status}' rtgt rtgt-rbd 2>/dev/null | grep -q 'install ok installed'; then
  fail "an rtgt package is installed already: not replacing it (dpkg --purge rtgt rtgt-rbd first)"
fi
snapshot() {
  find /etc /usr /var/lib /run -xdev \
    \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache -o -path /run/user \
    -o -path '/tmp/*' -o -path /var/lib/lintian \) -prune -o -print 2>/dev/null | sort
}
snapshot >"$work/before"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Debian's tgtd running beside the installation (on a loopback port of its own and a
# private control port, as it would hold 3260 on a real machine): installing must leave
# it serving, and rtgtd must refuse its port.
tgtd_pid=""
if [ -x /usr/sbin/tgtd ]; then
  tgt_port=$(free_port)
  tgt_ctl=$((700 + RANDOM % 200))
  /usr/sbin/tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$tgt_port" >"$work/tgtd.log" 2>&1 &
  tgtd_pid=$!
  for _ in $(seq 100); do port_open "$tgt_port" && break; sleep 0.1; done
  port_open "$tgt_port" || { cat "$work/tgtd.log"; fail "tgtd did not start"; }
fi
touch "$work/installed-by-test"
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "./$deb" </dev/null \
  >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install ./$deb"; }
log "installed $(dpkg-query -W -f='${Package} ${Version}' rtgt)"
# Nothing started, nothing enabled: a tgtd on port 3260 is left alone.
if pidof /usr/sbin/rtgtd >/dev/null; then fail "installing started rtgtd"; fi
if command -v systemctl >/dev/null 2>&1; then
  state=$(systemctl is-enabled rtgtd.service 2>/dev/null || true)
  [ "$state" != enabled ] || fail "installing enabled rtgtd.service"
fi
[ -d /var/lib/rtgt ] || fail "/var/lib/rtgt not created"
if [ -n "$tgtd_pid" ]; then
  kill -0 "$tgtd_pid" && port_open "$tgt_port" || fail "tgtd stopped serving when rtgt was installed"
  log "tgtd on 127.0.0.1:$tgt_port still serving after the installation"
fi

# --- 4. the installed binaries --------------------------------------------------------
v=$(/usr/sbin/rtgtd --version)
[ "$v" = "rtgtd $version (features: none)" ] || fail "rtgtd --version: $v"
err=$(/usr/sbin/rtgtadm --op show --mode targt 2>&1 || true)
grep -q "unknown mode: targt (did you mean target?)" <<<"$err" || fail "no suggestion: $err"

port=$(free_port)
mkdir -p "$work/run" "$work/state"
export RTGT_RUN_DIR=$work/run
/usr/sbin/rtgtd --demo -f --iscsi "portal=127.0.0.1:$port" --state-dir "$work/state" \
  >"$work/rtgtd.log" 2>&1 &
demo_pid=$!
for _ in $(seq 100); do
  [ -S "$work/run/socket.0" ] && port_open "$port" && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/rtgtd.log"; fail "installed rtgtd --demo exited"; }
  sleep 0.1
done
inq=$(iscsi-inq "iscsi://127.0.0.1:$port/iqn.2026-11.org.rtgt:demo/1") ||
  { cat "$work/rtgtd.log"; fail "iscsi-inq on the demo LUN"; }
grep -q "Peripheral Device Type:DIRECT_ACCESS" <<<"$inq" || fail "iscsi-inq: $inq"
grep -q "Vendor:" <<<"$inq" || fail "iscsi-inq: $inq"
shown=$(/usr/sbin/rtgtadm --lld iscsi --op show --mode target)
grep -q "Target 1: iqn.2026-11.org.rtgt:demo" <<<"$shown" || fail "rtgtadm show: $shown"
log "installed rtgtd --demo served LUN 1 on 127.0.0.1:$port; iscsi-inq: $(grep -E 'Vendor|Product' <<<"$inq" | tr -s ' \n' ' ')"
kill "$demo_pid"
wait "$demo_pid" || true
demo_pid=""
[ -e "$work/state/demo.img" ] || fail "the demo image is not in --state-dir"

# A portal someone else holds (tgtd's; without tgt, a listener's of ours that binds port
# 0 itself, since a port found free earlier could meanwhile be another connection's local
# port on a busy machine): one line, exit status 1.
holder=""
if [ -n "$tgtd_pid" ]; then
  held=$tgt_port
else
  python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(30)' >"$work/held" &
  holder=$!
  for _ in $(seq 100); do [ -s "$work/held" ] && break; sleep 0.1; done
  held=$(cat "$work/held")
fi
if err=$(timeout 20 /usr/sbin/rtgtd -f --iscsi "portal=127.0.0.1:$held" -C 9 --state-dir "$work/state" 2>&1); then
  fail "rtgtd started on a taken portal"
fi
[ -n "$holder" ] && { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true; }
[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "portal 127.0.0.1:$held: address already in use" <<<"$err" ||
  fail "taken portal: $err"
whose="our listener's"
[ -n "$tgtd_pid" ] && whose="tgtd's"
log "rtgtd refused $whose portal 127.0.0.1:$held: $err"
stop_tgtd
unset RTGT_RUN_DIR

# The installed bash completion: modes after --mode, ops after --op.
complete_words() {
  bash --norc -c 'source /usr/share/bash-completion/completions/rtgtadm
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _rtgtadm_with_tids rtgtadm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' complete "$@"
}
modes=$(complete_words rtgtadm --lld iscsi --mode "")
for m in target logicalunit system lld account connection portal; do
  grep -qx "$m" <<<"$modes" || fail "completion of --mode lacks $m: $modes"
done
ops=$(complete_words rtgtadm --mode target --op "")
for o in new delete show bind unbind update; do
  grep -qx "$o" <<<"$ops" || fail "completion of --op lacks $o: $ops"
done
log "bash completion: --mode -> $(tr '\n' ' ' <<<"$modes")| --op -> $(tr '\n' ' ' <<<"$ops")"

# Switching from tgt (README): targets.conf converted, written mode 0600.
/usr/sbin/rtgtadm import-targets-conf examples/targets.conf --write "$work/rtgt.toml" 2>"$work/import.err" ||
  { cat "$work/import.err"; fail "rtgtadm import-targets-conf --write"; }
grep -q '^\[\[target\]\]' "$work/rtgt.toml" || fail "import wrote no target"
[ "$(stat -c %a "$work/rtgt.toml")" = 600 ] || fail "import --write: mode $(stat -c %a "$work/rtgt.toml")"

# --- 5. purge -------------------------------------------------------------------------
dpkg --purge rtgt >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge rtgt"; }
rm -f "$work/installed-by-test"
if dpkg-query -W -f='${Status}' rtgt 2>/dev/null | grep -q installed; then fail "rtgt still installed"; fi
left=""
while read -r f; do
  [ -e "$f" ] && [ ! -d "$f" ] && left+="$f "
done <<<"$files"
[ -z "$left" ] || fail "purge left package files: $left"
for d in /etc/rtgt /var/lib/rtgt /usr/share/doc/rtgt; do
  [ ! -e "$d" ] || fail "purge left $d"
done
snapshot >"$work/after"
new=$(comm -13 "$work/before" "$work/after")
if grep -i rtgt <<<"$new"; then fail "purge left the files above"; fi
[ -z "$new" ] || log "new meanwhile, not rtgt's: $(tr '\n' ' ' <<<"$new")"
log "purged: no rtgt file left"
log "ok ($(($(date +%s) - t0))s)"
