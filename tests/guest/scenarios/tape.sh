# Tape: Linux's st driver with mt-st, GNU tar and dd on the target's tape drive (SSC).
#
# Written from BOT on the non-rewinding device (st writes a filemark when a device it wrote
# to is closed):
#   file 0  tar archive of a tree (variable-block mode, 10240-byte blocks)
#   file 1  1 MiB in fixed-block mode (512-byte blocks, dd bs=4096: 8 blocks a WRITE(6))
#   file 2  variable blocks of 10000 bytes whose last block is short (777 bytes)
#   file 3  one block "third"   + an extra filemark from `mt weof` = file 4, empty
#   file 5  one block "last"
# Then each is read back byte-exact: the short last block with the same block size and
# with a larger one (each READ returns one whole block: st turns ILI with the residue into
# a short read), and the positioning (rewind, fsf, bsf, eod) lands where it should.
. /data/lib.sh

T=$(device 1 tape)
mt() { command mt -f "$T" "$@"; }
step "tape $T"
run sg_inq "$T"
# The first command after the LU appeared may meet a unit attention; st retries it.
i=0
until command mt -f "$T" status >/tmp/status 2>&1 && grep -q ONLINE /tmp/status; do
	i=$((i + 1))
	[ $i -lt 20 ] || { cat /tmp/status; fail "the drive never went ONLINE"; }
	sleep 0.5
done
run mt rewind
run mt status
expect_in /tmp/run.out "BOT" "mt status at the beginning"
expect_in /tmp/run.out "File number=0, block number=0" "mt status at the beginning"

step "write: tar, fixed blocks, variable blocks with a short last one, filemarks"
make_tree /tmp/src
head -c 1048576 /dev/urandom >/tmp/fixed.bin
head -c 500777 /dev/urandom >/tmp/var.bin # 50 blocks of 10000 and one of 777
echo third >/tmp/third
echo last >/tmp/last
run mt setblk 0
run tar -c -b 20 -f "$T" -C /tmp/src .
run mt setblk 512
run dd if=/tmp/fixed.bin of="$T" bs=4096
run mt setblk 0
run dd if=/tmp/var.bin of="$T" bs=10000
expect_in /tmp/run.out "50+1 records out" "dd writing the variable-block file"
run dd if=/tmp/third of="$T" bs=512
run mt weof 1
run dd if=/tmp/last of="$T" bs=512
run mt status
expect_in /tmp/run.out "File number=6, block number=0" "mt status after writing six files"

step "file 0: tar reads the tree back"
run mt rewind
mkdir -p /tmp/out
run tar -x -b 20 -f "$T" -C /tmp/out
same_tree /tmp/src /tmp/out "tar round trip"

step "file 1: fixed 512-byte blocks, read with dd bs=4096"
run mt rewind
run mt fsf 1
run mt status
expect_in /tmp/run.out "File number=1, block number=0" "mt fsf 1"
run mt setblk 512
run dd if="$T" of=/tmp/fixed.out bs=4096
expect_in /tmp/run.out "256+0 records in" "dd reading 1 MiB in 4096-byte reads"
cmp /tmp/fixed.bin /tmp/fixed.out || fail "fixed-block file differs"
ok "fixed-block file byte-exact"
run mt setblk 0

step "file 2: variable blocks, short last block, read with the same block size"
run mt rewind
run mt fsf 2
run dd if="$T" of=/tmp/var.same bs=10000
expect_in /tmp/run.out "50+1 records in" "dd bs=10000: fifty whole blocks and the short one"
cmp /tmp/var.bin /tmp/var.same || fail "variable-block file differs (bs=10000)"
ok "variable-block file byte-exact with bs=10000"

step "file 2 again with a larger block size: every READ returns one whole block"
run mt rewind
run mt fsf 2
run dd if="$T" of=/tmp/var.big bs=65536
expect_in /tmp/run.out "0+51 records in" "dd bs=65536: 51 short reads, one per block"
cmp /tmp/var.bin /tmp/var.big || fail "variable-block file differs (bs=65536)"
ok "variable-block file byte-exact with bs=65536"

step "filemarks: files 3, 4 (empty) and 5; fsf and bsf"
run mt rewind
run mt fsf 3
run dd if="$T" of=/tmp/third.out bs=512
cmp /tmp/third /tmp/third.out || fail "file 3 differs"
run mt status
expect_in /tmp/run.out "File number=4, block number=0" "position after reading file 3 to its filemark"
run dd if="$T" of=/tmp/empty.out bs=512
expect_in /tmp/run.out "0+0 records in" "file 4 is empty"
run dd if="$T" of=/tmp/last.out bs=512
cmp /tmp/last /tmp/last.out || fail "file 5 differs"
ok "files 3, 4, 5 as written"
run mt bsf 3
run mt fsf 1
run mt status
expect_in /tmp/run.out "File number=4, block number=0" "bsf 3 then fsf 1"
# SPACE to end of data: st no longer knows the file number, but the drive is at EOD.
run mt eod
run mt status
expect_in /tmp/run.out " EOD " "mt status after mt eod"
run mt rewind
run mt status
expect_in /tmp/run.out "BOT" "mt status after rewind"
echo "tape scenario passed"
