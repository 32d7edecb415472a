// Feeds decode() random and mutated messages. Reproduce a failure with
// DC_FUZZ_SEED=<seed printed below> npx tap --disable-coverage test/unit/dhcp-fuzz.test.ts
import t from 'tap';
import { BerthError } from '../../base/errors.js';
import {
  DECODE_REJECTIONS,
  type DecodeRejection,
  type DhcpPacket,
  decode,
  encodeClasslessRoutes,
  encodePacket,
  encodeReply,
  MessageType,
  OPT,
  type ReplyType,
} from '../../hostnet/dhcp/codec.js';

const seed = Number(process.env.DC_FUZZ_SEED ?? Date.now() & 0x7fffffff);
const COUNT = Number(process.env.DC_FUZZ_COUNT ?? 150_000);

// mulberry32: small, fast, and the same sequence for the same seed everywhere.
function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return (x ^ (x >>> 14)) >>> 0;
  };
}
const next = prng(seed);
const int = (n: number) => next() % n;
const bytes = (n: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = next() & 255;
  return b;
};

function corpus(): Buffer[] {
  const chaddr = '52:54:00:12:34:56';
  const routes = encodeClasslessRoutes([
    { destination: '169.254.169.254/32', router: '0.0.0.0' },
    { destination: '0.0.0.0/0', router: '10.0.0.1' },
  ]);
  const out = [1, 3, 4, 7, 8, 2, 5, 6, 13].map((type) =>
    encodePacket(
      { op: type === 2 || type === 5 || type === 6 ? 2 : 1, xid: type, chaddr, ciaddr: '10.0.0.5' },
      [
        [OPT.MESSAGE_TYPE, Buffer.from([type])],
        [OPT.CLIENT_ID, Buffer.from('01525400123456', 'hex')],
        [OPT.PARAMETER_REQUEST_LIST, Buffer.from([1, 3, 6, 12, 15, 26, 28, 51, 58, 59, 121])],
        [OPT.MAX_MESSAGE_SIZE, Buffer.from([2, 64])],
        [OPT.HOSTNAME, Buffer.from('guest')],
        [OPT.REQUESTED_IP, Buffer.from([10, 0, 0, 5])],
        [OPT.SERVER_ID, Buffer.from([10, 0, 0, 1])],
        [OPT.RAPID_COMMIT, Buffer.alloc(0)],
        [OPT.CLASSLESS_ROUTES, routes],
        [OPT.RELAY_AGENT_INFO, Buffer.from('0104deadbeef', 'hex')],
      ],
    ),
  );
  // An overloaded REQUEST and one with a 300-octet option split in two.
  const over = encodePacket({ op: 1, xid: 99, chaddr }, [
    [OPT.MESSAGE_TYPE, Buffer.from([3])],
    [OPT.OVERLOAD, Buffer.from([3])],
  ]);
  over.set([OPT.HOSTNAME, 3, 0x61, 0x62, 0x63, 255], 108);
  over.set([OPT.DNS_SERVERS, 4, 1, 1, 1, 1, 255], 44);
  out.push(over);
  out.push(
    encodePacket({ op: 1, xid: 100, chaddr }, [
      [OPT.MESSAGE_TYPE, Buffer.from([1])],
      [OPT.RELAY_AGENT_INFO, bytes(300)],
    ]),
  );
  return out;
}

/** Offsets of option length octets in the options field, found by walking it as decode does. */
function lengthOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = 240; i + 1 < buf.length; ) {
    const code = buf[i] as number;
    if (code === 0) i++;
    else if (code === 255) break;
    else {
      out.push(i + 1);
      i += 2 + (buf[i + 1] as number);
    }
  }
  return out;
}

function mutate(base: Buffer): Buffer {
  const b = Buffer.from(base);
  switch (int(6)) {
    case 0: // bit flips
      for (let k = 1 + int(8); k > 0; k--) {
        const at = int(b.length);
        b[at] = (b[at] as number) ^ (1 << int(8));
      }
      return b;
    case 1: // truncation
      return b.subarray(0, int(b.length + 1));
    case 2: {
      // length octet corruption
      const offs = lengthOffsets(b);
      for (let k = 1 + int(2); k > 0 && offs.length; k--)
        b[offs[int(offs.length)] as number] = int(4) ? int(256) : 0;
      return b;
    }
    case 3: {
      // overload on garbage: option 52 up front, random file and sname
      b.set([53, 1, 1 + int(8), 52, 1, int(5)], 240);
      bytes(192).copy(b, 44);
      if (int(2)) b[44 + int(64)] = 255;
      return b;
    }
    case 4: // random options after a valid header
      return Buffer.concat([b.subarray(0, 240), bytes(int(400))]);
    default: // random bytes spliced in, growing or shrinking the message
      return Buffer.concat([b.subarray(0, int(b.length)), bytes(int(64)), b.subarray(int(b.length))]);
  }
}

