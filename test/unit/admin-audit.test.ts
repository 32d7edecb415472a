// Every admin change is audited with its peer (fastify inject, a fixed
// PeerCredentials): one record per change with the right event, object and
// uid/gid/pid; refusals carry the peer too; reads never ask who the peer is;
// a write route that names no audit event stops the server from starting.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify from 'fastify';
import pino from 'pino';
import t, { type Test } from 'tap';
import { AdminAudit } from '../../agent/api/admin-audit.js';
import type { PeerCred, PeerCredentials } from '../../agent/api/peer-credentials.js';
import { buildAdminServer } from '../../agent/api/server.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices } from '../../agent/daemon/services.js';
import { PolicyService } from '../../agent/services/policies.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';

const PEER: PeerCred = { pid: 4242, uid: 1001, gid: 995 };

/** A fixed peer that counts how often it was asked. */
class FixedPeer implements PeerCredentials {
  asked = 0;
  constructor(private readonly answer: PeerCred | Error) {}
  async of(): Promise<PeerCred> {
    this.asked++;
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  }
}

async function setup(t: Test, peers: PeerCredentials = new FixedPeer(PEER)) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-admin-audit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const log = pino({ level: 'silent' });
  const driver = new FakeDriver();
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [], name_prefix: 'tst', state_dir: dir },
    log,
    () => driver,
    () => new FakeObserver(),
  );
  const policies = new PolicyService(store);
  const audit = await AuditLog.open(store);
  const app = await buildAdminServer(
    { status: { status: async () => ({}) as never }, audit, ...services, policies, peers },
    log,
  );
  t.teardown(() => app.close());
  return { app, audit, dir };
}

