import t from 'tap';
import {
  DECODE_REJECTIONS,
  type DecodeRejection,
  type DhcpPacket,
  decode,
  decodeClasslessRoutes,
  encodeClasslessRoutes,
  encodePacket,
  MessageType,
  messageTypeName,
  OPT,
  RejectionCounter,
} from '../../hostnet/dhcp/codec.js';

// A DISCOVER written octet by octet from RFC 2131 figure 1, not by the codec.
function handDiscover(): Buffer {
  const b = Buffer.alloc(300);
  b.set([0x01, 0x01, 0x06, 0x02], 0); // op BOOTREQUEST, htype Ethernet, hlen 6, hops 2
  b.set([0x39, 0x03, 0xf3, 0x26], 4); // xid
  b.set([0x00, 0x07], 8); // secs 7
  b.set([0x80, 0x00], 10); // flags: broadcast
  b.set([10, 9, 8, 7], 24); // giaddr
  b.set([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef], 28); // chaddr
  b.set([...Buffer.from('boot-srv')], 44); // sname
  b.set([...Buffer.from('pxe.0')], 108); // file
  b.set([0x63, 0x82, 0x53, 0x63], 236); // magic cookie
  b.set(
    [
      ...[53, 1, 1], // DISCOVER
      0, // a pad in the middle
      ...[61, 7, 1, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef],
      ...[55, 5, 1, 3, 6, 15, 121],
      ...[57, 2, 0x05, 0xdc],
      ...[12, 5, ...Buffer.from('vm-01')],
      ...[50, 4, 10, 0, 0, 9],
      ...[80, 0],
      ...[82, 6, 1, 4, 0xde, 0xad, 0xbe, 0xef],
      ...[224, 3, 0xaa, 0xbb, 0xcc], // unknown, kept raw
      255,
    ],
    240,
  );
  return b;
}

function ok(buf: Buffer): DhcpPacket {
  const r = decode(buf);
  if (!r.ok) throw new Error(`decode rejected: ${r.reason}: ${r.detail}`);
  return r.packet;
}

t.test('decodes a hand-written DISCOVER field by field', async (t) => {
  const p = ok(handDiscover());
  t.match(p, {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 2,
    xid: 0x3903f326,
    secs: 7,
    flags: 0x8000,
    broadcast: true,
    ciaddr: '0.0.0.0',
    giaddr: '10.9.8.7',
    chaddr: '52:54:00:ab:cd:ef',
    sname: 'boot-srv',
    file: 'pxe.0',
    overload: 0,
    messageType: MessageType.DISCOVER,
  });
  t.equal(p.chaddrRaw.length, 16);
  const o = p.options;
  t.same(o.parameterRequestList, [1, 3, 6, 15, 121]);
  t.equal(o.maxMessageSize, 1500);
  t.equal(o.hostname, 'vm-01');
  t.equal(o.requestedIp, '10.0.0.9');
  t.equal(o.rapidCommit, true);
  t.same(o.clientId, { raw: Buffer.from('01525400abcdef', 'hex'), hex: '01:52:54:00:ab:cd:ef' });
  t.same(o.relayAgentInfo, Buffer.from('0104deadbeef', 'hex'));
  t.same(o.raw.get(224), Buffer.from('aabbcc', 'hex'));
  t.equal(o.serverId, undefined);
  t.same([...o.raw.keys()], [53, 61, 55, 57, 12, 50, 80, 82, 224]);
});

