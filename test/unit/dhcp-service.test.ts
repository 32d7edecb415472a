// DhcpService over a MemoryStore: who gets answered, lease persistence across
// a new service on the same store, the per-port rate limit and the audit
// throttle that keeps a flood of made-up MACs from filling the log.
import pino from 'pino';
import t from 'tap';
import type { AuditInput } from '../../agent/audit/audit-log.js';
import { DhcpService, leaseKey } from '../../agent/services/dhcp.js';
import type { NetworkRecord } from '../../agent/services/networks.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { decode, encodePacket, MessageType, OPT } from '../../hostnet/dhcp/codec.js';
import type { Lease } from '../../hostnet/dhcp/server.js';
import { AuditThrottle, PortRateLimiter } from '../../hostnet/dhcp/server-limits.js';
import { MemoryPortDirectory, decideMac as resolveDecide } from '../../hostnet/observe/resolve.js';

const NET: NetworkRecord = {
  name: 'a',
  subnet: '10.61.0.0/24',
  gateway: '10.61.0.1',
  mtu: 1400,
  dns: ['10.61.0.1'],
  source: 'config',
  created_at: '2025-01-01T00:00:00Z',
};
const A = { ifname: 'zzp0001', mac: '0a:b7:e7:00:00:01', ip: '10.61.0.2', instance: 'i-a', network: 'a' };
const B = { ifname: 'zzp0002', mac: '0a:b7:e7:00:00:02', ip: '10.61.0.3', instance: 'i-b', network: 'a' };

function setup(
  opts: { store?: MemoryStore; now?: () => number; rate?: { rate: number; burst: number } } = {},
) {
  const store = opts.store ?? new MemoryStore();
  const dir = new MemoryPortDirectory();
  dir.set(A);
  dir.set(B);
  // The FDB as the bridge learned it: MAC -> port.
  const fdb = new Map<string, string>([
    [A.mac, A.ifname],
    [B.mac, B.ifname],
  ]);
  const records: AuditInput[] = [];
  const sent: { data: Buffer; address: string; port: number }[] = [];
  const now = opts.now ?? (() => Date.parse('2025-01-01T00:00:00Z'));
  const observer = {
    resolveMacNow: (network: string, mac: string) => resolveDecide(network, mac, fdb.get(mac), dir),
    resolveMac: async (network: string, mac: string) => resolveDecide(network, mac, fdb.get(mac), dir),
  };
  const svc = new DhcpService({
    store,
    audit: { append: async (r) => records.push(r) },
    observer,
    ports: dir,
    networks: {
      get: (n) => {
        if (n !== 'a') throw new Error(`no network ${n}`);
        return NET;
      },
    },
    instanceName: (id) => ({ 'i-a': 'alpha', 'i-b': 'beta' })[id],
    log: pino({ level: 'silent' }),
    now,
    ...(opts.rate ? { rate: opts.rate } : {}),
  });
  t.teardown(() => svc.stop());
  const send = (data: Buffer, address: string, port: number) => {
    sent.push({ data, address, port });
  };
  return { store, fdb, records, sent, svc, send };
}

function msg(mac: string, type: number, extra: [number, Buffer][] = [], ciaddr?: string): Buffer {
  return encodePacket({ op: 1, xid: 7, chaddr: mac, ...(ciaddr ? { ciaddr } : {}) }, [
    [OPT.MESSAGE_TYPE, Buffer.from([type])],
    ...extra,
  ]);
}
const ip = (s: string) => Buffer.from(s.split('.').map(Number));

function lastReply(sent: { data: Buffer }[]) {
  const r = decode((sent.at(-1) as { data: Buffer }).data);
  if (!r.ok) throw new Error(r.detail);
  return r.packet;
}

