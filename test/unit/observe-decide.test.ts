// The identity rule, exhaustively: a caller is instance X only when its source
// IP is X's assigned IP on this network, the endpoint's entry for that IP is
// berth's PERMANENT one with X's MAC, and the FDB shows X's MAC on X's port.
import t from 'tap';
import {
  decideIp,
  MemoryPortDirectory,
  type NeighbourSeen,
  RESOLVE_REASONS,
  type ResolveReason,
  TRANSIENT_REASONS,
} from '../../hostnet/observe/resolve.js';

const X = { ifname: 'obpx', mac: '02:00:00:00:00:0a', instance: 'inst-x', network: 'net1', ip: '10.9.0.11' };
const Y = { ifname: 'obpy', mac: '02:00:00:00:00:0b', instance: 'inst-y', network: 'net1', ip: '10.9.0.12' };
// Another network with the same subnet: X's IP there belongs to Z.
const Z = { ifname: 'obpz', mac: '02:00:00:00:00:0c', instance: 'inst-z', network: 'net2', ip: '10.9.0.11' };
const STRANGER = '02:00:00:00:00:ee';

function directory(): MemoryPortDirectory {
  const d = new MemoryPortDirectory();
  for (const r of [X, Y, Z]) d.set(r);
  return d;
}

const IPS = { 'x ip': X.ip, 'y ip': Y.ip, 'unassigned ip': '10.9.0.99' } as const;
const NEIGHBOURS: Record<string, NeighbourSeen | undefined> = {
  'no entry': undefined,
  'pinned x mac': { mac: X.mac, permanent: true },
  'learned x mac': { mac: X.mac, permanent: false },
  'pinned y mac': { mac: Y.mac, permanent: true },
  'learned y mac': { mac: Y.mac, permanent: false },
  'pinned stranger mac': { mac: STRANGER, permanent: true },
  'learned stranger mac': { mac: STRANGER, permanent: false },
};
const PORTS = {
  'on no port': undefined,
  'on x port': X.ifname,
  'on y port': Y.ifname,
  'on foreign port': 'veth9',
};

/** The rule, written from the spec, in the order the checks are documented. */
function expected(ip: string, n: NeighbourSeen | undefined, port: string | undefined): true | ResolveReason {
  const owner = [X, Y].find((r) => r.ip === ip);
  if (!owner) return 'ip-not-assigned';
  if (!n) return 'no-neighbour';
  if (!n.permanent || n.mac !== owner.mac) return 'neighbour-not-pinned';
  if (port === undefined) return 'mac-not-on-port';
  if (port !== owner.ifname) return 'mac-wrong-port';
  return true;
}

t.test('every combination of IP, neighbour entry and FDB port', async (t) => {
  const d = directory();
  let rows = 0;
  let accepted = 0;
  const seen = new Set<string>();
  for (const [ipName, ip] of Object.entries(IPS)) {
    for (const [nName, n] of Object.entries(NEIGHBOURS)) {
      for (const [pName, port] of Object.entries(PORTS)) {
        const name = `${ipName}, ${nName}, ${pName}`;
        const got = decideIp('net1', ip, n, port, d);
        const want = expected(ip, n, port);
        rows++;
        if (want === true) {
          accepted++;
          const owner = [X, Y].find((r) => r.ip === ip);
          t.same(got, { ok: true, mac: owner?.mac, port: owner?.ifname, instance: owner?.instance }, name);
        } else {
          t.equal(got.ok, false, name);
          if (!got.ok) {
            t.equal(got.reason, want, name);
            seen.add(got.reason);
          }
        }
      }
    }
  }
  t.equal(rows, 3 * 7 * 4);
  t.equal(
    accepted,
    2,
    'one combination per guest names a caller: its own IP, pinned to its MAC, on its port',
  );
  for (const r of [
    'ip-not-assigned',
    'no-neighbour',
    'neighbour-not-pinned',
    'mac-not-on-port',
    'mac-wrong-port',
  ])
    t.ok(seen.has(r), `${r} is reachable`);
});

t.test('named rows: the attacks the rule exists for', async (t) => {
  const d = directory();
  // Defect 1: an ARP payload names X's MAC for the attacker's own IP. Nobody was assigned that IP.
  t.same(decideIp('net1', '10.9.0.99', { mac: X.mac, permanent: false }, X.ifname, d), {
    ok: false,
    reason: 'ip-not-assigned',
    mac: X.mac,
    port: X.ifname,
  });
  // X's IP, learned from somebody's ARP: even with X's MAC on X's port it never decides.
  t.same(decideIp('net1', X.ip, { mac: X.mac, permanent: false }, X.ifname, d), {
    ok: false,
    reason: 'neighbour-not-pinned',
    mac: X.mac,
    port: X.ifname,
    instance: 'inst-x',
  });
  // Y's MAC pinned for X's IP (a wrong entry berth has not fixed yet): refused, never Y.
  t.same(decideIp('net1', X.ip, { mac: Y.mac, permanent: true }, Y.ifname, d), {
    ok: false,
    reason: 'neighbour-not-pinned',
    mac: Y.mac,
    port: Y.ifname,
    instance: 'inst-x',
  });
  // X's MAC on a foreign port (a static pin refused by the kernel, and moved).
  t.same(decideIp('net1', X.ip, { mac: X.mac, permanent: true }, 'veth9', d), {
    ok: false,
    reason: 'mac-wrong-port',
    mac: X.mac,
    port: 'veth9',
    instance: 'inst-x',
  });
  // The same IP on another network is another instance.
  t.same(decideIp('net2', X.ip, { mac: Z.mac, permanent: true }, Z.ifname, d), {
    ok: true,
    mac: Z.mac,
    port: Z.ifname,
    instance: 'inst-z',
  });
  t.same(decideIp('net2', X.ip, { mac: X.mac, permanent: true }, X.ifname, d), {
    ok: false,
    reason: 'neighbour-not-pinned',
    mac: X.mac,
    port: X.ifname,
    instance: 'inst-z',
  });
  t.same(decideIp('net3', X.ip, { mac: X.mac, permanent: true }, X.ifname, d).ok, false);
});

t.test('only an arriving guest is waited for', async (t) => {
  t.same([...TRANSIENT_REASONS].sort(), ['mac-not-on-port', 'no-neighbour']);
  for (const r of TRANSIENT_REASONS) t.ok(RESOLVE_REASONS.includes(r));
  t.notOk(TRANSIENT_REASONS.has('neighbour-not-pinned'), 'a learned entry never turns into berth’s');
  t.notOk(TRANSIENT_REASONS.has('ip-not-assigned'), 'an unassigned IP costs no wait and no dump');
});

t.test('the IP index follows sets and deletes', async (t) => {
  const d = directory();
  t.equal(d.portByIp('net1', X.ip)?.instance, 'inst-x');
  t.equal(d.portByIp('net2', X.ip)?.instance, 'inst-z');
  d.set({ ...X, ip: '10.9.0.50' });
  t.equal(d.portByIp('net1', X.ip), undefined, 'the old address no longer names X');
  t.equal(d.portByIp('net1', '10.9.0.50')?.instance, 'inst-x');
  d.delete(X.ifname);
  t.equal(d.portByIp('net1', '10.9.0.50'), undefined);
  t.equal(d.portByIp('net2', X.ip)?.instance, 'inst-z', 'the other network keeps its own');
});
