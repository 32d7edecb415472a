// The admin socket's peer, for real: berthd (dist/) on its 0660 root:berth
// socket, berthctl as root and as other uids (setpriv), the peer named by the
// kernel (SO_PEERCRED). Changes and refusals land in `berthctl audit` with the
// caller's uid, gid and pid; a uid outside group berth never gets in. berthd
// runs with only its unit's capabilities, where ss cannot see other uids'
// processes (why SO_PEERCRED is the default). Then the cost per admin write.
import { execFile, spawn } from 'node:child_process';
import { chmod, readFile, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify from 'fastify';
import t, { type Test } from 'tap';
import { AdminAudit } from '../../agent/api/admin-audit.js';
import { type PeerCredentials, SsPeerCredentials } from '../../agent/api/peer-credentials.js';
import { loadPeercred, SoPeerCredentials } from '../../agent/api/peercred-addon.js';
import type { AuditRecord } from '../../agent/api/types.js';
import { groupId } from '../../agent/api/unix-socket.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { BerthClient } from '../../agent/client/client.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { berthctlAs, NOBODY } from '../helpers/as_user.js';
import { BERTHD, ROOT, removePrefixed, tempDir, uniquePrefix, writeTestConfig } from '../helpers/berthd.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (setpriv to other uids, chown of the socket)');
  process.exit(0);
}

/** The capabilities berthd's unit leaves it (CapabilityBoundingSet), as setpriv arguments. */
async function unitCaps(): Promise<string> {
  const unit = await readFile(join(ROOT, 'systemd/berthd.service'), 'utf8');
  const caps = /^CapabilityBoundingSet=(.+)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  if (caps.length === 0) throw new Error('berthd.service has no CapabilityBoundingSet');
  return `-all,${caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',')}`;
}

