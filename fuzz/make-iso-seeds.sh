#!/usr/bin/env bash
# Builds the seed corpus of the iso9660 fuzz target into fuzz/corpus/iso9660/
# (not committed): small images mastered by genisoimage and xorriso, with the
# first 32 KiB (the system area, which the target supplies as zeros) and the
# trailing zeros cut off, so each seed is a few dozen KiB.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/iso9660
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tree=$work/tree
mkdir -p "$tree/d/e" "$tree/deep/1/2/3/4/5/6/7/8/9"
echo hello > "$tree/d/a.txt"
echo deep > "$tree/deep/1/2/3/4/5/6/7/8/9/leaf"
printf 'x%.0s' {1..3000} > "$tree/d/e/three-k"
ln -s d/a.txt "$tree/link"
ln -s /etc/passwd "$tree/abs"
touch "$tree/$(printf 'n%.0s' {1..180})"

i=0
master() {
  "$@" -o "$work/img.iso" "$tree" 2>/dev/null
  python3 - "$work/img.iso" "$out/seed-$i" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()[32768:].rstrip(b'\0')
open(sys.argv[2], 'wb').write(d)
PY
  i=$((i + 1))
}
master genisoimage -quiet -R -J -joliet-long   # Rock Ridge with relocation (CL/RE), Joliet
master genisoimage -quiet -D                   # plain ISO 9660
master xorriso -as mkisofs -quiet -R -J -no-pad
echo "wrote $i seeds to fuzz/$out"
