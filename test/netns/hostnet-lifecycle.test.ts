// Acceptance (hostnet): what creating and deleting leaves behind. A VLAN network
// on a kernel without 802.1Q is refused and leaves nothing; twenty netns guests
// get distinct identities, and deleting them leaves no namespace, link, guard
// object or record, only quarantined MACs and IPs that nobody gets again.
import { execFile } from 'node:child_process';
import t from 'tap';
import type { Instance, Network, PoolUsage } from '../../agent/api/types.js';
import { Names } from '../../hostnet/names.js';
import { uniquePrefix } from '../helpers/berthd.js';
import { isRoot, sh, startLab } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

async function linksWith(prefix: string): Promise<string[]> {
  const all = JSON.parse(await sh('ip', ['-j', 'link', 'show'])) as { ifname: string }[];
  return all.map((l) => l.ifname).filter((n) => n.startsWith(prefix));
}

async function netnsWith(prefix: string): Promise<string[]> {
  return (await sh('ip', ['netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0] as string)
    .filter((n) => n.startsWith(`${prefix}-`));
}

/** Does this kernel make 802.1Q subinterfaces? Probed on a throwaway veth of our own. */
async function kernelHasVlan(): Promise<boolean> {
  const base = `${uniquePrefix()}xq`;
  await sh('ip', ['link', 'add', base, 'type', 'veth', 'peer', 'name', `${base}p`]);
  try {
    await sh('ip', ['link', 'add', 'link', base, 'name', `${base}.9`, 'type', 'vlan', 'id', '9']);
    return true;
  } catch {
    return false;
  } finally {
    await sh('ip', ['link', 'delete', base]);
  }
}

const hasVlan = await kernelHasVlan();

/** Runs fn over items, `width` at a time. */
async function inBatches<T, R>(items: T[], width: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width)
    out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}

t.test(
  'a VLAN network on this kernel is refused with BERTH_ERR_KERNEL_FEATURE and leaves nothing',
  { skip: hasVlan && 'this kernel has 802.1Q VLAN support; the refusal is for kernels without it' },
  async (t) => {
    const lab = await startLab(t);
    const uplink = `${lab.prefix}xu`;
    t.teardown(() => sh('ip', ['link', 'delete', uplink]).catch(() => undefined));
    await sh('ip', ['link', 'add', uplink, 'type', 'veth', 'peer', 'name', `${lab.prefix}xw`]);
    const linksBefore = await linksWith(lab.prefix);
    const netnsBefore = await netnsWith(lab.prefix);

    const r = await lab.ctl([
      'network',
      'create',
      'v',
      '--subnet',
      '10.72.0.0/24',
      '--vlan',
      '100',
      '--uplink',
      uplink,
      '--json',
    ]);
    t.equal(r.code, 1, 'berthctl exits 1: berthd refused');
    const body = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'BERTH_ERR_KERNEL_FEATURE');
    t.match(body.error.message, /^could not create (VLAN )?network "v": /, 'the message names the network');
    t.match(body.error.message, /802\.1Q|VLAN/i, `and the missing feature: ${body.error.message}`);
    const human = await lab.ctl([
      'network',
      'create',
      'v',
      '--subnet',
      '10.72.0.0/24',
      '--vlan',
      '100',
      '--uplink',
      uplink,
    ]);
    t.equal(human.code, 1);
    t.match(human.stderr, body.error.message, 'the same message without --json');

    t.same(await lab.json<Network[]>(['network', 'list']), [], 'no network record');
    t.same(await linksWith(lab.prefix), linksBefore, 'no bridge, subinterface or veth was left');
    t.same(await netnsWith(lab.prefix), netnsBefore, 'no endpoint namespace was left');
    const names = new Names(lab.prefix);
    const stray = await sh('ip', ['-j', 'link', 'show', 'dev', uplink]);
    t.notOk((JSON.parse(stray) as { master?: string }[])[0]?.master, 'the uplink was not enslaved anywhere');
    t.notOk(
      (await linksWith(lab.prefix)).includes(names.bridge('v')),
      `no bridge ${names.bridge('v')} for it`,
    );
    t.equal((await lab.d.client.status()).counts.networks, 0, 'status counts no network');
  },
);

t.test('20 netns guests: distinct identities; deleting them leaves only quarantine', async (t) => {
  const lab = await startLab(t);
  // A /27, so the pool runs dry below and a reused quarantined IP could not hide behind a cursor.
  const net = await lab.network('a', '10.73.0.0/27');
  const size = net.ips.size;
  t.ok(size > 21 && size < 32, `a small pool: ${size} IPs`);
  const names = Array.from({ length: 20 }, (_, i) => `g${i}`);
  // The bulk goes through the API client (a berthctl process costs ~0.3 s here); the checks use berthctl.
  const created = await inBatches(names, 5, (n) =>
    lab.d.client.createInstance({ name: n, network: 'a', runtime: 'netns' }),
  );
  const macs = new Set(created.map((i) => i.nics[0]?.mac));
  const ips = new Set(created.map((i) => i.nics[0]?.ip));
  const ports = created.map((i) => i.nics[0]?.port as string);
  t.equal(macs.size, 20, '20 distinct MACs');
  t.equal(ips.size, 20, '20 distinct IPs');
  t.ok(
    [...ips].every((ip) => /^10\.73\.0\.(\d+)$/.test(ip ?? '') && Number(ip?.split('.')[3]) < 32),
    'every IP from the subnet',
  );
  t.notOk(ips.has(net.service_ip), "nobody got the endpoint's service IP");
  const pool = await lab.json<PoolUsage>(['pool', 'show']);
  t.equal(pool.pools[0]?.assigned, 20, 'the pool counts 20 assigned MACs');

  const wrong: string[] = [];
  for (const i of created) {
    const l = JSON.parse(await sh('ip', ['-n', i.netns as string, '-j', 'link', 'show', 'dev', 'eth0']));
    if (l[0]?.address !== i.nics[0]?.mac) wrong.push(i.name);
  }
  t.same(wrong, [], "every guest's eth0 carries its assigned MAC");
  const guard = await guardState(lab.guardTable(), lab.prefix);
  t.equal(guard.portChains.length, 20, '20 port chains in the guard');
  t.same(guard.mapKeys.sort(), [...ports].sort(), 'the ports map names exactly the 20 ports');

  await inBatches(names, 5, (n) => lab.d.client.deleteInstance(n));
  t.same(await lab.json<Instance[]>(['instance', 'list']), [], 'no instance record');
  t.same(
    (await netnsWith(lab.prefix)).filter((n) => n.startsWith(`${lab.prefix}-g-`)),
    [],
    'no guest namespace',
  );
  t.same(
    (await linksWith(lab.prefix)).filter((l) => l.startsWith(`${lab.prefix}p`)),
    [],
    'no port link',
  );
  const after = await guardState(lab.guardTable(), lab.prefix);
  t.same(after.portChains, [], 'no port chain');
  t.same(after.mapKeys, [], 'no element in the ports map');
  t.same(after.pathKeys, [], 'no element in the dhcp_paths set');
  t.same(after.portCounters, [], 'no per-port counter');
  const drained = await lab.json<PoolUsage>(['pool', 'show']);
  t.match(drained.pools[0], { assigned: 0, quarantined: 20 }, 'pool: 0 assigned, 20 quarantined');
  t.match(
    (await lab.show('a')).ips,
    { assigned: 0, quarantined: 20 },
    'network: 0 IPs assigned, 20 quarantined',
  );

  const fresh = await lab.json<Instance>(['instance', 'create', 'fresh', '--network', 'a']);
  const nic = fresh.nics[0];
  t.notOk(macs.has(nic?.mac), `the new instance's MAC ${nic?.mac} was not in quarantine`);
  t.notOk(ips.has(nic?.ip), `nor its IP ${nic?.ip}`);
  // Take every IP still free; the next create must be refused rather than reuse a quarantined one.
  const rest = Array.from({ length: size - 21 }, (_, i) => `more${i}`);
  const more = await inBatches(rest, 5, (n) => lab.d.client.createInstance({ name: n, network: 'a' }));
  const reused = more.map((i) => i.nics[0]?.ip).filter((ip) => ips.has(ip));
  t.same(reused, [], `the other ${rest.length} free IPs went out, none from quarantine`);
  const over = await lab.ctl(['instance', 'create', 'over', '--network', 'a', '--json']);
  t.equal(over.code, 1, 'with only quarantined IPs left, create is refused');
  t.match(JSON.parse(over.stdout), {
    error: { code: 'BERTH_ERR_EXHAUSTED', message: /20 in quarantine/ },
  });
  t.notOk(
    (await lab.json<Instance[]>(['instance', 'list'])).some((i) => i.name === 'over'),
    'and leaves no record',
  );
});

interface GuardState {
  portChains: string[];
  mapKeys: string[];
  pathKeys: string[];
  portCounters: string[];
}

async function guardState(table: string, prefix: string): Promise<GuardState> {
  const out = await new Promise<string>((resolve, reject) =>
    execFile('nft', ['-j', 'list', 'table', 'bridge', table], (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    ),
  );
  const s: GuardState = { portChains: [], mapKeys: [], pathKeys: [], portCounters: [] };
  for (const o of (JSON.parse(out) as { nftables: Record<string, { name?: string; elem?: unknown[] }>[] })
    .nftables) {
    if (o.chain?.name?.startsWith('port_')) s.portChains.push(o.chain.name);
    if (o.counter?.name?.startsWith(`${prefix}p`)) s.portCounters.push(o.counter.name);
    if (o.map?.name === 'ports')
      s.mapKeys.push(...(o.map.elem ?? []).map((e) => String((e as unknown[])[0])));
    if (o.set?.name === 'dhcp_paths') s.pathKeys.push(...(o.set.elem ?? []).map((e) => JSON.stringify(e)));
  }
  return s;
}
