// Three real berthd hosts on a real three-member etcd: one identity space.
// Concurrent creates on every host never share a name, a MAC or an IP; every
// guest gets its lease and metadata from its own host; a policy set on one
// host is enforced on the others, and so are security groups, whose sources
// and members live on other hosts (and count only from where they are); with etcd gone the guests are still served
// and every change is refused whole, and when etcd is back the hosts go on.
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { InstanceCreate } from '../../agent/api/types.js';
import { BerthClient } from '../../agent/client/client.js';
import type { DirectoryEntry } from '../../agent/services/instances.js';
import { type ClusterHost, startClusterLab, until } from '../helpers/cluster_lab.js';
import { lastEvent, udhcpcScript } from '../helpers/dhcp_lab.js';
import { inNetns, rogue } from '../helpers/hostnet_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (berthd builds bridges and namespaces)');
  process.exit(0);
}

// The hosts' uplinks are veths into one fabric bridge, mapped to the label "fabric";
// the shared network is flat on it, so guests on different hosts share one segment.
const tag = Math.random().toString(16).slice(2, 6);
const fabric = `zfb${tag}`;
const uplink = (id: string) => `zfu${tag}${id.slice(2)}`;
const sh = (...argv: string[]) => execFileSync(argv[0] as string, argv.slice(1), { stdio: 'pipe' });
sh('ip', 'link', 'add', fabric, 'type', 'bridge');
sh('ip', 'link', 'set', fabric, 'up');
for (const id of ['hv1', 'hv2', 'hv3']) {
  sh('ip', 'link', 'add', uplink(id), 'type', 'veth', 'peer', 'name', `${uplink(id)}f`);
  sh('ip', 'link', 'set', `${uplink(id)}f`, 'master', fabric, 'up');
  sh('ip', 'link', 'set', uplink(id), 'up');
}
t.teardown(() => {
  for (const id of ['hv1', 'hv2', 'hv3'])
    execFileSync('ip', ['link', 'del', uplink(id)], { stdio: 'ignore' });
  execFileSync('ip', ['link', 'del', fabric], { stdio: 'ignore' });
});
const lab = await startClusterLab(
  t,
  ['hv1', 'hv2', 'hv3'],
  (id) =>
    `physical_networks: {fabric: ${uplink(id)}}\nnetworks:\n  - {name: shared, subnet: 10.251.0.0/24, uplink: fabric}\n`,
);
const [hv1, hv2, hv3] = lab.hosts as [ClusterHost, ClusterHost, ClusterHost];
const FLOW = fileURLToPath(new URL('../helpers/sg_flow.py', import.meta.url));
const script = await udhcpcScript(t);

// Creates queue behind each host's lock: a burst needs more patience than the helper's client has.
const patient = new Map(lab.hosts.map((h) => [h.id, new BerthClient(h.socket, 120_000)]));
const create = (h: ClusterHost, name: string) =>
  (patient.get(h.id) as BerthClient).createInstance({ name, network: 'shared', runtime: 'netns' });

/** The guest asks its own host for a lease (udhcpc), then for its instance-id (curl). */
async function served(h: ClusterHost, name: string): Promise<{ lease: string; id: string }> {
  const dhcp = await h.client.exec(name, [
    'udhcpc',
    '-i',
    'eth0',
    '-n',
    '-q',
    '-t',
    '5',
    '-T',
    '1',
    '-s',
    script,
  ]);
  const got = lastEvent(dhcp.stdout);
  const md = await h.client.exec(name, [
    'curl',
    '-s',
    '-m',
    '5',
    'http://169.254.169.254/latest/meta-data/instance-id',
  ]);
  return { lease: got.ip ?? '', id: md.stdout.trim() };
}

/** The HTTP status a guest gets for a metadata path (curl in its namespace). */
async function httpCode(h: ClusterHost, guest: string, url: string): Promise<string> {
  const r = await h.client.exec(guest, [
    'curl',
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '-m',
    '5',
    url,
  ]);
  return r.stdout;
}

