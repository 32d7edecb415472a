// The little IPv6 arithmetic the guard needs: a port's EUI-64 link-local and
// addresses as 128-bit hex for raw payload matches (nft 1.0.6 has no
// `icmpv6 taddr`, so ND target checks read the ICMPv6 body with @th).
import { isMac } from '../ipv4.js';

const GROUP = /^[0-9a-f]{1,4}$/;

/** The eight 16-bit groups of an IPv6 address, or undefined for anything else (zones and dotted tails too). */
export function parseIPv6(text: string): number[] | undefined {
  const lower = text.toLowerCase();
  const halves = lower.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] === '' ? [] : (halves[0] as string).split(':');
  const tail = halves.length === 2 && halves[1] !== '' ? (halves[1] as string).split(':') : [];
  if (![...head, ...tail].every((g) => GROUP.test(g))) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const zeros = halves.length === 2 ? new Array<number>(missing).fill(0) : [];
  return [...head, ...zeros, ...tail].map((g) => (typeof g === 'number' ? g : Number.parseInt(g, 16)));
}

/** RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups as "::". */
export function formatIPv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function canonicalIPv6(text: string): string | undefined {
  const groups = parseIPv6(text);
  return groups && formatIPv6(groups);
}

/** The address as one 128-bit hex literal, the form nft compares raw payload with. */
export function ipv6Hex(text: string): string {
  const groups = parseIPv6(text);
  if (!groups) throw new Error(`"${text}" is not an IPv6 address`);
  return `0x${groups.map((g) => g.toString(16).padStart(4, '0')).join('')}`;
}

/** fe80::/64 plus the modified EUI-64 of the MAC (universal/local bit flipped, ff:fe in the middle). */
export function linkLocalFromMac(mac: string): string {
  if (!isMac(mac)) throw new Error(`"${mac}" is not a MAC address (want aa:bb:cc:dd:ee:ff, lower case)`);
  const b = mac.split(':').map((x) => Number.parseInt(x, 16)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return formatIPv6([
    0xfe80,
    0,
    0,
    0,
    ((b[0] ^ 0x02) << 8) | b[1],
    (b[2] << 8) | 0xff,
    0xfe00 | b[3],
    (b[4] << 8) | b[5],
  ]);
}
