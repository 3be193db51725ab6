#!/usr/bin/env bash
# Builds the seed corpora of every fuzz target under fuzz/corpus/<target>/
# (not committed) with the real tools: the iso9660 seeds via make-iso-seeds.sh,
# El Torito catalogs from xorriso images, MBR/EBR/GPT system areas from sfdisk
# (with a small FAT ESP from mkfs.fat + mtools), UDF edit seeds (one per base
# form of testkit/src/udf_build.rs), checksum lists from sha*sum, OpenPGP material from
# gpg, minisign and signify keys and signatures, compressed streams from
# xz, zstd, gzip, bzip2 and lz4, zip archives from zip and 7z, block maps from
# bmaptool create. Each seed is at most a few
# dozen KiB so the fuzzers mutate them quickly.
set -euo pipefail
cd "$(dirname "$0")"
./make-iso-seeds.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
c=corpus
mkdir -p $c/eltorito $c/system_area $c/udf $c/trust_sums $c/trust_openpgp $c/trust_ed25519 $c/compressed $c/zip

# --- eltorito: BIOS + EFI El Torito images; the seed is the image from its
# boot catalog on (the target frames it so that it *is* the catalog).
tree=$work/tree
mkdir -p "$tree/boot"
head -c 2048 /dev/urandom > "$tree/boot/bios.img"
mkfs.fat -C -n EFIBOOT "$tree/boot/efi.img" 64 >/dev/null
mmd -i "$tree/boot/efi.img" ::/EFI ::/EFI/BOOT
echo loader > "$work/bootx64.efi"
mcopy -i "$tree/boot/efi.img" "$work/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
cut_catalog() { # image seed
  python3 - "$1" "$2" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
cat = struct.unpack_from('<I', d, 17 * 2048 + 71)[0]
open(sys.argv[2], 'wb').write(d[cat * 2048:][:60 << 10].rstrip(b'\0'))
PY
}
xorriso -as mkisofs -quiet -no-pad -b boot/bios.img -no-emul-boot -boot-load-size 4 \
  -eltorito-alt-boot -e boot/efi.img -no-emul-boot -o "$work/e1.iso" "$tree" 2>/dev/null
cut_catalog "$work/e1.iso" $c/eltorito/bios-efi
xorriso -as mkisofs -quiet -no-pad -e boot/efi.img -no-emul-boot -o "$work/e2.iso" "$tree" 2>/dev/null
cut_catalog "$work/e2.iso" $c/eltorito/efi-only
# Whole images (64 KiB or more are taken raw), so the EFI image's FAT is read.
python3 - "$work/e1.iso" $c/eltorito/raw-bios-efi <<'PY2'
import sys
d = open(sys.argv[1], 'rb').read().rstrip(b'\0')
open(sys.argv[2], 'wb').write(d + bytes(max(0, (64 << 10) - len(d))))
PY2
genisoimage -quiet -b boot/bios.img -no-emul-boot -boot-load-size 4 -o "$work/e3.iso" "$tree" 2>/dev/null
cut_catalog "$work/e3.iso" $c/eltorito/bios-only

# --- system_area: MBR, MBR with an extended partition (EBR chain), GPT; an
# ESP with a FAT volume at LBA 8 so its loader listing is reached too.
sys_seed() { # name keep-bytes sfdisk-script
  truncate -s 4M "$work/$1"
  printf '%s' "$3" | sfdisk -q "$work/$1" >/dev/null 2>&1
  head -c "$2" "$work/$1" > $c/system_area/$1
}
sys_seed mbr 1024 $'label: dos\nstart=2048, size=2048, type=c, bootable\nstart=4096, type=83\n'
sys_seed ebr 8192 $'label: dos\nstart=1, size=2, type=83\nstart=3, size=8000, type=5\nstart=4, size=2, type=83\nstart=8, size=2, type=83\nstart=12, size=2, type=83\n'
sys_seed gpt 17408 $'label: gpt\nfirst-lba: 34\nstart=34, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=2082, type=0FC63DAF-8483-4772-8E79-3D69004772E4\n'
mkfs.fat -C "$work/esp.img" 64 >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
truncate -s 128K "$work/mbr-esp"
printf 'label: dos\nstart=8, size=128, type=ef\n' | sfdisk -q "$work/mbr-esp" >/dev/null 2>&1
dd if="$work/esp.img" of="$work/mbr-esp" bs=512 seek=8 conv=notrunc status=none
python3 - "$work/mbr-esp" $c/system_area/mbr-esp <<'PY'
import sys
open(sys.argv[2], 'wb').write(open(sys.argv[1], 'rb').read()[:8 * 512 + 64 * 1024])
PY

