// IPv4 and MAC address arithmetic. Pure functions; addresses travel as
// dotted-quad strings at the edges and as unsigned 32-bit numbers inside.

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  prefix: number;
}

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIPv4(text: string): boolean {
  return QUAD.test(text);
}

export function ipToInt(ip: string): number {
  if (!isIPv4(ip)) throw new Error(`"${ip}" is not an IPv4 address`);
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses "a.b.c.d/n"; returns undefined for anything else, including host bits set. */
export function parseCidr(text: string): Cidr | undefined {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!match || !isIPv4(match[1] as string)) return undefined;
  const prefix = Number(match[2]);
  if (prefix > 32) return undefined;
  const addr = ipToInt(match[1] as string);
  const network = (addr & prefixMask(prefix)) >>> 0;
  if (network !== addr) return undefined;
  return { network, prefix };
}

/** Why text is not a usable CIDR, or undefined when it is one. */
export function cidrProblem(text: string): string | undefined {
  const match = /^([^/]+)\/(\d+)$/.exec(text);
  if (!match || !isIPv4(match[1] as string) || Number(match[2]) > 32) return `"${text}" is not a CIDR`;
  if (!parseCidr(text)) return `"${text}" has host bits set; did you mean ${normalizeCidr(text)}?`;
  return undefined;
}

function normalizeCidr(text: string): string {
  const [ip, len] = text.split('/') as [string, string];
  const prefix = Number(len);
  return `${intToIp((ipToInt(ip) & prefixMask(prefix)) >>> 0)}/${prefix}`;
}

export function formatCidr(cidr: Cidr): string {
  return `${intToIp(cidr.network)}/${cidr.prefix}`;
}

export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}

export function broadcastOf(cidr: Cidr): number {
  return (cidr.network + cidrSize(cidr) - 1) >>> 0;
}

export function cidrContains(cidr: Cidr, ip: number): boolean {
  return (ip & prefixMask(cidr.prefix)) >>> 0 === cidr.network;
}

export function netmaskOf(prefix: number): string {
  return intToIp(prefixMask(prefix));
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function isMac(text: string): boolean {
  return MAC.test(text);
}

export function macToInt(mac: string): number {
  if (!isMac(mac)) throw new Error(`"${mac}" is not a MAC address (want aa:bb:cc:dd:ee:ff, lower case)`);
  return Number.parseInt(mac.replaceAll(':', ''), 16);
}

export function intToMac(n: number): string {
  const hex = n.toString(16).padStart(12, '0');
  return hex.match(/../g)?.join(':') as string;
}
