# Shared by the guest scenarios (sourced as /data/lib.sh; POSIX sh, the guest's is dash).
# A scenario prints what it does, checks outcomes with the helpers below and exits
# non-zero on the first thing that is wrong, after printing what it saw and the tail of the
# kernel log.

set -u
step() { echo "== $*"; }
ok() { echo "   ok: $*"; }
fail() {
	echo "FAIL: $*"
	echo "--- kernel log (last 25 lines) ---"
	dmesg | tail -n 25
	exit 1
}
# run CMD...: runs CMD, shows its output, fails the scenario if its status isn't 0.
run() {
	echo "\$ $*"
	"$@" >/tmp/run.out 2>&1
	rc=$?
	sed 's/^/   /' /tmp/run.out
	[ $rc = 0 ] || fail "$* exited with status $rc"
}
# expect_in FILE TEXT WHAT: FILE must contain the line fragment TEXT.
expect_in() {
	grep -qF -- "$2" "$1" || { sed 's/^/   | /' "$1"; fail "$3: no \"$2\""; }
}

# devices TYPE: the /dev names of the SCSI devices of this peripheral device type
# (0 disk, 1 tape, 5 CD/DVD, 8 changer), in H:C:T:L order. Through route A each LUN is a
# virtio-scsi target of its own; through route B they are the target's LUNs.
devices() {
	for d in $(ls -d /sys/bus/scsi/devices/*:*:*:* 2>/dev/null | sort -t: -k1,1n -k2,2n -k3,3n -k4,4n); do
		[ "$(cat "$d/type" 2>/dev/null)" = "$1" ] || continue
		case $1 in
		0 | 5) echo "/dev/$(ls "$d/block")" ;;
		1) echo "/dev/$(ls "$d/scsi_tape" | grep -m1 '^nst[0-9]*$')" ;;
		8) echo "/dev/$(ls "$d/scsi_changer")" ;;
		esac
	done
}
# device TYPE WHAT: the first such device, or fail.
device() {
	dev=$(devices "$1" | head -n 1)
	[ -n "$dev" ] && [ -e "$dev" ] || { lsscsi -g; fail "no $2 device (SCSI type $1) in the guest"; }
	echo "$dev"
}

# make_tree DIR: a tree of files of random content and awkward sizes (empty, one byte,
# block size +/- 1, a few hundred KiB), with a subdirectory and a symlink.
make_tree() {
	mkdir -p "$1/sub/deeper"
	: >"$1/empty"
	head -c 1 /dev/urandom >"$1/one-byte"
	head -c 511 /dev/urandom >"$1/sub/511"
	head -c 513 /dev/urandom >"$1/sub/513"
	head -c 4097 /dev/urandom >"$1/sub/deeper/4097"
	head -c 300000 /dev/urandom >"$1/sub/300000"
	head -c 1048576 /dev/urandom >"$1/1MiB"
	ln -s sub/513 "$1/link"
}
# manifest DIR: one line per file, "sha256  path", sorted; symlinks as "-> target".
manifest() {
	(
		cd "$1" || exit 1
		find . -type f | LC_ALL=C sort | xargs -r sha256sum
		find . -type l | LC_ALL=C sort | while read -r l; do echo "link $l -> $(readlink "$l")"; done
	)
}
# same_tree A B WHAT: the two trees hold the same files with the same bytes.
same_tree() {
	manifest "$1" >/tmp/manifest.a
	manifest "$2" >/tmp/manifest.b
	cmp -s /tmp/manifest.a /tmp/manifest.b || {
		diff /tmp/manifest.a /tmp/manifest.b | sed 's/^/   /'
		fail "$3: the trees differ"
	}
	ok "$3: $(wc -l </tmp/manifest.a) entries byte-exact"
}
