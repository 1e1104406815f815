# Pass-through (--device-type pt): rtgtd runs INSIDE the guest and exports the guest's own
# SCSI devices -- QEMU's own scsi-hd disk and scsi-cd DVD drive (holding an ISO) on the
# guest's virtio-scsi controller, and a tape drive and a media changer that the host's
# target attaches through route A, so the guest has real sd / st / sr / ch / sg / bsg
# nodes -- once through their sg nodes (tid 1) and
# once through their bsg nodes (tid 2). The guest's open-iscsi logs in to it over the
# guest's loopback, and its sd and st drivers work through rtgt:
#   disk: mkfs.ext4, fsck, a tree copied in and checked byte-exact after a remount;
#   tape: tar in variable-block mode and a file in fixed 512-byte blocks, read back;
#   DVD: the ISO mounted and every file's SHA-256 checked;
#   changer: mtx status, load and unload (the changer's drive is the host's);
# then, through sg: two initiators (a second open-iscsi iface with its own name) on the
# passed-through tape drive: the second is refused (RESERVATION CONFLICT) while the first
# holds an SPC-2 reservation rtgt emulates, and gets it once released; then the devices
# are pulled from under their LUs: QEMU unplugs the scsi-hd (QMP device_del; the guest
# removes the disk, so SG_IO says ENODEV) and the host's target deletes the tape's LU
# (the device then answers ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED): each time the
# initiator gets NOT READY, LOGICAL UNIT COMMUNICATION FAILURE and INQUIRY qualifier
# 001b, and the DVD and changer LUs keep serving.
. /data/lib.sh

PORTAL=127.0.0.1:3260
IQN=iqn.2026-12.org.rtgt:guest-pt
up() { cut -d' ' -f1 /proc/uptime; }

# The devices: the disk and the DVD drive are QEMU's own (scsi-hd, scsi-cd); the tape
# drive and the changer come from the host's target through route A.
hctl_of() { # TYPE: H:C:T:L of the first device of that type
	for d in $(ls -d /sys/bus/scsi/devices/*:*:*:* | sort); do
		[ "$(cat "$d/type")" = "$1" ] && { echo "${d##*/}"; return 0; }
	done
	return 1
}
DISK=$(hctl_of 0) || fail "no QEMU scsi-hd"
TAPE=$(hctl_of 1) || fail "no tape from the host"
CD=$(hctl_of 5) || fail "no QEMU scsi-cd"
CHANGER=$(hctl_of 8) || fail "no changer from the host"
grep -q QEMU "/sys/bus/scsi/devices/$DISK/vendor" || fail "the disk $DISK is not QEMU's own"
grep -q QEMU "/sys/bus/scsi/devices/$CD/vendor" || fail "the DVD drive $CD is not QEMU's own"
sg_of() { echo "/dev/$(ls /sys/bus/scsi/devices/$1/scsi_generic)"; }
step "devices to pass through: disk $DISK $(sg_of "$DISK") /dev/bsg/$DISK, tape $TAPE $(sg_of "$TAPE") /dev/bsg/$TAPE, dvd $CD, changer $CHANGER"
run lsscsi -g
[ -c "/dev/bsg/$DISK" ] && [ -c "/dev/bsg/$TAPE" ] || fail "no bsg nodes"
sg_inq "$(sg_of "$DISK")" | grep -E 'Vendor|Product' >/tmp/disk.inq
sg_inq "$(sg_of "$TAPE")" | grep -E 'Vendor|Product' >/tmp/tape.inq

step "rtgtd in the guest on $PORTAL"
ip link set lo up
pidof iscsid >/dev/null || { modprobe iscsi_tcp; iscsid; }
export RTGT_RUN_DIR=/run/rtgtd
# Four I/O-pool threads: pass-through may hold two of them (see "long commands" below).
/data/rtgtd -f -t 4 --iscsi portal=$PORTAL >/tmp/rtgtd.log 2>&1 &
RTGTD=$!
i=0
until /data/rtgtadm --mode system --op show >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 150 ] || { cat /tmp/rtgtd.log; fail "rtgtd did not start"; }
	sleep 0.1
