#!/usr/bin/env bash
# Installs what rtgt's build and test suite need on a Debian bookworm machine. Idempotent:
# a second run changes nothing and touches the network only if something is missing.
#   build-essential, curl  a C linker for cargo, and curl to fetch rustup when needed
#   rust (rustup)     cargo, rustfmt and clippy, when no cargo is on PATH
#   libiscsi-bin      iscsi-test-cu, iscsi-ls, iscsi-inq, iscsi-perf ... (the real initiator)
#   qemu-utils + qemu-block-extra
#                     qemu-img and QEMU's iSCSI block driver, both from bookworm-backports
#                     so the module matches qemu-img exactly (QEMU refuses mismatched modules)
#   qemu-system-x86   tests/guest: boots a Linux guest as the initiator (route A passes LUNs
#                     through QEMU's iSCSI driver, so it comes from bookworm-backports too)
#   genisoimage       tests/guest: the ISO images the CD/DVD scenario mounts
#   tgt               Debian's tgtd, the peer the benches and conformance baseline compare against
#   python3           the conformance runner
#   strace            the backing-store tests watch rtgtd's flush system calls with it
#   mount (losetup)   loop devices for the block-device backing-store tests
#   iperf3            bench/: the loopback TCP ceiling the sequential read is held against
#   ceph-mon ceph-osd ceph-common
#                     a throw-away Ceph cluster for the rbd store's tests (scripts/ceph-cluster.sh)
#   librbd-dev librados-dev
#                     the rbd store links librbd and librados (cargo feature rbd)
#   tgt-rbd           tgtd's bs_rbd, the peer of the rbd bench
#   glusterfs-server  a throw-away GlusterFS volume for the glfs store's tests
#                     (scripts/gluster-cluster.sh), from bookworm-backports: 11.1, the version
#                     of the libgfapi0 that qemu-block-extra (bpo) pulls in and the glfs store
#                     links (glusterfs-common pins libgfapi0 exactly, so bookworm's 10.3 would
#                     not mix)
#   tgt-glusterfs     tgtd's bs_glfs, the peer of the glfs bench
#   open-isns-server + open-isns-utils
#                     isnsd and isnsadm: the iSNS test registers rtgtd's targets with them
#   lintian, dpkg-dev the Debian package's checks (scripts/test-deb.sh); dpkg-dev's
#                     dpkg-shlibdeps computes the package's library dependencies
#   cmake libclang-dev
#                     rtgtd's rdma feature (iSER): rdma-mummy-sys builds its loader stub
#                     with cmake and its bindings with bindgen (libclang)
#   cargo-deb (cargo install, pinned)
#                     builds the Debian packages rtgt and rtgt-rbd
# Works as root without a terminal (CI=true, no stdin); uses sudo otherwise.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

log() { printf 'install-deps: %s\n' "$*"; }

need=()
command -v iscsi-test-cu >/dev/null 2>&1 || need+=(libiscsi-bin)
command -v tgtd >/dev/null 2>&1 || need+=(tgt)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v losetup >/dev/null 2>&1 || need+=(mount)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ceph-mon >/dev/null 2>&1 || need+=(ceph-mon)
command -v ceph-osd >/dev/null 2>&1 || need+=(ceph-osd)
command -v rbd >/dev/null 2>&1 || need+=(ceph-common)
[ -e /usr/include/rbd/librbd.h ] || need+=(librbd-dev)
[ -e /usr/include/rados/librados.h ] || need+=(librados-dev)
[ -n "$(ls /usr/lib/tgt/backing-store/bs_rbd.so /usr/lib/*/tgt/backing-store/bs_rbd.so 2>/dev/null)" ] \
  || need+=(tgt-rbd)
