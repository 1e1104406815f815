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

step "the first disc: mount and checksum every file"
wait_medium "$CD"
mkdir -p /mnt/cd
run sg_readcap "$CD"
expect_in /tmp/run.out "Logical block length=2048 bytes" "READ CAPACITY of a CD/DVD"
check_disc "$CD" "$1" "disc 1"

step "the guest ejects disc 1"
run eject "$CD"
no_medium "$CD" "after eject"
# Like a real drive, an ejected tray keeps its disc, and Linux's cdrom layer closes an open
# tray when the device is opened (autoclose, on by default), which would load the disc
# again. With autoclose off, the mount must find no medium.
echo 0 >/proc/sys/dev/cdrom/autoclose
mount_refused "$CD" "after eject, autoclose off"
echo 1 >/proc/sys/dev/cdrom/autoclose

step "the host loads disc 2; the guest reads it"
run host-step load-disc 2
wait_medium "$CD"
check_disc "$CD" "$2" "disc 2"

if [ "$3" = swap ]; then
	step "the host swaps in disc 1 behind the guest's back; the guest notices"
	run host-step load-disc 1
	# No TEST UNIT READY of our own first: it would take the unit attention the kernel
	# needs to see. The mount's open must find out by itself that the disc changed.
	check_disc "$CD" "$1" "disc 1 again"
else
	step "(not checked with this target: a disc swapped behind the guest's back)"
fi

step "the host ejects the disc"
run host-step eject-disc
no_medium "$CD" "after the host's eject"
# Opening the drive closes an open tray (the cdrom layer's auto-close); there is no disc
# in it now, so the mount must fail.
mount_refused "$CD" "after the host's eject"
echo "cd scenario passed"
