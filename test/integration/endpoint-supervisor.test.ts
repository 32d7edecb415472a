// The endpoint process and its supervisor, without a namespace: the real
// dist/ endpoint runs as a plain child on loopback, so the IPC relay, RPC and
// restart-with-backoff logic are tested on their own.
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { EndpointSupervisor } from '../../agent/endpoint/supervisor.js';
import { ROOT } from '../helpers/berthd.js';

const ENTRY = join(ROOT, 'dist/agent/endpoint/main.js');
const plainSpawner = (_netns: string, entry: string) =>
  spawn(process.execPath, [entry], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced' });

const config = {
  network: 'n1',
  serviceIp: '127.0.0.1',
  metadataIp: '127.0.0.1',
  metadataPort: 0,
  dhcpPort: 0,
  logLevel: 'info',
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
  const sup = new EndpointSupervisor(
    pino({ level: 'silent' }),
    {
      dhcpPacket() {},
      async call(network, method, params) {
        seen.push({ network, method, params });
        return lookupAnswer();
      },
    },
    plainSpawner,
    ENTRY,
  );
  t.teardown(() => sup.stopAll());
  const ready = waitReady(sup);
  sup.ensure('ns-unused', config);
  await ready;
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
  sup = new EndpointSupervisor(
    pino({ level: 'silent' }),
    {
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
    },
    plainSpawner,
    ENTRY,
  );
  t.teardown(() => sup?.stopAll());
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
  const sup = new EndpointSupervisor(
    pino({ level: 'silent' }),
    { dhcpPacket() {}, call: async () => ({}) },
    plainSpawner,
    ENTRY,
  );
  t.teardown(() => sup.stopAll());
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
