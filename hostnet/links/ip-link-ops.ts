// The real LinkOps: iproute2 and sysctl through the CommandRunner seam, root
// sysctls as /proc/sys files, and each namespace's own /etc/netns folder.

import { CommandError, type CommandRunner, osCommandRunner } from '../../base/command.js';
import { BerthError, couldNot } from '../../base/errors.js';
import { parseFdbDump, parseNeighDump } from '../observe/parse.js';
import type {
  BridgeOptions,
  FdbInfo,
  LinkInfo,
  LinkOps,
  NeighbourInfo,
  PortVlan,
  RouteInfo,
  VethOptions,
  VlanFlags,
} from './link-ops.js';
import { NetnsEtc } from './netns-etc.js';
import { ProcSysctl, type SysctlFiles } from './proc-sysctl.js';

const NOT_FOUND =
  /Cannot find device|does not exist|No such file or directory|No such device|Cannot remove namespace/;
const EXISTS = /File exists|already exists|Address already assigned/;
// iproute2 older than 5.1 calls the unknown word garbage; a kernel without
// NTF_STICKY refuses the flag with EINVAL.
const STICKY_REFUSED = /garbage|sticky|Invalid argument|not supported/i;

interface IpAddrJson {
  ifindex: number;
  ifname: string;
  flags?: string[];
  mtu: number;
  address?: string;
  master?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

function toLinkInfo(raw: IpAddrJson): LinkInfo {
  const kind = raw.linkinfo?.info_kind;
  const data = raw.linkinfo?.info_data ?? {};
  return {
    ifindex: raw.ifindex,
    name: raw.ifname,
    kind,
    up: (raw.flags ?? []).includes('UP'),
    mtu: raw.mtu,
    mac: raw.address ?? '',
    master: raw.master,
    ipv4: (raw.addr_info ?? [])
      .filter((a) => a.family === 'inet')
      .map((a) => ({ address: a.local, prefixLen: a.prefixlen })),
    bridge:
      kind === 'bridge'
        ? {
            stpState: Number(data.stp_state ?? 0),
            forwardDelay: Number(data.forward_delay ?? 0),
            vlanFiltering: Number(data.vlan_filtering ?? 0) === 1,
          }
        : undefined,
  };
}

function bridgeArgs(o: BridgeOptions): string[] {
  const args: string[] = [];
  // STP goes first: the kernel refuses forward_delay 0 while STP is on.
  if (o.stpState !== undefined) args.push('stp_state', String(o.stpState));
  if (o.forwardDelay !== undefined) args.push('forward_delay', String(o.forwardDelay));
  if (o.vlanFiltering !== undefined) args.push('vlan_filtering', o.vlanFiltering ? '1' : '0');
  if (o.vlanDefaultPvid !== undefined) args.push('vlan_default_pvid', String(o.vlanDefaultPvid));
  return args;
}

function vlanArgs(f: VlanFlags): string[] {
  return [...(f.pvid ? ['pvid'] : []), ...(f.untagged ? ['untagged'] : []), ...(f.self ? ['self'] : [])];
}

function sysctlPath(key: string): string {
  if (key.includes('..') || !/^[\w./-]+$/.test(key))
    throw new BerthError('BERTH_ERR_INVALID_ARGUMENT', `bad sysctl key "${key}"`);
  return key;
}

export class IpLinkOps implements LinkOps {
  constructor(
    private readonly runner: CommandRunner = osCommandRunner,
    private readonly etc: NetnsEtc = new NetnsEtc(),
    private readonly rootSysctl: SysctlFiles = new ProcSysctl(),
  ) {}

  private ip(netns: string | undefined, args: string[]): string[] {
    return netns === undefined ? ['ip', ...args] : ['ip', '-n', netns, ...args];
  }

