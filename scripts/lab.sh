#!/usr/bin/env bash
# npm run lab: libvirt up, berthd on its embedded default (state in a
# throw-away dir, network "default"), the test guest imported as image
# "test", one real QEMU guest plus one netns guest, each showing from its own
# output the DHCP lease and the instance-id berth's metadata service gave it,
# and a namespace with a cloned MAC being refused and audited.
# Ctrl-C or the end cleans up; `npm run lab -- --keep` leaves it running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --cluster) exec bash "$root/scripts/lab-cluster.sh" "$@" ;;
    *) echo "usage: npm run lab [-- --keep] [-- --cluster]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "npm run lab needs root (libvirt, bridges, namespaces, nftables)" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-lab.XXXXXX)
state="$work/state"
sock="$work/berthd.sock"
berthd=(node "$root/dist/agent/daemon/main.js" --state-dir "$state" --socket "$sock")
ctl() { node "$root/dist/agent/cli/main.js" --socket "$sock" "$@"; }
# Reads one dotted path (nics.0.ip) from the JSON on stdin.
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v?.[k];console.log(v??"")})' "$1"; }
rogue=lab-rogue
started=$(date +%s%N)
elapsed() {
  local d=$((($(date +%s%N) - started) / 100000000))
  echo "$((d / 10)).$((d % 10)) s"
}

cleanup() {
  set +e
  trap - EXIT INT TERM
  printf '\n== cleaning up (use npm run lab -- --keep to leave it running)\n'
  ctl instance delete vm1 >/dev/null 2>&1
  ctl instance delete n1 >/dev/null 2>&1
  ctl image delete test >/dev/null 2>&1
  ip netns delete "$rogue" 2>/dev/null
  ip link delete labrogue0 2>/dev/null
  ctl network delete default >/dev/null 2>&1
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid"; fi
  nft delete table bridge bth_guard 2>/dev/null
  rm -rf "$work"
}
if [ "$keep" -eq 1 ]; then trap 'echo "lab failed; state kept in $work" >&2' ERR; else trap cleanup EXIT INT TERM; fi

step() { printf '\n== %s\n' "$*"; }

step "starting dbus, virtlogd, libvirtd (under tini) and libvirt-dbus"
bash "$root/scripts/libvirt-up.sh"
virsh -c qemu:///system version --daemon | sed -n '1,3p'

step "the test guest: Debian's kernel + a busybox initramfs (built once, then cached)"
guest=$(bash "$root/images/build-test-guest.sh" | tail -n 1)
ls -la "$guest"

step "starting berthd (embedded default config; state in $state)"
"${berthd[@]}" >"$work/berthd.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  ctl status >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/berthd.log" >&2; exit 1; }
  sleep 0.1
done
ctl status

step "the default network: bridge, endpoint namespace (DHCP + 169.254.169.254), guard"
ctl network show default

step "importing the test guest as image \"test\" (content-addressed: the sha256 is its identity)"
ctl image import "$guest/vmlinux" --name test --initrd "$guest/initrd.img" --cmdline "$(cat "$guest/cmdline")"
sha=$(ctl image show test --json | json sha256)

step "a real QEMU guest (libvirt): MAC from the pool, fixed IP, guard, then the domain"
ctl instance create vm1 --network default --runtime libvirt --image test
ctl instance show vm1
vm_json=$(ctl instance show vm1 --json)
vm_id=$(json id <<<"$vm_json")
vm_mac=$(json nics.0.mac <<<"$vm_json")
vm_ip=$(json nics.0.ip <<<"$vm_json")
vm_port=$(json nics.0.port <<<"$vm_json")
vm_log=$(json console_log <<<"$vm_json")

step "a netns guest: the same path without QEMU (a namespace on a guarded port)"
ctl instance create n1 --network default
n_json=$(ctl instance show n1 --json)
n_id=$(json id <<<"$n_json")
n_mac=$(json nics.0.mac <<<"$n_json")
n_ip=$(json nics.0.ip <<<"$n_json")
n_port=$(json nics.0.port <<<"$n_json")
# What a cloud image's udhcpc script does: address, then option 121's routes
# (169.254.169.254 on-link to the endpoint), else the router.
cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip link set "$interface" up; ip -4 addr flush dev "$interface" ;;
bound|renew)
  echo "lease=$ip/$mask router=${router:-none} staticroutes=${staticroutes:-none}"
  ip -4 addr replace "$ip/$mask" dev "$interface"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface" scope link
      else ip route replace "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  elif [ -n "$router" ]; then ip route replace default via "${router%% *}" dev "$interface"; fi ;;
esac
exit 0
EOF
chmod 755 "$work/udhcpc.sh"

