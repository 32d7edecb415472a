// The guard against real frames: a bridge, an endpoint netns and guest
// netns on veths whose root ends are the ports, spoofers built with
// `ip link`/`ip addr` and scapy, and the drop counters read back per reason.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { osCommandRunner } from '../../base/command.js';
import { Guard } from '../../hostnet/guard/guard.js';
import { linkLocalFromMac } from '../../hostnet/guard/ipv6.js';
import { CommandNftApplier } from '../../hostnet/guard/nft.js';
import { handlesOf } from '../../hostnet/guard/observe.js';
import type { GuardPort, GuardState } from '../../hostnet/guard/render.js';
import { Names } from '../../hostnet/names.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const FRAMES = fileURLToPath(new URL('../helpers/guard_frames.py', import.meta.url));
// Debian's python3 carries scapy; a pyenv shim earlier on PATH would not.
const PYTHON = '/usr/bin/python3';
const names = new Names('ga');
const NETWORK = 'guardnet';
const bridge = names.bridge(NETWORK);
const endpoint = { ns: names.endpointNetns(NETWORK), port: names.endpointVeth(NETWORK), ip: '10.77.0.1' };

interface Guest {
  ns: string;
  port: string;
  mac: string;
  ip: string;
  ip6: string;
}
const guest = (id: string, n: number): Guest => ({
  ns: names.guestNetns(`guard${id}`),
  port: names.port(id.repeat(8), 0),
  mac: `02:00:00:77:00:${n.toString(16).padStart(2, '0')}`,
  ip: `10.77.0.${n}`,
  ip6: `2001:db8:77::${n.toString(16)}`,
});
const A = guest('a', 10);
const B = guest('b', 11);
/** Plugged into the bridge with an owned port name, but never given to the guard. */
const C = guest('c', 12);
/** Plugged in by hand under a name that is neither a guest port nor an endpoint: the foreign class. */
const F = { ...guest('f', 13), port: 'gaxf0' };

const sh = (...argv: string[]) => osCommandRunner.run(argv);
const inNs = (ns: string, ...argv: string[]) => sh('ip', 'netns', 'exec', ns, ...argv);
const ok = (p: Promise<unknown>) =>
  p.then(
    () => true,
    () => false,
  );

const asPort = (g: Guest, ipv6: string[] = [g.ip6]): GuardPort => ({
  ifname: g.port,
  mac: g.mac,
  ipv4: g.ip,
  network: NETWORK,
  bridge,
  ipv6,
});
const desired: GuardState = {
  ports: [asPort(A), asPort(B)],
  endpoints: [{ network: NETWORK, bridge, ifname: endpoint.port, serviceIp: endpoint.ip }],
};

async function cleanup(): Promise<void> {
  for (const ns of [endpoint.ns, A.ns, B.ns, C.ns, F.ns]) await ok(sh('ip', 'netns', 'del', ns));
  await ok(sh('ip', 'link', 'del', F.port));
  await ok(sh('ip', 'link', 'del', bridge));
  await new Guard(names).destroy();
}

async function plug(ns: string, port: string, mac: string, cidrs: string[]): Promise<void> {
  await sh('ip', 'netns', 'add', ns);
  await sh('ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  await sh('ip', 'link', 'set', port, 'master', bridge, 'up');
  await inNs(ns, 'ip', 'link', 'set', 'eth0', 'address', mac);
  await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  await inNs(ns, 'ip', 'link', 'set', 'eth0', 'up');
  for (const cidr of cidrs) await inNs(ns, 'ip', 'addr', 'add', cidr, 'dev', 'eth0', 'nodad');
}

/** Runs tcpdump in a netns around `action` and returns the lines it printed. */
async function capture(ns: string, filter: string, action: () => Promise<unknown>): Promise<string[]> {
  const child = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', 'eth0', '-n', '-e', '-l', '-U', filter]);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const listening = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (d) => {
      err += d;
      if (err.includes('listening on')) resolve();
    });
    child.on('exit', () => reject(new Error(`tcpdump in ${ns} exited: ${err}`)));
  });
  try {
    await listening;
    await action();
    await new Promise((r) => setTimeout(r, 400));
  } finally {
    child.kill('SIGINT');
    if (child.exitCode === null) await once(child, 'exit');
  }
  return out.split('\n').filter((l) => l.trim() !== '');
}

