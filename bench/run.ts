// `npm run bench`: every benchmark in turn, each in its own process (the
// same command as `npm run bench:<name>`; the build ran once before this),
// then a summary of every bar of issue #8 at the top of bench/RESULTS.md:
// the bar, the figure measured in this run, met or not. A benchmark that
// fails to run is reported as such and its old section is marked stale; a
// bar missed is a result, reported as missed.
//
// BENCH_ONLY=alloc,storm runs a subset (the others' sections stay as they
// were, and so does their part of the summary's provenance).
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Bar, orderResults, provenance, readSections, updateResults } from './lib/results.js';

interface Bench {
  name: string;
  what: string;
}

// Cheap ones first; the two long netns ones and the peer comparisons after.
const BENCHES: Bench[] = [
  { name: 'alloc', what: 'MAC + IP allocation' },
  { name: 'resolve', what: 'identity resolution, 1000 ports' },
  { name: 'reconcile', what: 'reconcile at start, 200 instances' },
  { name: 'guard-heal', what: 'guard restored after a flush or delete, 200 ports' },
  { name: 'rss', what: 'berthd memory, 1000 instances' },
  { name: 'storm', what: 'boot storm vs dnsmasq + nginx' },
  { name: 'dhcp', what: 'DHCP vs dnsmasq' },
  { name: 'metadata', what: 'metadata vs fastify and nginx' },
  { name: 'vms', what: '4 libvirt guests at once' },
  { name: 'cluster', what: 'three hosts on etcd vs one host' },
  { name: 'secgroups', what: 'security groups: apply and forwarding, 1000 ports × 20 groups' },
];

interface Outcome {
  bench: Bench;
  code: number | null;
  seconds: number;
  bars: Bar[] | undefined;
}

function runOne(b: Bench): Outcome {
  const before = readSections().find((s) => s.name === b.name)?.block;
  const script = fileURLToPath(new URL(`./${b.name}.ts`, import.meta.url));
  console.log(`\n=== bench:${b.name} (${b.what}) ===`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [...process.execArgv, script], { stdio: 'inherit' });
  const seconds = (Date.now() - t0) / 1000;
  const after = readSections().find((s) => s.name === b.name);
  const fresh = r.status === 0 && after !== undefined && after.block !== before;
  if (!fresh && after) {
    // Figures from an earlier run must not pass for this run's: mark the section, drop its bars.
    const body = after.block
      .split('\n')
      .slice(1, -1)
      .filter((l) => !l.startsWith('<!-- bars ') && !l.startsWith('> **Stale'));
    updateResults(
      b.name,
      [
        `> **Stale:** \`bench:${b.name}\` failed in the last \`npm run bench\` (exit ${r.status ?? r.signal}); the figures below are from an earlier run.`,
        '',
        ...body,
      ].join('\n'),
    );
  }
  return { bench: b, code: r.status, seconds, bars: fresh ? after?.bars : undefined };
}

function summary(outcomes: Outcome[], totalS: number): string {
  const rows: string[] = [];
  let met = 0;
  let all = 0;
  for (const o of outcomes) {
    const name = `${o.bench.name} (${o.seconds.toFixed(0)} s)`;
    if (o.code !== 0) {
      rows.push(`| ${name} | did not finish (exit ${o.code}) | | | **NOT measured** |`);
      all++;
      continue;
    }
    if (!o.bars) {
      rows.push(`| ${name} | its section carries no bars; see it | | | |`);
      continue;
    }
    for (const bar of o.bars) {
      all++;
      if (bar.pass) met++;
      rows.push(
        `| ${name} | ${bar.figure} | ${bar.bar} | ${bar.measured} | ${bar.pass ? 'met' : '**NOT met**'} |`,
      );
    }
  }
  return [
    '## Summary: the bars of issue #8 (`npm run bench`)',
    '',
    `${met} of ${all} bars met. All benchmarks ran one after another in ${(totalS / 60).toFixed(1)} min on ${cpus().length} cores; load average ${loadavg()[0]?.toFixed(2)} at the end (other work on the machine was not stopped). Each benchmark's own section below says how it measures.`,
    '',
    '| benchmark | figure | bar | measured | verdict |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

function main(): void {
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
  const chosen = only ? BENCHES.filter((b) => only.includes(b.name)) : BENCHES;
  if (only && chosen.length !== only.length)
    throw new Error(`BENCH_ONLY names unknown benchmarks; known: ${BENCHES.map((b) => b.name).join(', ')}`);
  const t0 = Date.now();
  const outcomes = chosen.map(runOne);
  const totalS = (Date.now() - t0) / 1000;
  updateResults('summary', summary(outcomes, totalS));
  orderResults(
    `Written by \`npm run bench\` (bench/run.ts); each section by its own \`npm run bench:<name>\`. The summary is from the run that wrote it: ${provenance()}`,
    ['summary', ...BENCHES.map((b) => b.name)],
  );
  for (const o of outcomes) console.log(`bench:${o.bench.name}: exit ${o.code}, ${o.seconds.toFixed(0)} s`);
  if (outcomes.some((o) => o.code !== 0)) process.exit(1);
}

main();
