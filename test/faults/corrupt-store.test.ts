// Fault: berthd's LevelDB files damaged while it is stopped (a garbled log
// record, a truncated table, a garbled table block). What must hold: berthd
// refuses to start, exit 1, with BERTH_ERR_STORE_CORRUPT and a message naming
// the store, the damaged file and what to do; it never resets the store (the
// files are byte for byte as they were: berth checks them before LevelDB, which
// would drop a damaged log's records and serve a garbled block as data); the
// guests run on untouched (a ping through every attempt loses nothing); and
// with the files restored berthd starts and knows them.
// test/integration/daemon.test.ts covers a CURRENT that names a missing
// manifest, test/unit/store.test.ts a garbled manifest.
import { spawn } from 'node:child_process';
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { removePrefixed, spawnBerthd, tempDir, uniquePrefix, writeTestConfig } from '../helpers/berthd.js';
import { NET_CONFIG, startDhcpLab } from '../helpers/dhcp_lab.js';
import { checkInvariants, hostView } from '../helpers/faults.js';
import { ifindex, isRoot } from '../helpers/hostnet_lab.js';
import { fileHashes, filesEnding, garble, truncateTo } from '../helpers/store_files.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

t.test('a damaged store: refused with a clear message, never reset, guests untouched', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const base = await tempDir(t, 'corrupt');
  const where = { prefix, stateDir: join(base, 'state'), socket: join(base, 'berthd.sock') };
  const net = NET_CONFIG('c', 40 + Math.floor(Math.random() * 9));
  const config = await writeTestConfig(base, prefix, `networks: [${net}]\n`);
  let lab = await startDhcpLab(t, [net], where);
  const [g1, g2] = await Promise.all([lab.guest('g1', 'c'), lab.guest('g2', 'c')]);
  if (!g1 || !g2) throw new Error('guests missing');
  const host = await hostView(prefix);
  const indexes = [await ifindex(g1.port), await ifindex(g2.port)];

  // Run by the test, not by berthd: the guests' traffic must not notice anything below.
  const ping = spawn('ip', ['netns', 'exec', g1.netns, 'ping', '-n', '-i', '0.2', g2.ip], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let pinged = '';
  ping.stdout.on('data', (c: Buffer) => {
    pinged += c.toString();
  });
  const pingDone = new Promise((resolve) => ping.on('exit', resolve));
  t.teardown(() => ping.kill('SIGKILL'));

  t.equal(await lab.d.stop(), 0, 'berthd stopped cleanly');
  const db = join(where.stateDir, 'db');
  const backup = join(base, 'db-backup');
  const restore = async () => {
    await rm(db, { recursive: true, force: true });
    await cp(backup, db, { recursive: true });
  };

  /** Damages the restored store, starts berthd on it, and checks the refusal. */
  const attempt = async (label: string, damage: () => Promise<string>, message: RegExp) => {
    await restore();
    const file = await damage();
    const before = await fileHashes(db);
    const r = spawnBerthd(['--state-dir', where.stateDir, '--socket', where.socket, '--config', config]);
    // A berthd that does start on the damaged store must not outlive the test.
    const gone = () => r.proc.exitCode !== null || r.proc.signalCode !== null;
    t.teardown(() => {
      if (!gone()) r.proc.kill('SIGKILL');
    });
    const code = await Promise.race([
      r.exited,
      new Promise((res) => setTimeout(() => res('running'), 30_000)),
    ]);
    if (code === 'running') r.proc.kill('SIGKILL');
    t.equal(code, 1, `${label}: berthd exits 1`);
    t.match(r.stderr(), message, `${label}: the message names the store, ${file} and what to do`);
    t.match(r.stderr(), /"code":"BERTH_ERR_STORE_CORRUPT"/, `${label}: the log line has the code`);
    t.same(await fileHashes(db), before, `${label}: every file is byte for byte as it was`);
    t.same(await hostView(prefix), host, `${label}: the host objects are as they were`);
  };
  const dbPath = db.replace(/[/.]/g, (c) => `\\${c}`);

  // The records of this run are still in LevelDB's log (a clean stop does not flush it).
  await cp(db, backup, { recursive: true });
  await attempt(
    'a garbled log record',
    async () => {
      const [log] = await filesEnding(db, '.log');
      await garble(join(db, log as string), 400, 16);
      return log as string;
    },
    new RegExp(
      `could not open store "${dbPath}": it is corrupt \\(\\d+\\.log: checksum mismatch at offset \\d+\\); berth never resets it: restore a backup or move it aside`,
    ),
  );

  // One more start and stop moves the records into a table.
  await restore();
  lab = await startDhcpLab(t, [net], where);
  t.equal(await lab.d.stop(), 0);
  t.ok((await filesEnding(db, '.ldb')).length > 0, 'the records are in a table now');
  await rm(backup, { recursive: true });
  await cp(db, backup, { recursive: true });
  const biggestTable = async () => {
    const tables = await filesEnding(db, '.ldb');
    return tables.at(-1) as string;
  };
  await attempt(
    'a truncated table',
    async () => {
      const table = await biggestTable();
      await truncateTo(join(db, table), 0.5);
      return table;
    },
    /it is corrupt \(\d+\.ldb: the table is truncated or its footer is damaged\); berth never resets it/,
  );
  await attempt(
    'a garbled table block',
    async () => {
      const table = await biggestTable();
      await garble(join(db, table), 100, 16);
      return table;
    },
    new RegExp(
      `could not open store "${dbPath}": it is corrupt \\(\\d+\\.ldb: data block at offset \\d+: checksum mismatch\\); berth never resets it`,
    ),
  );

  await restore();
  lab = await startDhcpLab(t, [net], where);
  t.same(
    (await lab.d.client.instances()).instances.map((i) => [i.name, i.state]),
    [
      ['g1', 'running'],
      ['g2', 'running'],
    ],
    'with the files restored, berthd starts and knows both guests',
  );
  await checkInvariants(t, lab.d.client, prefix);
  t.same([await ifindex(g1.port), await ifindex(g2.port)], indexes, 'the guests kept their ports');
  ping.kill('SIGINT');
  await pingDone;
  const sent = Number(/(\d+) packets transmitted/.exec(pinged)?.[1] ?? 0);
  t.ok(sent > 10, `the ping ran through every attempt (${sent} sent)`);
  t.match(pinged, / 0% packet loss/, 'and lost nothing');
});
