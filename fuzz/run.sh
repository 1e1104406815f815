#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) in parallel, starting from the corpora in
# fuzz/corpus and keeping new inputs in a scratch directory (so the repository corpus only
# changes when someone copies interesting inputs back, e.g. with `cargo fuzz cmin`).
# Needs a nightly toolchain and cargo-fuzz: rustup toolchain install nightly;
# cargo install cargo-fuzz. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-60}
TARGETS=${TARGETS:-"pdu login cdb virtio"}
WORK=${FUZZ_WORK:-$(mktemp -d /tmp/rtgt-fuzz.XXXXXX)}
cargo +nightly fuzz build -O
pids=()
for t in $TARGETS; do
  mkdir -p "$WORK/$t"
  cargo +nightly fuzz run -O "$t" "$WORK/$t" "corpus/$t" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$WORK/$t.log" 2>&1 &
  pids+=($!)
done
rc=0
for i in "${!pids[@]}"; do
  t=$(echo $TARGETS | cut -d' ' -f$((i + 1)))
  if wait "${pids[$i]}"; then
    echo "$t: ok; $(grep -E '^stat::number_of_executed_units' "$WORK/$t.log" | awk '{print $2}') runs," \
      "$(grep -E '^stat::new_units_added' "$WORK/$t.log" | awk '{print $2}') new units, corpus $(ls "$WORK/$t" | wc -l) (log: $WORK/$t.log)"
  else
    echo "$t: FAILED (log: $WORK/$t.log)"; rc=1
  fi
done
exit $rc
