// The layers stay one-way: base/ imports nothing of berth's, hostnet/ and
// images/ only base/, and the CLI only the client and the API types. No file
// reaches itself through its imports. Read from the sources, so a new import
// that breaks a rule fails here before anyone has to find the circle.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';

const root = resolve(import.meta.dirname, '../..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) out.push(...sources(rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** Every berth file a source imports (values and types alike), as repo-relative .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\()'(\.{1,2}\/[^']+)\.js'/g)) {
    out.push(relative(root, resolve(root, dirname(file), `${m[1]}.ts`)));
  }
  return out;
}

const files = ['base', 'agent', 'hostnet', 'images'].flatMap(sources);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

const rules: { layer: string; may: string[] }[] = [
  { layer: 'base/', may: ['base/'] },
  { layer: 'hostnet/', may: ['base/', 'hostnet/'] },
  { layer: 'images/', may: ['base/', 'images/'] },
  {
    layer: 'agent/cli/',
    may: ['base/', 'agent/cli/', 'agent/client/', 'agent/api/types.ts', 'images/image-types.ts'],
  },
];

t.test('no lower layer imports from a higher one', async (t) => {
  const broken: string[] = [];
  for (const [file, deps] of graph) {
    const rule = rules.find((r) => file.startsWith(r.layer));
    if (!rule) continue;
    for (const dep of deps)
      if (!rule.may.some((p) => dep === p || (p.endsWith('/') && dep.startsWith(p))))
        broken.push(`${file} imports ${dep}`);
  }
  t.same(broken, [], 'every import points down or sideways');
  t.ok(graph.size > 100, `read ${graph.size} source files`);
});

t.test('no import circles', async (t) => {
  const circles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 'open') circles.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  t.same(circles, [], 'the import graph has no cycle');
});
