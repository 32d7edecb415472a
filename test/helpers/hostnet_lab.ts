// A berthd with its own prefix, driven the way an operator would: berthctl for
// networks and instances, `berthctl instance exec` inside the netns guests.
// Shared by the hostnet acceptance tests (test/netns/hostnet-*.test.ts).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Test } from 'tap';
import type { Instance, Network } from '../../agent/api/types.js';
import { BERTHCTL, type RunningBerthd, removePrefixed, startBerthd, uniquePrefix } from './berthd.js';

const execFileP = promisify(execFile);

/** Debian's python3 carries scapy; the pyenv shim first on PATH does not. */
export const PYTHON = '/usr/bin/python3';
export const FRAMES = fileURLToPath(new URL('./guard_frames.py', import.meta.url));

export type Daemon = RunningBerthd & { prefix: string };

export interface Guest {
  name: string;
  id: string;
  mac: string;
  ip: string;
  port: string;
  netns: string;
  network: string;
}

export interface CtlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a host command (argv, no shell); rejects with its stderr on failure. */
export async function sh(cmd: string, args: string[], timeout = 30_000): Promise<string> {
  try {
    return (await execFileP(cmd, args, { encoding: 'utf8', timeout })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

/**
 * Starts berthd with a fresh prefix. removePrefixed is registered before berthd
 * starts, and tap runs teardowns last-registered-first, so it runs after berthd is gone.
 */
export async function startLab(
  t: Test,
  opts: { prefix?: string; stateDir?: string; socket?: string; config?: string; wrap?: string[] } = {},
): Promise<Lab> {
  const prefix = opts.prefix ?? uniquePrefix();
  if (!opts.prefix) t.teardown(() => removePrefixed(prefix));
  const d = await startBerthd(t, {
    prefix,
    ...(opts.config ? { config: opts.config } : {}),
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    ...(opts.socket ? { socket: opts.socket } : {}),
    ...(opts.wrap ? { wrap: opts.wrap } : {}),
  });
  // Runs before startBerthd's SIGKILL teardown: a killed berthd leaves its `ip monitor neigh`
  // children behind, pinning the endpoint namespaces after removePrefixed has unnamed them.
  t.teardown(async () => {
    if (d.proc.exitCode !== null || d.proc.signalCode !== null) return;
    d.proc.kill('SIGTERM');
    await Promise.race([d.exited, new Promise((r) => setTimeout(r, 5000))]);
  });
  return new Lab(d);
}

export class Lab {
  private readonly subnets = new Map<string, string>();

  constructor(readonly d: Daemon) {}

  get prefix(): string {
    return this.d.prefix;
  }

  /**
   * berthctl without tap's processinfo hook, which costs about 0.6 s per process here and
   * which tap's patched spawn puts back into any env it is given; `env -u` drops it after
   * that. berthd itself still runs under the hook.
   */
  ctl(args: string[]): Promise<CtlResult> {
    return new Promise((resolve) => {
      execFile(
        'env',
        ['-u', 'NODE_OPTIONS', process.execPath, BERTHCTL, '--socket', this.d.socket, ...args],
        { encoding: 'utf8', maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /** berthctl ... --json that must succeed; the parsed output. */
  async json<T>(args: string[]): Promise<T> {
    const r = await this.ctl([...args, '--json']);
    if (r.code !== 0) throw new Error(`berthctl ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  async network(name: string, subnet: string): Promise<Network> {
    const n = await this.json<Network>(['network', 'create', name, '--subnet', subnet]);
    this.subnets.set(name, n.subnet);
    return n;
  }

  show(name: string): Promise<Network> {
    return this.json<Network>(['network', 'show', name]);
  }

  /** A netns instance with its assigned IP configured by hand (no DHCP yet). */
  async guest(name: string, network: string, opts: { address?: boolean } = {}): Promise<Guest> {
    const i = await this.json<Instance>([
      'instance',
      'create',
      name,
      '--network',
      network,
      '--runtime',
      'netns',
    ]);
    const nic = i.nics[0];
    if (!nic || !i.netns) throw new Error(`instance ${name} has no NIC or netns: ${JSON.stringify(i)}`);
    const g = { name, id: i.id, mac: nic.mac, ip: nic.ip, port: nic.port, netns: i.netns, network };
    if (opts.address !== false) {
      const subnet = this.subnets.get(network) ?? (await this.show(network)).subnet;
      const len = subnet.split('/')[1];
      await this.execOk(name, ['ip', 'addr', 'add', `${g.ip}/${len}`, 'dev', 'eth0']);
    }
    return g;
  }

  exec(name: string, argv: string[]): Promise<CtlResult> {
    return this.ctl(['instance', 'exec', name, '--', ...argv]);
  }

  async execOk(name: string, argv: string[]): Promise<string> {
    const r = await this.exec(name, argv);
    if (r.code !== 0)
      throw new Error(`instance exec ${name} ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  /** True when ping ran and its one echo went unanswered (not when ping could not even send). */
  async noPing(from: string, ip: string, opts: { source?: string } = {}): Promise<boolean> {
    const src = opts.source ? ['-I', opts.source] : [];
    const r = await this.exec(from, ['ping', '-n', '-q', '-c', '1', '-W', '1', ...src, ip]);
    return r.code !== 0 && /1 packets transmitted, 0 received/.test(r.stdout);
  }

  /** True when every one of `count` echoes is answered (from the guest's own IP or a given source). */
  async ping(from: string, ip: string, opts: { count?: number; source?: string } = {}): Promise<boolean> {
    const count = String(opts.count ?? 2);
    const src = opts.source ? ['-I', opts.source] : [];
    const r = await this.exec(from, ['ping', '-n', '-q', '-c', count, '-i', '0.2', '-W', '1', ...src, ip]);
    return r.code === 0 && new RegExp(`${count} received`).test(r.stdout);
  }

  /** Packets dropped by the guard for one port and reason, as `network show --json` reports them. */
  async drops(network: string, port: string, reason: string): Promise<number> {
    const n = await this.show(network);
    return n.guard_drops.find((d) => d.port === port && d.reason === reason)?.packets ?? 0;
  }

  resolve(network: string, ip: string): Promise<ResolveAnswer> {
    return this.d.client.request<ResolveAnswer>('GET', `/networks/${network}/resolve?ip=${ip}`);
  }

  guardTable(): string {
    return `${this.prefix}_guard`;
  }
}

export interface ResolveAnswer {
  ok: boolean;
  mac?: string;
  port?: string;
  instance?: string;
  reason?: string;
}

/** The MAC a netns's neighbour table holds for ip, if any (read from the host, not through berthd). */
export async function neighbourMac(netns: string, ip: string): Promise<string | undefined> {
  const out = await sh('ip', ['-n', netns, '-j', 'neigh', 'show', ip]);
  const entries = JSON.parse(out || '[]') as { lladdr?: string }[];
  return entries[0]?.lladdr;
}

/** Where the bridge learned mac, if it did (non-permanent entries only). */
export async function fdbPort(bridge: string, mac: string): Promise<string | undefined> {
  const out = await sh('bridge', ['-j', 'fdb', 'show', 'br', bridge]);
  const entries = JSON.parse(out || '[]') as {
    mac: string;
    ifname?: string;
    state?: string;
    flags?: string[];
  }[];
  return entries.find((e) => e.mac === mac && e.state !== 'permanent' && !e.flags?.includes('self'))?.ifname;
}

export async function ifindex(ifname: string): Promise<number> {
  const out = JSON.parse(await sh('ip', ['-j', 'link', 'show', 'dev', ifname])) as { ifindex: number }[];
  return out[0]?.ifindex as number;
}

/**
 * A namespace berthd does not know, plugged into a bridge through a veth whose
 * root end is not a berth port name (so no guard rule applies to it): the
 * stand-in for whatever could sit on a bridge behind berth's back.
 */
export async function rogue(
  t: Test,
  prefix: string,
  tag: string,
  bridge: string,
  opts: { mac: string; ip: string; prefixLen: number },
): Promise<{ netns: string; port: string }> {
  const netns = `${prefix}-x-${tag}`;
  const port = `${prefix}x${tag}`;
  if (port.length > 15) throw new Error(`rogue port name ${port} is longer than 15 characters`);
  t.teardown(async () => {
    await sh('ip', ['netns', 'delete', netns]).catch(() => undefined);
    await sh('ip', ['link', 'delete', port]).catch(() => undefined);
  });
  await sh('ip', ['netns', 'add', netns]);
  await sh('ip', ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  await sh('ip', ['link', 'set', port, 'master', bridge, 'up']);
  await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'address', opts.mac, 'up']);
  await sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['-n', netns, 'addr', 'add', `${opts.ip}/${opts.prefixLen}`, 'dev', 'eth0']);
  return { netns, port };
}

export async function inNetns(netns: string, argv: string[]): Promise<{ code: number; stdout: string }> {
  try {
    return { code: 0, stdout: await sh('ip', ['netns', 'exec', netns, ...argv]) };
  } catch (err) {
    return { code: 1, stdout: (err as Error).message };
  }
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}
