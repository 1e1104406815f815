# CD/DVD: Linux's sr driver and the iso9660 file system on the target's CD/DVD drive (MMC).
# Arguments: the manifests (sha256sum lines) of the disc loaded at start and of the disc
# the host loads when asked (host step load-second-disc).
#
# The disc is mounted and every file checked against the host's manifest; the guest
# ejects it (START STOP UNIT with LoEj) and must then see no medium; the host puts the
# second disc in the drive, and the guest must notice the change and read the new disc.
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

step "eject: the drive then has no medium"
# Like a real drive, an ejected tray keeps its disc, and Linux's cdrom layer closes an
# open tray when the device is opened (autoclose, on by default), which would load the
# disc again on the mount below. Turn that off to see what the eject itself did.
echo 0 >/proc/sys/dev/cdrom/autoclose
run eject "$CD"
if sg_turs -v "$CD" >/tmp/turs 2>&1; then
	fail "TEST UNIT READY still succeeds after the eject"
fi
cat /tmp/turs
grep -qi "medium not present" /tmp/turs || fail "TEST UNIT READY after eject: not MEDIUM NOT PRESENT"
ok "medium not present"
if mount -t iso9660 -o ro "$CD" /mnt/cd 2>/tmp/mount.err; then
	umount /mnt/cd
	fail "an ejected disc could be mounted"
fi
ok "mount refused: $(cat /tmp/mount.err)"

step "the host loads the second disc"
run host-step load-second-disc
wait_medium
check_disc "$2" "disc 2"
echo "cd scenario passed"
