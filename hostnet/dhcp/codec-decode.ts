// Decoding of DHCPv4 messages (RFC 2131, 2132, 3396). decode() never throws:
// every input is either a packet or a typed rejection, so the server can drop
// and count garbage from guests without a try/catch per packet.
import {
  AT,
  BROADCAST_FLAG,
  CHADDR_LEN,
  DECODE_REJECTIONS,
  type DecodeRejection,
  type DecodeResult,
  type DhcpPacket,
  FILE_LEN,
  MAGIC_COOKIE,
  MAX_DECODE_LEN,
  type Overload,
  SNAME_LEN,
} from './codec-types.js';
import { colonHex, cString, DhcpOptions, ipAt, isMessageType, OPT, optionShapeProblem } from './options.js';

class Rejection {
  constructor(
    readonly reason: DecodeRejection,
    readonly detail: string,
  ) {}
}

export interface DecodeOptions {
  /** Reject messages longer than this many octets (default MAX_DECODE_LEN). */
  maxLength?: number;
}

export function decode(buf: Buffer, options: DecodeOptions = {}): DecodeResult {
  try {
    const out = decodeOrReject(buf, options.maxLength ?? MAX_DECODE_LEN);
    return out instanceof Rejection
      ? { ok: false, reason: out.reason, detail: out.detail }
      : { ok: true, packet: out };
  } catch (err) {
    // Unreachable for any Buffer (the fuzz test holds us to that); kept so a
    // bug costs one dropped packet, not the endpoint process.
    return { ok: false, reason: 'internal-error', detail: String(err) };
  }
}

function decodeOrReject(buf: Buffer, maxLength: number): DhcpPacket | Rejection {
  if (buf.length < AT.options) {
    return new Rejection('too-short', `${buf.length} octets, a DHCP message has at least ${AT.options}`);
  }
  if (buf.length > maxLength)
    return new Rejection('too-long', `${buf.length} octets, the limit is ${maxLength}`);
  const op = buf[AT.op] as number;
  if (op !== 1 && op !== 2) return new Rejection('bad-op', `op ${op}, want 1 (request) or 2 (reply)`);
  const htype = buf[AT.htype] as number;
  if (htype === 0) return new Rejection('bad-htype', 'htype 0 names no hardware type');
  const hlen = buf[AT.hlen] as number;
  if (hlen > CHADDR_LEN)
    return new Rejection('bad-hlen', `hlen ${hlen} exceeds the ${CHADDR_LEN}-octet chaddr field`);
  if (htype === 1 && hlen !== 6)
    return new Rejection('bad-hlen', `hlen ${hlen} for Ethernet (htype 1), want 6`);
  const cookie = buf.readUInt32BE(AT.cookie);
  if (cookie !== MAGIC_COOKIE) {
    return new Rejection(
      'no-magic-cookie',
      `0x${cookie.toString(16).padStart(8, '0')} where 0x63825363 belongs`,
    );
  }

  // RFC 3396: every instance of a code is one value, concatenated in the
  // order options field, then file, then sname (RFC 2131 §4.1).
  const parts = new Map<number, Buffer[]>();
  const scanned = scan(buf, AT.options, buf.length, 'options', parts);
  if (scanned) return scanned;
  let overload: Overload = 0;
  const ov = parts.get(OPT.OVERLOAD);
  if (ov !== undefined) {
    const value = Buffer.concat(ov);
    if (value.length !== 1 || value[0] === 0 || (value[0] as number) > 3) {
      return new Rejection(
        'bad-overload',
        `option 52 is ${colonHex(value) || 'empty'}, want one octet 1, 2 or 3`,
      );
    }
    overload = value[0] as Overload;
    if (overload & 1) {
      const bad = scan(buf, AT.file, AT.file + FILE_LEN, 'file', parts);
      if (bad) return bad;
    }
    if (overload & 2) {
      const bad = scan(buf, AT.sname, AT.sname + SNAME_LEN, 'sname', parts);
      if (bad) return bad;
    }
  }

  const raw = new Map<number, Buffer>();
  for (const [code, chunks] of parts) {
    const value = chunks.length === 1 ? Buffer.from(chunks[0] as Buffer) : Buffer.concat(chunks);
    const problem = optionShapeProblem(code, value);
    if (problem) return new Rejection('bad-option-length', `option ${code} ${problem}`);
    raw.set(code, value);
  }
  const mt = raw.get(OPT.MESSAGE_TYPE);
  if (mt === undefined)
    return new Rejection('missing-message-type', 'no option 53: plain BOOTP is not served');
  const messageType = mt[0] as number;
  if (!isMessageType(messageType))
    return new Rejection('bad-message-type', `option 53 is ${messageType}, want 1-18`);

  const flags = buf.readUInt16BE(AT.flags);
  return {
    op,
    htype,
    hlen,
    hops: buf[AT.hops] as number,
    xid: buf.readUInt32BE(AT.xid),
    secs: buf.readUInt16BE(AT.secs),
    flags,
    broadcast: (flags & BROADCAST_FLAG) !== 0,
    ciaddr: ipAt(buf, AT.ciaddr),
    yiaddr: ipAt(buf, AT.yiaddr),
    siaddr: ipAt(buf, AT.siaddr),
    giaddr: ipAt(buf, AT.giaddr),
    chaddr: colonHex(buf, AT.chaddr, AT.chaddr + hlen),
    chaddrRaw: Buffer.from(buf.subarray(AT.chaddr, AT.chaddr + CHADDR_LEN)),
    sname: overload & 2 ? '' : cString(buf, AT.sname, AT.sname + SNAME_LEN),
    file: overload & 1 ? '' : cString(buf, AT.file, AT.file + FILE_LEN),
    overload,
    messageType,
    options: new DhcpOptions(raw),
  };
}

