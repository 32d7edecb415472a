// An in-memory kernel behind the CommandRunner seam: enough of ip, bridge
// and sysctl to drive berth's link logic in unit tests, every argv recorded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, type CommandResult, type CommandRunner } from '../../base/command.js';
import { IpLinkOps } from '../../hostnet/links/ip-link-ops.js';
import { NetnsEtc } from '../../hostnet/links/netns-etc.js';
import type { SysctlFiles } from '../../hostnet/links/proc-sysctl.js';

export interface FakeLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  master?: string;
  linkinfo?: { info_kind: string; info_data?: Record<string, number> };
  addr_info: { family: string; local: string; prefixlen: number }[];
}

export const ROOT = '';
// Namespaces' resolver folders go to a scratch root, never the host's /etc/netns.
const scratch = mkdtempSync(join(tmpdir(), 'berth-netns-etc-'));
process.once('exit', () => rmSync(scratch, { recursive: true, force: true }));
export const fakeEtc = new NetnsEtc(scratch);

/** Enough of ip/bridge/sysctl to drive the link logic; every argv is recorded. */
export class FakeKernel implements CommandRunner {
  calls: string[] = [];
  netns = new Set<string>();
  links = new Map<string, Map<string, FakeLink>>([[ROOT, new Map()]]);
  sysctls = new Map<string, string>();
  vlans = new Map<string, string[]>();
  routes = new Map<string, { dst: string; dev: string }[]>();
  failOn: ((argv: string) => boolean) | undefined;
  private next = 10;
  /** Root sysctls as the real adapter reaches them (files), recorded as the sysctl argv they stand for. */
  readonly files: SysctlFiles = {
    read: async (keys) => {
      this.calls.push(`sysctl -n ${keys.join(' ')}`);
      return keys.map((k) => this.sysctls.get(`${ROOT}:${k}`) ?? '0');
    },
    write: async (values) => {
      const pairs = Object.entries(values);
      const line = `sysctl -qw ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
      this.calls.push(line);
      if (this.failOn?.(line)) throw new Error('Operation not permitted');
      for (const [k, v] of pairs) this.sysctls.set(`${ROOT}:${k}`, v);
    },
  };

  ns(name: string): Map<string, FakeLink> {
    let m = this.links.get(name);
    if (m) return m;
    m = new Map();
    this.links.set(name, m);
    return m;
  }

  add(ns: string, name: string, kind?: string, extra: Partial<FakeLink> = {}): FakeLink {
    const link: FakeLink = {
      ifindex: this.next++,
      ifname: name,
      flags: ['BROADCAST'],
      mtu: 1500,
      address: '0a:00:00:00:00:01',
      addr_info: [],
      ...(kind ? { linkinfo: { info_kind: kind } } : {}),
      ...extra,
    };
    this.ns(ns).set(name, link);
    return link;
  }

  writes(): string[] {
    return this.calls.filter((c) => !/ -j |^sysctl -n|sysctl -n /.test(c));
  }

  async run(argv: string[]): Promise<CommandResult> {
    const line = argv.join(' ');
    this.calls.push(line);
    if (this.failOn?.(line)) throw new CommandError(argv, 2, 'RTNETLINK answers: Operation not permitted');
    return { stdout: this.exec(argv) ?? '', stderr: '' };
  }

  private fail(argv: string[], stderr: string): never {
    throw new CommandError(argv, 1, stderr);
  }

  private exec(full: string[]): string | undefined {
    let argv = [...full];
    let ns = ROOT;
    if (argv[0] === 'ip' && argv[1] === 'netns' && argv[2] === 'exec') {
      ns = argv[3] as string;
      argv = argv.slice(4);
    } else if (argv[0] === 'ip' && argv[1] === '-n') {
      ns = argv[2] as string;
      argv = ['ip', ...argv.slice(3)];
    }
    const links = this.ns(ns);
    const get = (name: string) => links.get(name) ?? this.fail(full, `Cannot find device "${name}"`);
    const a = argv.join(' ');
    let m: RegExpMatchArray | null;
    if (argv[0] === 'sysctl') {
      if (argv[1] === '-n')
        return `${argv
          .slice(2)
          .map((k) => this.sysctls.get(`${ns}:${k}`) ?? '0')
          .join('\n')}\n`;
      for (const kv of argv.slice(2)) {
        const [k, v] = kv.split('=') as [string, string];
        this.sysctls.set(`${ns}:${k}`, v);
      }
      return;
    }
    m = a.match(/^ip -j -d addr show dev (\S+)$/);
    if (m) {
      const l = links.get(m[1] as string);
      return l ? JSON.stringify([l]) : this.fail(full, `Device "${m[1]}" does not exist.`);
    }
    if (a === 'ip -j -d addr show') return JSON.stringify([...links.values()]);
    if (a === 'ip -j netns list') return JSON.stringify([...this.netns].map((name) => ({ name })));
    m = a.match(/^ip netns (add|del) (\S+)$/);
    if (m) {
      if (m[1] === 'add') {
        if (this.netns.has(m[2] as string)) this.fail(full, 'Cannot create namespace file: File exists');
        this.netns.add(m[2] as string);
        this.add(m[2] as string, 'lo', undefined, { flags: ['LOOPBACK'] });
      } else {
        if (!this.netns.delete(m[2] as string))
          this.fail(full, 'Cannot remove namespace file: No such file or directory');
        this.links.delete(m[2] as string);
      }
      return;
    }
    m = a.match(/^ip link add (\S+)(?: address (\S+))?(?: mtu (\d+))? type bridge(.*)$/);
    if (m) {
      const data: Record<string, number> = { stp_state: 1, forward_delay: 1500, vlan_filtering: 0 };
      const opts = (m[4] as string).trim().split(' ');
      for (let i = 0; i + 1 < opts.length; i += 2) data[opts[i] as string] = Number(opts[i + 1]);
      this.add(ns, m[1] as string, 'bridge', {
        address: m[2] ?? '0a:00:00:00:00:09',
        mtu: Number(m[3] ?? 1500),
        linkinfo: { info_kind: 'bridge', info_data: data },
      });
      return;
    }
    m = a.match(/^ip link add link (\S+) name (\S+) type vlan id (\d+)$/);
    if (m) {
      get(m[1] as string);
      this.add(ns, m[2] as string, 'vlan');
      return;
    }
    m = a.match(
      /^ip link add (\S+)(?: mtu (\d+))? type veth peer name (\S+)(?: mtu \d+)?(?: address (\S+))?(?: netns (\S+))?$/,
    );
    if (m) {
      this.add(ns, m[1] as string, 'veth', { mtu: Number(m[2] ?? 1500) });
      this.add(m[5] ?? ns, m[3] as string, 'veth', {
        mtu: Number(m[2] ?? 1500),
        ...(m[4] ? { address: m[4] } : {}),
      });
      return;
    }
    m = a.match(/^ip link set (\S+) netns (\S+) name (\S+)$/);
    if (m) {
      const l = get(m[1] as string);
      links.delete(l.ifname);
      this.ns(m[2] as string).set(m[3] as string, { ...l, ifname: m[3] as string });
      return;
    }
    m = a.match(/^ip link set (\S+) (.*)$/);
    if (m) {
      const l = get(m[1] as string);
      const rest = (m[2] as string).split(' ');
      if (rest[0] === 'up') l.flags = [...l.flags, 'UP'];
      else if (rest[0] === 'master') l.master = get(rest[1] as string).ifname;
      else if (rest[0] === 'nomaster') delete l.master;
      else if (rest[0] === 'address') l.address = rest[1] as string;
      else if (rest[0] === 'mtu') l.mtu = Number(rest[1]);
      else if (rest[0] === 'type') {
        const data = l.linkinfo?.info_data ?? {};
        for (let i = 2; i + 1 < rest.length; i += 2) data[rest[i] as string] = Number(rest[i + 1]);
      }
      return;
    }
    m = a.match(/^ip link del (\S+)$/);
    if (m) {
      if (!links.delete(m[1] as string)) this.fail(full, `Cannot find device "${m[1]}"`);
      return;
    }
    m = a.match(/^ip addr (add|del) (\S+)\/(\d+) dev (\S+)$/);
    if (m) {
      const l = get(m[4] as string);
      const entry = { family: 'inet', local: m[2] as string, prefixlen: Number(m[3]) };
      if (m[1] === 'add') l.addr_info.push(entry);
      else l.addr_info = l.addr_info.filter((x) => x.local !== entry.local);
      return;
    }
    if (a === 'ip -j route show') return JSON.stringify(this.routes.get(ns) ?? []);
    m = a.match(/^ip route replace (\S+) dev (\S+) scope link$/);
    if (m) {
      this.routes.set(ns, [...(this.routes.get(ns) ?? []), { dst: m[1] as string, dev: m[2] as string }]);
      return;
    }
    m = a.match(/^bridge -j vlan show dev (\S+)$/);
    if (m) {
      const vids = this.vlans.get(m[1] as string) ?? [];
      return JSON.stringify([{ ifname: m[1], vlans: vids.map((v) => JSON.parse(v)) }]);
    }
    m = a.match(/^bridge vlan (add|del) dev (\S+) vid (\d+)(.*)$/);
    if (m) {
      const flags = (m[4] as string).includes('pvid') ? ['PVID', 'Egress Untagged'] : [];
      const rest = (this.vlans.get(m[2] as string) ?? []).filter((v) => JSON.parse(v).vid !== Number(m?.[3]));
      this.vlans.set(
        m[2] as string,
        m[1] === 'add' ? [...rest, JSON.stringify({ vid: Number(m[3]), flags })] : rest,
      );
      return;
    }
    throw new Error(`fake kernel does not know: ${line(full)}`);
  }
}

/** The real adapter on a fake kernel. */
export function fakeOps(k: FakeKernel): IpLinkOps {
  return new IpLinkOps(k, fakeEtc, k.files);
}

function line(argv: string[]): string {
  return argv.join(' ');
}
