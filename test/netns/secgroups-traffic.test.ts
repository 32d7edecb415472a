// Security groups against real traffic on this kernel's path (br-netfilter
// here; bridge-ct where nf_conntrack_bridge exists): a bridge, an endpoint
// netns and four guest netns on veths, TCP echo servers and clients
// (test/helpers/sg_flow.py), ping, and the conntrack table read back.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { secgroupDropRecord } from '../../agent/services/guard-audit.js';
import { osCommandRunner } from '../../base/command.js';
import { DropLog, type GuardDropEvent } from '../../hostnet/guard/drop-log.js';
import { CommandNftApplier } from '../../hostnet/guard/nft.js';
import { handlesOf } from '../../hostnet/guard/observe.js';
import { Names } from '../../hostnet/names.js';
import { NftSecGroupDriver } from '../../hostnet/secgroups/nft-driver.js';
import { emptyObserved, observeSg } from '../../hostnet/secgroups/observe.js';
import { planSecGroups } from '../../hostnet/secgroups/plan.js';
import { zoneOf } from '../../hostnet/secgroups/render.js';
import type { SecGroupState, SgPort, SgRule, SgSetMember } from '../../hostnet/secgroups/state.js';
import { validateSecGroups } from '../../hostnet/secgroups/validate.js';
import { watchDriver } from '../../hostnet/secgroups/watch.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces, nftables and conntrack)');
  process.exit(0);
}

const FLOW = fileURLToPath(new URL('../helpers/sg_flow.py', import.meta.url));
const PYTHON = '/usr/bin/python3';
const names = new Names('sa');
const NETWORK = 'sgnet';
const bridge = names.bridge(NETWORK);
const endpoint = { ns: names.endpointNetns(NETWORK), port: names.endpointVeth(NETWORK), ip: '10.78.0.1' };

interface Guest {
  ns: string;
  port: string;
  mac: string;
  ip: string;
}
const guest = (id: string, n: number): Guest => ({
  ns: names.guestNetns(`sg${id}`),
  port: names.port(id.repeat(8), 0),
  mac: `02:00:00:78:00:${n.toString(16).padStart(2, '0')}`,
  ip: `10.78.0.${n}`,
});
/** The database: in a group. */
const DB = guest('d', 10);
/** A webapp: a member of the source set. */
const WEB = guest('w', 11);
/** Anything else: in no set, no group. */
const OTHER = guest('o', 12);
/** A second webapp, added to the set during the run. */
const WEB2 = guest('v', 13);

const sh = (...argv: string[]) => osCommandRunner.run(argv);
const inNs = (ns: string, ...argv: string[]) => sh('ip', 'netns', 'exec', ns, ...argv);
const ok = (p: Promise<unknown>) =>
  p.then(
    () => true,
    () => false,
  );
const probe = (from: Guest, to: Guest, port: number, timeout = 1) =>
  ok(inNs(from.ns, PYTHON, FLOW, 'probe', to.ip, String(port), String(timeout)));
const ping = (from: Guest | typeof endpoint, to: Guest) =>
  ok(inNs(from.ns, 'ping', '-c', '1', '-W', '1', to.ip));

const SET = 's_web';
const rule = (id: string, r: Partial<SgRule>): SgRule => ({
  id,
  group: 'database',
  proto: 'tcp',
  from: { set: SET },
  ...r,
});
const dbPort = (rules: SgRule[]): SgPort => ({
  ifname: DB.port,
  bridge,
  mac: DB.mac,
  ip: DB.ip,
  instance: 'db-1',
  endpointPorts: [endpoint.port],
  rules,
});
const MYSQL = rule('sr-mysql', { ports: { from: 3306, to: 3306 } });
const MYSQL_CIDR = rule('sr-mysqlcidr', { ports: { from: 3306, to: 3306 }, from: { cidr: `${WEB.ip}/32` } });
const SSH = rule('sr-ssh', { ports: { from: 22, to: 22 } });
const ICMP = rule('sr-icmp', { proto: 'icmp' });
/** Set members: a guest's address and MAC on its own port, unless told otherwise. */
const state = (members: (Guest | SgSetMember)[], rules: SgRule[]): SecGroupState => ({
  sets: [
    { name: SET, source: 'role:webapp', members: members.map(({ ip, mac, port }) => ({ ip, mac, port })) },
  ],
  ports: [dbPort(rules)],
});

const children: ChildProcess[] = [];
const driver = new NftSecGroupDriver(names);

