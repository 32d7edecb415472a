// Which build of the endpoint's code a process runs. berthd compares the id
// of the entry it would start with the one a running endpoint reports, so an
// endpoint left by an older build is replaced on upgrade instead of adopted.
// The id hashes the contents of the endpoint's own module graph (relative
// imports from the entry), so a rebuild that changes nothing the endpoint
// runs, or a change elsewhere in berthd, does not cost guests a restart.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const RELATIVE_IMPORT = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;

export const ENDPOINT_ENTRY = fileURLToPath(new URL('./main.js', import.meta.url));

export function buildId(entry = ENDPOINT_ENTRY): string {
  const seen = new Set<string>();
  const queue = [resolve(entry)];
  const hash = createHash('sha256');
  while (queue.length > 0) {
    const file = queue.shift() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // a type-only import erased by the compiler
    }
    hash.update(`${file}\0${text}\0`);
    for (const m of text.matchAll(RELATIVE_IMPORT)) queue.push(resolve(dirname(file), m[1] as string));
  }
  return hash.digest('hex').slice(0, 16);
}
