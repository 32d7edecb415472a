// The endpoint process and its supervisor, without a namespace: the real
// dist/ endpoint runs as a plain process on loopback, so the control-socket
// relay, RPC, restart-with-backoff and adoption logic are tested on their own.
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import t, { type Test } from 'tap';
import {
  type EndpointHandlers,
  type EndpointSpawner,
  EndpointSupervisor,
  type SupervisorOptions,
} from '../../agent/endpoint/supervisor.js';
import { ROOT, tempDir } from '../helpers/berthd.js';

const ENTRY = join(ROOT, 'dist/agent/endpoint/main.js');
const spawned: number[] = [];
const plainSpawner = (_netns: string, entry: string, args: string[]) => {
  const child = spawn(process.execPath, [entry, ...args], { stdio: 'ignore' });
  if (child.pid) spawned.push(child.pid);
  return child;
};
t.teardown(() => {
  for (const pid of spawned) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

async function supervisor(
  t: Test,
  handlers: EndpointHandlers,
  extra: Partial<SupervisorOptions> = {},
): Promise<EndpointSupervisor> {
  const dir = extra.dir ?? (await tempDir(t, 'berth-ep'));
  const sup = new EndpointSupervisor(pino({ level: 'silent' }), handlers, {
    dir,
    spawner: plainSpawner,
    entry: ENTRY,
    ...extra,
  });
  t.teardown(() => sup.stopAll());
  return sup;
}

const config = {
  network: 'n1',
  serviceIp: '127.0.0.1',
  metadataIp: '127.0.0.1',
  metadataPort: 0,
  dhcpPort: 0,
  logLevel: 'info',
  metadataRate: { perSecond: 200, burst: 400 },
};

function waitReady(sup: EndpointSupervisor): Promise<void> {
  return new Promise((resolve) => {
    sup.onReady = () => resolve();
  });
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(
      { host: '127.0.0.1', port, path, headers: { 'X-Forwarded-For': '10.9.9.9', Host: '169.254.169.254' } },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    )
      .on('error', reject)
      .end();
  });
}

/** berthd's answer to `metadata.lookup`: who the caller is and what to serve it. */
function lookupAnswer() {
  const doc = {
    id: 'i-0000abcd',
    uuid: '00000000-0000-4000-8000-000000000001',
    name: 'g1',
    hostname: 'g1',
    runtime: 'netns',
    network: { name: 'n1', subnet: '127.0.0.0/8', mtu: 1500, dns: [] },
    mac: '0a:b7:e7:00:00:01',
    ip: '127.0.0.1',
    port: 'p0',
    sshKeys: [],
    meta: {},
    hostId: 'hv',
    createdAt: '2026-01-01T00:00:00Z',
    identity: { document: '{}', signature: '' },
  };
  return {
    ok: true,
    mac: doc.mac,
    port: doc.port,
    instance: doc.id,
    identity: `instance:${doc.id}`,
    doc,
    rules: [],
    tokens: 'optional',
    tokenKey: Buffer.alloc(32, 1),
  };
}

t.test('metadata calls reach berthd with the observed source IP, never a header', async (t) => {
  const seen: unknown[] = [];
  const sup = await supervisor(t, {
    dhcpPacket() {},
    async call(network, method, params) {
      seen.push({ network, method, params });
      return lookupAnswer();
    },
  });
  sup.ensure('ns-unused', config);
  t.equal(await sup.ready('n1', 15_000), true, 'ready() settles when the endpoint serves');
  t.equal(await sup.ready('n2', 10), false, 'and is false for a network without an endpoint');
  const port = sup.status()[0]?.ports?.metadata as number;
  t.ok(port > 0);
  t.same(await get(port, '/latest/meta-data/instance-id'), { status: 200, body: 'i-0000abcd' });
  t.same(await get(port, '/latest/meta-data/mac'), { status: 200, body: '0a:b7:e7:00:00:01' });
  // One lookup per caller IP; the second request was answered from the endpoint's cache.
  t.same(seen, [{ network: 'n1', method: 'metadata.lookup', params: { ip: '127.0.0.1' } }]);
});

