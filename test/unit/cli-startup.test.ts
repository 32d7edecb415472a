// berthctl starts in about 1.5× a bare `node -e 0` because it loads only what
// a CLI needs. TypeBox (about 150 ms to import here: agent/api/types.ts builds
// every schema at import), fastify, pino and the daemon's modules must never
// be reached at run time from agent/cli/main.ts; type-only imports are free.
// Read from the sources, so the import that would slow every berthctl run
// fails here. bench/ measures the start itself.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';

const root = resolve(import.meta.dirname, '../..');
const HEAVY = ['typebox', 'fastify', 'pino', 'level', 'etcd3', 'dbus-next', '@fastify/type-provider-typebox'];

/** The modules a source loads when it runs: `import type` and `export type` load nothing. */
function runtimeImports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const out: string[] = [];
  const re = /^(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?'([^']+)'/gm;
  for (const m of text.matchAll(re)) if (!m[1]) out.push(m[2] as string);
  for (const m of text.matchAll(/import\('([^']+)'\)/g)) out.push(m[1] as string);
  return out;
}

function reach(entry: string): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const spec of runtimeImports(file)) {
      if (spec.startsWith('.')) {
        const target = relative(root, resolve(root, dirname(file), spec.replace(/\.js$/, '.ts')));
        if (existsSync(join(root, target))) visit(target);
      } else if (!spec.startsWith('node:')) packages.set(spec, file);
    }
  };
  visit(entry);
  return { files, packages };
}

t.test('berthctl loads no heavy package at run time', async (t) => {
  const { files, packages } = reach('agent/cli/main.ts');
  t.ok(files.size > 5, `the walk found the CLI's modules (${files.size})`);
  t.ok(packages.has('commander'), 'and its packages (commander)');
  for (const pkg of HEAVY)
    t.notOk(packages.has(pkg), `${pkg} is not loaded (imported by ${packages.get(pkg)})`);
  const daemonSide = [...files].filter((f) => /^agent\/(daemon|services|api\/routes|metadata)\//.test(f));
  t.same(daemonSide, [], 'nothing of the daemon is loaded');
});

t.test('the walk sees a value import through a re-export', async (t) => {
  // agent/api/types.ts imports TypeBox as a value: a CLI importing it as a value would fail above.
  t.ok(reach('agent/api/types.ts').packages.has('typebox'));
});