const send = (g: Guest, ...specs: string[]) => inNs(g.ns, PYTHON, FRAMES, 'eth0', ...specs);
const ping = (ns: string, ...args: string[]) =>
  ok(inNs(ns, 'ping', '-c', '2', '-i', '0.2', '-W', '1', ...args));

async function dropped(guard: Guard, port: string, reason: string): Promise<number> {
  return (await guard.drops()).find((d) => d.port === port && d.reason === reason)?.packets ?? 0;
}

t.before(async () => {
  await cleanup();
  await sh('ip', 'link', 'add', bridge, 'type', 'bridge');
  await sh('ip', 'link', 'set', bridge, 'up');
  await plug(endpoint.ns, endpoint.port, '02:00:00:77:00:01', [`${endpoint.ip}/24`]);
  for (const g of [A, B, C, F]) await plug(g.ns, g.port, g.mac, [`${g.ip}/24`, `${g.ip6}/64`]);
});
t.teardown(cleanup);

const guard = new Guard(names);

t.test('allowed traffic passes, and a second apply changes no handle', async (t) => {
  t.equal(await guard.apply(desired), true, 'the first apply creates the table');
  const nft = new CommandNftApplier();
  const before = handlesOf(await nft.listTable('bridge', names.guardTable()));
  t.equal(await guard.apply(desired), false, 'nothing to do the second time');
  t.same(handlesOf(await nft.listTable('bridge', names.guardTable())), before);
  t.ok(before.size > 40, `the listing holds handles (${before.size})`);

  t.ok(await ping(A.ns, B.ip), 'A pings B over IPv4');
  t.ok(await ping(endpoint.ns, A.ip), 'the endpoint pings A');
  t.ok(await ping(A.ns, '-6', B.ip6), 'A pings B from its assigned IPv6 address');
  // The kernel adds the link-local only after duplicate address detection (about 1 s, longer
  // on a loaded host); until then nobody answers on it, guard or no guard.
  let linkLocal = false;
  for (let i = 0; i < 8 && !linkLocal; i++) {
    linkLocal = await ping(A.ns, '-6', `${linkLocalFromMac(B.mac)}%eth0`);
    if (!linkLocal) await new Promise((r) => setTimeout(r, 500));
  }
  t.ok(linkLocal, 'A pings B on the link-local derived from its MAC');
});

t.test('a changed source MAC is dropped and counted as mac-spoof', async (t) => {
  const before = await dropped(guard, A.port, 'mac-spoof');
  await inNs(A.ns, 'ip', 'link', 'set', 'dev', 'eth0', 'address', '02:00:00:77:00:99');
  t.teardown(async () => {
    await inNs(A.ns, 'ip', 'link', 'set', 'dev', 'eth0', 'address', A.mac);
    await inNs(A.ns, 'ip', 'neigh', 'flush', 'dev', 'eth0');
  });
  t.notOk(await ping(A.ns, B.ip), 'ping from the new MAC fails');
  t.ok((await dropped(guard, A.port, 'mac-spoof')) > before, 'mac-spoof counter rose on A');
});

