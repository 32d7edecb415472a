// Acceptance (DHCP identity): only a MAC berth assigned, seen on its own port,
// gets an answer. A stranger on an unknown port, a known MAC on the wrong
// port, and a guest claiming another guest's MAC in chaddr get nothing; the
// refusals are in the audit log with MAC, port and reason.
import t from 'tap';
import type { AuditRecord } from '../../agent/api/types.js';
import {
  discoverFrom,
  NET_CONFIG,
  startDhcpLab,
  udhcpcArgv,
  udhcpcOnce,
  udhcpcScript,
} from '../helpers/dhcp_lab.js';
import { fdbPort, inNetns, isRoot, rogue } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

t.test('a namespace on a foreign port gets no offer, and the guard audits the drop', async (t) => {
  const lab = await startDhcpLab(t, [NET_CONFIG('a', 73)]);
  const net = await lab.show('a');
  const guest = await lab.guest('known', 'a', { address: false });
  const script = await udhcpcScript(t);

  // An unassigned MAC on a port berth does not know.
  const stranger = await rogue(t, lab.prefix, 's', net.bridge, {
    mac: '02:00:5e:10:00:01',
    ip: '10.73.0.200',
    prefixLen: 24,
  });
  const r1 = await inNetns(stranger.netns, udhcpcArgv(script));
  t.not(r1.code, 0, 'udhcpc timed out without a lease');
  t.notMatch(r1.stdout, /event=bound/);

  // An assigned MAC (the known guest's) on a port that is not its own. The bridge
  // never moves it there (berth pinned it, static sticky, to the guest's port),
  // and the OFFER goes to the assigned address, so to that pinned port only.
  const thief = await rogue(t, lab.prefix, 't', net.bridge, {
    mac: guest.mac,
    ip: '10.73.0.201',
    prefixLen: 24,
  });
  const r2 = await inNetns(thief.netns, udhcpcArgv(script));
  t.not(r2.code, 0, 'the MAC thief gets no lease either');
  t.notMatch(r2.stdout, /event=bound/);
  t.equal(await fdbPort(net.bridge, guest.mac), guest.port, "the guest's MAC stays on the guest's port");

  // Neither reaches the endpoint: the guard keeps frames from a port that is
  // not a guest's away from it, and audits the drop with what it observed.
  const drops = await lab.json<AuditRecord[]>(['audit', '--event', 'guard.drop', '--limit', '1000']);
  for (const [who, port, mac] of [
    ['stranger', stranger.port, '02:00:5e:10:00:01'],
    ['thief', thief.port, guest.mac],
  ] as const) {
    const rec = drops.find((r) => r.port === port && r.reason === 'edge-to-endpoint');
    t.ok(rec, `the ${who} is audited on the port it was observed on (${port})`);
    t.equal(rec?.detail?.class, 'foreign', `the ${who}'s port is foreign`);
    t.equal(rec?.mac, mac, `the record carries the MAC the ${who} sent`);
  }
  const served = await lab.json<AuditRecord[]>(['audit', '--event', 'dhcp.discover', '--limit', '1000']);
  t.notOk(
    served.some((r) => r.port === stranger.port || r.port === thief.port),
    'the DHCP server never saw either',
  );
  t.same(await lab.json<unknown[]>(['lease', 'list']), [], 'no lease was handed out');

  // The owner, back on its own port, is served (its first frame moves the FDB entry back).
  const ok = await udhcpcOnce(lab, 'known', script);
  t.equal(ok.code, 0, `the real guest still gets its lease: ${ok.stderr}`);
  t.equal(ok.got.ip, guest.ip);
});

t.test("a DISCOVER whose chaddr is another guest's MAC gets no answer", async (t) => {
  const lab = await startDhcpLab(t, [NET_CONFIG('a', 74)]);
  const a = await lab.guest('ga', 'a', { address: false });
  const b = await lab.guest('gb', 'a', { address: false });
  const control = await discoverFrom(a.netns, a.mac, a.mac);
  t.same(control, { answers: 1, types: [2] }, 'control: the same frame with its own chaddr gets an OFFER');
  const spoof = await discoverFrom(a.netns, a.mac, b.mac);
  t.same(spoof, { answers: 0, types: [] }, "with B's MAC as chaddr: no answer at all");
  t.ok((await lab.drops('a', a.port, 'dhcp-chaddr')) >= 1, "the guard dropped it at A's port");
  const leases = await lab.json<unknown[]>(['lease', 'list']);
  t.same(leases, [], 'nothing was leased to anyone');
});