  private async run(what: [verb: string, object: string, name: string], argv: string[], tolerate?: RegExp) {
    try {
      return await this.runner.run(argv);
    } catch (err) {
      if (tolerate && err instanceof CommandError && tolerate.test(err.stderr))
        return { stdout: '', stderr: err.stderr };
      throw couldNot('BERTH_ERR_HOST_OP', what[0], what[1], what[2], err);
    }
  }

  async listLinks(netns?: string): Promise<LinkInfo[]> {
    const { stdout } = await this.run(
      ['list', 'links in', netns ?? 'root'],
      this.ip(netns, ['-j', '-d', 'addr', 'show']),
    );
    return (JSON.parse(stdout || '[]') as IpAddrJson[]).map(toLinkInfo);
  }

  async getLink(name: string, netns?: string): Promise<LinkInfo | undefined> {
    const { stdout } = await this.run(
      ['read', 'link', name],
      this.ip(netns, ['-j', '-d', 'addr', 'show', 'dev', name]),
      NOT_FOUND,
    );
    const raw = JSON.parse(stdout || '[]') as IpAddrJson[];
    return raw[0] ? toLinkInfo(raw[0]) : undefined;
  }

  async createBridge(name: string, opts: { mac?: string; mtu?: number; options?: BridgeOptions } = {}) {
    const argv = ['ip', 'link', 'add', name];
    if (opts.mac) argv.push('address', opts.mac);
    if (opts.mtu) argv.push('mtu', String(opts.mtu));
    argv.push('type', 'bridge', ...bridgeArgs(opts.options ?? {}));
    await this.run(['create', 'bridge', name], argv);
  }

  async setBridgeOptions(name: string, options: BridgeOptions) {
    await this.run(
      ['configure', 'bridge', name],
      ['ip', 'link', 'set', name, 'type', 'bridge', ...bridgeArgs(options)],
    );
  }

  async setLinkUp(name: string, netns?: string) {
    await this.run(['bring up', 'link', name], this.ip(netns, ['link', 'set', name, 'up']));
  }

  async setMaster(name: string, master: string) {
    await this.run(['enslave', 'link', name], ['ip', 'link', 'set', name, 'master', master]);
  }

  async setNoMaster(name: string) {
    await this.run(['release', 'link', name], ['ip', 'link', 'set', name, 'nomaster']);
  }

  async setMac(name: string, mac: string, netns?: string) {
    await this.run(['set the MAC of', 'link', name], this.ip(netns, ['link', 'set', name, 'address', mac]));
  }

  async setMtu(name: string, mtu: number, netns?: string) {
    await this.run(
      ['set the MTU of', 'link', name],
      this.ip(netns, ['link', 'set', name, 'mtu', String(mtu)]),
    );
  }

  async createVeth(name: string, peer: string, opts: VethOptions = {}) {
    const mtu = opts.mtu ? ['mtu', String(opts.mtu)] : [];
    const argv = ['ip', 'link', 'add', name, ...mtu, 'type', 'veth', 'peer', 'name', peer, ...mtu];
    if (opts.peerMac) argv.push('address', opts.peerMac);
    if (opts.peerNetns) argv.push('netns', opts.peerNetns);
    await this.run(['create', 'veth', name], argv);
  }

  async moveToNetns(name: string, netns: string, newName?: string) {
    const rename = newName ? ['name', newName] : [];
    await this.run(['move', 'link', name], ['ip', 'link', 'set', name, 'netns', netns, ...rename]);
  }

  async deleteLink(name: string, netns?: string) {
    await this.run(['delete', 'link', name], this.ip(netns, ['link', 'del', name]), NOT_FOUND);
  }

  async addAddress(name: string, cidr: string, netns?: string) {
    await this.run(
      ['add address to', 'link', name],
      this.ip(netns, ['addr', 'add', cidr, 'dev', name]),
      EXISTS,
    );
  }

  async deleteAddress(name: string, cidr: string, netns?: string) {
    await this.run(['remove address from', 'link', name], this.ip(netns, ['addr', 'del', cidr, 'dev', name]));
  }

