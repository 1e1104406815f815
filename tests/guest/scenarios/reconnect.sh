# Reconnect over vhost-user-scsi (route V), each time in the middle of an O_DIRECT dd:
# 1. the host kills rtgtd with SIGKILL and starts it again from its dumped configuration;
# 2. the host closes the vhost session (rtgtadm session close): rtgtd answers the
#    commands it runs, takes no new ones and hangs up;
# 3. the host stops rtgtd gracefully (SIGTERM) and starts it again.
# Each time QEMU (reconnect-ms) connects again, the dd completes and the data reads back
# byte-exact.
. /data/lib.sh
DISK=$(device 0 disk)
# dd MIB STEP: writes MIB MiB of fresh random data in 4 KiB O_DIRECT writes while the
# host does STEP, then reads it back.
dd_across() {
	head -c $(($1 << 20)) /dev/urandom >/tmp/pattern
	want=$(sha256sum </tmp/pattern | cut -d' ' -f1)
	step "dd $1 MiB in 4 KiB writes to $DISK (O_DIRECT) while the host does: $2"
	dd if=/tmp/pattern of="$DISK" bs=4k oflag=direct 2>/tmp/dd.err &
	ddpid=$!
	sleep 1
	kill -0 $ddpid 2>/dev/null || fail "dd ended before $2; nothing was tested"
	run host-step "$2"
	wait $ddpid || fail "dd failed: $(cat /tmp/dd.err)"
	sed 's/^/   /' /tmp/dd.err
	echo 3 >/proc/sys/vm/drop_caches
	got=$(dd if="$DISK" bs=64k count=$(($1 * 16)) iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || fail "read back $got, wrote $want"
	ok "$1 MiB read back byte-exact across $2"
}
dd_across 64 crash
dd_across 32 close-session
dd_across 32 stop
echo "reconnect scenario passed"
