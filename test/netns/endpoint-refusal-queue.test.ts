// Refusals an endpoint makes while berthd is away are queued and written by
// the next berthd with their original time. With berthd stopped (the
// endpoint keeps serving), a guest the endpoint has cached sends a request
// with a foreign Host header (DNS rebinding: refused from the cache alone)
// and then a burst over the metadata rate limit (429, refused before any
// lookup). Neither needs berthd to decide. After a pause berthd starts again,
// adopts the endpoint, and `berthctl audit` holds both refusals, timed when
// they happened, not when they were written.
import { join } from 'node:path';
import t from 'tap';
import type { AuditRecord } from '../../agent/audit/audit-log.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { isRoot, startLab } from '../helpers/hostnet_lab.js';
import { curl, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// A small limit, so a burst of curls goes over it.
const CONFIG = 'metadata:\n  rate_limit: {per_second: 1, burst: 3}\n';

t.test('refusals made while berthd is away land in the audit with their own time', async (t) => {
  const dir = await tempDir(t, 'refusal-queue');
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock'), config: CONFIG };
  let lab = await startLab(t, where);
  await lab.network('q', '10.74.0.0/24');
  const g = await mdGuest(lab, 'g1', 'q');
  const first = await curl(g.netns, '/latest/meta-data/instance-id');
  t.same([first.status, first.body], [200, g.id], 'the guest is served');
  // The guest's first packets change its neighbour entry, which drops it from the
  // endpoint's cache; asked again once that settled, it stays cached.
  await sleep(1500);
  const cached = await curl(g.netns, '/latest/meta-data/instance-id');
  t.equal(cached.status, 200, 'and now cached by its endpoint');

  t.equal(await lab.d.stop(), 0, 'berthd stops (the endpoint stays)');
  const refusedAt = Date.now();
  const rebind = await curl(g.netns, '/latest/meta-data/instance-id', ['-H', 'Host: attacker.example']);
  t.equal(rebind.status, 403, 'a foreign Host header is refused with no berthd');
  t.ok(Date.now() - refusedAt < 2000, 'at once: the guest does not wait for a berthd');
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await curl(g.netns, '/latest/meta-data/')).status);
  t.ok(statuses.includes(429), `a burst goes over the rate limit with no berthd (${statuses.join(' ')})`);
  // Long enough for the endpoint's once-a-second flush of counted 429s (late under
  // load), and for the times to be told apart from the restart.
  await sleep(3500);

  const restartAt = Date.now();
  lab = await startLab(t, where);
  const deadline = Date.now() + 10_000;
  while (!/endpoint adopted/.test(lab.d.stderr()) && Date.now() < deadline) await sleep(50);
  t.match(lab.d.stderr(), /endpoint adopted/, 'the new berthd adopted the endpoint');

  let records: AuditRecord[] = [];
  const until = Date.now() + 10_000;
  for (;;) {
    records = await lab.json<AuditRecord[]>(['audit', '--event', 'metadata.request', '--limit', '1000']);
    const hostRefusal = records.some((r) => /Host "attacker.example"/.test(r.reason));
    if ((hostRefusal && records.some((r) => r.detail?.status === 429)) || Date.now() > until) break;
    await sleep(200);
  }
  const host = records.find((r) => /Host "attacker.example"/.test(r.reason));
  t.ok(host, 'the Host refusal is in the audit');
  if (host) {
    const at = Date.parse(host.time);
    t.ok(at >= refusedAt - 50 && at < refusedAt + 2000, `with the time it was made (${host.time})`);
    t.ok(at < restartAt, 'before the berthd that wrote it started');
    t.match(host, {
      mac: g.mac,
      port: g.port,
      ip: g.ip,
      instance: g.id,
      detail: { status: 403, queued: true },
    });
  }
  const limited = records.filter((r) => r.detail?.status === 429);
  t.ok(limited.length > 0, 'the rate-limit refusals are in the audit');
  const counted = limited.reduce((n, r) => n + Number(r.detail?.count ?? 1), 0);
  t.equal(counted, statuses.filter((s) => s === 429).length, 'counting every 429 the guest got');
  // A summary is timed when the endpoint folded it, which under load can be seconds after
  // the burst; what matters is that it was made before the berthd that wrote it started.
  for (const r of limited) {
    const at = Date.parse(r.time);
    t.ok(at >= refusedAt && at < restartAt, `a 429 record timed ${r.time}, while berthd was away`);
    t.match(r, { ip: g.ip, mac: g.mac, detail: { queued: true } }, 'naming the guest');
  }
  const after = await curl(g.netns, '/latest/meta-data/instance-id');
  t.same([after.status, after.body], [200, g.id], 'the guest is served by the new berthd');
});

t.test('a berthd with another config replaces the endpoint, and still writes what it queued', async (t) => {
  const dir = await tempDir(t, 'refusal-queue-replace');
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock') };
  let lab = await startLab(t, { ...where, config: CONFIG });
  await lab.network('q', '10.75.0.0/24');
  const g = await mdGuest(lab, 'g1', 'q');
  t.equal((await curl(g.netns, '/latest/meta-data/instance-id')).status, 200, 'the guest is served');
  await sleep(1500);
  t.equal((await curl(g.netns, '/latest/meta-data/instance-id')).status, 200, 'and cached');

  t.equal(await lab.d.stop(), 0, 'berthd stops');
  const refusedAt = Date.now();
  const rebind = await curl(g.netns, '/latest/meta-data/', ['-H', 'Host: replaced.attacker.example']);
  t.equal(rebind.status, 403, 'a foreign Host header is refused with no berthd');
  await sleep(1000);

  // Another rate limit: the endpoint's config differs, so the new berthd replaces it.
  lab = await startLab(t, { ...where, config: 'metadata:\n  rate_limit: {per_second: 50, burst: 100}\n' });
  const deadline = Date.now() + 10_000;
  while (!/endpoint started/.test(lab.d.stderr()) && Date.now() < deadline) await sleep(50);
  t.match(lab.d.stderr(), /replacing endpoint of another build or config/, 'the old endpoint is replaced');
  let host: AuditRecord | undefined;
  for (const until = Date.now() + 5000; !host && Date.now() < until; await sleep(200)) {
    const records = await lab.json<AuditRecord[]>([
      'audit',
      '--event',
      'metadata.request',
      '--limit',
      '1000',
    ]);
    host = records.find((r) => /Host "replaced.attacker.example"/.test(r.reason));
  }
  t.ok(host, 'the refusal it queued is in the audit');
  if (host) {
    const at = Date.parse(host.time);
    t.ok(at >= refusedAt - 50 && at < refusedAt + 2000, `with its own time (${host.time})`);
    t.match(host, { mac: g.mac, instance: g.id, detail: { status: 403, queued: true } });
  }
});
