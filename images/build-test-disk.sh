#!/usr/bin/env bash
# Builds berth's test disk: the test guest (images/build-test-guest.sh) on a
# real qcow2 disk that boots by itself, plus the parts to boot the same disk
# the Firecracker way (kernel and initrd handed to QEMU):
#   disk.qcow2  MBR: images/test-disk/mbr.s, a minimal Linux loader (there is
#               no bootloader package to install here, and none is needed);
#               Debian's bzImage and the initrd in the gap before partition 1;
#               partition 1: an ext4 root filesystem with the test guest's
#               busybox, virtio_net chain and init (as /sbin/init), which also
#               writes a marker onto this filesystem
#   vmlinux     the test guest's kernel (a hard link when the caches share a filesystem)
#   initrd.img  busybox-static, virtio_blk and ext4 with their dependencies,
#               and images/test-disk/init: mounts root= and switch_roots into it
#   cmdline     console=ttyS0 loglevel=6 root=/dev/vda1 rw (the MBR passes the same)
# into CACHE/<key>/, where key hashes the test guest's key and this script's
# inputs, and points CACHE/current at it. Works offline once the test guest
# is built: the packages come from its debs/ cache. Prints the directory.
# Needs qemu-img, mkfs.ext4 (e2fsprogs), sfdisk (fdisk), as and ld (binutils).
#
# Usage: images/build-test-disk.sh [CACHE]   (default /var/cache/berth/test-disk,
#        or $BERTH_TEST_DISK_CACHE; the test guest's cache is $BERTH_TEST_GUEST_CACHE)
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${BERTH_TEST_DISK_CACHE:-/var/cache/berth/test-disk}}
guest_cache=${BERTH_TEST_GUEST_CACHE:-/var/cache/berth/test-guest}
# Dependency order (checked below against each module's depends=). ext4 and
# jbd2 also ask for crypto-crc32c (a softdep, for metadata_csum): crc32c_generic.
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
  crc32c_generic crc16 mbcache jbd2 ext4)
CMDLINE='console=ttyS0 loglevel=6 root=/dev/vda1 rw'
# The disk: boot sector; kernel and initrd from 1 MiB; the root partition
# from 16 MiB. The loader puts the initrd at 128 MiB, above the kernel's
# init_size even without KASLR, so a guest needs 160 MiB of memory or more.
BOOT_LBA=2048
ROOT_LBA=32768
ROOT_SIZE=32M
INITRD_ADDR=0x8000000
# A fixed filesystem UUID and hash seed: the same inputs make the same filesystem.
FS_UUID=62657274-6800-4000-8000-746573746469