t.test('a foreign source IP is dropped and counted as ip-spoof', async (t) => {
  const before = await dropped(guard, A.port, 'ip-spoof');
  await inNs(A.ns, 'ip', 'addr', 'add', '10.77.0.99/24', 'dev', 'eth0', 'nodad');
  // A permanent neighbour entry, so the spoofed ping is not stopped earlier at ARP.
  await inNs(A.ns, 'ip', 'neigh', 'replace', B.ip, 'lladdr', B.mac, 'dev', 'eth0', 'nud', 'permanent');
  t.teardown(async () => {
    await inNs(A.ns, 'ip', 'addr', 'del', '10.77.0.99/24', 'dev', 'eth0');
    await inNs(A.ns, 'ip', 'neigh', 'flush', 'dev', 'eth0');
  });
  t.notOk(await ping(A.ns, '-I', '10.77.0.99', B.ip), 'ping from 10.77.0.99 fails');
  t.ok((await dropped(guard, A.port, 'ip-spoof')) > before, 'ip-spoof counter rose on A');

  const v6before = await dropped(guard, A.port, 'ipv6-spoof');
  await inNs(A.ns, 'ip', 'addr', 'add', '2001:db8:77::99/64', 'dev', 'eth0', 'nodad');
  t.notOk(
    await ping(A.ns, '-6', '-I', '2001:db8:77::99', B.ip6),
    'ping from an unassigned IPv6 address fails',
  );
  t.ok((await dropped(guard, A.port, 'ipv6-spoof')) > v6before, 'ipv6-spoof counter rose on A');
});

t.test('ARP claiming another guest IP never reaches it', async (t) => {
  const before = await dropped(guard, A.port, 'arp-spoof');
  const seen = await capture(B.ns, `arp and ether src ${A.mac}`, () =>
    send(A, `garp=${B.ip}`, `garp=${A.ip}`),
  );
  t.equal(seen.filter((l) => l.includes(`tell ${B.ip}`)).length, 0, 'B never sees ARP claiming its IP');
  t.ok(seen.filter((l) => l.includes(`tell ${A.ip}`)).length >= 1, 'B does see A announce its own IP');
  t.ok((await dropped(guard, A.port, 'arp-spoof')) >= before + 3, 'arp-spoof counted all three copies');
});

t.test('DHCP: foreign chaddr dropped, own chaddr steered to the endpoint only', async (t) => {
  const chaddrBefore = await dropped(guard, A.port, 'dhcp-chaddr');
  const steerBefore = await dropped(guard, '*', 'dhcp-steer');
  let atB: string[] = [];
  const atEndpoint = await capture(endpoint.ns, 'udp dst port 67', async () => {
    atB = await capture(B.ns, 'udp dst port 67', () => send(A, `dhcp=${B.mac}`, `dhcp=${A.mac}`));
  });
  t.equal(
    atEndpoint.filter((l) => l.includes(`Request from ${B.mac}`)).length,
    0,
    'chaddr = B never arrives',
  );
  t.ok(
    atEndpoint.filter((l) => l.includes(`Request from ${A.mac}`)).length >= 1,
    'chaddr = A reaches the endpoint',
  );
  t.same(atB, [], 'guest B sees no DHCP client frame at all');
  t.ok((await dropped(guard, A.port, 'dhcp-chaddr')) >= chaddrBefore + 3, 'dhcp-chaddr counted');
  t.ok((await dropped(guard, '*', 'dhcp-steer')) >= steerBefore + 3, 'the copies to B were steered away');
});

t.test('DHCP replies from the endpoint leave only the port whose MAC is the chaddr', async (t) => {
  const before = await dropped(guard, '*', 'dhcp-reply-steer');
  let atB: string[] = [];
  const atA = await capture(A.ns, 'udp src port 67', async () => {
    atB = await capture(B.ns, 'udp src port 67', () =>
      inNs(endpoint.ns, PYTHON, FRAMES, 'eth0', `dhcpreply=${A.mac}`),
    );
  });
  t.ok(atA.length >= 1, 'A sees the reply meant for it');
  t.same(atB, [], "B sees nothing of A's reply");
  t.ok((await dropped(guard, '*', 'dhcp-reply-steer')) >= before + 3, 'the copies to B were counted');
});

