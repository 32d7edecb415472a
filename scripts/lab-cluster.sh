#!/usr/bin/env bash
# npm run lab -- --cluster: a three-host berth cluster on this one machine.
# Three etcd members on loopback; three berthd hosts (hv1..hv3), each with its
# own name prefix, state dir, socket and bridge; each host's uplink is a veth
# into one "fabric" bridge, mapped to the physical network label "fabric".
# One flat network "shared" on that fabric, a netns guest on every host, and
# what the cluster promises, shown from each guest's own output: unique
# addresses, cross-host reachability, every guest served by its own host, a
# policy set on hv1 enforced on hv2, and a document signed on hv1 verified on
# hv3. Ctrl-C or the end cleans up; `--keep` leaves it running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --cluster) ;;
    *) echo "usage: npm run lab -- --cluster [--keep]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "the cluster lab needs root (bridges, namespaces, nftables)" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-lab-cluster.XXXXXX)
hosts=(hv1 hv2 hv3)
prefixes=(lc1 lc2 lc3)
fabric=labfab0
subnet=10.78.0.0/24
ctl() { local h=$1; shift; node "$root/dist/agent/cli/main.js" --socket "$work/$h/berthd.sock" "$@"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v?.[k];console.log(v??"")})' "$1"; }
started=$(date +%s%N)
elapsed() {
  local d=$((($(date +%s%N) - started) / 100000000))
  echo "$((d / 10)).$((d % 10)) s"
}
step() { printf '\n== %s\n' "$*"; }
declare -A pid etcd_pid

# Everything of the lab's own names: its prefixes' namespaces (and the
# processes in them), links and guard tables, its fabric, and any berthd or
# etcd an earlier run (a --keep, an interrupted one) left running.
sweep() {
  local p ns q l
  pkill -f "/tmp/berth-lab-cluster\.[A-Za-z0-9]*/hv[0-9]/berthd.yaml" 2>/dev/null || true
  pkill -9 -f "initial-cluster-token berth-lab-" 2>/dev/null || true
  for p in "${prefixes[@]}"; do
    for ns in $(ip netns list | awk '{print $1}' | grep "^$p-" || true); do
      for q in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$q" 2>/dev/null || true; done
      ip netns delete "$ns" 2>/dev/null || true
    done
    for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$p" || true); do ip link delete "$l" 2>/dev/null || true; done
    nft delete table bridge "${p}_guard" 2>/dev/null || true
    rm -rf "/etc/netns/$p-"* 2>/dev/null || true
  done
  for i in 1 2 3; do ip link delete "labup$i" 2>/dev/null || true; done
  ip link delete "$fabric" 2>/dev/null || true
  return 0
}

cleanup() {
  set +e
  trap - EXIT INT TERM
  printf '\n== cleaning up (use --keep to leave it running)\n'
  for i in 0 1 2; do ctl "${hosts[$i]}" instance delete "g$((i + 1))" >/dev/null 2>&1; done
  ctl hv1 policy delete lab-no-hostname >/dev/null 2>&1
  for h in "${hosts[@]}"; do
    if [ -n "${pid[$h]:-}" ] && kill -0 "${pid[$h]}" 2>/dev/null; then kill -TERM "${pid[$h]}"; wait "${pid[$h]}" 2>/dev/null; fi
  done
  for m in "${!etcd_pid[@]}"; do kill -9 "${etcd_pid[$m]}" 2>/dev/null; wait "${etcd_pid[$m]}" 2>/dev/null; done
  sweep
  rm -rf "$work"
}
if [ "$keep" -eq 1 ]; then trap 'echo "lab failed; state kept in $work" >&2' ERR; else trap cleanup EXIT INT TERM; fi

sweep
step "three etcd members on loopback (Debian's etcd-server $(etcd --version | sed -n 's/^etcd Version: //p'))"
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((23800 + i))"; done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$work/etcd/m$i" \
    --listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
    --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "berth-lab-$$" \
    --heartbeat-interval 100 --election-timeout 1000 --log-level warn --logger zap >"$work/etcd-m$i.log" 2>&1 &
  etcd_pid[m$i]=$!
