// The forwarding half of bench/secgroups.ts: a client and a server netns on
// one bridge, TCP bulk (64 KiB writes, echoed back) and 1-byte
// request/response through it (test/helpers/sg_flow.py), in three
// configurations, interleaved round by round so a shared host's noise hits
// every configuration alike:
// - plain: bridge-nf-call-iptables=0 and no security-group tables (a bridge
//   without groups, as berth ran before);
// - loaded: the kernel path groups need switched on (br-netfilter mode:
//   bridge-nf-call-iptables=1) and the tables of 1000 guarded ports in 20
//   groups (sg-apply.ts's shape), the server's port not among them;
// - guarded: the same, and the server's port guarded (its rule names a set
//   of 100 members holding the client).
// It must run in a network namespace of its own (bench/secgroups.ts sees to
// it), so the sysctl and the ruleset it changes are its own.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Names } from '../../hostnet/names.js';
import { BRIDGE_NF_CALL_IPTABLES } from '../../hostnet/secgroups/detect.js';
import { NftSecGroupDriver } from '../../hostnet/secgroups/nft-driver.js';
import type { SecGroupState, SgPort } from '../../hostnet/secgroups/state.js';

/** The client's MAC: the guarded port's set binds its address to this MAC on its port. */
const CLIENT_MAC = '02:00:00:02:00:02';
const FLOW = fileURLToPath(new URL('../../test/helpers/sg_flow.py', import.meta.url));

export interface Flow {
  mbit: number;
  rr: number;
}
export interface ForwardRuns {
  mode: string;
  plain: Flow[];
  loaded: Flow[];
  guarded: Flow[];
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const quiet = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' });

function port(p: string, i: number, bridge: string, ifname: string, ip: string, noIcmp?: boolean): SgPort {
  return {
    ifname,
    bridge,
    mac: `02:00:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    ip,
    instance: `i-${i}`,
    endpointPorts: [`${p}e0`],
    rules: [
      { id: 'sr-app', group: 'g0', proto: 'tcp', ports: { from: 5001, to: 5001 }, from: { set: 's_g0' } },
      ...(noIcmp
        ? []
        : [{ id: 'sr-icmp', group: 'g0', proto: 'icmp' as const, from: { cidr: '10.0.0.0/8' } }]),
    ],
  };
}

function state(p: string, server?: SgPort): SecGroupState {
  const ports = Array.from({ length: 1000 }, (_, i) =>
    port(p, i, `${p}b${i % 10}`, `${p}p${i.toString(36).padStart(4, '0')}`, `10.90.${i >> 8}.${i & 255}`),
  );
  const members = Array.from({ length: 99 }, (_, i) => ({
    ip: `10.91.0.${i + 10}`,
    mac: `02:00:00:03:00:${(i + 10).toString(16).padStart(2, '0')}`,
    port: ports[i]?.ifname as string,
  }));
  const sets = Array.from({ length: 20 }, (_, g) => ({
    name: `s_g${g}`,
    source: `group:g${g}`,
    members: g === 0 ? [{ ip: '10.92.0.2', mac: CLIENT_MAC, port: `${p}pc` }, ...members] : members,
  }));
  return { ports: server ? [...ports, server] : ports, sets };
}

function measure(client: string, seconds: number): Flow {
  const run = (what: string) =>
    Number(
      sh('ip', [
        'netns',
        'exec',
        client,
        '/usr/bin/python3',
        FLOW,
        what,
        '10.92.0.3',
        '5001',
        `${seconds}`,
      ]).trim(),
    );
  return { mbit: run('blast'), rr: run('rr') };
}

const probe = (client: string, dport: number) =>
  spawnSync('ip', ['netns', 'exec', client, '/usr/bin/python3', FLOW, 'probe', '10.92.0.3', `${dport}`, '1'])
    .status === 0;

/** `rounds` interleaved rounds of `seconds` per flow; objects named by `p` (4 chars at most). */
export async function measureForward(p: string, rounds: number, seconds: number): Promise<ForwardRuns> {
  const bridge = `${p}br`;
  const [client, server] = [`${p}-c`, `${p}-s`];
  const cleanup = () => {
    for (const ns of [client, server]) quiet('ip', ['netns', 'del', ns]);
    quiet('ip', ['link', 'del', bridge]);
  };
  cleanup();
  const driver = new NftSecGroupDriver(new Names(p));
  const mode = await driver.mode();
  // Only br-netfilter mode routes bridged IPv4 through conntrack via this sysctl;
  // in bridge mode (nf_conntrack_bridge) "loaded" differs from plain by the tables alone.
  const brnf = (on: boolean) => {
    if (mode === 'br-netfilter') writeFileSync(BRIDGE_NF_CALL_IPTABLES, on ? '1\n' : '0\n');
  };
  let child: ReturnType<typeof spawn> | undefined;
  try {
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    sh('ip', ['link', 'set', bridge, 'up']);
    for (const [ns, veth, ip] of [
      [client, `${p}pc`, '10.92.0.2'],
      [server, `${p}ps`, '10.92.0.3'],
    ] as const) {
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      sh('ip', ['link', 'set', veth, 'master', bridge, 'up']);
      if (ns === client) sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'address', CLIENT_MAC]);
      sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up']);
      sh('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/16`, 'dev', 'eth0']);
    }
    const c = spawn('ip', ['netns', 'exec', server, '/usr/bin/python3', FLOW, 'serve', '5001', '5002']);
    child = c;
    await new Promise<void>((resolve, reject) => {
      c.stdout.once('data', () => resolve());
      c.once('exit', (code) => reject(new Error(`sg_flow.py serve exited (${code})`)));
    });
    const runs: ForwardRuns = { mode, plain: [], loaded: [], guarded: [] };
    const guardedPort = port(p, 5000, bridge, `${p}ps`, '10.92.0.3', true);
    for (let round = 0; round < rounds; round++) {
      await driver.remove();
      brnf(false);
      if (!probe(client, 5002)) throw new Error('plain bridge: port 5002 did not answer');
      runs.plain.push(measure(client, seconds));
      brnf(true);
      await driver.apply(state(p));
      runs.loaded.push(measure(client, seconds));
      await driver.apply(state(p, guardedPort));
      // The guard must really be there: 5002 is served but no rule admits it.
      if (probe(client, 5002)) throw new Error('guarded: port 5002 answered; the rules are not enforced');
      runs.guarded.push(measure(client, seconds));
    }
    return runs;
  } finally {
    child?.kill();
    await driver.remove().catch(() => undefined);
    cleanup();
  }
}
