// Serializing DHCPv4 messages: the fixed fields, option areas and RFC 3396
// splitting. No policy here; codec-encode.ts decides what a reply carries.
import { invalidField } from '../../base/errors.js';
import {
  AT,
  BOOTP_MIN_LEN,
  CHADDR_LEN,
  FILE_LEN,
  MAGIC_COOKIE,
  type Overload,
  SNAME_LEN,
} from './codec-types.js';
import { ipBytes, OPT } from './options.js';

export interface HeaderFields {
  op: number;
  htype?: number;
  hlen?: number;
  hops?: number;
  xid: number;
  secs?: number;
  flags?: number;
  ciaddr?: string;
  yiaddr?: string;
  siaddr?: string;
  giaddr?: string;
  /** "aa:bb:cc:dd:ee:ff" (any number of colon-hex octets up to 16) or raw octets. */
  chaddr: string | Buffer;
  sname?: string;
  file?: string;
}

/** The option areas of one message; each gets its own end option. */
export interface OptionAreas {
  options: Buffer;
  /** Options carried in the file field (needs overload 1 or 3 in `options`). */
  file?: Buffer;
  sname?: Buffer;
}

/** One option as it goes on the wire; values over 255 octets become consecutive instances (RFC 3396). */
export function optionBytes(code: number, value: Buffer): Buffer {
  if (value.length <= 255) return Buffer.concat([Buffer.from([code, value.length]), value]);
  const parts: Buffer[] = [];
  for (let i = 0; i < value.length; i += 255) {
    const chunk = value.subarray(i, i + 255);
    parts.push(Buffer.from([code, chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

export function overloadOption(overload: Overload): Buffer {
  return Buffer.from([OPT.OVERLOAD, 1, overload]);
}

export function chaddrBytes(chaddr: string | Buffer): Buffer {
  if (Buffer.isBuffer(chaddr)) {
    if (chaddr.length > CHADDR_LEN)
      throw invalidField('chaddr', `${chaddr.length} octets, at most ${CHADDR_LEN}`);
    return chaddr;
  }
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){0,15}$/.test(chaddr)) {
    throw invalidField('chaddr', `"${chaddr}" is not colon-separated hex octets`);
  }
  return Buffer.from(chaddr.replaceAll(':', ''), 'hex');
}

function fixedText(text: string | undefined, size: number, field: string): Buffer | undefined {
  if (text === undefined || text === '') return undefined;
  const b = Buffer.from(text, 'latin1');
  // A field filled to the last octet has no NUL; decode accepts that, so encode does too.
  if (b.length > size) throw invalidField(field, `${b.length} octets, at most ${size}`);
  return b;
}

/** A complete message, zero-padded to `minLength` octets (BOOTP's 300 by default). */
export function writeMessage(fields: HeaderFields, areas: OptionAreas, minLength = BOOTP_MIN_LEN): Buffer {
  const sname = fixedText(fields.sname, SNAME_LEN, 'sname');
  const file = fixedText(fields.file, FILE_LEN, 'file');
  if (areas.sname && sname) throw invalidField('sname', 'carries options (overload) and text at once');
  if (areas.file && file) throw invalidField('file', 'carries options (overload) and text at once');
  if (areas.sname && areas.sname.length >= SNAME_LEN)
    throw invalidField('sname', 'options overflow the field');
  if (areas.file && areas.file.length >= FILE_LEN) throw invalidField('file', 'options overflow the field');
  const chaddr = chaddrBytes(fields.chaddr);

  const length = Math.max(minLength, AT.options + areas.options.length + 1);
  const buf = Buffer.alloc(length);
  buf[AT.op] = fields.op;
  buf[AT.htype] = fields.htype ?? 1;
  buf[AT.hlen] = fields.hlen ?? chaddr.length;
  buf[AT.hops] = fields.hops ?? 0;
  buf.writeUInt32BE(fields.xid >>> 0, AT.xid);
  buf.writeUInt16BE(fields.secs ?? 0, AT.secs);
  buf.writeUInt16BE(fields.flags ?? 0, AT.flags);
  ipBytes(fields.ciaddr ?? '0.0.0.0', 'ciaddr').copy(buf, AT.ciaddr);
  ipBytes(fields.yiaddr ?? '0.0.0.0', 'yiaddr').copy(buf, AT.yiaddr);
  ipBytes(fields.siaddr ?? '0.0.0.0', 'siaddr').copy(buf, AT.siaddr);
  ipBytes(fields.giaddr ?? '0.0.0.0', 'giaddr').copy(buf, AT.giaddr);
  chaddr.copy(buf, AT.chaddr);
  (areas.sname ?? sname)?.copy(buf, AT.sname);
  if (areas.sname) buf[AT.sname + areas.sname.length] = OPT.END;
  (areas.file ?? file)?.copy(buf, AT.file);
  if (areas.file) buf[AT.file + areas.file.length] = OPT.END;
  buf.writeUInt32BE(MAGIC_COOKIE, AT.cookie);
  areas.options.copy(buf, AT.options);
  buf[AT.options + areas.options.length] = OPT.END;
  return buf;
}

/**
 * A message with every option in the options field, in the given order: what
 * a client sends, and what round-trip tests need. Replies go through encode().
 */
export function encodePacket(
  fields: HeaderFields,
  options: Iterable<readonly [number, Buffer]>,
  minLength = BOOTP_MIN_LEN,
): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of options) parts.push(optionBytes(code, value));
  return writeMessage(fields, { options: Buffer.concat(parts) }, minLength);
}
