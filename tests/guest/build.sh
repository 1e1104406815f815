#!/usr/bin/env bash
# Builds the interop suite's guest: a Debian kernel and an initramfs holding Linux's SCSI
# upper-level drivers (sd, st, sr, ch, sg), virtio-scsi, iscsi_tcp and the user-space
# tools the scenarios drive (mt-st, mtx, tar, e2fsprogs, sg3-utils, lsscsi, open-iscsi).
#
#   bash tests/guest/build.sh [CACHE]     (default: RTGT_GUEST_CACHE or target/guest)
#
# RTGT_GUEST_RDMA=1 builds the RDMA flavour (its own cache, default target/guest-rdma):
# Debian's generic kernel (the cloud one has neither rdma_rxe nor ib_iser), soft-RoCE and
# the kernel's iSER initiator, the RDMA user space (libibverbs, librdmacm, the rxe
# provider, iproute2's `rdma`), ext4 as a module. The guest's /init then brings up rxe0
# on dummy0 when the kernel command line has rtgt.rdma=ADDR/PREFIX.
#
# Everything comes from Debian packages, fetched with `apt-get download` and unpacked with
# `dpkg -x`; nothing is installed on the host. The result is CACHE/vmlinuz and
# CACHE/initrd.cpio (uncompressed newc). Idempotent: a stamp of the package versions, the
# module list and this directory's files decides whether anything is rebuilt, so a second
# run costs a few apt-cache look-ups.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RDMA=${RTGT_GUEST_RDMA:-0}
if [ "$RDMA" = 1 ]; then
  CACHE=${1:-${RTGT_GUEST_CACHE:-$ROOT/target/guest-rdma}}
  KERNEL_META=${RTGT_GUEST_KERNEL:-linux-image-amd64}
else
  CACHE=${1:-${RTGT_GUEST_CACHE:-$ROOT/target/guest}}
  KERNEL_META=${RTGT_GUEST_KERNEL:-linux-image-cloud-amd64}
fi
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
log() { printf 'guest-build: %s\n' "$*" >&2; }

# The guest's user space. Shared libraries are listed by hand; the closure check below
# fails the build if one is missing, rather than leaving a tool that can't start.
PKGS=(
  libc6 libgcc-s1 busybox-static dash
  coreutils libacl1 libattr1 libselinux1 libpcre2-8-0 libgmp10 libcap2
  tar e2fsprogs libext2fs2 libcom-err2 libss2 libblkid1 libuuid1
  eject mt-st mtx sg3-utils libsgutils2-1.46-2 lsscsi kmod libkmod2
  open-iscsi libopeniscsiusr libisns0 libmount1 libsystemd0 libssl3 liblzma5 libzstd1
  liblz4-1 libgcrypt20 libgpg-error0
  libiscsi-bin libiscsi7 libcunit1 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200
)
# Kernel modules loaded in the guest (their dependencies are added below).
MODS=(
  virtio_pci virtio_scsi virtio_net virtio_console
  sd_mod st sr_mod ch sg
  iscsi_tcp isofs
  scsi_debug
)
if [ "$RDMA" = 1 ]; then
  # iproute2 for `ip` and `rdma` (its other tools are deleted below); the rxe provider.
  # tgt: Debian's tgtd has iSER built in, the peer the iser scenario compares against.
  PKGS+=(ibverbs-providers iproute2 libbpf1 libelf1 zlib1g libmnl0 libbsd0 libmd0 tgt libaio1)
  # crc32_generic is no depends= of rdma_rxe, but rxe needs the crc32 hash at
  # `rdma link add`; ext4 is a module in the generic kernel.
  MODS+=(rdma_rxe ib_uverbs rdma_ucm rdma_cm ib_cm iw_cm ib_core configfs crc32_generic
    dummy udp_tunnel ip6_udp_tunnel ib_iser ext4 crc32c_generic)
fi

command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
  { log "needs apt-get and dpkg (Debian)"; exit 2; }
# apt-cache depends resolves the metapackage to the versioned image package
# (linux-image-6.1.0-NN-cloud-amd64).
KPKG=$(apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$KPKG" ] || { log "cannot resolve $KERNEL_META (apt lists missing? run apt-get update)"; exit 2; }
# One apt-cache call for every candidate version ("package: version" lines).
VERSIONS=$(apt-cache policy "$KPKG" "${PKGS[@]}" | awk '/^[^ ]/ {p = $1} /Candidate:/ {print p, $2}')

stamp=$( {
  echo "$VERSIONS"
  echo "${MODS[*]} rdma=$RDMA"
  cat "$HERE/build.sh" "$HERE/init" "$HERE/host-step" "$HERE/newc.py"
} | sha256sum | cut -d' ' -f1)
if [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$stamp" ] && [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/initrd.cpio" ]; then
  log "up to date in $CACHE"
  exit 0
fi
t0=$(date +%s)

DEBS=$CACHE/debs
mkdir -p "$DEBS"
# apt-get download as root warns that _apt can't write the directory; the download is fine.
(cd "$DEBS" && apt-get download -q "$KPKG" "${PKGS[@]}" 2>&1) |
  grep -v -e 'unsandboxed' -e '^Get:' -e '^Fetched' >&2 || true
deb() {
  local f
  f=$(ls -1t "$DEBS/$1"_*.deb 2>/dev/null | head -1)
  [ -n "$f" ] || { log "package $1 was not downloaded"; exit 1; }
  echo "$f"
}

# --- user space ------------------------------------------------------------------------
R=$CACHE/root
rm -rf "$R"
mkdir -p "$R"
for p in "${PKGS[@]}"; do dpkg -x "$(deb "$p")" "$R"; done
rm -rf "$R"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion,zsh} \
  "$R"/usr/lib/x86_64-linux-gnu/gconv "$R"/etc/init.d "$R"/lib/systemd "$R"/usr/lib/systemd
