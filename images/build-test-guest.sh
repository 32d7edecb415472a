#!/usr/bin/env bash
# Builds berth's tiny test guest from Debian packages, without installing them:
#   vmlinux     Debian's kernel, uncompressed (QEMU boots the ELF through PVH,
#               about 2.5 s faster under TCG than the bzImage)
#   initrd.img  busybox-static, the virtio_net module chain and images/test-guest/init
#   cmdline     the kernel command line the guest expects
# into CACHE/<key>/, where key hashes the package versions and the guest's
# files, and points CACHE/current at it. A second run with the same inputs
# does nothing. Prints the guest's directory on stdout.
#
# Usage: images/build-test-guest.sh [CACHE]   (default /var/cache/berth/test-guest,
#        or $BERTH_TEST_GUEST_CACHE)
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${BERTH_TEST_GUEST_CACHE:-/var/cache/berth/test-guest}}
MODULES=(failover net_failover virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_net)
CMDLINE='console=ttyS0 loglevel=6 rdinit=/init'

log() { printf 'build-test-guest: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

mkdir -p "$cache/debs"
exec 9>"$cache/.lock"
flock 9

# Fast path: nothing that goes into the guest changed since it was built.
if [ -f "$cache/current/manifest.json" ] &&
  [ -z "$(find "$here/test-guest" "$here/build-test-guest.sh" /var/lib/apt/lists -newer "$cache/current/manifest.json" -print -quit 2>/dev/null)" ]; then
  readlink -f "$cache/current"
  exit 0
fi

# One apt-cache call (each costs about 1.5 s): the kernel package that
# linux-image-amd64 points at, with its version, and busybox-static's version.
show=$(apt-cache show --no-all-versions linux-image-amd64 busybox-static 2>/dev/null || true)
read -r kernel_pkg kernel_ver < <(echo "$show" | sed -nE 's/^Depends: (linux-image-[0-9][^ ]*) \(= ([^)]*)\).*/\1 \2/p' | head -n 1) || true
busybox_ver=$(echo "$show" | awk '/^Package: busybox-static/ {b = 1} b && /^Version:/ {print $2; exit}')
if [ -z "${kernel_pkg:-}" ] || [ -z "$busybox_ver" ]; then
  # No apt lists (offline): a guest built before is still good.
  [ -e "$cache/current/vmlinux" ] && { readlink -f "$cache/current"; exit 0; }
  die "apt knows no linux-image-amd64 or busybox-static: run apt-get update"
fi

key=$(
  {
    echo "$kernel_pkg=$kernel_ver busybox-static=$busybox_ver $CMDLINE ${MODULES[*]}"
    cat "$here/test-guest/init" "$here/test-guest/udhcpc.script" "$0"
  } | sha256sum | cut -c1-16
)
out="$cache/$key"
if [ -f "$out/manifest.json" ]; then
  touch "$out/manifest.json" # keeps the fast path fast
  ln -sfn "$key" "$cache/current"
  echo "$out"
  exit 0
fi

fetch_deb() { # package version -> path of the .deb in the cache
  local f
  f=$(find "$cache/debs" -name "${1}_${2//:/%3a}_*.deb" -print -quit)
  if [ -z "$f" ]; then
    log "downloading $1 $2"
    (cd "$cache/debs" && apt-get download -q "$1=$2" >/dev/null 2>&1) || die "could not download $1=$2"
    f=$(find "$cache/debs" -name "${1}_${2//:/%3a}_*.deb" -print -quit)
  fi
  [ -n "$f" ] || die "no .deb for $1=$2 after download"
  echo "$f"
}
kdeb=$(fetch_deb "$kernel_pkg" "$kernel_ver")
bdeb=$(fetch_deb busybox-static "$busybox_ver")

work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building $key ($kernel_pkg $kernel_ver, busybox-static $busybox_ver)"

dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/net/*.ko' './lib/modules/*/kernel/drivers/virtio/*.ko' './lib/modules/*/kernel/net/core/*.ko'
dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$work" ./bin/busybox

# vmlinuz is a bzImage: a boot stub followed by the xz-compressed ELF. Decompress
# from the first xz magic on; xz reports the trailing stub data, which is expected.
vmlinuz=$(echo "$work"/boot/vmlinuz-*)
offset=$(grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n 1 | cut -d: -f1)
[ -n "$offset" ] || die "no xz stream in $vmlinuz"
tail -c "+$((offset + 1))" "$vmlinuz" | xz -dcq >"$work/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "decompressed kernel is not an ELF"

root="$work/root"
mkdir -p "$root/bin" "$root/lib/modules" "$root/etc" "$root/dev"
cp "$work/bin/busybox" "$root/bin/busybox"
for m in "${MODULES[@]}"; do
  f=$(find "$work/lib/modules" -name "$m.ko" -print -quit)
  [ -n "$f" ] || die "module $m.ko is not in $kernel_pkg"
  cp "$f" "$root/lib/modules/$m.ko"
done
install -m 755 "$here/test-guest/init" "$root/init"
install -m 755 "$here/test-guest/udhcpc.script" "$root/etc/udhcpc.script"
(cd "$root" && find . -mindepth 1 | sort | busybox cpio -o -H newc 2>/dev/null) | gzip -9n >"$work/initrd.img"

mkdir -p "$work/guest"
mv "$work/vmlinux" "$work/initrd.img" "$work/guest/"
echo "$CMDLINE" >"$work/guest/cmdline"
cat >"$work/guest/manifest.json" <<EOF
{"key":"$key","kernel_package":"$kernel_pkg","kernel_version":"$kernel_ver","busybox_static_version":"$busybox_ver","cmdline":"$CMDLINE"}
EOF
rm -rf "$out"
mv "$work/guest" "$out"
ln -sfn "$key" "$cache/current"
log "built $out"
echo "$out"