t.test('each admin change is one allowed record with the peer', async (t) => {
  const peers = new FixedPeer(PEER);
  const { app, audit, dir } = await setup(t, peers);
  const ok = async (method: 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) => {
    const res = await app.inject({ method, url, ...(payload ? { payload } : {}) });
    t.ok(res.statusCode < 300, `${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  await ok('POST', '/v1/networks', { name: 'a', subnet: '10.0.0.0/24', gateway: '10.0.0.1' });
  const made = (
    await ok('POST', '/v1/instances', {
      name: 'g1',
      network: 'a',
      user_data: Buffer.from('#!/bin/sh\necho secret\n').toString('base64'),
      ssh_keys: [{ name: 'k', key: 'ssh-ed25519 AAAASECRET x' }],
    })
  ).json();
  await ok('POST', '/v1/instances/g1/exec', { argv: ['ip', '-br', 'addr'] });
  await ok('PUT', '/v1/policies/p1', {
    name: 'p1',
    identities: ['*'],
    allow: [],
    deny: ['read:meta-data/tags'],
  });
  await ok('DELETE', '/v1/policies/p1');
  const kernel = join(dir, 'vmlinux');
  await writeFile(kernel, Buffer.alloc(4096, 7));
  const image = (await ok('POST', '/v1/images', { path: kernel, name: 'k1', kind: 'kernel' })).json();
  await ok('DELETE', '/v1/images/k1');
  await ok('DELETE', '/v1/instances/g1');
  await ok('DELETE', '/v1/networks/a');

  const records = await audit.query({ outcome: 'allowed' });
  t.same(
    records.map((r) => r.event),
    [
      'admin.network.create',
      'admin.instance.create',
      'admin.instance.exec',
      'admin.policy.set',
      'admin.policy.delete',
      'admin.image.import',
      'admin.image.delete',
      'admin.instance.delete',
      'admin.network.delete',
    ],
    'one record per change, in order',
  );
  for (const r of records) {
    t.same(r.peer, PEER, `${r.event} names the peer`);
    t.match(r.reason, 'done for uid 1001 gid 995 pid 4242');
  }
  const [net, inst, exec, pset, , imp] = records;
  t.match(net, { network: 'a', path: 'POST /v1/networks', detail: { subnet: '10.0.0.0/24' } });
  t.match(inst, {
    instance: made.id,
    network: 'a',
    detail: { name: 'g1', runtime: 'netns', mac: made.nics[0].mac, ip: made.nics[0].ip },
  });
  t.notMatch(JSON.stringify(records), /SECRET|secret|ZWNobyBzZWNyZXQ/, 'no user-data or key in the log');
  t.match(exec, { instance: 'g1', detail: { argv: ['ip', '-br', 'addr'], code: 0 } });
  t.match(pset, { detail: { policy: 'p1', identities: ['*'], deny: ['read:meta-data/tags'] } });
  t.match(imp, { detail: { name: 'k1', path: kernel, sha256: image.sha256, kind: 'kernel' } });
  // inject gives every request its own socket: one lookup per change (the real socket's cache is in peer-credentials.test.ts).
  t.equal(peers.asked, 9, 'one peer lookup per change');
});

t.test('start, stop, reboot and a streamed import are audited; refusals carry the peer', async (t) => {
  const { app, audit, dir } = await setup(t);
  await app.inject({ method: 'POST', url: '/v1/networks', payload: { name: 'a', subnet: '10.0.0.0/24' } });
  await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'g1', network: 'a' } });
  for (const verb of ['start', 'stop', 'reboot']) {
    const res = await app.inject({ method: 'POST', url: `/v1/instances/g1/${verb}`, payload: {} });
    t.equal(res.statusCode, 409, `${verb} of a netns guest is refused`);
  }
  const idName = await app.inject({
    method: 'POST',
    url: '/v1/instances',
    payload: { name: 'i-0badc0de', network: 'a' },
  });
  t.equal(idName.statusCode, 400);
  const refused = await audit.query({ outcome: 'refused' });
  t.same(
    refused.map((r) => [r.detail?.change, r.detail?.status]),
    [
      ['admin.instance.start', 409],
      ['admin.instance.stop', 409],
      ['admin.instance.reboot', 409],
      ['admin.instance.create', 400],
    ],
  );
  t.ok(
    refused.every((r) => r.event === 'admin.request' && r.peer?.uid === PEER.uid && r.peer.gid === PEER.gid),
    'every refusal is admin.request with the peer',
  );
  t.match(refused[3]?.reason, 'name: "i-0badc0de" looks like an instance id');

  // A streamed import answers 200 first; its record waits for the outcome.
  const kernel = join(dir, 'vmlinux');
  await writeFile(kernel, Buffer.alloc(8192, 3));
  const streamed = await app.inject({
    method: 'POST',
    url: '/v1/images',
    headers: { accept: 'application/x-ndjson' },
    payload: { path: kernel, name: 'k2', kind: 'kernel' },
  });
  t.equal(streamed.statusCode, 200);
  t.match(streamed.body, /"image":/);
  const imports = await audit.query({ event: 'admin.image.import' });
  t.equal(imports.length, 1, 'one record, after the copy');
  t.match(imports[0], { outcome: 'allowed', peer: PEER, detail: { name: 'k2', kind: 'kernel' } });
});

t.test('reads never ask for the peer; an unknown peer is recorded as such', async (t) => {
  const broken = new FixedPeer(new Error('ss: not found'));
  const { app, audit } = await setup(t, broken);
  for (const url of ['/v1/networks', '/v1/instances', '/v1/pool', '/v1/audit', '/v1/policies'])
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url);
  t.equal(broken.asked, 0, 'no lookup for reads');
  const made = await app.inject({
    method: 'POST',
    url: '/v1/networks',
    payload: { name: 'b', subnet: '10.2.0.0/24' },
  });
  t.equal(made.statusCode, 201, 'a change goes ahead when its peer cannot be named');
  const [rec] = await audit.query({ event: 'admin.network.create' });
  t.equal(rec?.peer, undefined);
  t.match(rec, {
    reason: 'done for an unknown peer (ss: not found)',
    detail: { peer_error: 'ss: not found' },
  });
});

t.test('a write route without an audit event is refused at registration', async (t) => {
  const app = Fastify({ logger: false }).withTypeProvider<TypeBoxTypeProvider>();
  new AdminAudit({ append: async () => ({}) as never }, new FixedPeer(PEER)).install(app);
  app.get('/read', async () => 'ok');
  app.post('/audited', { config: { audit: { event: 'admin.thing.make' } } }, async () => 'ok');
  t.throws(
    () => app.post('/unaudited', async () => 'no'),
    /admin route POST \/unaudited changes state but names no audit event/,
  );
  t.throws(
    () => app.route({ method: ['GET', 'DELETE'], url: '/mixed', handler: async () => 'no' }),
    /DELETE/,
  );
  await app.close();
});
