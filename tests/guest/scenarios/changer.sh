# Changer: Linux's ch driver with mtx on the target's media changer (SMC), and st with
# mt and tar on its drive. Arguments: the barcodes of the cartridges in slots 1, 2, ...
#
# READ ELEMENT STATUS must show the cartridges with their volume tags and an empty drive;
# MOVE MEDIUM (mtx load) must really put a cartridge in the drive, so that what tar writes
# to cartridge 1 is still there after cartridge 2 (blank) has been in the drive, and mtx
# unload must bring each back to its slot. Cartridge 3 gets a tree of its own, so a third
# image (made by tgt's tgtimg when the target is rtgtd) is written and read through the
# drive too.
. /data/lib.sh

CH=$(device 8 changer)
T=$(device 1 tape)
step "changer $CH, drive $T, cartridges: $*"
run sg_inq "$CH"

# status_is WHAT LINE...: mtx status shows each LINE (its fixed-format element lines).
status_is() {
	what=$1
	shift
	run mtx -f "$CH" status
	for l in "$@"; do expect_in /tmp/run.out "$l" "$what"; done
}
# wait_online: the drive answers after the unit attention for its new medium.
wait_online() {
	i=0
	until mt -f "$T" status >/tmp/status 2>&1 && grep -q ONLINE /tmp/status; do
		i=$((i + 1))
		[ $i -lt 30 ] || { cat /tmp/status; fail "the drive never went ONLINE with a cartridge loaded"; }
		sleep 0.5
	done
	ok "drive online: $(grep -o 'File number=[^,]*' /tmp/status)"
}

step "inventory: the cartridges in their slots, the drive empty"
n=1
for b in "$@"; do
	status_is "initial inventory" "Storage Element $n:Full :VolumeTag=$b"
	n=$((n + 1))
done
status_is "initial inventory" "Data Transfer Element 0:Empty" "Storage Element $n:Empty"
grep -q "Storage Element [0-9]* IMPORT/EXPORT" /tmp/run.out || fail "no import/export element in the inventory"
cp /tmp/run.out /tmp/inventory.before

step "mtx load 1 0: cartridge $1 into the drive, tar a tree to it"
run mtx -f "$CH" load 1 0
status_is "after load 1" "Data Transfer Element 0:Full (Storage Element 1 Loaded):VolumeTag = $1" \
	"Storage Element 1:Empty"
wait_online
make_tree /tmp/src
run mt -f "$T" rewind
run tar -c -b 20 -f "$T" -C /tmp/src .
run mt -f "$T" rewind
mkdir -p /tmp/out1
run tar -x -b 20 -f "$T" -C /tmp/out1
same_tree /tmp/src /tmp/out1 "tar through the loaded drive"
run mt -f "$T" offline
run mtx -f "$CH" unload 1 0
status_is "after unload" "Data Transfer Element 0:Empty" "Storage Element 1:Full :VolumeTag=$1"

step "mtx load 2 0: cartridge $2 is blank"
run mtx -f "$CH" load 2 0
status_is "after load 2" "Data Transfer Element 0:Full (Storage Element 2 Loaded):VolumeTag = $2"
wait_online
run mt -f "$T" rewind
mkdir -p /tmp/out2
if tar -x -b 20 -f "$T" -C /tmp/out2 >/tmp/tar2.out 2>&1 && [ -n "$(ls -A /tmp/out2)" ]; then
	fail "cartridge $2 holds files: the drive did not change cartridges"
fi
ok "nothing to read on $2 ($(head -n 1 /tmp/tar2.out))"
run mt -f "$T" offline
run mtx -f "$CH" unload 2 0

step "mtx load 1 0 again: the tree written before is still on cartridge $1"
run mtx -f "$CH" load 1 0
wait_online
run mt -f "$T" rewind
mkdir -p /tmp/out3
run tar -x -b 20 -f "$T" -C /tmp/out3
same_tree /tmp/src /tmp/out3 "cartridge $1 after a round trip through its slot"
run mt -f "$T" offline
run mtx -f "$CH" unload 1 0

step "mtx load 3 0: cartridge $3 takes a tree of its own"
run mtx -f "$CH" load 3 0
status_is "after load 3" "Data Transfer Element 0:Full (Storage Element 3 Loaded):VolumeTag = $3"
wait_online
rm -rf /tmp/src3 && make_tree /tmp/src3
run mt -f "$T" rewind
run tar -c -b 20 -f "$T" -C /tmp/src3 .
run mt -f "$T" offline
run mtx -f "$CH" unload 3 0
run mtx -f "$CH" load 3 0
wait_online
run mt -f "$T" rewind
mkdir -p /tmp/out4
run tar -x -b 20 -f "$T" -C /tmp/out4
same_tree /tmp/src3 /tmp/out4 "cartridge $3 after a trip through its slot"
run mt -f "$T" offline
run mtx -f "$CH" unload 3 0

step "the inventory is as it was"
run mtx -f "$CH" status
cmp -s /tmp/inventory.before /tmp/run.out || {
	diff /tmp/inventory.before /tmp/run.out
	fail "the inventory changed"
}
ok "same inventory"
echo "changer scenario passed"
