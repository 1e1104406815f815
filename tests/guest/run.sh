#!/usr/bin/env bash
# Guest-kernel interop suite (a real Linux kernel as the initiator); see run.py --help.
#   bash tests/guest/run.sh [--daemon rtgtd|tgtd] [--scenario disk,tape,changer,cd,jukebox,jukebox-toml] [--route A,B,V]
exec python3 "$(dirname "$0")/run.py" "$@"
