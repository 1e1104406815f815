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

# CD/DVD drives (sr), for cd.sh and jukebox.sh.
# wait_medium DEV: TEST UNIT READY until the drive reports a medium (after the unit
# attention for a medium change, or while it becomes ready).
wait_medium() {
	i=0
	until sg_turs "$1" >/tmp/turs 2>&1; do
		i=$((i + 1))
		[ $i -lt 30 ] || { cat /tmp/turs; fail "no medium became ready in $1"; }
		sleep 0.5
	done
}
# no_medium DEV WHAT: TEST UNIT READY fails with NOT READY, MEDIUM NOT PRESENT (3Ah/xx).
no_medium() {
	if sg_turs -v "$1" >/tmp/turs 2>&1; then
		fail "$2: TEST UNIT READY still succeeds"
	fi
	grep -qi "medium not present" /tmp/turs || { cat /tmp/turs; fail "$2: TEST UNIT READY is not MEDIUM NOT PRESENT"; }
	ok "$2: $(grep -i 'additional sense' /tmp/turs)"
}
# mount_refused DEV WHAT: there is no disc to mount in DEV.
mount_refused() {
	mkdir -p /mnt/cd
	if mount -t iso9660 -o ro "$1" /mnt/cd 2>/tmp/mount.err; then
		umount /mnt/cd
		fail "$2: a disc could still be mounted"
	fi
	ok "$2: mount refused: $(cat /tmp/mount.err)"
}
# check_files DIR MANIFEST WHAT: every file of /data/MANIFEST (sha256sum lines, made on
# the host) is in DIR with those bytes, and DIR holds no other file.
check_files() {
	(cd "$1" && sha256sum -c --quiet "/data/$2") >/tmp/sums 2>&1 || { cat /tmp/sums; fail "$3: checksums differ"; }
	want=$(wc -l <"/data/$2")
	have=$(cd "$1" && find . -type f | wc -l)
	[ "$want" = "$have" ] || { (cd "$1" && find . -type f); fail "$3: $have files on the disc, $want expected"; }
	ok "$3: all $want files byte-exact"
}
# check_disc DEV MANIFEST WHAT: mount DEV's disc, check_files, unmount.
check_disc() {
	mkdir -p /mnt/cd
	run mount -t iso9660 -o ro "$1" /mnt/cd
	check_files /mnt/cd "$2" "$3"
	run umount /mnt/cd
}