t.test('a guest on its own port gets OFFER then ACK; the lease is stored and listed', async (t) => {
  const { svc, sent, store, records } = setup();
  await svc.handle('a', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, (d, a, p) =>
    sent.push({ data: d, address: a, port: p }),
  );
  t.equal(sent.length, 1);
  t.equal(lastReply(sent).messageType, MessageType.OFFER);
  t.equal(lastReply(sent).yiaddr, A.ip);
  t.equal(lastReply(sent).options.hostname, 'alpha');
  t.equal(
    sent[0]?.address,
    A.ip,
    'to the assigned address: the pinned MAC on its own port, never a broadcast',
  );
  t.equal(await store.get(leaseKey('a', A.mac)), undefined, 'an OFFER stores nothing');
  const request = msg(A.mac, MessageType.REQUEST, [
    [OPT.SERVER_ID, ip('10.61.0.254')],
    [OPT.REQUESTED_IP, ip(A.ip)],
  ]);
  await svc.handle('a', request, '0.0.0.0', 68, (d, a, p) => sent.push({ data: d, address: a, port: p }));
  t.equal(lastReply(sent).messageType, MessageType.ACK);
  const lease = await store.get<Lease>(leaseKey('a', A.mac));
  t.match(lease, { mac: A.mac, ip: A.ip, instance: 'i-a', network: 'a', state: 'bound' });
  t.same(
    (await svc.list('a')).map((l) => [l.mac, l.ip, l.instance_name, l.state]),
    [[A.mac, A.ip, 'alpha', 'bound']],
  );
  t.same(await svc.list('b'), [], 'another network has no leases');
  t.same(records, [], 'nothing refused, nothing audited');
});

t.test('leases survive a new service on the same store: a renewal after restart is ACKed', async (t) => {
  const store = new MemoryStore();
  const first = setup({ store });
  const req = msg(A.mac, MessageType.REQUEST, [[OPT.REQUESTED_IP, ip(A.ip)]]);
  await first.svc.handle('a', req, '0.0.0.0', 68, first.send);
  await first.svc.stop();
  const second = setup({ store, now: () => Date.parse('2025-01-01T00:30:00Z') });
  t.equal((await second.svc.list())[0]?.state, 'bound', 'the lease is there after the restart');
  await second.svc.handle('a', msg(A.mac, MessageType.REQUEST, [], A.ip), A.ip, 68, second.send);
  const ack = lastReply(second.sent);
  t.equal(ack.messageType, MessageType.ACK);
  t.equal(ack.ciaddr, A.ip);
  t.equal(second.sent[0]?.address, A.ip, 'renewal answered by unicast');
  t.equal((await store.get<Lease>(leaseKey('a', A.mac)))?.expires, '2025-01-01T01:30:00.000Z');
});

t.test(
  'unknown MAC, MAC of another network, MAC on the wrong port: silence and an audit record',
  async (t) => {
    const { svc, sent, records, fdb } = setup();
    await svc.handle('a', msg('02:00:00:00:00:99', MessageType.DISCOVER), '0.0.0.0', 68, () => sent.push());
    t.equal(sent.length, 0);
    t.match(records[0], {
      event: 'dhcp.discover',
      outcome: 'refused',
      reason: 'mac-not-assigned',
      mac: '02:00:00:00:00:99',
    });
    await svc.handle('b', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => sent.push());
    t.match(records[1], { reason: 'mac-on-other-network', mac: A.mac, network: 'b' });
    fdb.set(A.mac, B.ifname); // A's MAC now shows up behind B's port
    await svc.handle('a', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => sent.push());
    t.match(records[2], { reason: 'mac-wrong-port', mac: A.mac, port: B.ifname, instance: 'i-a' });
    fdb.delete(A.mac);
    await svc.handle('a', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => sent.push());
    t.match(records[3], { reason: 'mac-not-on-port', mac: A.mac });
    t.equal(sent.length, 0, 'no answer to any of them');
    t.same(svc.stats().refused, {
      'mac-not-assigned': 1,
      'mac-on-other-network': 1,
      'mac-wrong-port': 1,
      'mac-not-on-port': 1,
    });
  },
);

t.test('garbage is counted, never answered, never thrown', async (t) => {
  const { svc, records } = setup();
  let sent = 0;
  await svc.handle('a', Buffer.from('hello'), '0.0.0.0', 68, () => sent++);
  await svc.handle('a', Buffer.alloc(300), '0.0.0.0', 68, () => sent++);
  await svc.handle('nope', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => sent++);
  t.equal(sent, 0);
  t.equal(svc.stats().rejected['too-short'], 1);
  t.equal(svc.stats().rejected['bad-op'], 1);
  t.equal(records.length, 1, 'only the decodable packet is audited');
});