  async listRoutes(netns?: string): Promise<RouteInfo[]> {
    const { stdout } = await this.run(
      ['list', 'routes in', netns ?? 'root'],
      this.ip(netns, ['-j', 'route', 'show']),
    );
    return (JSON.parse(stdout || '[]') as { dst: string; dev?: string }[]).map((r) => ({
      dst: r.dst,
      dev: r.dev,
    }));
  }

  async replaceDeviceRoute(dst: string, dev: string, netns?: string) {
    await this.run(
      ['add', 'route', dst],
      this.ip(netns, ['route', 'replace', dst, 'dev', dev, 'scope', 'link']),
    );
  }

  async listNetns(): Promise<string[]> {
    const { stdout } = await this.run(['list', 'network namespaces', 'all'], ['ip', '-j', 'netns', 'list']);
    return (JSON.parse(stdout || '[]') as { name: string }[]).map((n) => n.name);
  }

  async addNetns(name: string) {
    await this.run(['create', 'network namespace', name], ['ip', 'netns', 'add', name], EXISTS);
    await this.ensureNetnsEtc(name);
  }

  async ensureNetnsEtc(name: string) {
    try {
      await this.etc.ensure(name);
    } catch (err) {
      throw couldNot('BERTH_ERR_HOST_OP', 'create', 'resolver file of network namespace', name, err);
    }
  }

  listNetnsEtc(): Promise<string[]> {
    return this.etc.list();
  }

  async removeNetnsEtc(name: string) {
    try {
      await this.etc.remove(name);
    } catch (err) {
      throw couldNot('BERTH_ERR_HOST_OP', 'remove', 'resolver file of network namespace', name, err);
    }
  }

  async deleteNetns(name: string) {
    await this.run(['delete', 'network namespace', name], ['ip', 'netns', 'del', name], NOT_FOUND);
    try {
      await this.etc.remove(name);
    } catch (err) {
      throw couldNot('BERTH_ERR_HOST_OP', 'remove', 'resolver file of network namespace', name, err);
    }
  }

  async execInNetns(netns: string, argv: string[], options?: { input?: string; timeoutMs?: number }) {
    try {
      return await this.runner.run(['ip', 'netns', 'exec', netns, ...argv], options);
    } catch (err) {
      throw couldNot('BERTH_ERR_HOST_OP', 'run', 'command in network namespace', netns, err);
    }
  }

  private sysctl(netns: string, args: string[]): string[] {
    return ['ip', 'netns', 'exec', netns, 'sysctl', ...args];
  }

  async readSysctl(keys: string[], netns?: string): Promise<string[]> {
    if (netns === undefined) {
      try {
        return await this.rootSysctl.read(keys.map(sysctlPath));
      } catch (err) {
        throw couldNot('BERTH_ERR_HOST_OP', 'read', 'sysctls in', 'root', err);
      }
    }
    const argv = this.sysctl(netns, ['-n', ...keys.map(sysctlPath)]);
    const { stdout } = await this.run(['read', 'sysctls in', netns], argv);
    return stdout.trimEnd().split('\n');
  }

  async writeSysctl(values: Record<string, string>, netns?: string) {
    if (netns === undefined) {
      for (const k of Object.keys(values)) sysctlPath(k);
      try {
        return await this.rootSysctl.write(values);
      } catch (err) {
        throw couldNot('BERTH_ERR_HOST_OP', 'write', 'sysctls in', 'root', err);
      }
    }
    const pairs = Object.entries(values).map(([k, v]) => `${sysctlPath(k)}=${v}`);
    await this.run(['write', 'sysctls in', netns], this.sysctl(netns, ['-qw', ...pairs]));
  }

