// docs/security.md must not go stale: its attack table is what `npm run
// attacks` writes, so every row of the matrix must stand there, in order,
// with the same name and the same expectation, marked refused; and the prose
// that says what each row proves must have one item per row. The observed
// column holds measured values (counts, times) that differ from run to run,
// so only the rerun can check it; a row added, renamed or reworded without
// rerunning `npm run attacks` fails here.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { MATRIX } from '../attacks/matrix.js';

const DOC = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');

/** The inverse of run.ts's cell(): a table cell back to the text that was written. */
const uncell = (s: string) => s.trim().replaceAll('\\|', '|');

function tableRows(): { n: number; row: string; expected: string; refused: string }[] {
  const section = DOC.slice(DOC.indexOf('<!-- attacks:start -->'), DOC.indexOf('<!-- attacks:end -->'));
  return section
    .split('\n')
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => {
      const cells = l.slice(1, -1).split(/(?<!\\)\|/);
      return {
        n: Number(cells[0]),
        row: uncell(cells[1] ?? ''),
        expected: uncell(cells[2] ?? ''),
        refused: uncell(cells.at(-1) ?? ''),
      };
    });
}

t.test(
  'the attack table lists every row of the matrix, in order, as npm run attacks writes it',
  async (t) => {
    const rows = tableRows();
    t.equal(
      rows.length,
      MATRIX.length,
      'one table row per attack (rerun `npm run attacks` after adding one)',
    );
    MATRIX.forEach((attack, i) => {
      const r = rows[i];
      t.equal(r?.n, i + 1, `row ${i + 1} is numbered ${i + 1}`);
      t.equal(r?.row, attack.row, `row ${i + 1} names "${attack.row}"`);
      t.equal(
        r?.expected,
        attack.expected,
        `row ${i + 1} ("${attack.row}") states the expectation the code checks`,
      );
      t.equal(r?.refused, 'yes', `row ${i + 1} ("${attack.row}") was refused when the table was written`);
    });
    const summary = new RegExp(`(\\d+) of ${MATRIX.length} attacks refused`).exec(DOC);
    t.equal(
      summary?.[1],
      String(MATRIX.length),
      `the summary says ${MATRIX.length} of ${MATRIX.length} refused`,
    );
  },
);

t.test('the prose says what each row proves, one item per row', async (t) => {
  const proves = DOC.slice(DOC.indexOf('What each row proves'), DOC.indexOf('<!-- attacks:start -->'));
  const items = [...proves.matchAll(/^(\d+)\. \*\*/gm)].map((m) => Number(m[1]));
  t.same(
    items,
    MATRIX.map((_, i) => i + 1),
    'numbered items 1..N, N the number of attacks',
  );
});
