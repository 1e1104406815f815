# CD/DVD: Linux's sr driver and the iso9660 file system on the target's CD/DVD drive (MMC).
# Arguments: the manifests (sha256sum lines) of disc 1 (loaded at start) and disc 2, and
# "swap" or "no-swap" (leave out step 3: the reference tgtd does not signal that change).
#
# 1. Disc 1 is mounted and every file checked against the host's manifest.
# 2. The guest ejects it (START STOP UNIT, LoEj): the drive reports no medium. The host
#    loads disc 2 (host-step load-disc 2); the guest reads disc 2.
# 3. The host swaps in disc 1 while the tray is closed and the guest idle: the kernel must
#    notice the change (unit attention / media event) and read disc 1, not stale disc 2.
# 4. The host ejects the disc: no medium, and mount fails.
. /data/lib.sh

CD=$(device 5 cd/dvd)
step "cd/dvd $CD"
run sg_inq "$CD"

# wait_medium: TEST UNIT READY until the drive reports a medium (after the unit attention
# for a medium change, or while it becomes ready).
wait_medium() {
	i=0
	until sg_turs "$CD" >/tmp/turs 2>&1; do
		i=$((i + 1))
		[ $i -lt 30 ] || { cat /tmp/turs; fail "no medium became ready in $CD"; }
		sleep 0.5
	done
}
# check_disc MANIFEST WHAT: mount, every file's checksum, no file more or less, unmount.
check_disc() {
	run mount -t iso9660 -o ro "$CD" /mnt/cd
	(cd /mnt/cd && sha256sum -c --quiet "/data/$1") >/tmp/sums 2>&1 || { cat /tmp/sums; fail "$2: checksums differ"; }
	want=$(wc -l <"/data/$1")
	have=$(cd /mnt/cd && find . -type f | wc -l)
	[ "$want" = "$have" ] || { (cd /mnt/cd && find . -type f); fail "$2: $have files on the disc, $want expected"; }
	ok "$2: all $want files byte-exact"
	run umount /mnt/cd
}

step "the first disc: mount and checksum every file"
wait_medium
mkdir -p /mnt/cd
run sg_readcap "$CD"
expect_in /tmp/run.out "Logical block length=2048 bytes" "READ CAPACITY of a CD/DVD"
check_disc "$1" "disc 1"

# no_medium WHAT: TEST UNIT READY fails with NOT READY, MEDIUM NOT PRESENT (3Ah/xx).
no_medium() {
	if sg_turs -v "$CD" >/tmp/turs 2>&1; then
		fail "$1: TEST UNIT READY still succeeds"
	fi
	grep -qi "medium not present" /tmp/turs || { cat /tmp/turs; fail "$1: TEST UNIT READY is not MEDIUM NOT PRESENT"; }
	ok "$1: $(grep -i 'additional sense' /tmp/turs)"
}

step "the guest ejects disc 1"
run eject "$CD"
no_medium "after eject"
# Like a real drive, an ejected tray keeps its disc, and Linux's cdrom layer closes an open
# tray when the device is opened (autoclose, on by default), which would load the disc
# again. With autoclose off, the mount must find no medium.
echo 0 >/proc/sys/dev/cdrom/autoclose
if mount -t iso9660 -o ro "$CD" /mnt/cd 2>/tmp/mount.err; then
	umount /mnt/cd
	fail "an ejected disc could be mounted"
fi
ok "mount refused: $(cat /tmp/mount.err)"
echo 1 >/proc/sys/dev/cdrom/autoclose

step "the host loads disc 2; the guest reads it"
run host-step load-disc 2
wait_medium
check_disc "$2" "disc 2"

if [ "$3" = swap ]; then
	step "the host swaps in disc 1 behind the guest's back; the guest notices"
	run host-step load-disc 1
	# No TEST UNIT READY of our own first: it would take the unit attention the kernel
	# needs to see. The mount's open must find out by itself that the disc changed.
	check_disc "$1" "disc 1 again"
else
	step "(not checked with this target: a disc swapped behind the guest's back)"
fi

step "the host ejects the disc"
run host-step eject-disc
no_medium "after the host's eject"
# Opening the drive closes an open tray (the cdrom layer's auto-close); there is no disc
# in it now, so the mount must fail.
if mount -t iso9660 -o ro "$CD" /mnt/cd 2>/tmp/mount.err; then
	umount /mnt/cd
	fail "a disc the host ejected could still be mounted"
fi
ok "mount refused: $(cat /tmp/mount.err)"
echo "cd scenario passed"
