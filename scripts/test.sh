#!/usr/bin/env bash
# rtgt's one test command (what the README documents and .ci/run executes):
#   install dependencies, fmt check, clippy -D warnings, build, cargo test, the Debian
#   package (build, lintian, install, the installed daemon, purge), the guest-kernel
#   interop suite, conformance.
# Idempotent; runs unattended as root on Debian bookworm (CI=true, no stdin).
# Every step runs even if an earlier one failed (except those that need a build), so one
# run shows every problem; the exit status is non-zero if any step failed.
# The last line is "N passed, N failed", counting the steps (suites) run.
#
# Environment:
#   SKIP_DEPS=1         don't run scripts/install-deps.sh
#   SKIP_CONFORMANCE=1  don't run the iscsi-test-cu conformance suite
#   SKIP_STORE_CONFORMANCE=1  run it on the default LUN only, not also on io_uring,
#                       O_DIRECT and loop-device LUNs (about 2 minutes each)
#   CONFORMANCE_ARGS    extra arguments for tests/conformance/run.sh
#   SKIP_GUEST=1        don't run tests/guest (a Linux guest under QEMU as the initiator)
#   SKIP_DEB=1          don't build, lint, install and purge the Debian package
#                       (scripts/test-deb.sh; SKIP_DEB_RBD=1 builds only rtgt, not rtgt-rbd)
set -uo pipefail
# Cargo features the suite builds and tests with: rbd (Ceph RBD store; its tests start a
# throw-away Ceph cluster) and glfs (GlusterFS store; its tests start a throw-away Gluster
# volume). A build without them must work too: `cargo build`.
FEATURES=(--features rtgtd/rbd,rtgtd/glfs)

cd "$(dirname "$0")/.."
export CI="${CI:-true}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
exec </dev/null

passed=0
failed=0
results=()
start_all=$(date +%s)

# step NAME CMD...: runs CMD, records pass/fail with its duration.
step() {
  local name=$1
  shift
  local t0 rc
  t0=$(date +%s)
  printf '\n==> [%s] %s\n' "$name" "$*"
  "$@"
  rc=$?
  local dt=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    results+=("PASS  $name (${dt}s)")
  else
    failed=$((failed + 1))
    results+=("FAIL  $name (${dt}s, exit $rc)")
  fi
  return $rc
}
skipped() {
  failed=$((failed + 1))
  results+=("FAIL  $1 (not run: $2)")
}

if [ "${SKIP_DEPS:-0}" != 1 ]; then
  step install-deps bash scripts/install-deps.sh
