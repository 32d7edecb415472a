// What the fault tests (test/faults/) check after every fault: berth's
// records and the host agree. Each instance is whole (record, port, guard
// rules, netns or domain) or absent; MACs and IPs are distinct; nothing owned
// lingers without a record, and no record lacks its host objects.
import type { Test } from 'tap';
import type { Instance } from '../../agent/api/types.js';
import type { BerthClient } from '../../agent/client/client.js';
import { LevelStore } from '../../agent/store/level-store.js';
import { sh } from './hostnet_lab.js';

export interface HostView {
  /** Guest ports (tap or root-side veth) carrying prefix. */
  ports: string[];
  /** Guest namespaces (`<prefix>-g-<name>`). */
  guestNetns: string[];
  /** Ports the guard table still has anything for (chain, map or set element, counter). */
  guardPorts: string[];
}

export async function hostView(prefix: string): Promise<HostView> {
  const links = JSON.parse(await sh('ip', ['-j', 'link', 'show'])) as { ifname: string }[];
  const netns = (await sh('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '');
  const table = await sh('nft', ['-j', 'list', 'table', 'bridge', `${prefix}_guard`]).catch(() => '');
  const portName = new RegExp(`${prefix}p[0-9a-f]{8}[0-9a-z]`, 'g');
  return {
    ports: links.map((l) => l.ifname).filter((n) => n.startsWith(`${prefix}p`)),
    guestNetns: netns.filter((n) => n.startsWith(`${prefix}-g-`)),
    guardPorts: [...new Set(table.match(portName) ?? [])],
  };
}

const sorted = (xs: Iterable<string>) => [...xs].sort();

/**
 * The invariants after a fault, through the API and on the host: every
 * instance settled and whole, distinct MACs and IPs, no orphan, and the MAC
 * pool and each network's IPs counting exactly the NICs that exist.
 */
export async function checkInvariants(
  t: Test,
  client: BerthClient,
  prefix: string,
  opts: { domains?: () => Promise<string[]> } = {},
): Promise<Instance[]> {
  const instances = (await client.instances()).instances;
  const nics = instances.flatMap((i) => i.nics);
  t.same(
    instances.filter((i) => i.state === 'creating' || i.state === 'deleting').map((i) => i.name),
    [],
    'no instance is left creating or deleting',
  );
  t.equal(new Set(nics.map((n) => n.mac)).size, nics.length, `${nics.length} MACs, all distinct`);
  t.equal(
    new Set(nics.map((n) => `${n.network}/${n.ip}`)).size,
    nics.length,
    'IPs distinct within each network',
  );
  const host = await hostView(prefix);
  t.same(sorted(host.ports), sorted(nics.map((n) => n.port)), 'one port per NIC, and no other');
  t.same(
    sorted(host.guestNetns),
    sorted(instances.filter((i) => i.runtime === 'netns').map((i) => i.netns as string)),
    'one namespace per netns instance, and no other',
  );
  t.same(sorted(host.guardPorts), sorted(nics.map((n) => n.port)), 'guard rules for exactly those ports');
  if (opts.domains) {
    t.same(
      sorted(await opts.domains()),
      sorted(instances.filter((i) => i.runtime === 'libvirt').map((i) => i.domain as string)),
      'one domain per libvirt instance, and no other',
    );
  }
  const assigned = (await client.pool()).pools.reduce((sum, p) => sum + p.assigned, 0);
  t.equal(assigned, nics.length, 'the MAC pool counts exactly the NICs as assigned');
  for (const net of (await client.networks()).networks) {
    const on = nics.filter((n) => n.network === net.name).length;
    t.equal(net.ips.assigned, on, `network ${net.name} counts exactly its NICs' IPs as assigned`);
  }
  return instances;
}

interface StoredInstance {
  id: string;
  name: string;
  state: string;
  nics: { network: string; mac: string; ip: string }[];
}

export interface StoreView {
  instances: StoredInstance[];
  names: Record<string, string>;
  /** Assigned MACs → owning instance id (mac/<prefix>:<suffix>). */
  macs: Record<string, string>;
  /** Assigned IPs → owning instance id (ip/<network>/<ip>). */
  ips: Record<string, string>;
  leases: string[];
}

/** Reads berthd's store while berthd is down (LevelDB allows one process at a time). */
export async function storeView(stateDir: string): Promise<StoreView> {
  const store = await LevelStore.open(stateDir);
  try {
    const owners = async (prefix: string) => {
      const out: Record<string, string> = {};
      for (const { key, value } of await store.list<{ state: string; instance: string }>(prefix))
        if (value.state === 'assigned') out[key.slice(prefix.length)] = value.instance;
      return out;
    };
    return {
      instances: (await store.list<StoredInstance>('instance/')).map((e) => e.value),
      names: Object.fromEntries(
        (await store.list<string>('instance-name/')).map((e) => [e.key.slice(14), e.value]),
      ),
      macs: await owners('mac/'),
      ips: await owners('ip/'),
      leases: (await store.list('lease/')).map((e) => e.key),
    };
  } finally {
    await store.close();
  }
}

/** Store records agree with each other: names, MACs and IPs point at instances and back. */
export function checkStore(t: Test, view: StoreView): void {
  const ids = new Set(view.instances.map((i) => i.id));
  t.same(
    view.names,
    Object.fromEntries(view.instances.map((i) => [i.name, i.id])),
    'the name index holds exactly the instances',
  );
  t.same(
    sorted(Object.values(view.macs)),
    sorted(view.instances.flatMap((i) => i.nics.map(() => i.id))),
    'every assigned MAC belongs to an instance NIC, and every NIC has one',
  );
  t.same(
    sorted(Object.entries(view.ips).map(([k, id]) => `${k}=${id}`)),
    sorted(view.instances.flatMap((i) => i.nics.map((n) => `${n.network}/${n.ip}=${i.id}`))),
    'every assigned IP belongs to its instance NIC',
  );
  t.ok(
    [...Object.values(view.macs), ...Object.values(view.ips)].every((id) => ids.has(id)),
    'no reservation without its instance',
  );
}

/** Polls cond (every few ms) and runs kill the moment it holds. */
export async function killWhen(
  what: string,
  cond: () => Promise<boolean>,
  kill: () => Promise<void>,
  ms = 30_000,
): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  await kill();
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };

export function settle<T>(p: Promise<T>): Promise<Outcome<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: Error) => ({ ok: false as const, error }),
  );
}
