// Starts the built berthd (dist/) as a real child process for integration tests.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { BerthClient } from '../../agent/client/client.js';
import { NETNS_ETC_ROOT } from '../../hostnet/links/netns-etc.js';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const BERTHD = join(ROOT, 'dist/agent/daemon/main.js');
export const BERTHCTL = join(ROOT, 'dist/agent/cli/main.js');

export interface RunningBerthd {
  proc: ChildProcess;
  client: BerthClient;
  stateDir: string;
  socket: string;
  stderr(): string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
  exited: Promise<number | null>;
}

export async function tempDir(t: Test, tag = 'berth'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${tag}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function spawnBerthd(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  /** A command that execs berthd (`nsenter --net=…`), keeping its pid. */
  wrap: string[] = [],
): { proc: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const [file, ...rest] = [...wrap, process.execPath, BERTHD, ...args] as [string, ...string[]];
  const proc = spawn(file, rest, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  proc.stdout?.resume();
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, stderr: () => err, exited };
}

/** A prefix no other test uses, so parallel berthds never touch each other's objects. */
export function uniquePrefix(): string {
  return `z${randomBytes(2).toString('hex').slice(0, 3)}`;
}

/** Removes every namespace, link and nft table carrying prefix (test cleanup). */
export function removePrefixed(prefix: string): void {
  const sh = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return '';
    }
  };
  for (const line of sh('ip', ['netns', 'list']).split('\n')) {
    const ns = line.split(' ')[0];
    if (!ns?.startsWith(`${prefix}-`)) continue;
    // Endpoints outlive berthd by design; a test's must not outlive the test.
    for (const pid of sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) sh('kill', ['-9', pid]);
    sh('ip', ['netns', 'delete', ns]);
  }
  for (const link of JSON.parse(sh('ip', ['-j', 'link', 'show']) || '[]') as { ifname: string }[]) {
    if (link.ifname.startsWith(prefix)) sh('ip', ['link', 'delete', link.ifname]);
  }
  sh('nft', ['delete', 'table', 'bridge', `${prefix}_guard`]);
  sh('nft', ['delete', 'table', 'bridge', `${prefix}_sg`]);
  sh('nft', ['delete', 'table', 'inet', `${prefix}_sg`]);
  // The namespaces' own resolver folders (hostnet/links/netns-etc.ts).
  for (const dir of existsSync(NETNS_ETC_ROOT) ? readdirSync(NETNS_ETC_ROOT) : []) {
    if (dir.startsWith(`${prefix}-`)) rmSync(join(NETNS_ETC_ROOT, dir), { recursive: true, force: true });
  }
}

/** A config file for a test berthd: its own prefix and, unless given, no networks. */
export async function writeTestConfig(
  dir: string,
  prefix: string,
  extra = 'networks: []\n',
): Promise<string> {
  const file = join(dir, `berthd-${prefix}.yaml`);
  await writeFile(file, `name_prefix: ${prefix}\n${extra}`);
  return file;
}

/** Starts berthd and waits until its admin API answers. */
export async function startBerthd(
  t: Test,
  opts: {
    stateDir?: string;
    socket?: string;
    args?: string[];
    env?: NodeJS.ProcessEnv;
    prefix?: string;
    config?: string;
    /** Runs berthd under this command (which must exec it): `nsenter --net=/run/netns/X`. */
    wrap?: string[];
  } = {},
): Promise<RunningBerthd & { prefix: string }> {
  const base = await tempDir(t, 'berthd');
  const stateDir = opts.stateDir ?? join(base, 'state');
  const socket = opts.socket ?? join(base, 'berthd.sock');
  const prefix = opts.prefix ?? uniquePrefix();
  const args = [...(opts.args ?? [])];
  if (!args.includes('--config')) args.push('--config', await writeTestConfig(base, prefix, opts.config));
  const { proc, stderr, exited } = spawnBerthd(
    ['--state-dir', stateDir, '--socket', socket, ...args],
    opts.env,
    opts.wrap,
  );
  let gone = false;
  exited.then(() => {
    gone = true;
  });
  t.teardown(async () => {
    if (!gone) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  // A prefix made here is no caller's to clean up: even with no networks,
  // berthd leaves its (empty) guard table behind.
  if (opts.prefix === undefined) t.teardown(() => removePrefixed(prefix));
  const client = new BerthClient(socket, 5000);
  // Generous: a loaded 2-core CI machine running QEMU guests beside this can be slow to start Node.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) throw new Error(`berthd exited before it was ready: ${stderr()}`);
    try {
      await client.status();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`berthd did not answer within 60 s: ${stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    prefix,
    proc,
    client,
    stateDir,
    socket,
    stderr,
    exited,
    stop: async () => {
      proc.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs the built berthctl; resolves with exit code and output. */
export function berthctl(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [BERTHCTL, ...args], {
      env: { ...process.env, ...env },
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
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
