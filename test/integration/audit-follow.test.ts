// `berthctl audit --follow` and GET /v1/audit/follow against a real berthd:
// records appear as they are written, a cursor replays what came before,
// Ctrl-C exits 0, and an open stream never holds up berthd's stop.
import { spawn } from 'node:child_process';
import t from 'tap';
import type { AuditRecord } from '../../agent/api/types.js';
import { BERTHCTL, berthctl, startBerthd } from '../helpers/berthd.js';

/** Makes berthd refuse a request: one admin.request audit record each. */
const refuse = (socket: string, name: string) => berthctl(['--socket', socket, 'network', 'show', name]);

t.test('berthctl audit --follow --json streams new records until SIGINT', async (t) => {
  const d = await startBerthd(t);
  await refuse(d.socket, 'opf-before');
  const proc = spawn(process.execPath, [BERTHCTL, '--socket', d.socket, 'audit', '--follow', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => proc.kill('SIGKILL'));
  const exited = new Promise<number | null>((r) => proc.on('exit', r));
  const lines: AuditRecord[] = [];
  let err = '';
  let buf = '';
  proc.stderr.on('data', (c: Buffer) => {
    err += c;
  });
  proc.stdout.on('data', (c: Buffer) => {
    buf += c;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  const waitFor = async (n: number) => {
    for (let i = 0; i < 100 && lines.length < n; i++) await new Promise((r) => setTimeout(r, 50));
  };
  await waitFor(1);
  t.match(lines[0], { seq: 1, reason: /opf-before/ }, 'the newest record first, as without --follow');
  await refuse(d.socket, 'opf-live-1');
  await refuse(d.socket, 'opf-live-2');
  await waitFor(3);
  t.match(
    lines.map((r) => [r.seq, r.reason]),
    [
      [1, /opf-before/],
      [2, /opf-live-1/],
      [3, /opf-live-2/],
    ],
  );
  proc.kill('SIGINT');
  t.equal(await exited, 0, `exit 0 on SIGINT ${err}`);
  t.equal(err, '');
});

t.test('client.followAudit replays after a cursor, then follows; stop is not held up', async (t) => {
  const d = await startBerthd(t);
  for (const n of ['opf-a', 'opf-b', 'opf-c']) await refuse(d.socket, n);
  const seen: AuditRecord[] = [];
  const done = (async () => {
    for await (const r of d.client.followAudit({ after: 1, event: 'admin.request' })) {
      seen.push(r);
      if (seen.length === 2) await refuse(d.socket, 'opf-d');
      if (seen.length === 3) break;
    }
  })();
  await done;
  t.same(
    seen.map((r) => r.seq),
    [2, 3, 4],
  );
  t.match(seen[2], { reason: /opf-d/ });

  // An open follower when berthd stops: the stream ends with an error, and berthd exits at once.
  const abandoned = (async () => {
    for await (const _ of d.client.followAudit()) {
      // nothing arrives
    }
  })();
  const failed = abandoned.then(
    () => undefined,
    (e: Error) => e,
  );
  await new Promise((r) => setTimeout(r, 200));
  const started = Date.now();
  t.equal(await d.stop(), 0);
  t.ok(Date.now() - started < 5000, 'berthd stopped promptly with a follower attached');
  t.match(await failed, { code: 'BERTH_ERR_DAEMON_UNREACHABLE', message: /closed the audit stream/ });
});

t.test('a bad follow query is refused like any other', async (t) => {
  const d = await startBerthd(t);
  const r = await berthctl(['--socket', d.socket, 'audit', '--follow', '--outcome', 'maybe']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--outcome: "maybe"/);
  const it = d.client.followAudit({ outcome: 'nope' } as never);
  await t.rejects(it.next(), { code: 'BERTH_ERR_INVALID_ARGUMENT', status: 400 });
});