done
endpoints="http://127.0.0.1:23790, http://127.0.0.1:23791, http://127.0.0.1:23792"
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:23790/health | grep -q '"health":"true"' && break
  sleep 0.1
done
etcdctl --endpoints=127.0.0.1:23790 endpoint status --cluster -w table

step "the fabric: bridge $fabric, and a veth uplink into it for each host"
ip link add "$fabric" type bridge
ip link set "$fabric" up
for i in 1 2 3; do
  ip link add "labup$i" type veth peer name "labfab$i"
  ip link set "labfab$i" master "$fabric" up
  ip link set "labup$i" up
done
bridge link show master "$fabric"

for i in 0 1 2; do
  h=${hosts[$i]}
  mkdir -p "$work/$h"
  cat >"$work/$h/berthd.yaml" <<EOF
host_id: $h
name_prefix: ${prefixes[$i]}
metrics: {listen: ""}
cluster:
  etcd: [$endpoints]
  address: 127.0.0.$((i + 1))
physical_networks:
  fabric: labup$((i + 1))
networks:
  - {name: shared, subnet: $subnet, uplink: fabric}
EOF
done

step "three berthd hosts in cluster mode"
for h in "${hosts[@]}"; do
  node "$root/dist/agent/daemon/main.js" --config "$work/$h/berthd.yaml" --state-dir "$work/$h/state" \
    --socket "$work/$h/berthd.sock" >"$work/$h/berthd.log" 2>&1 &
  pid[$h]=$!
  for _ in $(seq 1 150); do
    ctl "$h" status >/dev/null 2>&1 && break
    kill -0 "${pid[$h]}" 2>/dev/null || { cat "$work/$h/berthd.log" >&2; exit 1; }
    sleep 0.1
  done
done
ctl hv1 host list
ctl hv2 cluster status

step "one netns guest on every host, created at the same time"
creates=()
for i in 0 1 2; do
  ctl "${hosts[$i]}" instance create "g$((i + 1))" --network shared --runtime netns --json >"$work/g$((i + 1)).json" &
  creates+=($!)
done
for c in "${creates[@]}"; do wait "$c"; done
ctl hv1 instance list --all-hosts

# What a cloud image's udhcpc script does: address, then option 121's routes
# (169.254.169.254 on-link to this host's endpoint), else the router.
cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip link set "$interface" up; ip -4 addr flush dev "$interface" ;;
bound|renew)
  echo "lease=$ip/$mask server=${serverid:-none}"
  ip -4 addr replace "$ip/$mask" dev "$interface"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface" scope link
      else ip route replace "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  fi ;;
esac
exit 0
EOF
chmod 755 "$work/udhcpc.sh"

