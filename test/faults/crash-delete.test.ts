// Fault: kill -9 of berthd during a burst of concurrent deletes. What must
// hold after the restart: a delete that was answered is gone for good, one
// cut off mid-way is finished (never left half-deleted), a queued one left
// its instance whole; MACs and IPs distinct, no orphan link, netns, guard
// rule or store record, the bystanders untouched, and deleting everything
// returns the pool to its start.
import { existsSync } from 'node:fs';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { CrashLab, NETWORK } from '../helpers/crash_lab.js';
import { checkInvariants, hostView, killWhen, settle, storeView } from '../helpers/faults.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const BURST = 10;
const TRIES = 3;

/** Where the kill lands: right after the 'deleting' record, or once the guest's namespace is gone too. */
const KILL_POINTS = [
  { label: 'after the deleting record', hostHalfGone: false },
  { label: 'with the host half-removed', hostHalfGone: true },
] as const;

t.test('kill -9 during concurrent deletes: finished or untouched, nothing leaks', async (t) => {
  const c = await CrashLab.start(t, 80 + Math.floor(Math.random() * 9));
  let round = 0;
  for (const point of KILL_POINTS) {
    let caught = 0;
    for (let attempt = 1; attempt <= TRIES && caught === 0; attempt++) {
      round += 1;
      await t.test(`kill ${point.label} (round ${round})`, async (t) => {
        const names = Array.from({ length: BURST }, (_, i) => `d${round}-${i}`);
        for (const name of names) await c.client.createInstance({ name, network: NETWORK, runtime: 'netns' });
        const client = c.patientClient();
        const outcomes = names.map((name) => settle(client.deleteInstance(name)));
        const mine = (list: Instance[]) => list.filter((i) => names.includes(i.name));
        await killWhen(
          `a delete in flight ${point.label}`,
          async () => {
            const now = mine((await client.instances()).instances);
            const flying = now.find((i) => i.state === 'deleting');
            if (!flying || now.length > BURST - 3) return false;
            // /run/netns directly: a full host view takes longer than the
            // window between a namespace going and its record going (~50 ms).
            return !point.hostHalfGone || !existsSync(`/run/netns/${flying.netns}`);
          },
          () => c.lab.d.kill9(),
        );
        const answered = await Promise.all(outcomes);
        const stored = await storeView(c.where.stateDir);
        const before = await hostView(c.where.prefix);
        const deleting = stored.instances.filter((i) => i.state === 'deleting');
        const halfGone = deleting.filter((i) => !before.guestNetns.some((n) => n.endsWith(`-g-${i.name}`)));
        caught += point.hostHalfGone ? halfGone.length : deleting.length;
        t.comment(
          `at the kill: ${answered.filter((o) => o.ok).length} deletes answered, ${deleting.length} stored as deleting ` +
            `(${halfGone.length} with the namespace already gone)`,
        );

        await c.restart();
        const after = await checkInvariants(t, c.client, c.where.prefix);
        const byName = new Map(after.map((i) => [i.name, i]));
        answered.forEach((o, i) => {
          const name = names[i] as string;
          if (o.ok) t.notOk(byName.has(name), `${name}'s delete was answered, so it is gone`);
          else if (byName.has(name))
            t.equal(byName.get(name)?.state, 'running', `${name}'s delete never started: it is whole`);
        });
        for (const rec of deleting)
          t.notOk(byName.has(rec.name), `${rec.name}, cut off mid-delete, was finished at the restart`);
        await c.checkBystanders(t);
        // The survivors of the burst still delete cleanly.
        for (const rec of mine(after)) await c.client.deleteInstance(rec.name);
        await checkInvariants(t, c.client, c.where.prefix);
      });
    }
    t.ok(caught > 0, `a kill landed ${point.label} of a delete`);
  }
  await c.checkStoreAtRest(t);
  await c.deleteAllAndCheck(t);
});
