// The row for a guard someone else removed: `nft flush ruleset` (what
// `systemctl reload nftables` does on Debian) deletes every table, berth's
// with it. Flushing the whole ruleset here would take the test machine's
// other tables too, so this row deletes berth's own table, which is what the
// flush does to it; test/netns/guard-heal.test.ts flushes the real ruleset
// inside a network namespace of its own.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditRecord } from '../../agent/api/types.js';
import { sh } from '../helpers/hostnet_lab.js';
import { auditCursor, auditSince } from './observe.js';
import { attack, see } from './result.js';

async function chainsBack(table: string, ports: string[], limitMs: number): Promise<number | undefined> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    const chains = await sh('nft', ['list', 'chains', 'bridge']).catch(() => '');
    const whole =
      chains.includes(`table bridge ${table}`) && ports.every((p) => chains.includes(`port_${p} `));
    if (whole) return performance.now() - started;
    await sleep(10);
  }
  return undefined;
}

export const guardTableDeleted = attack(
  'The guard table deleted (as by nft flush ruleset)',
  "berth's guard table, deleted by hand, is back with every port's chain within a second or so; a guest spoofing its MAC is dropped again; the restore is audited (guard.restored) with the process that deleted it",
  async (_t, { lab, subnet }) => {
    await lab.network('gr', subnet());
    const [a, b] = await Promise.all([lab.guest('gr-a', 'gr'), lab.guest('gr-b', 'gr')]);
    const control = await lab.ping('gr-a', b.ip);
    const cursor = await auditCursor(lab);
    const table = lab.guardTable();
    await sh('nft', ['delete', 'table', 'bridge', table]);
    const ms = await chainsBack(table, [a.port, b.port], 10_000);
    // The restore's audit record lands when the heal is done; spoof only then.
    let rec: AuditRecord | undefined;
    for (let i = 0; i < 25 && !rec; i++) {
      rec = (await auditSince(lab, cursor, 'guard.restored'))[0];
      if (!rec) await sleep(200);
    }
    const fake = '0a:b7:e7:ee:ee:02';
    await lab.execOk('gr-a', ['ip', 'link', 'set', 'dev', 'eth0', 'address', fake]);
    const dropped = await lab.noPing('gr-a', b.ip);
    const drops = await lab.drops('gr', a.port, 'mac-spoof');
    await lab.execOk('gr-a', ['ip', 'link', 'set', 'dev', 'eth0', 'address', a.mac]);
    const by = rec?.detail?.by as { comm?: string; pid?: number } | undefined;
    return [
      see(control, `control: the guests reach each other (${control ? 'yes' : 'no'})`),
      see(
        ms !== undefined,
        `the table with both ports' chains back after ${ms === undefined ? 'more than 10 s' : `${Math.round(ms)} ms`}`,
      ),
      see(
        dropped && drops > 0,
        `then a MAC spoof: ${dropped ? 'unanswered' : 'ANSWERED'}, mac-spoof drops ${drops}`,
      ),
      see(
        rec?.outcome === 'refused' && by !== undefined,
        `audit: ${rec ? `guard.restored ${rec.reason}, by ${by?.comm ?? '?'} (pid ${by?.pid ?? '?'}), ${String(rec.detail?.ms)} ms` : 'no guard.restored record'}`,
      ),
    ];
  },
);