/** berthd (dist/) as its unit runs it: root with only the unit's capabilities. */
async function startCappedBerthd(t: Test) {
  const base = await tempDir(t, 'berthd');
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const socket = join(base, 'berthd.sock');
  const config = await writeTestConfig(base, prefix);
  const argv = ['--bounding-set', await unitCaps(), '--inh-caps=-all', '--', process.execPath, BERTHD];
  const child = spawn(
    'setpriv',
    [...argv, '--state-dir', join(base, 'state'), '--socket', socket, '--config', config],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const gone = new Promise((r) => child.on('exit', r));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await gone;
  });
  const client = new BerthClient(socket, 5000);
  for (const until = Date.now() + 60_000; ; ) {
    try {
      await client.status();
      break;
    } catch {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`berthd did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { socket, client, stderr: () => err };
}

t.test('berthctl as root, as a berth member and as an outsider: the audit names each', async (t) => {
  const berth = await groupId('berth');
  if (berth === undefined) throw new Error('group berth is missing: run scripts/provision.sh');
  const d = await startCappedBerthd(t);
  t.match(d.stderr(), /"via":"SO_PEERCRED"/, 'berthd names peers by SO_PEERCRED');
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

/** A peer process (as uid, when given) that connects and then waits: what berthctl looks like to berthd. */
function peerProcess(path: string, uid?: number): Promise<{ kill: () => void; pid: number }> {
  const script =
    'import socket,sys,time\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint("up",flush=True)\ntime.sleep(60)';
  const py = ['/usr/bin/python3', '-c', script, path];
  const argv =
    uid === undefined ? py : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', ...py];
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0] as string, argv.slice(1));
    child.stdout?.once('data', () => resolve({ kill: () => child.kill(), pid: child.pid as number }));
    child.once('error', reject);
  });
}

/** A listening socket anyone may connect to, and its accepted connections in order. */
async function openSocket(t: Test, path: string): Promise<Socket[]> {
  const conns: Socket[] = [];
  const srv = createServer((c) => conns.push(c));
  await new Promise<void>((r) => srv.listen(path, r));
  await chmod(path, 0o666);
  t.teardown(() => {
    for (const c of conns) c.destroy();
    srv.close();
  });
  return conns;
}

async function accepted(conns: Socket[], n: number): Promise<Socket> {
  while (conns.length < n) await new Promise((r) => setTimeout(r, 10));
  return conns[n - 1] as Socket;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

t.test("why SO_PEERCRED: ss under berthd's unit cannot name another uid's process", async (t) => {
  const fn = loadPeercred();
  if (fn instanceof Error) throw fn;
  const dir = await tempDir(t, 'berth-peer');
  await chmod(dir, 0o711);
  const conns = await openSocket(t, join(dir, 'why.sock'));
  const peer = await peerProcess(join(dir, 'why.sock'), NOBODY);
  t.teardown(peer.kill);
  const conn = await accepted(conns, 1);
  const caps = await unitCaps();
  const capped: CommandRunner = {
    run: (argv, o) =>
      osCommandRunner.run(['setpriv', '--bounding-set', caps, '--inh-caps=-all', '--', ...argv], o),
  };
  t.same(
    await new SoPeerCredentials(fn).of(conn),
    { pid: peer.pid, uid: NOBODY, gid: NOBODY },
    'SO_PEERCRED names it',
  );
  t.same((await new SsPeerCredentials().of(conn)).uid, NOBODY, 'ss with every capability names it too');
  await t.rejects(
    new SsPeerCredentials({ runner: capped }).of(conn),
    /no process holds the peer of socket/,
    "ss with the unit's capabilities does not (no CAP_SYS_PTRACE, no CAP_DAC_READ_SEARCH)",
  );
});

t.test('cost of the peer lookup per admin write (real socket)', async (t) => {
  const fn = loadPeercred();
  if (fn instanceof Error) throw fn;
  const dir = await tempDir(t, 'berth-peer');
  const conns = await openSocket(t, join(dir, 'raw.sock'));
  const peer = await peerProcess(join(dir, 'raw.sock'));
  t.teardown(peer.kill);
  const conn = await accepted(conns, 1);
  const lookup = async (peers: PeerCredentials) => {
    t.equal((await peers.of(conn)).pid, peer.pid, 'the python peer, not this process');
    const ms: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      await peers.of(conn);
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const soLookup = await lookup(new SoPeerCredentials(fn));
  const ssLookup = await lookup(new SsPeerCredentials());

  // A whole audited write over the socket, a new connection each time.
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
  const fixed: PeerCredentials = { of: async () => ({ pid: 1, uid: 0, gid: 0 }) };
  await timeWrites(fixed, join(dir, 'w0.sock')); // warms up fastify and the JIT, so the first figure is not inflated
  const w = {
    fixed: await timeWrites(fixed, join(dir, 'w1.sock')),
    so: await timeWrites(new SoPeerCredentials(fn), join(dir, 'w2.sock')),
    ss: await timeWrites(new SsPeerCredentials(), join(dir, 'w3.sock')),
    ssSlow: await timeWrites(new SsPeerCredentials(), join(dir, 'w4.sock'), 50),
    fixedSlow: await timeWrites(fixed, join(dir, 'w5.sock'), 50),
  };
  const f = (n: number) => n.toFixed(2);
  t.comment(
    `lookup: SO_PEERCRED ${f(soLookup * 1000)} us, ss + /proc ${f(ssLookup)} ms (medians of 30). ` +
      `audited no-op write (new connection each, median of 40): ${f(w.fixed)} ms with a fixed peer, ` +
      `${f(w.so)} ms with SO_PEERCRED (+${f(w.so - w.fixed)}), ${f(w.ss)} ms with ss (+${f(w.ss - w.fixed)}); ` +
      `a write doing 50 ms of work: ${f(w.fixedSlow)} ms fixed, ${f(w.ssSlow)} ms with ss (+${f(w.ssSlow - w.fixedSlow)})`,
  );
  t.ok(soLookup < 1, `SO_PEERCRED takes ${f(soLookup * 1000)} us, under 1 ms`);
  t.ok(ssLookup < 200, `ss takes ${f(ssLookup)} ms, under 200 ms`);
});
