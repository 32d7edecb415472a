// Rule comments carry a fingerprint of what was rendered, so reconcile
// compares hashes, not nft's reprint of the rules. It rides on a chain's last
// rule, so a chain cut short by hand reads as changed.
import { createHash } from 'node:crypto';

export const FINGERPRINT_PREFIX = 'berth guard ';

export function fingerprint(lines: readonly string[]): string {
  return createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 12);
}

/** The rules with the fingerprint of all of them on the last one. */
export function withFingerprint(rules: string[]): string[] {
  const last = rules.length - 1;
  rules[last] = `${rules[last]} comment "${FINGERPRINT_PREFIX}${fingerprint(rules)}"`;
  return rules;
}

/** The fingerprint a rendered chain's last rule carries. */
export function fingerprintOfRules(rules: readonly string[]): string {
  const last = rules.at(-1) as string;
  return (/"berth guard ([0-9a-f]+)"$/.exec(last) as RegExpExecArray)[1] as string;
}
