// The guard watch: nft monitor text grouped into transactions, berth's own
// writes ignored by pid, what a change touched (the table, a port, the
// skeleton), early healing on a skeleton line, folding while a heal runs,
// and a restart with backoff followed by a full reconcile.
import t from 'tap';
import { RecentWriters } from '../../hostnet/guard/nft.js';
import { GuardWatch } from '../../hostnet/guard/watch.js';
import { type Tamper, TransactionReader, tamperOf } from '../../hostnet/guard/watch-events.js';
import type { MonitorHandlers } from '../../hostnet/observe/monitor.js';

const T = 'bth_guard';

function tx(lines: string[], pid = 99) {
  const r = new TransactionReader();
  for (const l of lines) t.equal(r.line(l), undefined);
  return r.line(`# new generation 7 by process ${pid} (nft)`);
}

t.test('transactions and what they touched', async (t) => {
  const flush = tx([
    'delete rule bridge bth_guard prerouting handle 7',
    'delete rule bridge other_guard prerouting handle 3',
    'delete set bridge bth_guard ports',
    'delete table bridge bth_guard',
    'delete table ip filter',
  ]);
  t.same(flush?.pid, 99);
  const gone = tamperOf(flush as NonNullable<typeof flush>, T) as Tamper;
  t.equal(gone.tableGone, true);
  t.equal(gone.whole, true);
  t.equal(gone.events, 3, 'only lines about this table count');

  const chain = tamperOf(
    tx([
      'delete rule bridge bth_guard port_bthpa0 handle 6',
      'delete set bridge bth_guard __set400',
      'delete rule bridge bth_guard port_bthpa0 handle 8',
    ]) as NonNullable<ReturnType<typeof tx>>,
    T,
  ) as Tamper;
  t.same(
    { whole: chain.whole, ports: chain.ports, gone: chain.tableGone },
    { whole: false, ports: ['bthpa0'], gone: false },
  );

  const elements = tamperOf(
    tx([
      'delete element bridge bth_guard ports { "bthpa0" : jump port_bthpa0 }',
      'delete element bridge bth_guard dhcp_paths { "bthpb0" . "bthe1" }',
      'delete element bridge bth_guard dhcp_replies { "bthpc0" . 0x0ab7e7000001 }',
    ]) as NonNullable<ReturnType<typeof tx>>,
    T,
  ) as Tamper;
  t.same(elements.ports, ['bthpa0', 'bthpb0', 'bthpc0']);
  t.equal(elements.whole, false);

  const rate = tx(['add element bridge bth_guard rl_mac_spoof { "bthpa0" timeout 10s }']);
  t.equal(
    tamperOf(rate as NonNullable<typeof rate>, T),
    undefined,
    'the kernel filling a rate set is no tamper',
  );
  const other = tx(['add table ip nat']);
  t.equal(tamperOf(other as NonNullable<typeof other>, T), undefined);
  const log = tamperOf(
    tx(['delete rule bridge bth_guard log_mac_spoof handle 9']) as NonNullable<ReturnType<typeof tx>>,
    T,
  ) as Tamper;
  t.equal(log.whole, true, 'a log chain is the skeleton');
});

t.test('recent writers: own pids, and writes whose transaction is not seen yet', async (t) => {
  const w = new RecentWriters();
  w.add(10, 1000);
  t.equal(w.writing(1500), true);
  t.equal(w.seen(11, 1500), false);
  t.equal(w.seen(10, 1500), true);
  t.equal(w.writing(1500), false, 'seen: no longer on its way');
  w.add(12, 2000);
  t.equal(w.writing(6000), false, 'a write never seen stops counting after a few seconds');
  t.equal(w.seen(12, 2000 + 61_000), false, 'a pid is ours only for a minute');
});

function harness(opts: { own?: Set<number>; writing?: () => boolean } = {}) {
  const spawns: MonitorHandlers[] = [];
  const heals: (Tamper | undefined)[] = [];
  let release: (() => void) | undefined;
  const watch = new GuardWatch({
    table: T,
    ownTransaction: (pid) => opts.own?.has(pid) ?? false,
    writing: opts.writing ?? (() => false),
    heal: (tamper) => {
      heals.push(tamper);
      return new Promise<void>((r) => {
        release = r;
      });
    },
    spawner: {
      spawn(_argv, h) {
        spawns.push(h);
        return { kill() {} };
      },
    },
    settleMs: 1,
    backoff: { initialMs: 5, maxMs: 20 },
  });
  const feed = (lines: string[], pid: number) => {
    const h = spawns.at(-1) as MonitorHandlers;
    for (const l of lines) h.line(l);
    h.line(`# new generation 1 by process ${pid} (nft)`);
  };
  const done = async () => {
    release?.();
    release = undefined;
    await new Promise((r) => setTimeout(r, 5));
  };
  return { watch, spawns, heals, feed, done };
}

t.test(
  'the watch heals foreign changes only, folds what arrives meanwhile, and reconciles after each (re)start',
  async (t) => {
    const h = harness({ own: new Set([1]) });
    h.watch.start();
    h.spawns[0]?.spawned();
    await new Promise((r) => setTimeout(r, 10));
    t.same(h.heals, [undefined], 'a full reconcile once subscribed');
    await h.done();

    h.feed(['delete rule bridge bth_guard port_bthpa0 handle 6'], 1);
    t.equal(h.heals.length, 1, "berth's own write is ignored");

    h.feed(['delete rule bridge bth_guard port_bthpa0 handle 6'], 2);
    t.equal(h.heals.length, 2);
    t.same(h.heals[1]?.ports, ['bthpa0']);
    h.feed(['delete element bridge bth_guard ports { "bthpb0" : jump port_bthpb0 }'], 3);
    h.feed(['delete rule bridge bth_guard port_bthpc0 handle 9'], 4);
    t.equal(h.heals.length, 2, 'one heal at a time');
    await h.done();
    t.equal(h.heals.length, 3, 'what arrived meanwhile: one more heal');
    t.same(h.heals[2]?.ports, ['bthpb0', 'bthpc0']);
    await h.done();

    h.spawns[0]?.exit('killed by SIGKILL');
    await new Promise((r) => setTimeout(r, 15));
    t.equal(h.spawns.length, 2, 'restarted after the backoff');
    h.spawns[1]?.spawned();
    await new Promise((r) => setTimeout(r, 10));
    t.equal(h.heals.at(-1), undefined, 'events were missed: a full reconcile');
    await h.done();
    h.watch.stop();
  },
);

t.test('a skeleton line heals at once when berth is not writing; not while it is', async (t) => {
  let writing = false;
  const h = harness({ writing: () => writing });
  h.watch.start();
  const m = h.spawns[0] as MonitorHandlers;
  m.line('delete rule bridge bth_guard prerouting handle 7');
  t.equal(h.heals.length, 1, 'before the generation line');
  t.equal(h.heals[0]?.whole, true);
  m.line('delete table bridge bth_guard');
  m.line('# new generation 9 by process 50 (nft)');
  await h.done();
  t.equal(h.heals.length, 1, 'the rest of that transaction starts nothing more');

  writing = true;
  m.line('delete rule bridge bth_guard prerouting handle 7');
  t.equal(h.heals.length, 1, 'while berth writes, wait for the writer');
  m.line('delete table bridge bth_guard');
  m.line('# new generation 10 by process 51 (nft)');
  t.equal(h.heals.length, 2);
  t.equal(h.heals[1]?.tableGone, true, 'known gone: written without reading');
  await h.done();
  h.watch.stop();
});
