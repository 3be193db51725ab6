#!/usr/bin/env bash
# Runs every bootstick test, installing what the tests need on Debian first.
#
#   scripts/test.sh            # as root (or with passwordless sudo)
#
# Tests that need a tool or root skip visibly under plain `cargo test`; here
# BOOTSTICK_REQUIRE_ALL=1 turns every such skip into a failure, so a green run
# means every test really ran.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use as oracles, fixture builders and firmware.
packages=(
  qemu-system-x86 ovmf                                # boot proofs: SeaBIOS and OVMF
  grub-pc-bin grub-efi-amd64-bin grub-common xorriso  # fixture hybrid ISOs (grub-mkrescue)
  genisoimage p7zip-full                              # ISO/UDF fixtures and an independent reader
  udftools                                            # mkudffs/udfinfo: UDF 2.01 volumes in 512/2048/4096-byte blocks
  fuse3                                               # fusermount3: bootstick mount/umount (tests/it/mount.rs)
  mtools dosfstools gdisk                             # FAT and GPT oracles
  exfatprogs                                          # fsck.exfat/dump.exfat/mkfs.exfat: exFAT oracles (tests/it/health.rs)
  nbdkit                                              # a fake-capacity USB stick for the test-bed guest (tests/it/testbed.rs)
  wimtools                                            # WIM oracle
  gnupg gpgv minisign signify-openbsd                 # signature peers (gpgv: apt's InRelease check)
  isomd5sum                                           # implantisomd5/checkisomd5: implanted ISO MD5 oracle
  e2fsprogs util-linux mount fdisk                    # ext4 for mounted-target tests, losetup, sfdisk (package fdisk)
  busybox-static cpio kmod udev                       # the guest test-bed's initramfs
  binutils xz-utils apt                               # test-bed: strip, vmlinux from bzImage, apt-get download linux-image
  zstd gzip pigz bzip2 zip                            # compressed images and zip archives (tests/it/compressed.rs; xz-utils above; 7z: p7zip-full)
  bmap-tools                                          # bmaptool create/copy: block maps and their oracle (tests/it/bmap.rs)
  lz4                                                 # lz4: LZ4 frame images (tests/it/compressed.rs)
  time                                                # scripts/bench.sh: peak RSS (GNU time -v)
  tmux                                                # terminal-output tests: screens drawn by a real terminal emulator
  groff-base                                          # renders the generated manual pages (tests/it/contract.rs)
  file                                                # file(1): boot-test screenshots are PNGs (tests/it/boot_test.rs)
  shim-signed grub-efi-amd64-signed                   # Debian's signed Secure Boot chain (tests/it/boot_test.rs)
  ipxe                                                # ipxe.iso: an isohybrid ISO without an ESP entry (tests/it/boot_test.rs)
  sbsigntool osslsigncode pesign openssl              # Authenticode oracles and the throw-away signing key (tests/it/authenticode.rs); the HTTPS test's CA (tests/it/download.rs)
  python3                                             # /usr/bin/python3: the download tests' HTTP(S) server (tests/it/fixtures/http_server.py)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The test-bed fetches its guest kernel with `apt-get download` (not installed:
# no initramfs-tools run, the host's /boot untouched), which needs package lists.
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
fi

# Every command the tests run, checked by name after installing, so a package
# missing from the list above fails here, by name, instead of as a test
# failure halfway through the suite (`dpkg -S "$(command -v TOOL)"` names the
# package that holds a command).
commands=(
  qemu-system-x86_64 grub-mkrescue grub-mkstandalone xorriso genisoimage 7z
  mkudffs udfinfo mcopy mdir minfo mlabel mmd mtype mshowfat fsck.fat mkfs.fat sgdisk sfdisk
  wimlib-imagex gpg gpgconf minisign signify-openbsd mkfs.ext4 losetup mount umount
  findmnt lsblk partx fallocate script scriptreplay base64 tmux busybox cpio depmod strip xz dpkg-deb
  apt-get apt-cache time cmp diff sha256sum sha512sum b2sum md5sum sha1sum isosize mkfifo
  gpgv implantisomd5 checkisomd5 /usr/lib/apt/apt-helper tar gzip base64 groff bash file
  fusermount3 find stat blockdev dd wipefs
  fsck.exfat dump.exfat mkfs.exfat nbdkit
  zstd pigz bzip2 zip bmaptool lz4
  sbsign sbverify osslsigncode pesign openssl objdump
  /usr/bin/python3
)
absent=()
for c in "${commands[@]}"; do
  command -v "$c" >/dev/null 2>&1 || absent+=("$c")
done
if ((${#absent[@]})); then
  echo "test.sh: still missing after installing: ${absent[*]}" >&2
  exit 1
fi
for f in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd \
         /usr/share/OVMF/OVMF_CODE_4M.ms.fd /usr/share/OVMF/OVMF_VARS_4M.ms.fd; do
  [ -e "$f" ] || { echo "test.sh: firmware $f missing (package ovmf)" >&2; exit 1; }
done
for f in /usr/lib/shim/shimx64.efi.signed /usr/lib/shim/mmx64.efi.signed \
         /usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed /usr/lib/ipxe/ipxe.iso; do
  [ -e "$f" ] || { echo "test.sh: $f missing (packages shim-signed, grub-efi-amd64-signed, ipxe)" >&2; exit 1; }
done

export BOOTSTICK_REQUIRE_ALL=1
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --all-targets --locked --no-fail-fast
cargo test --doc --locked
