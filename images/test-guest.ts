// The tiny test guest (images/build-test-guest.sh) from TypeScript: build it
// if needed, and read its serial console's BERTH-GUEST markers.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CommandRunner, osCommandRunner } from '../hostnet/command.js';

export const DEFAULT_TEST_GUEST_CACHE = '/var/cache/berth/test-guest';

export interface TestGuest {
  dir: string;
  kernel: string;
  initrd: string;
  cmdline: string;
}

/** The script lives next to this file in the source tree, and next to dist/images in a build. */
function scriptPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes('/dist/')
    ? join(here, '..', '..', 'images', 'build-test-guest.sh')
    : join(here, 'build-test-guest.sh');
}

/** Builds the guest when its inputs changed (about 10 s), else returns the cached one at once. */
export async function ensureTestGuest(
  cache = DEFAULT_TEST_GUEST_CACHE,
  runner: CommandRunner = osCommandRunner,
): Promise<TestGuest> {
  const { stdout } = await runner.run(['bash', scriptPath(), cache], { timeoutMs: 600_000 });
  const dir = stdout.trim().split('\n').pop() as string;
  const cmdline = (await readFile(join(dir, 'cmdline'), 'utf8')).trim();
  return { dir, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img'), cmdline };
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
      case 'done':
        r.done = true;
        r.uptime.done = Number(line.match(/uptime=([\d.]+)/)?.[1]);
        break;
    }
  }
  return r;
}
