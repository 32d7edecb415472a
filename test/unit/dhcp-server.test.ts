// The DHCP state machine (RFC 2131 §4.3) without any I/O: every client message
// type, every NAK case, where replies go, and what the lease becomes.
import t from 'tap';
import { BROADCAST_FLAG, decode, encode, encodePacket, MessageType, OPT } from '../../hostnet/dhcp/codec.js';
import {
  type Binding,
  type DecideInput,
  decide,
  type Lease,
  leaseStatus,
  REFUSED_REASONS,
  replyParams,
  type ServedNetwork,
} from '../../hostnet/dhcp/server.js';

const NET: ServedNetwork = {
  name: 'a',
  subnet: '10.61.0.0/24',
  gateway: '10.61.0.1',
  dns: ['10.61.0.1', '9.9.9.9'],
  domain: 'lab.test',
  mtu: 1400,
  serverId: '10.61.0.254',
  leaseSeconds: 3600,
  declineHoldSeconds: 60,
};
const GUEST: Binding = { mac: '0a:b7:e7:00:00:05', ip: '10.61.0.5', instance: 'i-1', hostname: 'web1' };
const NOW = Date.parse('2025-01-01T00:00:00Z');

interface Msg {
  type: number;
  ciaddr?: string;
  giaddr?: string;
  /** The datagram's source IP; by default ciaddr, as a client sends from the address it holds. */
  source?: string;
  flags?: number;
  requested?: string;
  server?: string;
  rapid?: boolean;
  prl?: number[];
}

function packet(m: Msg) {
  const opts: [number, Buffer][] = [[OPT.MESSAGE_TYPE, Buffer.from([m.type])]];
  if (m.requested) opts.push([OPT.REQUESTED_IP, Buffer.from(m.requested.split('.').map(Number))]);
  if (m.server) opts.push([OPT.SERVER_ID, Buffer.from(m.server.split('.').map(Number))]);
  if (m.rapid) opts.push([OPT.RAPID_COMMIT, Buffer.alloc(0)]);
  opts.push([OPT.PARAMETER_REQUEST_LIST, Buffer.from(m.prl ?? [1, 3, 6, 15])]);
  const r = decode(
    encodePacket(
      {
        op: 1,
        xid: 0x1234,
        chaddr: GUEST.mac,
        ...(m.ciaddr ? { ciaddr: m.ciaddr } : {}),
        ...(m.giaddr ? { giaddr: m.giaddr } : {}),
        ...(m.flags ? { flags: m.flags } : {}),
      },
      opts,
    ),
  );
  if (!r.ok) throw new Error(r.detail);
  return r.packet;
}

function run(m: Msg, lease?: Lease, now = NOW) {
  const source = m.source ?? m.ciaddr ?? '0.0.0.0';
  const input: DecideInput = { packet: packet(m), source, binding: GUEST, network: NET, lease, now };
  return decide(input);
}

/** What the client would read: the encoded reply decoded again. */
function wire(d: ReturnType<typeof decide>) {
  if (!d.reply) throw new Error('no reply');
  const r = decode(encode(d.reply.spec, { maxSize: NET.mtu }));
  if (!r.ok) throw new Error(r.detail);
  return r.packet;
}

const bound = (expires = NOW + 3_600_000, boundAt = NOW - 1_000): Lease => ({
  mac: GUEST.mac,
  ip: GUEST.ip,
  instance: 'i-1',
  network: 'a',
  expires: new Date(expires).toISOString(),
  state: 'bound',
  bound_at: new Date(boundAt).toISOString(),
});

t.test(
  'DISCOVER gets an OFFER of the fixed IP with every option, to the assigned address (its pinned MAC), and stores nothing',
  async (t) => {
    const d = run({ type: MessageType.DISCOVER });
    t.equal(d.lease, undefined, 'an OFFER writes no lease');
    t.same(d.reply?.to, { address: GUEST.ip, port: 68 });
    const p = wire(d);
    t.equal(p.messageType, MessageType.OFFER);
    t.equal(p.yiaddr, '10.61.0.5');
    t.equal(p.options.serverId, '10.61.0.254');
    t.equal(p.options.leaseTime, 3600);
    t.equal(p.options.subnetMask, '255.255.255.0');
    t.same(p.options.routers, ['10.61.0.1']);
    t.same(p.options.dnsServers, ['10.61.0.1', '9.9.9.9']);
    t.equal(p.options.domainName, 'lab.test');
    t.equal(p.options.hostname, 'web1', 'hostname is sent even though 12 was not asked for');
    t.equal(p.options.mtu, 1400, 'MTU is sent even though 26 was not asked for');
    t.same(
      p.options.classlessRoutes,
      [
        { destination: '169.254.169.254/32', router: '0.0.0.0' },
        { destination: '0.0.0.0/0', router: '10.61.0.1' },
      ],
      'option 121: metadata on-link, and the default route (121 makes clients ignore option 3)',
    );
  },
);

