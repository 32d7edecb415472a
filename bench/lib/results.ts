// Shared by every benchmark: small statistics and the one writer of
// bench/RESULTS.md. Each benchmark owns one section between HTML comment
// markers, so benchmarks can run alone or together without clobbering others.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';

export const RESULTS = new URL('../RESULTS.md', import.meta.url).pathname;

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100); NaN for no samples. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  if (p === 50 && s.length % 2 === 0) {
    const m = s.length >> 1;
    return ((s[m - 1] as number) + (s[m] as number)) / 2;
  }
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank] as number;
}

/** "1.03×": a ratio formatted the same way in every table. */
export function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}×`;
}

/** One line naming the machine, date, commit and load, for every section. */
export function provenance(): string {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    // not a git checkout: leave "unknown"
  }
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  return `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC at commit ${commit} on ${cpus().length} × ${cpu}, ${process.version}; load average ${loadavg()[0]?.toFixed(2)}.`;
}

/** Replaces (or appends) the section named `name` in bench/RESULTS.md. */
export function updateResults(name: string, section: string): void {
  let text = '';
  try {
    text = readFileSync(RESULTS, 'utf8');
  } catch {
    text = '# Benchmark results\n';
  }
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const block = `${start}\n${section.trimEnd()}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  text = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(RESULTS, text);
}
