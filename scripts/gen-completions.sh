#!/usr/bin/env bash
# Writes the shell completions from the binaries' own definitions (rtgtd's and rtgtimg's
# clap options, rtgtadm's tgtadm option table with its modes and ops):
# completions/bash/{rtgtd,rtgtadm,rtgtimg} and completions/zsh/_{rtgtd,rtgtadm,rtgtimg}.
# The Debian package installs them; the `completions` tests fail when they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p rtgtd -p rtgtadm -p rtgtimg
mkdir -p completions/bash completions/zsh
for bin in rtgtd rtgtadm rtgtimg; do
  "target/debug/$bin" --completions bash > "completions/bash/$bin"
  "target/debug/$bin" --completions zsh > "completions/zsh/_$bin"
done
echo "completions/bash/* completions/zsh/* written"