t.test('concurrent creates on three hosts: no name, MAC or IP is shared', async (t) => {
  const perHost = 12;
  const results = await Promise.allSettled(
    lab.hosts.flatMap((h) => Array.from({ length: perHost }, (_, i) => create(h, `${h.id}-g${i}`))),
  );
  const failed = results.filter((r) => r.status === 'rejected');
  t.same(
    failed.map((f) => String((f as PromiseRejectedResult).reason)),
    [],
    'every create succeeded',
  );
  const dir = (await lab.kv.list<DirectoryEntry>('directory/')).map((e) => e.value);
  t.equal(dir.length, perHost * 3, 'the directory has every instance');
  const macs = dir.flatMap((d) => d.nics.map((n) => n.mac));
  const ips = dir.flatMap((d) => d.nics.map((n) => n.ip));
  t.equal(new Set(macs).size, macs.length, 'MACs are unique across the cluster');
  t.equal(new Set(ips).size, ips.length, 'IPs are unique across the cluster');
  for (const h of lab.hosts) {
    const local = (await h.client.instances()).instances.map((i) => i.id).sort();
    t.same(
      local,
      dir
        .filter((d) => d.host === h.id)
        .map((d) => d.id)
        .sort(),
      `${h.id}'s own records match its directory entries`,
    );
  }
  // Names are cluster-wide: another host cannot take one.
  await t.rejects(create(hv2, 'hv1-g0'), { code: 'BERTH_ERR_ALREADY_EXISTS' });
});

t.test('every guest gets its lease and its own instance-id from its own host', async (t) => {
  for (const h of lab.hosts) {
    const name = `${h.id}-g0`;
    const rec = await h.client.instance(name);
    const got = await served(h, name);
    t.equal(got.lease, rec.nics[0]?.ip, `${name}: lease from ${h.id}`);
    t.equal(got.id, rec.id, `${name}: its own instance-id`);
  }
});

t.test('guests on different hosts reach each other over the shared segment', async (t) => {
  for (const [from, to] of [
    [hv1, hv2],
    [hv2, hv3],
    [hv3, hv1],
  ] as const) {
    const target = (await to.client.instance(`${to.id}-g0`)).nics[0]?.ip as string;
    const r = await from.client.exec(`${from.id}-g0`, ['ping', '-n', '-q', '-c', '1', '-W', '2', target]);
    t.equal(r.code, 0, `${from.id}-g0 reaches ${to.id}-g0 (${target})`);
  }
  const bridge = (await hv1.client.network('shared')).bridge;
  t.match(
    execFileSync('ip', ['-o', 'link', 'show', uplink('hv1')], { encoding: 'utf8' }),
    `master ${bridge}`,
    "hv1's uplink is a port of its shared bridge",
  );
});

t.test('a policy set on one host is enforced on every host', async (t) => {
  const name = 'hv2-g1';
  await served(hv2, name);
  const path = 'http://169.254.169.254/latest/meta-data/hostname';
  const before = { stdout: await httpCode(hv2, name, path) };
  t.equal(before.stdout, '200', 'readable before');
  await hv1.client.setPolicy({
    name: 'no-hostname',
    identities: [`instance:${name}`],
    allow: [],
    deny: ['read:meta-data/hostname'],
  });
  for (const h of [hv2, hv3])
    await until(`${h.id} to have the policy`, async () =>
      (await h.client.policies()).policies.some((p) => p.name === 'no-hostname'),
    );
  const after = await until('hv2 to refuse', async () => {
    const code = await httpCode(hv2, name, path);
    return code !== '200' ? code : undefined;
  });
  t.match(after, /^40[34]$/, 'refused on hv2, set on hv1');
  await hv3.client.deletePolicy('no-hostname');
  await until('hv2 to allow again', async () =>
    (await httpCode(hv2, name, path)) === '200' ? true : undefined,
  );
  t.pass('deleted on hv3, allowed again on hv2');
});

