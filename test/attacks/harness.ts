// Runs attack rows against one real berthd: the netns tests (one group per
// test file) and `npm run attacks` (every group, then the table in
// docs/security.md) go through here, so both run exactly the same attacks.
import { createServer } from 'node:net';
import type { Test } from 'tap';
import { startLab } from '../helpers/hostnet_lab.js';
import type { AttackFn, AttackLab, AttackResult } from './result.js';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * berthd with its own prefix and its metrics on every host address: an
 * operator may do that, and the host-reachability row must hold even then.
 */
export async function startAttackLab(t: Test): Promise<AttackLab> {
  const metricsPort = await freePort();
  const lab = await startLab(t, { config: `networks: []\nmetrics:\n  listen: 0.0.0.0:${metricsPort}\n` });
  let next = 180;
  return { lab, metricsPort, subnet: () => `10.${next++}.0.0/24` };
}

/** The last warn/error lines of berthd's log (pino JSON: level ≥ 40). */
function daemonComplaints(log: string, max = 30): string {
  const lines = log.split('\n').filter((l) => {
    const m = /"level":(\d+)/.exec(l);
    return m !== null && Number(m[1]) >= 40;
  });
  return lines.slice(-max).join('\n') || '(none)';
}

/** One subtest per attack, each asserting that the attack was refused; results go to onResult too. */
export async function runAttacks(
  t: Test,
  attacks: readonly AttackFn[],
  onResult: (r: AttackResult) => void = () => {},
): Promise<void> {
  const ctx = await startAttackLab(t);
  for (const run of attacks) {
    await t.test(run.row, async (t) => {
      const r = await run(t, ctx);
      onResult(r);
      t.ok(r.pass, `${r.row}: expected ${r.expected}; observed ${r.observed}`);
      // A row that failed names berthd's own account of it, so a red CI log is enough.
      if (!r.pass) t.comment(`berthd warnings and errors:\n${daemonComplaints(ctx.lab.d.stderr())}`);
    });
  }
}