log() { printf 'build-test-disk: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

guest=$(bash "$here/build-test-guest.sh" "$guest_cache" | tail -n 1)
[ -f "$guest/manifest.json" ] || die "the test guest did not build"
manifest_field() { sed -nE "s/.*\"$1\":\"([^\"]*)\".*/\1/p" "$guest/manifest.json"; }
guest_key=$(manifest_field key)

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

key=$(
  {
    echo "guest=$guest_key $CMDLINE ${MODULES[*]} $BOOT_LBA $ROOT_LBA $ROOT_SIZE $INITRD_ADDR $FS_UUID"
    cat "$here/test-disk/init" "$here/test-disk/mbr.s" "$0"
  } | sha256sum | cut -c1-16
)
out="$cache/$key"
if [ -f "$out/manifest.json" ]; then
  ln -sfn "$key" "$cache/current"
  echo "$out"
  exit 0
fi

cached_deb() { # package version -> the .deb the test guest's build downloaded
  local f
  f=$(find "$guest_cache/debs" -name "${1}_${2//:/%3a}_*.deb" -print -quit)
  [ -n "$f" ] || die "no $1 $2 in $guest_cache/debs; remove $guest_cache/current and build the test guest again"
  echo "$f"
}
kernel_pkg=$(manifest_field kernel_package)
kdeb=$(cached_deb "$kernel_pkg" "$(manifest_field kernel_version)")
bdeb=$(cached_deb busybox-static "$(manifest_field busybox_static_version)")

work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building $key (test guest $guest_key)"

# The initramfs: busybox, the block and filesystem modules, the mount-and-switch init.
initrd="$work/initrd"
mkdir -p "$initrd/bin" "$initrd/lib/modules" "$initrd/etc"
dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$initrd" ./bin/busybox
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*' \
  './lib/modules/*/kernel/drivers/virtio/*.ko' './lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
  './lib/modules/*/kernel/fs/ext4/ext4.ko' './lib/modules/*/kernel/fs/jbd2/jbd2.ko' \
  './lib/modules/*/kernel/fs/mbcache.ko' './lib/modules/*/kernel/lib/crc16.ko' \
  './lib/modules/*/kernel/crypto/crc32c_generic.ko'
loaded=' '
for m in "${MODULES[@]}"; do
  f=$(find "$work/lib/modules" -name "$m.ko" -print -quit)
  [ -n "$f" ] || die "module $m.ko is not in $kernel_pkg"
  # The .ko's own depends= (modinfo is not installed here): each must load first.
  for dep in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
    [[ "$loaded" == *" $dep "* ]] || die "$m depends on $dep, which MODULES does not load before it"
  done
  cp "$f" "$initrd/lib/modules/$m.ko"
  loaded+="$m "
done
printf '%s\n' "${MODULES[@]}" >"$initrd/etc/modules"
install -m 755 "$here/test-disk/init" "$initrd/init"
(cd "$initrd" && find . -mindepth 1 | sort | busybox cpio -o -H newc 2>/dev/null) | gzip -9n >"$work/initrd.img"

# The root filesystem: the test guest's initramfs, its init moved to /sbin/init.
root="$work/root"
mkdir -p "$root"
(cd "$root" && gzip -dc "$guest/initrd.img" | busybox cpio -id 2>/dev/null)
mkdir -p "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/var/lib"
mv "$root/init" "$root/sbin/init"
truncate -s "$ROOT_SIZE" "$work/root.raw"
mkfs.ext4 -q -F -L berth-root -U "$FS_UUID" -E "hash_seed=$FS_UUID,root_owner=0:0" -d "$root" "$work/root.raw"

# The boot sector: mbr.s assembled between its layout and its command line.
vmlinuz=$(echo "$work"/boot/vmlinuz-*)
sectors() { echo $((($(stat -c %s "$1") + 511) / 512)); }
[ "$(dd if="$vmlinuz" bs=1 skip=514 count=4 status=none)" = HdrS ] || die "$vmlinuz has no boot protocol header"
setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$vmlinuz" | tr -d ' ')
[ "$setup_sects" != 0 ] || setup_sects=4 # the boot protocol's "0 means 4"
kernel_sectors=$(sectors "$vmlinuz")
initrd_lba=$((BOOT_LBA + kernel_sectors))
initrd_sectors=$(sectors "$work/initrd.img")
((initrd_lba + initrd_sectors <= ROOT_LBA)) || die "kernel and initrd do not fit before sector $ROOT_LBA"
{
  echo "	.set KERNEL_LBA, $BOOT_LBA"
  echo "	.set KERNEL_SECTORS, $kernel_sectors"
  echo "	.set SETUP_SECTS, $setup_sects"
  echo "	.set INITRD_LBA, $initrd_lba"
  echo "	.set INITRD_SECTORS, $initrd_sectors"
  echo "	.set INITRD_BYTES, $(stat -c %s "$work/initrd.img")"
  echo "	.set INITRD_ADDR, $INITRD_ADDR"
} >"$work/layout.s"
printf 'cmdline:\n\t.asciz "%s"\ncmdline_end:\n' "$CMDLINE" >"$work/cmdline.s"
as --32 -o "$work/mbr.o" "$work/layout.s" "$here/test-disk/mbr.s" "$work/cmdline.s"
ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$work/mbr.bin" "$work/mbr.o"
mbr_bytes=$(stat -c %s "$work/mbr.bin")
((mbr_bytes <= 440)) || die "the boot sector's code is $mbr_bytes bytes; 440 fit before the partition table"

# The disk: a partition table, then the boot code, kernel, initrd and root filesystem in place.
disk="$work/disk.raw"
truncate -s $((ROOT_LBA * 512 + $(stat -c %s "$work/root.raw"))) "$disk"
printf 'label: dos\nlabel-id: 0x62657274\nstart=%s, type=83\n' "$ROOT_LBA" | sfdisk -q "$disk"
dd if="$work/mbr.bin" of="$disk" conv=notrunc status=none
dd if="$vmlinuz" of="$disk" bs=512 seek="$BOOT_LBA" conv=notrunc status=none
dd if="$work/initrd.img" of="$disk" bs=512 seek="$initrd_lba" conv=notrunc status=none
dd if="$work/root.raw" of="$disk" bs=512 seek="$ROOT_LBA" conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$disk" "$work/disk.qcow2"

mkdir -p "$work/out"
mv "$work/disk.qcow2" "$work/initrd.img" "$work/out/"
ln "$guest/vmlinux" "$work/out/vmlinux" 2>/dev/null || cp "$guest/vmlinux" "$work/out/vmlinux"
echo "$CMDLINE" >"$work/out/cmdline"
cat >"$work/out/manifest.json" <<EOF
{"key":"$key","test_guest_key":"$guest_key","kernel_package":"$kernel_pkg","cmdline":"$CMDLINE","modules":"${MODULES[*]}","root_lba":$ROOT_LBA}
EOF
rm -rf "$out"
mv "$work/out" "$out"
ln -sfn "$key" "$cache/current"
log "built $out"
echo "$out"