t.test(
  'security groups span hosts: role:webapp on hv2 reaches role:database on hv1, others do not',
  async (t) => {
    await hv1.client.createSecgroup({ name: 'database' });
    await hv1.client.addSecgroupRule('database', { proto: 'tcp', port: '3306', from: 'role:webapp' });
    const mk = (h: ClusterHost, name: string, extra: Partial<InstanceCreate>) =>
      (patient.get(h.id) as BerthClient).createInstance({
        name,
        network: 'shared',
        runtime: 'netns',
        ...extra,
      });
    const db = await mk(hv1, 'sg-db', { role: 'database', secgroups: ['database'] });
    await mk(hv2, 'sg-web', { role: 'webapp' });
    await mk(hv3, 'sg-batch', { role: 'batch' });
    await served(hv1, 'sg-db');
    await served(hv2, 'sg-web');
    await served(hv3, 'sg-batch');
    const dbIp = db.nics[0]?.ip as string;
    const server = spawn('ip', [
      'netns',
      'exec',
      db.netns as string,
      '/usr/bin/python3',
      FLOW,
      'serve',
      '3306',
    ]);
    t.teardown(() => server.kill('SIGKILL'));
    await new Promise<void>((resolve) => server.stdout.once('data', () => resolve()));
    const probe = async (h: ClusterHost, guest: string) =>
      (await h.client.exec(guest, ['/usr/bin/python3', FLOW, 'probe', dbIp, '3306', '1'])).code === 0;
    t.ok(
      await until('hv2 webapp to reach hv1 database', async () =>
        (await probe(hv2, 'sg-web')) ? true : undefined,
      ),
      "hv2's webapp reaches hv1's database:3306 (a rule set on hv1, a source on hv2)",
    );
    t.notOk(await probe(hv3, 'sg-batch'), 'hv3 batch is refused');
    // Membership set on hv3 reaches hv1's sets through the etcd watch.
    await hv2.client.createSecgroup({ name: 'clients' });
    await hv2.client.addSecgroupRule('database', { proto: 'tcp', port: '3306', from: 'group:clients' });
    await hv3.client.updateInstance('sg-batch', { secgroups: ['clients'] });
    t.ok(
      await until('hv3 batch to get in once it joined clients', async () =>
        (await probe(hv3, 'sg-batch')) ? true : undefined,
      ),
      "hv3's guest gets in once it joined clients on hv3 (membership through the etcd watch)",
    );
    // hv2's webapp is a remote member on hv1: its address and MAC count only
    // from hv1's uplink. Neither a port plugged into hv1's bridge by hand nor
    // a box behind the uplink with its own MAC can be it.
    const web = (await hv2.client.instance('sg-web')).nics[0] as { ip: string; mac: string };
    const bridge = (await hv1.client.network('shared')).bridge;
    const impostor = async (where: string, mac: string, tagged: string) => {
      const r = await rogue(t, 'zfx', `${tag}${tagged}`, where, { mac, ip: web.ip, prefixLen: 24 });
      const refused = async () =>
        (await inNetns(r.netns, ['/usr/bin/python3', FLOW, 'probe', dbIp, '3306', '1'])).code !== 0;
      const audited = async () =>
        (await hv1.client.audit({ limit: 5000 })).records.find(
          (a) =>
            a.event === 'secgroup.drop' &&
            a.ip === web.ip &&
            a.instance === 'sg-db' &&
            (a.detail as { from_port?: string } | undefined)?.from_port ===
              (where === bridge ? r.port : uplink('hv1')),
        );
      const result = { refused: await refused(), audited: await audited() };
      // The drop log is rate-limited and best effort: refused again until one is on record.
      for (let i = 0; i < 10 && !result.audited; i++) {
        result.refused &&= await refused();
        result.audited = await audited();
      }
      await sh('ip', 'netns', 'delete', r.netns);
      return result;
    };
    const foreign = await impostor(bridge, web.mac, 'f');
    t.ok(foreign.refused, "a port plugged into hv1's bridge with the webapp's address and MAC is refused");
    t.ok(foreign.audited, 'and audited on hv1 (secgroup.drop, from the foreign port)');
    const behind = await impostor(fabric, '02:5e:0f:00:00:77', 'u');
    t.ok(behind.refused, "a box behind hv1's uplink with the webapp's address and its own MAC is refused");
    t.ok(behind.audited, "and audited on hv1 (secgroup.drop, from hv1's uplink)");
    // The impostors' ARP may have taught the database another MAC for the webapp's address.
    await sh('ip', '-n', db.netns as string, 'neigh', 'flush', 'all');
    t.ok(
      await until('hv2 webapp to reach hv1 database again', async () =>
        (await probe(hv2, 'sg-web')) ? true : undefined,
      ),
      'the real webapp on hv2 still gets in (control)',
    );
    for (const [h, name] of [
      [hv1, 'sg-db'],
      [hv2, 'sg-web'],
      [hv3, 'sg-batch'],
    ] as const)
      await h.client.deleteInstance(name);
  },
);

