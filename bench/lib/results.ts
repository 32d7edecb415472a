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

/** One bar of issue #8 and how this run measured against it. */
export interface Bar {
  /** What is measured: "MAC + IP allocations per second, 100k". */
  figure: string;
  /** The bar as text: "≥ 20000/s". */
  bar: string;
  /** The measured figure as text: "31250/s". */
  measured: string;
  pass: boolean;
}

export function barAtLeast(figure: string, value: number, min: number, unit = '', digits = 0): Bar {
  const f = (x: number) => `${x.toFixed(digits)}${unit}`;
  return { figure, bar: `≥ ${f(min)}`, measured: f(value), pass: value >= min };
}

export function barAtMost(figure: string, value: number, max: number, unit = '', digits = 0): Bar {
  const f = (x: number) => `${x.toFixed(digits)}${unit}`;
  return { figure, bar: `≤ ${f(max)}`, measured: f(value), pass: value <= max };
}

/**
 * Replaces (or appends) the section named `name` in bench/RESULTS.md. Bars,
 * when given, ride along in an HTML comment so `npm run bench` can gather
 * every section's bars into its summary.
 */
export function updateResults(name: string, section: string, bars?: Bar[]): void {
  let text = '';
  try {
    text = readFileSync(RESULTS, 'utf8');
  } catch {
    text = '# Benchmark results\n';
  }
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  // JSON has no ">" outside strings; escaping it inside keeps "-->" out of the comment.
  const barsLine = bars ? `\n<!-- bars ${JSON.stringify(bars).replace(/>/g, '\\u003e')} -->` : '';
  const block = `${start}\n${section.trimEnd()}${barsLine}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  // A function, so "$" in the section (nginx's $remote_addr) is never a replacement pattern.
  text = re.test(text) ? text.replace(re, () => block) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(RESULTS, text);
}

export interface Section {
  name: string;
  /** The whole block, markers included. */
  block: string;
  /** undefined when the section carries no bars comment. */
  bars: Bar[] | undefined;
}

/** The sections of bench/RESULTS.md in file order. */
export function readSections(): Section[] {
  let text = '';
  try {
    text = readFileSync(RESULTS, 'utf8');
  } catch {
    return [];
  }
  const out: Section[] = [];
  const re = /<!-- bench:([\w-]+):start -->[\s\S]*?<!-- bench:\1:end -->/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const json = /<!-- bars (.*) -->/.exec(m[0])?.[1];
    out.push({ name: m[1] as string, block: m[0], bars: json ? (JSON.parse(json) as Bar[]) : undefined });
  }
  return out;
}

/** Rewrites bench/RESULTS.md as the title, `intro`, then the sections named in `order`, then any others. */
export function orderResults(intro: string, order: string[]): void {
  const sections = readSections();
  const rank = (name: string) => (order.includes(name) ? order.indexOf(name) : order.length);
  const sorted = [...sections].sort((a, b) => rank(a.name) - rank(b.name));
  writeFileSync(
    RESULTS,
    `# Benchmark results\n\n${intro.trim()}\n\n${sorted.map((s) => s.block).join('\n\n')}\n`,
  );
}
