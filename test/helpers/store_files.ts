// The files of a LevelDB store, for tests that damage them and check that
// berth left them exactly as they were.
import { createHash } from 'node:crypto';
import { open, readdir, readFile, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';

/** name → sha256 of every file in dir. */
export async function fileHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort())
    out[name] = createHash('sha256')
      .update(await readFile(join(dir, name)))
      .digest('hex');
  return out;
}

/** The store's files of one kind: '.log', '.ldb'. */
export async function filesEnding(dir: string, ext: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith(ext)).sort();
}

/** Overwrites n bytes at offset (from the end when negative) with fill. */
export async function garble(path: string, offset: number, n: number, fill = 0xa5): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    const at = offset < 0 ? size + offset : offset;
    if (at < 0 || at + n > size) throw new Error(`${path} has ${size} bytes; cannot garble ${n} at ${at}`);
    await fh.write(Buffer.alloc(n, fill), 0, n, at);
  } finally {
    await fh.close();
  }
}

/** Cuts the file to a fraction of its size. */
export async function truncateTo(path: string, fraction: number): Promise<number> {
  const size = Math.floor((await stat(path)).size * fraction);
  await truncate(path, size);
  return size;
}