/** Walks one option area; pad is skipped, end (or the area's end) stops it. */
function scan(
  buf: Buffer,
  start: number,
  end: number,
  where: string,
  parts: Map<number, Buffer[]>,
): Rejection | undefined {
  let i = start;
  while (i < end) {
    const code = buf[i] as number;
    if (code === OPT.PAD) {
      i++;
      continue;
    }
    if (code === OPT.END) return undefined;
    if (i + 1 >= end)
      return new Rejection('option-overrun', `option ${code} at ${where}+${i - start} has no length octet`);
    const len = buf[i + 1] as number;
    if (i + 2 + len > end) {
      return new Rejection(
        'option-overrun',
        `option ${code} at ${where}+${i - start} claims ${len} octets, ${end - i - 2} left`,
      );
    }
    if (code === OPT.OVERLOAD && where !== 'options') {
      return new Rejection(
        'bad-overload',
        `option 52 inside the ${where} field; it belongs in the options field`,
      );
    }
    const value = buf.subarray(i + 2, i + 2 + len);
    const list = parts.get(code);
    if (list === undefined) parts.set(code, [value]);
    else list.push(value);
    i += 2 + len;
  }
  return undefined;
}

/** Counts rejections by reason, for the server's metrics. */
export class RejectionCounter {
  private readonly counts = new Map<DecodeRejection, number>();
  private accepted = 0;

  /** Records one decode result; answers whether it was a packet. */
  record(result: DecodeResult): result is { ok: true; packet: DhcpPacket } {
    if (result.ok) this.accepted++;
    else this.counts.set(result.reason, (this.counts.get(result.reason) ?? 0) + 1);
    return result.ok;
  }

  get(reason: DecodeRejection): number {
    return this.counts.get(reason) ?? 0;
  }

  get rejected(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  get ok(): number {
    return this.accepted;
  }

  /** Every reason, zeros included, so a metrics scrape always has the same keys. */
  snapshot(): Record<DecodeRejection, number> {
    return Object.fromEntries(DECODE_REJECTIONS.map((r) => [r, this.get(r)])) as Record<
      DecodeRejection,
      number
    >;
  }
}
