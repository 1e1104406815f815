# DVD jukebox: Linux's ch driver with mtx on the target's media changer (SMC-3) whose two
# data transfer elements are the target's CD/DVD drives (MMC), read through sr and
# iso9660. Arguments:
#   START    "empty": both drives are empty at start. "loaded": disc 1 is in drive 0 and
#            disc 3 in drive 1 at start (QEMU's iSCSI driver reads a CD LUN's capacity
#            when it opens it and refuses an empty drive, so route A starts this way);
#            mtx unload puts them back first.
#   EXCHANGE "exchange": a disc is loaded right after another was unloaded, then EXCHANGE
#            MEDIUM swaps it with one in a slot, twice; the kernel must notice each change
#            by itself (no open of the empty drive in between, so only the drive's unit
#            attention / media event can tell it). "no-exchange": not checked (tgt's
#            changer has no EXCHANGE MEDIUM and signals no medium change).
#   DISC...  the barcodes of the discs in slots 1, 2 and 3; /data/BARCODE.sha256 lists each
#            disc's files with their checksums, made on the host.
#
# MOVE MEDIUM (mtx load) must really put the disc in the drive: the mount that follows
# (with no TEST UNIT READY of ours first, so the kernel has to notice the new disc by
# itself) reads that disc's files byte-exact. While a disc is mounted, the cdrom layer
# keeps the tray locked (PREVENT ALLOW MEDIUM REMOVAL) and mtx unload must be refused
# (SMC-3 MOVE MEDIUM; tgt answers ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED). mtx unload
# must leave the drive without a medium, and the next disc loaded into the same drive must
# be read, not the last one.
. /data/lib.sh

start=$1
exchange=$2
shift 2

CH=$(device 8 changer)
CD0=$(devices 5 | sed -n 1p)
CD1=$(devices 5 | sed -n 2p)
[ -n "$CD1" ] || { lsscsi -g; fail "two CD/DVD drives expected"; }
step "jukebox: changer $CH, drives $CD0 (element 0) and $CD1 (element 1), discs: $*"
run lsscsi -g
run sg_inq "$CH"
mkdir -p /mnt/cd0 /mnt/cd1

# status_is WHAT LINE...: mtx status shows each LINE (its fixed-format element lines).
status_is() {
	what=$1
	shift
	run mtx -f "$CH" status
	for l in "$@"; do expect_in /tmp/run.out "$l" "$what"; done
}
drive_holds() { # drive_holds DRIVE SLOT BARCODE: the mtx status line of a loaded drive
	echo "Data Transfer Element $1:Full (Storage Element $2 Loaded):VolumeTag = $3"
}

if [ "$start" = loaded ]; then
	step "at start: disc $1 in drive 0, disc $3 in drive 1; mtx unload puts them back"
	status_is "initial inventory" "$(drive_holds 0 1 "$1")" "$(drive_holds 1 3 "$3")" \
		"Storage Element 1:Empty" "Storage Element 2:Full :VolumeTag=$2" "Storage Element 3:Empty"
	run mtx -f "$CH" unload 1 0
	run mtx -f "$CH" unload 3 1
fi

step "inventory: discs in slots 1-3, slot 4 and both drives empty"
status_is "inventory" "Storage Element 1:Full :VolumeTag=$1" "Storage Element 2:Full :VolumeTag=$2" \
	"Storage Element 3:Full :VolumeTag=$3" "Storage Element 4:Empty" \
	"Data Transfer Element 0:Empty" "Data Transfer Element 1:Empty"
cp /tmp/run.out /tmp/inventory.before
for d in "$CD0" "$CD1"; do
	no_medium "$d" "$d before any load"
	mount_refused "$d" "$d before any load"
done

step "mtx load 1 0: disc $1 into drive 0; mount it and check every file"
run mtx -f "$CH" load 1 0
status_is "after load 1 0" "$(drive_holds 0 1 "$1")" "Storage Element 1:Empty" "Data Transfer Element 1:Empty"
run mount -t iso9660 -o ro "$CD0" /mnt/cd0
check_files /mnt/cd0 "$1.sha256" "disc $1 in drive 0"
no_medium "$CD1" "drive 1, still empty"
if mtx -f "$CH" unload 1 0 >/tmp/unload.out 2>&1; then
	fail "mtx unload took disc $1 out of drive 0 while it was mounted (tray locked)"
