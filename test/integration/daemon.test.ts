// berthd as a real process: the foundation's acceptance checks.

import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import t from 'tap';
import { groupId } from '../../agent/api/unix-socket.js';
import {
  berthctl,
  removePrefixed,
  spawnBerthd,
  startBerthd,
  tempDir,
  uniquePrefix,
  writeTestConfig,
} from '../helpers/berthd.js';

t.test('status over the socket; socket is 0660 root:berth; SIGTERM stops cleanly', async (t) => {
  const d = await startBerthd(t);
  const r = await berthctl(['--socket', d.socket, 'status', '--json']);
  t.equal(r.code, 0, r.stderr);
  const status = JSON.parse(r.stdout);
  t.match(status, {
    version: /^\d+\.\d+\.\d+/,
    uptime: Number,
    state_dir: d.stateDir,
    counts: { networks: 0, instances: 0, leases: 0 },
  });
  const st = statSync(d.socket);
  t.equal(st.mode & 0o777, 0o660, 'socket mode is 0660');
  const gid = await groupId('berth');
  if (gid !== undefined) t.equal(st.gid, gid, 'socket group is berth');
  t.equal(st.uid, 0);
  const human = await berthctl(['status'], { BERTH_SOCKET: d.socket });
  t.match(human.stdout, /^berthd \d+\.\d+\.\d+ on \S+ \(pid \d+\), up/);
  t.ok(existsSync(join(d.stateDir, 'berthd.pid')));
  t.equal(await d.stop(), 0, 'exit 0 after SIGTERM');
  t.notOk(existsSync(d.socket), 'socket removed on stop');
  t.notOk(existsSync(join(d.stateDir, 'berthd.pid')), 'pid file removed on stop');
});

t.test('what the API wrote survives a restart (audit log, host id)', async (t) => {
  const dir = await tempDir(t);
  const opts = { stateDir: join(dir, 'state'), socket: join(dir, 'sock') };
  const first = await startBerthd(t, opts);
  const refused = await berthctl(['--socket', opts.socket, 'audit', '--limit', '20000', '--json']);
  t.equal(refused.code, 1, 'a refused request exits 1');
  t.match(JSON.parse(refused.stdout), {
    error: { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'querystring.limit' },
  });
  const hostId = (await first.client.status()).host_id;
  await first.stop();

  const second = await startBerthd(t, opts);
  const { records } = await second.client.audit();
  t.equal(records.length, 1);
  t.match(records[0], { seq: 1, event: 'admin.request', outcome: 'refused', reason: /querystring\.limit/ });
  t.equal((await second.client.status()).host_id, hostId);
  await second.stop();
});

t.test('a second berthd on the same state dir fails at once and leaves the first alone', async (t) => {
  const d = await startBerthd(t);
  const other = spawnBerthd(['--state-dir', d.stateDir, '--socket', join(d.stateDir, 'other.sock')]);
  const code = await other.exited;
  t.equal(code, 1);
  t.match(
    other.stderr(),
    new RegExp(
      `could not open store "${d.stateDir}": it is in use by another berthd \\(pid ${d.proc.pid}\\)`,
    ),
  );
  // The same socket path is refused too, without unlinking the live socket.
  const third = spawnBerthd([
    '--state-dir',
    join(d.stateDir, 'elsewhere'),
    '--socket',
    d.socket,
    '--config',
    await writeTestConfig(await tempDir(t), uniquePrefix()),
  ]);
  t.equal(await third.exited, 1);
  t.match(third.stderr(), /another process answers there; is berthd already running\?/);
  t.ok((await d.client.status()).pid, 'the first berthd still answers');
  await d.stop();
});

t.test('a bad config exits 2 and names the field', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'berthd.yaml');
  await writeFile(file, 'networks:\n  - name: lab\n    subnet: 10.0.0.0/33\n');
  const r = spawnBerthd(['--config', file, '--state-dir', join(dir, 'state'), '--socket', join(dir, 'sock')]);
  t.equal(await r.exited, 2);
  t.match(r.stderr(), 'config: networks[0].subnet: "10.0.0.0/33" is not a CIDR');
  t.notOk(existsSync(join(dir, 'state')), 'nothing was created');
});