t.test('decodes a hand-written ACK with every server option', async (t) => {
  const b = Buffer.alloc(320);
  b.set([0x02, 0x01, 0x06, 0x00, 0, 0, 0, 42], 0);
  b.set([10, 0, 0, 9], 16); // yiaddr
  b.set([0xaa, 0xbb, 0xcc, 0, 0, 1], 28);
  b.set([0x63, 0x82, 0x53, 0x63], 236);
  b.set(
    [
      ...[53, 1, 5],
      ...[54, 4, 10, 0, 0, 1],
      ...[51, 4, 0, 0, 0x0e, 0x10],
      ...[58, 4, 0, 0, 0x07, 0x08],
      ...[59, 4, 0, 0, 0x0c, 0x4e],
      ...[1, 4, 255, 255, 255, 0],
      ...[3, 8, 10, 0, 0, 1, 10, 0, 0, 2],
      ...[6, 4, 9, 9, 9, 9],
      ...[15, 7, ...Buffer.from('example')],
      ...[26, 2, 0x05, 0xdc],
      ...[28, 4, 10, 0, 0, 255],
      ...[121, 5, 0, 10, 0, 0, 1],
      ...[56, 2, 0x68, 0x69],
      255,
    ],
    240,
  );
  const o = ok(b).options;
  t.equal(o.messageType, MessageType.ACK);
  t.equal(o.serverId, '10.0.0.1');
  t.same([o.leaseTime, o.renewalTime, o.rebindingTime], [3600, 1800, 3150]);
  t.equal(o.subnetMask, '255.255.255.0');
  t.same(o.routers, ['10.0.0.1', '10.0.0.2']);
  t.same(o.dnsServers, ['9.9.9.9']);
  t.equal(o.domainName, 'example');
  t.equal(o.mtu, 1500);
  t.equal(o.broadcastAddress, '10.0.0.255');
  t.same(o.classlessRoutes, [{ destination: '0.0.0.0/0', router: '10.0.0.1' }]);
  t.equal(o.message, 'hi');
  t.equal(o.rapidCommit, false);
});

t.test('overload: options continue in file, then sname, concatenated in that order', async (t) => {
  const b = Buffer.alloc(300);
  b.set([0x01, 0x01, 0x06, 0x00, 1, 2, 3, 4], 0);
  b.set([0x63, 0x82, 0x53, 0x63], 236);
  b.set([53, 1, 3, 52, 1, 3, 200, 1, 0x41, 6, 4, 1, 1, 1, 1, 255], 240);
  b.set([200, 1, 0x42, 6, 4, 2, 2, 2, 2, 255], 108); // file
  b.set([200, 1, 0x43, 12, 3, 0x61, 0x62, 0x63, 255], 44); // sname
  const p = ok(b);
  t.equal(p.overload, 3);
  t.equal(p.sname, '', 'an overloaded sname is not text');
  t.equal(p.file, '');
  t.same(p.options.raw.get(200), Buffer.from('ABC'));
  t.same(p.options.dnsServers, ['1.1.1.1', '2.2.2.2']);
  t.equal(p.options.hostname, 'abc');

  b[245] = 1; // file only: sname is text again, its options unread
  const fileOnly = ok(b);
  t.same(fileOnly.options.raw.get(200), Buffer.from('AB'));
  t.equal(fileOnly.options.hostname, undefined);
  t.equal(fileOnly.sname.length > 0, true);
});

t.test(
  'RFC 3396: an option split into instances is one value; encode splits values over 255 octets',
  async (t) => {
    const value = Buffer.from(Array.from({ length: 600 }, (_, i) => i & 255));
    const wire = encodePacket({ op: 1, xid: 9, chaddr: '52:54:00:00:00:01' }, [
      [OPT.MESSAGE_TYPE, Buffer.from([MessageType.REQUEST])],
      [OPT.RELAY_AGENT_INFO, value],
    ]);
    t.same(
      [wire[243], wire[244], wire[243 + 257], wire[244 + 257], wire[243 + 514], wire[244 + 514]],
      [82, 255, 82, 255, 82, 90],
    );
    t.same(ok(wire).options.relayAgentInfo, value);

    const split = Buffer.alloc(300);
    split.set([1, 1, 6, 0], 0);
    split.set([0x63, 0x82, 0x53, 0x63], 236);
    split.set([53, 1, 1, 6, 2, 8, 8, 55, 1, 1, 6, 2, 8, 8, 255], 240);
    t.same(ok(split).options.dnsServers, ['8.8.8.8'], 'two halves of option 6 around another option');
  },
);

