// berthd with a network and the test guest imported, for the compute e2e
// tests: real libvirtd (scripts/libvirt-up.sh), real QEMU (TCG), berth's own
// DHCP and metadata. Every domain is named <prefix>-<instance>.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import { osCommandRunner } from '../../base/command.js';
import { ensureTestGuest, type GuestReport, parseGuestLog, type TestGuest } from '../../images/test-guest.js';
import { ROOT, type RunningBerthd, removePrefixed, startBerthd, uniquePrefix } from './berthd.js';

export const sh = (...argv: string[]) => osCommandRunner.run(argv, { timeoutMs: 120_000 });
export const virsh = (...args: string[]) => sh('virsh', '-c', 'qemu:///system', ...args);

/** Names of every domain libvirt knows whose name starts with prefix-. */
export async function domainsOf(prefix: string): Promise<string[]> {
  const { stdout } = await virsh('list', '--all', '--name');
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(`${prefix}-`));
}

/** Undefines every domain of prefix: cleanup after a failed test. */
export async function removeDomains(prefix: string): Promise<void> {
  for (const name of await domainsOf(prefix).catch(() => [])) {
    await virsh('destroy', name).catch(() => {});
    await virsh('undefine', name).catch(() => {});
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms: number,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function libvirtUp(): Promise<void> {
  await sh('bash', join(ROOT, 'scripts/libvirt-up.sh'));
}

export const computeConfig = (network: string, third: number) =>
  `networks: [{name: ${network}, subnet: 10.${third}.0.0/24, gateway: 10.${third}.0.1}]\n`;

export interface ComputeLab {
  d: RunningBerthd & { prefix: string };
  guest: TestGuest;
  network: string;
  prefix: string;
}

/** libvirt up, the test guest built, berthd with one network; cleans up domains and links of its prefix. */
export async function startComputeLab(
  t: Test,
  opts: { network?: string; third?: number; stateDir?: string; socket?: string; prefix?: string } = {},
): Promise<ComputeLab> {
  await libvirtUp();
  const guest = await ensureTestGuest();
  const prefix = opts.prefix ?? uniquePrefix();
  const network = opts.network ?? 'cnet';
  const third = opts.third ?? 100 + Math.floor(Math.random() * 100);
  t.teardown(async () => {
    await removeDomains(prefix);
    removePrefixed(prefix);
  });
  const d = await startBerthd(t, {
    prefix,
    config: computeConfig(network, third),
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    ...(opts.socket ? { socket: opts.socket } : {}),
  });
  return { d, guest, network, prefix };
}

/** Waits until the guest's serial log has its metadata answer (or an error) and returns the report. */
export async function guestReport(path: string, ms = 90_000): Promise<GuestReport> {
  return waitFor(
    `the guest's metadata answer in ${path}`,
    async () => {
      const r = parseGuestLog(await readFile(path, 'utf8').catch(() => ''));
      return r.instanceId || r.instanceIdError || r.lease === 'none' ? r : undefined;
    },
    ms,
  );
}
