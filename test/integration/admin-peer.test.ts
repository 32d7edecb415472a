// The admin socket's peer, for real: berthd (dist/) on its 0660 root:berth
// socket, berthctl as root and as other uids (setpriv), the peer found by the
// real ss and /proc. Changes and refusals land in `berthctl audit` with the
// caller's uid, gid and pid; a uid outside group berth never gets in. Then the
// cost of the lookup per admin write, measured on a real socket.
import { execFile } from 'node:child_process';
import { chmod, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify from 'fastify';
import t from 'tap';
import { AdminAudit } from '../../agent/api/admin-audit.js';
import { type PeerCredentials, SsPeerCredentials } from '../../agent/api/peer-credentials.js';
import type { AuditRecord } from '../../agent/api/types.js';
import { groupId } from '../../agent/api/unix-socket.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { berthctlAs, NOBODY } from '../helpers/as_user.js';
import { startBerthd, tempDir } from '../helpers/berthd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (setpriv to other uids, chown of the socket)');
  process.exit(0);
}

t.test('berthctl as root, as a berth member and as an outsider: the audit names each', async (t) => {
  const berth = await groupId('berth');
  if (berth === undefined) throw new Error('group berth is missing: run scripts/provision.sh');
  const d = await startBerthd(t);
  // The socket's directory is traversable, so the socket's own mode is what decides.
  await chmod(dirname(d.socket), 0o711);
  const st = await stat(d.socket);
  t.equal(st.mode & 0o777, 0o660);
  t.same([st.uid, st.gid], [0, berth], 'root:berth');
  const env = { BERTH_SOCKET: d.socket };
  const member = { uid: NOBODY, gid: NOBODY, groups: [berth] };
  const outsider = { uid: NOBODY, gid: NOBODY, groups: [] };

  const root = await berthctlAs(
    undefined,
    ['policy', 'set', 'p-root', '--identity', '*', '--deny', 'read:user-data'],
    env,
  );
  t.equal(root.code, 0, root.stderr);
  const mem = await berthctlAs(
    member,
    ['policy', 'set', 'p-member', '--identity', 'role:web', '--allow', 'read:user-data'],
    env,
  );
  t.equal(mem.code, 0, mem.stderr);
  const memDel = await berthctlAs(member, ['policy', 'delete', 'p-root'], env);
  t.equal(memDel.code, 0, memDel.stderr);
  const memBad = await berthctlAs(member, ['policy', 'delete', 'no-such'], env);
  t.equal(memBad.code, 1, 'a refused change exits 1');
  const out = await berthctlAs(outsider, ['policy', 'delete', 'p-member'], env);
  t.equal(out.code, 3, 'outside group berth: unreachable');
  t.match(out.stderr, `could not reach berthd at "${d.socket}": permission denied`);
  const outRead = await berthctlAs(outsider, ['status'], env);
  t.equal(outRead.code, 3, 'not even a read');
  t.ok(
    (await d.client.policies()).policies.some((p) => p.name === 'p-member'),
    "the outsider's delete never ran",
  );

  const { records } = await d.client.audit();
  const admin = records.filter((r) => r.event.startsWith('admin.'));
  const row = (r: AuditRecord) => [r.event, r.outcome, r.peer?.uid, r.peer?.gid, r.peer?.pid];
  t.same(admin.map(row), [
    ['admin.policy.set', 'allowed', 0, 0, root.pid],
    ['admin.policy.set', 'allowed', NOBODY, NOBODY, mem.pid],
    ['admin.policy.delete', 'allowed', NOBODY, NOBODY, memDel.pid],
    ['admin.request', 'refused', NOBODY, NOBODY, memBad.pid],
  ]);
  t.notOk(
    records.some((r) => r.peer?.pid === out.pid || r.peer?.pid === outRead.pid),
    'the kernel refused the outsider: berthd never saw it',
  );

  // What an operator reads: the WHO column has the uid, gid and pid.
  const shown = await berthctlAs(undefined, ['audit', '--event', 'admin.policy.delete'], env);
  t.equal(shown.code, 0, shown.stderr);
  t.match(shown.stdout, `uid=${NOBODY} gid=${NOBODY} pid=${memDel.pid}`);
  t.match(shown.stdout, /admin\.policy\.delete\s+allowed/);
});

