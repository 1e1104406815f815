# Hot-plug over vhost-user-scsi (route V): the host adds a LUN while the guest runs, grows
# a disk, and removes the LUN; the guest's virtio_scsi driver learns each from the event
# queue (TRANSPORT_RESET RESCAN / REMOVED, PARAM_CHANGE 2Ah/09h) with no rescan by hand.
. /data/lib.sh

# wait_for WHAT CMD...: CMD succeeds within 60 s, or the scenario fails.
wait_for() {
	what=$1
	shift
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 600 ] || { lsscsi; fail "$what: not within 60 s"; }
		sleep 0.1
	done
	ok "$what"
}
disks() { devices 0 | wc -l; }
two_disks() { [ "$(disks)" = 2 ]; }
one_disk() { [ "$(disks)" = 1 ]; }
sectors_are() { [ "$(cat /sys/block/${NEW#/dev/}/size)" = "$1" ]; }

DISK=$(device 0 disk)
step "disk $DISK, $(cat /sys/block/${DISK#/dev/}/size) sectors; one disk in the guest"
[ "$(disks)" = 1 ] || fail "expected 1 disk, have $(disks)"

step "a LOGICAL UNIT RESET on the control queue (sg_reset -d): answered, I/O goes on"
head -c 262144 /dev/urandom >/tmp/before
run dd if=/tmp/before of="$DISK" bs=64k oflag=direct status=none
# SG_SCSI_RESET_DEVICE: virtio_scsi sends VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET and fails
# the ioctl unless the answer is FUNCTION COMPLETE (virtio 1.2 §5.6.6.2).
run sg_reset -d "$DISK"
# The next command meets the reset's unit attention (29h/03h); the kernel expects it after
# its own reset and retries, so the read must still return the bytes written before.
run dd if="$DISK" of=/tmp/after bs=64k count=4 iflag=direct status=none
cmp /tmp/before /tmp/after || fail "after the LUN reset: data read back differs"
ok "256 KiB written before the reset read back after it"
head -c 65536 /dev/urandom >/tmp/before
run dd if=/tmp/before of="$DISK" bs=64k seek=8 oflag=direct status=none
run dd if="$DISK" of=/tmp/after bs=64k skip=8 count=1 iflag=direct status=none
cmp /tmp/before /tmp/after || fail "after the LUN reset: a new write read back differs"
ok "a write after the reset read back"

step "the host adds LUN 2 (64 MiB): the guest sees a new disk"
run host-step add-lun
wait_for "a second disk appeared" two_disks
NEW=$(devices 0 | sed -n 2p)
sectors=$(cat /sys/block/${NEW#/dev/}/size)
[ "$sectors" = 131072 ] || fail "new disk $NEW has $sectors sectors, expected 131072"
ok "$NEW: $sectors sectors"
head -c 1048576 /dev/urandom >/tmp/pattern
run dd if=/tmp/pattern of="$NEW" bs=64k oflag=direct status=none
run dd if="$NEW" of=/tmp/back bs=64k count=16 iflag=direct status=none
cmp /tmp/pattern /tmp/back || fail "new disk: data read back differs"
ok "new disk: 1 MiB written and read back"

step "the host grows LUN 2 to 96 MiB: the guest sees the new size"
run host-step grow-lun
wait_for "$NEW has 196608 sectors" sectors_are 196608

step "the host removes LUN 2: the disk goes away"
run host-step del-lun
wait_for "the second disk is gone" one_disk
[ -e "$NEW" ] && fail "$NEW still exists"
echo "hotplug scenario passed"