const REPLY: Partial<Record<number, ReplyType>> = {
  [MessageType.DISCOVER]: 'OFFER',
  [MessageType.REQUEST]: 'ACK',
  [MessageType.INFORM]: 'ACK',
};

function reencode(p: DhcpPacket): string | undefined {
  const again = decode(encodePacket({ ...p, chaddr: p.chaddrRaw.subarray(0, p.hlen) }, p.options.raw), {
    maxLength: 1 << 20,
  });
  if (!again.ok) return `re-encoded packet rejected: ${again.reason}: ${again.detail}`;
  if (again.packet.messageType !== p.messageType || again.packet.xid !== p.xid)
    return 're-encoded packet differs';
  const type = REPLY[p.messageType];
  if (type === undefined) return undefined;
  try {
    const r = encodeReply({
      type,
      request: p,
      serverId: '10.0.0.1',
      yiaddr: '10.0.0.5',
      leaseTime: 60,
      params: { subnetMask: '255.255.255.0', routers: ['10.0.0.1'], dnsServers: ['10.0.0.1'] },
      always: [1, 3, 6],
    });
    if (!decode(r.buffer).ok) return 'reply does not decode';
  } catch (err) {
    // The one legitimate refusal: echoing the client's own 61/82 cannot fit.
    if (!(err instanceof BerthError && /mandatory reply options do not fit/.test(err.message)))
      return String(err);
    unfit++;
  }
  return undefined;
}

let unfit = 0;

t.test(`fuzz decode with seed ${seed}`, async (t) => {
  t.comment(`seed ${seed} (set DC_FUZZ_SEED to replay)`);
  const base = corpus();
  for (const b of base) t.ok(decode(b).ok, 'the corpus decodes');
  const reasons = new Map<DecodeRejection | 'ok', number>();
  const known = new Set<string>(DECODE_REJECTIONS);
  const failures: string[] = [];
  const started = process.hrtime.bigint();
  for (let i = 0; i < COUNT; i++) {
    const input =
      i % 4 === 0 ? bytes(int(3) ? int(700) : int(10_000)) : mutate(base[int(base.length)] as Buffer);
    let r: ReturnType<typeof decode>;
    try {
      r = decode(input);
    } catch (err) {
      failures.push(`case ${i}: decode threw ${err}`);
      continue;
    }
    if (!r.ok && (!known.has(r.reason) || r.reason === 'internal-error' || !r.detail)) {
      failures.push(`case ${i}: ${r.reason}: ${r.detail} for ${input.toString('hex')}`);
    }
    const key = r.ok ? 'ok' : r.reason;
    reasons.set(key, (reasons.get(key) ?? 0) + 1);
    if (r.ok) {
      let problem: string | undefined;
      try {
        problem = reencode(r.packet);
      } catch (err) {
        problem = `re-encode threw ${err}`;
      }
      if (problem) failures.push(`case ${i}: ${problem} for ${input.toString('hex')}`);
    }
    if (failures.length > 5) break;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.same(failures, [], 'no input throws or escapes the typed rejections');
  t.comment(
    `${COUNT} inputs in ${seconds.toFixed(2)} s (decode and re-encode): ${Math.round(COUNT / seconds)}/s`,
  );
  t.comment(`results: ${JSON.stringify(Object.fromEntries([...reasons].sort((a, b) => b[1] - a[1])))}`);
  t.comment(`${unfit} replies refused because the client's own 61/82 did not fit`);
  t.ok((reasons.get('ok') ?? 0) > COUNT / 50, 'enough mutants stay valid to exercise re-encoding');
  t.ok(reasons.size >= 10, `${reasons.size} distinct outcomes reached`);
});

t.test('decode rate on valid messages', async (t) => {
  const base = corpus();
  let n = 0;
  const started = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < 1) {
    for (let k = 0; k < 1000; k++) if (decode(base[(n + k) % base.length] as Buffer).ok) n++;
    elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  }
  t.comment(`valid-message decode rate: ${Math.round(n / elapsed)} packets/s`);
  t.ok(n / elapsed > 10_000, 'well above what a DHCP storm needs');
});