/** A peer process that connects and then waits: what berthctl looks like to berthd. */
function peerProcess(path: string): Promise<{ kill: () => void }> {
  const script =
    'import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint("up",flush=True)\ntime.sleep(60)';
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', ['-c', script, path]);
    child.stdout?.once('data', () => resolve({ kill: () => child.kill() }));
    child.once('error', reject);
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

t.test('cost of the peer lookup per admin write (real socket, real ss)', async (t) => {
  const dir = await tempDir(t, 'berth-peer');
  // The lookup alone: a python peer holds the other end, as berthctl would.
  const raw = join(dir, 'raw.sock');
  const conns: Socket[] = [];
  const srv = createServer((c) => conns.push(c));
  await new Promise<void>((r) => srv.listen(raw, r));
  t.teardown(() => srv.close());
  const peer = await peerProcess(raw);
  t.teardown(peer.kill);
  while (conns.length === 0) await new Promise((r) => setTimeout(r, 10));
  const ss = new SsPeerCredentials();
  const cred = await ss.of(conns[0] as Socket);
  t.equal(cred.uid, 0);
  t.not(cred.pid, process.pid, 'the peer is the python process, not this one');
  const lookups: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    await ss.of(conns[0] as Socket);
    lookups.push(performance.now() - t0);
  }

  // A whole audited write over the socket, a new connection each: ss against a fixed answer.
  const timeWrites = async (peers: PeerCredentials, sock: string, workMs = 0) => {
    const app = Fastify().withTypeProvider<TypeBoxTypeProvider>();
    new AdminAudit(await AuditLog.open(new MemoryStore()), peers).install(app);
    app.post('/v1/things', { config: { audit: { event: 'admin.thing.make' } } }, async () => {
      // A real change (a network, an instance) takes tens to hundreds of ms; the lookup runs beside it.
      if (workMs > 0) await new Promise((r) => setTimeout(r, workMs));
      return { ok: true };
    });
    await app.listen({ path: sock });
    const post = () =>
      new Promise<void>((resolve, reject) => {
        const req = request({ socketPath: sock, method: 'POST', path: '/v1/things', agent: false }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end();
      });
    const ms: number[] = [];
    for (let i = 0; i < 40; i++) {
      const t0 = performance.now();
      await post();
      ms.push(performance.now() - t0);
    }
    await app.close();
    return median(ms);
  };
  const fixed = await timeWrites({ of: async () => ({ pid: 1, uid: 0, gid: 0 }) }, join(dir, 'fixed.sock'));
  const real = await timeWrites(new SsPeerCredentials(), join(dir, 'ss.sock'));
  const slowFixed = await timeWrites(
    { of: async () => ({ pid: 1, uid: 0, gid: 0 }) },
    join(dir, 'f50.sock'),
    50,
  );
  const slowReal = await timeWrites(new SsPeerCredentials(), join(dir, 's50.sock'), 50);
  t.comment(
    `peer lookup (ss + /proc): median ${median(lookups).toFixed(2)} ms, max ${Math.max(...lookups).toFixed(2)} ms; ` +
      `audited no-op write: ${fixed.toFixed(2)} ms with a fixed peer, ${real.toFixed(2)} ms with ss (+${(real - fixed).toFixed(2)} ms); ` +
      `a write doing 50 ms of work: ${slowFixed.toFixed(2)} ms fixed, ${slowReal.toFixed(2)} ms with ss (+${(slowReal - slowFixed).toFixed(2)} ms)`,
  );
  t.ok(median(lookups) < 200, `a lookup takes ${median(lookups).toFixed(2)} ms, under 200 ms`);
});