t.test('DHCP datagrams are relayed to berthd and replies go out of the endpoint socket', async (t) => {
  const got: { data: Buffer; port: number }[] = [];
  let sup: EndpointSupervisor | undefined;
  sup = await supervisor(t, {
    dhcpPacket(network, data, _address, port) {
      got.push({ data, port });
      sup?.send(network, {
        t: 'dhcp-send',
        data: Buffer.from(`re:${data.toString()}`),
        address: '127.0.0.1',
        port,
      });
    },
    async call() {
      return {};
    },
  });
  const ready = waitReady(sup);
  sup.ensure('ns-unused', config);
  await ready;
  const dhcpPort = sup.status()[0]?.ports?.dhcp as number;
  const client = createSocket('udp4');
  t.teardown(() => client.close());
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  const answer = new Promise<string>((resolve) => client.once('message', (m) => resolve(m.toString())));
  client.send(Buffer.from('discover'), dhcpPort, '127.0.0.1');
  t.equal(await answer, 're:discover');
  t.equal(got[0]?.data.toString(), 'discover');
});

t.test('a dead endpoint is restarted with backoff; stop() ends it for good', async (t) => {
  const sup = await supervisor(t, { dhcpPacket() {}, call: async () => ({}) });
  let ready = waitReady(sup);
  sup.ensure('ns-unused', config);
  await ready;
  const first = sup.status()[0]?.pid as number;
  ready = waitReady(sup);
  process.kill(first, 'SIGKILL');
  await ready;
  const after = sup.status()[0];
  t.not(after?.pid, first, 'a new process');
  t.equal(after?.restarts, 1);
  sup.ensure('ns-unused', config);
  t.equal(sup.status()[0]?.pid, after?.pid, 'ensure with the same config leaves a running endpoint alone');
  sup.stop('n1');
  t.same(sup.status(), []);
  await new Promise((r) => setTimeout(r, 300));
  t.throws(() => process.kill(after?.pid as number, 0), 'the process is gone');
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('a stopping berthd detaches; the endpoint keeps serving and the next berthd adopts it', async (t) => {
  const dir = await tempDir(t, 'berth-ep');
  const lookups: string[] = [];
  const handlers = (who: string): EndpointHandlers => ({
    dhcpPacket() {},
    async call(_network, method) {
      if (method === 'metadata.lookup') lookups.push(who);
      return lookupAnswer();
    },
  });
  const first = await supervisor(t, handlers('first'), { dir });
  let ready = waitReady(first);
  first.ensure('ns-unused', config);
  await ready;
  const { pid, ports } = first.status()[0] as { pid: number; ports: { metadata: number } };
  t.same(await get(ports.metadata, '/latest/meta-data/instance-id'), { status: 200, body: 'i-0000abcd' });
  first.detachAll();

  // No berthd: cached callers are still answered by the endpoint alone.
  t.same(await get(ports.metadata, '/latest/meta-data/mac'), { status: 200, body: '0a:b7:e7:00:00:01' });
  t.ok(alive(pid), 'the endpoint outlived its berthd');

  const second = await supervisor(t, handlers('second'), { dir });
  ready = waitReady(second);
  second.ensure('ns-unused', config);
  await ready;
  const adopted = second.status()[0];
  t.equal(adopted?.pid, pid, 'the same process');
  t.equal(adopted?.adopted, true);
  t.same(adopted?.ports, ports, 'it reported the ports it already listens on');
  // Adoption drops the cache: the next request is decided by the new berthd.
  t.same(await get(ports.metadata, '/latest/meta-data/instance-id'), { status: 200, body: 'i-0000abcd' });
  t.same(lookups, ['first', 'second']);
});

t.test('a call made while no berthd is connected waits for the next one', async (t) => {
  const dir = await tempDir(t, 'berth-ep');
  let answer = 0;
  const handlers: EndpointHandlers = {
    dhcpPacket() {},
    async call(_network, method) {
      if (method === 'metadata.lookup') answer += 1;
      return lookupAnswer();
    },
  };
  const first = await supervisor(t, handlers, { dir });
  const ready = waitReady(first);
  first.ensure('ns-unused', config);
  await ready;
  const port = first.status()[0]?.ports?.metadata as number;
  first.detachAll();
  const pending = get(port, '/latest/meta-data/instance-id'); // a cache miss, no berthd
  await new Promise((r) => setTimeout(r, 500));
  t.equal(answer, 0, 'nobody answered yet');
  const second = await supervisor(t, handlers, { dir });
  second.ensure('ns-unused', config);
  t.same(await pending, { status: 200, body: 'i-0000abcd' });
  t.equal(answer, 1, 'answered by the berthd that came back');
});

t.test('an endpoint with another config is replaced, not adopted', async (t) => {
  const dir = await tempDir(t, 'berth-ep');
  const handlers: EndpointHandlers = { dhcpPacket() {}, call: async () => ({}) };
  const first = await supervisor(t, handlers, { dir });
  let ready = waitReady(first);
  first.ensure('ns-unused', config);
  await ready;
  const old = first.status()[0]?.pid as number;
  first.detachAll();
  const second = await supervisor(t, handlers, { dir });
  ready = waitReady(second);
  second.ensure('ns-unused', { ...config, logLevel: 'debug' });
  await ready;
  const now = second.status()[0];
  t.not(now?.pid, old, 'a new process');
  t.equal(now?.adopted, false);
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(alive(old), 'the old endpoint exited');
});

t.test('an endpoint nobody adopts exits after its orphan timeout', async (t) => {
  const sup = await supervisor(t, { dhcpPacket() {}, call: async () => ({}) }, { orphanSeconds: 1 });
  const ready = waitReady(sup);
  sup.ensure('ns-unused', config);
  await ready;
  const pid = sup.status()[0]?.pid as number;
  sup.detachAll();
  await new Promise((r) => setTimeout(r, 500));
  t.ok(alive(pid), 'still serving within the timeout');
  await new Promise((r) => setTimeout(r, 1500));
  t.notOk(alive(pid), 'gone after it');
});

t.test(
  'a slow endpoint is waited for, never doubled; a hung one is killed before the next starts',
  async (t) => {
    const started: { child: ChildProcess; at: number }[] = [];
    // A process that never listens on its control socket: a start-up that hangs.
    const mute: EndpointSpawner = () => {
      const child = spawn('sleep', ['60'], { stdio: 'ignore' });
      if (child.pid) spawned.push(child.pid);
      started.push({ child, at: Date.now() });
      return child;
    };
    const sup = await supervisor(
      t,
      { dhcpPacket: () => {}, call: async () => null },
      { spawner: mute, spawnDeadlineMs: 200, hungStartMs: 1500 },
    );
    const t0 = Date.now();
    sup.ensure('ns-unused', { ...config, network: 'mute' });
    await new Promise((r) => setTimeout(r, 1200));
    t.equal(started.length, 1, 'several waits for a slow start, and still one process');
    const deadline = Date.now() + 10_000;
    while (started.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.equal(started.length, 2, 'a second start once the first counted as hung');
    const [first, second] = started as [(typeof started)[0], (typeof started)[0]];
    t.equal(first.child.signalCode, 'SIGKILL', 'the hung one was killed');
    t.ok(second.at - t0 >= 1500, `not before the hung-start time (${second.at - t0} ms)`);
    sup.stop('mute');
    await new Promise((r) => setTimeout(r, 100));
    t.equal(second.child.signalCode, 'SIGKILL', 'stop() ends one still starting');
  },
);