done
A="/data/rtgtadm --lld iscsi"
run $A --op new --mode target --tid 1 -T $IQN-sg
run $A --op new --mode logicalunit --tid 1 --lun 1 --device-type pt --bstype sg -b "$(sg_of "$DISK")"
run $A --op new --mode logicalunit --tid 1 --lun 2 --device-type pt --bstype sg -b "$(sg_of "$TAPE")"
run $A --op new --mode logicalunit --tid 1 --lun 3 --device-type pt --bstype sg -b "$(sg_of "$CD")"
run $A --op new --mode logicalunit --tid 1 --lun 4 --device-type pt --bstype sg -b "$(sg_of "$CHANGER")"
run $A --op bind --mode target --tid 1 -I ALL
run $A --op new --mode target --tid 2 -T $IQN-bsg
run $A --op new --mode logicalunit --tid 2 --lun 1 --device-type pt --bstype bsg -b "/dev/bsg/$DISK"
run $A --op new --mode logicalunit --tid 2 --lun 2 --device-type pt --bstype bsg -b "/dev/bsg/$TAPE"
run $A --op new --mode logicalunit --tid 2 --lun 3 --device-type pt --bstype bsg -b "/dev/bsg/$CD"
run $A --op new --mode logicalunit --tid 2 --lun 4 --device-type pt --bstype bsg -b "/dev/bsg/$CHANGER"
run $A --op bind --mode target --tid 2 -I ALL
run $A --op show --mode target
expect_in /tmp/run.out "Backing store type: bsg" "show: a bsg LU"
# A node of the wrong kind is refused with a clear message.
echo "\$ rtgtadm ... --bstype sg -b /dev/bsg/$DISK   (must fail)"
$A --op new --mode logicalunit --tid 1 --lun 9 --device-type pt --bstype sg -b "/dev/bsg/$DISK" >/tmp/bad 2>&1 &&
	fail "an sg LU on a bsg node was accepted"
expect_in /tmp/bad "is not an sg node" "sg LU on a bsg node"
ok "$(cat /tmp/bad)"
# Queue depth and command timeout change on a running LU; the reservations mode does
# not (with the reason).
run $A --op update --mode logicalunit --tid 1 --lun 1 --params queue_depth=4,timeout=60
echo "\$ rtgtadm ... --op update --tid 1 --lun 1 --params reservations=passthrough   (must fail)"
$A --op update --mode logicalunit --tid 1 --lun 1 --params reservations=passthrough >/tmp/bad 2>&1 &&
	fail "reservations= changed on a running LU"
expect_in /tmp/bad "can't change on a running logical unit" "update reservations="
ok "$(cat /tmp/bad)"
# The configuration file round trip: a dump, and `config apply --dry-run` of it finds
# nothing to change.
run /data/rtgtadm config dump /tmp/rtgt.toml
run cat /tmp/rtgt.toml
expect_in /tmp/rtgt.toml 'device_type = "pt"' "config dump: a pass-through LU"
expect_in /tmp/rtgt.toml 'bstype = "bsg"' "config dump: a bsg LU"
expect_in /tmp/rtgt.toml "backing_store = \"/dev/bsg/$DISK\"" "config dump: the bsg node"
grep -qE 'queue_depth = "?4"?' /tmp/rtgt.toml || fail "config dump: no updated queue depth"
grep -qE 'timeout = "?60"?' /tmp/rtgt.toml || fail "config dump: no updated timeout"
ok "config dump: the updated queue_depth and timeout"
run /data/rtgtadm config apply /tmp/rtgt.toml --dry-run
run iscsiadm -m discovery -t sendtargets -p $PORTAL