t.test('a NAK and a DECLINE are audited; a DECLINE holds the address', async (t) => {
  const { svc, sent, records, store, send } = setup();
  await svc.handle(
    'a',
    msg(A.mac, MessageType.REQUEST, [[OPT.REQUESTED_IP, ip('10.61.0.50')]]),
    '0.0.0.0',
    68,
    send,
  );
  t.equal(lastReply(sent).messageType, MessageType.NAK);
  t.match(records[0], {
    event: 'dhcp.request',
    outcome: 'refused',
    reason: /^NAK: requested address 10\.61\.0\.50/,
  });
  // The guest is given its address, probes it, finds it taken and declines it.
  await svc.handle('a', msg(A.mac, MessageType.REQUEST, [[OPT.REQUESTED_IP, ip(A.ip)]]), '0.0.0.0', 68, send);
  t.equal(lastReply(sent).messageType, MessageType.ACK);
  await svc.handle(
    'a',
    msg(A.mac, MessageType.DECLINE, [
      [OPT.SERVER_ID, ip('10.61.0.254')],
      [OPT.REQUESTED_IP, ip(A.ip)],
    ]),
    '0.0.0.0',
    68,
    send,
  );
  t.match(records[1], { event: 'dhcp.decline', outcome: 'info', reason: /in use by another host/ });
  t.equal((await store.get<Lease>(leaseKey('a', A.mac)))?.state, 'declined');
  const before = sent.length;
  await svc.handle('a', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, send);
  t.equal(sent.length, before, 'no OFFER during the decline hold');
});