fi
grep -q "Sense Key=Illegal Request" /tmp/unload.out && grep -q "Additional Sense Code = 53" /tmp/unload.out &&
	grep -q "Additional Sense Qualifier = 02" /tmp/unload.out ||
	{ cat /tmp/unload.out; fail "the refused unload is not ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED (5/53h/02h)"; }
ok "mtx unload refused while mounted: ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED"
status_is "after the refused unload" "$(drive_holds 0 1 "$1")" "Storage Element 1:Empty"
check_files /mnt/cd0 "$1.sha256" "disc $1 still in drive 0"
run umount /mnt/cd0

step "mtx unload 1 0: disc $1 back in slot 1, drive 0 empty"
run mtx -f "$CH" unload 1 0
status_is "after unload 1 0" "Data Transfer Element 0:Empty" "Storage Element 1:Full :VolumeTag=$1"
no_medium "$CD0" "drive 0 after unload"
mount_refused "$CD0" "drive 0 after unload"

step "mtx load 2 0: the next disc, $2, in drive 0; the guest reads $2, not $1"
run mtx -f "$CH" load 2 0
status_is "after load 2 0" "$(drive_holds 0 2 "$2")" "Storage Element 2:Empty"
run mount -t iso9660 -o ro "$CD0" /mnt/cd0
check_files /mnt/cd0 "$2.sha256" "disc $2 in drive 0"

step "mtx load 3 1: disc $3 into drive 1 while disc $2 stays mounted in drive 0"
run mtx -f "$CH" load 3 1
status_is "after load 3 1" "$(drive_holds 0 2 "$2")" "$(drive_holds 1 3 "$3")" "Storage Element 3:Empty"
run mount -t iso9660 -o ro "$CD1" /mnt/cd1
check_files /mnt/cd1 "$3.sha256" "disc $3 in drive 1"
check_files /mnt/cd0 "$2.sha256" "disc $2 in drive 0, after drive 1 was loaded"
run umount /mnt/cd1
run umount /mnt/cd0

step "both discs back in their slots"
run mtx -f "$CH" unload 2 0
run mtx -f "$CH" unload 3 1

if [ "$exchange" = exchange ]; then
	step "EXCHANGE MEDIUM: disc $1 in drive 0 swapped with disc $2 in slot 2, and back"
	run mtx -f "$CH" load 1 0
	check_disc "$CD0" "$1.sha256" "disc $1 in drive 0"
	# EXCHANGE MEDIUM (SMC-3 6.2): picker 1, source drive 0 (element 2), first destination
	# slot 2 (element 1001), second destination the drive again.
	# (mtx shows the slot a drive's disc came from only while that slot is empty; it
	# guesses another one here, so only the drive's volume tag is checked.)
	swap_disc() { # swap_disc IN-DRIVE IN-SLOT WHAT
		run sg_raw "$CH" a6 00 00 01 00 02 03 e9 00 02 00 00
		status_is "$3" "Storage Element 2:Full :VolumeTag=$1" "Storage Element 1:Empty"
		grep -q "Data Transfer Element 0:Full .*:VolumeTag = $2" /tmp/run.out ||
			fail "$3: drive 0 does not hold $2"
		check_disc "$CD0" "$2.sha256" "disc $2 in drive 0 $3"
	}
	swap_disc "$1" "$2" "after the exchange"
	swap_disc "$2" "$1" "after the second exchange"
	run mtx -f "$CH" unload 1 0
fi

step "the inventory is as it was"
run mtx -f "$CH" status
cmp -s /tmp/inventory.before /tmp/run.out || {
	diff /tmp/inventory.before /tmp/run.out
	fail "the inventory changed"
}
ok "same inventory"
no_medium "$CD0" "drive 0 at the end"
no_medium "$CD1" "drive 1 at the end"
echo "jukebox scenario passed"
