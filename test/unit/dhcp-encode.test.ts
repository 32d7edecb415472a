import t from 'tap';
import { BerthError } from '../../base/errors.js';
import {
  type DhcpPacket,
  type DhcpReplySpec,
  decode,
  encode,
  encodePacket,
  encodeReply,
  MessageType,
  OPT,
} from '../../hostnet/dhcp/codec.js';

function request(
  type: number,
  extra: [number, Buffer][] = [],
  fields: Record<string, unknown> = {},
): DhcpPacket {
  const wire = encodePacket(
    { op: 1, xid: 0x3903f326, flags: 0x8000, chaddr: '52:54:00:ab:cd:ef', ...fields },
    [
      [OPT.MESSAGE_TYPE, Buffer.from([type])],
      [OPT.CLIENT_ID, Buffer.from('01525400abcdef', 'hex')],
      ...extra,
    ],
  );
  const r = decode(wire);
  if (!r.ok) throw new Error(r.detail);
  return r.packet;
}

function decoded(buf: Buffer): DhcpPacket {
  const r = decode(buf);
  if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
  return r.packet;
}

const PRL = (...codes: number[]): [number, Buffer] => [OPT.PARAMETER_REQUEST_LIST, Buffer.from(codes)];

const params = {
  subnetMask: '255.255.255.0',
  routers: ['10.0.0.1'],
  dnsServers: ['10.0.0.1'],
  domainName: 'lab',
  mtu: 1450,
  renewalTime: 1800,
  rebindingTime: 3150,
  classlessRoutes: [
    { destination: '169.254.169.254/32', router: '0.0.0.0' },
    { destination: '0.0.0.0/0', router: '10.0.0.1' },
  ],
};

t.test('an OFFER, byte for byte', async (t) => {
  const offer = encode({
    type: 'OFFER',
    request: request(MessageType.DISCOVER, [PRL(1, 3, 6, 121)]),
    serverId: '10.0.0.1',
    yiaddr: '10.0.0.9',
    leaseTime: 3600,
    params,
    always: [OPT.SUBNET_MASK, OPT.CLASSLESS_ROUTES, OPT.MTU],
  });
  const want = Buffer.alloc(303);
  want.set([0x02, 0x01, 0x06, 0x00, 0x39, 0x03, 0xf3, 0x26, 0, 0, 0x80, 0x00], 0);
  want.set([10, 0, 0, 9], 16); // yiaddr
  want.set([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef], 28);
  want.set([0x63, 0x82, 0x53, 0x63], 236);
  want.set(
    [
      ...[53, 1, 2],
      ...[54, 4, 10, 0, 0, 1],
      ...[51, 4, 0, 0, 0x0e, 0x10],
      ...[61, 7, 0x01, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef], // RFC 6842 echo
      ...[1, 4, 255, 255, 255, 0], // then the client's option-55 order
      ...[3, 4, 10, 0, 0, 1],
      ...[6, 4, 10, 0, 0, 1],
      ...[121, 14, 32, 169, 254, 169, 254, 0, 0, 0, 0, 0, 10, 0, 0, 1],
      ...[26, 2, 0x05, 0xaa], // then "always" options it did not ask for
      255, // 15 (domain) was neither asked for nor "always": absent
    ],
    240,
  );
  t.equal(offer.toString('hex'), want.toString('hex'));
});

t.test('option 55 decides what is sent beyond the mandatory options and "always"', async (t) => {
  const base = { serverId: '10.0.0.1', yiaddr: '10.0.0.9', leaseTime: 60, params } as const;
  const bare = decoded(encode({ ...base, type: 'OFFER', request: request(MessageType.DISCOVER) }));
  t.same([...bare.options.raw.keys()], [53, 54, 51, 61]);
  const asked = decoded(
    encode({ ...base, type: 'ACK', request: request(MessageType.REQUEST, [PRL(15, 59, 58, 99)]) }),
  );
  t.same(
    [...asked.options.raw.keys()],
    [53, 54, 51, 61, 15, 59, 58],
    'requested order; 99 is not configured',
  );
  const extra = new Map([[224, Buffer.from('x')]]);
  const withExtra = decoded(
    encode({
      ...base,
      type: 'ACK',
      request: request(MessageType.REQUEST, [PRL(224)]),
      extra,
      always: [OPT.SERVER_ID],
    }),
  );
  t.same(withExtra.options.raw.get(224), Buffer.from('x'));
  t.same(
    [...withExtra.options.raw.keys()],
    [53, 54, 51, 61, 224],
    '"always" cannot duplicate a mandatory option',
  );
});

