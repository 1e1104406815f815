#!/usr/bin/env bash
# Installs what rtgt's test suite needs on a Debian bookworm machine. Idempotent.
#   libiscsi-bin      iscsi-test-cu, iscsi-ls, iscsi-inq, iscsi-perf ... (the real initiator)
#   qemu-block-extra  QEMU's iSCSI block driver; from bookworm-backports to match qemu-utils
#   tgt               Debian's tgtd, the peer the benches compare against
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v iscsi-test-cu >/dev/null 2>&1 || need+=(libiscsi-bin)
command -v tgtd >/dev/null 2>&1 || need+=(tgt)
command -v python3 >/dev/null 2>&1 || need+=(python3)
qemu_iscsi_ok() {
  # qemu-img lists "iscsi" among its supported formats/protocols when the module is present.
  ls /usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so >/dev/null 2>&1
}

backports_added=0
if ! qemu_iscsi_ok; then
  # Same mirror as the machine's own Debian sources, bookworm-backports suite.
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$( { cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
      | awk '($1=="URIs:" || $1=="deb") && $2 !~ /security/ {print $2; exit}')
    [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    backports_added=1
  fi
fi

if [ ${#need[@]} -gt 0 ] || ! qemu_iscsi_ok; then
  $SUDO apt-get update -qq
  if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
  if ! qemu_iscsi_ok; then
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-block-extra
  fi
fi
# tgt's package may start a tgtd on port 3260 through its init script; rtgt's tests use
# their own ports, so it is left alone.
: "$backports_added"