fi
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
# The default build (no librbd or libgfapi needed) must stay clean as well.
step clippy-default cargo clippy --workspace --all-targets -- -D warnings
# The iSER transport (cargo feature rdma): clippy and its unit tests (no RDMA device
# needed; the guest suite's iser scenario runs it on soft-RoCE).
step clippy-rdma cargo clippy -p rtgtd --all-targets --features rtgtd/rdma -- -D warnings
step rdma-unit cargo test -p rtgtd --features rtgtd/rdma --bin rtgtd iser
if step build cargo build --workspace "${FEATURES[@]}"; then
  step cargo-test cargo test --workspace --no-fail-fast "${FEATURES[@]}"
  if [ "${SKIP_DEB:-0}" != 1 ]; then
    # The Debian package: built (release), lintian without errors, installed with
    # apt-get, the installed rtgtd --demo read with iscsi-inq, completions, purged clean.
    step deb bash scripts/test-deb.sh
  fi
  if [ "${SKIP_GUEST:-0}" != 1 ]; then
    # Linux's own sd, st, ch and sr drivers against rtgtd, through QEMU's libiscsi and
    # through the guest's open-iscsi, the DVD jukebox included, and iSER on soft-RoCE in
    # the RDMA guest (about 4-10 minutes, the guests' builds included, + the iser scenario).
    step guest-interop bash tests/guest/run.sh --no-build
    # Power cuts: rtgtd in the guest on a cache=none disk, QEMU SIGKILLed mid-write three
    # times; every acknowledged-durable write must read back (1-3 minutes; the full run,
    # 20 cuts in each of six store modes, is bench/powercut.py without arguments).
    step powercut python3 bench/powercut.py --modes rdwr --cuts 3
    # vhost-user-scsi (route V): the disk, tape, changer, cd and jukebox scenarios (the same
    # as over iSCSI, about 30 s together), hot-plug (a LUN reset from the guest;
    # a LUN added, grown, removed while the guest runs) and rtgtd killed, its session closed,
    # and rtgtd stopped gracefully and restarted, each under a dd, through QEMU's
    # vhost-user-scsi-pci (about 2 minutes).
    step guest-vhost bash tests/guest/run.sh --no-build --route V --scenario disk,tape,changer,cd,jukebox,hotplug,reconnect
    # The disk scenario again with 2 vCPUs and 2 request queues (about 15 s).
    step guest-vhost-mq bash tests/guest/run.sh --no-build --route V --scenario disk --smp 2 --queues 2
  fi
  if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
    # Each LUN configuration against its expectations: the four disk configurations of
    # issue 3 and issue 21's thick read-only and thin 512e LUNs, then the other backing stores, which must pass everything the default
    # rdwr LUN passes. The runs are independent (own daemon, port, LUN, results file)
    # and mostly wait on the initiator, so they run CONFORMANCE_JOBS at a time.
    runs=("default-lun" "thin-lun" "removable-lun" "readonly-lun" "readonly-thick-lun" "thin-512e-lun")
    if [ "${SKIP_STORE_CONFORMANCE:-0}" != 1 ]; then
      runs+=("io-uring-lun:default-lun" "direct-lun:default-lun" "loop-lun:default-lun")
      # LUN 1 served by rtgt-fileio, a device handler in its own process (bstype handler).
      runs+=("handler-lun:default-lun")
      # The SCSI kind: rtgt-fileio -p call parses and answers every CDB itself.
      runs+=("handler-call-lun:default-lun")
      # An RBD image on a throw-away Ceph cluster (scripts/ceph-cluster.sh).
      runs+=("rbd-lun:default-lun")
      # Two gateways on one image, iscsi-test-cu's second initiator through the second
      # (SPC-2 reservations and resets are the LU's): everything the default LUN passes.
      runs+=("rbd-gateways:default-lun")
      # A file on a throw-away GlusterFS volume (scripts/gluster-cluster.sh).
      runs+=("glfs-lun:default-lun")
    fi
    jobs_max=${CONFORMANCE_JOBS:-4}
    mkdir -p tests/conformance/results
    pids=()
    names=()
    t0=$(date +%s)
    for r in "${runs[@]}"; do
      cfg=${r%%:*}
      exp=""
      [ "$r" != "$cfg" ] && exp="--expect ${r#*:}"
      while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 1; done
      # shellcheck disable=SC2086
      bash tests/conformance/run.sh --no-build --config "$cfg" $exp ${CONFORMANCE_ARGS:-} \
        >"tests/conformance/results/$cfg.out" 2>&1 &
      pids+=($!)
      names+=("$cfg")
    done
    for i in "${!pids[@]}"; do
      wait "${pids[$i]}"
      rc=$?
      cfg=${names[$i]}
      printf '\n==> [conformance-%s]\n' "$cfg"
      cat "tests/conformance/results/$cfg.out"
      if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        results+=("PASS  conformance-$cfg")
      else
        failed=$((failed + 1))
        results+=("FAIL  conformance-$cfg (exit $rc)")
      fi
    done
    results+=("      (conformance wall time $(($(date +%s) - t0))s)")
  fi
else
  skipped cargo-test "build failed"
  [ "${SKIP_CONFORMANCE:-0}" != 1 ] && skipped conformance "build failed"
fi

printf '\n==> summary (%ss)\n' "$(($(date +%s) - start_all))"
for r in "${results[@]}"; do
  printf '  %s\n' "$r"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