t.test('RFC 3442 examples: destination descriptors', async (t) => {
  // The table in RFC 3442 §3 ("Subnet number / Subnet mask / Destination descriptor").
  const examples: [string, number[]][] = [
    ['0.0.0.0/0', [0]],
    ['10.0.0.0/8', [8, 10]],
    ['10.0.0.0/24', [24, 10, 0, 0]],
    ['10.17.0.0/16', [16, 10, 17]],
    ['10.27.129.0/24', [24, 10, 27, 129]],
    ['10.229.0.128/25', [25, 10, 229, 0, 128]],
    ['10.198.122.47/32', [32, 10, 198, 122, 47]],
  ];
  for (const [cidr, descriptor] of examples) {
    const bytes = encodeClasslessRoutes([{ destination: cidr, router: '10.0.0.1' }]);
    t.same([...bytes], [...descriptor, 10, 0, 0, 1], cidr);
    t.same(decodeClasslessRoutes(bytes), [{ destination: cidr, router: '10.0.0.1' }]);
  }
  const metadata = encodeClasslessRoutes([
    { destination: '169.254.169.254/32', router: '0.0.0.0' },
    { destination: '0.0.0.0/0', router: '192.168.1.1' },
  ]);
  t.equal(metadata.toString('hex'), '20a9fea9fe00000000' + '00c0a80101');
  t.same(decodeClasslessRoutes(Buffer.from([25, 10, 229, 0, 129, 0, 0, 0, 0])), [
    { destination: '10.229.0.128/25', router: '0.0.0.0' },
  ]);
  for (const bad of [[33, 1, 2, 3, 4, 0, 0, 0, 0], [24, 10, 0, 0, 1, 2, 3], [0, 1, 2, 3], []]) {
    t.equal(decodeClasslessRoutes(Buffer.from(bad)), undefined, `rejects ${bad.join('.')}`);
  }
  t.throws(() => encodeClasslessRoutes([{ destination: '10.0.0.1/24', router: '0.0.0.0' }]), /host bits set/);
  t.throws(() => encodeClasslessRoutes([{ destination: '10.0.0.0/8', router: '10.0.0.256' }]), /not an IPv4/);
  t.throws(() => encodeClasslessRoutes([]), /at least one route/);
});

t.test('round trip for every message type, byte for byte', async (t) => {
  for (let type = 1; type <= 18; type++) {
    const options: [number, Buffer][] = [
      [OPT.MESSAGE_TYPE, Buffer.from([type])],
      [OPT.SERVER_ID, Buffer.from([10, 0, 0, 1])],
      [OPT.CLIENT_ID, Buffer.from('ff00112233', 'hex')],
      [OPT.PARAMETER_REQUEST_LIST, Buffer.from([1, 3, 6, 121])],
      [
        OPT.CLASSLESS_ROUTES,
        encodeClasslessRoutes([{ destination: '169.254.169.254/32', router: '0.0.0.0' }]),
      ],
      [OPT.HOSTNAME, Buffer.from(`host-${type}`)],
    ];
    const fields = {
      op: type === 2 || type === 5 || type === 6 ? 2 : 1,
      xid: 0xdeadbeef - type,
      secs: type,
      flags: 0x8000,
      ciaddr: `10.0.0.${type}`,
      yiaddr: '10.0.1.2',
      siaddr: '10.0.1.3',
      giaddr: '10.0.1.4',
      chaddr: `52:54:00:00:00:${type.toString(16).padStart(2, '0')}`,
      sname: 'srv',
      file: 'boot',
    };
    const wire = encodePacket(fields, options);
    const p = ok(wire);
    t.equal(p.messageType, type, messageTypeName(p.messageType));
    t.match(p, { ...fields, broadcast: true });
    t.same([...p.options.raw], options);
    const again = encodePacket({ ...p, chaddr: p.chaddrRaw.subarray(0, p.hlen) }, p.options.raw);
    t.same(again, wire, `${messageTypeName(p.messageType)} re-encodes to the same bytes`);
  }
});

