// Reads `nft monitor` text: the events of one transaction are printed line by
// line, then "# new generation N by process PID (COMM)". This groups them into
// transactions and says which ones touched berth's own guard table, and how.
// Pure: the watch (watch.ts) owns the child and the reaction.
import { CHAIN_PREFIX, DHCP_PATHS, DHCP_REPLIES, PORT_MAP } from './render.js';

export interface Transaction {
  generation: number | undefined;
  /** The writer; undefined when nft did not name it (then it is never berth's). */
  pid: number | undefined;
  comm: string | undefined;
  lines: string[];
}

/** What a foreign transaction did to the guard table. */
export interface Tamper {
  /** "delete table bridge <table>" was among the events: the table is gone. */
  tableGone: boolean;
  /** Something beyond port chains, port elements and port counters changed: heal the whole table. */
  whole: boolean;
  /** Guest ports whose chain, elements or counters changed. */
  ports: string[];
  /** The events about the table, at most a few, for the log. */
  seen: string[];
  /** How many events touched the table. */
  events: number;
  pid: number | undefined;
  comm: string | undefined;
}

const GENERATION = /^# new generation (\d+)(?: by process (\d+) \(([^)]*)\))?/;
// "<verb> <object> bridge <table> [<name>] ...": add, delete … rule/chain/set/map/element/counter/table.
const EVENT = /^(\w+) (\w+) (\w+) (\S+)(?: (\S+))?/;
// Keys of the port map and the DHCP sets: `"port" : jump …`, `"port" . "endpoint"`, `"port" . 0x…`.
const ELEMENT_KEY = /"([a-z0-9_-]+)"\s*[:.]/g;
const BASE_CHAINS = new Set(['prerouting', 'forward', 'input']);

/** One event line about the table: the port it concerns, or "whole" for the rest; undefined when it is no tamper. */
export function scopeOf(
  line: string,
  table: string,
): { ports: string[] } | 'whole' | 'other-table' | undefined {
  const m = EVENT.exec(line);
  if (m?.[3] !== 'bridge' || m[4] !== table) return 'other-table';
  const [kind, name] = [m[2], m[5] ?? ''];
  if (kind === 'rule' || kind === 'chain') {
    if (name.startsWith(CHAIN_PREFIX)) return { ports: [name.slice(CHAIN_PREFIX.length)] };
    return 'whole';
  }
  // Anonymous sets (`__set12`) belong to a rule, whose own event says what changed.
  if ((kind === 'set' || kind === 'map' || kind === 'element') && name.startsWith('__')) return undefined;
  if (kind === 'element') {
    // The log chains' rate sets are filled and aged by the kernel itself.
    if (name.startsWith('rl_')) return undefined;
    if (name === PORT_MAP || name === DHCP_PATHS || name === DHCP_REPLIES) {
      const ports = [...line.matchAll(ELEMENT_KEY)].map((k) => k[1] as string);
      return ports.length > 0 ? { ports } : 'whole';
    }
    return 'whole';
  }
  if (kind === 'counter' && name.includes('.')) return { ports: [name.slice(0, name.indexOf('.'))] };
  return 'whole';
}

/** True when a line alone says the skeleton changed: heal at once, without waiting for the transaction's end. */
export function skeletonLine(line: string, table: string): boolean {
  const m = EVENT.exec(line);
  if (m?.[3] !== 'bridge' || m[4] !== table) return false;
  return m[2] === 'table' || (m[2] === 'rule' && BASE_CHAINS.has(m[5] ?? ''));
}
const SEEN_KEPT = 5;

/** Buffers monitor lines into transactions; feed it every line, it returns a transaction when one ends. */
export class TransactionReader {
  private lines: string[] = [];

  line(text: string): Transaction | undefined {
    const gen = GENERATION.exec(text);
    if (!gen) {
      if (text.trim() !== '') this.lines.push(text.trim());
      return undefined;
    }
    const lines = this.lines;
    this.lines = [];
    return {
      generation: Number(gen[1]),
      pid: gen[2] === undefined ? undefined : Number(gen[2]),
      comm: gen[3],
      lines,
    };
  }

  /** Events read since the last generation line (a monitor that died mid-transaction). */
  pending(): number {
    return this.lines.length;
  }
}

/**
 * What the transaction did to `bridge <table>`, or undefined when it did not
 * touch it. Every change counts, not only deletions: a rule inserted or a map
 * element replaced by hand weakens the guard as surely as a deleted one.
 */
export function tamperOf(tx: Transaction, table: string): Tamper | undefined {
  let events = 0;
  let tableGone = false;
  let whole = false;
  const ports = new Set<string>();
  const seen: string[] = [];
  for (const line of tx.lines) {
    const scope = scopeOf(line, table);
    if (scope === undefined || scope === 'other-table') continue;
    events++;
    if (line.startsWith(`delete table bridge ${table}`)) tableGone = true;
    if (scope === 'whole') whole = true;
    else for (const p of scope.ports) ports.add(p);
    if (seen.length < SEEN_KEPT) seen.push(line);
  }
  if (events === 0) return undefined;
  return { tableGone, whole, ports: [...ports].sort(), seen, events, pid: tx.pid, comm: tx.comm };
}

/** Folds tampers that arrive while a heal runs into one: gone if any said gone. */
export function mergeTamper(a: Tamper | undefined, b: Tamper): Tamper {
  if (!a) return b;
  return {
    tableGone: a.tableGone || b.tableGone,
    whole: a.whole || b.whole,
    ports: [...new Set([...a.ports, ...b.ports])].sort(),
    seen: [...a.seen, ...b.seen].slice(0, SEEN_KEPT),
    events: a.events + b.events,
    pid: b.pid,
    comm: b.comm,
  };
}
