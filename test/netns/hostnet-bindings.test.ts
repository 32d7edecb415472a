// Root tier, HostDriver on the real kernel: the bindings identity is decided
// from. The endpoint's PERMANENT neighbour entry is there before the guest's
// port exists and goes with it; the guest's MAC is pinned static sticky to its
// port once the port exists; reconcile adds what is missing, fixes what is
// wrong and removes the PERMANENT entries of IPs no longer assigned.
import { execFileSync } from 'node:child_process';
import t from 'tap';
import type { NetworkSpec, PortSpec } from '../../hostnet/driver.js';
import { HostDriver } from '../../hostnet/host-driver.js';
import { Names } from '../../hostnet/names.js';
import { removePrefixed, uniquePrefix } from '../helpers/berthd.js';

if (process.getuid?.() !== 0) {
  t.fail('the netns tier runs as root');
  process.exit(1);
}

const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });

interface Entry {
  dst: string;
  lladdr?: string;
  state?: string[];
}

function neighbours(netns: string): Entry[] {
  return JSON.parse(sh('ip', '-n', netns, '-4', '-j', 'neigh', 'show', 'dev', 'ep0') || '[]') as Entry[];
}

function fdbLine(bridge: string, mac: string): string | undefined {
  return sh('bridge', 'fdb', 'show', 'br', bridge)
    .split('\n')
    .find((l) => l.startsWith(`${mac} `));
}

t.test('neighbour entries and FDB pins follow the ports, and reconcile repairs them', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const names = new Names(prefix);
  const warnings: string[] = [];
  const driver = new HostDriver(names, { warn: (_f, msg) => warnings.push(msg) });
  const net: NetworkSpec = { name: 'bd', subnet: '10.77.0.0/24', mtu: 1500, serviceIp: '10.77.0.254' };
  const place = await driver.ensureNetwork(net);
  const ns = place.endpointNetns;
  const port = (i: number): PortSpec => ({
    ifname: names.port(`0000000${i}`, 0),
    instance: `i-${i}`,
    network: 'bd',
    mac: `02:77:00:00:00:0${i}`,
    ip: `10.77.0.${10 + i}`,
  });
  const a = port(1);
  const b = port(2);

  // Before the port exists: the guard and the endpoint's entry.
  await driver.guardPort(a);
  t.notOk(sh('ip', 'link', 'show').includes(a.ifname), 'the port does not exist yet');
  t.match(
    neighbours(ns),
    [{ dst: a.ip, lladdr: a.mac, state: ['PERMANENT'] }],
    'A pinned before its port exists',
  );

  // The port appears: the MAC is pinned to it.
  await driver.ensureNetnsGuest({ netns: `${prefix}-g-a`, port: a }, net);
  t.match(fdbLine(place.bridge, a.mac), new RegExp(`dev ${a.ifname} sticky master ${place.bridge} static`));
  t.same(warnings, [], 'sticky is accepted here: no fallback warning');

  // B is desired too, but written only by reconcile; someone rewrote A's entry and left a stale one.
  sh(
    'ip',
    '-n',
    ns,
    'neigh',
    'replace',
    a.ip,
    'lladdr',
    '02:77:00:00:00:ee',
    'dev',
    'ep0',
    'nud',
    'permanent',
  );
  sh(
    'ip',
    '-n',
    ns,
    'neigh',
    'replace',
    '10.77.0.99',
    'lladdr',
    '02:77:00:00:00:99',
    'dev',
    'ep0',
    'nud',
    'permanent',
  );
  sh(
    'ip',
    '-n',
    ns,
    'neigh',
    'replace',
    '10.77.0.98',
    'lladdr',
    '02:77:00:00:00:98',
    'dev',
    'ep0',
    'nud',
    'stale',
  );
  sh('bridge', 'fdb', 'del', a.mac, 'dev', a.ifname, 'master');
  sh('bridge', 'fdb', 'add', '02:77:00:00:00:77', 'dev', a.ifname, 'master', 'static');
  t.equal(fdbLine(place.bridge, a.mac), undefined, "A's pin is gone");
  await driver.reconcile({
    networks: [net],
    ports: [a, b],
    netnsGuests: [{ netns: `${prefix}-g-a`, port: a }],
  });
  const after = neighbours(ns);
  const of = (ip: string) => after.find((e) => e.dst === ip);
  t.match(of(a.ip), { lladdr: a.mac, state: ['PERMANENT'] }, "A's wrong entry is fixed");
  t.match(of(b.ip), { lladdr: b.mac, state: ['PERMANENT'] }, "B's missing entry is added");
  t.equal(of('10.77.0.99'), undefined, 'a PERMANENT entry for an IP nobody holds is removed');
  t.ok(of('10.77.0.98'), 'a learned entry is left to the kernel');
  t.match(fdbLine(place.bridge, a.mac), /sticky.*static/, "A's pin is back");
  t.equal(fdbLine(place.bridge, '02:77:00:00:00:77'), undefined, 'a static entry no port wants is removed');
  t.equal(fdbLine(place.bridge, b.mac), undefined, "B's port does not exist: nothing to pin yet");

  // A reconcile that finds everything in place writes nothing (a second pass is a no-op).
  const before = JSON.stringify(neighbours(ns));
  await driver.reconcile({
    networks: [net],
    ports: [a, b],
    netnsGuests: [{ netns: `${prefix}-g-a`, port: a }],
  });
  t.equal(JSON.stringify(neighbours(ns)), before);

  // The port goes: its entry and pin go with it.
  await driver.removeNetnsGuest({ netns: `${prefix}-g-a`, port: a });
  await driver.unguardPort(a.ifname);
  t.equal(
    neighbours(ns).find((e) => e.dst === a.ip),
    undefined,
    "A's entry is removed with its port",
  );
  t.equal(fdbLine(place.bridge, a.mac), undefined, "A's pin is gone with its port");
  t.match(
    neighbours(ns).find((e) => e.dst === b.ip),
    { lladdr: b.mac },
    "B's entry stays",
  );
});
