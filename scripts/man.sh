#!/usr/bin/env bash
# Builds bootstick's manual pages from its clap definitions (the same ones
# that parse the command line) into DIR, default target/man/man1:
#
#   scripts/man.sh                       # then: man -l target/man/man1/bootstick-write.1
#   sudo scripts/man.sh /usr/local/share/man/man1
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/man/man1}
cargo run --quiet --release -- man "$dir"
