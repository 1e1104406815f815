# In the guest (tests/guest/boot.py): the same LUN seen twice, through vhost-user-scsi
# (virtio) and through the guest's open-iscsi; dd with O_DIRECT on each, 4 KiB and 1 MiB,
# reads and writes (sequential), then random 4 KiB reads and writes at queue depth 1 with
# /data/randio (bench/randio.c, built static by vhost.sh: the guest has no fio), 15 s
# each. Prints "RESULT PATH OP BS MB/s" lines.
. /data/lib.sh
path_of() {
	case $(readlink -f /sys/block/$1/device) in
	*session*) echo iscsi ;;
	*virtio*) echo vhost ;;
	*) echo other ;;
	esac
}
mbs() { sed -n 's/.* \([0-9.]*\) \([MGk]B\)\/s$/\1 \2/p' | awk '{v=$1; if ($2=="GB") v*=1000; if ($2=="kB") v/=1000; print v}'; }
for d in $(ls /sys/block | grep '^sd'); do
	p=$(path_of $d)
	[ "$p" = other ] && continue
	[ "$(cat /sys/block/$d/device/type)" = 0 ] || continue
	for bs in 4k 1M; do
		case $bs in 4k) n=4096 ;; 1M) n=64 ;; esac
		w=$(dd if=/dev/zero of=/dev/$d bs=$bs count=$n oflag=direct 2>&1 | tail -1 | mbs)
		r=$(dd if=/dev/$d of=/dev/null bs=$bs count=$n iflag=direct 2>&1 | tail -1 | mbs)
		echo "RESULT $p write $bs $w"
		echo "RESULT $p read $bs $r"
	done
	for op in write read; do
		set -- $(/data/randio /dev/$d $op 15)
		echo "RESULT $p rand$op 4k $2"
		echo "IOPS $p rand$op $1"
	done
done
