// Root-namespace sysctls read and written as files under /proc/sys: the same
// keys `sysctl` takes in slash form, without a process per call. A reconcile
// checks one per guest port, so hundreds of `sysctl` processes become reads.
// Keys for another namespace still go through `ip netns exec … sysctl`, since
// /proc/sys shows the namespace of the process that reads it.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface SysctlFiles {
  read(keys: string[]): Promise<string[]>;
  write(values: Record<string, string>): Promise<void>;
}

export class ProcSysctl implements SysctlFiles {
  constructor(private readonly root = '/proc/sys') {}

  read(keys: string[]): Promise<string[]> {
    return Promise.all(keys.map(async (k) => (await readFile(join(this.root, k), 'utf8')).trimEnd()));
  }

  async write(values: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(values)) await writeFile(join(this.root, k), v);
  }
}