t.test('rogue DHCP servers, router advertisements, other ethertypes and VLAN tags are dropped', async (t) => {
  const reasons = ['dhcp-server', 'ipv6-ra', 'ethertype'];
  const before = await Promise.all(reasons.map((r) => dropped(guard, A.port, r)));
  // Only the crafted kinds: A's own ARP and neighbour probes may cross the link at any time.
  const crafted = `ether src ${A.mac} and (udp src port 67 or ether proto 0x88b5 or vlan or (icmp6 and ip6[40] == 134))`;
  const seen = await capture(B.ns, crafted, () =>
    send(A, `dhcpserver=${A.ip}`, `ra=${linkLocalFromMac(A.mac)}`, 'ethertype=0x88b5', 'vlan=5'),
  );
  t.same(seen, [], 'B sees none of them');
  const after = await Promise.all(reasons.map((r) => dropped(guard, A.port, r)));
  reasons.forEach((r, i) => {
    // ethertype: three 0x88b5 frames plus three 802.1Q-tagged ones.
    const want = r === 'ethertype' ? 6 : 3;
    t.ok((after[i] as number) >= (before[i] as number) + want, `${r} counted (${want} frames)`);
  });
});

t.test('an owned port missing from the desired state passes nothing', async (t) => {
  const before = await dropped(guard, '*', 'unguarded');
  t.notOk(await ping(C.ns, B.ip), 'C cannot reach B');
  t.notOk(await ping(endpoint.ns, C.ip), 'the endpoint cannot reach C');
  t.ok((await dropped(guard, '*', 'unguarded')) > before, 'unguarded counter rose');
});

t.test('a foreign port reaches guests, never the endpoint, and cannot claim a guest', async (t) => {
  const edge = (reason: string) => dropped(guard, endpoint.port, reason);
  const before = await Promise.all(['edge-to-endpoint', 'edge-guest-claim'].map(edge));
  const unmapped = await dropped(guard, '*', 'edge-unmapped');
  t.ok(await ping(F.ns, A.ip), 'control: the foreign namespace pings guest A');
  t.notOk(await ping(F.ns, endpoint.ip), 'it cannot ping the endpoint');
  t.notOk(await ping(endpoint.ns, F.ip), 'nor the endpoint it');
  t.ok((await edge('edge-to-endpoint')) > (before[0] as number), 'edge-to-endpoint counted');
  const seen = await capture(B.ns, `arp and ether src ${F.mac}`, () =>
    send(F, `garp=${A.ip}`, `garp=${F.ip}`),
  );
  t.equal(seen.filter((l) => l.includes(`tell ${A.ip}`)).length, 0, "B never sees F claim A's IP");
  t.ok(seen.filter((l) => l.includes(`tell ${F.ip}`)).length >= 1, 'B does see F announce its own IP');
  t.ok((await edge('edge-guest-claim')) >= (before[1] as number) + 3, 'edge-guest-claim counted');
  t.notOk(await ping(F.ns, C.ip), 'an owned port the guard has no network for gets nothing from F');
  t.ok((await dropped(guard, '*', 'edge-unmapped')) > unmapped, 'edge-unmapped counted');
});

t.test('removePort and addPort touch only that port', async (t) => {
  const nft = new CommandNftApplier();
  const handlesOfA = async () =>
    [...handlesOf(await nft.listTable('bridge', names.guardTable()))].filter(([k]) => k.includes(A.port));
  const aBefore = await handlesOfA();
  t.equal(await guard.removePort(B.port), true);
  t.equal(await guard.removePort(B.port), false, 'removing it again is a no-op');
  t.notOk(await ping(A.ns, B.ip), 'B is unguarded now, so its replies are dropped');
  t.equal(await guard.addPort(asPort(B)), true);
  t.equal(await guard.addPort(asPort(B)), false, 'adding the same port again is a no-op');
  t.ok(await ping(A.ns, B.ip), 'A reaches B again');
  t.same(await handlesOfA(), aBefore, "A's chain, counters and rules kept their handles");
  t.equal(await guard.apply(desired), false, 'the full desired state already holds');
});
