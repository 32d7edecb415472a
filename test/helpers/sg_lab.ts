// Security-group traffic from berthd's netns guests: TCP echo servers, probes
// and held connections (sg_flow.py), and guests created with a role and groups.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { type Lab, PYTHON } from './hostnet_lab.js';

export const SG_FLOW = fileURLToPath(new URL('./sg_flow.py', import.meta.url));

export interface SgGuest {
  name: string;
  id: string;
  ip: string;
  mac: string;
  port: string;
  netns: string;
}

/** A netns guest with `--role` / `--secgroup` and its address configured by hand. */
export async function sgGuest(lab: Lab, name: string, network: string, extra: string[]): Promise<SgGuest> {
  const i = await lab.json<Instance>(['instance', 'create', name, '--network', network, ...extra]);
  const nic = i.nics[0];
  if (!nic || !i.netns) throw new Error(`${name} has no NIC or netns`);
  const len = (await lab.show(network)).subnet.split('/')[1];
  await lab.execOk(name, ['ip', 'addr', 'add', `${nic.ip}/${len}`, 'dev', 'eth0']);
  return { name, id: i.id, ip: nic.ip, mac: nic.mac, port: nic.port, netns: i.netns };
}

/** A running sg_flow.py: its output lines so far. */
export interface Flow {
  lines: string[];
  child: ChildProcess;
}

/** Starts sg_flow.py in a namespace; resolves once it printed `until`; killed at teardown. */
export function sgFlow(t: Test, netns: string, args: string[], until: string): Promise<Flow> {
  const child = spawn('ip', ['netns', 'exec', netns, PYTHON, SG_FLOW, ...args]);
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      lines.push(...d.split('\n').filter((l) => l !== ''));
      if (lines.some((l) => l.startsWith(until))) resolve({ lines, child });
    });
    child.on('exit', (code) =>
      reject(new Error(`sg_flow ${args.join(' ')} exited ${code}: ${lines.join('|')}`)),
    );
  });
}

/** True when a TCP connection from the guest to ip:port echoes within a second. */
export async function sgProbe(lab: Lab, from: string, ip: string, port: number): Promise<boolean> {
  return (await lab.exec(from, [PYTHON, SG_FLOW, 'probe', ip, String(port), '1'])).code === 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for a held flow to print `lost`; false when it still flows after `ms`. */
export async function lostWithin(flow: Flow, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50))
    if (flow.lines.includes('lost')) return true;
  return flow.lines.includes('lost');
}

/** `secgroup rule add GROUP --proto tcp --port PORT --from SOURCE`; the rule as stored. */
export function addTcpRule(lab: Lab, group: string, port: number, from: string): Promise<{ id: string }> {
  return lab.json<{ id: string }>([
    'secgroup',
    'rule',
    'add',
    group,
    '--proto',
    'tcp',
    '--port',
    String(port),
    '--from',
    from,
  ]);
}
