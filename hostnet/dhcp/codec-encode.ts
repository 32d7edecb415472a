// Server replies: OFFER, ACK (including the INFORM answer and the rapid-commit
// ACK to a DISCOVER) and NAK. Which fields and options each carries follows
// RFC 2131 table 3; the size never exceeds what the client said it accepts.
import { invalidField } from '../../base/errors.js';
import {
  BOOTREPLY,
  BROADCAST_FLAG,
  type DhcpPacket,
  FILE_LEN,
  IP_UDP_HEADERS,
  MIN_MAX_MESSAGE_SIZE,
  AT as OFFSET,
  type Overload,
  SNAME_LEN,
} from './codec-types.js';
import {
  type HeaderFields,
  type OptionAreas,
  optionBytes,
  overloadOption,
  writeMessage,
} from './codec-write.js';
import {
  ipBytes,
  ipListBytes,
  MessageType,
  messageTypeName,
  OPT,
  textBytes,
  u16Bytes,
  u32Bytes,
} from './options.js';
import { type ClasslessRoute, encodeClasslessRoutes } from './options-routes.js';

export type ReplyType = 'OFFER' | 'ACK' | 'NAK';

/** Configuration options; each is sent when the client asks for it (option 55) or its code is in `always`. */
export interface ReplyParams {
  subnetMask?: string;
  routers?: string[];
  dnsServers?: string[];
  hostname?: string;
  domainName?: string;
  mtu?: number;
  broadcastAddress?: string;
  renewalTime?: number;
  rebindingTime?: number;
  classlessRoutes?: ClasslessRoute[];
}

export interface DhcpReplySpec {
  type: ReplyType;
  /** The decoded client message being answered: xid, chaddr, flags, giaddr, 55, 57, 61, 80, 82 come from it. */
  request: DhcpPacket;
  serverId: string;
  /** Required for an OFFER and for an ACK that grants a lease; an INFORM answer carries 0.0.0.0. */
  yiaddr?: string;
  siaddr?: string;
  /** Option 51; required wherever yiaddr is. */
  leaseTime?: number;
  params?: ReplyParams;
  /** Option codes sent even when the client did not list them in option 55, most important first. */
  always?: readonly number[];
  /** Raw options (vendor-specific and the like), under the same option-55/always rule. */
  extra?: ReadonlyMap<number, Buffer>;
  /** Option 56, a human-readable reason; typical for a NAK. */
  message?: string;
  sname?: string;
  file?: string;
}

export interface EncodeOptions {
  /** The server's own ceiling for the reply's IP datagram (e.g. the link MTU); default 1500. */
  maxSize?: number;
}

export interface EncodedReply {
  buffer: Buffer;
  /** Optional options left out because they did not fit, in the order they were dropped. */
  dropped: number[];
  overload: Overload;
}

export function encode(spec: DhcpReplySpec, options: EncodeOptions = {}): Buffer {
  return encodeReply(spec, options).buffer;
}

interface Item {
  code: number;
  bytes: Buffer;
  always: boolean;
}