step "every guest asks its own host for a lease (udhcpc) and its instance-id (curl)"
declare -A ip id lease seen
for i in 0 1 2; do
  g="g$((i + 1))"; h=${hosts[$i]}
  ip[$g]=$(json nics.0.ip <"$work/$g.json")
  id[$g]=$(json id <"$work/$g.json")
  out=$(ctl "$h" instance exec "$g" -- udhcpc -i eth0 -n -q -t 5 -T 1 -O staticroutes -s "$work/udhcpc.sh" 2>&1 || true)
  lease[$g]=$(echo "$out" | sed -n 's/^lease=\([0-9.]*\)\/.*/\1/p' | tail -n 1)
  seen[$g]=$(ctl "$h" instance exec "$g" -- curl -s -m 5 http://169.254.169.254/latest/meta-data/instance-id || true)
  echo "$g on $h: lease ${lease[$g]:-none} (assigned ${ip[$g]}), instance-id ${seen[$g]:-none} (own ${id[$g]})"
done

step "guests on different hosts reach each other over the fabric"
declare -A reach
for pair in "g1 g2" "g1 g3" "g2 g3"; do
  set -- $pair
  if ctl "$(echo "$1" | sed 's/g/hv/')" instance exec "$1" -- ping -n -q -c 1 -W 2 "${ip[$2]}" >/dev/null 2>&1; then reach["$1-$2"]=yes; else reach["$1-$2"]=NO; fi
  echo "$1 -> $2 (${ip[$2]}): ${reach[$1-$2]}"
done

step "a policy set on hv1 is enforced on hv2: g2 may no longer read its hostname"
before=$(ctl hv2 instance exec g2 -- curl -s -o /dev/null -w '%{http_code}' -m 5 http://169.254.169.254/latest/meta-data/hostname || true)
ctl hv1 policy set lab-no-hostname --identity instance:g2 --deny read:meta-data/hostname >/dev/null
after=""
for _ in $(seq 1 50); do
  after=$(ctl hv2 instance exec g2 -- curl -s -o /dev/null -w '%{http_code}' -m 5 http://169.254.169.254/latest/meta-data/hostname || true)
  [ "$after" != "200" ] && break
  sleep 0.1
done
echo "g2 reads meta-data/hostname: $before before, $after after the policy on hv1"

step "a document signed on hv1 (g1's identity), verified on hv3"
ctl hv1 instance exec g1 -- curl -s -m 5 http://169.254.169.254/latest/dynamic/instance-identity/document >"$work/doc.json"
ctl hv1 instance exec g1 -- curl -s -m 5 http://169.254.169.254/latest/dynamic/instance-identity/signature >"$work/doc.sig"
verified=$(ctl hv3 identity verify "$work/doc.json" --signature-file "$work/doc.sig" --json | json valid || true)
ctl hv3 identity verify "$work/doc.json" --signature-file "$work/doc.sig" || true
sed -i 's/"privateIp"/"privateIp" /' "$work/doc.json"
tampered=$(ctl hv3 identity verify "$work/doc.json" --signature-file "$work/doc.sig" --json | json valid || true)
echo "a tampered copy: valid=${tampered:-false}"

step "summary ($(elapsed))"
status=0
printf '%-4s %-4s %-14s %-14s %-12s %s\n' WHO HOST IP LEASE INSTANCE-ID "OWN?"
for i in 0 1 2; do
  g="g$((i + 1))"
  own=$([ "${seen[$g]}" = "${id[$g]}" ] && [ "${lease[$g]}" = "${ip[$g]}" ] && echo yes || echo NO)
  printf '%-4s %-4s %-14s %-14s %-12s %s\n' "$g" "${hosts[$i]}" "${ip[$g]}" "${lease[$g]:--}" "${seen[$g]:--}" "$own"
  [ "$own" = yes ] || status=1
done
[ "$(printf '%s\n' "${ip[@]}" | sort -u | wc -l)" -eq 3 ] || { echo "IPs are not unique" >&2; status=1; }
for k in "${!reach[@]}"; do [ "${reach[$k]}" = yes ] || { echo "$k could not reach" >&2; status=1; }; done
[ "$before" = 200 ] && [ "$after" != 200 ] || { echo "the policy set on hv1 was not enforced on hv2" >&2; status=1; }
[ "$verified" = true ] || { echo "hv3 did not verify hv1's document" >&2; status=1; }
[ "$tampered" != true ] || { echo "hv3 accepted a tampered document" >&2; status=1; }
echo "unique IPs: $(printf '%s ' "${ip[@]}"); cross-host reachability: $(printf '%s ' "${reach[@]}"); policy on hv1 -> hv2: $before -> $after; hv1's document verified on hv3: ${verified:-false}, tampered: ${tampered:-false}"

if [ "$keep" -eq 1 ]; then
  step "the cluster keeps running. Explore:"
  echo "   node dist/agent/cli/main.js --socket $work/hv1/berthd.sock host list"
  echo "   node dist/agent/cli/main.js --socket $work/hv2/berthd.sock cluster status"
  echo "   node dist/agent/cli/main.js --socket $work/hv3/berthd.sock instance list --all-hosts"
  echo "   etcdctl --endpoints=127.0.0.1:23790 get --prefix /berth/ --keys-only"
fi
exit "$status"
