// The shape every row of the attack matrix (issue #8) shares. An attack is
// a scripted action from a netns guest plus the observations that show it
// was refused: each observation is something the host or a peer really saw
// (a reply that never came, a drop counter, an HTTP status, an audit record),
// and a row passes only when every one of them holds. Controls (the same
// thing done honestly succeeds) are observations too, so a row cannot pass
// because the path under test was broken to begin with.
import type { Test } from 'tap';
import type { Lab } from '../helpers/hostnet_lab.js';

export interface AttackResult {
  row: string;
  expected: string;
  observed: string;
  pass: boolean;
  /** Guard drop counters that rose during the row, by reason (for the audit checks that pair with them). */
  drops?: Record<string, number>;
}

export interface Observation {
  ok: boolean;
  /** What was seen, in words, with the measured values. */
  saw: string;
  drops?: Record<string, number>;
}

/** What every attack gets: a running berthd with its own prefix, and where its metrics listen. */
export interface AttackLab {
  lab: Lab;
  /** berthd's metrics port, bound to every host address (the worst case for host reachability). */
  metricsPort: number;
  /** A /24 no other attack in this berthd uses: 10.<n>.0.0/24. */
  subnet(): string;
}

export type AttackFn = ((t: Test, ctx: AttackLab) => Promise<AttackResult>) & {
  row: string;
  expected: string;
};

export function see(ok: boolean, saw: string, drops?: Record<string, number>): Observation {
  return drops ? { ok, saw, drops } : { ok, saw };
}

/**
 * Makes an attack function. A throw is a failed row whose observation is the
 * error, so the matrix still reports every row when one of them breaks.
 */
export function attack(
  row: string,
  expected: string,
  run: (t: Test, ctx: AttackLab) => Promise<Observation[]>,
): AttackFn {
  const fn = async (t: Test, ctx: AttackLab): Promise<AttackResult> => {
    let seen: Observation[];
    try {
      seen = await run(t, ctx);
    } catch (err) {
      seen = [see(false, `the attack could not be carried out: ${(err as Error).message}`)];
    }
    const drops = Object.assign({}, ...seen.map((o) => o.drops ?? {})) as Record<string, number>;
    return {
      row,
      expected,
      observed: seen.map((o) => (o.ok ? o.saw : `NOT AS EXPECTED: ${o.saw}`)).join('; '),
      pass: seen.length > 0 && seen.every((o) => o.ok),
      ...(Object.keys(drops).length > 0 ? { drops } : {}),
    };
  };
  return Object.assign(fn, { row, expected });
}
