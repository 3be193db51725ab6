#!/usr/bin/env bash
# Regenerates the README's terminal screenshots from a real interactive
# write to an emulated USB stick at 80 columns (the test-bed guest,
# docs/testbed.md):
#   images/write-progress.svg   the confirmation answered, the write bar
#   images/write-done.svg       write, sync, verify and the summary
# The test testbed::guest_an_interactive_write_to_a_usb_stick_at_80_columns
# records the session in the guest (util-linux `script`), replays it into
# an 80-column tmux on the host and checks every screen; with
# BOOTSTICK_SCREENSHOTS it also saves two of them, which
# scripts/ansi2svg.py draws as SVG.
# Usage: scripts/screenshots.sh   (needs what scripts/test.sh installs)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BOOTSTICK_SCREENSHOTS="$work" BOOTSTICK_REQUIRE_ALL=1 cargo test --locked --test it -- \
  --exact testbed::guest_an_interactive_write_to_a_usb_stick_at_80_columns
python3 scripts/ansi2svg.py "$work/write-progress.ans" images/write-progress.svg \
  --title "bootstick write: a USB stick, 80 columns"
python3 scripts/ansi2svg.py "$work/write-done.ans" images/write-done.svg \
  --title "bootstick write: done"
ls -l images/write-progress.svg images/write-done.svg