t.test('option 82 is echoed unchanged as the last option', async (t) => {
  const relay = Buffer.from('0106657468302f3102020001', 'hex');
  const req = request(MessageType.DISCOVER, [[OPT.RELAY_AGENT_INFO, relay], PRL(1, 3)], {
    giaddr: '10.9.0.1',
  });
  const offer = decoded(
    encode({ type: 'OFFER', request: req, serverId: '10.0.0.1', yiaddr: '10.0.0.9', leaseTime: 60, params }),
  );
  const keys = [...offer.options.raw.keys()];
  t.equal(keys.at(-1), OPT.RELAY_AGENT_INFO);
  t.same(offer.options.relayAgentInfo, relay);
  t.equal(offer.giaddr, '10.9.0.1');
});

t.test('rapid commit: an ACK answers a DISCOVER only when it carried option 80', async (t) => {
  const spec = { type: 'ACK', serverId: '10.0.0.1', yiaddr: '10.0.0.9', leaseTime: 60 } as const;
  const ack = decoded(
    encode({ ...spec, request: request(MessageType.DISCOVER, [[OPT.RAPID_COMMIT, Buffer.alloc(0)]]) }),
  );
  t.equal(ack.messageType, MessageType.ACK);
  t.equal(ack.options.rapidCommit, true);
  t.throws(
    () => encode({ ...spec, request: request(MessageType.DISCOVER) }),
    /only when the client sent rapid commit/,
  );
  const plain = decoded(
    encode({ ...spec, request: request(MessageType.REQUEST, [[OPT.RAPID_COMMIT, Buffer.alloc(0)]]) }),
  );
  t.equal(plain.options.rapidCommit, false, 'a REQUEST is not a rapid-commit exchange');
  t.throws(
    () => encode({ ...spec, type: 'OFFER', request: request(MessageType.REQUEST) }),
    /REQUEST is not answered with OFFER/,
  );
  t.throws(
    () => encode({ ...spec, type: 'NAK', request: request(MessageType.DISCOVER) }),
    /DISCOVER is not answered with NAK/,
  );
  t.throws(
    () => encode({ ...spec, type: 'ACK', request: request(MessageType.RELEASE) }),
    /RELEASE is not answered/,
  );
  t.throws(() => encode({ ...spec, yiaddr: undefined, request: request(MessageType.REQUEST) }), /yiaddr/);
  t.throws(
    () => encode({ ...spec, leaseTime: undefined, request: request(MessageType.REQUEST) }),
    /option 51/,
  );
  t.throws(
    () => encode({ ...spec, serverId: '10.0.0', request: request(MessageType.REQUEST) }),
    /serverId: "10.0.0"/,
  );
});

t.test('a NAK carries only 53, 54, 56, 61 and 82, and is broadcast through a relay', async (t) => {
  const req = request(
    MessageType.REQUEST,
    [PRL(1, 3, 6), [OPT.RELAY_AGENT_INFO, Buffer.from('0102abcd', 'hex')]],
    {
      giaddr: '10.9.0.1',
      flags: 0,
      ciaddr: '10.0.0.50',
    },
  );
  const nak = decoded(
    encode({
      type: 'NAK',
      request: req,
      serverId: '10.0.0.1',
      yiaddr: '10.0.0.9',
      leaseTime: 60,
      params,
      message: 'wrong port',
    }),
  );
  t.same([...nak.options.raw.keys()], [53, 54, 56, 61, 82]);
  t.match(nak, { yiaddr: '0.0.0.0', ciaddr: '0.0.0.0', siaddr: '0.0.0.0', broadcast: true });
  t.equal(nak.options.message, 'wrong port');
  const direct = decoded(
    encode({ type: 'NAK', request: request(MessageType.REQUEST, [], { flags: 0 }), serverId: '10.0.0.1' }),
  );
  t.equal(direct.broadcast, false, "without a relay the flags are the client's");
});

t.test('an INFORM answer has no lease: no yiaddr, no 51/58/59, ciaddr echoed', async (t) => {
  const req = request(MessageType.INFORM, [PRL(1, 58, 59, 51, 121)], { ciaddr: '10.0.0.77' });
  const ack = decoded(
    encode({
      type: 'ACK',
      request: req,
      serverId: '10.0.0.1',
      params,
      always: [OPT.RENEWAL_TIME],
      siaddr: '10.0.0.2',
    }),
  );
  t.same([...ack.options.raw.keys()], [53, 54, 61, 1, 121]);
  t.match(ack, { yiaddr: '0.0.0.0', ciaddr: '10.0.0.77', siaddr: '10.0.0.2' });
});

// Big enough to need overload at the 576-octet minimum.
const bigParams = {
  ...params,
  dnsServers: Array.from({ length: 40 }, (_, i) => `10.1.0.${i + 1}`),
  classlessRoutes: Array.from({ length: 6 }, (_, i) => ({
    destination: `10.${i}.0.0/16`,
    router: '10.0.0.1',
  })),
  domainName: 'd'.repeat(120),
};
const ALL = [1, 3, 6, 15, 26, 58, 59, 121];

