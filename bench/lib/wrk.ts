// wrk from inside a guest namespace, with its figures parsed. Two modes:
// saturation (every connection sends its next request as soon as the last is
// answered: throughput, and latency that is mostly queueing) and paced (each
// connection waits `pauseMs` after every answer, so the offered load stays
// below capacity and latency shows the server, not the queue in front of it).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sh } from './proc.js';

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

export interface WrkRun {
  netns: string;
  url: string;
  connections: number;
  seconds: number;
  headers?: string[];
  /** Paced mode: a Lua script (from pacingScript) that waits between requests. */
  script?: string;
}

/** "812.00us" | "3.41ms" | "1.02s" -> ms */
function ms(text: string | undefined): number {
  if (!text) return Number.NaN;
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

/** Writes wrk's Lua hook that makes each connection wait pauseMs after every answer. */
export function pacingScript(dir: string, pauseMs: number): string {
  const file = join(dir, `pace-${pauseMs}.lua`);
  writeFileSync(file, `function delay()\n  return ${pauseMs}\nend\n`);
  return file;
}

export function wrk(run: WrkRun): WrkResult {
  const out = sh('ip', [
    'netns',
    'exec',
    run.netns,
    'wrk',
    '-t1',
    `-c${run.connections}`,
    `-d${run.seconds}s`,
    '--latency',
    ...(run.script ? ['-s', run.script] : []),
    ...(run.headers ?? []).flatMap((h) => ['-H', h]),
    run.url,
  ]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(out)?.[1]);
  const p99 = ms(/\s99%\s+(\S+)/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps, p50, p99, errors };
}