# The iSCSI session's devices of a target: H of the session's host.
session_dev() { # IQN TYPE
	for s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$s/targetname")" = "$1" ] || continue
		for d in "$s"/device/target*/*:*:*:*; do
			[ "$(cat "$d/type" 2>/dev/null)" = "$2" ] || continue
			case $2 in
			0) echo "/dev/$(ls "$d/block")" ;;
			1) echo "/dev/$(ls "$d/scsi_tape" | grep -m1 '^nst[0-9]*$')" ;;
			5) echo "/dev/$(ls "$d/block")" ;;
			8) echo "/dev/$(ls "$d/scsi_generic")" ;;
			esac
			return 0
		done
	done
	return 1
}
wait_dev() { # IQN TYPE
	i=0
	until dev=$(session_dev "$1" "$2") && [ -e "$dev" ]; do
		i=$((i + 1)); [ $i -lt 150 ] || { lsscsi -g; fail "no type $2 device in the session to $1"; }
		sleep 0.1
	done
	echo "$dev"
}

for kind in sg bsg; do
	T=$IQN-$kind
	step "[$kind] log in to $T"
	t0=$(up)
	run iscsiadm -m node -T "$T" -p $PORTAL --login
	iscsiadm -m session --rescan >/dev/null 2>&1
	D=$(wait_dev "$T" 0)
	N=$(wait_dev "$T" 1)
	ok "disk $D, tape $N ($(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}')s)"
	run sg_inq "$D"
	grep -E 'Vendor|Product' /tmp/run.out >/tmp/pt.inq
	cmp -s /tmp/pt.inq /tmp/disk.inq || fail "INQUIRY through rtgt differs from the device's"
	ok "standard INQUIRY is the device's own"
	run sg_vpd -p di "$D"
	expect_in /tmp/run.out "$T" "VPD 83h: rtgt's target device name"
	expect_in /tmp/run.out "Relative target port" "VPD 83h: rtgt's relative target port"

	step "[$kind] disk: mkfs, fsck, a tree through a remount"
	run mkfs.ext4 -q -F "$D"
	run fsck.ext4 -f -n "$D"
	mkdir -p /mnt/pt
	run mount -t ext4 "$D" /mnt/pt
	rm -rf /tmp/src && make_tree /tmp/src
	run cp -a /tmp/src /mnt/pt/tree
	run umount /mnt/pt
	echo 3 >/proc/sys/vm/drop_caches
	run mount -t ext4 -o ro "$D" /mnt/pt
	same_tree /tmp/src /mnt/pt/tree "[$kind] ext4 through pass-through"
	run umount /mnt/pt
	run fsck.ext4 -f -n "$D"

	step "[$kind] tape: tar (variable blocks) and 512-byte fixed blocks"
	i=0
	until mt -f "$N" status >/tmp/status 2>&1 && grep -q ONLINE /tmp/status; do
		i=$((i + 1)); [ $i -lt 20 ] || { cat /tmp/status; fail "the drive never went ONLINE"; }
		sleep 0.5
	done
	run mt -f "$N" rewind
	run mt -f "$N" setblk 0
	run tar -c -b 20 -f "$N" -C /tmp/src .
	run mt -f "$N" setblk 512
	head -c 262144 /dev/urandom >/tmp/fixed.bin
	run dd if=/tmp/fixed.bin of="$N" bs=4096
	run mt -f "$N" rewind
	run mt -f "$N" setblk 0
	rm -rf /tmp/out && mkdir -p /tmp/out
	run tar -x -b 20 -f "$N" -C /tmp/out
	same_tree /tmp/src /tmp/out "[$kind] tar round trip on the passed-through tape"
	run mt -f "$N" rewind
	run mt -f "$N" fsf 1
	run mt -f "$N" setblk 512
	run dd if="$N" of=/tmp/fixed.out bs=4096
	cmp /tmp/fixed.bin /tmp/fixed.out || fail "[$kind] fixed-block file differs"
	ok "[$kind] fixed-block file byte-exact"
	run mt -f "$N" setblk 0
	run mt -f "$N" rewind

	step "[$kind] DVD: mount the ISO, check every file"
	R=$(wait_dev "$T" 5)
	mkdir -p /mnt/cd
	i=0
	until mount -t iso9660 -o ro "$R" /mnt/cd 2>/tmp/m; do
		i=$((i + 1)); [ $i -lt 20 ] || { cat /tmp/m; fail "[$kind] mount $R"; }
		sleep 0.5
	done
	(cd /mnt/cd && sha256sum -c /data/ptdisc.sha256) >/tmp/c 2>&1 || { cat /tmp/c; fail "[$kind] the ISO's files"; }
	ok "[$kind] $R: $(grep -c ': OK' /tmp/c) files match"
	run umount /mnt/cd

	step "[$kind] changer: mtx status, load, unload"
	C=$(wait_dev "$T" 8)
	run mtx -f "$C" status
	expect_in /tmp/run.out "Data Transfer Element 0:Empty" "[$kind] mtx status: the drive empty"
	expect_in /tmp/run.out "Storage Element 1:Full :VolumeTag=A0000001" "[$kind] mtx status: slot 1"
	run mtx -f "$C" load 1 0
	run mtx -f "$C" status
	expect_in /tmp/run.out "Data Transfer Element 0:Full (Storage Element 1 Loaded):VolumeTag = A0000001" "[$kind] after mtx load"
	run mtx -f "$C" unload 1 0
	run mtx -f "$C" status
	expect_in /tmp/run.out "Storage Element 1:Full :VolumeTag=A0000001" "[$kind] after mtx unload"
	ok "[$kind] mtx load and unload through the passed-through changer"
	[ $kind = bsg ] && run iscsiadm -m node -T "$T" -p $PORTAL --logout
done

step "libiscsi's iscsi-test-cu over the passed-through disk (tid 1, sg)"
# Not a verdict of its own: each failure is to be explained by what the device under
# the pass-through answers (the log has both: the test's failure and the device's
# answer through sg3_utils on its own node).
# Only with the argument "cu" (RTGT_GUEST_CU=1 on the host: a named subset) or "cu-all"
# (RTGT_GUEST_CU=all: the whole suite): under TCG they take minutes, too long for every
# run of the suite.
CU_SUBSET="TestUnitReady Inquiry ReadCapacity10 ReadCapacity16 Read6 Read10 Read12 Read16
	Write10 Write12 Write16 Verify10 Verify12 Verify16 WriteVerify10 WriteVerify16
	WriteSame10 WriteSame16 Unmap GetLBAStatus CompareAndWrite Prefetch10 Prefetch16
	ModeSense6 ReportSupportedOpcodes Mandatory PreventAllow StartStopUnit NoMedia
	Reserve6 PrinReadKeys PrinReportCapabilities ProutRegister ProutReserve ProutClear
	ReadDefectData10 Sanitize OrWrite ExtendedCopy ReceiveCopyResults WriteAtomic16"
[ -n "${2:-}" ] && CU_SUBSET=$(echo "$2" | tr , ' ')
if [ "${1:-}" = cu-all ]; then
	# Every SCSI.* suite of this libiscsi, one at a time so the log shows each as it ends.
	CU_SUBSET=$(iscsi-test-cu -l 2>/dev/null | awk -F. 'NF == 2 && $1 == "SCSI" {print $2}')
fi
if [ "${1:-}" != cu ] && [ "${1:-}" != cu-all ]; then
	echo "   (skipped: run with RTGT_GUEST_CU=1 (a named subset) or RTGT_GUEST_CU=all for it)"
elif command -v iscsi-test-cu >/dev/null; then
	ct0=$(up)
	tot=0; pas=0; fai=0
	for t in $CU_SUBSET; do
		c0=$(up)
		timeout 600 iscsi-test-cu -d -t "SCSI.$t" "iscsi://$PORTAL/$IQN-sg/1" >/tmp/cu 2>&1
		set -- $(awk '$1 == "tests" {print $3, $4, $5}' /tmp/cu) 0 0 0
		tot=$((tot + $1)); pas=$((pas + $2)); fai=$((fai + $3))
		echo "CU SCSI.$t ran=$1 passed=$2 failed=$3 ($(awk -v a="$c0" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}')s)"
		grep -E "FAILED|FAILURE|^ +[0-9]+\. " /tmp/cu | sed 's/^/   | /' | head -n 30
	done
	echo "CU total: ran=$tot passed=$pas failed=$fai in $(awk -v a="$ct0" -v b="$(up)" 'BEGIN{printf "%.0f", b-a}')s"
	# The CDBs of the INQUIRY tests, to the device's own node and through rtgt: what the
	# device under the pass-through answers explains a failure there.
	PD=$(sg_of "$DISK")
	for s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$s/targetname")" = "$IQN-sg" ] || continue
		for d in "$s"/device/target*/*:*:*:1; do RD="/dev/$(ls "$d/scsi_generic")"; done
	done
	for dev in "$PD" "$RD"; do
		echo "-- INQUIRY CDBs of the Inquiry tests on $dev ($([ "$dev" = "$PD" ] && echo "the device's own node" || echo "through rtgt"))"
		for n in 0 1 2 4 5 35 36 37 95 96 97 255; do
			a=$(printf %02x "$n")
			sg_raw -r "$n" "$dev" 12 00 00 00 "$a" 00 >/tmp/r 2>&1
			echo "   alloc $n: $(grep -E "SCSI Status|Received" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		done
		for n in 64 255; do
			sg_raw -r "$n" "$dev" 12 01 b0 00 "$(printf %02x "$n")" 00 >/tmp/r 2>&1
			echo "   VPD B0h alloc $n: $(grep -E "SCSI Status|Received" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		done
		sg_raw -r 255 "$dev" 12 01 b0 00 ff 00 2>/dev/null | head -n 5 | sed 's/^/     /'
		# Inquiry.BlockLimits: the Block Limits page decoded, and whether standard
		# INQUIRY claims SBC-3 (a version descriptor) for a page of 60 bytes or more.
		sg_vpd -p bl "$dev" 2>&1 | sed 's/^/     bl| /'
		sg_inq -d "$dev" 2>&1 | grep -i -E "version|descriptor|SBC|SPC" | sed 's/^/     inq| /'
		# Read10/12/16.DpoFua, Write10/12/16.DpoFua: with DPOFUA 0 in the mode parameter
		# header the tests want DPO / FUA refused; the device says 0 and takes them.
		sg_modes -6 -p 8 "$dev" 2>&1 | grep -i -E "dpofua|DPO" | sed 's/^/     modes| /'
		sg_raw -r 512 "$dev" 28 18 00 00 00 00 00 00 01 00 >/tmp/r 2>&1
		echo "     READ(10) DPO+FUA: $(grep -E "SCSI Status|Received|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		head -c 512 /dev/zero >/tmp/z
		sg_raw -s 512 -i /tmp/z "$dev" 2a 18 00 00 00 00 00 00 01 00 >/tmp/r 2>&1
		echo "     WRITE(10) DPO+FUA: $(grep -E "SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		# Verify10/12/16: their tests compare Data-Out (BYTCHK 01b), which the device
		# refuses; WriteVerify10/16.Dpo: DPO taken with DPOFUA 0, as above.
		sg_raw -s 512 -i /tmp/z "$dev" 2f 02 00 00 00 00 00 00 01 00 >/tmp/r 2>&1
		echo "     VERIFY(10) BYTCHK=1: $(grep -E "SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		sg_raw "$dev" 2f 00 00 00 00 00 00 00 01 00 >/tmp/r 2>&1
		echo "     VERIFY(10) BYTCHK=0: $(grep -E "SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		sg_raw -s 512 -i /tmp/z "$dev" 2e 10 00 00 00 00 00 00 01 00 >/tmp/r 2>&1
		echo "     WRITE AND VERIFY(10) DPO: $(grep -E "SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		# WriteSame10/16.WriteProtect: WRPROTECT set on a device without protection
		# information (SBC-4 5.49: INVALID FIELD IN CDB); the device takes it.
		sg_raw -s 512 -i /tmp/z "$dev" 41 20 00 00 00 00 00 00 01 00 >/tmp/r 2>&1
		echo "     WRITE SAME(10) WRPROTECT=1: $(grep -E "SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		# ModeSense6.Control-*: the Control mode page, which the device refuses.
		sg_raw -r 255 "$dev" 1a 00 0a 00 ff 00 >/tmp/r 2>&1
		echo "     MODE SENSE(6) Control page: $(grep -E "SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
		# CompareAndWrite, OrWrite, WriteAtomic16, ExtendedCopy: commands the device
		# does not know, with Data-Out; its own node answers host status DID_ERROR
		# (a transport error, no SCSI status), which rtgt reports as HARDWARE ERROR,
		# LOGICAL UNIT COMMUNICATION FAILURE.
		head -c 1024 /dev/zero >/tmp/z2
		sg_raw -v -s 1024 -i /tmp/z2 "$dev" 89 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 >/tmp/r 2>&1
		echo "     COMPARE AND WRITE: $(grep -E "Host_status|SCSI Status|Sense|Additional" /tmp/r | tr -s ' ' | tr '\n' ' ')"
	done
	# Which allocation length the AllocLength test stumbles on, in its own words.
	iscsi-test-cu -d -V -t SCSI.Inquiry.AllocLength "iscsi://$PORTAL/$IQN-sg/1" >/tmp/cu 2>&1
	grep -n -i -E "fail|error|expected|residual|underflow|overflow" /tmp/cu | head -n 20 | sed 's/^/   | /'
	grep -n -B8 -m1 -i "fail" /tmp/cu | head -n 20 | sed 's/^/   > /'
