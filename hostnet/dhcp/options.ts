// DHCPv4 option codes (RFC 2132 and later), the shape each known option must
// have, and a typed read-only view over a packet's options. Option values are
// kept raw (after RFC 3396 concatenation) so unknown options and option 82
// pass through untouched; the getters interpret them on demand.
import { invalidField } from '../../base/errors.js';
import { isIPv4 } from '../ipv4.js';
import { type ClasslessRoute, decodeClasslessRoutes } from './options-routes.js';

export const OPT = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTERS: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  MTU: 26,
  BROADCAST: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  RAPID_COMMIT: 80,
  RELAY_AGENT_INFO: 82,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

/** Option 53 values: 1-8 from RFC 2131, 9 from RFC 3203, 10-17 leasequery (RFC 4388, 6926), 18 RFC 7724. */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
  FORCERENEW: 9,
  LEASEQUERY: 10,
  LEASEUNASSIGNED: 11,
  LEASEUNKNOWN: 12,
  LEASEACTIVE: 13,
  BULKLEASEQUERY: 14,
  LEASEQUERYDONE: 15,
  ACTIVELEASEQUERY: 16,
  LEASEQUERYSTATUS: 17,
  TLS: 18,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];
export type MessageTypeName = keyof typeof MessageType;

const TYPE_NAMES = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k])) as Record<
  number,
  MessageTypeName
>;

export function isMessageType(value: number): value is MessageType {
  return TYPE_NAMES[value] !== undefined;
}

export function messageTypeName(type: MessageType): MessageTypeName {
  return TYPE_NAMES[type] as MessageTypeName;
}

/**
 * The messages a server acts on. Everything else (server-to-client types,
 * FORCERENEW, leasequery 10-18) decodes fine and is meant to be ignored.
 */
export function isClientMessage(type: MessageType): boolean {
  return (
    type === MessageType.DISCOVER ||
    type === MessageType.REQUEST ||
    type === MessageType.DECLINE ||
    type === MessageType.RELEASE ||
    type === MessageType.INFORM
  );
}

interface Shape {
  min: number;
  max?: number;
  multiple?: number;
}

// Checked after RFC 3396 concatenation. Only options whose meaning the server
// relies on are listed; a wrong length there is a malformed packet, not a value
// to guess at. Options 52 and 121 have their own checks.
const SHAPES: Record<number, Shape> = {
  [OPT.SUBNET_MASK]: { min: 4, max: 4 },
  [OPT.ROUTERS]: { min: 4, multiple: 4 },
  [OPT.DNS_SERVERS]: { min: 4, multiple: 4 },
  [OPT.HOSTNAME]: { min: 1 },
  [OPT.DOMAIN_NAME]: { min: 1 },
  [OPT.MTU]: { min: 2, max: 2 },
  [OPT.BROADCAST]: { min: 4, max: 4 },
  [OPT.REQUESTED_IP]: { min: 4, max: 4 },
  [OPT.LEASE_TIME]: { min: 4, max: 4 },
  [OPT.MESSAGE_TYPE]: { min: 1, max: 1 },
  [OPT.SERVER_ID]: { min: 4, max: 4 },
  [OPT.PARAMETER_REQUEST_LIST]: { min: 1 },
  [OPT.MAX_MESSAGE_SIZE]: { min: 2, max: 2 },
  [OPT.RENEWAL_TIME]: { min: 4, max: 4 },
  [OPT.REBINDING_TIME]: { min: 4, max: 4 },
  [OPT.CLIENT_ID]: { min: 2 },
  [OPT.RAPID_COMMIT]: { min: 0, max: 0 },
};

/** Why an option value has the wrong length, or undefined when it is fine (or unknown). */
export function optionShapeProblem(code: number, value: Buffer): string | undefined {
  if (code === OPT.CLASSLESS_ROUTES) {
    return decodeClasslessRoutes(value) === undefined ? 'is not a valid RFC 3442 route list' : undefined;
  }
  const shape = SHAPES[code];
  if (shape === undefined) return undefined;
  const n = value.length;
  if (n < shape.min || (shape.max !== undefined && n > shape.max) || (shape.multiple && n % shape.multiple)) {
    const want = shape.max === shape.min ? `${shape.min}` : `at least ${shape.min}`;
    return `has length ${n}, want ${want}${shape.multiple ? ` in steps of ${shape.multiple}` : ''}`;
  }
  return undefined;
}

