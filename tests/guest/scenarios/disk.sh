# Disk: Linux's sd driver on the target's disk LU. A file system is made, filled, checked
# clean and read back byte-exact after the page cache has been dropped, so the bytes come
# from the target, not from guest memory.
. /data/lib.sh

DISK=$(device 0 disk)
step "disk $DISK: $(cat /sys/block/${DISK#/dev/}/size) sectors of $(cat /sys/block/${DISK#/dev/}/queue/logical_block_size) bytes"
run sg_inq "$DISK"
run sg_readcap --16 "$DISK"

step "mkfs.ext4, then a tree of files written through the file system"
run mkfs.ext4 -q -F -E nodiscard -L rtgt-guest "$DISK"
make_tree /tmp/src
for i in 1 2 3 4; do head -c 2000000 /dev/urandom >"/tmp/src/big$i"; done
mkdir -p /mnt/disk
run mount -t ext4 "$DISK" /mnt/disk
run cp -a /tmp/src/. /mnt/disk/
run umount /mnt/disk

step "e2fsck -f finds the file system clean"
run e2fsck -f -n "$DISK"

step "read back after dropping the caches"
echo 3 >/proc/sys/vm/drop_caches
run mount -t ext4 -o ro "$DISK" /mnt/disk
rm -rf /mnt/disk/lost+found 2>/dev/null || true
mkdir -p /tmp/back
run cp -a /mnt/disk/. /tmp/back/
rm -rf /tmp/back/lost+found
same_tree /tmp/src /tmp/back "ext4 round trip"
run umount /mnt/disk

step "overwrite in place, unmount, check again"
run mount -t ext4 "$DISK" /mnt/disk
head -c 1500000 /dev/urandom >/tmp/src/big2
run cp /tmp/src/big2 /mnt/disk/big2
rm -f /tmp/src/1MiB
run rm /mnt/disk/1MiB
run umount /mnt/disk
run e2fsck -f -n "$DISK"
echo 3 >/proc/sys/vm/drop_caches
run mount -t ext4 -o ro "$DISK" /mnt/disk
rm -rf /tmp/back && mkdir -p /tmp/back
run cp -a /mnt/disk/. /tmp/back/
rm -rf /tmp/back/lost+found
same_tree /tmp/src /tmp/back "after the rewrite"
run umount /mnt/disk
echo "disk scenario passed"