t.test('overload into file and sname keeps a reply within 576 octets', async (t) => {
  const req = request(MessageType.DISCOVER, [PRL(...ALL)]);
  const spec: DhcpReplySpec = {
    type: 'OFFER',
    request: req,
    serverId: '10.0.0.1',
    yiaddr: '10.0.0.9',
    leaseTime: 60,
    params: bigParams,
  };
  const r = encodeReply(spec);
  t.ok(r.buffer.length <= 548, `${r.buffer.length} octets`);
  t.equal(r.overload, 3);
  t.same(r.dropped, []);
  const back = decoded(r.buffer);
  t.equal(back.overload, 3);
  t.same(back.options.dnsServers, bigParams.dnsServers);
  t.same(back.options.classlessRoutes, bigParams.classlessRoutes);
  t.equal(back.options.domainName, bigParams.domainName);
  t.same([...back.options.raw.keys()].slice(0, 2), [53, 52]);

  const roomy = encodeReply({
    ...spec,
    request: request(MessageType.DISCOVER, [PRL(...ALL), [57, Buffer.from([5, 0xdc])]]),
  });
  t.equal(roomy.overload, 0, 'a client that accepts 1500 octets gets one options field');
  t.ok(roomy.buffer.length <= 1500 - 28);
  t.equal(
    encodeReply(spec, { maxSize: 300 }).buffer.length <= 548,
    true,
    'the server cannot go below 576 either',
  );

  const dns = Array.from({ length: 60 }, (_, i) => `10.1.0.${i + 1}`);
  const withFile = encodeReply({ ...spec, params: { ...params, dnsServers: dns }, file: 'pxelinux.0' });
  t.equal(withFile.overload, 2, 'a boot file leaves only sname to overload');
  t.equal(decoded(withFile.buffer).file, 'pxelinux.0');
});

t.test('when overload is not enough, optional options are dropped, requested-only ones first', async (t) => {
  const huge = {
    ...bigParams,
    dnsServers: Array.from({ length: 60 }, (_, i) => `10.1.0.${i + 1}`),
    domainName: 'd'.repeat(200),
  };
  const req = request(MessageType.DISCOVER, [PRL(6, 15, 121, 1, 3)]);
  const r = encodeReply({
    type: 'OFFER',
    request: req,
    serverId: '10.0.0.1',
    yiaddr: '10.0.0.9',
    leaseTime: 60,
    params: huge,
    always: [OPT.SUBNET_MASK, OPT.ROUTERS, OPT.CLASSLESS_ROUTES],
  });
  t.same(r.dropped, [OPT.DOMAIN_NAME], 'the last requested option that is not "always" goes first');
  t.ok(r.buffer.length <= 548);
  const keys = [...decoded(r.buffer).options.raw.keys()];
  t.ok([1, 3, 6, 121].every((c) => keys.includes(c)));

  const relay = Buffer.alloc(400, 7);
  try {
    encode({
      type: 'OFFER',
      request: request(1, [[82, relay]]),
      serverId: '10.0.0.1',
      yiaddr: '10.0.0.9',
      leaseTime: 1,
    });
    t.fail('a 400-octet option 82 cannot be echoed within 576 octets');
  } catch (err) {
    t.ok(err instanceof BerthError && err.code === 'BERTH_ERR_INVALID_ARGUMENT', String(err));
    t.match(String(err), /mandatory reply options do not fit the 576-octet limit/);
  }
});

t.test('random replies never exceed the size the client accepts', async (t) => {
  let seed = 0x5eed;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  let overloaded = 0;
  let dropped = 0;
  for (let i = 0; i < 500; i++) {
    const max = rnd(2000);
    const p = {
      ...params,
      dnsServers: Array.from({ length: 1 + rnd(60) }, (_, k) => `10.2.${k}.1`),
      classlessRoutes: Array.from({ length: 1 + rnd(30) }, (_, k) => ({
        destination: `10.${k}.0.0/16`,
        router: '10.0.0.1',
      })),
      domainName: 'x'.repeat(1 + rnd(250)),
    };
    const req = request(MessageType.DISCOVER, [PRL(...ALL), [57, Buffer.from([max >> 8, max & 255])]]);
    const serverMax = 576 + rnd(1500);
    const r = encodeReply(
      {
        type: 'OFFER',
        request: req,
        serverId: '10.0.0.1',
        yiaddr: '10.0.0.9',
        leaseTime: 60,
        params: p,
        always: [1, 121],
      },
      { maxSize: serverMax },
    );
    const limit = Math.max(576, Math.min(serverMax, Math.max(576, max))) - 28;
    if (r.buffer.length > limit) t.fail(`case ${i}: ${r.buffer.length} > ${limit}`);
    const back = decoded(r.buffer);
    if (!r.dropped.includes(6)) t.same(back.options.dnsServers, p.dnsServers);
    if (r.overload) overloaded++;
    if (r.dropped.length) dropped++;
  }
  t.ok(overloaded > 0 && dropped > 0, `${overloaded} overloaded, ${dropped} with drops`);
});
