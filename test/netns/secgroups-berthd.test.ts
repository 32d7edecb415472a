// The seed's example through a real berthd and berthctl: "servers with the
// webapp role must be able to connect to servers with the database role on
// port 3306". Real netns guests, real TCP (test/helpers/sg_flow.py), real
// DHCP and metadata from the guarded guest, and the audit log read back.
// hostnet/secgroups is tested on its own in secgroups-traffic.test.ts.
import { execFile } from 'node:child_process';
import t from 'tap';
import type { SecGroup, SecGroupDetail } from '../../agent/api/types.js';
import { udhcpcScript } from '../helpers/dhcp_lab.js';
import { isRoot, type Lab, startLab } from '../helpers/hostnet_lab.js';
import { addTcpRule, lostWithin, type SgGuest, sgFlow, sgGuest, sgProbe } from '../helpers/sg_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (berthd builds bridges, namespaces and nftables)');
  process.exit(0);
}

const lab: Lab = await startLab(t);
const net = await lab.network('sgd', '10.79.0.0/24');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const probe = (from: SgGuest, to: SgGuest, port: number) => sgProbe(lab, from.name, to.ip, port);

const database = await lab.json<SecGroup>(['secgroup', 'create', 'database', '--description', 'db servers']);
const mysql = await addTcpRule(lab, 'database', 3306, 'role:webapp');
const db = await sgGuest(lab, 'db', net.name, ['--role', 'database', '--secgroup', 'database']);
const web = await sgGuest(lab, 'web', net.name, ['--role', 'webapp']);
const batch = await sgGuest(lab, 'batch', net.name, ['--role', 'batch']);
await sgFlow(t, db.netns, ['serve', '3306', '22'], 'ready');
await sgFlow(t, batch.netns, ['serve', '8080'], 'ready');

t.test('webapp → database:3306 is open; everything else to the database is refused', async (t) => {
  t.equal(database.name, 'database');
  t.ok(await probe(web, db, 3306), 'web reaches db:3306');
  t.notOk(await probe(web, db, 22), 'web cannot reach db:22 (no rule)');
  t.notOk(await probe(batch, db, 3306), 'batch (role batch) cannot reach db:3306');
  t.ok(await probe(db, batch, 8080), "the reply to db's own connection to batch passes");
  t.ok(await probe(web, batch, 8080), 'control: a guest in no group is open to everyone');
  // The bridge's own counters, as `secgroup show` reports them.
  const shown = await lab.json<SecGroupDetail>(['secgroup', 'show', 'database']);
  const port = shown.ports.find((p) => p.instance === db.name);
  t.equal(port?.port, db.port, "db's port is listed under its group");
  t.ok(
    (port?.rules.find((r) => r.id === mysql.id)?.packets ?? 0) > 0,
    'the 3306 rule counted what it accepted',
  );
  t.ok((port?.dropped.packets ?? 0) > 0, 'the refusals are counted at the port');
});

t.test('the platform still serves the guarded guest: DHCP and metadata', async (t) => {
  const script = await udhcpcScript(t);
  const dhcp = await lab.exec('db', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '5', '-T', '1', '-s', script]);
  t.equal(dhcp.code, 0, `udhcpc got a lease: ${dhcp.stderr.slice(-200)}`);
  const md = await lab.exec('db', [
    'curl',
    '-s',
    '-m',
    '5',
    'http://169.254.169.254/latest/meta-data/instance-id',
  ]);
  t.equal(md.stdout.trim(), db.id, 'its own instance-id');
});

t.test('a refused connection is audited as secgroup.drop, naming both guests', async (t) => {
  const find = async () =>
    (await lab.d.client.audit({ limit: 2000 })).records.find(
      (r) => r.event === 'secgroup.drop' && r.detail?.dport === 22 && r.ip === batch.ip,
    );
  let r = await find();
  for (let i = 0; i < 20 && !r; i++) {
    await probe(batch, db, 22);
    r = await find();
  }
  t.match(r, {
    outcome: 'refused',
    instance: db.name,
    port: db.port,
    detail: { from_port: batch.port, from_instance: batch.name },
  });
  const { records } = await lab.d.client.audit({ limit: 2000 });
  t.ok(
    records.some((x) => x.event === 'admin.secgroup.rule.add' && x.outcome === 'allowed'),
    'the rule change itself is audited',
  );
});

t.test('a guest that joins a source group gets in; one that leaves loses its open connection', async (t) => {
  await lab.json(['secgroup', 'create', 'clients']);
  await addTcpRule(lab, 'database', 3306, 'group:clients');
  t.notOk(await probe(batch, db, 3306), 'not yet a member');
  const started = Date.now();
  await lab.json(['instance', 'update', 'batch', '--secgroup', 'clients']);
  // berthctl answers once the bridge enforces the change: no waiting here.
  t.ok(
    await probe(batch, db, 3306),
    `batch gets in as soon as \`instance update\` answered (${Date.now() - started} ms)`,
  );
  const held = await sgFlow(t, batch.netns, ['hold', db.ip, '3306'], 'ok 3');
  await lab.json(['instance', 'update', 'batch', '--no-secgroups']);
  t.ok(await lostWithin(held, 3000), 'its open connection ends');
  t.notOk(await probe(batch, db, 3306), 'and a new one is refused');
});

t.test('a rule removed ends the connections it admitted; the others keep flowing', async (t) => {
  await addTcpRule(lab, 'database', 22, 'role:webapp');
  const ssh = await sgFlow(t, web.netns, ['hold', db.ip, '22'], 'ok 3');
  const sql = await sgFlow(t, web.netns, ['hold', db.ip, '3306'], 'ok 3');
  await lab.json(['secgroup', 'rule', 'delete', 'database', mysql.id]);
  t.ok(await lostWithin(sql, 3000), 'the 3306 connection (rule deleted) ends');
  const before = ssh.lines.length;
  await sleep(1000);
  t.notOk(ssh.lines.includes('lost'), 'the :22 connection (rule kept) survives');
  t.ok(ssh.lines.length > before, 'and keeps echoing');
});

t.test('a guest leaving its last group is open again; deleting it leaves no rule behind', async (t) => {
  await lab.json(['instance', 'update', 'db', '--no-secgroups']);
  t.ok(await probe(batch, db, 22), 'db:22 is open to anyone again');
  await lab.json(['instance', 'update', 'db', '--secgroup', 'database']);
  t.notOk(await probe(batch, db, 22), 'and closed again when it rejoins');
  await lab.ctl(['instance', 'delete', 'db']);
  const ruleset = await new Promise<string>((resolve) =>
    execFile('nft', ['list', 'ruleset'], (_err, stdout) => resolve(stdout)),
  );
  t.notMatch(ruleset, db.port, "no rule names the deleted guest's port");
});
