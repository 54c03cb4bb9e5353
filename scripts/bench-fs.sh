#!/usr/bin/env bash
# Runs os-bench on a loop-mounted XFS or btrfs image (as the FileStore tests do), so the
# filesystem backends are measured beside the raw-disk anchor of the same mount.
#   scripts/bench-fs.sh xfs|btrfs|ext4 [os-bench options...]
# Needs root and xfsprogs / btrfs-progs. The image is sparse, on the work filesystem,
# and removed at exit (IMAGE_GB sets its size, IMAGE_FILL=zeros writes it in full).
set -euo pipefail
kind=${1:?usage: scripts/bench-fs.sh xfs|btrfs|ext4 [os-bench options]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${OS_BENCH:-$here/target/release/os-bench}
[ -x "$bin" ] || bin=$(command -v os-bench)
if [ "$kind" = ext4 ]; then
    dir=${BENCH_DIR:-/var/tmp/ostore-bench}
    mkdir -p "$dir"
    exec "$bin" --dir "$dir" "$@"
fi
work=$(mktemp -d /var/tmp/ostore-bench-$kind.XXXXXX)
img=$work/image
mnt=$work/mnt
cleanup() {
    umount "$mnt" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# A sparse image makes every block the filesystem writes for the first time an
# allocation in the file holding the image (and a journal commit of the filesystem
# under it at the next sync), which a real disk never pays: IMAGE_FILL=zeros writes
# the whole image first.
if [ "${IMAGE_FILL:-sparse}" = zeros ]; then
    dd if=/dev/zero of="$img" bs=4M count=$(( ${IMAGE_GB:-8} * 256 )) conv=fsync status=none
else
    truncate -s "${IMAGE_GB:-8}G" "$img"
fi
case $kind in
    xfs) mkfs.xfs -q -f -m reflink=1 "$img" ;;
    btrfs) mkfs.btrfs -q -f "$img" ;;
    *) echo "unknown filesystem $kind" >&2; exit 2 ;;
esac
mkdir -p "$mnt"
mount -o loop "$img" "$mnt"
"$bin" --dir "$mnt/bench" "$@"
