// The lab hosts' cluster store: one etcd member in each VM (Debian's
// etcd-server binary, in the image), reached over a management VLAN so that
// etcd shares the trunk with berth's VLANs without touching their data path.
//
// The management path is eth0.10, an 802.1Q subinterface on the trunk NIC
// itself. The kernel hands a frame tagged 10 to eth0.10 before any rx_handler
// (the bridge that enslaves eth0 in filtering mode) sees it, and eth0.10
// transmits straight out of eth0, so the path works the same in both vlan
// modes and berth's bridges, guard and subinterfaces never see etcd's frames.
import type { LabHost } from './lab-host.js';
import { sleep } from './lab-host.js';

/** The management VLAN; not one of berth's VLANs (100 and 200). */
export const MGMT_VID = 10;
export const MGMT_IF = `eth0.${MGMT_VID}`;
/** berth's keys in etcd; the config's default. */
export const ETCD_PREFIX = '/berth/';

export interface EtcdPeer {
  host: LabHost;
  /** The member's name, and the host's host_id. */
  name: string;
  /** Its address on the management VLAN. */
  address: string;
}

export const clientUrl = (p: EtcdPeer) => `http://${p.address}:2379`;
const peerUrl = (p: EtcdPeer) => `http://${p.address}:2380`;

/** eth0.10 with the peer's static address; no IPv6, so the link stays quiet but for etcd. */
export async function addManagementVlan(p: EtcdPeer): Promise<void> {
  await p.host.must(
    [
      'set -e',
      `ip link add link eth0 name ${MGMT_IF} type vlan id ${MGMT_VID}`,
      `echo 1 >/proc/sys/net/ipv6/conf/${MGMT_IF}/disable_ipv6`,
      `ip addr add ${p.address}/24 dev ${MGMT_IF}`,
      `ip link set ${MGMT_IF} up`,
    ].join('\n'),
  );
}

/**
 * Starts the peer's member of a new cluster of all peers, in the background,
 * its data on the VM's tmpfs. Raft timing is set for a slow TCG VM: with the
 * defaults (100/1000 ms) a busy 1-vCPU guest calls elections it does not need.
 */
export async function startEtcdMember(p: EtcdPeer, all: EtcdPeer[], token: string): Promise<void> {
  const initial = all.map((x) => `${x.name}=${peerUrl(x)}`).join(',');
  const args = [
    `--name=${p.name}`,
    '--data-dir=/tmp/etcd',
    `--listen-client-urls=${clientUrl(p)},http://127.0.0.1:2379`,
    `--advertise-client-urls=${clientUrl(p)}`,
    `--listen-peer-urls=${peerUrl(p)}`,
    `--initial-advertise-peer-urls=${peerUrl(p)}`,
    `--initial-cluster=${initial}`,
    '--initial-cluster-state=new',
    `--initial-cluster-token=${token}`,
    '--heartbeat-interval=500',
    '--election-timeout=5000',
    '--logger=zap',
    '--log-outputs=stderr',
  ];
  await p.host.must(
    [
      'set -e',
      'rm -rf /tmp/etcd && mkdir -m 700 /tmp/etcd',
      // One core in the VM: more Go threads only add scheduling under TCG.
      `GOMAXPROCS=1 setsid etcd ${args.join(' ')} >/tmp/etcd.log 2>&1 </dev/null &`,
      'echo $! >/run/etcd.pid',
    ].join('\n'),
  );
}

/** Waits until the member answers /health with a leader elected; fails at once if etcd exits. */
export async function waitEtcdHealthy(p: EtcdPeer, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await p.host.sh(
      'kill -0 "$(cat /run/etcd.pid)" 2>/dev/null || { echo dead; exit; }; timeout 10 wget -q -O- http://127.0.0.1:2379/health',
      30_000,
    );
    if (/"health":\s*"true"/.test(r.out)) return;
    if (r.out.includes('dead') || Date.now() > until)
      throw new Error(
        `etcd on ${p.host.name} ${r.out.includes('dead') ? 'exited' : `not healthy after ${timeoutMs} ms`}:\n${await etcdLogTail(p.host)}`,
      );
    await sleep(1000);
  }
}

export async function etcdLogTail(host: LabHost, lines = 20): Promise<string> {
  const r = await host
    .sh(`tail -n ${lines} /tmp/etcd.log | cut -c1-400`)
    .catch((e: Error) => ({ out: e.message }));
  return r.out;
}

/**
 * Every key under ETCD_PREFIX + prefix with its JSON value, through etcd's v3
 * JSON gateway: busybox wget, no etcdctl. (busybox 1.35's wget -T segfaults;
 * timeout bounds it instead.)
 */
export async function etcdList<T>(host: LabHost, prefix: string): Promise<{ key: string; value: T }[]> {
  const start = Buffer.from(ETCD_PREFIX + prefix);
  const end = Buffer.from(start);
  end[end.length - 1] = (end[end.length - 1] as number) + 1; // the prefix ends in '/', never 0xff
  const body = JSON.stringify({ key: start.toString('base64'), range_end: end.toString('base64') });
  const out = await host.must(
    `timeout 20 wget -q -O- --header 'Content-Type: application/json' --post-data '${body}' http://127.0.0.1:2379/v3/kv/range`,
  );
  const res = JSON.parse(out) as { kvs?: { key: string; value: string }[] };
  return (res.kvs ?? []).map((kv) => ({
    key: Buffer.from(kv.key, 'base64').toString('utf8').slice(ETCD_PREFIX.length),
    value: JSON.parse(Buffer.from(kv.value, 'base64').toString('utf8')) as T,
  }));
}

/** Polls until etcd holds every key wanted (relative to ETCD_PREFIX). */
export async function waitEtcdKeys(
  host: LabHost,
  prefix: string,
  wanted: string[],
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const have = new Set((await etcdList(host, prefix)).map((kv) => kv.key));
    if (wanted.every((k) => have.has(k))) return;
    if (Date.now() > until)
      throw new Error(
        `etcd on ${host.name} lacks ${wanted.filter((k) => !have.has(k)).join(', ')} after ${timeoutMs} ms`,
      );
    await sleep(2000);
  }
}
