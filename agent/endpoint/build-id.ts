// Which build of berth's code an endpoint runs. berthd compares its own with
// the one an endpoint reports, so an endpoint left running by the berthd of
// an older build is replaced on upgrade instead of adopted. Sizes and mtimes
// of the built JavaScript are enough: an install or a rebuild changes them,
// and reading them costs a millisecond, not a hash of every file.
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The agent's code directory: dist/agent when built (this file's parent's parent). */
const AGENT_DIR = fileURLToPath(new URL('..', import.meta.url));

function walk(dir: string, out: string[]): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, out);
    else if (entry.name.endsWith('.js') || entry.name.endsWith('.ts')) out.push(path);
  }
}

export function buildId(dir = AGENT_DIR): string {
  const files: string[] = [];
  walk(dir, files);
  const hash = createHash('sha256');
  for (const file of files.sort()) {
    const st = statSync(file);
    hash.update(`${file}\0${st.size}\0${st.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}
