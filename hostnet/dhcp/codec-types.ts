// The BOOTP/DHCP message layout (RFC 2131 §2, figure 1) and the decoded packet.
import type { DhcpOptions, MessageType } from './options.js';

/** Byte offsets of the fixed fields. */
export const AT = {
  op: 0,
  htype: 1,
  hlen: 2,
  hops: 3,
  xid: 4,
  secs: 8,
  flags: 10,
  ciaddr: 12,
  yiaddr: 16,
  siaddr: 20,
  giaddr: 24,
  chaddr: 28,
  sname: 44,
  file: 108,
  cookie: 236,
  options: 240,
} as const;

export const CHADDR_LEN = 16;
export const SNAME_LEN = 64;
export const FILE_LEN = 128;
export const MAGIC_COOKIE = 0x63825363;
export const BROADCAST_FLAG = 0x8000;

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;

/**
 * RFC 2131 §2: a client must accept a 576-octet IP datagram, that is 548
 * octets of DHCP message after the 20-octet IP and 8-octet UDP headers,
 * leaving 312 octets for options.
 */
export const MIN_MAX_MESSAGE_SIZE = 576;
export const IP_UDP_HEADERS = 28;

/** Replies are padded to the 300-octet BOOTP minimum, as ISC dhcpd and dnsmasq do, for old relays. */
export const BOOTP_MIN_LEN = 300;

/**
 * The largest message decode accepts: an unfragmented UDP payload on a
 * 9000-octet jumbo-frame link. Nothing that big comes from a real client.
 */
export const MAX_DECODE_LEN = 9000 - IP_UDP_HEADERS;

/** Option 52 values: which of the fixed fields also carry options. */
export const Overload = { NONE: 0, FILE: 1, SNAME: 2, BOTH: 3 } as const;
export type Overload = (typeof Overload)[keyof typeof Overload];

export interface DhcpPacket {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  /** The whole flags field; `broadcast` is its top bit. */
  flags: number;
  broadcast: boolean;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The first hlen octets of chaddr as lower-case colon hex: the MAC for htype 1, hlen 6. */
  chaddr: string;
  /** All 16 octets of the chaddr field. */
  chaddrRaw: Buffer;
  /** Empty when the field is overloaded with options. */
  sname: string;
  file: string;
  overload: Overload;
  messageType: MessageType;
  options: DhcpOptions;
}

export const DECODE_REJECTIONS = [
  'too-short',
  'too-long',
  'bad-op',
  'bad-htype',
  'bad-hlen',
  'no-magic-cookie',
  'option-overrun',
  'bad-option-length',
  'bad-overload',
  'missing-message-type',
  'bad-message-type',
  /** decode itself failed: a bug, never expected; counted so it cannot hide. */
  'internal-error',
] as const;
export type DecodeRejection = (typeof DECODE_REJECTIONS)[number];

export type DecodeResult =
  | { ok: true; packet: DhcpPacket }
  | { ok: false; reason: DecodeRejection; detail: string };
