// Parsers for iproute2's FDB and neighbour records. Dumps come from `-j ... show`
// (JSON). Monitors come from `bridge monitor fdb` and `ip monitor neigh` as text,
// because iproute2 6.1 accepts -j on monitor but still prints text.

/** One learned or static bridge FDB entry: where a MAC was last seen. */
export interface FdbRecord {
  mac: string;
  /** The bridge port the MAC sits behind. */
  port: string;
  bridge: string;
  /** Only set on a VLAN-filtering bridge. */
  vlan?: number;
  static: boolean;
  /** A static entry the bridge never moves to another port (berth's pin). */
  sticky: boolean;
}

export type FdbEvent = { kind: 'add'; record: FdbRecord } | { kind: 'del'; record: FdbRecord };

export interface NeighRecord {
  ip: string;
  dev: string;
  mac: string;
  /** PERMANENT: written by an administrator (berth); ARP never changes it. */
  permanent: boolean;
}

/** A neighbour that maps an IP to a MAC (`add`), or no longer does (`del`). */
export type NeighEvent = { kind: 'add'; record: NeighRecord } | { kind: 'del'; ip: string; dev: string };

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
// These states carry an lladdr the kernel has seen answer or speak; FAILED and
// INCOMPLETE carry none worth trusting, NOARP entries are not learned from a guest.
const USABLE_STATES = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT']);
const BANNER = /^\[[A-Z]+\]\s*/;

/**
 * A bridge entry worth observing: on a bridge (master), behind a port that is not
 * the bridge itself, and not `permanent` (the port's or bridge's own address,
 * which the kernel installs and nobody learns).
 */
function fdbRecord(
  mac: string,
  port: string,
  bridge: string | undefined,
  state: string,
  vlan: number | undefined,
  sticky: boolean,
) {
  if (!bridge || port === bridge || state === 'permanent' || !MAC.test(mac)) return undefined;
  const record: FdbRecord = { mac, port, bridge, static: state === 'static', sticky };
  if (vlan !== undefined) record.vlan = vlan;
  return record;
}

/** Parses `bridge -j fdb show`; entries that say nothing about a guest are dropped. */
export function parseFdbDump(json: string): FdbRecord[] {
  const rows = parseArray(json, 'bridge fdb show');
  const out: FdbRecord[] = [];
  for (const row of rows) {
    if (typeof row !== 'object' || row === null) continue;
    const r = row as Record<string, unknown>;
    if (typeof r.mac !== 'string' || typeof r.ifname !== 'string') continue;
    const record = fdbRecord(
      r.mac.toLowerCase(),
      r.ifname,
      typeof r.master === 'string' ? r.master : undefined,
      typeof r.state === 'string' ? r.state : '',
      typeof r.vlan === 'number' ? r.vlan : undefined,
      Array.isArray(r.flags) && r.flags.includes('sticky'),
    );
    if (record) out.push(record);
  }
  return out;
}

/**
 * Parses one line of `bridge monitor fdb`:
 * `[Deleted ]MAC dev PORT [vlan N] [self] [sticky] master BRIDGE [permanent|static|...]`.
 */
export function parseFdbLine(line: string): FdbEvent | undefined {
  let words = line.replace(BANNER, '').trim().split(/\s+/);
  let deleted = false;
  if (words[0] === 'Deleted') {
    deleted = true;
    words = words.slice(1);
  }
  const mac = words[0]?.toLowerCase() ?? '';
  const port = valueAfter(words, 'dev');
  if (!port) return undefined;
  const vlanText = valueAfter(words, 'vlan');
  const vlan = vlanText === undefined ? undefined : Number(vlanText);
  const state = words.includes('permanent') ? 'permanent' : words.includes('static') ? 'static' : '';
  const record = fdbRecord(
    mac,
    port,
    valueAfter(words, 'master'),
    state,
    Number.isInteger(vlan) ? vlan : undefined,
    words.includes('sticky'),
  );
  if (!record) return undefined;
  return deleted ? { kind: 'del', record } : { kind: 'add', record };
}

/** Parses `ip -j neigh show`; only IPv4 entries in a usable state are kept. */
export function parseNeighDump(json: string): NeighRecord[] {
  const out: NeighRecord[] = [];
  for (const row of parseArray(json, 'ip neigh show')) {
    if (typeof row !== 'object' || row === null) continue;
    const r = row as Record<string, unknown>;
    const states = Array.isArray(r.state) ? r.state.map(String) : [];
    if (typeof r.dst !== 'string' || typeof r.dev !== 'string' || typeof r.lladdr !== 'string') continue;
    const mac = r.lladdr.toLowerCase();
    if (!isIPv4Text(r.dst) || !MAC.test(mac) || !states.some((s) => USABLE_STATES.has(s))) continue;
    out.push({ ip: r.dst, dev: r.dev, mac, permanent: states.includes('PERMANENT') });
  }
  return out;
}

/**
 * Parses one line of `ip monitor neigh`:
 * `[Deleted |miss ]IP dev DEV [lladdr MAC] [router] [proxy] STATE...`.
 * A line whose state is not usable (FAILED, INCOMPLETE) is a `del`: that IP no
 * longer names a MAC we can trust.
 */
export function parseNeighLine(line: string): NeighEvent | undefined {
  let words = line.replace(BANNER, '').trim().split(/\s+/);
  // `miss` reports a lookup the kernel made on someone's behalf, not a change.
  if (words[0] === 'miss') return undefined;
  let deleted = false;
  if (words[0] === 'Deleted') {
    deleted = true;
    words = words.slice(1);
  }
  const ip = words[0] ?? '';
  const dev = valueAfter(words, 'dev');
  if (!isIPv4Text(ip) || !dev) return undefined;
  const mac = valueAfter(words, 'lladdr')?.toLowerCase();
  const usable = words.some((w) => USABLE_STATES.has(w));
  if (deleted || !usable || !mac || !MAC.test(mac)) return { kind: 'del', ip, dev };
  return { kind: 'add', record: { ip, dev, mac, permanent: words.includes('PERMANENT') } };
}

/** Source addresses of IPv4 peers on a dual-stack socket arrive as `::ffff:a.b.c.d`. */
export function plainIPv4(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

function isIPv4Text(text: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(text);
}

function valueAfter(words: string[], key: string): string | undefined {
  const i = words.indexOf(key);
  return i >= 0 ? words[i + 1] : undefined;
}

function parseArray(json: string, what: string): unknown[] {
  // iproute2 prints nothing at all, not [], when a table is empty in some versions.
  if (json.trim() === '') return [];
  const value: unknown = JSON.parse(json);
  if (!Array.isArray(value)) throw new Error(`${what} printed ${typeof value}, not a JSON array`);
  return value;
}
