// Fault: kill -9 of berthd during a burst of concurrent creates. What must
// hold after the restart: each instance whole or absent (a create that was
// answered exists and runs), distinct MACs and IPs, no orphan link, netns,
// guard rule or store record, the bystander guests untouched, the cut-off
// names usable again, and deleting everything returns the pool to its start.
import { existsSync } from 'node:fs';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { CrashLab, NETWORK } from '../helpers/crash_lab.js';
import { checkInvariants, hostView, killWhen, type Outcome, settle, storeView } from '../helpers/faults.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const BURST = 12;
const TRIES = 3;

/** Where the kill lands: right after a create's store batch, or once its namespace is on the host too. */
const KILL_POINTS = [
  { label: 'after the store batch', hostHalfMade: false },
  { label: 'with the host half-made', hostHalfMade: true },
] as const;

t.test('kill -9 during concurrent creates: whole or absent, nothing leaks', async (t) => {
  const c = await CrashLab.start(t, 90 + Math.floor(Math.random() * 9));
  let round = 0;
  for (const point of KILL_POINTS) {
    let caught = 0;
    for (let attempt = 1; attempt <= TRIES && caught === 0; attempt++) {
      round += 1;
      await t.test(`kill ${point.label} (round ${round})`, async (t) => {
        const names = Array.from({ length: BURST }, (_, i) => `r${round}-${i}`);
        const client = c.patientClient();
        // All at once: they queue on berthd's host lock, so the kill finds some
        // answered, one in flight, and the rest queued.
        const outcomes = names.map((name) =>
          settle(client.createInstance({ name, network: NETWORK, runtime: 'netns' })),
        );
        const mine = (list: Instance[]) => list.filter((i) => names.includes(i.name));
        await killWhen(
          `a create in flight ${point.label}`,
          async () => {
            const now = mine((await client.instances()).instances);
            const flying = now.find((i) => i.state === 'creating');
            if (!flying || now.filter((i) => i.state === 'running').length < 3) return false;
            // /run/netns directly: a full host view can take longer than the window.
            return !point.hostHalfMade || existsSync(`/run/netns/${flying.netns}`);
          },
          () => c.lab.d.kill9(),
        );
        const answered = await Promise.all(outcomes);
        const stored = await storeView(c.where.stateDir);
        const before = await hostView(c.where.prefix);
        const creating = stored.instances.filter((i) => i.state === 'creating');
        const halfMade = creating.filter((i) => before.guestNetns.some((n) => n.endsWith(`-g-${i.name}`)));
        caught += point.hostHalfMade ? halfMade.length : creating.length;
        t.comment(
          `at the kill: ${answered.filter((o) => o.ok).length} answered, ${creating.length} stored as creating, ` +
            `${before.ports.length} ports and ${before.guestNetns.length} guest namespaces on the host`,
        );

        await c.restart();
        const after = await checkInvariants(t, c.client, c.where.prefix);
        const byName = new Map(after.map((i) => [i.name, i]));
        answered.forEach((o: Outcome<Instance>, i) => {
          const name = names[i] as string;
          if (o.ok)
            t.equal(byName.get(name)?.state, 'running', `${name} was answered, so it exists and runs`);
        });
        for (const rec of creating)
          t.notOk(byName.has(rec.name), `${rec.name}, cut off mid-create, was undone at the restart`);
        t.match(c.lab.d.stderr(), creating.length > 0 ? /finishing an interrupted change/ : /berthd ready/);
        await c.checkBystanders(t);

        // The names the crash cut off (the one in flight first) are free again, and creates complete.
        const missing = names.filter((n) => !byName.has(n)).slice(0, 3);
        for (const name of missing)
          await c.client.createInstance({ name, network: NETWORK, runtime: 'netns' });
        await checkInvariants(t, c.client, c.where.prefix);
      });
    }
    t.ok(caught > 0, `a kill landed ${point.label} of a create`);
  }
  await c.checkStoreAtRest(t);
  await c.deleteAllAndCheck(t);
});
