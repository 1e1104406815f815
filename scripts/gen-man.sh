#!/usr/bin/env bash
# Writes the man pages from the binaries' own definitions (rtgtd's clap options,
# rtgtadm's usage texts, the configuration reference, rtgtimg's clap options):
# man/rtgtd.8, man/rtgtadm.8, man/rtgt.toml.5, man/rtgtimg.8. The test `man` fails when they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p rtgtd -p rtgtadm -p rtgtimg
mkdir -p man
target/debug/rtgtd --man > man/rtgtd.8
target/debug/rtgtadm --man > man/rtgtadm.8
target/debug/rtgtadm --man-config > man/rtgt.toml.5
target/debug/rtgtimg --man > man/rtgtimg.8
echo "man/rtgtd.8 man/rtgtadm.8 man/rtgt.toml.5 man/rtgtimg.8 written"