step "n1 asks for a lease (udhcpc) and then its instance-id from 169.254.169.254 (curl)"
n_lease_out=$(ctl instance exec n1 -- udhcpc -i eth0 -n -q -t 5 -T 1 -O staticroutes -s "$work/udhcpc.sh" 2>&1 || true)
echo "$n_lease_out" | grep -E '^lease=' || echo "$n_lease_out"
n_lease=$(echo "$n_lease_out" | sed -n 's/^lease=\([0-9.]*\)\/.*/\1/p' | tail -n 1)
n_seen_id=$(ctl instance exec n1 -- curl -s -m 5 http://169.254.169.254/latest/meta-data/instance-id || true)
echo "instance-id from metadata: ${n_seen_id:-<none>}"

step "vm1's own serial console ($vm_log)"
for _ in $(seq 1 1200); do
  grep -qE '^BERTH-GUEST (instance-id|instance-id-error|lease=none)' "$vm_log" 2>/dev/null && break
  sleep 0.1
done
grep -a '^BERTH-GUEST' "$vm_log" || echo "(no output from the guest yet; see $vm_log)"
vm_lease=$(sed -n 's/^BERTH-GUEST lease=\([0-9.]*\).*/\1/p' "$vm_log" | tr -d '\r' | tail -n 1)
vm_seen_id=$(sed -n 's/^BERTH-GUEST instance-id=\([^ ]*\).*/\1/p' "$vm_log" | tr -d '\r' | tail -n 1)

step "spoofing: a namespace plugged into the bridge by hand, with n1's MAC and IP"
bridge=$(ctl network show default --json | json bridge)
ip netns add "$rogue"
ip link add labrogue0 type veth peer name eth0 netns "$rogue"
ip link set labrogue0 master "$bridge" up
ip -n "$rogue" link set eth0 address "$n_mac" up
ip -n "$rogue" addr add "$n_ip/24" dev eth0
ip -n "$rogue" route add 169.254.169.254 dev eth0
rogue_out=$(ip netns exec "$rogue" curl -s -m 5 http://169.254.169.254/latest/meta-data/instance-id || true)
echo "the rogue got: ${rogue_out:-nothing}"

step "the guard keeps a foreign port from the endpoint, and audits it with what the host observed"
# The drop log reaches the audit a moment after the frame (NFLOG, then berthd).
rogue_seq=""
for _ in $(seq 1 50); do
  rogue_seq=$(ctl audit --event guard.drop --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s).find(x=>x.port==="labrogue0"&&x.detail?.class==="foreign");console.log(r?r.seq:"")})')
  [ -n "$rogue_seq" ] && break
  sleep 0.1
done
ctl audit --event guard.drop

ok() { [ -n "$1" ] && [ "$1" = "$2" ] && echo yes || echo "NO"; }
step "summary ($(elapsed))"
printf '%-6s %-8s %-18s %-12s %-15s %-14s %-12s %s\n' WHO RUNTIME MAC IP PORT "LEASE (guest)" "ID (guest)" "OWN ID?"
printf '%-6s %-8s %-18s %-12s %-15s %-14s %-12s %s\n' vm1 libvirt "$vm_mac" "$vm_ip" "$vm_port" "${vm_lease:--}" "${vm_seen_id:--}" "$(ok "$vm_seen_id" "$vm_id")"
printf '%-6s %-8s %-18s %-12s %-15s %-14s %-12s %s\n' n1 netns "$n_mac" "$n_ip" "$n_port" "${n_lease:--}" "${n_seen_id:--}" "$(ok "$n_seen_id" "$n_id")"
printf '%-6s %-8s %-18s %-12s %-15s %-14s %-12s %s\n' rogue - "$n_mac" "$n_ip" labrogue0 - "${rogue_out:-refused}" "refused, audited"
echo "image test sha256 $sha"

status=0
[ "$vm_lease" = "$vm_ip" ] && [ "$vm_seen_id" = "$vm_id" ] || { echo "vm1 did not get its lease and identity" >&2; status=1; }
[ "$n_lease" = "$n_ip" ] && [ "$n_seen_id" = "$n_id" ] || { echo "n1 did not get its lease and identity" >&2; status=1; }
[ -z "$rogue_out" ] || [ "$rogue_out" != "$n_id" ] || { echo "the rogue was served n1's identity" >&2; status=1; }
[ -n "$rogue_seq" ] || { echo "no guard.drop record for the rogue's port labrogue0" >&2; status=1; }

if [ "$keep" -eq 1 ]; then
  step "berthd keeps running (pid $pid). Explore:"
  echo "   export BERTH_SOCKET=$sock"
  echo "   node dist/agent/cli/main.js instance list"
  echo "   node dist/agent/cli/main.js instance start vm1 && tail -f $vm_log"
  echo "   node dist/agent/cli/main.js image list"
  echo "   node dist/agent/cli/main.js lease list"
  echo "   node dist/agent/cli/main.js audit --json"
  echo "   node dist/agent/cli/main.js instance exec n1 -- curl -s http://169.254.169.254/latest/meta-data/"
  echo "   virsh -c qemu:///system list --all; nft list table bridge bth_guard"
  echo "   berthd log: $work/berthd.log"
fi
exit "$status"
