// A small tmpfs to fill up: the stand-in for a state dir on a full disk.
// Unmounted (lazily, in case something still holds it) at teardown.
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import { sh } from './hostnet_lab.js';

export async function mountTmpfs(t: Test, dir: string, bytes: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  await sh('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir]);
  t.teardown(async () => {
    await sh('umount', ['-l', dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
}

/** Writes a file until the filesystem refuses (ENOSPC); its path. Big chunks first, then pages. */
export async function fillUp(dir: string): Promise<string> {
  const path = join(dir, 'filler');
  const fh = await open(path, 'w');
  try {
    for (const chunk of [1 << 20, 4096, 1]) {
      const buf = Buffer.alloc(chunk, 0x42);
      try {
        for (;;) await fh.write(buf);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    await fh.close();
  }
  return path;
}