t.test('kill -9 during writes leaves a store that opens and is consistent', async (t) => {
  const dir = await tempDir(t);
  const opts = { stateDir: join(dir, 'state'), socket: join(dir, 'sock') };
  const d = await startBerthd(t, opts);
  // Refused requests each append an audit record (record + counter in one batch).
  let stop = false;
  const hammer = async () => {
    while (!stop) await d.client.request('GET', '/nope').catch(() => undefined);
  };
  const workers = Array.from({ length: 8 }, hammer);
  await new Promise((r) => setTimeout(r, 700));
  await d.kill9();
  stop = true;
  await Promise.all(workers);
  t.ok(existsSync(opts.socket), 'kill -9 left a stale socket behind');

  const again = await startBerthd(t, opts);
  const { records } = await again.client.audit({ limit: 10000 });
  t.ok(records.length > 10, `writes happened before the kill (${records.length})`);
  t.same(
    records.map((r) => r.seq),
    records.map((_, i) => i + 1),
    'sequence is contiguous from 1',
  );
  await again.client.request('GET', '/nope').catch(() => undefined);
  const next = await again.client.audit({ after: records.length });
  t.same(
    next.records.map((r) => r.seq),
    [records.length + 1],
    'the counter matches the records',
  );
  await again.stop();
});

t.test('SIGHUP reloads the config; a bad one is refused and the old one kept', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'berthd.yaml');
  await writeFile(file, 'log_level: info\nnetworks: []\nname_prefix: zhup\n');
  const d = await startBerthd(t, { args: ['--config', file] });
  t.teardown(() => removePrefixed('zhup'));
  await writeFile(file, 'log_level: loud\n');
  d.proc.kill('SIGHUP');
  await waitFor(() => /config reload refused/.test(d.stderr()));
  t.match(d.stderr(), /log_level: must be one of trace, debug, info, warn, error/);
  await writeFile(file, 'log_level: debug\nnetworks: []\nname_prefix: zhup\n');
  d.proc.kill('SIGHUP');
  await waitFor(() => /"msg":"config reloaded"/.test(d.stderr()));
  await d.client.status();
  await waitFor(() => /"msg":"admin request"/.test(d.stderr()));
  t.pass('debug logging is on after reload');
  t.equal(await d.stop(), 0);
});

t.test('sd_notify: READY=1 with STATUS, then WATCHDOG=1 pings', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'notify.sock');
  const { createSocket } = createRequire(import.meta.url)('unix-dgram') as {
    createSocket(type: string, fn: (msg: Buffer) => void): { bind(p: string): void; close(): void };
  };
  const messages: string[] = [];
  const sock = createSocket('unix_dgram', (msg) => messages.push(msg.toString()));
  sock.bind(path);
  t.teardown(() => sock.close());
  const d = await startBerthd(t, { env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '200000' } });
  await waitFor(() => messages.some((m) => m.split('\n').includes('WATCHDOG=1')));
  const ready = messages.find((m) => m.split('\n').includes('READY=1'));
  t.ok(ready, 'READY=1 sent');
  t.match(ready, /STATUS=serving on /);
  t.match(ready, `MAINPID=${d.proc.pid}`);
  await d.stop();
  t.ok(messages.some((m) => m.includes('STOPPING=1')));
});

t.test('berthctl: unreachable daemon and usage errors', async (t) => {
  const dir = await tempDir(t);
  const socket = join(dir, 'none.sock');
  const down = await berthctl(['--socket', socket, 'status']);
  t.equal(down.code, 3);
  t.match(down.stderr, `could not reach berthd at "${socket}": berthd is not running; start it with`);
  const downJson = await berthctl(['--socket', socket, 'status', '--json']);
  t.equal(downJson.code, 3);
  t.match(JSON.parse(downJson.stdout), { error: { code: 'BERTH_ERR_DAEMON_UNREACHABLE' } });
  const usage = await berthctl(['--socket', socket, 'stauts']);
  t.equal(usage.code, 2);
  t.match(usage.stderr, /unknown command 'stauts'/);
  const badFlag = await berthctl(['--socket', socket, 'audit', '--outcome', 'maybe']);
  t.equal(badFlag.code, 2);
  t.match(badFlag.stderr, '--outcome: "maybe" is not one of refused, allowed, info');
});

t.test('a corrupt store stops berthd with a clear message', async (t) => {
  const dir = await tempDir(t);
  const opts = { stateDir: join(dir, 'state'), socket: join(dir, 'sock') };
  const d = await startBerthd(t, opts);
  await d.stop();
  const current = join(opts.stateDir, 'db', 'CURRENT');
  await writeFile(current, 'MANIFEST-999999\n');
  const r = spawnBerthd(['--state-dir', opts.stateDir, '--socket', opts.socket]);
  t.equal(await r.exited, 1);
  t.match(r.stderr(), /could not open store ".*db"/);
  t.equal(await readFile(current, 'utf8'), 'MANIFEST-999999\n', 'the store was left as it was');
});

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
