// Runs the built berthctl as another uid and gid through setpriv (util-linux),
// so the admin socket's mode and berthd's peer lookup meet a real other user.
// The child's pid is returned: setpriv execs node, so it is the pid berthd sees.
import { spawn } from 'node:child_process';
import { BERTHCTL } from './berthd.js';

export interface AsUser {
  uid: number;
  gid: number;
  /** Supplementary groups; none when empty. */
  groups: number[];
}

export const NOBODY = 65534;

export interface CtlRun {
  pid: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** berthctl args as `who` (or as root when who is undefined), with its pid. */
export function berthctlAs(
  who: AsUser | undefined,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CtlRun> {
  // env -u: tap's patched spawn puts its NODE_OPTIONS back into any env (see Lab.ctl); env execs, the pid stays.
  const ctl = ['env', '-u', 'NODE_OPTIONS', process.execPath, BERTHCTL, ...args];
  const argv = who
    ? [
        'setpriv',
        `--reuid=${who.uid}`,
        `--regid=${who.gid}`,
        who.groups.length > 0 ? `--groups=${who.groups.join(',')}` : '--clear-groups',
        '--',
        ...ctl,
      ]
    : ctl;
  return new Promise((resolve, reject) => {
    // Only PATH: the test runner's NODE_OPTIONS would make the child write tap's files as that user.
    const proc = spawn(argv[0] as string, argv.slice(1), {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    proc.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    proc.on('error', reject);
    proc.on('exit', (code) => resolve({ pid: proc.pid as number, code, stdout, stderr }));
  });
}
