// Processes for benchmarks: run a command and time it, stop what was started,
// read a process's memory. Argv arrays only; a shell appears only where the
// benchmark is itself a shell script run inside a guest.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs argv synchronously; throws with stderr when it fails. For setup, never inside a timing. */
export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, {
    encoding: 'utf8',
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
    ...(input === undefined ? {} : { input }),
  });
}

export interface Timed {
  code: number;
  stdout: string;
  /** From spawn to exit. */
  ms: number;
}

/** Runs argv asynchronously and times it; stdout is kept (small outputs only). */
export function timed(argv: string[]): Promise<Timed> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const p = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (c: string) => {
      stdout += c;
    });
    p.on('error', () => resolve({ code: 127, stdout, ms: Number(process.hrtime.bigint() - start) / 1e6 }));
    p.on('close', (code) =>
      resolve({ code: code ?? 1, stdout, ms: Number(process.hrtime.bigint() - start) / 1e6 }),
    );
  });
}

/** SIGTERM, then SIGKILL after graceMs; resolves when every process is gone. */
export function stopAll(procs: ChildProcess[], graceMs = 3000): Promise<void> {
  return Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          const timer = setTimeout(() => {
            p.kill('SIGKILL');
          }, graceMs);
          p.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          // A SIGKILLed nginx master leaves its worker behind, so ask first.
          p.kill('SIGTERM');
        }),
    ),
  ).then(() => undefined);
}

/** Resident set size of pid in MiB (VmRSS), or NaN when it is gone. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Every descendant of pid, with its command line (for endpoint and monitor children). */
export function descendants(pid: number): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  const walk = (p: number) => {
    for (const task of safeReaddir(`/proc/${p}/task`)) {
      const kids = safeRead(`/proc/${p}/task/${task}/children`).trim().split(/\s+/).filter(Boolean);
      for (const kid of kids.map(Number)) {
        out.push({ pid: kid, cmd: safeRead(`/proc/${kid}/cmdline`).split('\0').join(' ').trim() });
        walk(kid);
      }
    }
  };
  walk(pid);
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Every process whose command line contains `marker` (a benchmark's own temp dir). */
export function processesWith(marker: string): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const argv = safeRead(`/proc/${entry}/cmdline`).split('\0');
    if (argv.some((arg) => arg.includes(marker)))
      out.push({ pid: Number(entry), cmd: argv.join(' ').trim() });
  }
  return out;
}

/**
 * SIGTERMs every process whose command line contains `marker` (a benchmark's
 * own temp dir): berthd's endpoints outlive it by design, waiting for the
 * next berthd, and a benchmark must not leave them behind. Never a pattern
 * wider than that one directory.
 */
export function killByCommandLine(marker: string): number {
  let killed = 0;
  for (const { pid } of processesWith(marker)) {
    try {
      process.kill(pid, 'SIGTERM');
      killed++;
    } catch {
      // gone already
    }
  }
  return killed;
}

/** Runs fn over items with at most `limit` in flight; results in item order. */
export async function pool<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
