#!/usr/bin/env bash
# npm run lab: berthd on its embedded default (LevelDB state in a throw-away
# dir, network "default"), a netns guest getting its identity from
# 169.254.169.254, and a spoofing attempt being refused and audited.
# (The libvirt guest, DHCP and the metadata trees join as their issues land.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) echo "usage: npm run lab [-- --keep]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "npm run lab needs root (bridges, namespaces, nftables)" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-lab.XXXXXX)
state="$work/state"
sock="$work/berthd.sock"
berthd=(node "$root/dist/agent/daemon/main.js" --state-dir "$state" --socket "$sock")
ctl() { node "$root/dist/agent/cli/main.js" --socket "$sock" "$@"; }
rogue=bth-x-rogue

cleanup() {
  set +e
  ctl instance delete g1 >/dev/null 2>&1
  ip netns delete "$rogue" 2>/dev/null
  ip link delete bthxrogue0 2>/dev/null
  ctl network delete default >/dev/null 2>&1
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid"; fi
  nft delete table bridge bth_guard 2>/dev/null
  rm -rf "$work"
}
[ "$keep" -eq 1 ] || trap cleanup EXIT INT TERM

step() { printf '\n== %s\n' "$*"; }

step "starting berthd (embedded default config; state in $state)"
"${berthd[@]}" >"$work/berthd.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  ctl status >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/berthd.log" >&2; exit 1; }
  sleep 0.1
done
ctl status

step "the default network: bridge, endpoint namespace, guard"
ctl network show default

step "a netns guest: MAC from the pool, fixed IP from IPAM, guarded port"
ctl instance create g1 --network default
ctl instance show g1
ip=$(ctl instance show g1 --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).nics[0].ip))')
# DHCP lands with its issue; until then the guest takes its fixed IP by hand.
ctl instance exec g1 -- ip addr add "$ip/24" dev eth0
ctl instance exec g1 -- ip route add 169.254.169.254 dev eth0

step "the guest asks 169.254.169.254 who it is: berthd answers from the observed source IP -> MAC -> bridge port"
ctl instance exec g1 -- curl -s -m 5 http://169.254.169.254/berth/identity

step "spoofing: a namespace plugged into the bridge by hand, claiming the guest's IP and MAC"
bridge=$(ctl network show default --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).bridge))')
mac=$(ctl instance show g1 --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).nics[0].mac))')
ip netns add "$rogue"
ip link add bthxrogue0 type veth peer name eth0 netns "$rogue"
ip link set bthxrogue0 master "$bridge" up
ip -n "$rogue" link set eth0 address "$mac" up
ip -n "$rogue" addr add "$ip/24" dev eth0
ip -n "$rogue" route add 169.254.169.254 dev eth0
ip netns exec "$rogue" curl -s -m 5 http://169.254.169.254/berth/identity || true

step "the refusal is audited with what the host observed"
ctl audit --event metadata.request

step "summary"
printf '%-10s %-20s %-12s %s\n' WHO MAC PORT RESULT
printf '%-10s %-20s %-12s %s\n' g1 "$mac" "$(ctl instance show g1 --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).nics[0].port))')" "identity served"
printf '%-10s %-20s %-12s %s\n' rogue "$mac (cloned)" bthxrogue0 "refused, audited"

if [ "$keep" -eq 1 ]; then
  step "berthd keeps running (pid $pid). Explore:"
  echo "   node dist/agent/cli/main.js --socket $sock instance list"
  echo "   node dist/agent/cli/main.js --socket $sock network show default --json"
  echo "   node dist/agent/cli/main.js --socket $sock audit --json"
else
  step "cleaning up (use npm run lab -- --keep to leave it running)"
fi
