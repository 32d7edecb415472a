// The "physical-ish peer" that berth is compared with: a plain Linux bridge,
// a server namespace on it, and N netns guests with fixed MACs, served by
// dnsmasq (static hosts) and nginx. No guard, no identity check: what a
// flat network with stock daemons costs.
//
// The peer takes a prefix of its own, never berthd's: berthd sweeps every
// namespace under its prefix that it did not create, and would take the
// peer's away in its next reconcile pass.
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { intToIp, ipToInt } from '../../hostnet/ipv4.js';
import { sh } from './proc.js';

export interface PeerGuest {
  name: string;
  netns: string;
  mac: string;
  ip: string;
}

export interface PeerNet {
  bridge: string;
  /** The namespace dnsmasq and nginx run in; it holds .254.254 and 169.254.169.254. */
  server: string;
  serverIp: string;
  gateway: string;
  guests: PeerGuest[];
}

/** 10.<second>.0.0/16: room for any storm; guests from .0.2 up. */
export function createPeerNet(prefix: string, second: number, count: number): PeerNet {
  const base = ipToInt(`10.${second}.0.0`);
  const bridge = `${prefix}pbr`;
  const server = `${prefix}-psrv`;
  const serverIp = intToIp(base + 0xfffe);
  const guests: PeerGuest[] = Array.from({ length: count }, (_, i) => ({
    name: `g${i}`,
    netns: `${prefix}-pg${i}`,
    mac: `02:42:${second.toString(16).padStart(2, '0')}:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    ip: intToIp(base + 2 + i),
  }));
  // Root-namespace work in one `ip -batch` (thousands of commands in a second or two).
  const batch: string[] = [`link add ${bridge} type bridge forward_delay 0`, `link set ${bridge} up`];
  sh('ip', ['netns', 'add', server]);
  batch.push(`link add ${prefix}psv type veth peer name eth0 netns ${server}`);
  batch.push(`link set ${prefix}psv master ${bridge} up`);
  guests.forEach((g, i) => {
    sh('ip', ['netns', 'add', g.netns]);
    batch.push(`link add ${prefix}q${i} type veth peer name eth0 address ${g.mac} netns ${g.netns}`);
    batch.push(`link set ${prefix}q${i} master ${bridge} up`);
  });
  sh('ip', ['-batch', '-'], `${batch.join('\n')}\n`);
  sh(
    'ip',
    ['-n', server, '-batch', '-'],
    [
      'link set lo up',
      'link set eth0 up',
      `addr add ${serverIp}/16 dev eth0`,
      'addr add 169.254.169.254/32 dev eth0',
      '',
    ].join('\n'),
  );
  for (const g of guests) sh('ip', ['-n', g.netns, 'link', 'set', 'eth0', 'up']);
  return { bridge, server, serverIp, gateway: intToIp(base + 1), guests };
}

/** dnsmasq as DHCP server only, with a static host per guest and the options berth sends. */
export function startDnsmasq(
  peer: PeerNet,
  dir: string,
  opts: { mtu: number; domain: string },
): ChildProcess {
  const hostsFile = join(dir, 'dnsmasq.hosts');
  writeFileSync(hostsFile, `${peer.guests.map((g) => `${g.mac},${g.ip},${g.name}`).join('\n')}\n`);
  const net = peer.serverIp.replace(/\.\d+\.\d+$/, '.0.0');
  return spawn(
    'ip',
    [
      'netns',
      'exec',
      peer.server,
      'dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--port=0',
      '--user=root',
      '--interface=eth0',
      '--bind-interfaces',
      '--dhcp-authoritative',
      '--no-ping',
      `--dhcp-range=${net},static,255.255.0.0,1h`,
      `--dhcp-hostsfile=${hostsFile}`,
      `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`,
      `--pid-file=${join(dir, 'dnsmasq.pid')}`,
      `--dhcp-option=3,${peer.gateway}`,
      `--dhcp-option=6,${peer.gateway}`,
      `--dhcp-option=15,${opts.domain}`,
      `--dhcp-option=26,${opts.mtu}`,
      `--dhcp-option=121,169.254.169.254/32,0.0.0.0,0.0.0.0/0,${peer.gateway}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

/**
 * nginx in netns with one worker (berth's endpoint is one process too), no
 * access log and keep-alive without a request cap, serving `server` (an nginx
 * server block); its config, pid and error log go in dir.
 */
export function nginxIn(netns: string, dir: string, server: string): ChildProcess {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
user root;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx.err')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 1000000;
  ${server}
}
`,
  );
  return spawn('ip', ['netns', 'exec', netns, 'nginx', '-c', conf], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/**
 * nginx on 169.254.169.254:80 in the peer's server namespace, serving
 * `${www}/<client IP>/...`: per guest bytes chosen by source address, the
 * nearest a static server gets to answering "who is calling". A directory
 * answers with its `_index` file.
 */
export function startNginx(peer: PeerNet, dir: string, www: string): ChildProcess {
  return nginxIn(
    peer.server,
    dir,
    `server { listen 169.254.169.254:80; root ${www}/$remote_addr; index _index; }`,
  );
}

/**
 * nginx's files: peer guest i answers exactly trees[i] (meta-data path →
 * body, as a guest read it from berth; "" and "x/" are directory listings).
 */
export function writePeerTrees(www: string, peer: PeerNet, trees: (Map<string, string> | undefined)[]): void {
  for (const [i, g] of peer.guests.entries()) {
    const tree = trees[i];
    if (!tree?.has('instance-id')) throw new Error(`no meta-data tree to copy for peer guest ${i}`);
    for (const [path, body] of tree) {
      const file = join(
        www,
        g.ip,
        'latest/meta-data',
        path === '' || path.endsWith('/') ? `${path}_index` : path,
      );
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, body);
    }
  }
}
