# The guest half of bench/powercut.py (runs as the guest's /data/scenario, dash).
#
#   powercut-guest.sh DAEMON MODE STORE
#     DAEMON  rtgtd | tgtd
#     MODE    rdwr | io_uring | direct | sync | wc-off | nv-cache   (rtgtd)
#             aio | rdwr                                           (tgtd)
#     STORE   file: a sparse file /mnt/store on the ext4 that the host made on the guest's
#                   disk (its allocation is file system metadata: a write into a hole is
#                   durable only once the journal commit holding its extent is)
#             raw:  the guest's disk itself, /dev/sda
#
# Mounts the disk (ext4 replays its journal after a cut), starts the daemon on 0.0.0.0:3260
# (the host reaches it through QEMU's port forward), exports the store as LUN 1 of
# iqn.2026-12.org.rtgt:powercut and prints "POWERCUT READY". Then it waits to be killed:
# the host cuts the power by killing QEMU.
set -u
DAEMON=$1 MODE=$2 STORE=$3
IQN=iqn.2026-12.org.rtgt:powercut
die() { echo "POWERCUT FAIL: $*"; dmesg | tail -n 20; exit 1; }

modprobe virtio_net
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0

DISK=/dev/sda
[ -b $DISK ] || die "no $DISK"
if [ "$STORE" = file ]; then
	mkdir -p /mnt
	mount -t ext4 $DISK /mnt || die "mount of $DISK failed"
	if [ ! -e /mnt/store ]; then
		truncate -s 256M /mnt/store || die "truncate"
		sync
	fi
	PATH_=/mnt/store
else
	PATH_=$DISK
fi

case $DAEMON/$MODE in
rtgtd/rdwr) BS="--bstype rdwr" ;;
rtgtd/io_uring) BS="--bstype io_uring" ;;
rtgtd/direct) BS="--bstype rdwr --bsoflags direct" ;;
rtgtd/sync) BS="--bstype rdwr --bsoflags sync" ;;
rtgtd/wc-off) BS="--bstype rdwr --params write_cache=off" ;;
rtgtd/nv-cache) BS="--bstype rdwr --params nv_cache=1" ;;
tgtd/aio) BS="--bstype aio" ;;
tgtd/rdwr) BS="--bstype rdwr" ;;
*) die "unknown daemon/mode $DAEMON/$MODE" ;;
esac

if [ "$DAEMON" = rtgtd ]; then
	export RTGT_RUN_DIR=/run/rtgtd
	# Its log goes to the host with this script's output (what it said before a cut).
	/data/rtgtd -f --iscsi portal=0.0.0.0:3260 2>&1 | tee /tmp/daemon.log &
	ADM="/data/rtgtadm --lld iscsi"
else
	# Debian's tgtd and tgtadm from the host (bookworm, like the guest); the guest has
	# every library they need but libaio, which comes along in /data.
	export LD_LIBRARY_PATH=/data
	# tgtd keeps its management socket's lock file in /var/run/tgtd.
	[ -e /var/run ] || ln -s /run /var/run
	mkdir -p /run/tgtd
	/data/tgtd -f --iscsi portal=0.0.0.0:3260 2>&1 | tee /tmp/daemon.log &
	ADM="/data/tgtadm --lld iscsi"
fi
i=0
until $ADM --op show --mode target >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat /tmp/daemon.log; die "$DAEMON did not start"; }
	sleep 0.1
done
$ADM --op new --mode target --tid 1 -T $IQN || die "target"
# shellcheck disable=SC2086
$ADM --op new --mode logicalunit --tid 1 --lun 1 $BS -b $PATH_ || { cat /tmp/daemon.log; die "LU"; }
$ADM --op bind --mode target --tid 1 -I ALL || die "bind"
# What the daemon says it serves (io_uring falls back to rdwr where the kernel refuses it).
$ADM --op show --mode target | grep -i -E "backing store (type|flags)|write.?cache" | sed 's/^ */POWERCUT SHOW /'
echo "POWERCUT READY $(cut -d' ' -f1 /proc/uptime)"
while :; do sleep 3600; done