  async listPortVlans(dev: string): Promise<PortVlan[]> {
    const argv = ['bridge', '-j', 'vlan', 'show', 'dev', dev];
    const { stdout } = await this.run(['list VLANs of', 'bridge port', dev], argv);
    type Raw = { ifname: string; vlans?: { vid: number; vidEnd?: number; flags?: string[] }[] };
    const out: PortVlan[] = [];
    for (const port of JSON.parse(stdout || '[]') as Raw[]) {
      for (const v of port.vlans ?? []) {
        const flags = v.flags ?? [];
        for (let vid = v.vid; vid <= (v.vidEnd ?? v.vid); vid++) {
          out.push({ vid, pvid: flags.includes('PVID'), untagged: flags.includes('Egress Untagged') });
        }
      }
    }
    return out;
  }

  async bridgeVlanAdd(dev: string, vid: number, flags: VlanFlags = {}) {
    const argv = ['bridge', 'vlan', 'add', 'dev', dev, 'vid', String(vid), ...vlanArgs(flags)];
    await this.run(['add VLAN to', 'bridge port', dev], argv);
  }

  async bridgeVlanDel(dev: string, vid: number, flags: VlanFlags = {}) {
    const argv = ['bridge', 'vlan', 'del', 'dev', dev, 'vid', String(vid), ...(flags.self ? ['self'] : [])];
    await this.run(['remove VLAN from', 'bridge port', dev], argv, NOT_FOUND);
  }

  async createVlanSubinterface(uplink: string, name: string, vid: number) {
    const argv = ['ip', 'link', 'add', 'link', uplink, 'name', name, 'type', 'vlan', 'id', String(vid)];
    await this.run(['create', 'VLAN subinterface', name], argv);
  }

  async listNeighbours(netns: string): Promise<NeighbourInfo[]> {
    const { stdout } = await this.run(
      ['list', 'neighbours in', netns],
      this.ip(netns, ['-4', '-j', 'neigh', 'show']),
    );
    return parseNeighDump(stdout);
  }

  async pinNeighbour(ip: string, mac: string, dev: string, netns: string) {
    const argv = this.ip(netns, ['neigh', 'replace', ip, 'lladdr', mac, 'dev', dev, 'nud', 'permanent']);
    await this.run(['pin', 'neighbour', `${ip} in ${netns}`], argv);
  }

  async deleteNeighbour(ip: string, dev: string, netns: string) {
    await this.run(
      ['remove', 'neighbour', `${ip} in ${netns}`],
      this.ip(netns, ['neigh', 'del', ip, 'dev', dev]),
      /No such file or directory|Cannot find device|RTNETLINK answers: No such|not found|does not exist/,
    );
  }

  async listFdb(bridge: string): Promise<FdbInfo[]> {
    const { stdout } = await this.run(
      ['list', 'FDB of bridge', bridge],
      ['bridge', '-j', 'fdb', 'show', 'br', bridge],
    );
    return parseFdbDump(stdout);
  }

  async pinFdb(mac: string, port: string, opts: { sticky: boolean; vlan?: number }) {
    const argv = ['bridge', 'fdb', 'replace', mac, 'dev', port, 'master', 'static'];
    if (opts.sticky) argv.push('sticky');
    if (opts.vlan !== undefined) argv.push('vlan', String(opts.vlan));
    try {
      await this.runner.run(argv);
    } catch (err) {
      if (opts.sticky && err instanceof CommandError && STICKY_REFUSED.test(err.stderr))
        throw couldNot('BERTH_ERR_KERNEL_FEATURE', 'pin', 'FDB entry', `${mac} on ${port}`, err);
      throw couldNot('BERTH_ERR_HOST_OP', 'pin', 'FDB entry', `${mac} on ${port}`, err);
    }
  }

  async deleteFdb(mac: string, port: string, vlan?: number) {
    const argv = ['bridge', 'fdb', 'del', mac, 'dev', port, 'master'];
    if (vlan !== undefined) argv.push('vlan', String(vlan));
    await this.run(['remove', 'FDB entry', `${mac} on ${port}`], argv, NOT_FOUND);
  }
}
