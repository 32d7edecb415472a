// The row about reaching the host itself from a guest. The host keeps no
// address on tenant bridges, but Linux accepts a packet for any local address
// on any interface, so the guard's input hook must drop what guests send to
// the host. The guest here does what an attacker would: it names the
// bridge's MAC (or broadcast) as its next hop towards every host address,
// sends UDP and TCP (berthd's metrics listen on all addresses in this lab),
// and scans its network's endpoint. A QEMU guest's only view of the host is
// its domain XML, checked here for devices that would expose a host path or
// socket (berthd's admin socket is a path on the host).
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { domainXml } from '../../agent/compute/domain-xml.js';
import { inNetns, sh } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { probe, type Scan } from './guest-probe.js';
import { guardCounter } from './observe.js';
import { attack, see } from './result.js';

/** The host's own IPv4 addresses outside loopback. */
async function hostAddresses(): Promise<string[]> {
  const links = JSON.parse(await sh('ip', ['-j', '-4', 'addr', 'show', 'scope', 'global'])) as {
    addr_info: { local: string }[];
  }[];
  return links.flatMap((l) => l.addr_info.map((a) => a.local));
}

/** Whether a TCP connection from the host itself to addr:port is accepted. */
function probeHostTcp(addr: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: addr, port, timeout: 2000 }, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
    c.on('timeout', () => {
      c.destroy();
      resolve(false);
    });
  });
}

/** Device elements a berth domain may have; anything else could reach the host's files or sockets. */
const DOMAIN_DEVICES = new Set(['disk', 'interface', 'serial', 'console', 'controller', 'memballoon', 'rng']);

/** The device elements of the XML berth's libvirt runtime writes, and any serial/console source that is not a file. */
function domainDevices(): { devices: string[]; nonFileChardevs: number } {
  const xml = domainXml({
    name: 'bth-attack',
    uuid: '00000000-0000-4000-8000-000000000001',
    virtType: 'qemu',
    vcpus: 1,
    memoryMiB: 256,
    boot: {
      kind: 'kernel',
      kernel: '/var/lib/berth/images/k',
      initrd: '/var/lib/berth/images/i',
      disk: '/var/lib/berth/instances/i-1/disk.qcow2',
    },
    nics: [{ mac: '0a:b7:e7:00:00:01', bridge: 'bthb1', port: 'bthp1' }],
    serialLog: '/var/lib/berth/instances/i-1/console.log',
    smbios: { kind: 'nocloud' },
    owner: { instanceId: 'i-1', hostId: 'h', prefix: 'bth' },
  });
  const body = xml.slice(xml.indexOf('<devices>'), xml.indexOf('</devices>'));
  const devices = [...body.matchAll(/^ {4}<([a-z]+)/gm)].map((m) => m[1] as string);
  const nonFileChardevs = [...body.matchAll(/<(serial|console) type='([a-z]+)'/g)].filter(
    (m) => m[2] !== 'file',
  ).length;
  return { devices, nonFileChardevs };
}

