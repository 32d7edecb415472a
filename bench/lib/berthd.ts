// The real berthd (dist/) for benchmarks: its own prefix, state dir and
// socket, started and stopped without a test harness. Logs (JSON lines) are
// kept, so a benchmark can read what berthd says about itself.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Instance } from '../../agent/api/types.js';
import { BerthClient } from '../../agent/client/client.js';
import { removePrefixed, spawnBerthd } from '../../test/helpers/berthd.js';
import { killByCommandLine, pool, sleep } from './proc.js';

export interface BenchBerthd {
  proc: ChildProcess;
  pid: number;
  client: BerthClient;
  stateDir: string;
  socket: string;
  /** ms from spawn until the admin API answered. */
  readyMs: number;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  stop(): Promise<number | null>;
}

export interface BenchBerthdOptions {
  prefix: string;
  /** A directory of the benchmark's own; the state dir and socket go under it. */
  dir: string;
  /** YAML for `networks:` (a flow sequence). */
  networks: string;
  logLevel?: string;
  /** berthd's metrics listener; off unless given, so berthds never fight over a port. */
  metrics?: string;
  /** How long to wait for the admin API; a cold start with 1000 guests to build is slow. */
  readyTimeoutS?: number;
  /** YAML for `metadata:` (a flow mapping); the embedded default when absent. */
  metadata?: string;
  /** More top-level YAML (a `cluster:` block, a host_id), appended as it is. */
  extra?: string;
}

/** Every berthd a benchmark started and has not stopped yet. */
const live = new Set<BenchBerthd>();

/** For SIGINT handlers: stops every berthd still running (its endpoint children go with it). */
export async function stopBenchBerthds(): Promise<void> {
  await Promise.all([...live].map((d) => d.stop()));
}

/**
 * The end of every berthd benchmark: berthds stopped, their endpoints (which
 * outlive berthd by design) ended, every host object of the prefixes removed,
 * the directory deleted.
 */
export async function cleanupBench(dir: string, prefixes: string[]): Promise<void> {
  await stopBenchBerthds();
  killByCommandLine(dir);
  for (const p of prefixes) removePrefixed(p);
  rmSync(dir, { recursive: true, force: true });
}

/** Writes berthd's config under o.dir; the state dir is o.dir/state. */
export function writeBenchConfig(o: BenchBerthdOptions): { config: string; stateDir: string } {
  mkdirSync(o.dir, { recursive: true });
  const config = join(o.dir, 'berthd.yaml');
  writeFileSync(
    config,
    `name_prefix: ${o.prefix}\nlog_level: ${o.logLevel ?? 'warn'}\nmetrics: {listen: "${o.metrics ?? ''}"}\nnetworks: ${o.networks}\n${o.metadata ? `metadata: ${o.metadata}\n` : ''}${o.extra ?? ''}`,
  );
  return { config, stateDir: join(o.dir, 'state') };
}

/** Starts berthd and waits until its admin API answers (readyTimeoutS, default 120 s). */
export async function startBenchBerthd(o: BenchBerthdOptions): Promise<BenchBerthd> {
  const { config, stateDir } = writeBenchConfig(o);
  const socket = join(o.dir, 'berthd.sock');
  const start = process.hrtime.bigint();
  const { proc, stderr, exited } = spawnBerthd([
    '--config',
    config,
    '--state-dir',
    stateDir,
    '--socket',
    socket,
  ]);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  // Creates queue behind each other in berthd (one host change at a time), so
  // the last of a few hundred waits long for its turn.
  const client = new BerthClient(socket, 600_000);
  const timeoutS = o.readyTimeoutS ?? 120;
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    if (gone) throw new Error(`berthd exited before it was ready: ${stderr().slice(-2000)}`);
    try {
      await client.status();
      break;
    } catch {
      if (Date.now() > deadline) {
        proc.kill('SIGTERM');
        throw new Error(`berthd did not answer within ${timeoutS} s: ${stderr().slice(-2000)}`);
      }
      await sleep(25);
    }
  }
  const readyMs = Number(process.hrtime.bigint() - start) / 1e6;
  const d: BenchBerthd = {
    proc,
    pid: proc.pid as number,
    client,
    stateDir,
    socket,
    readyMs,
    logs: () =>
      stderr()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
    stop: async () => {
      live.delete(d);
      if (gone) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  live.add(d);
  return d;
}

/** Creates count netns instances named `${stem}${i}`, `inFlight` requests at a time. */
export async function createNetnsInstances(
  d: BenchBerthd,
  network: string,
  count: number,
  opts: { stem?: string; inFlight?: number; first?: number } = {},
): Promise<Instance[]> {
  const first = opts.first ?? 0;
  const names = Array.from({ length: count }, (_, i) => `${opts.stem ?? 'g'}${first + i}`);
  return pool(names, opts.inFlight ?? 8, (name) =>
    d.client.createInstance({ name, network, runtime: 'netns' }),
  );
}