t.test('etcd all gone: guests are served, changes are refused whole; back: the hosts go on', async (t) => {
  const name = 'hv3-g2';
  const rec = await hv3.client.instance(name);
  for (const m of lab.etcd.members) await lab.etcd.kill(m);
  const down = await until('hv3 to refuse a create', async () =>
    create(hv3, 'during-outage').then(
      () => undefined,
      (err: Error & { code?: string }) => err,
    ),
  );
  t.equal(down.code, 'BERTH_ERR_CLUSTER_UNAVAILABLE');
  for (const url of lab.etcd.endpoints) t.match(down.message, url, 'names the endpoints tried');
  await t.rejects(hv3.client.deleteInstance(name), { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' });
  await t.rejects(
    hv1.client.setPolicy({ name: 'x', identities: ['*'], allow: [], deny: ['read:meta-data/tags'] }),
    {
      code: 'BERTH_ERR_CLUSTER_UNAVAILABLE',
    },
  );
  t.equal((await hv3.client.instance(name)).state, 'running', 'the refused delete touched nothing');
  const got = await served(hv3, name);
  t.equal(got.lease, rec.nics[0]?.ip, 'DHCP still answers');
  t.equal(got.id, rec.id, 'metadata still answers');
  await t.rejects(hv3.client.instance('during-outage'), { code: 'BERTH_ERR_NOT_FOUND' }, 'nothing half-made');

  // berthd restarted while etcd is away: it starts from its own copy and serves its guests.
  await hv3.stop();
  const hv3b = await lab.startHost('hv3', { stateDir: hv3.stateDir, prefix: hv3.prefix, socket: hv3.socket });
  t.same(
    (await hv3b.client.networks()).networks.map((n) => n.name),
    ['shared'],
    'the network comes from the local copy',
  );
  const again = await served(hv3b, name);
  t.equal(again.id, rec.id, 'metadata answers after a restart without etcd');
  await t.rejects(create(hv3b, 'during-outage'), { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' });

  for (const m of lab.etcd.members) await lab.etcd.restart(m);
  await lab.etcd.waitHealthy();
  const hv3c = lab.hosts.find((h) => h.id === 'hv3') as ClusterHost;
  const back = await until(
    'hv3 to create again',
    async () =>
      new BerthClient(hv3c.socket, 60_000)
        .createInstance({ name: 'after-outage', network: 'shared', runtime: 'netns' })
        .catch(() => undefined),
    30_000,
  );
  t.equal(back.state, 'running');
  const ips = (await lab.kv.list<DirectoryEntry>('directory/')).flatMap((e) => e.value.nics.map((n) => n.ip));
  t.equal(new Set(ips).size, ips.length, 'the host that restarted without etcd allocated no address twice');
  await hv3c.client.deleteInstance(name);
  t.notOk(
    (await lab.kv.list<DirectoryEntry>('directory/')).some((e) => e.value.name === name),
    'gone everywhere',
  );
});