else
	echo "   (iscsi-test-cu is not in this guest: skipped)"
fi

step "two initiators on the passed-through tape drive (emulated SPC-2 reservation)"
T=$IQN-sg
run iscsiadm -m iface -I second -o new
run iscsiadm -m iface -I second -o update -n iface.initiatorname -v iqn.2026-12.org.rtgt:second-initiator
run iscsiadm -m discovery -t sendtargets -p $PORTAL -I second
run iscsiadm -m node -T "$T" -p $PORTAL -I second --login
iscsiadm -m session --rescan >/dev/null 2>&1
# The tape's sg node in each session.
tape_sgs() {
	for s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$s/targetname")" = "$T" ] || continue
		for d in "$s"/device/target*/*:*:*:*; do
			[ "$(cat "$d/type" 2>/dev/null)" = 1 ] && echo "/dev/$(ls "$d/scsi_generic")"
		done
	done
}
i=0
until [ "$(tape_sgs | wc -l)" = 2 ]; do
	i=$((i + 1)); [ $i -lt 150 ] || { lsscsi -g; fail "the second session's tape did not appear"; }
	sleep 0.1
done
S1=$(tape_sgs | sed -n 1p)
S2=$(tape_sgs | sed -n 2p)
ok "first initiator $S1, second $S2"
# Each new session's first command may meet rtgt's unit attention; clear them.
sg_turs "$S1" >/dev/null 2>&1; sg_turs "$S2" >/dev/null 2>&1
run sg_raw -v "$S1" 16 00 00 00 00 00
echo "\$ sg_raw $S2 00 00 00 00 00 00   (TEST UNIT READY: must conflict)"
sg_raw -v "$S2" 00 00 00 00 00 00 >/tmp/c 2>&1
sed 's/^/   /' /tmp/c
expect_in /tmp/c "Reservation Conflict" "the second initiator while the first holds the reservation"
sg_raw -v "$S2" 16 00 00 00 00 00 >/tmp/c 2>&1
expect_in /tmp/c "Reservation Conflict" "the second initiator's RESERVE"
ok "the second initiator is refused: RESERVATION CONFLICT"
run sg_raw -v "$S1" 00 00 00 00 00 00
run sg_raw -v "$S1" 17 00 00 00 00 00
run sg_raw -v "$S2" 16 00 00 00 00 00
run sg_raw -v "$S2" 00 00 00 00 00 00
ok "released by the first, reserved by the second"
run sg_raw -v "$S2" 17 00 00 00 00 00
run iscsiadm -m node -T "$T" -p $PORTAL -I second --logout

step "long commands: a slow device (scsi_debug, every command delayed) through sg and through bsg"
# sg's commands are queued with write() and collected with read(), so eight slow ones
# run at the device at once; bsg's hold an I/O-pool thread each, and pass-through
# holds at most half of the pool (two of rtgtd -t 4's threads), so they go two at a
# time while a file-backed LU on the same pool still answers at once.
modprobe scsi_debug ptype=3 delay=250 dev_size_mb=8 || fail "modprobe scsi_debug"
i=0
until SDBG=$(grep -l scsi_debug /sys/bus/scsi/devices/*/model 2>/dev/null | head -n 1) && [ -n "$SDBG" ]; do
	i=$((i + 1)); [ $i -lt 300 ] || fail "no scsi_debug device"
	sleep 0.1
