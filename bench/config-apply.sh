#!/usr/bin/env bash
# Measures rtgtd --config load time and `rtgtadm config apply` of a one-LUN change on
# a 100-target / 1000-LUN configuration and on a one-LUN configuration (release build).
# Usage: bash bench/config-apply.sh [RUNS]   (default 9; prints the median of each)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-9}
cargo build --release -q -p rtgtd -p rtgtadm
BIN=$PWD/target/release
W=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
export RTGT_RUN_DIR=$W/run
mkdir -p "$RTGT_RUN_DIR"; PID=

gen() { # gen TARGETS LUNS_PER_TARGET EXTRA_LUN(0/1) > file
  python3 - "$@" <<'PY'
import sys
t, l, extra = map(int, sys.argv[1:])
for i in range(1, t + 1):
    print(f'[[target]]\ntid = {i}\nname = "iqn.2026-11.org.example:t{i}"\ninitiator_address = ["ALL"]\n')
    n = l + (1 if extra and i == 1 else 0)
    for j in range(1, n + 1):
        print(f'[[target.lun]]\nlun = {j}\nbstype = "null"\nsize = "1G"\nparams = {{ scsi_sn = "S{i}L{j}" }}\n')
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 )); }

for shape in "100 10" "1 1"; do
  set -- $shape
  gen "$1" "$2" 0 > "$W/a.toml"
  gen "$1" "$2" 1 > "$W/b.toml"
  port=$((20000 + RANDOM % 20000))
  "$BIN/rtgtd" -f -C 9 --iscsi "portal=127.0.0.1:$port" --config "$W/a.toml" 2> "$W/log" &
  PID=$!
  for _ in $(seq 100); do [ -S "$RTGT_RUN_DIR/socket.9" ] && break; sleep 0.05; done
  sleep 0.2
  load=$(grep -o 'loaded.*' "$W/log" | head -1 || true)
  : > "$W/t"
  for _ in $(seq "$RUNS"); do
    ms "$BIN/rtgtadm" -C 9 config apply "$W/b.toml" >> "$W/t"
    ms "$BIN/rtgtadm" -C 9 config apply "$W/a.toml" >> "$W/t"
  done
  echo "$1 targets x $2 LUNs ($(wc -l < "$W/a.toml") lines): $load"
  echo "  config apply of one LUN added/removed: median $(median < "$W/t") us over $((RUNS * 2)) runs"
  grep 'config .*parsed' "$W/log" | tail -2 | sed 's/^/  /'
  kill $PID; wait $PID 2>/dev/null || true
done
