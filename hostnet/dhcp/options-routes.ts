// Option 121, classless static routes (RFC 3442). Each route is a destination
// descriptor (mask width, then only the significant octets of the subnet
// number: ceil(width / 8) of them) followed by the 4-octet router. A router of
// 0.0.0.0 means the destination is on-link, which is how a guest reaches
// 169.254.169.254/32 without a gateway.
import { invalidField } from '../../base/errors.js';
import { cidrProblem, isIPv4, parseCidr, prefixMask } from '../ipv4.js';

export interface ClasslessRoute {
  /** "a.b.c.d/n" with no host bits set. */
  destination: string;
  router: string;
}

/** The routes, or undefined when the bytes are not a well-formed RFC 3442 list (minimum 5 octets). */
export function decodeClasslessRoutes(buf: Buffer): ClasslessRoute[] | undefined {
  if (buf.length < 5) return undefined;
  const routes: ClasslessRoute[] = [];
  let i = 0;
  while (i < buf.length) {
    const width = buf[i] as number;
    if (width > 32) return undefined;
    const significant = (width + 7) >> 3;
    if (i + 1 + significant + 4 > buf.length) return undefined;
    let network = 0;
    for (let k = 0; k < 4; k++) network = network * 256 + (k < significant ? (buf[i + 1 + k] as number) : 0);
    // Senders may leave bits beyond the width set inside the last significant
    // octet; the route a client installs ignores them, and so do we.
    network = (network & prefixMask(width)) >>> 0;
    const r = i + 1 + significant;
    routes.push({
      destination: `${network >>> 24}.${(network >>> 16) & 255}.${(network >>> 8) & 255}.${network & 255}/${width}`,
      router: `${buf[r]}.${buf[r + 1]}.${buf[r + 2]}.${buf[r + 3]}`,
    });
    i = r + 4;
  }
  return routes;
}

/** One destination descriptor: width octet plus the significant octets. */
export function destinationDescriptor(cidr: string, field = 'destination'): Buffer {
  const parsed = parseCidr(cidr);
  if (parsed === undefined) throw invalidField(field, cidrProblem(cidr) ?? `"${cidr}" is not a CIDR`);
  const significant = (parsed.prefix + 7) >> 3;
  const out = Buffer.alloc(1 + significant);
  out[0] = parsed.prefix;
  for (let k = 0; k < significant; k++) out[1 + k] = (parsed.network >>> (24 - 8 * k)) & 255;
  return out;
}

export function encodeClasslessRoutes(routes: readonly ClasslessRoute[], field = 'classlessRoutes'): Buffer {
  if (routes.length === 0) throw invalidField(field, 'needs at least one route');
  const parts: Buffer[] = [];
  routes.forEach((route, i) => {
    parts.push(destinationDescriptor(route.destination, `${field}[${i}].destination`));
    if (!isIPv4(route.router))
      throw invalidField(`${field}[${i}].router`, `"${route.router}" is not an IPv4 address`);
    parts.push(Buffer.from(route.router.split('.').map(Number)));
  });
  return Buffer.concat(parts);
}