done
SDBG=$(basename "$(dirname "$SDBG")")
i=0
until [ -d "/sys/bus/scsi/devices/$SDBG/scsi_generic" ] && [ -c "/dev/bsg/$SDBG" ]; do
	i=$((i + 1)); [ $i -lt 300 ] || fail "no sg / bsg node for $SDBG"
	sleep 0.1
done
sg_turs "$(sg_of "$SDBG")" >/dev/null 2>&1 # its POWER ON unit attention
c0=$(up)
run sg_turs "$(sg_of "$SDBG")"
ok "scsi_debug $SDBG $(sg_of "$SDBG"): one TEST UNIT READY at the device itself takes $(awk -v a="$c0" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}')s"
head -c 1048576 /dev/urandom >/tmp/file.img && truncate -s 16M /tmp/file.img
run $A --op new --mode target --tid 3 -T $IQN-slow
run $A --op new --mode logicalunit --tid 3 --lun 1 --device-type pt --bstype sg -b "$(sg_of "$SDBG")"
run $A --op new --mode logicalunit --tid 3 --lun 2 --device-type pt --bstype bsg -b "/dev/bsg/$SDBG"
run $A --op new --mode logicalunit --tid 3 --lun 3 --bstype rdwr -b /tmp/file.img
run $A --op bind --mode target --tid 3 -I ALL
run iscsiadm -m discovery -t sendtargets -p $PORTAL
run iscsiadm -m node -T "$IQN-slow" -p $PORTAL --login
iscsiadm -m session --rescan >/dev/null 2>&1
slow_sg() { # LUN: the sg node of that LUN in the session to $IQN-slow
	for s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$s/targetname")" = "$IQN-slow" ] || continue
		for d in "$s"/device/target*/*:*:*:"$1"; do
			[ -d "$d/scsi_generic" ] && { echo "/dev/$(ls "$d/scsi_generic")"; return 0; }
		done
	done
	return 1
}
i=0
until L1=$(slow_sg 1) && L2=$(slow_sg 2) && L3=$(slow_sg 3); do
	i=$((i + 1)); [ $i -lt 300 ] || { lsscsi -g; fail "the slow target's LUNs did not appear"; }
	sleep 0.1
done
sg_turs "$L1" >/dev/null 2>&1; sg_turs "$L2" >/dev/null 2>&1; sg_turs "$L3" >/dev/null 2>&1
# eight TEST UNIT READYs at once on NODE; prints the seconds until all ended
eight() {
	c0=$(up)
	for n in 1 2 3 4 5 6 7 8; do sg_turs "$1" >/tmp/tur.$n 2>&1 & done
	wait
	for n in 1 2 3 4 5 6 7 8; do [ ! -s /tmp/tur.$n ] || { cat /tmp/tur.$n; fail "a TEST UNIT READY on $1"; }; done
	awk -v a="$c0" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}'
}
SG8=$(eight "$L1")
ok "sg: eight slow commands at once took ${SG8}s (async write/read: no thread waits for them)"
# The file-backed LU's read alone, then while bsg's eight run.
c1=$(up)
run sg_raw -r 131072 -o /tmp/file.read "$L3" 28 00 00 00 00 00 00 01 00 00
ALONE_S=$(awk -v a="$c1" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}')
c0=$(up)
eight "$L2" >/tmp/bsg8 &
B=$!
sleep 1
c1=$(up)
run sg_raw -r 131072 -o /tmp/file.read "$L3" 28 00 00 00 00 00 00 01 00 00
FILE_S=$(awk -v a="$c1" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}')
wait $B
BSG8=$(cat /tmp/bsg8)
cmp -n 131072 /tmp/file.read /tmp/file.img || fail "the file LU's data"
ok "bsg: eight slow commands took ${BSG8}s (two pool threads at a time); the file LU read 128 KiB meanwhile in ${FILE_S}s (alone ${ALONE_S}s)"
awk -v s="$SG8" -v b="$BSG8" 'BEGIN{exit !(b > s * 1.5)}' || fail "sg (${SG8}s) did not overlap the slow commands more than bsg (${BSG8}s)"
awk -v f="$FILE_S" -v b="$BSG8" 'BEGIN{exit !(f < b / 2)}' || fail "the file LU waited for the pass-through commands (${FILE_S}s of ${BSG8}s)"
ok "long pass-through commands leave the pool to the file LU"
run iscsiadm -m node -T "$IQN-slow" -p $PORTAL --logout

# The sg node of the LUN of type TYPE in the session to $T (the first initiator's).
session_sg() { # TYPE
	for s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$s/targetname")" = "$T" ] || continue
		for d in "$s"/device/target*/*:*:*:*; do
			[ "$(cat "$d/type" 2>/dev/null)" = "$1" ] && { echo "/dev/$(ls "$d/scsi_generic")"; return 0; }
		done
	done
	return 1
}
# gone_check NODE WHAT: the initiator's commands to a LU whose device was pulled get NOT
# READY, LOGICAL UNIT COMMUNICATION FAILURE (after whatever unit attention the device
# had pending, shown as it comes), and INQUIRY says peripheral qualifier 001b.
gone_check() {
	i=0
	while :; do
		echo "\$ sg_raw -v $1 00 00 00 00 00 00   (TEST UNIT READY)"
		sg_raw -v "$1" 00 00 00 00 00 00 >/tmp/g 2>&1
		sed 's/^/   /' /tmp/g
		grep -qF "Logical unit communication failure" /tmp/g && break
		i=$((i + 1)); [ $i -lt 4 ] || fail "$2: no LOGICAL UNIT COMMUNICATION FAILURE"
	done
	expect_in /tmp/g "Not Ready" "$2: TEST UNIT READY"
	ok "$2: NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (02/08/00)"
	run sg_inq -v "$1"
	expect_in /tmp/run.out "PQual=1" "$2: INQUIRY"
	ok "$2: INQUIRY says peripheral qualifier 001b"
}
# still_serving: the DVD LU (QEMU's scsi-cd) and the changer (route A) answer through
# rtgt after a pulled device: the ISO's files checked again, mtx status.
still_serving() {
	kill -0 $RTGTD 2>/dev/null || fail "rtgtd died"
	R=$(session_dev "$T" 5)
	echo 3 >/proc/sys/vm/drop_caches
	run mount -t iso9660 -o ro "$R" /mnt/cd
	(cd /mnt/cd && sha256sum -c /data/ptdisc.sha256) >/tmp/c 2>&1 || { cat /tmp/c; fail "$1: the ISO's files"; }
	run umount /mnt/cd
	C=$(session_dev "$T" 8)
	run mtx -f "$C" status
	expect_in /tmp/run.out "Storage Element 1:Full :VolumeTag=A0000001" "$1: mtx status"
	ok "$1: the DVD LU ($(grep -c ': OK' /tmp/c) files match) and the changer LU still serve"
}

