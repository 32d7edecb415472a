// berthd and berthctl inside a lab host, driven over its command channel.
import type { LabHost } from './lab-host.js';

export type VlanMode = 'filtering' | 'subinterface';

export interface LabNic {
  ip: string;
  mac: string;
  port: string;
}

export interface LabGuest {
  name: string;
  netns: string;
  nic: LabNic;
}

/** The one MAC pool every lab host hands out from. */
export const LAB_MAC_POOL = '0a:1a:0a';

// Every Node process in the VM (berthd, its endpoints, berthctl) runs without
// the JIT: under TCG, compiling costs more than it saves during start-up.
const BERTHD = 'NODE_OPTIONS=--jitless setsid node /opt/berth/dist/agent/daemon/main.js';
const BERTHCTL = 'NODE_OPTIONS=--jitless node /opt/berth/dist/agent/cli/main.js --socket /run/berth.sock';

/**
 * The lab's berthd.yaml: cluster mode on both hosts' etcd members, one MAC
 * pool for every host (etcd keeps MACs and IPs unique cluster-wide), the
 * trunk NIC as physical network "trunk", and VLAN networks 100 and 200 on it.
 */
export function labConfig(o: { mode: VlanMode; hostId: string; address: string; etcd: string[] }): string {
  return [
    `host_id: ${o.hostId}`,
    'name_prefix: lh',
    `vlan_mode: ${o.mode}`,
    'log_level: info',
    'cluster:',
    `  etcd: [${o.etcd.map((u) => `"${u}"`).join(', ')}]`,
    `  address: "${o.address}"`,
    'physical_networks: {trunk: eth0}',
    `mac_pools: [{prefix: "${LAB_MAC_POOL}"}]`,
    'networks:',
    '  - {name: v100, subnet: 10.100.0.0/24, vlan: 100, uplink: trunk}',
    '  - {name: v200, subnet: 10.200.0.0/24, vlan: 200, uplink: trunk}',
    '',
  ].join('\n');
}

/** Writes the config and starts berthd in the background with a fresh state dir. */
export async function startBerthd(host: LabHost, config: string): Promise<void> {
  await host.must(
    [
      'set -e',
      'mkdir -p /etc/berth',
      `cat >/etc/berth/berthd.yaml <<'EOF'\n${config}EOF`,
      'rm -rf /var/lib/berth && mkdir -p /var/lib/berth',
      `${BERTHD} --config /etc/berth/berthd.yaml --state-dir /var/lib/berth --socket /run/berth.sock >/tmp/berthd.log 2>&1 </dev/null &`,
      'echo $! >/run/berthd.pid',
    ].join('\n'),
  );
}

/** Polls berthd's log for "berthd ready"; fails at once if berthd exits. */
export async function waitBerthdReady(host: LabHost, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await host.sh(
      'grep -q "berthd ready" /tmp/berthd.log && echo ready || { kill -0 "$(cat /run/berthd.pid)" 2>/dev/null && echo starting || echo dead; }',
    );
    const state = r.out.trim();
    if (state === 'ready') return;
    if (state === 'dead' || Date.now() > until)
      throw new Error(
        `berthd on ${host.name} ${state === 'dead' ? 'exited' : `not ready after ${timeoutMs} ms`}:\n${await berthdLogTail(host)}`,
      );
    await new Promise((r) => setTimeout(r, 2000));
  }
}

export async function berthdLogTail(host: LabHost, lines = 30): Promise<string> {
  const r = await host.sh(`tail -n ${lines} /tmp/berthd.log | cut -c1-600`).catch((e: Error) => ({
    out: e.message,
  }));
  return r.out;
}

/** `berthctl instance create NAME --network NET --runtime netns --json`, one after another. */
export async function createGuests(
  host: LabHost,
  wanted: { name: string; network: string }[],
): Promise<LabGuest[]> {
  const guests: LabGuest[] = [];
  for (const w of wanted) {
    const r = await host.sh(
      `${BERTHCTL} instance create ${w.name} --network ${w.network} --runtime netns --json 2>/tmp/ctl.err; rc=$?; cat /tmp/ctl.err >&2; exit $rc`,
      180_000,
    );
    const json = r.out.slice(r.out.indexOf('{'));
    let inst: { netns?: string; nics?: { ip: string; mac: string; port: string }[] };
    try {
      inst = JSON.parse(json.slice(0, json.lastIndexOf('}') + 1));
    } catch {
      throw new Error(`berthctl instance create ${w.name} on ${host.name} (exit ${r.code}):\n${r.out}`);
    }
    const nic = inst.nics?.[0];
    if (r.code !== 0 || !inst.netns || !nic)
      throw new Error(`berthctl instance create ${w.name} on ${host.name} (exit ${r.code}):\n${r.out}`);
    guests.push({ name: w.name, netns: inst.netns, nic: { ip: nic.ip, mac: nic.mac, port: nic.port } });
  }
  return guests;
}

/** Tools the tests use inside a lab host: a udhcpc script that configures the lease with iproute2. */
export async function prepareHost(host: LabHost): Promise<void> {
  await host.must(
    [
      "cat >/etc/lh-udhcpc.sh <<'EOF'",
      '#!/bin/sh',
      'case "$1" in',
      '  bound | renew)',
      '    /usr/sbin/ip addr flush dev "$interface"',
      '    /usr/sbin/ip addr add "$ip/$mask" dev "$interface"',
      '    echo "LEASE $ip/$mask"',
      '    ;;',
      'esac',
      'EOF',
      'chmod 755 /etc/lh-udhcpc.sh',
    ].join('\n'),
  );
}

/** busybox udhcpc in the guest's namespace, against berth's DHCP server on that VLAN; returns the leased address. */
export async function dhcp(host: LabHost, guest: LabGuest): Promise<string> {
  const r = await host.sh(
    `ip netns exec ${guest.netns} udhcpc -i eth0 -f -q -n -t 8 -T 3 -s /etc/lh-udhcpc.sh`,
    90_000,
  );
  const lease = r.out.match(/LEASE (\S+)/)?.[1];
  if (r.code !== 0 || !lease)
    throw new Error(
      `udhcpc in ${guest.netns} on ${host.name} got no lease (exit ${r.code}):\n${r.out}\n--- berthd ---\n${await berthdLogTail(host, 15)}`,
    );
  return lease;
}

/**
 * Resident memory of etcd and of every node process (berthd and its
 * endpoints), and any endpoint berthd gave up on: under TCG an endpoint can
 * miss its 15 s start-up deadline, and one run here showed four endpoint
 * processes for two networks.
 */
const MEMORY_SCRIPT = String.raw`for p in $(pidof etcd node); do
  echo "$p $(grep PPid /proc/$p/status | tr -s ' \t' ' ') $(tr '\0' ' ' </proc/$p/cmdline | cut -c1-60) $(grep VmRSS /proc/$p/status | tr -s ' \t' ' ')"
done; free -m | sed -n 2p
grep -E 'endpoint (unavailable|lost)|replacing endpoint' /tmp/berthd.log | cut -c1-300`;

export async function hostMemory(host: LabHost): Promise<string> {
  const r = await host.sh(MEMORY_SCRIPT).catch((e: Error) => ({ out: e.message }));
  return r.out.trim();
}
