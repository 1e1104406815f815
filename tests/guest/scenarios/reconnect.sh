# Reconnect over vhost-user-scsi (route V): while dd writes 64 MiB with O_DIRECT, the host
# kills rtgtd with SIGKILL and starts it again from its dumped configuration; QEMU
# (reconnect-ms) connects again, the dd completes and the data reads back byte-exact.
. /data/lib.sh
DISK=$(device 0 disk)
head -c 67108864 /dev/urandom >/tmp/pattern
want=$(sha256sum </tmp/pattern | cut -d' ' -f1)
step "dd 64 MiB in 4 KiB writes to $DISK (O_DIRECT) while the host kills rtgtd (SIGKILL) and restarts it"
dd if=/tmp/pattern of="$DISK" bs=4k oflag=direct 2>/tmp/dd.err &
ddpid=$!
sleep 1
kill -0 $ddpid 2>/dev/null || fail "dd ended before the crash; nothing was tested"
run host-step crash
wait $ddpid || fail "dd failed: $(cat /tmp/dd.err)"
sed 's/^/   /' /tmp/dd.err
echo 3 >/proc/sys/vm/drop_caches
got=$(dd if="$DISK" bs=64k count=1024 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "read back $got, wrote $want"
ok "64 MiB read back byte-exact across the crash"
echo "reconnect scenario passed"