step "QEMU unplugs the scsi-hd under the disk LU (QMP device_del)"
SD=$(session_sg 0) || fail "no disk in the session"
ST=$(session_sg 1) || fail "no tape in the session"
run host-step device-del hd0
i=0
while [ -e "/sys/bus/scsi/devices/$DISK" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "the guest did not remove $DISK"
	sleep 0.1
done
ok "the guest removed $DISK"
gone_check "$SD" "disk LU, its scsi-hd unplugged"
still_serving "after device_del"

step "the host's target deletes the LU under the tape LU (route A)"
run host-step delete-lu 2
gone_check "$ST" "tape LU, its LU deleted on the host"
# What the device itself (the guest's own node of the route-A tape) now answers: the
# host's target has no LUN 2 any more.
echo "\$ sg_raw -v $(sg_of "$TAPE") 00 00 00 00 00 00   (the device's own answer)"
sg_raw -v "$(sg_of "$TAPE")" 00 00 00 00 00 00 >/tmp/g 2>&1
sed 's/^/   /' /tmp/g
expect_in /tmp/g "Logical unit not supported" "the device's own answer after the host deleted its LU"
ok "the device underneath answers ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED; rtgt's LU reports it gone"
still_serving "after the host's LU deletion"
run $A --op show --mode target
expect_in /tmp/run.out "Online: No" "show: a pulled LU is offline"
iscsiadm -m node --logoutall=all >/dev/null 2>&1
echo "--- rtgtd log (tail) ---"
tail -n 8 /tmp/rtgtd.log
exit 0