async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  // The root ends first: a netns deletion frees its veths asynchronously.
  for (const port of [endpoint.port, DB.port, WEB.port, OTHER.port, WEB2.port])
    await ok(sh('ip', 'link', 'del', port));
  for (const ns of [endpoint.ns, DB.ns, WEB.ns, OTHER.ns, WEB2.ns]) await ok(sh('ip', 'netns', 'del', ns));
  await ok(sh('ip', 'link', 'del', bridge));
  await driver.remove();
}

async function plug(ns: string, port: string, mac: string, cidr: string): Promise<void> {
  await sh('ip', 'netns', 'add', ns);
  await sh('ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  await sh('ip', 'link', 'set', port, 'master', bridge, 'up');
  await inNs(ns, 'ip', 'link', 'set', 'eth0', 'address', mac);
  await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  await inNs(ns, 'ip', 'link', 'set', 'eth0', 'up');
  await inNs(ns, 'ip', 'addr', 'add', cidr, 'dev', 'eth0', 'nodad');
}

/** Starts a sg_flow.py child in a netns and resolves once it printed `until`. */
function flow(ns: string, args: string[], until: string): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn('ip', ['netns', 'exec', ns, PYTHON, FLOW, ...args]);
  children.push(child);
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      lines.push(...d.split('\n').filter((l) => l !== ''));
      if (lines.some((l) => l.startsWith(until))) resolve({ child, lines });
    });
    child.on('exit', (code) =>
      reject(new Error(`sg_flow ${args.join(' ')} exited ${code}: ${lines.join('|')}`)),
    );
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until a `hold` flow printed `lost` (resolves with the ms it took), or gives up after `ms`. */
async function lostWithin(lines: string[], ms: number): Promise<number | undefined> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    if (lines.includes('lost')) return performance.now() - start;
    await sleep(50);
  }
  return undefined;
}

async function counter(ifname: string, rule: string): Promise<number> {
  return (await driver.counters()).find((c) => c.ifname === ifname && c.rule === rule)?.packets ?? 0;
}

async function flows(src: string, dst: string): Promise<number> {
  const { stdout } = await sh('conntrack', '-L', '-s', src, '-d', dst, '-w', String(zoneOf(bridge))).catch(
    () => ({ stdout: '' }),
  );
  return stdout.split('\n').filter((l) => l.includes(`src=${src}`)).length;
}

/** True when the tables hold `desired` exactly (read and diffed, never written: the watch must do the writing). */
async function inSync(desired: SecGroupState): Promise<boolean> {
  const nft = new CommandNftApplier();
  const seen = emptyObserved();
  let any = false;
  for (const family of ['bridge', 'inet']) {
    const listing = await nft.listTable(family, driver.table);
    if (listing !== undefined) any = true;
    if (listing !== undefined) observeSg(listing, seen);
  }
  const { ports, sets } = validateSecGroups(desired);
  return any && planSecGroups(names, await driver.mode(), seen, ports, sets) === undefined;
}

t.before(async () => {
  await cleanup();
  await sh('ip', 'link', 'add', bridge, 'type', 'bridge');
  await sh('ip', 'link', 'set', bridge, 'up');
  await plug(endpoint.ns, endpoint.port, '02:00:00:78:00:01', `${endpoint.ip}/24`);
  for (const g of [DB, WEB, OTHER, WEB2]) await plug(g.ns, g.port, g.mac, `${g.ip}/24`);
  await flow(DB.ns, ['serve', '3306', '22', '8080'], 'ready');
  await flow(OTHER.ns, ['serve', '8080'], 'ready');
  t.ok(await probe(OTHER, DB, 8080), 'before any group, every port is open');
});
t.teardown(cleanup);

t.test('the mode is detected on this kernel', async (t) => {
  const mode = await driver.mode();
  t.ok(mode === 'br-netfilter' || mode === 'bridge-ct', mode);
});

t.test('the allowed port is open to the set, everything else closed', async (t) => {
  const report = await driver.apply(state([WEB], [MYSQL]));
  t.same(report, { changed: true, errors: [] });
  t.ok(await probe(WEB, DB, 3306), 'webapp -> db:3306 passes');
  t.notOk(await probe(WEB, DB, 22), 'webapp -> db:22 is refused');
  t.notOk(await probe(WEB, DB, 8080), 'webapp -> db:8080 is refused');
  t.notOk(await probe(OTHER, DB, 3306), 'a guest outside the set cannot reach 3306');
  t.notOk(await ping(WEB, DB), 'no ICMP rule: ping is refused');
  t.ok(await ping(endpoint, DB), 'the endpoint (platform) still reaches the guest');
  t.ok(await probe(DB, OTHER, 8080), "a reply to the guest's own outbound connection passes");
  t.ok((await counter(DB.port, 'sr-mysql')) > 0, 'the rule counter moved');
  t.ok((await counter(DB.port, 'drop')) > 0, 'the drop counter moved');
});