export function encodeReply(spec: DhcpReplySpec, options: EncodeOptions = {}): EncodedReply {
  const req = spec.request;
  const inform = req.messageType === MessageType.INFORM;
  const rapid = spec.type === 'ACK' && req.messageType === MessageType.DISCOVER;
  checkPairing(spec, rapid);
  const grants = spec.type === 'OFFER' || (spec.type === 'ACK' && !inform);

  const head: Buffer[] = [
    optionBytes(OPT.MESSAGE_TYPE, Buffer.from([MessageType[spec.type]])),
    optionBytes(OPT.SERVER_ID, ipBytes(spec.serverId, 'serverId')),
  ];
  if (grants) {
    if (spec.yiaddr === undefined)
      throw invalidField('yiaddr', `an ${spec.type} that grants a lease needs an address`);
    if (spec.leaseTime === undefined)
      throw invalidField('leaseTime', `an ${spec.type} that grants a lease needs option 51`);
    head.push(optionBytes(OPT.LEASE_TIME, u32Bytes(spec.leaseTime, 'leaseTime')));
  }
  if (rapid) head.push(optionBytes(OPT.RAPID_COMMIT, Buffer.alloc(0)));
  if (spec.message !== undefined) head.push(optionBytes(OPT.MESSAGE, textBytes(spec.message, 'message')));
  // RFC 6842: the client identifier comes back unaltered.
  const clientId = req.options.raw.get(OPT.CLIENT_ID);
  if (clientId !== undefined) head.push(optionBytes(OPT.CLIENT_ID, clientId));
  // RFC 3046 §2.2: option 82 is copied back as the last option.
  const relay = req.options.relayAgentInfo;
  const tail = relay === undefined ? [] : [optionBytes(OPT.RELAY_AGENT_INFO, relay)];
  const optional = spec.type === 'NAK' ? [] : optionalItems(spec, grants);

  const clientMax = Math.max(MIN_MAX_MESSAGE_SIZE, req.options.maxMessageSize ?? MIN_MAX_MESSAGE_SIZE);
  const limit = Math.max(MIN_MAX_MESSAGE_SIZE, Math.min(options.maxSize ?? 1500, clientMax)) - IP_UDP_HEADERS;
  const room = {
    options: limit - OFFSET.options - 1,
    file: spec.file ? 0 : FILE_LEN - 1,
    sname: spec.sname ? 0 : SNAME_LEN - 1,
  };

  const dropped: number[] = [];
  const dropOrder = [
    ...optional.filter((o) => !o.always).reverse(),
    ...optional.filter((o) => o.always).reverse(),
  ];
  for (;;) {
    const kept = optional.filter((o) => !dropped.includes(o.code)).map((o) => o.bytes);
    const areas = fit([...head, ...kept, ...tail], room);
    if (areas !== undefined) {
      const buffer = writeMessage(replyFields(spec, grants), areas.areas);
      return { buffer, dropped, overload: areas.overload };
    }
    const next = dropOrder[dropped.length];
    if (next === undefined) {
      throw invalidField(
        'request',
        `the mandatory reply options do not fit the ${limit + IP_UDP_HEADERS}-octet limit`,
      );
    }
    dropped.push(next.code);
  }
}

function checkPairing(spec: DhcpReplySpec, rapid: boolean): void {
  const asked = spec.request.messageType;
  const ok =
    (spec.type === 'OFFER' && asked === MessageType.DISCOVER) ||
    (spec.type === 'ACK' && (asked === MessageType.REQUEST || asked === MessageType.INFORM || rapid)) ||
    (spec.type === 'NAK' && asked === MessageType.REQUEST);
  if (!ok) throw invalidField('type', `a ${messageTypeName(asked)} is not answered with ${spec.type}`);
  if (rapid && !spec.request.options.rapidCommit) {
    throw invalidField(
      'type',
      'an ACK answers a DISCOVER only when the client sent rapid commit (option 80)',
    );
  }
}

/** The configuration options to offer, in the client's option-55 order, then `always` order. */
function optionalItems(spec: DhcpReplySpec, withTimers: boolean): Item[] {
  const p = spec.params ?? {};
  const values = new Map<number, () => Buffer>();
  const add = (code: number, present: unknown, make: () => Buffer) => {
    if (present !== undefined) values.set(code, make);
  };
  add(OPT.SUBNET_MASK, p.subnetMask, () => ipBytes(p.subnetMask as string, 'params.subnetMask'));
  add(OPT.ROUTERS, p.routers, () => ipListBytes(p.routers as string[], 'params.routers'));
  add(OPT.DNS_SERVERS, p.dnsServers, () => ipListBytes(p.dnsServers as string[], 'params.dnsServers'));
  add(OPT.HOSTNAME, p.hostname, () => textBytes(p.hostname as string, 'params.hostname'));
  add(OPT.DOMAIN_NAME, p.domainName, () => textBytes(p.domainName as string, 'params.domainName'));
  add(OPT.MTU, p.mtu, () => u16Bytes(p.mtu as number, 'params.mtu'));
  add(OPT.BROADCAST, p.broadcastAddress, () =>
    ipBytes(p.broadcastAddress as string, 'params.broadcastAddress'),
  );
  // RFC 2131 table 3: an INFORM answer carries no lease timers.
  if (withTimers) {
    add(OPT.RENEWAL_TIME, p.renewalTime, () => u32Bytes(p.renewalTime as number, 'params.renewalTime'));
    add(OPT.REBINDING_TIME, p.rebindingTime, () =>
      u32Bytes(p.rebindingTime as number, 'params.rebindingTime'),
    );
  }
  add(OPT.CLASSLESS_ROUTES, p.classlessRoutes, () =>
    encodeClasslessRoutes(p.classlessRoutes as ClasslessRoute[], 'params.classlessRoutes'),
  );
  for (const [code, value] of spec.extra ?? []) {
    if (!values.has(code) && !RESERVED.has(code)) values.set(code, () => value);
  }

  const always = new Set(spec.always ?? []);
  const order = [...(spec.request.options.parameterRequestList ?? []), ...(spec.always ?? [])];
  const items: Item[] = [];
  for (const code of order) {
    const make = values.get(code);
    if (make === undefined || items.some((i) => i.code === code)) continue;
    items.push({ code, bytes: optionBytes(code, make()), always: always.has(code) });
  }
  return items;
}

