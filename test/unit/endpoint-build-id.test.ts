// The endpoint's build id follows what the endpoint runs and nothing else:
// it decides whether a restarting berthd adopts an endpoint or replaces it.
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildId } from '../../agent/endpoint/build-id.js';

t.test('the id hashes the entry and its relative imports, not other files or mtimes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'build-id-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const entry = join(dir, 'main.js');
  await writeFile(entry, "import { a } from './a.js';\nimport x from 'node:fs';\n");
  await writeFile(join(dir, 'a.js'), "export { b as a } from './sub/b.js';\n");
  await writeFile(join(dir, 'unrelated.js'), 'export const u = 1;\n');
  const first = buildId(entry);
  t.match(first, /^[0-9a-f]{16}$/);

  await writeFile(join(dir, 'unrelated.js'), 'export const u = 2;\n');
  const later = new Date(Date.now() + 60_000);
  await utimes(entry, later, later);
  t.equal(buildId(entry), first, 'a file the endpoint does not import, and a new mtime, change nothing');

  await writeFile(join(dir, 'a.js'), "export { b as a } from './sub/b.js';\n// changed\n");
  t.not(buildId(entry), first, 'a changed import changes the id');
});