t.test("a member's address counts only with its MAC, from its port", async (t) => {
  const as = (port: Guest, mac: Guest) => ({ ip: OTHER.ip, mac: mac.mac, port: port.port });
  await driver.apply(state([WEB, as(WEB, OTHER)], [MYSQL]));
  t.notOk(
    await probe(OTHER, DB, 3306),
    "its address and MAC bound to another port (another host's guest on the uplink): refused",
  );
  await driver.apply(state([WEB, as(OTHER, WEB)], [MYSQL]));
  t.notOk(await probe(OTHER, DB, 3306), 'its address on its port with another MAC: refused');
  await driver.apply(state([WEB, as(OTHER, OTHER)], [MYSQL]));
  t.ok(await probe(OTHER, DB, 3306), 'address, MAC and port all its own: admitted (control)');
  await driver.apply(state([WEB], [MYSQL]));
  t.notOk(await probe(OTHER, DB, 3306), 'out of the set again: refused');
});

t.test('a refusal reaches the drop log and becomes a secgroup.drop audit record', async (t) => {
  const events: GuardDropEvent[] = [];
  const log = new DropLog({ group: names.logGroup(), onDrop: (e) => events.push(e) });
  log.start();
  t.teardown(() => log.stop());
  const seen = () => events.find((e) => e.reason === 'secgroup' && e.dport === 22);
  for (let i = 0; i < 40 && !seen(); i++) {
    await probe(OTHER, DB, 22, 0.2);
    await sleep(100);
  }
  const drop = seen();
  t.ok(drop, 'the kernel logged the refused SYN');
  t.match(drop, { subject: DB.port, port: OTHER.port, ipSrc: OTHER.ip, ipDst: DB.ip, ipProto: 6, dport: 22 });
  const info = (port: string) =>
    port === DB.port
      ? { class: 'guest' as const, instance: 'db-1', network: NETWORK }
      : { class: 'guest' as const, instance: 'other-1' };
  const record = secgroupDropRecord(drop as GuardDropEvent, info(DB.port), info(OTHER.port), 1);
  t.match(record, {
    event: 'secgroup.drop',
    outcome: 'refused',
    port: DB.port,
    instance: 'db-1',
    ip: OTHER.ip,
    detail: { from_port: OTHER.port, from_instance: 'other-1', ip_dst: DB.ip, proto: 'tcp', dport: 22 },
  });
});

t.test('a second apply changes nothing', async (t) => {
  const nft = new CommandNftApplier();
  const before = handlesOf(await nft.listTable('bridge', driver.table));
  t.same(await driver.apply(state([WEB], [MYSQL])), { changed: false, errors: [] });
  t.same(handlesOf(await nft.listTable('bridge', driver.table)), before, 'no handle moved');
});

t.test('ICMP per rule', async (t) => {
  await driver.apply(state([WEB], [MYSQL, ICMP]));
  t.ok(await ping(WEB, DB), 'a member pings');
  t.notOk(await ping(OTHER, DB), 'a non-member does not');
});

// Times are reported, not asserted (this machine is noisy): bench/secgroups.ts (npm run bench:secgroups) measures them.
t.test(
  'a source added to the set gets in on the first try after one apply, as an element change',
  async (t) => {
    t.notOk(await probe(WEB2, DB, 3306), 'not yet a member');
    const nft = new CommandNftApplier();
    const chainBefore = handlesOf(await nft.list(['chain', 'bridge', driver.table, `port_${DB.port}`]));
    const start = performance.now();
    const report = await driver.apply(state([WEB, WEB2], [MYSQL, ICMP]));
    t.ok(await probe(WEB2, DB, 3306, 1), 'the new member gets in');
    const ms = performance.now() - start;
    t.ok(report.changed);
    t.comment(`apply + first connection took ${ms.toFixed(0)} ms`);
    t.same(
      handlesOf(await nft.list(['chain', 'bridge', driver.table, `port_${DB.port}`])),
      chainBefore,
      'the port chain was not rewritten',
    );
  },
);

t.test('a source removed loses its open connection; cutFlows clears its conntrack entries', async (t) => {
  const held = await flow(WEB2.ns, ['hold', DB.ip, '3306'], 'ok 3');
  t.ok((await flows(WEB2.ip, DB.ip)) > 0, 'the flow is tracked');
  await driver.apply(state([WEB], [MYSQL, ICMP]));
  await driver.cutFlows([{ src: WEB2.ip, dst: DB.ip }]);
  const ms = await lostWithin(held.lines, 3000);
  t.ok(ms !== undefined, `the open connection is lost (${ms?.toFixed(0)} ms)`);
  t.equal(await flows(WEB2.ip, DB.ip), 0, 'no conntrack entry is left for the pair');
  t.notOk(await probe(WEB2, DB, 3306), 'and no new one opens');
});

