#!/bin/sh
# Capture what bootstick's device layer reads (`devices::Roots`) from the
# running system into OUTDIR, as a tree `bootstick list --root OUTDIR` (and
# `devices::Roots::under`) reads exactly as it reads the live system:
#
#   sys/block/NAME          the kernel's symlinks, same relative targets
#   sys/devices/...         each disk's directory (attributes, queue/,
#                           partitions, holders/, slaves/, dm/) and the
#                           small attribute files of every ancestor directory
#                           (SCSI vendor/model, USB manufacturer/serial, ...)
#   dev/disk/by-*, dev/mapper   udev's links, as links
#   proc/self/mountinfo, proc/swaps, run/udev/data/b*
#
# Read-only: it only reads sysfs attribute files (never writes one) and
# copies nothing larger than 4 KiB per file. POSIX sh with busybox applets
# (find, readlink, head), so it runs in the test-bed guest
# (tests/it/testbed.rs) as on a real machine; tests/fixtures/sysfs/ holds trees
# made with it.
#
#   sh scripts/capture-devices.sh OUTDIR
set -eu

out=${1:?usage: capture-devices.sh OUTDIR}
mkdir -p "$out"

# copy_attrs SRC DST: the regular, readable files directly in SRC.
copy_attrs() {
    mkdir -p "$2"
    for f in "$1"/*; do
        [ -f "$f" ] && [ -r "$f" ] || continue
        case ${f##*/} in
            # write-only triggers and large binary blobs
            remove | rescan | delete | bind | unbind | new_id | remove_id | reset | descriptors | config | rom | vpd | resource*) continue ;;
        esac
        head -c 4096 "$f" >"$2/${f##*/}" 2>/dev/null || rm -f "$2/${f##*/}"
    done
}

# copy_links SRC DST: the symlinks directly in SRC, as symlinks.
copy_links() {
    mkdir -p "$2"
    for l in "$1"/*; do
        [ -L "$l" ] || continue
        ln -sfn "$(readlink "$l")" "$2/${l##*/}"
    done
}

mkdir -p "$out/sys/block"
for b in /sys/block/*; do
    [ -L "$b" ] || continue
    name=${b##*/}
    ln -sfn "$(readlink "$b")" "$out/sys/block/$name"
    real=$(readlink -f "$b")
    rel=${real#/sys/}
    dst="$out/sys/$rel"
    # The disk's own directory and the subdirectories the enumerator reads.
    copy_attrs "$real" "$dst"
    copy_links "$real" "$dst"
    for sub in queue dm md; do
        [ -d "$real/$sub" ] && copy_attrs "$real/$sub" "$dst/$sub"
    done
    for sub in holders slaves; do
        [ -d "$real/$sub" ] && copy_links "$real/$sub" "$dst/$sub"
    done
    # Partitions: subdirectories holding a `partition` attribute.
    for p in "$real"/*; do
        [ -d "$p" ] && [ -f "$p/partition" ] || continue
        copy_attrs "$p" "$dst/${p##*/}"
        for sub in holders slaves; do
            [ -d "$p/$sub" ] && copy_links "$p/$sub" "$dst/${p##*/}/$sub"
        done
    done
    # Every ancestor up to /sys/devices: vendor, model, serial, removable ...
    dir=${real%/*}
    while [ "$dir" != /sys/devices ] && [ "$dir" != /sys ] && [ -n "$dir" ]; do
        copy_attrs "$dir" "$out/sys/${dir#/sys/}"
        copy_links "$dir" "$out/sys/${dir#/sys/}"
        dir=${dir%/*}
    done
done

for d in /dev/disk/*; do
    [ -d "$d" ] && copy_links "$d" "$out/dev/disk/${d##*/}"
done
[ -d /dev/mapper ] && copy_links /dev/mapper "$out/dev/mapper"

mkdir -p "$out/proc/self" "$out/run/udev/data"
cat /proc/self/mountinfo >"$out/proc/self/mountinfo"
cat /proc/swaps >"$out/proc/swaps"
for u in /run/udev/data/b*; do
    [ -f "$u" ] && cp "$u" "$out/run/udev/data/"
done
# Links that point outside the tree (a device's `subsystem`, `driver`) are
# kept as they are: only names are read from them.
exit 0