t.test('without a gateway: no router, and 121 carries only the on-link metadata route', async (t) => {
  const params = replyParams({ ...NET, gateway: undefined, dns: [], domain: undefined }, GUEST);
  t.equal(params.routers, undefined);
  t.equal(params.dnsServers, undefined);
  t.equal(params.domainName, undefined);
  t.same(params.classlessRoutes, [{ destination: '169.254.169.254/32', router: '0.0.0.0' }]);
});

t.test('DISCOVER with rapid commit is answered by an ACK that binds the lease', async (t) => {
  const d = run({ type: MessageType.DISCOVER, rapid: true });
  const p = wire(d);
  t.equal(p.messageType, MessageType.ACK);
  t.ok(p.options.rapidCommit, 'the ACK carries option 80');
  t.equal(d.lease?.state, 'bound');
  t.equal(d.lease?.expires, new Date(NOW + 3_600_000).toISOString());
});

t.test('REQUEST in SELECTING: ours is ACKed, another server is ignored, a wrong IP is NAKed', async (t) => {
  const ok = run({ type: MessageType.REQUEST, server: NET.serverId, requested: GUEST.ip });
  t.equal(wire(ok).messageType, MessageType.ACK);
  t.equal(wire(ok).yiaddr, GUEST.ip);
  t.same(ok.reply?.to, { address: GUEST.ip, port: 68 });
  t.same(ok.lease, bound(undefined, NOW), 'the ACK binds the lease for lease time');

  const other = run({ type: MessageType.REQUEST, server: '10.61.0.2', requested: GUEST.ip });
  t.equal(other.reply, undefined, 'the client chose another server: stay silent');
  t.equal(other.reason, 'other-server');
  t.equal(other.lease, undefined);

  const wrong = run({ type: MessageType.REQUEST, server: NET.serverId, requested: '10.61.0.9' });
  const nak = wire(wrong);
  t.equal(nak.messageType, MessageType.NAK);
  t.equal(nak.yiaddr, '0.0.0.0');
  t.equal(nak.options.leaseTime, undefined, 'a NAK carries no lease time');
  t.match(nak.options.message, /10\.61\.0\.9 is not this client's address/);
  t.same(wrong.reply?.to, { address: '255.255.255.255', port: 68 }, 'NAKs are broadcast');
  t.equal(wrong.lease, undefined);
});

t.test('REQUEST in INIT-REBOOT: right IP ACKed; another subnet or another IP NAKed', async (t) => {
  const ok = run({ type: MessageType.REQUEST, requested: GUEST.ip });
  t.equal(wire(ok).messageType, MessageType.ACK);
  t.equal(ok.lease?.state, 'bound');

  const subnet = run({ type: MessageType.REQUEST, requested: '192.168.1.5' });
  t.equal(wire(subnet).messageType, MessageType.NAK);
  t.match(subnet.reason, /192\.168\.1\.5 is not on network 10\.61\.0\.0\/24/);

  const other = run({ type: MessageType.REQUEST, requested: '10.61.0.6' });
  t.equal(wire(other).messageType, MessageType.NAK);
  t.match(other.reason, /10\.61\.0\.6 is not this client's address/);
});

t.test('REQUEST in RENEWING/REBINDING: unicast ACK to ciaddr; a foreign ciaddr is NAKed', async (t) => {
  const old = bound(NOW + 1000);
  const renew = run({ type: MessageType.REQUEST, ciaddr: GUEST.ip }, old);
  const p = wire(renew);
  t.equal(p.messageType, MessageType.ACK);
  t.equal(p.ciaddr, GUEST.ip, 'the ACK echoes ciaddr');
  t.same(renew.reply?.to, { address: GUEST.ip, port: 68 }, 'renewals are answered by unicast');
  t.equal(renew.lease?.expires, new Date(NOW + 3_600_000).toISOString(), 'the lease is extended');

  const rebind = run({ type: MessageType.REQUEST, ciaddr: GUEST.ip, flags: BROADCAST_FLAG }, old);
  t.equal(wire(rebind).messageType, MessageType.ACK);
  t.same(rebind.reply?.to, { address: GUEST.ip, port: 68 }, 'a client with an address is reachable there');

  const foreign = run({ type: MessageType.REQUEST, ciaddr: '10.61.0.77' }, old);
  t.equal(wire(foreign).messageType, MessageType.NAK);
  t.same(foreign.reply?.to, { address: '255.255.255.255', port: 68 });

  const empty = run({ type: MessageType.REQUEST });
  t.equal(empty.reply, undefined);
  t.equal(empty.reason, 'request-without-address');
});

t.test('giaddr is ignored: replies go to the local client, never toward a relay address', async (t) => {
  const d = run({ type: MessageType.DISCOVER, giaddr: '10.61.0.1' });
  t.same(d.reply?.to, { address: GUEST.ip, port: 68 });
  const renew = run({ type: MessageType.REQUEST, ciaddr: GUEST.ip, giaddr: '192.0.2.9' }, bound());
  t.same(renew.reply?.to, { address: GUEST.ip, port: 68 });
  const nak = run({ type: MessageType.REQUEST, requested: '10.61.0.9', giaddr: '192.0.2.9' });
  t.same(nak.reply?.to, { address: '255.255.255.255', port: 68 });
});

t.test('an ACK for a new binding marks when; a renewal keeps the mark', async (t) => {
  const fresh = run({ type: MessageType.REQUEST, server: NET.serverId, requested: GUEST.ip });
  t.equal(fresh.lease?.bound_at, new Date(NOW).toISOString(), 'SELECTING');
  const reboot = run({ type: MessageType.REQUEST, requested: GUEST.ip }, undefined, NOW + 5);
  t.equal(reboot.lease?.bound_at, new Date(NOW + 5).toISOString(), 'INIT-REBOOT');
  const rapid = run({ type: MessageType.DISCOVER, rapid: true }, undefined, NOW + 7);
  t.equal(rapid.lease?.bound_at, new Date(NOW + 7).toISOString(), 'rapid commit');
  const renew = run({ type: MessageType.REQUEST, ciaddr: GUEST.ip }, bound(NOW, NOW - 900_000), NOW + 9);
  t.equal(renew.lease?.bound_at, new Date(NOW - 900_000).toISOString(), 'RENEWING keeps it');
  const old = run({ type: MessageType.REQUEST, ciaddr: GUEST.ip }, {
    ...bound(),
    bound_at: undefined,
  } as Lease);
  t.equal(old.lease?.bound_at, undefined, 'a lease from before the mark stays without one');
});

t.test('DECLINE holds the address back; nothing is offered until the hold ends', async (t) => {
  const d = run({ type: MessageType.DECLINE, server: NET.serverId, requested: GUEST.ip }, bound());
  t.equal(d.reply, undefined, 'DECLINE is never answered');
  t.equal(d.lease?.state, 'declined');
  t.equal(d.lease?.expires, new Date(NOW + 60_000).toISOString());
  const held = d.lease as Lease;
  t.equal(run({ type: MessageType.DISCOVER }, held, NOW + 59_000).reason, 'declined-hold');
  t.equal(
    run({ type: MessageType.REQUEST, requested: GUEST.ip }, held, NOW + 59_000).reason,
    'declined-hold',
  );
  t.equal(wire(run({ type: MessageType.DISCOVER }, held, NOW + 61_000)).messageType, MessageType.OFFER);
  t.equal(
    run({ type: MessageType.DECLINE, server: NET.serverId, requested: '10.61.0.9' }).reason,
    'decline-not-ours',
  );
  t.equal(
    run({ type: MessageType.DECLINE, server: '10.61.0.2', requested: GUEST.ip }).reason,
    'other-server',
  );
});

t.test('a DECLINE that does not hold together as the guest’s own probe changes nothing', async (t) => {
  const rows: [string, Msg, Lease | undefined, number, string][] = [
    [
      'from an address',
      { type: MessageType.DECLINE, requested: GUEST.ip, source: GUEST.ip },
      bound(),
      NOW,
      'decline-not-from-unbound-client',
    ],
    [
      'with ciaddr set',
      { type: MessageType.DECLINE, requested: GUEST.ip, ciaddr: GUEST.ip, source: '0.0.0.0' },
      bound(),
      NOW,
      'decline-not-from-unbound-client',
    ],
    [
      'naming another IP',
      { type: MessageType.DECLINE, requested: '10.61.0.9' },
      bound(),
      NOW,
      'decline-not-ours',
    ],
    ['naming no IP', { type: MessageType.DECLINE }, bound(), NOW, 'decline-not-ours'],
    [
      'no lease at all',
      { type: MessageType.DECLINE, requested: GUEST.ip },
      undefined,
      NOW,
      'decline-without-fresh-ack',
    ],
    [
      'long after the ACK (a running guest)',
      { type: MessageType.DECLINE, requested: GUEST.ip },
      bound(NOW + 3_600_000, NOW - 16_000),
      NOW,
      'decline-without-fresh-ack',
    ],
    [
      'a lease from before bound_at',
      { type: MessageType.DECLINE, requested: GUEST.ip },
      { ...bound(), bound_at: undefined } as Lease,
      NOW,
      'decline-without-fresh-ack',
    ],
    [
      'an ACK in the future (clock step)',
      { type: MessageType.DECLINE, requested: GUEST.ip },
      bound(NOW + 3_600_000, NOW + 5_000),
      NOW,
      'decline-without-fresh-ack',
    ],
  ];
  for (const [name, m, lease, now, reason] of rows) {
    const d = run(m, lease, now);
    t.equal(d.reason, reason, name);
    t.equal(d.lease, undefined, `${name}: the lease is untouched`);
    t.ok(REFUSED_REASONS.has(reason), `${name}: audited as a refusal`);
  }
  t.equal(
    run({ type: MessageType.DECLINE, requested: GUEST.ip }, bound(undefined, NOW - 15_000)).lease?.state,
    'declined',
    'at the window’s edge it holds',
  );
});

t.test('RELEASE ends the lease now; a release of someone else is refused', async (t) => {
  const d = run({ type: MessageType.RELEASE, ciaddr: GUEST.ip, server: NET.serverId }, bound());
  t.equal(d.reply, undefined);
  t.equal(d.lease?.state, 'released');
  t.equal(d.lease?.expires, new Date(NOW).toISOString());
  const rows: [string, Msg, Lease | undefined, string][] = [
    ['naming another IP', { type: MessageType.RELEASE, ciaddr: '10.61.0.9' }, bound(), 'release-not-ours'],
    ['naming no IP', { type: MessageType.RELEASE, source: GUEST.ip }, bound(), 'release-not-ours'],
    [
      'from 0.0.0.0',
      { type: MessageType.RELEASE, ciaddr: GUEST.ip, source: '0.0.0.0' },
      bound(),
      'release-not-from-assigned-ip',
    ],
    [
      'from another address',
      { type: MessageType.RELEASE, ciaddr: GUEST.ip, source: '10.61.0.77' },
      bound(),
      'release-not-from-assigned-ip',
    ],
    [
      'with no lease held',
      { type: MessageType.RELEASE, ciaddr: GUEST.ip },
      undefined,
      'release-without-lease',
    ],
  ];
  for (const [name, m, lease, reason] of rows) {
    const r = run(m, lease);
    t.equal(r.reason, reason, name);
    t.equal(r.lease, undefined, `${name}: the lease is untouched`);
    t.ok(REFUSED_REASONS.has(reason), `${name}: audited as a refusal`);
  }
  t.notOk(REFUSED_REASONS.has('released'));
  t.notOk(REFUSED_REASONS.has('other-server'), 'a message for another server is not a refusal');
});

t.test('INFORM gets parameters only, unicast to ciaddr, and no lease', async (t) => {
  const d = run({ type: MessageType.INFORM, ciaddr: GUEST.ip });
  const p = wire(d);
  t.equal(p.messageType, MessageType.ACK);
  t.equal(p.yiaddr, '0.0.0.0');
  t.equal(p.options.leaseTime, undefined, 'no lease time in an INFORM answer');
  t.equal(p.options.mtu, 1400);
  t.same(d.reply?.to, { address: GUEST.ip, port: 68 });
  t.equal(d.lease, undefined);
  t.equal(run({ type: MessageType.INFORM }).reason, 'inform-without-ciaddr');
  t.equal(run({ type: MessageType.INFORM, ciaddr: '10.61.0.9' }).reason, 'inform-wrong-address');
});

t.test('server-to-client types are never acted on', async (t) => {
  t.equal(run({ type: MessageType.OFFER }).reason, 'not-a-client-message');
  t.equal(run({ type: MessageType.NAK }).reason, 'not-a-client-message');
});

t.test('a bound lease past its end reads as expired', async (t) => {
  t.equal(leaseStatus(bound(NOW + 1), NOW), 'bound');
  t.equal(leaseStatus(bound(NOW), NOW), 'expired');
  t.equal(leaseStatus({ ...bound(NOW - 5), state: 'released' }, NOW), 'released');
});

t.test(
  'an OFFER or ACK is unicast to the assigned address unless the client sets the broadcast flag (RFC 2131 §4.1)',
  async (t) => {
    t.same(
      run({ type: MessageType.DISCOVER }).reply?.to,
      { address: GUEST.ip, port: 68 },
      'flag clear: unicast',
    );
    const offer = run({ type: MessageType.DISCOVER, flags: BROADCAST_FLAG });
    t.same(offer.reply?.to, { address: '255.255.255.255', port: 68 }, 'flag set: broadcast');
    const ack = run({
      type: MessageType.REQUEST,
      server: NET.serverId,
      requested: GUEST.ip,
      flags: BROADCAST_FLAG,
    });
    t.same(ack.reply?.to, { address: '255.255.255.255', port: 68 });
    t.equal(wire(ack).flags & BROADCAST_FLAG, BROADCAST_FLAG, 'the flag is echoed as RFC 2131 asks');
  },
);
