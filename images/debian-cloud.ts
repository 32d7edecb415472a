// The stock Debian 12 cloud guest (images/build-debian-cloud.sh) from
// TypeScript: built on first use (a few minutes, from Debian's mirror), then
// returned from the cache at once.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CommandRunner, osCommandRunner } from '../base/command.js';

export const DEFAULT_DEBIAN_CLOUD_CACHE = '/var/cache/berth/debian-cloud';

export interface DebianCloud {
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  /** `package=version` of what the image was built from. */
  packages: string[];
}

function scriptPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const rel = 'build-debian-cloud.sh';
  return here.includes('/dist/') ? join(here, '..', '..', 'images', rel) : join(here, rel);
}

export async function ensureDebianCloud(
  cache = DEFAULT_DEBIAN_CLOUD_CACHE,
  runner: CommandRunner = osCommandRunner,
): Promise<DebianCloud> {
  const { stdout } = await runner.run(['bash', scriptPath(), cache], { timeoutMs: 1_200_000 });
  const dir = stdout.trim().split('\n').pop() as string;
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { packages: string };
  return {
    dir,
    disk: join(dir, 'disk.qcow2'),
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    cmdline: (await readFile(join(dir, 'cmdline'), 'utf8')).trim(),
    packages: manifest.packages.split(' ').filter(Boolean),
  };
}