mkdir -p "$R"/{proc,sys,dev,tmp,run,mnt,root,data,var/lib,var/lock,etc/iscsi}
# iproute2 (RDMA flavour): only ip and rdma; ss, tc and the rest would pull in krb5,
# xtables and db5.3.
for f in bin/ss sbin/bridge sbin/dcb sbin/devlink sbin/rtacct sbin/rtmon sbin/tc \
  sbin/tipc sbin/vdpa usr/bin/lnstat usr/bin/nstat usr/bin/routel usr/sbin/arpd \
  usr/sbin/genl usr/bin/ctstat usr/bin/rtstat; do rm -f "${R:?}/$f"; done
rm -rf "$R"/usr/lib/x86_64-linux-gnu/tc
rm -f "$R"/usr/sbin/tgt-admin # perl
# busybox fills the gaps (mount, ip, cmp, find, ...) but never replaces a real tool: the
# scenarios mean GNU tar and mt-st, not their busybox look-alikes. For the same reason
# /bin/sh is dash: Debian's static busybox, as a shell, prefers its own applets to PATH.
for a in $("$R/bin/busybox" --list-full); do
  [ -e "$R/$a" ] || [ -L "$R/$a" ] || { mkdir -p "$R/$(dirname "$a")"; ln -s /bin/busybox "$R/$a"; }
done
ln -sf dash "$R/bin/sh"
ln -sf mt-st "$R/bin/mt" # Debian installs mt-st's mt through alternatives
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
: >"$R/etc/stinit.def"
echo "InitiatorName=iqn.2026-11.org.rtgt:guest" >"$R/etc/iscsi/initiatorname.iscsi"
# Route B: short timeouts, so a target that stops answering fails the run in seconds, and
# a synchronous LUN scan after login (the runner waits for the devices anyway).
cat >"$R/etc/iscsi/iscsid.conf" <<'EOF'
node.startup = manual
node.session.timeo.replacement_timeout = 15
node.conn[0].timeo.login_timeout = 15
node.conn[0].timeo.logout_timeout = 15
node.session.initial_login_retry_max = 2
node.session.scan = auto
EOF
install -m 0755 "$HERE/init" "$R/init"
install -m 0755 "$HERE/host-step" "$R/bin/host-step"

# Host-side use of the guest's own kmod (depmod) and loader, so the host needs neither.
LDSO=$R/lib64/ld-linux-x86-64.so.2
LIBS=$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu
guest_tool() { "$LDSO" --library-path "$LIBS" "$@"; }

# Every dynamically linked program must find all its libraries inside the root.
missing=0
while IFS= read -r f; do
  [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
  out=$(guest_tool --list "$f" 2>&1) || continue # static binaries: not a dynamic object
  while IFS= read -r l; do
    case $l in
    *"not found"*) log "missing library for ${f#"$R"}: $l"; missing=1 ;;
    *"=> /"*)
      p=${l#*=> }; p=${p%% *}
      case $p in "$R"/*) ;; *) log "${f#"$R"} resolves $p on the host"; missing=1 ;; esac ;;
    esac
  done <<<"$out"
done < <(find "$R"/bin "$R"/sbin "$R"/usr/bin "$R"/usr/sbin -type f 2>/dev/null)
[ $missing = 0 ] || { log "the guest's library closure is incomplete (add the packages above)"; exit 1; }

# --- kernel and modules ----------------------------------------------------------------
K=$CACHE/kernel
rm -rf "$K"
mkdir -p "$K"
dpkg -x "$(deb "$KPKG")" "$K"
KVER=$(ls "$K/lib/modules")
# kmod is multi-call and picks the tool by argv[0]; its depmod symlink is absolute (/bin/kmod).
depmod() { guest_tool --argv0 depmod "$R/bin/kmod" "$@"; }
depmod -b "$K" "$KVER"
MD=$R/lib/modules/$KVER
mkdir -p "$MD"
cp "$K/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$MD/" 2>/dev/null || true
declare -A seen=()
add_module() {
  local name=${1//-/_} path dep
  [ -z "${seen[$name]:-}" ] || return 0
  seen[$name]=1
  path=$(awk -F: -v m="$name" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n)
                                 if (n == m) { print $1; exit } }' "$K/lib/modules/$KVER/modules.dep")
  [ -n "$path" ] || return 0 # built into this kernel
  mkdir -p "$MD/$(dirname "$path")"
  cp "$K/lib/modules/$KVER/$path" "$MD/$path"
  for dep in $(grep "^$path:" "$K/lib/modules/$KVER/modules.dep" | cut -d: -f2); do
    dep=${dep##*/}
    add_module "${dep%%.ko*}"
  done
}
for m in "${MODS[@]}"; do add_module "$m"; done
depmod -b "$R" "$KVER"
cp "$K/boot/vmlinuz-$KVER" "$CACHE/vmlinuz.new"
rm -rf "$K"

python3 "$HERE/newc.py" "$R" >"$CACHE/initrd.cpio.new"
mv "$CACHE/initrd.cpio.new" "$CACHE/initrd.cpio"
mv "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
printf 'kernel %s\n%s\n' "$KVER" "$VERSIONS" >"$CACHE/VERSIONS"
echo "$stamp" >"$CACHE/stamp"
log "built $CACHE/vmlinuz ($KVER) and initrd.cpio ($(du -h "$CACHE/initrd.cpio" | cut -f1)) in $(($(date +%s) - t0))s"