# --- udf: short inputs are edits of the hand-built images; one seed per form
# with no edits, and one with a single edit each.
for f in 0 1 2 3; do
  printf "\\x0$f" > $c/udf/form-$f
  printf "\\x0$f\\x10\\x00\\x00\\x00\\xff" > $c/udf/form-$f-edit
done

# --- trust_sums: GNU, BSD (--tag) and single-hash files.
echo data > "$work/x.iso"
echo more > "$work/y.iso"
(cd "$work" && sha256sum x.iso y.iso) > $c/trust_sums/gnu-sha256
(cd "$work" && sha512sum -b x.iso) > $c/trust_sums/gnu-sha512
(cd "$work" && sha256sum --tag x.iso y.iso) > $c/trust_sums/bsd-sha256
(cd "$work" && b2sum --tag x.iso) > $c/trust_sums/bsd-b2
(cd "$work" && sha256sum x.iso | cut -d' ' -f1) > $c/trust_sums/single
(cd "$work" && printf '# x.iso: 5 bytes\n' && sha256sum --tag x.iso) > $c/trust_sums/fedora

# --- trust_openpgp: a key, detached (armored, binary) and clearsigned.
export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg -q --batch --passphrase '' --quick-gen-key 'Fuzz <fuzz@example.org>' ed25519 sign never 2>/dev/null
gpg -q --batch --export --armor > $c/trust_openpgp/key.asc
gpg -q --batch --export > $c/trust_openpgp/key.gpg
gpg -q --batch --armor --detach-sign -o $c/trust_openpgp/sig.asc $c/trust_sums/gnu-sha256
gpg -q --batch --detach-sign -o $c/trust_openpgp/sig.gpg $c/trust_sums/gnu-sha256
gpg -q --batch --clearsign -o $c/trust_openpgp/clear.asc $c/trust_sums/gnu-sha256
gpgconf --kill gpg-agent 2>/dev/null || true

# --- trust_ed25519: minisign and signify keys and signatures.
minisign -G -W -p "$work/m.pub" -s "$work/m.key" >/dev/null
minisign -S -s "$work/m.key" -m "$work/x.iso" -x "$work/m.sig" >/dev/null
cp "$work/m.pub" $c/trust_ed25519/minisign.pub
cp "$work/m.sig" $c/trust_ed25519/minisign.sig
signify-openbsd -G -n -p "$work/s.pub" -s "$work/s.sec"
signify-openbsd -S -s "$work/s.sec" -m "$work/x.iso" -x "$work/s.sig"
cp "$work/s.pub" $c/trust_ed25519/signify.pub
cp "$work/s.sig" $c/trust_ed25519/signify.sig

# --- compressed: a small image compressed by the real tools (xz with
# several blocks and as two concatenated streams, zstd with and without a
# content size, gzip, bzip2), so the index, frame and block walks start
# from real framing.
head -c 20000 /dev/urandom > "$work/raw"
head -c 40000 /dev/zero >> "$work/raw"
xz -T0 --block-size=16KiB -c "$work/raw" > $c/compressed/multi-block.xz
{ xz -c "$work/raw"; xz -c "$work/raw"; } > $c/compressed/two-streams.xz
zstd -q -c "$work/raw" > $c/compressed/sized.zst
zstd -q -c < "$work/raw" > $c/compressed/stream.zst
gzip -c "$work/raw" > $c/compressed/raw.gz
bzip2 -c "$work/raw" > $c/compressed/raw.bz2
lz4 -q -c "$work/raw" > $c/compressed/raw.lz4
lz4 -q -B4 --content-size -c "$work/raw" > $c/compressed/sized-64k.lz4

