// `npm run attacks`: every row of the attack matrix against one real berthd
// (dist/), then the results table in docs/security.md between its markers.
// Run as root. Exits non-zero when any attack was not refused; the table is
// written either way, so a failure is on record.
import { readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { provenance } from '../../bench/lib/results.js';
import { isRoot } from '../helpers/hostnet_lab.js';
import { runAttacks } from './harness.js';
import { MATRIX } from './matrix.js';
import type { AttackResult } from './result.js';

const DOC = new URL('../../docs/security.md', import.meta.url).pathname;
const START = '<!-- attacks:start -->';
const END = '<!-- attacks:end -->';

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

function table(results: AttackResult[]): string {
  const passed = results.filter((r) => r.pass).length;
  return [
    `${provenance()} ${passed} of ${results.length} attacks refused.`,
    '',
    '| # | Attack | Expected | Observed | Refused |',
    '| --- | --- | --- | --- | --- |',
    ...results.map(
      (r, i) =>
        `| ${i + 1} | ${cell(r.row)} | ${cell(r.expected)} | ${cell(r.observed)} | ${r.pass ? 'yes' : '**NO**'} |`,
    ),
  ].join('\n');
}

function writeSection(section: string): void {
  const text = readFileSync(DOC, 'utf8');
  const at = text.indexOf(START);
  const end = text.indexOf(END);
  if (at < 0 || end < at) throw new Error(`${DOC} has no ${START} ... ${END} section`);
  writeFileSync(DOC, `${text.slice(0, at + START.length)}\n${section}\n${text.slice(end)}`);
}

if (!isRoot()) {
  console.error('npm run attacks needs root (bridges, namespaces, nftables)');
  process.exit(2);
}
// Run outside tap's runner, the root test would otherwise time out after 30 s.
t.setTimeout(0);
const results: AttackResult[] = [];
await runAttacks(t, MATRIX, (r) => results.push(r));
writeSection(table(results));
console.error(`attacks: ${results.filter((r) => r.pass).length}/${results.length} refused; table in ${DOC}`);
if (results.some((r) => !r.pass)) process.exitCode = 1;