export function ipAt(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lower-case hex octets joined by ':' (a MAC for Ethernet chaddr). */
export function colonHex(buf: Buffer, start = 0, end = buf.length): string {
  let out = '';
  for (let i = start; i < end; i++) out += i === start ? HEX[buf[i] as number] : `:${HEX[buf[i] as number]}`;
  return out;
}

/** NUL-terminated latin1 text, as hostnames, sname and file are sent by real clients. */
export function cString(buf: Buffer, start = 0, end = buf.length): string {
  const nul = buf.indexOf(0, start);
  return buf.toString('latin1', start, nul === -1 || nul > end ? end : nul);
}

export interface ClientId {
  raw: Buffer;
  hex: string;
}

/**
 * Typed getters over the raw option values. Each getter answers undefined when
 * the option is absent or, for a hand-built view, has the wrong shape.
 */
export class DhcpOptions {
  constructor(readonly raw: ReadonlyMap<number, Buffer>) {}

  has(code: number): boolean {
    return this.raw.has(code);
  }

  private fixed(code: number, len: number): Buffer | undefined {
    const v = this.raw.get(code);
    return v !== undefined && v.length === len ? v : undefined;
  }

  private ip(code: number): string | undefined {
    const v = this.fixed(code, 4);
    return v && ipAt(v, 0);
  }

  private ips(code: number): string[] | undefined {
    const v = this.raw.get(code);
    if (v === undefined || v.length === 0 || v.length % 4) return undefined;
    const out: string[] = [];
    for (let i = 0; i < v.length; i += 4) out.push(ipAt(v, i));
    return out;
  }

  private u32(code: number): number | undefined {
    return this.fixed(code, 4)?.readUInt32BE(0);
  }

  private u16(code: number): number | undefined {
    return this.fixed(code, 2)?.readUInt16BE(0);
  }

  private text(code: number): string | undefined {
    const v = this.raw.get(code);
    return v === undefined || v.length === 0 ? undefined : cString(v);
  }

  get messageType(): MessageType | undefined {
    const v = this.fixed(OPT.MESSAGE_TYPE, 1)?.[0];
    return v !== undefined && isMessageType(v) ? v : undefined;
  }
  get requestedIp(): string | undefined {
    return this.ip(OPT.REQUESTED_IP);
  }
  get serverId(): string | undefined {
    return this.ip(OPT.SERVER_ID);
  }
  get leaseTime(): number | undefined {
    return this.u32(OPT.LEASE_TIME);
  }
  get renewalTime(): number | undefined {
    return this.u32(OPT.RENEWAL_TIME);
  }
  get rebindingTime(): number | undefined {
    return this.u32(OPT.REBINDING_TIME);
  }
  get parameterRequestList(): number[] | undefined {
    const v = this.raw.get(OPT.PARAMETER_REQUEST_LIST);
    return v === undefined ? undefined : [...v];
  }
  get maxMessageSize(): number | undefined {
    return this.u16(OPT.MAX_MESSAGE_SIZE);
  }
  get clientId(): ClientId | undefined {
    const v = this.raw.get(OPT.CLIENT_ID);
    return v === undefined ? undefined : { raw: v, hex: colonHex(v) };
  }
  get hostname(): string | undefined {
    return this.text(OPT.HOSTNAME);
  }
  /** Option 82 exactly as received, for echoing back (RFC 3046 §2.2). */
  get relayAgentInfo(): Buffer | undefined {
    return this.raw.get(OPT.RELAY_AGENT_INFO);
  }
  get rapidCommit(): boolean {
    return this.fixed(OPT.RAPID_COMMIT, 0) !== undefined;
  }
  get subnetMask(): string | undefined {
    return this.ip(OPT.SUBNET_MASK);
  }
  get routers(): string[] | undefined {
    return this.ips(OPT.ROUTERS);
  }
  get dnsServers(): string[] | undefined {
    return this.ips(OPT.DNS_SERVERS);
  }
  get domainName(): string | undefined {
    return this.text(OPT.DOMAIN_NAME);
  }
  get mtu(): number | undefined {
    return this.u16(OPT.MTU);
  }
  get broadcastAddress(): string | undefined {
    return this.ip(OPT.BROADCAST);
  }
  get message(): string | undefined {
    return this.text(OPT.MESSAGE);
  }
  get classlessRoutes(): ClasslessRoute[] | undefined {
    const v = this.raw.get(OPT.CLASSLESS_ROUTES);
    return v === undefined ? undefined : decodeClasslessRoutes(v);
  }
}

// Value encoders, used by the reply encoder and by tests that build packets.

export function ipBytes(ip: string, field: string): Buffer {
  if (!isIPv4(ip)) throw invalidField(field, `"${ip}" is not an IPv4 address`);
  return Buffer.from(ip.split('.').map(Number));
}

export function ipListBytes(ips: readonly string[], field: string): Buffer {
  if (ips.length === 0) throw invalidField(field, 'needs at least one address');
  return Buffer.concat(ips.map((ip, i) => ipBytes(ip, `${field}[${i}]`)));
}

export function u32Bytes(n: number, field: string): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw invalidField(field, `${n} is not an unsigned 32-bit integer`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export function u16Bytes(n: number, field: string): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff)
    throw invalidField(field, `${n} is not an unsigned 16-bit integer`);
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function textBytes(text: string, field: string): Buffer {
  if (text.length === 0) throw invalidField(field, 'must not be empty');
  return Buffer.from(text, 'latin1');
}
