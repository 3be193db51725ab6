#!/usr/bin/env bash
# Regenerates the boot-test screenshots in images/ from real runs of
# `bootstick boot-test --screenshot` (docs/boot-test.md):
#   images/boot-test-bios-grub-menu.png      a GRUB menu under SeaBIOS (kept-running)
#   images/boot-test-secure-boot-refused.png OVMF with Secure Boot refusing an unsigned GRUB
#   images/boot-test-shim-refused.png        Microsoft-signed shim refusing an unsigned GRUB
# Usage: scripts/boot-test-screenshots.sh [BOOTSTICK]   (default: target/debug/bootstick)
# Needs: qemu-system-x86, ovmf, grub-pc-bin, grub-efi-amd64-bin, xorriso,
# mtools, dosfstools, shim-signed (for the third one).
set -euo pipefail
cd "$(dirname "$0")/.."
bootstick=${1:-target/debug/bootstick}
[ -x "$bootstick" ] || { echo "no $bootstick: cargo build first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MTOOLS_SKIP_CHECK=1

# A hybrid GRUB rescue ISO whose menu waits for a key: under BIOS it stays
# on the menu (kept-running); under Secure Boot its unsigned GRUB is refused.
mkdir -p "$work/menu/boot/grub"
cat > "$work/menu/boot/grub/grub.cfg" <<'CFG'
set timeout=-1
menuentry "Install (bootstick boot-test)" { halt }
menuentry "Rescue shell" { halt }
menuentry "Power off" { halt }
CFG
grub-mkrescue -o "$work/menu.iso" "$work/menu" 2>/dev/null
# Exit 20 is expected: Secure Boot does not boot it.
"$bootstick" boot-test --firmware bios,uefi-secure-boot --screenshot "$work/shots" "$work/menu.iso" || [ $? -eq 20 ]
cp "$work/shots/bios.png" images/boot-test-bios-grub-menu.png
cp "$work/shots/uefi-secure-boot.png" images/boot-test-secure-boot-refused.png

# Debian's signed shim with an unsigned GRUB behind it, only in El Torito,
# written as a built layout: shim starts, then refuses GRUB and waits.
shim=/usr/lib/shim/shimx64.efi.signed
if [ -f "$shim" ]; then
  mkdir -p "$work/shim/boot/grub"
  printf 'set timeout=-1\nmenuentry "unreachable" { halt }\n' > "$work/shim/boot/grub/grub.cfg"
  grub-mkstandalone -O x86_64-efi -o "$work/grubx64.efi" "boot/grub/grub.cfg=$work/shim/boot/grub/grub.cfg"
  img="$work/shim/efi.img"
  mkfs.fat -C "$img" 32768 >/dev/null
  mmd -i "$img" ::/EFI ::/EFI/BOOT
  mcopy -i "$img" "$shim" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$img" "$work/grubx64.efi" ::/EFI/BOOT/grubx64.efi
  xorriso -as mkisofs -quiet -R -J -e efi.img -no-emul-boot -o "$work/shim.iso" "$work/shim"
  "$bootstick" write --yes "$work/shim.iso" "$work/shim-stick.img" >/dev/null 2>&1
  "$bootstick" boot-test --firmware uefi-secure-boot --screenshot "$work/shim-shots" "$work/shim-stick.img" || [ $? -eq 20 ]
  cp "$work/shim-shots/uefi-secure-boot.png" images/boot-test-shim-refused.png
else
  echo "no $shim (Debian package shim-signed): images/boot-test-shim-refused.png left as it is" >&2
fi
file images/boot-test-*.png
