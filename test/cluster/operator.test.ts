// The cluster's operator surface and cross-host identity, with real parts: a
// 3-member etcd on loopback, three berthd processes (hv1, hv2, hv3) and netns
// guests asking their own host's metadata service with curl. hv3 is killed
// with -9: every host shows it lost within its lease, its MAC and IP stay
// assigned; `host forget` is refused while it lives and works once it is
// lost, quarantining its addresses. Identity documents fetched by guests are
// verified on other hosts, and the JWKS a guest reads verifies them too.
import { createPublicKey, verify } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type {
  ClusterStatusAnswer,
  DirectoryEntry,
  ForgetAnswer,
  HostList,
  VerifyAnswer,
} from '../../agent/api/types.js';
import type { BerthClient } from '../../agent/client/client.js';
import { EtcdKv } from '../../agent/store/etcd-kv.js';
import { berthctl, startBerthd } from '../helpers/berthd.js';
import { EtcdMembers } from '../helpers/etcd-members.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (bridges, veths, network namespaces, nftables)');
  process.exit(0);
}

const LEASE = 2;
const dir = await mkdtemp(join(tmpdir(), 'berth-ops-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const etcd = await EtcdMembers.start(join(dir, 'etcd'), 3);
t.teardown(() => etcd.stop());
const prefix = `/ops${process.pid}/`;
const cfg = (id: string) =>
  `host_id: ${id}\ncluster:\n  etcd: [${etcd.endpoints.join(', ')}]\n  prefix: ${prefix}\n  lease_seconds: ${LEASE}\nnetworks:\n  - name: ops\n    subnet: 10.252.0.0/24\n`;
const MD = 'http://169.254.169.254/latest';

/** berthctl against one host; JSON parsed when asked for. */
async function ctl(socket: string, args: string[]) {
  const r = await berthctl(['--socket', socket, ...args]);
  return { ...r, json: () => JSON.parse(r.stdout) as unknown };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A netns guest with its address and the metadata route, as a guest's DHCP client would set them. */
async function guest(client: BerthClient, name: string) {
  const i = await client.createInstance({ name, network: 'ops', runtime: 'netns' } as never);
  const nic = i.nics[0] as { ip: string; mac: string };
  for (const argv of [
    ['ip', 'addr', 'add', `${nic.ip}/24`, 'dev', 'eth0'],
    ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0'],
  ]) {
    const r = await client.exec(name, argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${name}: ${r.stderr}`);
  }
  return { id: i.id, ...nic };
}

/** GETs path from inside the guest, with curl through `instance exec`. */
async function fetchIn(client: BerthClient, name: string, path: string): Promise<string> {
  // A new network's endpoint starts beside the admin API: a refused connection is waited out.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await client.exec(name, ['curl', '-sS', '-f', '-m', '5', `${MD}${path}`]);
    if (r.code === 0) return r.stdout;
    if (r.code !== 7 || Date.now() > deadline) throw new Error(`curl ${path} in ${name}: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

t.test('hosts, forget, identity across hosts', async (t) => {
  const hv1 = await startBerthd(t, { config: cfg('hv1') });
  const hv2 = await startBerthd(t, { config: cfg('hv2') });
  const kv = new EtcdKv({ endpoints: etcd.endpoints, prefix });
  t.teardown(() => kv.close());
  const g1 = await guest(hv1.client, 'ops-g1');
  const g2 = await guest(hv2.client, 'ops-g2');
  const kids = async () =>
    (
      JSON.parse(await fetchIn(hv2.client, 'ops-g2', '/dynamic/berth/jwks.json')) as {
        keys: { kid: string }[];
      }
    ).keys
      .map((k) => k.kid)
      .sort();
  t.same(await kids(), ['hv1', 'hv2'], 'the key set a guest on hv2 reads: both hosts');

  // A host joining reaches the guests' cached views: the endpoint caches are invalidated.
  const joinedAt = Date.now();
  const hv3 = await startBerthd(t, { config: cfg('hv3') });
  await until(
    'hv3 in the key set on hv2',
    async () => ((await kids()).includes('hv3') ? true : undefined),
    5000,
  );
  t.comment(`hv3's key served by hv2's metadata ${Date.now() - joinedAt} ms after hv3 was started`);
  const g3 = await guest(hv3.client, 'ops-g3');

  // Every host lists every host, alive, with its instance count.
  for (const h of [hv1, hv2, hv3]) {
    const list = await until(
      'all three alive with one instance each',
      async () => {
        const l = (await ctl(h.socket, ['--json', 'host', 'list'])).json() as HostList;
        return l.hosts.length === 3 && l.hosts.every((x) => x.state === 'alive' && x.instances === 1)
          ? l
          : undefined;
      },
      5000,
    );
    t.same(
      list.hosts.map((x) => x.id),
      ['hv1', 'hv2', 'hv3'],
    );
    t.match(list.hosts[0]?.fingerprint, /^[0-9a-f]{64}$/, 'the full fingerprint in JSON');
  }
  const table = await ctl(hv2.socket, ['host', 'list']);
  t.match(table.stdout, /hv2 \(this host\)/);
  t.match(table.stdout, /[0-9a-f]{16}…/, 'a short fingerprint in the table');

  const st = (await ctl(hv1.socket, ['--json', 'cluster', 'status'])).json() as ClusterStatusAnswer;
  t.match(st, { mode: 'cluster', etcd: { endpoints: etcd.endpoints }, watch: { state: 'connected' } });
  t.equal(st.etcd?.members?.length, 3, 'three etcd members');
  t.equal(st.etcd?.members?.filter((m) => m.leader).length, 1, 'one leader');
  t.ok((st.etcd?.revision ?? 0) > 0 && (st.watch?.lag_revisions ?? -1) >= 0, 'revision and lag');
  t.comment(
    `watch lag ${st.watch?.lag_revisions} revisions, last event ${st.watch?.ms_since_last_event} ms ago`,
  );

  const all = (
    await ctl(hv2.socket, ['--json', 'instance', 'list', '--all-hosts'])
  ).json() as DirectoryEntry[];
  t.same(
    all.map((e) => [e.host, e.name, e.nics[0]?.mac, e.nics[0]?.ip]),
    [
      ['hv1', 'ops-g1', g1.mac, g1.ip],
      ['hv2', 'ops-g2', g2.mac, g2.ip],
      ['hv3', 'ops-g3', g3.mac, g3.ip],
    ],
  );

  // A document signed on hv1, fetched by its guest, verified on hv2; tampered, refused.
  const doc1 = await fetchIn(hv1.client, 'ops-g1', '/dynamic/instance-identity/document');
  const sig1 = await fetchIn(hv1.client, 'ops-g1', '/dynamic/instance-identity/signature');
  t.match(JSON.parse(doc1), { hostId: 'hv1', instanceId: g1.id });
  await writeFile(join(dir, 'g1.json'), JSON.stringify({ document: doc1, signature: sig1 }));
  const ok = await ctl(hv2.socket, ['--json', 'identity', 'verify', join(dir, 'g1.json')]);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.json(), { valid: true, host: 'hv1', host_state: 'alive', instance_id: g1.id });
  await writeFile(
    join(dir, 'bad.json'),
    JSON.stringify({ document: doc1.replace(g1.ip, g2.ip), signature: sig1 }),
  );
  const bad = await ctl(hv2.socket, ['--json', 'identity', 'verify', join(dir, 'bad.json')]);
  t.equal(bad.code, 1, 'a tampered document: exit 1');
  t.match(bad.json(), { valid: false, reason: /does not match/ });
  const refusals = await hv2.client.audit({ event: 'admin.identity.verify', outcome: 'refused' });
  t.equal(refusals.records.length, 1, 'the refusal is audited on the host that checked');

  // The key set a guest on hv2 reads holds hv1's key, which verifies hv1's document.
  const jwks = JSON.parse(await fetchIn(hv2.client, 'ops-g2', '/dynamic/berth/jwks.json')) as {
    keys: { kid: string; kty: string; crv: string; x: string }[];
  };
  t.same(jwks.keys.map((k) => k.kid).sort(), ['hv1', 'hv2', 'hv3']);
  const k1 = jwks.keys.find((k) => k.kid === 'hv1');
  t.ok(
    verify(
      null,
      Buffer.from(doc1),
      createPublicKey({ key: k1 as never, format: 'jwk' }),
      Buffer.from(sig1, 'base64'),
    ),
    "hv1's JWK from hv2's metadata verifies hv1's document",
  );
  t.match(await fetchIn(hv2.client, 'ops-g2', '/dynamic/'), /berth\//, 'listed under dynamic/');

  // hv3's document, kept for after it is forgotten.
  const doc3 = await fetchIn(hv3.client, 'ops-g3', '/dynamic/instance-identity/document');
  await writeFile(join(dir, 'g3.doc'), doc3);
  await writeFile(
    join(dir, 'g3.sig'),
    await fetchIn(hv3.client, 'ops-g3', '/dynamic/instance-identity/signature'),
  );

  const alive = await ctl(hv1.socket, ['--json', 'host', 'forget', 'hv3']);
  t.equal(alive.code, 1, 'forget refused while hv3 is alive');
  t.match(alive.json(), { error: { code: 'BERTH_ERR_CONFLICT', message: /alive/ } });
  t.match((await ctl(hv1.socket, ['host', 'forget', 'hv1'])).stderr, /this host/);
  t.match((await ctl(hv1.socket, ['--json', 'host', 'forget', 'hv9'])).json(), {
    error: { code: 'BERTH_ERR_NOT_FOUND' },
  });

  // kill -9: lost within the lease (plus the watch and a margin), addresses kept.
  const killedAt = Date.now();
  await hv3.kill9();
  for (const h of [hv1, hv2])
    await until(
      `${h === hv1 ? 'hv1' : 'hv2'} sees hv3 lost`,
      async () =>
        (await h.client.hosts()).hosts.find((x) => x.id === 'hv3')?.state === 'lost' ? true : undefined,
      (LEASE + 4) * 1000,
    );
  t.comment(`hv3 shown lost on both hosts ${Date.now() - killedAt} ms after kill -9 (lease ${LEASE} s)`);
  const g3mac = `mac/${g3.mac}`;
  const g3ip = `ip/ops/${g3.ip}`;
  for (let i = 0; i < 4; i++) {
    const extra = await hv1.client.createInstance({
      name: `ops-x${i}`,
      network: 'ops',
      runtime: 'netns',
    } as never);
    t.not(extra.nics[0]?.mac, g3.mac);
    t.not(extra.nics[0]?.ip, g3.ip);
  }
  t.match(await kv.get(g3mac), { state: 'assigned', instance: g3.id }, "a lost host's MAC stays assigned");
  t.match(await kv.get(g3ip), { state: 'assigned', instance: g3.id }, "a lost host's IP stays assigned");

  const forgot = await ctl(hv1.socket, ['--json', 'host', 'forget', 'hv3']);
  t.equal(forgot.code, 0, forgot.stderr);
  const f = forgot.json() as ForgetAnswer;
  t.match(f, { host: 'hv3', already: false, instances: [{ id: g3.id, name: 'ops-g3' }] });
  t.same(f.quarantined.sort(), [g3ip, g3mac].sort());
  t.match(f.forgotten_by, /^uid 0 \(pid \d+\) on hv1$/);
  t.match(await kv.get(g3mac), { state: 'quarantined', instance: g3.id, until: Number });
  t.match(await kv.get(g3ip), { state: 'quarantined', instance: g3.id, until: Number });
  t.equal(await kv.get(`directory/${g3.id}`), undefined);
  t.equal(await kv.get('instance-name/ops-g3'), undefined);
  await until(
    'hv2 sees hv3 gone from the directory',
    async () => ((await hv2.client.directory()).instances.some((e) => e.host === 'hv3') ? undefined : true),
    3000,
  );
  t.same(
    (await hv2.client.hosts()).hosts.map((h) => h.id),
    ['hv1', 'hv2'],
  );
  t.match(
    (await hv2.client.hosts(true)).hosts.find((h) => h.id === 'hv3'),
    {
      state: 'forgotten',
      forgotten_by: f.forgotten_by,
    },
  );
  const again = (await ctl(hv2.socket, ['--json', 'host', 'forget', 'hv3'])).json() as ForgetAnswer;
  t.match(again, { already: true, instances: [] }, 'forget again: nothing left, no error');
  const audited = await hv1.client.audit({ event: 'admin.host.forget' });
  t.match(audited.records, [{ outcome: 'allowed', detail: { host: 'hv3', instances: [g3.id] } }]);

  // A recently forgotten host's documents still verify, saying so.
  const old = await ctl(hv2.socket, [
    '--json',
    'identity',
    'verify',
    join(dir, 'g3.doc'),
    '--signature-file',
    join(dir, 'g3.sig'),
  ]);
  t.equal(old.code, 0, old.stderr);
  t.match(old.json() as VerifyAnswer, { valid: true, host: 'hv3', host_state: 'forgotten' });

  // The forgotten host itself, restarted on its old state (the same key): it
  // may not rejoin and serve instances whose addresses were released.
  await t.rejects(
    startBerthd(t, { config: cfg('hv3'), stateDir: hv3.stateDir, prefix: hv3.prefix, socket: hv3.socket }),
    /was forgotten at .* and its instances' MACs and IPs were released/,
    'a forgotten host does not rejoin with its old state',
  );

  for (const n of ['ops-g1', 'ops-x0', 'ops-x1', 'ops-x2', 'ops-x3']) await hv1.client.deleteInstance(n);
  await hv2.client.deleteInstance('ops-g2');

  // etcd away: status still answers (the watch part, and why etcd did not), forget is refused.
  await etcd.stop();
  const down = await until(
    'hv1 notices etcd is away',
    async () => {
      const s = (await ctl(hv1.socket, ['--json', 'cluster', 'status'])).json() as ClusterStatusAnswer;
      return s.watch?.state !== 'connected' && s.etcd?.error ? s : undefined;
    },
    20_000,
  );
  t.match(down, { mode: 'cluster', etcd: { error: String }, watch: { applied_revision: Number } });
  const statusText = await ctl(hv1.socket, ['cluster', 'status']);
  t.equal(statusText.code, 0, 'cluster status is not a failure with etcd away');
  t.match(statusText.stdout, /etcd: unreachable/);
  t.match((await ctl(hv1.socket, ['--json', 'host', 'forget', 'hv2'])).json(), {
    error: { code: 'BERTH_ERR_CLUSTER_UNAVAILABLE' },
  });
});
