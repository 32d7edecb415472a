// Acceptance (issue 12): the guard fails closed and heals fast, and its drops
// are audited. berthd runs inside a scratch network namespace of its own
// (nftables is per namespace), so `nft flush ruleset` wipes only its tables,
// never another test's. After the table is deleted, the ruleset flushed or a
// port chain flushed, the guard is back (within a generous 10 s: timing is
// bench:guard-heal's job) and a guest that spoofs its MAC is dropped again.
// A spoof shows in `berthctl audit --event guard.drop` with the port, its
// class, the spoofed MAC, the reason and a count.
import t, { type Test } from 'tap';
import type { AuditRecord } from '../../agent/audit/audit-log.js';
import { removePrefixed, uniquePrefix } from '../helpers/berthd.js';
import { isRoot, type Lab, sh, startLab } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (network namespaces, bridges, nftables)');
  process.exit(0);
}

const FAKE = '0a:b7:e7:ee:ee:42';

async function scratchLab(t: Test): Promise<{ lab: Lab; nft: (...args: string[]) => Promise<string> }> {
  const prefix = uniquePrefix();
  // Not "<prefix>-…": berthd would sweep a namespace of its prefix that it did not make.
  const scratch = `heal-${prefix}`;
  t.teardown(async () => {
    removePrefixed(prefix);
    await sh('ip', ['netns', 'delete', scratch]).catch(() => undefined);
  });
  await sh('ip', ['netns', 'add', scratch]);
  await sh('ip', ['-n', scratch, 'link', 'set', 'lo', 'up']);
  const lab = await startLab(t, { prefix, wrap: ['nsenter', `--net=/run/netns/${scratch}`] });
  const nft = (...args: string[]) => sh('ip', ['netns', 'exec', scratch, 'nft', ...args]);
  return { lab, nft };
}

/** Polls until every port's dispatch element and chain fingerprint are back; false after 10 s. */
async function restored(
  nft: (...a: string[]) => Promise<string>,
  table: string,
  ports: string[],
): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const text = await nft('list', 'table', 'bridge', table).catch(() => '');
    const chain = (p: string) => text.split('\tchain ').find((c) => c.startsWith(`port_${p} {`)) ?? '';
    // The fingerprint comment rides on a port chain's last rule: present means complete.
    if (ports.every((p) => text.includes(`"${p}" : jump port_${p}`) && chain(p).includes('berth guard')))
      return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** The guest takes a MAC that is not its own: nothing gets through while the guard stands. */
async function spoofDropped(lab: Lab, from: string, to: string): Promise<boolean> {
  await lab.execOk(from, ['ip', 'link', 'set', 'dev', 'eth0', 'address', FAKE]);
  try {
    return await lab.noPing(from, to);
  } finally {
    const mac = (await lab.json<{ nics: { mac: string }[] }>(['instance', 'show', from])).nics[0]
      ?.mac as string;
    await lab.execOk(from, ['ip', 'link', 'set', 'dev', 'eth0', 'address', mac]);
  }
}

t.test(
  'deleted table, flushed ruleset, flushed port chain: restored, and a spoof is dropped again',
  async (t) => {
    const { lab, nft } = await scratchLab(t);
    await lab.network('a', '10.87.0.0/24');
    const [g1, g2] = await Promise.all([lab.guest('g1', 'a'), lab.guest('g2', 'a')]);
    const table = lab.guardTable();
    t.ok(await lab.ping('g1', g2.ip), 'honest traffic passes');
    t.ok(await spoofDropped(lab, 'g1', g2.ip), 'before: a spoofing guest is dropped');

    await nft('delete', 'table', 'bridge', table);
    t.ok(await restored(nft, table, [g1.port, g2.port]), 'nft delete table: the table is back');
    t.ok(await spoofDropped(lab, 'g1', g2.ip), 'after the delete: the spoof is dropped again');
    t.ok(await lab.ping('g1', g2.ip), 'and honest traffic passes again');
    t.match(lab.d.stderr(), /somebody deleted, flushed or changed berth's guard table; restoring/, 'logged');

    await nft('flush', 'ruleset');
    t.ok(await restored(nft, table, [g1.port, g2.port]), 'nft flush ruleset: the table is back');
    t.ok(await spoofDropped(lab, 'g1', g2.ip), 'after the flush: the spoof is dropped again');

    await nft('flush', 'chain', 'bridge', table, `port_${g1.port}`);
    t.ok(await restored(nft, table, [g1.port, g2.port]), 'nft flush chain port_…: the chain is back');
    t.ok(await spoofDropped(lab, 'g1', g2.ip), 'after the chain flush: the spoof is dropped again');
    t.match(
      lab.d.stderr(),
      /somebody changed the rules of ports \S+ in berth's guard table; restoring/,
      'logged',
    );
    t.ok(await lab.ping('g1', g2.ip), 'honest traffic passes at the end');
    const restores = await lab.json<AuditRecord[]>(['audit', '--event', 'guard.restored', '--limit', '100']);
    const reasons = [...restores].sort((a, b) => a.seq - b.seq).map((r) => r.reason);
    t.ok(
      reasons.length >= 3 &&
        reasons.slice(0, -1).every((r) => r === 'table-deleted' || r === 'table-changed') &&
        reasons.at(-1) === 'port-rules-changed',
      `each restore is audited: the table (delete, flush ruleset), then the port chain (${reasons.join(', ')})`,
    );
    t.ok(
      restores.every((r) => r.outcome === 'refused' && typeof r.detail?.by === 'object'),
      'with who did it, as nft monitor named the process',
    );
  },
);

t.test(
  'a guest that spoofs its MAC is audited: guard.drop with port, class guest, the MAC, reason, count',
  async (t) => {
    const { lab } = await scratchLab(t);
    await lab.network('a', '10.88.0.0/24');
    const [g1, g2] = await Promise.all([lab.guest('g1', 'a'), lab.guest('g2', 'a')]);
    t.ok(await spoofDropped(lab, 'g1', g2.ip), 'the spoof is dropped');
    let record: AuditRecord | undefined;
    const deadline = Date.now() + 10_000;
    while (!record && Date.now() < deadline) {
      const records = await lab.json<AuditRecord[]>(['audit', '--event', 'guard.drop', '--limit', '1000']);
      record = records.find((r) => r.port === g1.port && r.reason === 'mac-spoof' && r.mac === FAKE);
      if (!record) await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(record, `a guard.drop record for ${g1.port}`);
    t.equal(record?.outcome, 'refused');
    t.equal(record?.instance, 'g1', 'the instance behind the port');
    t.equal(record?.network, 'a');
    t.equal(record?.detail?.class, 'guest');
    t.ok(Number(record?.detail?.count) >= 1, `a count: ${record?.detail?.count}`);
    t.notOk(
      (await lab.json<AuditRecord[]>(['audit', '--event', 'guard.drop', '--limit', '1000'])).some(
        (r) => r.port === g2.port,
      ),
      'the honest guest has no drop records',
    );
  },
);
