// The observer with fakes for its two OS seams the observer uses: dumps (CommandRunner) and
// monitor children (MonitorSpawner). Lines are the iproute2 text the real
// monitors print.
import type { CommandRunner } from '../../hostnet/command.js';
import type { MonitorHandlers, MonitorSpawner } from '../../hostnet/observe/monitor.js';

export class FakeChild {
  killed = false;
  constructor(
    readonly argv: string[],
    private readonly h: MonitorHandlers,
  ) {}

  line(text: string): void {
    this.h.line(text);
  }

  die(reason = 'exit code 1'): void {
    this.h.exit(reason);
  }

  kill(): void {
    this.killed = true;
    this.h.exit('killed by SIGTERM');
  }
}

export class FakeSpawner implements MonitorSpawner {
  readonly children: FakeChild[] = [];

  spawn(argv: string[], handlers: MonitorHandlers): FakeChild {
    const child = new FakeChild(argv, handlers);
    this.children.push(child);
    queueMicrotask(() => handlers.spawned());
    return child;
  }

  /** The newest child whose argv contains every word given. */
  latest(...words: string[]): FakeChild {
    const found = this.children.filter((c) => words.every((w) => c.argv.includes(w))).at(-1);
    if (!found) throw new Error(`no child with ${words.join(' ')}`);
    return found;
  }

  alive(): FakeChild[] {
    return this.children.filter((c) => !c.killed);
  }
}

/** Answers dumps from `tables`, keyed by the argv joined with spaces. */
export class FakeRunner implements CommandRunner {
  readonly tables = new Map<string, unknown[]>();
  readonly calls: string[] = [];
  /** Runs during a dump, before it answers: lets a test inject events mid-dump. */
  duringDump: ((argv: string) => void) | undefined;
  fail = false;

  async run(argv: string[]) {
    const key = argv.join(' ');
    this.calls.push(key);
    await new Promise((r) => setImmediate(r));
    const snapshot = JSON.stringify(this.tables.get(key) ?? []);
    this.duringDump?.(key);
    if (this.fail) throw new Error(`${key}: Cannot open network namespace`);
    return { stdout: snapshot, stderr: '' };
  }
}

export const FDB_DUMP = 'bridge -j fdb show';
export const neighDump = (ns: string) => `ip -4 -n ${ns} -j neigh show`;
export const fdbRow = (mac: string, port: string, bridge: string) => ({
  mac,
  ifname: port,
  flags: [],
  master: bridge,
  state: '',
});
export const neighRow = (ip: string, mac: string) => ({ dst: ip, dev: 'eth0', lladdr: mac, state: ['STALE'] });