command -v isnsd >/dev/null 2>&1 || [ -x /usr/sbin/isnsd ] || need+=(open-isns-server)
command -v isnsadm >/dev/null 2>&1 || [ -x /usr/sbin/isnsadm ] || need+=(open-isns-utils)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
# ISO 9660 images for the CD/DVD tests (crates/rtgtd/tests/cd.rs, tests/guest).
command -v genisoimage >/dev/null 2>&1 || need+=(genisoimage)
# The Debian package: lintian checks it, dpkg-shlibdeps (cargo-deb) finds its Depends.
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
qemu_iscsi_ok() {
  # qemu-img loads block-iscsi.so on demand; it must come from the same build as qemu-img.
  command -v qemu-img >/dev/null 2>&1 || return 1
  ls /usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so /usr/lib/*/qemu/block-iscsi.so >/dev/null 2>&1 || return 1
  local u b
  u=$(pkg_version qemu-utils)
  b=$(pkg_version qemu-block-extra)
  [ -n "$u" ] && [ "$u" = "$b" ] && [ "$(pkg_version qemu-system-x86)" = "$u" ]
}
# tests/guest/build.sh fetches the guest's kernel and tools with apt-get download, which
# needs the package lists (a fresh container may have none).
apt_lists_ok() { apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; }
# glusterd and libgfapi0 of one version (both from bookworm-backports), and tgtd's bs_glfs
# (installed with them, so that its libgfapi0 dependency resolves to the backports one).
gluster_ok() {
  command -v glusterd >/dev/null 2>&1 || return 1
  [ -n "$(ls /usr/lib/tgt/backing-store/bs_glfs.so /usr/lib/*/tgt/backing-store/bs_glfs.so 2>/dev/null)" ] \
    || return 1
  local s
  s=$(pkg_version glusterfs-server)
  [ -n "$s" ] && [ "$s" = "$(pkg_version libgfapi0)" ]
}

if ! qemu_iscsi_ok || ! gluster_ok; then
  # Same mirror as the machine's own Debian sources, bookworm-backports suite.
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$( { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
      | awk '($1=="URIs:" || $1=="deb") && $2 !~ /security/ {print $2; exit}')
    [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
    log "adding bookworm-backports from $mirror"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
fi

if [ ${#need[@]} -gt 0 ] || ! qemu_iscsi_ok || ! gluster_ok || ! apt_lists_ok; then
  log "apt-get update"
  $SUDO apt-get update -qq
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    $SUDO apt-get install "${APT_OPTS[@]}" "${need[@]}" </dev/null
  fi
  if ! qemu_iscsi_ok; then
    log "installing qemu-utils, qemu-block-extra and qemu-system-x86 from bookworm-backports"
    $SUDO apt-get install "${APT_OPTS[@]}" -t bookworm-backports qemu-utils qemu-block-extra \
      qemu-system-x86 </dev/null
  fi
  if ! gluster_ok; then
    log "installing glusterfs-server (bookworm-backports) and tgt-glusterfs"
    $SUDO apt-get install "${APT_OPTS[@]}" -t bookworm-backports glusterfs-server tgt-glusterfs </dev/null
  fi
fi
qemu_iscsi_ok || { log "qemu-img's iSCSI driver or qemu-system-x86 is still missing or mismatched"; exit 1; }
gluster_ok || { log "glusterfs-server or tgt-glusterfs is missing, or glusterfs-server does not match libgfapi0's version"; exit 1; }

# Rust: keep whatever toolchain is installed; install stable through rustup only if no
# cargo is found at all. rustfmt and clippy are needed by scripts/test.sh.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  log "installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --component rustfmt,clippy </dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
      log "adding rustup component $c"
      rustup component add "$c" </dev/null
    fi
  done
fi

# cargo-deb makes the Debian packages (scripts/test-deb.sh). Pinned to the version the
# packaging was written against; about a minute to build.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  log "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" </dev/null
fi

# tgt's package may start a tgtd on port 3260 through its init script; rtgt's tests use
# their own ports, so it is left alone (stop it before running `rtgtd --demo` on 3260).
log "ok"
