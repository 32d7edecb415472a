// The security-group watch as logic around its nft monitor seam: which
// monitor lines are changes to the tables, berth's own writes ignored,
// others' healed, one heal at a time. (test/netns/secgroups-traffic.test.ts
// heals real tables from a real nft monitor.)
import t from 'tap';
import type { MonitorHandlers, MonitorSpawner } from '../../hostnet/observe/monitor.js';
import { SecGroupWatch, skeletonLine, touches } from '../../hostnet/secgroups/watch.js';

t.test('lines about the tables, in both families; anonymous sets are their rule’s', async (t) => {
  t.ok(touches('delete rule bridge sg_sg port_sgp1 handle 12', 'sg_sg'));
  t.ok(touches('delete table inet sg_sg', 'sg_sg'));
  t.ok(touches('delete element bridge sg_sg s_web { 10.0.0.2 }', 'sg_sg'));
  t.notOk(touches('delete element bridge sg_sg __set3 { 1 }', 'sg_sg'));
  t.notOk(touches('delete rule bridge sg_guard port_x handle 3', 'sg_sg'), 'the guard is not ours here');
  t.notOk(touches('delete rule ip sg_sg x handle 3', 'sg_sg'), 'another family');
  t.ok(skeletonLine('delete table bridge sg_sg', 'sg_sg'));
  t.ok(skeletonLine('delete rule inet sg_sg forward handle 9', 'sg_sg'));
  t.notOk(
    skeletonLine('delete rule bridge sg_sg port_sgp1 handle 12', 'sg_sg'),
    'a port chain waits for the transaction',
  );
});

function fakeMonitor() {
  let handlers: MonitorHandlers | undefined;
  const spawner: MonitorSpawner = {
    spawn(_argv, h) {
      handlers = h;
      return { kill() {} };
    },
  };
  return {
    spawner,
    feed: (...lines: string[]) => {
      for (const l of lines) handlers?.line(l);
    },
  };
}

t.test('heals others’ changes, ignores its own, folds a burst into one more heal', async (t) => {
  const mon = fakeMonitor();
  let heals = 0;
  let release: (() => void) | undefined;
  const watch = new SecGroupWatch({
    table: 'sg_sg',
    ownTransaction: (pid) => pid === 100,
    writing: () => false,
    heal: () =>
      new Promise<void>((r) => {
        heals++;
        release = r;
      }),
    spawner: mon.spawner,
    settleMs: 1,
  });
  watch.start();
  mon.feed('delete rule bridge sg_sg port_sgp1 handle 12', '# new generation 5 by process 100 (node)');
  t.equal(heals, 0, "berth's own write is no tamper");
  mon.feed('delete rule bridge sg_sg port_sgp1 handle 12', '# new generation 6 by process 200 (nft)');
  t.equal(heals, 1, 'a foreign change heals at the end of its transaction');
  mon.feed('delete element bridge sg_sg s_web { 10.0.0.2 }', '# new generation 7 by process 201 (nft)');
  mon.feed('delete element bridge sg_sg s_web { 10.0.0.3 }', '# new generation 8 by process 202 (nft)');
  t.equal(heals, 1, 'one heal at a time');
  release?.();
  await new Promise((r) => setImmediate(r));
  t.equal(heals, 2, 'what came meanwhile makes exactly one more');
  release?.();
  await watch.idle();
  mon.feed('delete table bridge sg_sg');
  t.equal(heals, 3, 'a deleted table heals from its first line');
  mon.feed('# new generation 9 by process 203 (nft)');
  t.equal(heals, 3, 'and not again at its end');
  release?.();
  await watch.idle();
  watch.stop();
});