t.test('a rule removed: flows it alone allowed end, flows another rule allows keep going', async (t) => {
  await driver.apply(state([WEB], [MYSQL, MYSQL_CIDR, SSH, ICMP]));
  const mysql = await flow(WEB.ns, ['hold', DB.ip, '3306'], 'ok 3');
  const ssh = await flow(WEB.ns, ['hold', DB.ip, '22'], 'ok 3');
  const report = await driver.apply(state([WEB], [MYSQL_CIDR, ICMP]));
  t.same(report.errors, []);
  const sshLost = await lostWithin(ssh.lines, 3000);
  t.ok(
    sshLost !== undefined,
    `the ssh flow (opened before its rule was removed) ends (${sshLost?.toFixed(0)} ms)`,
  );
  t.notOk(mysql.lines.includes('lost'), 'the 3306 flow is still allowed (by the CIDR rule) and kept going');
  const before = mysql.lines.length;
  await sleep(500);
  t.ok(mysql.lines.length > before + 2, 'and it still echoes');
  mysql.child.kill();
});

t.test('a deleted table comes back whole on the next reading apply', async (t) => {
  await sh('nft', 'delete', 'table', 'bridge', driver.table);
  await sh('nft', 'flush', 'table', 'inet', driver.table).catch(() => undefined);
  t.ok(await probe(OTHER, DB, 8080), 'with the table gone, the port is open (the hole the watch closes)');
  // Without read, apply plans against what its last write left (the watch is what notices others' changes).
  const report = await driver.apply(state([WEB], [MYSQL_CIDR, ICMP]), { read: true });
  t.same(report, { changed: true, errors: [] });
  t.notOk(await probe(OTHER, DB, 8080), 'closed again');
  t.ok(await probe(WEB, DB, 3306), 'allowed again');
  t.same(await driver.apply(state([WEB], [MYSQL_CIDR, ICMP])), { changed: false, errors: [] });
});

t.test('the watch restores a deleted or flushed table within a second', async (t) => {
  const said: string[] = [];
  const note = (level: string) => (o: unknown, msg?: string) =>
    said.push(`${level} ${msg} ${JSON.stringify(o)}`);
  const watch = watchDriver(driver, { info: note('info'), warn: note('warn'), error: note('error') });
  watch.start();
  t.teardown(() => watch.stop());
  t.setTimeout(120_000);
  // nft monitor dumps the whole ruleset before it listens, and starts over when the ruleset changes
  // meanwhile: on a host whose other tests churn hundreds of tables that takes seconds. Untimed
  // rounds, far enough apart not to be that churn themselves, until the watch reports a restore.
  const warm = performance.now();
  while (!said.some((l) => l.includes('restoring')) && performance.now() - warm < 60_000) {
    await sleep(1500);
    await watch.idle();
    await sh('nft', 'flush', 'chain', 'bridge', driver.table, `port_${DB.port}`);
    for (let i = 0; i < 10 && !said.some((l) => l.includes('restoring')); i++) await sleep(100);
    await watch.idle();
  }
  t.ok(
    said.some((l) => l.includes('restoring')),
    'the watch is listening',
  );
  t.comment(`the watch listened after ${(performance.now() - warm).toFixed(0)} ms`);
  for (const [what, argv] of [
    ['bridge table deleted', ['nft', 'delete', 'table', 'bridge', driver.table]],
    ['inet table flushed', ['nft', 'flush', 'table', 'inet', driver.table]],
    ['port chain flushed', ['nft', 'flush', 'chain', 'bridge', driver.table, `port_${DB.port}`]],
  ] as const) {
    const start = performance.now();
    await sh(...argv);
    let back = false;
    while (!back && performance.now() - start < 5000) {
      await sleep(20);
      await watch.idle();
      back = await inSync(state([WEB], [MYSQL_CIDR, ICMP]));
    }
    const ms = performance.now() - start;
    t.ok(back, `${what}: restored by the watch (in ${ms.toFixed(0)} ms)`);
    if (!back) t.comment(said.join('\n'));
    t.notOk(await probe(OTHER, DB, 8080), `${what}: closed again`);
  }
});

t.test('a port leaving every group is open again; remove() deletes both tables', async (t) => {
  t.same((await driver.apply({ ports: [], sets: [] })).changed, true);
  t.ok(await probe(OTHER, DB, 8080), 'no group: today’s behaviour');
  await driver.remove();
  const nft = new CommandNftApplier();
  t.equal(await nft.listTable('bridge', driver.table), undefined);
  t.equal(await nft.listTable('inet', driver.table), undefined);
});
