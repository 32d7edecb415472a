// Fault: berthd's state dir fills up (a small tmpfs). Refusals must still be
// audited: a guest's metadata request with a foreign Host header (DNS
// rebinding) and a malformed admin request are refused and land in `berthctl
// audit`, from the audit reserve (agent/audit/audit-spill.ts), while a state
// change is refused with BERTH_ERR_STORE_FULL. Once space returns the
// reserved records move into the store by themselves, and after a kill -9 and
// a restart the log is contiguous, holds each of them once, and the reserve
// is empty.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { AuditRecord } from '../../agent/audit/audit-log.js';
import { ClientError } from '../../agent/client/client.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { DhcpGuest } from '../helpers/dhcp_guest.js';
import { NET_CONFIG, startDhcpLab, udhcpcScript } from '../helpers/dhcp_lab.js';
import { isRoot, type Lab } from '../helpers/hostnet_lab.js';
import { curl } from '../helpers/metadata_lab.js';
import { fillUp, mountTmpfs } from '../helpers/tmpfs.js';

if (!isRoot()) {
  t.plan(0, 'needs root (tmpfs, bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const audit = (lab: Lab) => lab.json<AuditRecord[]>(['audit', '--limit', '10000']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a full state disk: refusals still audited, state changes refused, nothing lost after', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const base = await tempDir(t, 'audit-reserve');
  const stateDir = join(base, `${prefix}-state`);
  await mountTmpfs(t, stateDir, 16 << 20);
  const where = { prefix, stateDir, socket: join(base, 'berthd.sock') };
  const third = 60 + Math.floor(Math.random() * 9);
  let lab = await startDhcpLab(t, [NET_CONFIG('r', third)], where);
  const client = lab.d.client;
  const rec = await client.createInstance({ name: 'g0', network: 'r', runtime: 'netns' });
  const g0 = new DhcpGuest(
    t,
    { name: 'g0', id: rec.id, ip: rec.nics[0]?.ip as string, netns: rec.netns as string },
    await udhcpcScript(t),
  );
  t.ok(await g0.bound(15_000), 'g0 has its lease');
  t.equal(await g0.instanceId(10_000), rec.id, 'g0 reads its metadata');
  const before = (await audit(lab)).length;

  const filler = await fillUp(stateDir);
  const create = await client
    .createInstance({
      name: 'g1',
      network: 'r',
      runtime: 'netns',
      user_data: Buffer.alloc(45_000, 'u').toString('base64'),
    })
    .catch((e) => e);
  t.type(create, ClientError, 'a create on the full disk is refused');
  t.match(create, { code: 'BERTH_ERR_STORE_FULL', status: 507 }, 'with BERTH_ERR_STORE_FULL');

  // Refusals while the disk is full: a guest's DNS-rebinding request, a malformed admin request.
  const rebind = await curl(g0.g.netns, '/latest/meta-data/instance-id', [
    '-H',
    'Host: rebind.attacker.example',
  ]);
  t.equal(rebind.status, 403, "g0's request with a foreign Host header is refused");
  const bad = await lab.ctl(['instance', 'create', 'Not A Name', '--network', 'r']);
  t.equal(bad.code, 1, 'a malformed create is refused by berthd');
  t.match(
    await client.deleteInstance('g0').catch((e) => e),
    { code: 'BERTH_ERR_STORE_FULL' },
    'a delete (a state change) is refused with BERTH_ERR_STORE_FULL',
  );

  const during = await audit(lab);
  const hostRefusal = during.find((r) => /Host "rebind.attacker.example"/.test(r.reason));
  t.match(
    hostRefusal,
    { event: 'metadata.request', outcome: 'refused', mac: rec.nics[0]?.mac, ip: g0.g.ip, instance: rec.id },
    'the metadata refusal is in berthctl audit while the disk is full, naming the guest',
  );
  const admin = during.slice(before).filter((r) => r.event === 'admin.request' && r.outcome === 'refused');
  t.ok(
    admin.some((r) => r.detail?.status === 400),
    `so is the malformed admin request (${admin.map((r) => r.detail?.code).join(', ')})`,
  );
  const spilledSeqs = during.slice(before).map((r) => r.seq);
  t.ok(spilledSeqs.length >= 2, `${spilledSeqs.length} records written while the disk was full`);
  const spill = await readFile(join(stateDir, 'audit-spill'));
  t.ok(spill.includes('rebind.attacker.example'), 'they are in the reserve file');

  await rm(filler);
  await sleep(2500); // the reserve moves into the store within a second or so
  const after = await audit(lab);
  t.ok(
    after.some((r) => /Host "rebind.attacker.example"/.test(r.reason)),
    'space returned: the refusal is still there',
  );
  const g1 = await client.createInstance({ name: 'g1', network: 'r', runtime: 'netns' });
  t.equal(g1.state, 'running', 'and state changes work again');
  const emptied = await readFile(join(stateDir, 'audit-spill'));
  t.ok(
    emptied.every((b) => b === 0),
    `the reserve is empty again and still ${emptied.length} bytes`,
  );

  // Nothing lost or torn: a kill -9 and a restart read back every record once, in order.
  const seen = (await audit(lab)).map((r) => r.seq);
  await lab.d.kill9();
  lab = await startDhcpLab(t, [NET_CONFIG('r', third)], where);
  const final = await audit(lab);
  t.same(
    final.map((r) => r.seq),
    final.map((_, i) => (final[0]?.seq ?? 1) + i),
    `the log is contiguous after a restart (${final.length} records)`,
  );
  t.ok(
    seen.every((s) => final.some((r) => r.seq === s)),
    'every record seen before the crash is there',
  );
  t.equal(
    final.filter((r) => /Host "rebind.attacker.example"/.test(r.reason)).length,
    1,
    'the refusal written during the full disk is there exactly once',
  );
});
