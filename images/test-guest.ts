// The tiny test guest (images/build-test-guest.sh) and the test disk that
// carries it (images/build-test-disk.sh) from TypeScript: build them if
// needed, and read the serial console's BERTH-GUEST markers.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CommandRunner, osCommandRunner } from '../base/command.js';

export const DEFAULT_TEST_GUEST_CACHE = '/var/cache/berth/test-guest';
export const DEFAULT_TEST_DISK_CACHE = '/var/cache/berth/test-disk';

export interface TestGuest {
  dir: string;
  kernel: string;
  initrd: string;
  cmdline: string;
}

/** The test disk: a qcow2 that boots by itself, and the kernel, initrd and cmdline that also boot it. */
export interface TestDisk extends TestGuest {
  disk: string;
  /** The root partition's first sector (a test reads the guest's files from there). */
  rootLba: number;
}

/** The scripts live next to this file in the source tree, and next to dist/images in a build. */
function scriptPath(script: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes('/dist/') ? join(here, '..', '..', 'images', script) : join(here, script);
}

/** Runs a build script (quick when its inputs are unchanged) and reads the directory it prints. */
async function build(script: string, cache: string, runner: CommandRunner): Promise<TestGuest> {
  const { stdout } = await runner.run(['bash', scriptPath(script), cache], { timeoutMs: 600_000 });
  const dir = stdout.trim().split('\n').pop() as string;
  const cmdline = (await readFile(join(dir, 'cmdline'), 'utf8')).trim();
  return { dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img'), cmdline };
}

/** Builds the guest when its inputs changed (about 10 s), else returns the cached one at once. */
export function ensureTestGuest(
  cache = DEFAULT_TEST_GUEST_CACHE,
  runner: CommandRunner = osCommandRunner,
): Promise<TestGuest> {
  return build('build-test-guest.sh', cache, runner);
}

/** Builds the test disk (and the guest it carries) when their inputs changed (about 15 s). */
export async function ensureTestDisk(
  cache = DEFAULT_TEST_DISK_CACHE,
  runner: CommandRunner = osCommandRunner,
): Promise<TestDisk> {
  const parts = await build('build-test-disk.sh', cache, runner);
  const manifest = JSON.parse(await readFile(join(parts.dir, 'manifest.json'), 'utf8')) as {
    root_lba: number;
  };
  return { ...parts, disk: join(parts.dir, 'disk.qcow2'), rootLba: manifest.root_lba };
}

export interface GuestReport {
  /** The kernel printed its banner. */
  kernelBooted: boolean;
  /** Our init ran. */
  initRan: boolean;
  mac?: string;
  /** The leased address, or 'none'. */
  lease?: string;
  route169?: string;
  instanceId?: string;
  instanceIdError?: string;
  userData?: string;
  userDataError?: string;
  /** Booted from a disk: its root device, and how many boots its marker counted (the overlay's). */
  disk?: { root: string; boots: number };
  done: boolean;
  /** Guest uptime (s) at init, lease and done. */
  uptime: { init?: number; lease?: number; done?: number };
}

/** Parses a serial log; partial logs give partial reports. */
export function parseGuestLog(log: string): GuestReport {
  const r: GuestReport = {
    kernelBooted: /Linux version \d/.test(log),
    initRan: false,
    done: false,
    uptime: {},
  };
  const lines = log.split(/\r?\n/);
  // The log is read while virtlogd writes it: a last line without its newline
  // may be cut short (an instance-id read as "i-cfb5b1"), so it waits for the next read.
  lines.pop();
  let inUserData: string[] | undefined;
  for (const line of lines) {
    const m = line.match(/^BERTH-GUEST ([^\s=]+)(?:=(\S*))?(?: uptime=([\d.]+))?/);
    if (inUserData && !(m && m[1] === 'user-data-end')) {
      inUserData.push(line);
      continue;
    }
    if (!m) continue;
    const [, key, value, up] = m;
    const uptime = up !== undefined ? Number(up) : undefined;
    switch (key) {
      case 'init':
        r.initRan = true;
        r.uptime.init = Number(line.match(/uptime=([\d.]+)/)?.[1]);
        break;
      case 'mac':
        r.mac = value;
        break;
      case 'lease':
        r.lease = value;
        if (uptime !== undefined) r.uptime.lease = uptime;
        break;
      case 'route169':
        r.route169 = value;
        break;
      case 'instance-id':
        r.instanceId = value;
        break;
      case 'instance-id-error':
        r.instanceIdError = value;
        break;
      case 'user-data-begin':
        inUserData = [];
        break;
      case 'user-data-end':
        // init adds a newline after the body so the marker starts a line.
        r.userData = (inUserData ?? []).join('\n').replace(/\n$/, '');
        inUserData = undefined;
        break;
      case 'user-data-error':
        r.userDataError = value;
        break;
      case 'disk':
        r.disk = { root: value ?? '', boots: Number(line.match(/ boots=(\d+)/)?.[1]) };
        break;
      case 'done':
        r.done = true;
        r.uptime.done = Number(line.match(/uptime=([\d.]+)/)?.[1]);
        break;
    }
  }
  return r;
}
