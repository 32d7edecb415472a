// What the edge rows share: a foreign namespace plugged into a network's
// bridge by hand (a port that is neither a guest port nor the endpoint), the
// scapy frames it sends, a capture, the endpoint's MAC and the network's edge
// drop counters as `network show` reports them.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { EDGE_REASONS } from '../../hostnet/guard/reasons.js';
import { Names } from '../../hostnet/names.js';
import { inNetns, type Lab, PYTHON, rogue, sh } from '../helpers/hostnet_lab.js';

const EDGE_FRAMES = fileURLToPath(new URL('./edge_frames.py', import.meta.url));

export interface Foreign {
  netns: string;
  port: string;
  mac: string;
  ip: string;
}

/** A namespace on the network's bridge through a port named like no berth port: the foreign class. */
export async function foreign(
  t: Test,
  lab: Lab,
  network: string,
  tag: string,
  host: number,
): Promise<Foreign> {
  const n = await lab.show(network);
  const mac = `02:5e:0f:00:00:${host.toString(16).padStart(2, '0')}`;
  const ip = n.subnet.replace(/0\/24$/, String(host));
  const r = await rogue(t, lab.prefix, tag, n.bridge, { mac, ip, prefixLen: 24 });
  return { ...r, mac, ip };
}

/** Runs edge_frames.py in a namespace; resolves with how many frames it sent. */
export async function frames(netns: string, args: string[]): Promise<number> {
  const r = await inNetns(netns, [PYTHON, EDGE_FRAMES, args[0] as string, 'eth0', ...args.slice(1)]);
  if (r.code !== 0) throw new Error(`edge_frames.py ${args.join(' ')} in ${netns}: ${r.stdout}`);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { sent: number }).sent;
}

export async function endpointMac(lab: Lab, network: string): Promise<string> {
  const n = await lab.show(network);
  const out = JSON.parse(await sh('ip', ['-n', n.endpoint, '-j', 'link', 'show', 'ep0'])) as {
    address: string;
  }[];
  return out[0]?.address as string;
}

/** The network's edge drop counters (reported under its endpoint port), by reason. */
export async function edgeDrops(lab: Lab, network: string): Promise<Record<string, number>> {
  const n = await lab.show(network);
  const endpoint = new Names(lab.prefix).endpointVeth(network);
  return Object.fromEntries(
    EDGE_REASONS.map((r) => [
      r,
      n.guard_drops.find((d) => d.port === endpoint && d.reason === r)?.packets ?? 0,
    ]),
  );
}

/** The counters that rose between two readings. */
export function rose(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([r, n]) => [r, n - (before[r] ?? 0)] as const)
      .filter(([, n]) => n > 0),
  );
}

/** A process in a namespace for the length of a row (a rogue server, a capture). */
export function background(t: Test, netns: string, argv: string[]): ChildProcess & { out: () => string } {
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  return Object.assign(child, { out: () => out });
}

/** tcpdump in a namespace around `action`: the lines it printed. */
export async function capture(
  t: Test,
  netns: string,
  filter: string,
  action: () => Promise<unknown>,
): Promise<string[]> {
  const child = background(t, netns, ['tcpdump', '-i', 'eth0', '-n', '-e', '-l', '-U', filter]);
  for (let i = 0; i < 100 && !child.out().includes('listening on'); i++) {
    if (child.exitCode !== null) throw new Error(`tcpdump in ${netns} exited: ${child.out()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await action();
  await new Promise((r) => setTimeout(r, 400));
  child.kill('SIGINT');
  if (child.exitCode === null) await once(child, 'exit');
  return child
    .out()
    .split('\n')
    .filter((l) => /^\d\d:\d\d/.test(l));
}
