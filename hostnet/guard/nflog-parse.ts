// Reads the guard's drop log: the pcap stream `tcpdump -i nflog:<group> -w -`
// writes (libpcap's DLT_NFLOG). Pure: bytes in, drop events out.
//
// Each record is one NFLOG message: a 4-byte header (family, version,
// resource id), then TLVs whose length and type are in the capturing host's
// byte order (the pcap file's own, from its magic), each padded to 4 bytes;
// the values themselves are in network order as the kernel sent them.
// Verified against a real capture of the guard's drops on this kernel
// (test/unit/golden/nflog-guard-drops.pcap): for the bridge family the
// in-device is the bridge and the physical in-device is the port.
import { LOG_PREFIX } from './render.js';

export const DLT_NFLOG = 239;
const PCAP_HEADER = 24;
const RECORD_HEADER = 16;

// NFULA_* attribute types (linux/netfilter/nfnetlink_log.h).
const NFULA_IFINDEX_INDEV = 4;
const NFULA_IFINDEX_PHYSINDEV = 6;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;
const NFULA_HWHEADER = 16;

export interface NflogDrop {
  /** From the prefix "berth <reason> " (or "berth <reason> <subject> "). */
  reason: string;
  /**
   * The port a drop is about when that is not the in-port: security groups
   * log "berth secgroup <guarded port> ", the port the frame was going to.
   */
  subject?: string;
  /** IPv4 protocol and TCP/UDP destination port, for security-group drops (the guard's records need neither). */
  ipProto?: number;
  dport?: number;
  /** The bridge port the frame came in on (physindev, else indev). */
  ifindex: number;
  srcMac?: string;
  dstMac?: string;
  ethertype?: number;
  /** IPv4 or IPv6 source and destination from the network header. */
  ipSrc?: string;
  ipDst?: string;
  arpSenderMac?: string;
  arpSenderIp?: string;
  arpTargetIp?: string;
  /** A BOOTP/DHCP chaddr, for UDP 67/68. */
  chaddr?: string;
}

/** Splits a pcap byte stream into record payloads, across chunk boundaries. */
export class PcapReader {
  private buf: Buffer = Buffer.alloc(0);
  private little: boolean | undefined;

  /** The byte order of the capture (and so of the NFLOG TLV headers). */
  get littleEndian(): boolean {
    return this.little ?? true;
  }

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    if (this.little === undefined) {
      if (this.buf.length < PCAP_HEADER) return out;
      const magic = this.buf.readUInt32LE(0);
      if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) this.little = true;
      else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) this.little = false;
      else throw new Error(`not a pcap stream (magic 0x${magic.toString(16)})`);
      const link = this.u32(this.buf, 20) & 0x0fffffff;
      if (link !== DLT_NFLOG) throw new Error(`pcap link type ${link}, want ${DLT_NFLOG} (NFLOG)`);
      this.buf = this.buf.subarray(PCAP_HEADER);
    }
    let off = 0;
    while (this.buf.length - off >= RECORD_HEADER) {
      const caplen = this.u32(this.buf, off + 8);
      if (this.buf.length - off - RECORD_HEADER < caplen) break;
      out.push(this.buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + caplen));
      off += RECORD_HEADER + caplen;
    }
    this.buf = this.buf.subarray(off);
    return out;
  }

  private u32(b: Buffer, at: number): number {
    return this.little === false ? b.readUInt32BE(at) : b.readUInt32LE(at);
  }
}

export function macOf(b: Buffer, at: number): string {
  return [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function ipv4Of(b: Buffer, at: number): string {
  return [...b.subarray(at, at + 4)].join('.');
}

function ipv6Of(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(at + i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** One NFLOG record -> a guard drop; undefined when it is not one of berth's (no "berth " prefix). */
export function parseNflog(record: Buffer, littleEndian = true): NflogDrop | undefined {
  let prefix: string | undefined;
  let indev: number | undefined;
  let physindev: number | undefined;
  let hw: Buffer | undefined;
  let payload: Buffer | undefined;
  for (let off = 4; off + 4 <= record.length; ) {
    const len = littleEndian ? record.readUInt16LE(off) : record.readUInt16BE(off);
    const type = (littleEndian ? record.readUInt16LE(off + 2) : record.readUInt16BE(off + 2)) & 0x7fff;
    if (len < 4 || off + len > record.length) break;
    const value = record.subarray(off + 4, off + len);
    if (type === NFULA_PREFIX) prefix = value.toString('latin1').replace(/\0.*$/s, '');
    else if (type === NFULA_IFINDEX_INDEV && value.length >= 4) indev = value.readUInt32BE(0);
    else if (type === NFULA_IFINDEX_PHYSINDEV && value.length >= 4) physindev = value.readUInt32BE(0);
    else if (type === NFULA_HWHEADER) hw = value;
    else if (type === NFULA_PAYLOAD) payload = value;
    off += (len + 3) & ~3;
  }
  if (!prefix?.startsWith(LOG_PREFIX)) return undefined;
  const ifindex = physindev ?? indev;
  if (ifindex === undefined) return undefined;
  const [reason = '', subject] = prefix.slice(LOG_PREFIX.length).trim().split(/\s+/);
  const drop: NflogDrop = { reason, ifindex, ...(subject ? { subject } : {}) };
  if (hw && hw.length >= 14) {
    drop.dstMac = macOf(hw, 0);
    drop.srcMac = macOf(hw, 6);
    drop.ethertype = hw.readUInt16BE(12);
  }
  if (payload) network(drop, payload);
  return drop;
}

function network(drop: NflogDrop, p: Buffer): void {
  if (drop.ethertype === 0x0800 && p.length >= 20) {
    const ihl = ((p[0] ?? 0) & 0x0f) * 4;
    drop.ipSrc = ipv4Of(p, 12);
    drop.ipDst = ipv4Of(p, 16);
    const fragment = (p.readUInt16BE(6) & 0x3fff) !== 0;
    if (drop.subject !== undefined) {
      drop.ipProto = p[9];
      if ((p[9] === 6 || p[9] === 17) && !fragment && p.length >= ihl + 4)
        drop.dport = p.readUInt16BE(ihl + 2);
    }
    if (p[9] === 17 && !fragment && p.length >= ihl + 8) {
      const sport = p.readUInt16BE(ihl);
      const dport = p.readUInt16BE(ihl + 2);
      const bootp = ihl + 8;
      // chaddr sits 28 bytes into BOOTP; htype 1 / hlen 6 for Ethernet.
      if ([67, 68].includes(sport) && [67, 68].includes(dport) && p.length >= bootp + 34)
        drop.chaddr = macOf(p, bootp + 28);
    }
  } else if (drop.ethertype === 0x0806 && p.length >= 28 && p[4] === 6 && p[5] === 4) {
    drop.arpSenderMac = macOf(p, 8);
    drop.arpSenderIp = ipv4Of(p, 14);
    drop.arpTargetIp = ipv4Of(p, 24);
  } else if (drop.ethertype === 0x86dd && p.length >= 40) {
    drop.ipSrc = ipv6Of(p, 8);
    drop.ipDst = ipv6Of(p, 24);
  }
}
