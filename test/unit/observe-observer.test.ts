// The observer with fakes for its two OS seams: dumps (CommandRunner) and
// monitor children (MonitorSpawner). Lines are the text the real iproute2 6.1
// monitors print.
import pino from 'pino';
import t, { type Test } from 'tap';
import type { CommandRunner } from '../../base/command.js';
import { BerthError } from '../../base/errors.js';
import { Names } from '../../hostnet/names.js';
import type { MonitorHandlers, MonitorSpawner } from '../../hostnet/observe/monitor.js';
import {
  IdentityObserver,
  type IdentityObserverOptions,
  type ObserveChange,
} from '../../hostnet/observe/observer.js';
import { decideMac as decide, MemoryPortDirectory } from '../../hostnet/observe/resolve.js';

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
    this.killed = true;
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
export const neighRow = (ip: string, mac: string) => ({
  dst: ip,
  dev: 'eth0',
  lladdr: mac,
  state: ['PERMANENT'],
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MAC_A = '02:00:00:00:00:0a';
const MAC_B = '02:00:00:00:00:0b';
const MAC_X = '02:00:00:00:00:ee';
const MAC_C = '02:00:00:00:00:0c';
/** Five guests whose events the monitors lose in one test. */
const LOST = [1, 2, 3, 4, 5].map((i) => ({
  ifname: `obpe${i}`,
  mac: `02:00:00:00:01:0${i}`,
  instance: `inst-e${i}`,
  ip: `10.99.0.3${i}`,
}));

function directory(): MemoryPortDirectory {
  const d = new MemoryPortDirectory();
  d.set({ ifname: 'obpa', mac: MAC_A, instance: 'inst-a', network: 'net1', ip: '10.99.0.11' });
  d.set({ ifname: 'obpb', mac: MAC_B, instance: 'inst-b', network: 'net1', ip: '10.99.0.12' });
  d.set({ ifname: 'obpd', mac: MAC_C, instance: 'inst-c', network: 'net1', ip: '10.99.0.21' });
  // Assigned, never pinned: a guest berth is still writing.
  d.set({ ifname: 'obpw', mac: '02:00:00:00:00:98', instance: 'inst-w', network: 'net1', ip: '10.99.0.98' });
  d.set({ ifname: 'obpv', mac: '02:00:00:00:00:99', instance: 'inst-v', network: 'net1', ip: '10.99.0.99' });
  for (const g of LOST) d.set({ ...g, network: 'net1' });
  return d;
}

t.test('decision table', async (t) => {
  const d = directory();
  const rows: [string, string | undefined, string | undefined, ReturnType<typeof decide>][] = [
    ['no neighbour', undefined, undefined, { ok: false, reason: 'no-neighbour' }],
    ['MAC on no port', MAC_A, undefined, { ok: false, reason: 'mac-not-on-port', mac: MAC_A }],
    ['own port', MAC_A, 'obpa', { ok: true, mac: MAC_A, port: 'obpa', instance: 'inst-a' }],
    [
      "another guest's port",
      MAC_A,
      'obpb',
      { ok: false, reason: 'mac-wrong-port', mac: MAC_A, port: 'obpb' },
    ],
    ['a port nobody owns', MAC_A, 'obpz', { ok: false, reason: 'mac-wrong-port', mac: MAC_A, port: 'obpz' }],
    [
      'stranger on an owned port',
      MAC_X,
      'obpb',
      { ok: false, reason: 'mac-wrong-port', mac: MAC_X, port: 'obpb' },
    ],
    [
      'stranger on a foreign port',
      MAC_X,
      'obpz',
      { ok: false, reason: 'port-not-owned', mac: MAC_X, port: 'obpz' },
    ],
  ];
  for (const [name, mac, port, want] of rows) t.same(decide('net1', mac, port, d), want, name);
  // The right port of the wrong network is not the instance's port.
  t.same(decide('net2', MAC_A, 'obpa', d), { ok: false, reason: 'mac-wrong-port', mac: MAC_A, port: 'obpa' });
});

t.test('memory directory keeps MAC and port unique', async (t) => {
  const d = directory();
  d.set({ ifname: 'obpc', mac: MAC_A.toUpperCase(), instance: 'inst-c', network: 'net1' });
  t.equal(d.portByMac(MAC_A)?.instance, 'inst-c', 'a MAC reassigned moves with its new port');
  t.equal(d.portByIfname('obpa'), undefined, 'the old port no longer claims it');
  d.delete('obpc');
  t.equal(d.portByMac(MAC_A), undefined);
  d.delete('obpc');
});

interface Rig {
  observer: IdentityObserver;
  spawner: FakeSpawner;
  runner: FakeRunner;
  changes: ObserveChange[];
  warnings: unknown[];
}

async function rig(t: Test, options: Partial<IdentityObserverOptions> = {}): Promise<Rig> {
  const spawner = new FakeSpawner();
  const runner = new FakeRunner();
  runner.tables.set(FDB_DUMP, [
    fdbRow(MAC_A, 'obpa', 'obb1'),
    fdbRow(MAC_B, 'obpb', 'obb1'),
    fdbRow(MAC_A, 'veth9', 'docker0'),
  ]);
  runner.tables.set(neighDump('ob-ep-1'), [neighRow('10.99.0.11', MAC_A), neighRow('10.99.0.12', MAC_B)]);
  const warnings: unknown[] = [];
  const observer = new IdentityObserver({
    names: new Names('ob'),
    directory: directory(),
    runner,
    spawner,
    settleMs: 1,
    backoff: { initialMs: 2, maxMs: 300 },
    logger: { warn: (obj) => warnings.push(obj) },
    ...options,
  });
  t.teardown(() => observer.stop());
  const changes: ObserveChange[] = [];
  observer.onChange((c) => changes.push(c));
  await observer.start();
  await observer.addNetwork({ name: 'net1', bridge: 'obb1', netns: 'ob-ep-1' });
  return { observer, spawner, runner, changes, warnings };
}

t.test('resolves from the first dumps and ignores bridges it does not own', async (t) => {
  const { observer, spawner, changes } = await rig(t);
  t.same(observer.resolveNow('net1', '10.99.0.11'), {
    ok: true,
    mac: MAC_A,
    port: 'obpa',
    instance: 'inst-a',
  });
  t.same(observer.resolveNow('net1', '::ffff:10.99.0.12'), {
    ok: true,
    mac: MAC_B,
    port: 'obpb',
    instance: 'inst-b',
  });
  t.same(observer.resolveNow('net1', '10.99.0.13'), { ok: false, reason: 'ip-not-assigned' });
  t.same(observer.stats(), { fdbEntries: 2, neighbours: { 'ob-ep-1': 2 }, monitorsAlive: 2 });
  t.ok(changes.some((c) => c.kind === 'fdb' && c.mac === MAC_A && c.port === 'obpa'));
  t.notOk(changes.some((c) => c.kind === 'fdb' && c.bridge === 'docker0'));
  t.same(
    spawner.children.map((c) => c.argv.join(' ')),
    ['bridge monitor fdb', 'ip -4 -n ob-ep-1 monitor neigh'],
  );
  const err = t.throws(() => observer.resolveNow('nope', '10.99.0.11')) as unknown;
  t.ok(err instanceof BerthError && err.code === 'BERTH_ERR_NOT_FOUND');
  t.match((err as Error).message, 'could not resolve caller on network "nope": the network is not observed');
});

t.test('events update the views and report real changes only', async (t) => {
  const { observer, spawner, changes } = await rig(t);
  const fdb = spawner.latest('fdb');
  const neigh = spawner.latest('neigh');
  changes.length = 0;
  // B's MAC learned behind a third port: the FDB moves it there.
  fdb.line(`${MAC_B} dev obpx master obb1 `);
  t.same(observer.resolveNow('net1', '10.99.0.12'), {
    ok: false,
    reason: 'mac-wrong-port',
    mac: MAC_B,
    port: 'obpx',
    instance: 'inst-b',
  });
  t.same(changes, [
    { kind: 'fdb', bridge: 'obb1', mac: MAC_B, port: 'obpx', previousPort: 'obpb', pinned: false },
  ]);
  // A stale delete for the old port must not erase the new location.
  fdb.line(`Deleted ${MAC_B} dev obpb master obb1 `);
  t.equal(observer.resolveNow('net1', '10.99.0.12').ok, false);
  t.equal(changes.length, 1);
  fdb.line(`Deleted ${MAC_B} dev obpx master obb1 `);
  t.same(observer.resolveNow('net1', '10.99.0.12'), {
    ok: false,
    reason: 'mac-not-on-port',
    mac: MAC_B,
    instance: 'inst-b',
  });
  // The same PERMANENT entry again is not a change.
  neigh.line(`10.99.0.11 dev eth0 lladdr ${MAC_A} PERMANENT`);
  t.equal(changes.length, 2);
  // The same MAC, learned instead of pinned, is a change: it no longer decides.
  neigh.line(`10.99.0.11 dev eth0 lladdr ${MAC_A} REACHABLE`);
  t.equal(changes.length, 3);
  t.same(observer.resolveNow('net1', '10.99.0.11'), {
    ok: false,
    reason: 'neighbour-not-pinned',
    mac: MAC_A,
    port: 'obpa',
    instance: 'inst-a',
  });
  neigh.line('10.99.0.11 dev eth0  FAILED');
  t.same(observer.resolveNow('net1', '10.99.0.11'), {
    ok: false,
    reason: 'no-neighbour',
    instance: 'inst-a',
  });
  t.same(changes.at(-1), {
    kind: 'neigh',
    netns: 'ob-ep-1',
    ip: '10.99.0.11',
    mac: undefined,
    previousMac: MAC_A,
    permanent: false,
  });
  neigh.line('this is not a neighbour line');
  t.equal(changes.length, 4);
});

t.test(
  'a miss waits for the event instead of refusing, and runs no command before the wait ends',
  async (t) => {
    const { observer, spawner, runner } = await rig(t);
    const calls = runner.calls.length;
    const pending = observer.resolve('net1', '10.99.0.21', { waitMs: 2000 });
    const started = Date.now();
    setTimeout(() => {
      spawner.latest('neigh').line(`10.99.0.21 dev eth0 lladdr ${MAC_C} PERMANENT`);
      // Still a miss (MAC on no port) until the FDB event follows.
      setTimeout(() => spawner.latest('fdb').line(`${MAC_C} dev obpa master obb1`), 10);
    }, 20);
    t.same(await pending, {
      ok: false,
      reason: 'mac-wrong-port',
      mac: MAC_C,
      port: 'obpa',
      instance: 'inst-c',
    });
    t.ok(Date.now() - started < 1000, 'answered on the event, not at the deadline');
    t.equal(runner.calls.length, calls, 'answered from events: no dump, no command');
    // A refusal that is not about a guest arriving is answered at once.
    spawner.latest('fdb').line(`${MAC_B} dev obpq master obb1`);
    const t0 = Date.now();
    t.equal((await observer.resolve('net1', '10.99.0.12', { waitMs: 5000 })).ok, false);
    t.ok(Date.now() - t0 < 1000);
    t.equal(runner.calls.length, calls, 'no dump or other command for it either');
    // Nor is an address nobody was assigned: no wait, no dump.
    const u0 = Date.now();
    t.same(await observer.resolve('net1', '10.99.0.97', { waitMs: 5000 }), {
      ok: false,
      reason: 'ip-not-assigned',
    });
    t.ok(Date.now() - u0 < 1000);
    // A learned entry is never berth's: refused at once too.
    spawner.latest('neigh').line(`10.99.0.12 dev eth0 lladdr ${MAC_B} STALE`);
    t.match(await observer.resolve('net1', '10.99.0.12', { waitMs: 5000 }), {
      reason: 'neighbour-not-pinned',
    });
    t.equal(runner.calls.length, calls, 'no dump or other command for them either');
    // Nothing arrives: the tables are dumped once, then the guest is refused.
    const missed = await observer.resolve('net1', '10.99.0.99', { waitMs: 30 });
    t.same(missed, { ok: false, reason: 'no-neighbour', instance: 'inst-v' });
    t.same(runner.calls.slice(calls).sort(), [FDB_DUMP, neighDump('ob-ep-1')].sort());
    // stop() answers whoever is still waiting.
    const waiting = observer.resolve('net1', '10.99.0.98', { waitMs: 60_000 });
    observer.stop();
    t.same(await waiting, { ok: false, reason: 'no-neighbour', instance: 'inst-w' });
  },
);

t.test('an event the monitor never delivered is found by the dump after the wait', async (t) => {
  const { observer, runner } = await rig(t);
  // Five guests were pinned and spoke; the monitor streams lost the events (a busy host).
  runner.tables.get(neighDump('ob-ep-1'))?.push(...LOST.map((g) => neighRow(g.ip, g.mac)));
  runner.tables.get(FDB_DUMP)?.push(...LOST.map((g) => fdbRow(g.mac, g.ifname, 'obb1')));
  const calls = runner.calls.length;
  const found = await Promise.all(LOST.map((g) => observer.resolve('net1', g.ip, { waitMs: 20 })));
  for (const [i, g] of LOST.entries())
    t.same(found[i], { ok: true, mac: g.mac, port: g.ifname, instance: g.instance });
  // Misses at the same moment share dumps: one running, at most one more queued, per table.
  const dumps = runner.calls.slice(calls);
  t.ok(dumps.length >= 2 && dumps.length <= 4, `${dumps.length} dumps for ${LOST.length} misses`);
});

t.test('events that arrive during a dump are replayed on top of it', async (t) => {
  const { observer, spawner, runner } = await rig(t);
  runner.duringDump = (argv) => {
    if (argv === FDB_DUMP) spawner.latest('fdb').line(`${MAC_A} dev obpb master obb1`);
  };
  await observer.resync();
  t.same(observer.resolveNow('net1', '10.99.0.11'), {
    ok: false,
    reason: 'mac-wrong-port',
    mac: MAC_A,
    port: 'obpb',
    instance: 'inst-a',
  });
  runner.duringDump = undefined;
  // A dump alone also repairs missed events: A is back on its port, and B's entry is gone.
  runner.tables.set(neighDump('ob-ep-1'), [neighRow('10.99.0.11', MAC_A)]);
  await observer.resync();
  t.same(observer.resolveNow('net1', '10.99.0.11'), {
    ok: true,
    mac: MAC_A,
    port: 'obpa',
    instance: 'inst-a',
  });
  t.same(observer.resolveNow('net1', '10.99.0.12'), {
    ok: false,
    reason: 'no-neighbour',
    instance: 'inst-b',
  });
});

t.test('a monitor that dies is restarted with backoff and resynced', async (t) => {
  const { observer, spawner, runner, warnings } = await rig(t);
  const first = spawner.latest('neigh');
  runner.tables.set(neighDump('ob-ep-1'), [neighRow('10.99.0.12', MAC_B)]);
  first.die('exit code 1: Cannot send dump request');
  t.equal(observer.stats().monitorsAlive, 1);
  await sleep(60);
  const second = spawner.latest('neigh');
  t.not(second, first, 'a new child was spawned');
  t.equal(
    (observer.resolveNow('net1', '10.99.0.11') as { reason?: string }).reason,
    'no-neighbour',
    'and the view resynced',
  );
  t.equal(observer.resolveNow('net1', '10.99.0.12').ok, true);
  t.match(warnings, [{ what: 'neighbours of namespace "ob-ep-1"', reason: /Cannot send dump request/ }]);
  // Children that die soon after they start double the wait up to the cap; one
  // that ran longer than the cap earns a fresh backoff.
  const dieAndWait = async () => {
    const dying = spawner.latest('neigh');
    dying.die();
    while (spawner.latest('neigh') === dying) await sleep(1);
  };
  for (let i = 0; i < 4; i++) await dieAndWait();
  await sleep(320);
  await dieAndWait();
  t.same(
    warnings.map((w) => (w as { restartInMs: number }).restartInMs),
    [2, 4, 8, 16, 32, 2],
  );
  observer.stop();
  t.same(spawner.alive(), [], 'stop kills every child');
  const count = spawner.children.length;
  await sleep(60);
  t.equal(spawner.children.length, count, 'and nothing restarts after stop');
});

t.test('networks share a namespace monitor and release it', async (t) => {
  const { observer, spawner, runner } = await rig(t);
  await observer.addNetwork({ name: 'net1b', bridge: 'obb1', netns: 'ob-ep-1' });
  t.equal(spawner.children.filter((c) => c.argv.includes('neigh')).length, 1);
  observer.removeNetwork('net1');
  t.notOk(spawner.latest('neigh').killed);
  observer.removeNetwork('net1b');
  t.ok(spawner.latest('neigh').killed);
  observer.removeNetwork('net1b');
  runner.fail = true;
  const err = await observer
    .addNetwork({ name: 'net2', bridge: 'obb2', netns: 'ob-ep-gone' })
    .catch((e) => e);
  t.ok(err instanceof BerthError && err.code === 'BERTH_ERR_HOST_OP');
  t.match(
    err.message,
    /^could not observe neighbours of namespace "ob-ep-gone": ip -4 -n ob-ep-gone -j neigh show: Cannot open/,
  );
  t.ok(spawner.latest('ob-ep-gone').killed, 'the failed start leaves no child behind');
  t.throws(() => observer.resolveNow('net2', '10.99.0.11'), /not observed/);
});

t.test('logs through a pino logger', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ base: undefined }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const { spawner } = await rig(t, { logger });
  spawner.latest('fdb').die('exit code 2: Cannot open netlink socket');
  t.match(lines, [
    {
      level: 40,
      what: 'bridge FDB of namespace "root"',
      reason: 'exit code 2: Cannot open netlink socket',
      msg: 'observe: monitor exited; restarting',
    },
  ]);
});
