#!/usr/bin/env bash
# Builds a stock Debian 12 cloud guest, the kind a user brings to berth:
# debootstrap of bookworm with Debian's own kernel, systemd, cloud-init,
# openssh-server and ifupdown, and nothing of berth's in it (no config that
# names berth: cloud-init must find berth's NoCloud seed from the SMBIOS
# serial berth's domain XML writes, as on any libvirt host). Into CACHE/<key>/:
#   disk.qcow2   one ext4 partition (root, LABEL=cloudimg-rootfs) from 1 MiB
#   vmlinuz      Debian's kernel from the image's /boot
#   initrd.img   Debian's initramfs from the image's /boot (initramfs-tools)
#   cmdline      root=LABEL=cloudimg-rootfs ro console=ttyS0
#   manifest.json  the key, the suite, the mirror and the package versions
# berth boots it the Firecracker way (kernel and initrd handed to QEMU): the
# image has no bootloader, because there is none to configure on a direct boot.
# The cache key hashes the package list and the recipe; the mirror's later
# updates do not rebuild it. CACHE/current points at the newest. A first build takes a
# few minutes (about 300 packages from the mirror); a second run returns at once.
#
# Usage: images/build-debian-cloud.sh [CACHE]   (default /var/cache/berth/debian-cloud,
#        or $BERTH_DEBIAN_CLOUD_CACHE; the mirror is the host's Debian source,
#        or $BERTH_DEBIAN_MIRROR). Needs root, debootstrap, mkfs.ext4, sfdisk, qemu-img.
set -euo pipefail
export LC_ALL=C
cache=${1:-${BERTH_DEBIAN_CLOUD_CACHE:-/var/cache/berth/debian-cloud}}
SUITE=bookworm
# As Debian's own cloud images: cloud-init's locale module needs locales (update-locale).
PACKAGES=(systemd-sysv udev linux-image-amd64 initramfs-tools cloud-init openssh-server ifupdown
  isc-dhcp-client netbase iproute2 sudo locales)
CMDLINE='root=LABEL=cloudimg-rootfs ro console=ttyS0'
LABEL=cloudimg-rootfs
ROOT_LBA=2048

log() { printf 'build-debian-cloud: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/debian-packages.txt lists it)"

mirror=${BERTH_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The host's own Debian source (deb822 or one-line), so a host behind a local mirror uses it.
  mirror=$(sed -nE 's#^URIs:[[:space:]]*(\S+/debian)/?$#\1#p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(sed -nE 's#^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(\S+/debian)/?[[:space:]]+bookworm[[:space:]].*#\2#p' /etc/apt/sources.list 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
# The key covers what goes into the image: the settings above and the recipe
# below (between its markers, comment lines left out), not the clean-up.
key=$({
  echo "$SUITE ${PACKAGES[*]} $CMDLINE $LABEL $ROOT_LBA"
  sed -n '/^# --- recipe$/,/^# --- end of recipe$/p' "$0" | grep -v '^[[:space:]]*#'
} | sha256sum | cut -c1-16)
out="$cache/$key"
if [ -f "$out/manifest.json" ]; then
  ln -sfn "$key" "$cache/current"
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.build.XXXXXX")
root="$work/root"
cleanup() {
  # debootstrap mounts /proc and /sys in the tree while it works: never remove through a mount.
  for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" || true; done
  if awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "left $work: something is still mounted in it"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
log "building $key from $mirror ($SUITE)"

# --- recipe
# debootstrap makes the minimal base; apt then installs the rest in the tree,
# where it orders configuration itself (debootstrap --include could not
# configure python3-cryptography here). No service starts in the tree.
debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" >&2 2>/dev/null
  die "debootstrap failed (log above)"
}
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
in_tree() { DEBIAN_FRONTEND=noninteractive LC_ALL=C chroot "$root" "$@"; }
{
  in_tree apt-get update -q &&
    in_tree apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
} >"$work/apt.log" 2>&1 || {
  tail -n 40 "$work/apt.log" >&2
  die "installing the packages in the image failed (log above)"
}
# cloud-init's locale module sets en_US.UTF-8 (its default) with update-locale,
# which refuses a locale that was never generated (exit 255): generate it,
# as image makers do.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$root/etc/locale.gen"
in_tree locale-gen >>"$work/apt.log" 2>&1 || die "locale-gen failed in the image"
rm -f "$root/usr/sbin/policy-rc.d"
umount "$root/sys" "$root/proc"

# What an image maker configures; nothing here is berth's.
echo "LABEL=$LABEL / ext4 defaults 0 1" >"$root/etc/fstab"
echo debian >"$root/etc/hostname"
printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' >"$root/etc/network/interfaces"
printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$root/etc/apt/sources.list"
# A first boot is a first boot: a fresh machine-id, host keys made by cloud-init.
: >"$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/lib/cloud/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
vmlinuz=$(find "$root/boot" -name 'vmlinuz-*' -print -quit)
initrd=$(find "$root/boot" -name 'initrd.img-*' -print -quit)
[ -n "$vmlinuz" ] || die "no kernel in the image's /boot"
[ -n "$initrd" ] || die "no initramfs in the image's /boot"
versions=$(chroot "$root" dpkg-query -W -f '${Package}=${Version} ' "${PACKAGES[@]}" python3 2>/dev/null)

# The disk: one partition from ROOT_LBA, an ext4 made from the tree (no mount, no loop device).
used_kib=$(du -sk "$root" | cut -f1)
size_mib=$((used_kib * 13 / 10 / 1024 + 256))
truncate -s "${size_mib}M" "$work/root.raw"
mkfs.ext4 -q -F -L "$LABEL" -E root_owner=0:0 -d "$root" "$work/root.raw"
truncate -s $((ROOT_LBA * 512 + $(stat -c %s "$work/root.raw"))) "$work/disk.raw"
printf 'label: dos\nstart=%s, type=83\n' "$ROOT_LBA" | sfdisk -q "$work/disk.raw"
dd if="$work/root.raw" of="$work/disk.raw" bs=512 seek="$ROOT_LBA" conv=notrunc status=none
rm -f "$work/root.raw"
# --- end of recipe

mkdir -p "$work/out"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/out/disk.qcow2"
cp "$vmlinuz" "$work/out/vmlinuz"
cp "$initrd" "$work/out/initrd.img"
echo "$CMDLINE" >"$work/out/cmdline"
cat >"$work/out/manifest.json" <<EOF
{"key":"$key","suite":"$SUITE","mirror":"$mirror","cmdline":"$CMDLINE","size_mib":$size_mib,"packages":"${versions% }"}
EOF
rm -rf "$out"
mv "$work/out" "$out"
ln -sfn "$key" "$cache/current"
log "built $out (${size_mib} MiB disk)"
echo "$out"