// One input per reason; the test fails if a reason is added without a case here.
function base(): Buffer {
  return encodePacket({ op: 1, xid: 1, chaddr: '52:54:00:00:00:01' }, [[OPT.MESSAGE_TYPE, Buffer.from([1])]]);
}
function withOptions(bytes: number[]): Buffer {
  const b = base();
  b.fill(0, 240);
  b.set(bytes, 240);
  return b;
}
const REJECTS: Record<DecodeRejection, [string, () => Buffer][]> = {
  'too-short': [
    ['empty', () => Buffer.alloc(0)],
    ['239 octets', () => base().subarray(0, 239)],
  ],
  'too-long': [['8973 octets', () => Buffer.concat([base(), Buffer.alloc(8973 - 300)])]],
  'bad-op': [['op 3', () => Object.assign(base(), { 0: 3 })]],
  'bad-htype': [['htype 0', () => Object.assign(base(), { 1: 0 })]],
  'bad-hlen': [
    ['Ethernet with hlen 7', () => Object.assign(base(), { 2: 7 })],
    ['hlen 17', () => Object.assign(base(), { 1: 6, 2: 17 })],
  ],
  'no-magic-cookie': [['a BOOTP vendor area', () => Object.assign(base(), { 236: 0 })]],
  'option-overrun': [
    ['length past the end', () => withOptions([53, 1, 1, 12, 200, 0x61])],
    ['no length octet', () => withOptions([53, 1, 1, 12]).subarray(0, 244)],
    [
      'overrun inside file',
      () => Object.assign(withOptions([53, 1, 1, 52, 1, 1, 255]), { 108: 12, 109: 200 }),
    ],
  ],
  'bad-option-length': [
    ['requested IP of 3 octets', () => withOptions([53, 1, 1, 50, 3, 1, 2, 3, 255])],
    ['two message types', () => withOptions([53, 1, 1, 53, 1, 3, 255])],
    ['rapid commit with a value', () => withOptions([53, 1, 1, 80, 1, 0, 255])],
    ['routers not in fours', () => withOptions([53, 1, 1, 3, 5, 1, 2, 3, 4, 5, 255])],
    ['classless route width 33', () => withOptions([53, 1, 1, 121, 5, 33, 0, 0, 0, 0, 255])],
  ],
  'bad-overload': [
    ['overload 4', () => withOptions([53, 1, 1, 52, 1, 4, 255])],
    ['overload of 2 octets', () => withOptions([53, 1, 1, 52, 2, 1, 1, 255])],
    [
      'option 52 inside file',
      () => Object.assign(withOptions([53, 1, 1, 52, 1, 1, 255]), { 108: 52, 109: 1, 110: 2 }),
    ],
  ],
  'missing-message-type': [['plain BOOTP', () => withOptions([12, 1, 0x61, 255])]],
  'bad-message-type': [
    ['type 0', () => withOptions([53, 1, 0, 255])],
    ['type 19', () => withOptions([53, 1, 19, 255])],
  ],
  'internal-error': [['not a Buffer', () => null as unknown as Buffer]],
};

t.test('every rejection reason has an input that produces it, and is counted', async (t) => {
  const counter = new RejectionCounter();
  t.same(Object.keys(REJECTS).sort(), [...DECODE_REJECTIONS].sort());
  for (const [reason, cases] of Object.entries(REJECTS)) {
    for (const [name, make] of cases) {
      const r = decode(make());
      t.match(r, { ok: false, reason, detail: String }, `${reason}: ${name}`);
      if (!r.ok) t.comment(`${reason}: ${r.detail}`);
      t.equal(counter.record(r), false);
    }
  }
  t.equal(counter.record(decode(base())), true);
  t.equal(counter.ok, 1);
  t.equal(counter.get('bad-option-length'), 5);
  t.equal(counter.rejected, Object.values(REJECTS).flat().length);
  t.same(Object.keys(counter.snapshot()), [...DECODE_REJECTIONS]);
  t.equal(decode(Buffer.concat([base(), Buffer.alloc(700)]), { maxLength: 576 }).ok, false);
});

t.test('a message type a server does not act on still decodes', async (t) => {
  const p = ok(withOptions([53, 1, MessageType.LEASEQUERYSTATUS, 255]));
  t.equal(messageTypeName(p.messageType), 'LEASEQUERYSTATUS');
  t.equal(ok(withOptions([53, 1, 1])).messageType, 1, 'a missing end option ends at the buffer');
});