// Options whose presence encode() decides itself; `extra` cannot smuggle them in.
const RESERVED = new Set<number>([
  OPT.PAD,
  OPT.END,
  OPT.LEASE_TIME,
  OPT.OVERLOAD,
  OPT.MESSAGE_TYPE,
  OPT.SERVER_ID,
  OPT.MESSAGE,
  OPT.CLIENT_ID,
  OPT.RAPID_COMMIT,
  OPT.RELAY_AGENT_INFO,
]);

interface Room {
  options: number;
  file: number;
  sname: number;
}

/**
 * Lays the options out in order: all in the options field if they fit, else
 * overloaded (RFC 2131 §4.1) into file, then sname. Each option stays whole
 * and in order, so the RFC 3396 reading order reproduces the list.
 */
function fit(list: Buffer[], room: Room): { areas: OptionAreas; overload: Overload } | undefined {
  const total = list.reduce((n, b) => n + b.length, 0);
  if (total <= room.options) return { areas: { options: Buffer.concat(list) }, overload: 0 };
  const fields: { name: 'options' | 'file' | 'sname'; room: number; parts: Buffer[] }[] = [
    { name: 'options', room: room.options - 3, parts: [] },
    { name: 'file', room: room.file, parts: [] },
    { name: 'sname', room: room.sname, parts: [] },
  ];
  let f = 0;
  for (const bytes of list) {
    while (f < fields.length && bytes.length > (fields[f]?.room ?? 0)) f++;
    const field = fields[f];
    if (field === undefined) return undefined;
    field.parts.push(bytes);
    field.room -= bytes.length;
  }
  const [opts, file, sname] = fields as [(typeof fields)[0], (typeof fields)[0], (typeof fields)[0]];
  const overload = ((file.parts.length ? 1 : 0) | (sname.parts.length ? 2 : 0)) as Overload;
  // The message type stays first, 52 right behind it.
  const [first, ...rest] = opts.parts;
  return {
    areas: {
      options: Buffer.concat([first ?? Buffer.alloc(0), overloadOption(overload), ...rest]),
      ...(file.parts.length ? { file: Buffer.concat(file.parts) } : {}),
      ...(sname.parts.length ? { sname: Buffer.concat(sname.parts) } : {}),
    },
    overload,
  };
}

function replyFields(spec: DhcpReplySpec, grants: boolean): HeaderFields {
  const req = spec.request;
  const nak = spec.type === 'NAK';
  // RFC 2131 §4.3.2: a NAK through a relay must be broadcast by the relay.
  const flags = nak && req.giaddr !== '0.0.0.0' ? req.flags | BROADCAST_FLAG : req.flags;
  return {
    op: BOOTREPLY,
    htype: req.htype,
    hlen: req.hlen,
    xid: req.xid,
    flags,
    ciaddr: spec.type === 'ACK' ? req.ciaddr : '0.0.0.0',
    yiaddr: grants ? (spec.yiaddr as string) : '0.0.0.0',
    siaddr: nak ? '0.0.0.0' : (spec.siaddr ?? '0.0.0.0'),
    giaddr: req.giaddr,
    chaddr: req.chaddrRaw,
    ...(nak ? {} : { sname: spec.sname, file: spec.file }),
  };
}