# --- zip: vendor-style archives made by zip and 7z (an image with a boot
# signature in a folder beside a README and a .DS_Store; two images; none;
# stored, Deflate64, BZip2 and LZMA members), so the central directory,
# local headers and entry judging start from real archives.
mkdir -p $c/zip "$work/z/vendor"
head -c 510 /dev/urandom > "$work/z/vendor/disk.img"
printf '\x55\xaa' >> "$work/z/vendor/disk.img"
head -c 8000 /dev/zero >> "$work/z/vendor/disk.img"
echo 'Write disk.img to a stick.' > "$work/z/vendor/README.txt"
printf '\0\0\0\1Bud1' > "$work/z/vendor/.DS_Store"
(cd "$work/z" && zip -qr "$OLDPWD/$c/zip/vendor.zip" vendor)
(cd "$work/z" && zip -qr0 "$OLDPWD/$c/zip/stored.zip" vendor)
(cd "$work/z" && zip -q "$OLDPWD/$c/zip/none.zip" vendor/README.txt vendor/.DS_Store)
cp "$work/z/vendor/disk.img" "$work/z/vendor/other.img"
(cd "$work/z" && zip -qr "$OLDPWD/$c/zip/two.zip" vendor)
for m in Deflate64 BZip2 LZMA; do
  (cd "$work/z" && 7z a -tzip -mm=$m -bso0 -bsp0 "$OLDPWD/$c/zip/$m.zip" vendor/disk.img vendor/README.txt)
done

# --- authenticode: real EFI binaries, signed (shim: two signatures; GRUB)
# and unsigned (Debian shim-signed, grub-efi-amd64-signed, grub-mkstandalone).
mkdir -p $c/authenticode
for f in /usr/lib/shim/shimx64.efi.signed /usr/lib/shim/mmx64.efi.signed \
         /usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed /usr/lib/shim/shimx64.efi; do
  [ -e "$f" ] && cp "$f" $c/authenticode/
done

# --- bmap: block maps made by bmaptool create of sparse images (data
# regions written into holes; one with --no-checksum; one all holes; one
# fully mapped), and a 1.3 (SHA-1) form of the first made from it.
mkdir -p $c/bmap
truncate -s 2M "$work/sparse.img"
for at in 1 40 41 300; do
  head -c 4096 /dev/urandom | dd of="$work/sparse.img" bs=4096 seek=$at conv=notrunc status=none
done
bmaptool -q create -o $c/bmap/sparse.bmap "$work/sparse.img"
bmaptool -q create --no-checksum -o $c/bmap/no-checksum.bmap "$work/sparse.img"
truncate -s 100K "$work/holes.img"
bmaptool -q create -o $c/bmap/holes.bmap "$work/holes.img"
head -c 70000 /dev/urandom > "$work/full.img"
bmaptool -q create -o $c/bmap/full.bmap "$work/full.img"
python3 - "$work/sparse.img" $c/bmap/sparse.bmap $c/bmap/v1.3.bmap <<'PY'
import hashlib, re, sys
img = open(sys.argv[1], 'rb').read()
t = open(sys.argv[2]).read()
def range_sha1(m):
    a, _, b = m.group(2).partition('-')
    a, b = int(a), int(b or a)
    return '<Range sha1="%s"> %s </Range>' % (hashlib.sha1(img[a * 4096:(b + 1) * 4096]).hexdigest(), m.group(2))
t = re.sub(r'<Range chksum="([0-9a-f]+)"> ([0-9-]+) </Range>', range_sha1, t)
t = re.sub(r'\s*<ChecksumType>.*?</ChecksumType>', '', t)
t = t.replace('version="2.0"', 'version="1.3"')
t = re.sub(r'<BmapFileChecksum> [0-9a-f]+ </BmapFileChecksum>', '<BmapFileSHA1> %s </BmapFileSHA1>' % ('0' * 40), t)
t = t.replace('0' * 40, hashlib.sha1(t.encode()).hexdigest(), 1)
open(sys.argv[3], 'w').write(t)
PY

for t in iso9660 eltorito system_area udf trust_sums trust_openpgp trust_ed25519 compressed zip authenticode bmap; do
  echo "$t: $(ls $c/$t | wc -l) seeds"
done
