#!/usr/bin/env bash
# Conformance runner (libiscsi iscsi-test-cu against a fresh rtgtd LUN); see run.py --help.
#   bash tests/conformance/run.sh [--config default-lun|thin-lun|removable-lun|readonly-lun|all]
#                                 [--update] [--no-build] [--timeout S]
exec python3 "$(dirname "$0")/run.py" "$@"
