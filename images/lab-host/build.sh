#!/usr/bin/env bash
# Builds the base of a lab host: a QEMU VM with Debian's kernel, whose 8021q and
# bridge (vlan_filtering) modules this machine's kernel lacks, so berth's VLAN
# data path can run for real. Into CACHE/<key>/:
#   vmlinux    Debian's kernel, taken from the test guest's build (same .deb)
#   base.cpio  busybox, the modules (with their dependencies, in load order),
#              iproute2, nft, conntrack, setpriv, sysctl, etcd (Debian's etcd-server, a Go
#              binary that links only libc) and the host's node, each with its
#              libraries; uncompressed, since gunzip under TCG costs seconds
#   cmdline    the kernel command line
# The project itself (dist/, production node_modules) goes into a second cpio
# per run (images/lab-host/app-cpio.sh), appended to this one.
# Prints the directory on stdout. A second run with the same inputs does nothing.
#
# Usage: images/lab-host/build.sh [CACHE]   (default /var/cache/berth/lab-host,
#        or $BERTH_LAB_HOST_CACHE; the kernel .deb comes from the test guest's
#        cache, $BERTH_TEST_GUEST_CACHE or /var/cache/berth/test-guest)
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${BERTH_LAB_HOST_CACHE:-/var/cache/berth/lab-host}}
tg_cache=${BERTH_TEST_GUEST_CACHE:-/var/cache/berth/test-guest}
# What the lab host needs; their dependencies are found from each .ko's modinfo.
# The guard logs its drops (nft_log to an NFLOG group) at a rate limit (nft_limit).
WANT=(crc32c_generic virtio_pci virtio_net 8021q bridge veth nf_tables nft_objref nft_meta_bridge nft_limit nft_log nfnetlink_log
  # Security groups' bridge-ct path: conntrack in the bridge family (nf_conntrack_bridge),
  # `ct` and `ct zone set` in nft (nft_ct), and ctnetlink for the conntrack CLI's flow cuts.
  nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack nf_conntrack_bridge nft_ct nf_conntrack_netlink)
# etcd: one member per lab host, so berthd runs in cluster mode as on real hosts.
# conntrack (Debian package conntrack): security groups cut a removed source's flows with it.
BINARIES=(/usr/sbin/ip /usr/sbin/bridge /usr/sbin/nft /usr/bin/setpriv /usr/sbin/sysctl /usr/bin/etcd /usr/sbin/conntrack)
CMDLINE='console=ttyS0 loglevel=4 rdinit=/init'

log() { printf 'lab-host build: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The test guest's builder downloads the kernel .deb and extracts vmlinux; reuse both.
tg=$(bash "$here/../build-test-guest.sh" "$tg_cache" | tail -n 1)
read -r kernel_pkg kernel_ver < <(sed -nE 's/.*"kernel_package":"([^"]+)","kernel_version":"([^"]+)".*/\1 \2/p' "$tg/manifest.json")
busybox_ver=$(sed -nE 's/.*"busybox_static_version":"([^"]+)".*/\1/p' "$tg/manifest.json")
kdeb=$(find "$tg_cache/debs" -name "${kernel_pkg}_${kernel_ver//:/%3a}_*.deb" -print -quit)
bdeb=$(find "$tg_cache/debs" -name "busybox-static_${busybox_ver//:/%3a}_*.deb" -print -quit)
[ -n "$kdeb" ] && [ -n "$bdeb" ] || die "the test guest's cache has no .deb for $kernel_pkg or busybox-static"

node_bin=$(readlink -f "$(command -v node)")
key=$(
  {
    echo "$kernel_pkg=$kernel_ver busybox=$busybox_ver $CMDLINE ${WANT[*]} ${BINARIES[*]}"
    dpkg-query -W iproute2 nftables util-linux procps etcd-server conntrack libc6 libstdc++6 2>/dev/null
    "$node_bin" --version
    cat "$here/init" "$0"
  } | sha256sum | cut -c1-16
)
out="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/manifest.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building $key ($kernel_pkg $kernel_ver)"
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$work" --wildcards './lib/modules/*/kernel/*'
dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$work" ./bin/busybox

# The .deb has no modules.dep: read each module's depends= and order the
# closure so that every module comes after what it needs.
declare -A ko=() seen=()
while IFS= read -r f; do ko[$(basename "$f" .ko)]=$f; done < <(find "$work/lib/modules" -name '*.ko')
order=()
visit() {
  local m=$1 d
  [ -n "${seen[$m]:-}" ] && return
  seen[$m]=1
  [ -n "${ko[$m]:-}" ] || die "module $m.ko is not in $kernel_pkg"
  for d in $(tr '\0' '\n' <"${ko[$m]}" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '); do visit "$d"; done
  order+=("$m")
}
for m in "${WANT[@]}"; do visit "$m"; done

root="$work/root"
mkdir -p "$root/bin" "$root/lib/modules" "$root/etc" "$root/dev" "$root/usr/bin" "$root/usr/sbin"
cp "$work/bin/busybox" "$root/bin/busybox"
for m in "${order[@]}"; do cp "${ko[$m]}" "$root/lib/modules/$m.ko"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"

copy_with_libs() { # binary -> itself and every library ldd names, at the same paths
  local f lib
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    for lib in $(ldd "$f" | grep -oE '/[^ ]+\.so[^ ]*'); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}
copy_with_libs "${BINARIES[@]}" "$node_bin"
[ "$node_bin" = /usr/bin/node ] || ln -s "$node_bin" "$root/usr/bin/node"
# iproute2 prints names from these tables; nft and ip work without the rest.
[ -d /etc/iproute2 ] && cp -r /etc/iproute2 "$root/etc/"
install -m 755 "$here/init" "$root/init"
(cd "$root" && find . -mindepth 1 | sort | busybox cpio -o -H newc 2>/dev/null) >"$work/base.cpio"

mkdir -p "$work/out"
mv "$work/base.cpio" "$work/out/"
cp "$tg/vmlinux" "$work/out/vmlinux"
echo "$CMDLINE" >"$work/out/cmdline"
cat >"$work/out/manifest.json" <<EOF
{"key":"$key","kernel_package":"$kernel_pkg","kernel_version":"$kernel_ver","node":"$("$node_bin" --version)","modules":"${order[*]}"}
EOF
rm -rf "$out"
mv "$work/out" "$out"
ln -sfn "$key" "$cache/current"
# Older builds are 180 MB each; only the current one is used.
find "$cache" -mindepth 1 -maxdepth 1 -type d -not -name "$key" -not -name '.*' -exec rm -rf {} +
log "built $out"
echo "$out"