t.test('the rate limit is per observed port: a chatty guest does not starve its neighbour', async (t) => {
  const { svc, records } = setup({ rate: { rate: 1, burst: 5 } });
  let a = 0;
  let b = 0;
  for (let i = 0; i < 50; i++)
    await svc.handle('a', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => a++);
  await svc.handle('a', msg(B.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => b++);
  t.equal(a, 5, 'A got its burst and no more');
  t.equal(b, 1, 'B is answered regardless');
  t.equal(svc.stats().refused['rate-limited'], 45);
  t.ok(records.every((r) => r.reason === 'rate-limited' && r.port === A.ifname));
});

t.test('a flood of random chaddrs: no store writes, no answers, audit bounded and summarised', async (t) => {
  const { svc, store, records } = setup();
  const writes = { n: 0 };
  const batch = store.batch.bind(store);
  store.batch = async (...args) => {
    writes.n++;
    return batch(...args);
  };
  let sent = 0;
  for (let i = 0; i < 5000; i++) {
    const mac = `02:${[i >> 16, (i >> 8) & 255, i & 255, 1, 2].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
    await svc.handle('a', msg(mac, MessageType.DISCOVER), '0.0.0.0', 68, () => sent++);
  }
  t.equal(sent, 0);
  t.equal(writes.n, 0, 'the service itself writes nothing for unknown MACs');
  t.ok(records.length <= 5, `at most 5 records one by one in this second (got ${records.length})`);
  await svc.flushAudit();
  const summary = records.at(-1);
  t.match(summary, { event: 'dhcp.suppressed', outcome: 'refused', network: 'a' });
  t.match(summary?.detail, { count: 5000 - 5, reasons: { 'mac-not-assigned': 4995 } });
  // A real guest is still served at once.
  let ok = 0;
  await svc.handle('a', msg(A.mac, MessageType.DISCOVER), '0.0.0.0', 68, () => ok++);
  t.equal(ok, 1);
});

t.test('PortRateLimiter refills at its rate and forgets idle ports', async (t) => {
  const l = new PortRateLimiter({ rate: 2, burst: 2, idleMs: 10_000 });
  t.ok(l.take('p', 0));
  t.ok(l.take('p', 0));
  t.notOk(l.take('p', 0), 'burst spent');
  t.notOk(l.take('p', 400), '0.8 tokens after 400 ms');
  t.ok(l.take('p', 500), 'a token after 500 ms at 2/s');
  t.ok(l.take('q', 500), 'another port has its own bucket');
  t.equal(l.size, 2);
  l.take('r', 20_000);
  t.equal(l.size, 1, 'idle buckets are swept');
});

t.test('AuditThrottle: per key, total, and one summary per key per flush', async (t) => {
  const th = new AuditThrottle({ perKey: 2, total: 3 });
  t.ok(th.admit('p1', 'x', 0));
  t.ok(th.admit('p1', 'x', 10));
  t.notOk(th.admit('p1', 'y', 20), 'p1 spent its 2');
  t.ok(th.admit('p2', 'x', 30));
  t.notOk(th.admit('p3', 'x', 40), 'the total of 3 is spent');
  t.same(
    th.flush().map((s) => [s.key, s.count, s.reasons]),
    [
      ['p1', 1, { y: 1 }],
      ['p3', 1, { x: 1 }],
    ],
  );
  t.same(th.flush(), [], 'flushed once');
  t.ok(th.admit('p1', 'x', 1000), 'a new window starts fresh');
});

/** A DECLINE or RELEASE in A's name, with A's chaddr on A's port, as a forger who knows A's IP sends it. */
const decline = (requested: string, ciaddr?: string) =>
  msg(A.mac, MessageType.DECLINE, [[OPT.REQUESTED_IP, ip(requested)]], ciaddr);
const release = (ciaddr: string) => msg(A.mac, MessageType.RELEASE, [], ciaddr);

t.test(
  'a DECLINE or RELEASE that does not hold together is refused, audited, and changes nothing',
  async (t) => {
    let clock = Date.parse('2025-01-01T00:00:00Z');
    const { svc, sent, records, store, send } = setup({ now: () => clock });
    await svc.handle(
      'a',
      msg(A.mac, MessageType.REQUEST, [[OPT.REQUESTED_IP, ip(A.ip)]]),
      '0.0.0.0',
      68,
      send,
    );
    const leased = await store.get<Lease>(leaseKey('a', A.mac));
    t.match(leased, { state: 'bound', bound_at: '2025-01-01T00:00:00.000Z' });
    // A has run for ten minutes: its probe is long over.
    clock += 600_000;
    const cases: [string, Buffer, string, string][] = [
      ['a DECLINE from a running guest’s address', decline(A.ip), A.ip, 'decline-not-from-unbound-client'],
      ['a DECLINE with ciaddr', decline(A.ip, A.ip), '0.0.0.0', 'decline-not-from-unbound-client'],
      ['a DECLINE of another IP', decline(B.ip), '0.0.0.0', 'decline-not-ours'],
      ['a DECLINE long after the ACK', decline(A.ip), '0.0.0.0', 'decline-without-fresh-ack'],
      ['a RELEASE from 0.0.0.0', release(A.ip), '0.0.0.0', 'release-not-from-assigned-ip'],
      ['a RELEASE from another address', release(A.ip), '10.61.0.77', 'release-not-from-assigned-ip'],
      ['a RELEASE of another IP', release(B.ip), B.ip, 'release-not-ours'],
    ];
    for (const [name, data, from, reason] of cases) {
      const before = records.length;
      clock += 1000; // past the audit throttle's one-second window: each record is written one by one
      await svc.handle('a', data, from, 68, send);
      t.match(
        records.slice(before),
        [{ outcome: 'refused', reason, mac: A.mac, port: A.ifname, instance: 'i-a', network: 'a' }],
        `${name}: refused as ${reason}, in A's name`,
      );
      t.same(await store.get<Lease>(leaseKey('a', A.mac)), leased, `${name}: the lease is untouched`);
    }
    t.match(records.at(-1), { detail: { ciaddr: B.ip, assigned: A.ip } }, 'the record says what was claimed');
    t.equal(svc.stats().refused['decline-without-fresh-ack'], 1);
    t.equal(svc.stats().messages['decline refused'], 4);
    // A renews as always.
    const n = sent.length;
    await svc.handle('a', msg(A.mac, MessageType.REQUEST, [], A.ip), A.ip, 68, send);
    t.equal(sent.length, n + 1);
    t.equal(lastReply(sent).messageType, MessageType.ACK);
    t.equal((await store.get<Lease>(leaseKey('a', A.mac)))?.state, 'bound');
    // A's own RELEASE, from its address, is honoured.
    await svc.handle('a', release(A.ip), A.ip, 68, send);
    t.equal((await store.get<Lease>(leaseKey('a', A.mac)))?.state, 'released');
  },
);

t.test('giaddr is ignored: a guest on a local port is answered as a local client', async (t) => {
  const { svc, sent, send } = setup();
  const relayed = encodePacket({ op: 1, xid: 9, chaddr: A.mac, giaddr: '192.0.2.1' }, [
    [OPT.MESSAGE_TYPE, Buffer.from([MessageType.DISCOVER])],
  ]);
  await svc.handle('a', relayed, '0.0.0.0', 68, send);
  t.same(
    sent.map((s) => [s.address, s.port]),
    [[A.ip, 68]],
    'to the client at its assigned address, never to the relay address',
  );
  t.equal(lastReply(sent).giaddr, '0.0.0.0', 'and the reply names no relay');
  t.equal(lastReply(sent).yiaddr, A.ip);
});