export const hostServices = attack(
  'Guest access to the admin socket or host services',
  "nothing on the host answers a guest: UDP and TCP services on every host address (berthd's metrics included) get nothing from it, frames to the host are dropped (to-host counter); its network's endpoint offers only 169.254.169.254:80; a QEMU guest's devices expose no host path or socket, so the admin socket is outside its view",
  async (_t, { lab, subnet, metricsPort }) => {
    const cidr = subnet();
    const net = await lab.network('hs', cidr);
    const g = await mdGuest(lab, 'hs-g', 'hs');
    const addrs = await hostAddresses();
    if (addrs.length === 0) throw new Error('the host has no global IPv4 address to attack');

    // Host services on every address: a UDP and a TCP listener of this test's own, and berthd's
    // metrics. The controls show each answers the host itself.
    const heard: string[] = [];
    const sock = createSocket('udp4');
    sock.on('message', (m) => heard.push(m.toString()));
    await new Promise<void>((r) => sock.bind(0, '0.0.0.0', r));
    const udpPort = sock.address().port;
    const accepted: string[] = [];
    const server = createServer((c) => {
      accepted.push(c.remoteAddress ?? '');
      c.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const ports = [(server.address() as { port: number }).port, metricsPort];
    try {
      for (const a of addrs) sock.send(`control ${a}`, udpPort, a);
      const metrics = await fetch(`http://${addrs[0]}:${metricsPort}/metrics`).then(
        (r) => r.status,
        () => 0,
      );
      const tcpControl = await probeHostTcp(addrs[0] as string, ports[0] as number);

      const bridgeMac = (await readFile(`/sys/class/net/${net.bridge}/address`, 'utf8')).trim();
      const hop = cidr.replace(/0\/24$/, '250');
      const toHostBefore = await guardCounter(lab, 'to-host');
      const connected: number[] = [];
      for (const lladdr of [bridgeMac, 'ff:ff:ff:ff:ff:ff']) {
        await inNetns(g.netns, [
          'ip',
          'neigh',
          'replace',
          hop,
          'lladdr',
          lladdr,
          'dev',
          'eth0',
          'nud',
          'permanent',
        ]);
        for (const a of addrs) {
          await inNetns(g.netns, ['ip', 'route', 'replace', `${a}/32`, 'via', hop, 'dev', 'eth0']);
          await probe(g.netns, ['udp', a, String(udpPort), `guest ${lladdr} ${a}`]);
          connected.push(
            ...(await probe<Scan>(g.netns, ['tcpscan', a, '1', '0', ...ports.map(String)])).open,
          );
        }
      }
      await sleep(300);
      const toHost = (await guardCounter(lab, 'to-host')) - toHostBefore;
      const ownLoopback = await probe<Scan>(g.netns, ['tcpscan', '127.0.0.1', '1', '0', String(metricsPort)]);
      const [md, service] = await Promise.all([
        probe<Scan>(g.netns, ['tcpscan', '169.254.169.254', '1', '1024', String(metricsPort)]),
        probe<Scan>(g.netns, ['tcpscan', net.service_ip, '1', '1024', String(metricsPort)]),
      ]);
      const { devices, nonFileChardevs } = domainDevices();
      const control = heard.filter((h) => h.startsWith('control')).length;
      const fromGuestTcp = accepted.length - (tcpControl ? 1 : 0);
      const fromGuest = heard.filter((h) => h.startsWith('guest'));
      const foreign = devices.filter((d) => !DOMAIN_DEVICES.has(d));
      return [
        see(
          control === addrs.length && metrics === 200 && tcpControl,
          `control: the host reaches its own services on ${addrs.join(', ')} (UDP ${control}/${addrs.length}, TCP ${tcpControl ? 'connects' : 'FAILS'}, metrics ${metrics})`,
        ),
        see(
          fromGuest.length === 0,
          `UDP from the guest via the bridge MAC and via broadcast: ${fromGuest.length} datagrams arrived`,
        ),
        see(
          connected.length === 0 && fromGuestTcp === 0,
          `TCP from the guest to host ports ${ports.join(', ')}: ${connected.length ? `connected to ${connected.join(', ')}` : 'no connection'}`,
        ),
        see(toHost >= addrs.length * (1 + ports.length), `to-host drops: ${toHost}`),
        see(
          ownLoopback.open.length === 0,
          `the guest's 127.0.0.1:${metricsPort} is its own loopback: ${ownLoopback.open.length ? 'open' : 'closed'}`,
        ),
        see(
          JSON.stringify(md.open) === '[80]' && service.open.length === 0,
          `endpoint TCP ports 1-1024 and ${metricsPort}: 169.254.169.254 ${JSON.stringify(md.open)}, ${net.service_ip} ${JSON.stringify(service.open)}`,
        ),
        see(
          foreign.length === 0 && nonFileChardevs === 0,
          `QEMU domain devices: ${[...new Set(devices)].join(', ')}; serial/console on files only`,
        ),
      ];
    } finally {
      sock.close();
      server.close();
    }
  },
);
