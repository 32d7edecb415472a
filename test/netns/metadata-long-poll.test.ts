// Acceptance (long-poll, GCE's wait_for_change): real curl in netns guests
// against a real berthd and endpoint. A waiting curl is woken by `instance
// update` with the new value (the latency is reported, not asserted); another
// guest's wait is not woken and times out with its current value; past the
// per-guest bound the answer is 429, audited; a wait outlives a berthd
// restart and is woken by an update made through the next berthd.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { removePrefixed, tempDir } from '../helpers/berthd.js';
import { isRoot, startLab } from '../helpers/hostnet_lab.js';
import { curl, MD, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

interface Waited {
  status: number;
  body: string;
  etag: string | undefined;
  /** When curl returned (Date.now()). */
  at: number;
}

/** A curl that may wait up to maxSec; resolves when it returns. */
function curlWait(netns: string, path: string, maxSec: number): Promise<Waited> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      ['netns', 'exec', netns, 'curl', '-sS', '-i', '-m', String(maxSec), `${MD}${path}`],
      { encoding: 'utf8' },
      (err, stdout, stderr) => {
        const at = Date.now();
        const split = stdout.indexOf('\r\n\r\n');
        const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(stdout)?.[1] ?? 0);
        if (!status) return reject(new Error(`curl ${path} in ${netns}: ${stderr || err?.message}`));
        const etag = /^etag: (.*)$/im.exec(stdout.slice(0, split))?.[1]?.trim();
        resolve({ status, body: stdout.slice(split + 4), etag, at });
      },
    );
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ENV = '/latest/meta-data/tags/instance/env';
const wait = (etag: string, sec: number) =>
  `${ENV}?wait_for_change=true&last_etag=${encodeURIComponent(etag)}&timeout_sec=${sec}`;

const dir = await tempDir(t, 'berth-mwlp');
const prefix = `mw${randomBytes(1).toString('hex')}`;
t.teardown(() => removePrefixed(prefix));
const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock') };
let lab = await startLab(t, where);
await lab.network('mwn', '10.147.0.0/24');
const g1 = await mdGuest(lab, 'mwg1', 'mwn', ['--meta', 'env=one']);
const g2 = await mdGuest(lab, 'mwg2', 'mwn', ['--meta', 'env=calm']);

t.test('an update wakes the waiting guest with the new value; another guest is not woken', async (t) => {
  const r1 = await curl(g1.netns, ENV);
  const e1 = /^etag: (.*)$/im.exec(r1.headers)?.[1]?.trim() as string;
  t.same([r1.status, r1.body], [200, 'one']);
  const r2 = await curl(g2.netns, ENV);
  const e2 = /^etag: (.*)$/im.exec(r2.headers)?.[1]?.trim() as string;
  const started = Date.now();
  const waiting = curlWait(g1.netns, wait(e1, 30), 40);
  const other = curlWait(g2.netns, wait(e2, 6), 15);
  await sleep(500);
  const asked = Date.now();
  await lab.d.client.updateInstance('mwg1', { meta: { env: 'two' } });
  const answered = Date.now();
  const w = await waiting;
  t.same([w.status, w.body], [200, 'two'], 'woken with the new value');
  t.not(w.etag, e1, 'and a new ETag');
  t.ok(w.at - started < 10_000, 'long before its timeout');
  t.comment(
    `wake latency: ${w.at - answered} ms after the update answered (${w.at - asked} ms after it was asked; curl's exit included)`,
  );
  // Ten more rounds, for the numbers: from the update's answer to curl's exit.
  const after: number[] = [];
  let tag = w.etag as string;
  for (let i = 0; i < 10; i++) {
    const held = curlWait(g1.netns, wait(tag, 30), 40);
    await sleep(300);
    await lab.d.client.updateInstance('mwg1', { meta: { env: `r${i}` } });
    const at = Date.now();
    const r = await held;
    t.equal(r.body, `r${i}`, `round ${i}: woken with the new value`);
    after.push(r.at - at);
    tag = r.etag as string;
  }
  after.sort((a, b) => a - b);
  t.comment(
    `wake after the update answered, 10 rounds: min ${after[0]} ms, median ${after[5]} ms, max ${after[9]} ms`,
  );
  const o = await other;
  t.same([o.status, o.body, o.etag], [200, 'calm', e2], 'the other guest timed out with its current value');
  t.ok(o.at - started >= 5900, `after its timeout (${o.at - started} ms)`);
});

t.test('timeout answers the current value; a bad parameter is a 400 naming it', async (t) => {
  const r = await curl(g1.netns, ENV);
  const e = /^etag: (.*)$/im.exec(r.headers)?.[1]?.trim() as string;
  const started = Date.now();
  const w = await curlWait(g1.netns, wait(e, 1), 10);
  t.same([w.status, w.body, w.etag], [200, r.body, e]);
  t.ok(w.at - started >= 900, `after the timeout (${w.at - started} ms)`);
  const bad = await curl(g1.netns, `${ENV}?wait_for_change=true&timeout_sec=7200`);
  t.equal(bad.status, 400);
  t.match(bad.body, /timeout_sec/);
});

t.test('past 16 waiting requests per guest: 429, audited', async (t) => {
  const r = await curl(g2.netns, ENV);
  const e = /^etag: (.*)$/im.exec(r.headers)?.[1]?.trim() as string;
  const held = Array.from({ length: 16 }, () => curlWait(g2.netns, wait(e, 30), 40));
  await sleep(1500);
  const over = await curl(g2.netns, wait(e, 30));
  t.equal(over.status, 429, 'the 17th is refused');
  t.match(over.body, /16 waiting requests/);
  await lab.d.client.updateInstance('mwg2', { meta: { env: 'moved' } });
  const woken = await Promise.all(held);
  t.same(
    woken.map((w) => w.body),
    Array(16).fill('moved'),
    'the 16 held are all woken by the update',
  );
  let found = false;
  for (let i = 0; i < 40 && !found; i++) {
    const { records } = await lab.d.client.audit({ limit: 500 });
    found = records.some(
      (x) =>
        x.event === 'metadata.request' &&
        x.outcome === 'refused' &&
        x.instance === g2.id &&
        /waiting requests/.test(x.reason ?? '') &&
        x.detail?.status === 429,
    );
    if (!found) await sleep(100);
  }
  t.ok(found, 'the 429 is in the audit log');
});

t.test('a wait outlives a berthd restart and is woken by an update through the next one', async (t) => {
  const r = await curl(g1.netns, ENV);
  const e = /^etag: (.*)$/im.exec(r.headers)?.[1]?.trim() as string;
  let done = false;
  const waiting = curlWait(g1.netns, wait(e, 60), 70).finally(() => {
    done = true;
  });
  await sleep(500);
  t.equal(await lab.d.stop(), 0, 'berthd stops');
  await sleep(500);
  t.notOk(done, 'the wait holds while no berthd runs');
  lab = await startLab(t, where);
  const deadline = Date.now() + 10_000;
  while (!/endpoint adopted/.test(lab.d.stderr()) && Date.now() < deadline) await sleep(50);
  t.match(lab.d.stderr(), /endpoint adopted/, 'the new berthd adopted the endpoint');
  await sleep(500);
  t.notOk(done, 'adoption (every waiter looks again) does not answer an unchanged value');
  const asked = Date.now();
  await lab.d.client.updateInstance('mwg1', { meta: { env: 'after-restart' } });
  const w = await waiting;
  t.same([w.status, w.body], [200, 'after-restart'], 'woken with the new value');
  t.comment(`wake after restart: ${w.at - asked} ms after the update was asked`);
});
